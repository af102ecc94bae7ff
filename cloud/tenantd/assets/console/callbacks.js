// Callbacks (agents and org admins): the customers the organization must call back, because
// nobody answered in time or the site was closed, from GET /api/v1/orgs/{org}/callbacks. Open
// ones show the full number as a tel: link, oldest first; "Done" marks one done (audited).
//
// Test hooks (stable names):
//   #callbacks-state        which callbacks to show (open, done, all)
//   #callbacks-table        the table; rows carry data-callback = the id
//   .callback-done          a row's "Done" button
//   #callbacks-status       what the last action did

import { api, seg } from './api.js';
import { h, selectField, errorBox, statusBox, busy, tableView, pageHeading, fmtDate } from './ui.js';

const REASON = { not_answered: 'Nobody answered', closed: 'Site closed' };
const STATE = { open: 'Open', done: 'Done', cancelled: 'Cancelled' };

export async function page(ctx) {
  const base = `/api/v1/orgs/${seg(ctx.me.org.slug)}/callbacks`;
  let list = [];
  const err = errorBox('callbacks-error');
  const status = statusBox('callbacks-status');
  const choose = selectField({
    label: 'Show',
    id: 'callbacks-state',
    name: 'state',
    value: 'open',
    options: [
      ['open', 'Open callbacks'],
      ['done', 'Done'],
      ['all', 'All'],
    ],
  });
  const select = choose.querySelector('select');

  const table = tableView({
    id: 'callbacks-table',
    caption: 'Customers to call back',
    empty: 'Nobody is waiting for a callback.',
    rowAttrs: (c) => ({ 'data-callback': c.id, class: c.state === 'open' ? null : 'is-disabled' }),
    columns: [
      { label: 'Requested', cell: (c) => fmtDate(c.requested_at) },
      {
        label: 'Number',
        cell: (c) =>
          c.phone
            ? h('a', { class: 'phone', href: `tel:${c.phone}`, 'aria-label': `Call ${c.phone}` }, c.phone)
            : h('span', { class: 'phone' }, c.phone_masked),
      },
      { label: 'Reason', cell: (c) => REASON[c.reason] || c.reason },
      { label: 'Language', cell: (c) => c.language || '—' },
      { label: 'Site', cell: (c) => (c.site ? c.site.name : '—') },
      { label: 'Kiosk', cell: (c) => h('span', { title: c.kiosk.id }, c.kiosk.name) },
      {
        label: 'State',
        cell: (c) => [
          h('span', { class: `state state-${c.state}` }, STATE[c.state] || c.state),
          c.done_at ? h('span', { class: 'muted block' }, c.done_by ? `${c.done_by.name}, ` : '', fmtDate(c.done_at)) : null,
        ],
      },
      { label: 'Actions', cell: (c) => (c.state === 'open' ? doneButton(c) : h('span', { class: 'muted' }, '—')) },
    ],
  });

  function doneButton(c) {
    const btn = h(
      'button',
      { type: 'button', class: 'secondary callback-done', 'aria-label': `Mark the callback to ${c.phone || c.phone_masked} done` },
      'Done',
    );
    btn.addEventListener('click', () =>
      busy(btn, err, async () => {
        status.textContent = '';
        const updated = await api('POST', `${base}/${seg(c.id)}/done`);
        await load();
        status.textContent = `Callback to ${updated.phone_masked} marked done.`;
        const next = table.el.querySelector('.callback-done');
        (next || table.el.querySelector('.table-wrap')).focus();
      }),
    );
    return btn;
  }

  async function load() {
    const res = await api('GET', `${base}?state=${encodeURIComponent(select.value)}`);
    list = res.callbacks;
    table.update(list);
  }
  select.addEventListener('change', () => {
    err.textContent = '';
    load().catch((e) => {
      err.textContent = e.message;
    });
  });
  await load();

  return h(
    'div',
    null,
    pageHeading('Callbacks'),
    h('p', null, 'Customers who asked to be called back. Call them, then mark the callback done.'),
    h('div', { class: 'toolbar' }, choose),
    err,
    status,
    table.el,
  );
}
