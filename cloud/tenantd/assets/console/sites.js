// Sites: the list page and the editor (name, time zone, weekly business
// hours, holidays). Same page contract as pages.js.

import { api, seg } from './api.js';
import { h, setChildren, field, errorBox, statusBox, onSubmit, busy, invalid, tableView, pageHeading, fmtDate } from './ui.js';

const DAYS = [
  ['mon', 'Monday'],
  ['tue', 'Tuesday'],
  ['wed', 'Wednesday'],
  ['thu', 'Thursday'],
  ['fri', 'Friday'],
  ['sat', 'Saturday'],
  ['sun', 'Sunday'],
];
const MAX_INTERVALS = 4;
// "HH:MM", 00:00–23:59, plus "24:00" (only meaningful as a closing time).
const TIME_RE = /^(([01]\d|2[0-3]):[0-5]\d|24:00)$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

const sitesBase = (ctx) => `/api/v1/orgs/${seg(ctx.me.org.slug)}/sites`;

// ---------- list ----------
export async function list(ctx) {
  const base = sitesBase(ctx);
  let sites = (await api('GET', base)).sites;
  const err = errorBox('sites-error');

  const openDays = (s) => DAYS.filter(([d]) => (s.business_hours[d] || []).length).length;
  const table = tableView({
    id: 'sites-table',
    caption: 'Sites',
    empty: 'No sites yet.',
    rowAttrs: (s) => ({ 'data-site-id': s.id }),
    columns: [
      { label: 'Name', cell: (s) => h('a', { href: `#/sites/${seg(s.id)}` }, s.name) },
      { label: 'Time zone', cell: (s) => s.timezone },
      { label: 'Open', cell: (s) => `${openDays(s)} ${openDays(s) === 1 ? 'day' : 'days'} a week` },
      { label: 'Holidays', cell: (s) => String((s.holidays || []).length), class: 'num' },
      { label: 'Updated', cell: (s) => fmtDate(s.updated_at) },
      { label: 'Actions', cell: (s) => deleteButton(s) },
    ],
  });

  function deleteButton(s) {
    const btn = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete site ${s.name}` }, 'Delete');
    btn.addEventListener('click', () => {
      if (!window.confirm(`Delete the site “${s.name}”? This cannot be undone.`)) return;
      busy(btn, err, async () => {
        await api('DELETE', `${base}/${seg(s.id)}`);
        sites = sites.filter((x) => x.id !== s.id);
        table.update(sites);
        table.el.querySelector('.table-wrap').focus();
      });
    });
    return btn;
  }
  table.update(sites);

  return h(
    'div',
    null,
    pageHeading('Sites', h('a', { href: '#/sites/new', class: 'button' }, 'New site')),
    err,
    table.el,
  );
}

// ---------- editor ----------
function timeZones() {
  let zones = [];
  try {
    if (typeof Intl.supportedValuesOf === 'function') zones = Intl.supportedValuesOf('timeZone');
  } catch {
    zones = [];
  }
  if (zones.length && !zones.includes('UTC')) zones = [...zones, 'UTC'];
  return zones;
}

function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

// Accept "9:00" as "09:00".
const normTime = (t) => t.trim().replace(/^(\d):/, '0$1:');

export async function editor(ctx) {
  const base = sitesBase(ctx);
  const id = ctx.params.id;
  const isNew = id == null;
  const site = isNew
    ? {
        name: '',
        timezone: browserZone(),
        // A common starting point: weekdays 09:00–17:00.
        business_hours: Object.fromEntries(DAYS.map(([d], i) => [d, i < 5 ? [{ open: '09:00', close: '17:00' }] : []])),
        holidays: [],
      }
    : await api('GET', `${base}/${seg(id)}`);

  // Working copies, edited in place by the inputs below.
  const hours = Object.fromEntries(DAYS.map(([d]) => [d, (site.business_hours[d] || []).map((iv) => ({ ...iv }))]));
  const holidays = (site.holidays || []).map((x) => ({ ...x }));
  const announce = statusBox('site-announce');

  // Text input bound to obj[key]. Time fields are text (not type=time)
  // because "24:00" must be possible.
  function boundInput({ id: inputId, label, obj, key, ...attrs }) {
    const input = h('input', { id: inputId, name: inputId, value: obj[key] || '', ...attrs });
    input.addEventListener('input', () => {
      obj[key] = input.value;
    });
    return h('div', { class: 'field inline' }, h('label', { for: inputId }, label), input);
  }
  const timeAttrs = { type: 'text', inputmode: 'numeric', placeholder: 'HH:MM', maxlength: '5', autocomplete: 'off', size: '5' };

  // --- weekly hours ---
  const dayBoxes = {};
  function renderDay(d, dayName) {
    const box = dayBoxes[d];
    const ivs = hours[d];
    const rows = ivs.map((iv, i) => {
      const remove = h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove ${dayName} hours ${i + 1}` }, 'Remove');
      remove.addEventListener('click', () => {
        ivs.splice(i, 1);
        renderDay(d, dayName);
        box.querySelector('.add').focus();
      });
      return h(
        'div',
        { class: 'interval' },
        boundInput({ id: `${d}-${i}-open`, label: 'Opens', obj: iv, key: 'open', ...timeAttrs }),
        boundInput({ id: `${d}-${i}-close`, label: 'Closes', obj: iv, key: 'close', ...timeAttrs }),
        remove,
      );
    });
    const add = h(
      'button',
      { type: 'button', class: 'secondary add', disabled: ivs.length >= MAX_INTERVALS, 'aria-label': `Add opening hours on ${dayName}` },
      'Add hours',
    );
    add.addEventListener('click', () => {
      ivs.push(ivs.length ? { open: '', close: '' } : { open: '09:00', close: '17:00' });
      renderDay(d, dayName);
      box.querySelector(`#${d}-${ivs.length - 1}-open`).focus();
    });
    setChildren(
      box,
      h('legend', null, dayName),
      rows.length ? rows : h('p', { class: 'closed' }, 'Closed'),
      ivs.length >= MAX_INTERVALS ? h('p', { class: 'hint' }, `At most ${MAX_INTERVALS} periods a day.`) : null,
      add,
    );
  }
  for (const [d, name] of DAYS) {
    dayBoxes[d] = h('fieldset', { class: 'day' });
    renderDay(d, name);
  }
  const copyMon = h('button', { type: 'button', class: 'secondary' }, 'Copy Monday to Tuesday–Friday');
  copyMon.addEventListener('click', () => {
    for (const [d, name] of DAYS.slice(1, 5)) {
      hours[d] = hours.mon.map((iv) => ({ ...iv }));
      renderDay(d, name);
    }
    announce.textContent = 'Monday’s hours copied to Tuesday to Friday.';
  });

  // --- holidays ---
  const holidayBox = h('div', { class: 'holidays' });
  const addHoliday = h('button', { type: 'button', class: 'secondary' }, 'Add holiday');
  function renderHolidays() {
    setChildren(
      holidayBox,
      holidays.length
        ? holidays.map((x, i) => {
            const remove = h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove holiday ${i + 1}` }, 'Remove');
            remove.addEventListener('click', () => {
              holidays.splice(i, 1);
              renderHolidays();
              addHoliday.focus();
            });
            return h(
              'div',
              { class: 'interval' },
              boundInput({ id: `holiday-${i}-date`, label: 'Date', obj: x, key: 'date', type: 'date' }),
              boundInput({ id: `holiday-${i}-name`, label: 'Name', obj: x, key: 'name', type: 'text', autocomplete: 'off' }),
              remove,
            );
          })
        : h('p', { class: 'closed' }, 'No holidays.'),
    );
  }
  addHoliday.addEventListener('click', () => {
    holidays.push({ date: '', name: '' });
    renderHolidays();
    holidayBox.querySelector(`#holiday-${holidays.length - 1}-date`).focus();
  });
  renderHolidays();

  // --- time zone ---
  const zones = timeZones();
  const tzList = zones.length ? h('datalist', { id: 'tz-list' }, zones.map((z) => h('option', { value: z }))) : null;
  const tzField = field({
    label: 'Time zone',
    id: 'site-timezone',
    name: 'timezone',
    value: site.timezone,
    required: true,
    list: tzList ? 'tz-list' : null,
    autocomplete: 'off',
    spellcheck: 'false',
    hint: 'IANA time zone name, e.g. Europe/Berlin.',
  });

  // --- validate + save ---
  function collect(form) {
    const business_hours = {};
    for (const [d, name] of DAYS) {
      business_hours[d] = hours[d].map((iv, i) => {
        const open = normTime(iv.open || '');
        const close = normTime(iv.close || '');
        if (!TIME_RE.test(open) || open === '24:00') throw invalid(`${name}: enter the opening time as HH:MM.`, `${d}-${i}-open`);
        if (!TIME_RE.test(close)) throw invalid(`${name}: enter the closing time as HH:MM (24:00 for midnight).`, `${d}-${i}-close`);
        if (close <= open) throw invalid(`${name}: the closing time must be after the opening time.`, `${d}-${i}-close`);
        return { open, close };
      });
    }
    const hols = holidays.map((x, i) => {
      if (!DATE_RE.test(x.date || '')) throw invalid('Each holiday needs a date.', `holiday-${i}-date`);
      return { date: x.date, name: (x.name || '').trim() };
    });
    return {
      name: form.elements.name.value.trim(),
      timezone: form.elements.timezone.value.trim(),
      business_hours,
      holidays: hols,
    };
  }

  const err = errorBox('site-error');
  const form = h(
    'form',
    { id: 'site-form' },
    field({ label: 'Name', id: 'site-name', name: 'name', value: site.name, required: true, autocomplete: 'off' }),
    tzField,
    tzList,
    h(
      'section',
      { class: 'panel' },
      h('h2', null, 'Business hours'),
      h('p', { class: 'hint' }, 'Times are local to the site, 24-hour HH:MM. A day without hours is closed.'),
      h('p', null, copyMon),
      announce,
      DAYS.map(([d]) => dayBoxes[d]),
    ),
    h('section', { class: 'panel' }, h('h2', null, 'Holidays'), h('p', { class: 'hint' }, 'The site is closed on these dates.'), holidayBox, addHoliday),
    err,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'site-save' }, 'Save site'), h('a', { href: '#/sites', class: 'button secondary' }, 'Cancel')),
  );
  onSubmit(form, err, async () => {
    const body = collect(form);
    const saved = isNew ? await api('POST', base, body) : await api('PUT', `${base}/${seg(id)}`, body);
    ctx.flash(`Site “${saved.name}” saved.`);
    ctx.go('/sites');
  });

  let del = null;
  if (!isNew) {
    del = h('button', { type: 'button', class: 'danger' }, 'Delete site');
    del.addEventListener('click', () => {
      if (!window.confirm(`Delete the site “${site.name}”? This cannot be undone.`)) return;
      busy(del, err, async () => {
        await api('DELETE', `${base}/${seg(id)}`);
        ctx.flash(`Site “${site.name}” deleted.`);
        ctx.go('/sites');
      });
    });
  }

  return h(
    'div',
    null,
    pageHeading(isNew ? 'New site' : `Edit site: ${site.name}`, del),
    h('p', null, h('a', { href: '#/sites' }, '← All sites')),
    form,
  );
}
