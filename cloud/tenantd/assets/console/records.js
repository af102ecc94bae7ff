// Call records (agents and org admins): finished calls with filters, totals, paging and the
// CSV export, from GET /api/v1/orgs/{org}/calls/records(.csv). Agents see their own calls;
// admins the organization's, and may filter by site, kiosk and agent too.
//
// Test hooks (stable names):
//   #records-filters        the filter form (from, to, site, kiosk, agent, outcome)
//   #records-totals         the totals of every call the filters select
//   #records-table          the table; rows carry data-call = the call id
//   #records-csv            the CSV download link (same filters)
//   #records-prev / #records-next   paging

import { api, seg } from './api.js';
import { h, field, selectField, errorBox, onSubmit, busy, tableView, pageHeading, dl, fmtDate } from './ui.js';

const PAGE = 50;
const OUTCOMES = [
  ['answered', 'Answered'],
  ['abandoned', 'Abandoned'],
  ['missed', 'Missed'],
  ['declined', 'Declined'],
  ['closed', 'Closed'],
  ['failed', 'Failed'],
];
const OUTCOME_LABEL = Object.fromEntries(OUTCOMES);
const KIND = { test: 'Test', customer: 'Customer' };

// A list the page can do without: an empty one when it cannot be read.
const listOr = (promise, key) => promise.then((r) => (r && r[key]) || []).catch(() => []);

// "YYYY-MM-DD" of a local date input → the RFC 3339 instant of that local midnight; `end`
// moves to the next midnight, so the chosen day is included.
function localBound(value, end) {
  if (!value) return null;
  const [y, m, d] = value.split('-').map(Number);
  const t = new Date(y, m - 1, d + (end ? 1 : 0));
  return Number.isNaN(t.getTime()) ? null : t.toISOString();
}

function seconds(s) {
  if (s == null) return '—';
  const n = Math.round(Number(s));
  if (n < 60) return `${n} s`;
  const m = Math.floor(n / 60);
  return `${m} min ${String(n % 60).padStart(2, '0')} s`;
}

const percent = (r) => (r == null ? '—' : `${Math.round(r * 1000) / 10} %`);
const survey = (v) => (v == null ? '—' : `${v} / 3`);

