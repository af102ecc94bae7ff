// Small DOM toolkit: element builder, form fields, error display, a table
// view and the "shown once" secret box. Everything builds nodes with
// createElement/textContent, so server data is never parsed as HTML.

import { errorText } from './api.js';

// h('p', {class: 'x', onclick: fn}, 'text', child, [more children])
// Attribute rules: null/undefined/false are skipped, true sets an empty
// attribute, on* registers a listener, value/checked set the property.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

// Replace el's children; accepts the same children as h() (arrays, nulls).
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export const ROLE_LABELS = { super_admin: 'Super admin', org_admin: 'Org admin', agent: 'Agent' };
export const roleLabel = (r) => ROLE_LABELS[r] || r;

// ---------- formatting ----------

// <time> in the browser's locale; "—" for null.
export function fmtDate(s) {
  if (!s) return h('span', { class: 'muted' }, '—');
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  return h('time', { datetime: s }, d.toLocaleString());
}

export function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toLocaleString(undefined, { maximumFractionDigits: i ? 1 : 0 })} ${units[i]}`;
}

export function fmtDuration(s) {
  s = Math.floor(Number(s) || 0);
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} min`;
  if (m) return `${m} min`;
  return `${s} s`;
}

// <dl> from [[term, value], ...]
export function dl(pairs, cls = 'facts') {
  return h('dl', { class: cls }, pairs.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
}

export function pageHeading(text, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, text), extra);
}

// ---------- form fields ----------
// Every control gets a visible <label for>, and an optional hint linked
// with aria-describedby. `name` is the API field name so server field errors
// can be pinned to the right control.

function withHint(id, hint, attrs) {
  if (!hint) return null;
  attrs['aria-describedby'] = `${id}-hint`;
  return h('p', { class: 'hint', id: `${id}-hint` }, hint);
}

export function field({ label, id, hint, ...attrs }) {
  const a = { id, name: attrs.name || id, type: 'text', ...attrs };
  const hintEl = withHint(id, hint, a);
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', a), hintEl);
}

// options: [[value, label], ...]
export function selectField({ label, id, hint, options, value, ...attrs }) {
  const a = { id, name: attrs.name || id, ...attrs };
  const hintEl = withHint(id, hint, a);
  const sel = h('select', a, options.map(([v, t]) => h('option', { value: v }, t)));
  if (value != null) sel.value = value;
  return h('div', { class: 'field' }, h('label', { for: id }, label), sel, hintEl);
}

export function checkField({ label, id, hint, checked, ...attrs }) {
  const a = { id, name: attrs.name || id, type: 'checkbox', checked: !!checked, ...attrs };
  const hintEl = withHint(id, hint, a);
  return h('div', { class: 'field check' }, h('input', a), h('label', { for: id }, label), hintEl);
}

// Error line below a form: always present, empty (and hidden by CSS) when fine.
export const errorBox = (id) => h('p', { id, class: 'form-error', role: 'alert' });
// Polite success/status line, same idea.
export const statusBox = (id) => h('p', { id, class: 'form-ok', role: 'status' });

// A client-side validation failure, shown like a server one.
export function invalid(message, field = null) {
  return Object.assign(new Error(message), { field });
}

export function showError(box, err) {
  if (err && err.handled) return; // already dealt with (e.g. redirected to sign-in)
  box.textContent = errorText(err);
}

// Wire a form: on submit run `action`; while it runs the submit button is
// disabled; a thrown error is shown in `errEl` and, when the server named a
// field, that control is marked invalid and focused.
export function onSubmit(form, errEl, action) {
  form.noValidate = true; // the server is the judge; we show its messages
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector('button[type="submit"]');
    if (btn && btn.disabled) return;
    errEl.textContent = '';
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    if (btn) btn.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      await action();
    } catch (err) {
      showError(errEl, err);
      const ctl = err && err.field && form.elements.namedItem(err.field);
      if (ctl && ctl.focus) {
        ctl.setAttribute('aria-invalid', 'true');
        ctl.focus();
      }
    } finally {
      if (btn) btn.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });
}

// Run an async row action from a button, disabling it meanwhile.
export async function busy(btn, errEl, action) {
  btn.disabled = true;
  errEl.textContent = '';
  try {
    await action();
  } catch (err) {
    showError(errEl, err);
  } finally {
    btn.disabled = false;
  }
}

// ---------- table view ----------
// columns: [{label, cell: row => Node|string, class?}]
// Returns {el, update(rows)}; update() re-renders the body only. On narrow
// screens CSS turns rows into cards, using each cell's data-label.
export function tableView({ id, caption, columns, rowAttrs, empty }) {
  const tbody = h('tbody');
  const capId = `${id}-caption`;
  const table = h(
    'table',
    { id },
    h('caption', { id: capId }, caption),
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    tbody,
  );
  const emptyEl = h('p', { class: 'empty', hidden: true }, empty || 'Nothing here yet.');
  // The wrapper scrolls horizontally when needed; focusable so keyboard
  // users can scroll it too.
  const wrap = h('div', { class: 'table-wrap', role: 'region', 'aria-labelledby': capId, tabindex: '0' }, table);
  const el = h('div', { class: 'table-block' }, wrap, emptyEl);

  function update(rows) {
    tbody.replaceChildren(
      ...rows.map((row) => {
        const tr = h('tr', rowAttrs ? rowAttrs(row) : null);
        for (const c of columns) tr.append(h('td', { 'data-label': c.label, class: c.class }, c.cell(row)));
        return tr;
      }),
    );
    emptyEl.hidden = rows.length > 0;
  }
  return { el, update };
}

// ---------- one-time secret ----------
// A clearly marked box showing a secret that the server returns only once,
// with a copy button. `id` goes on the element holding exactly the secret.
export function secretBox({ id, title, secret, note, hint }) {
  const code = h('code', { id, class: 'secret-value' }, secret);
  const copied = h('span', { class: 'copy-status', role: 'status' });
  const copyBtn = h('button', { type: 'button', class: 'secondary' }, 'Copy');
  copyBtn.addEventListener('click', async () => {
    copied.textContent = (await copyText(secret, code)) ? 'Copied.' : 'Copy failed: select the text and copy it by hand.';
  });
  const box = h(
    'section',
    { class: 'secret-box', tabindex: '-1', 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title` }, title),
    h('p', null, note || 'Copy it now. It will not be shown again.'),
    h('div', { class: 'secret-row' }, code, copyBtn, copied),
    hint ? h('p', { class: 'hint' }, hint) : null,
    h('button', { type: 'button', class: 'link-button', onclick: () => box.remove() }, 'I have saved it — hide'),
  );
  return box;
}

// Show a secret box inside `slot` (replacing any previous one) and move focus
// to it so screen readers announce it.
export function showSecret(slot, opts) {
  const box = secretBox(opts);
  slot.replaceChildren(box);
  box.focus();
}

async function copyText(text, node) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall through to the selection-based fallback */
  }
  try {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    return document.execCommand('copy');
  } catch {
    return false;
  }
}