export async function page(ctx) {
  const org = ctx.me.org.slug;
  const base = `/api/v1/orgs/${seg(org)}/calls/records`;
  const admin = ctx.me.role === 'org_admin';
  const [sites, devices, users] = admin
    ? await Promise.all([
        listOr(api('GET', `/api/v1/orgs/${seg(org)}/sites`), 'sites'),
        listOr(api('GET', `/api/v1/orgs/${seg(org)}/devices`), 'devices'),
        listOr(api('GET', `/api/v1/orgs/${seg(org)}/users`), 'users'),
      ])
    : [[], [], []];

  let offset = 0;
  let query = new URLSearchParams();

  const any = (label) => [['', label]];
  const form = h(
    'form',
    { id: 'records-filters', class: 'filters', 'aria-label': 'Filter the call records' },
    field({ label: 'From', id: 'records-from', name: 'from', type: 'date' }),
    field({ label: 'To', id: 'records-to', name: 'to', type: 'date', hint: 'Both days included, in your time zone.' }),
    admin
      ? selectField({ label: 'Site', id: 'records-site', name: 'site', options: any('All sites').concat(sites.map((s) => [String(s.id), s.name])) })
      : null,
    admin
      ? selectField({
          label: 'Kiosk',
          id: 'records-kiosk',
          name: 'kiosk',
          options: any('All kiosks').concat(devices.map((d) => [d.id, `${d.hardware_serial} (${d.id})`])),
        })
      : null,
    admin
      ? selectField({ label: 'Agent', id: 'records-agent', name: 'agent', options: any('All agents').concat(users.map((u) => [String(u.id), u.name || u.email])) })
      : null,
    selectField({ label: 'Outcome', id: 'records-outcome', name: 'outcome', options: any('Any outcome').concat(OUTCOMES) }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'records-apply' }, 'Show calls')),
  );
  const err = errorBox('records-error');
  const totals = h('div', { id: 'records-totals', role: 'status', 'aria-live': 'polite' });
  const csv = h('a', { id: 'records-csv', class: 'button secondary', href: `${base}.csv`, download: '' }, 'Download CSV');
  const prev = h('button', { type: 'button', id: 'records-prev', class: 'secondary' }, 'Newer');
  const next = h('button', { type: 'button', id: 'records-next', class: 'secondary' }, 'Older');
  const pageInfo = h('p', { class: 'muted', id: 'records-page' });

  const table = tableView({
    id: 'records-table',
    caption: admin ? 'Calls of the organization, newest first' : 'Your calls, newest first',
    empty: 'No calls match these filters.',
    rowAttrs: (r) => ({ 'data-call': r.id }),
    columns: [
      { label: 'Queued', cell: (r) => fmtDate(r.queued_at) },
      { label: 'Site', cell: (r) => (r.site ? r.site.name : '—') },
      { label: 'Kiosk', cell: (r) => h('span', { title: r.kiosk.id }, r.kiosk.name) },
      { label: 'Agent', cell: (r) => (r.agent ? r.agent.name : '—') },
      { label: 'Kind', cell: (r) => KIND[r.kind] || r.kind },
      { label: 'Phone', cell: (r) => r.phone_masked || '—' },
      { label: 'Wait', cell: (r) => seconds(r.wait_s), class: 'num' },
      { label: 'Talk', cell: (r) => seconds(r.talk_s), class: 'num' },
      {
        label: 'Outcome',
        cell: (r) => [
          h('span', { class: `state state-${r.outcome}` }, OUTCOME_LABEL[r.outcome] || r.outcome),
          r.callback_offered ? h('span', { class: 'badge' }, 'callback offered') : null,
          r.end_reason || r.refused_reason
            ? h('span', { class: 'muted block' }, String(r.end_reason || r.refused_reason).replace(/_/g, ' '))
            : null,
        ],
      },
      { label: 'Survey', cell: (r) => survey(r.survey_score) },
      { label: 'Recorded', cell: (r) => (r.recorded ? 'Yes' : 'No') },
    ],
  });

  function readFilters() {
    const els = form.elements;
    const q = new URLSearchParams();
    const from = localBound(els.from.value, false);
    const to = localBound(els.to.value, true);
    if (from) q.set('from', from);
    if (to) q.set('to', to);
    for (const name of ['site', 'kiosk', 'agent', 'outcome']) {
      const el = els.namedItem(name);
      if (el && el.value) q.set(name, el.value);
    }
    return q;
  }

  async function load() {
    const q = new URLSearchParams(query);
    q.set('limit', String(PAGE));
    q.set('offset', String(offset));
    const res = await api('GET', `${base}?${q}`);
    const t = res.totals;
    totals.replaceChildren(
      dl(
        [
          ['Calls', String(t.calls)],
          ['Answered', String(t.answered)],
          ['Answer rate', percent(t.answer_rate)],
          ['Average wait', seconds(t.avg_wait_s)],
          ['Average talk', seconds(t.avg_talk_s)],
          ['Average survey', t.avg_survey == null ? '—' : `${t.avg_survey} / 3 (${t.surveys})`],
        ],
        'facts stats',
      ),
    );
    table.update(res.records);
    const shown = res.records.length;
    pageInfo.textContent = shown ? `Calls ${offset + 1} to ${offset + shown} of ${t.calls}.` : '';
    prev.hidden = offset === 0;
    next.hidden = offset + shown >= t.calls;
    csv.href = query.toString() ? `${base}.csv?${query}` : `${base}.csv`;
  }

  onSubmit(form, err, async () => {
    query = readFilters();
    offset = 0;
    await load();
  });
  prev.addEventListener('click', () =>
    busy(prev, err, async () => {
      offset = Math.max(0, offset - PAGE);
      await load();
      table.el.querySelector('.table-wrap').focus();
    }),
  );
  next.addEventListener('click', () =>
    busy(next, err, async () => {
      offset += PAGE;
      await load();
      table.el.querySelector('.table-wrap').focus();
    }),
  );
  await load();

  return h(
    'div',
    null,
    pageHeading('Call records', csv),
    h('section', { class: 'panel', 'aria-labelledby': 'records-filter-title' }, h('h2', { id: 'records-filter-title' }, 'Filters'), form, err),
    h('section', { class: 'panel', 'aria-labelledby': 'records-totals-title' }, h('h2', { id: 'records-totals-title' }, 'Totals'), totals),
    table.el,
    h('div', { class: 'toolbar' }, prev, next, pageInfo),
  );
}
