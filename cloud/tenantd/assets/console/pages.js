// Console pages (all but the sites pages, see sites.js).
// Each page is `async (ctx) => Node`: it loads what it needs, then returns
// the finished content for <main>; the router (app.js) swaps it in, sets
// data-page and moves focus to the <h1>. A load error rejects, and the
// router shows it with a retry button.

import { api, seg } from './api.js';
import {
  h,
  field,
  selectField,
  checkField,
  errorBox,
  statusBox,
  onSubmit,
  busy,
  invalid,
  tableView,
  showSecret,
  pageHeading,
  dl,
  fmtDate,
  fmtBytes,
  fmtDuration,
  roleLabel,
} from './ui.js';

const orgBase = (ctx) => `/api/v1/orgs/${seg(ctx.me.org.slug)}`;
const ROLE_OPTIONS = [
  ['agent', 'Agent'],
  ['org_admin', 'Org admin'],
];
const submit = (id, text) => h('button', { type: 'submit', id }, text);
const section = (title, ...body) => h('section', { class: 'panel' }, h('h2', null, title), body);

// Parse an optional whole-number input ("" → undefined).
function intValue(input, { optional = false, message }) {
  const raw = input.value.trim();
  if (raw === '' && optional) return undefined;
  const n = Number(raw);
  if (raw === '' || !Number.isInteger(n)) throw invalid(message, input.name);
  return n;
}

// After a table re-render, focus the button in the same position as `btn`
// within the row matching `selector`, so keyboard users keep their place.
function refocus(container, selector, btn) {
  const old = btn.closest('tr');
  const i = old ? [...old.querySelectorAll('button')].indexOf(btn) : 0;
  const next = container.querySelectorAll(`${selector} button`);
  (next[i] || next[0] || container.querySelector('.table-wrap')).focus();
}

// ---------- sign in ----------
export async function login(ctx) {
  const err = errorBox('login-error');
  const form = h(
    'form',
    { id: 'login-form' },
    field({ label: 'Email', id: 'login-email', name: 'email', type: 'email', autocomplete: 'username', required: true }),
    field({ label: 'Password', id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    err,
    submit('login-submit', 'Sign in'),
  );
  onSubmit(form, err, async () => {
    const res = await api('POST', '/api/v1/auth/login', {
      email: form.elements.email.value.trim(),
      password: form.elements.password.value,
    });
    ctx.afterLogin(res.me);
  });
  return h('div', { class: 'narrow' }, pageHeading('Sign in'), form);
}

// ---------- change password ----------
export async function password(ctx) {
  const user = ctx.me.user;
  if (!user) {
    return h('div', null, pageHeading('Change password'), h('p', null, 'API tokens have no password.'));
  }
  const forced = !!user.must_change_password;
  const err = errorBox('pw-error');
  const done = statusBox('pw-done');
  const form = h(
    'form',
    { id: 'pw-form' },
    // Lets password managers know whose password this is.
    h('input', { type: 'text', name: 'username', autocomplete: 'username', value: user.email, hidden: true }),
    field({ label: 'Current password', id: 'pw-current', name: 'current_password', type: 'password', autocomplete: 'current-password', required: true }),
    field({
      label: 'New password',
      id: 'pw-new',
      name: 'new_password',
      type: 'password',
      autocomplete: 'new-password',
      required: true,
      hint: '8 to 128 characters. Common passwords are refused.',
    }),
    field({ label: 'Confirm new password', id: 'pw-confirm', name: 'confirm', type: 'password', autocomplete: 'new-password', required: true }),
    err,
    submit('pw-submit', 'Change password'),
  );
  const els = form.elements;
  onSubmit(form, err, async () => {
    done.textContent = '';
    if (els.new_password.value !== els.confirm.value) {
      throw invalid('The new password and its confirmation do not match.', 'confirm');
    }
    await api('POST', '/api/v1/auth/password', {
      current_password: els.current_password.value,
      new_password: els.new_password.value,
    });
    form.reset();
    els.username.value = user.email;
    // Refresh "me" so the must-change flag (and the header) are current.
    try {
      ctx.setMe(await api('GET', '/api/v1/me'));
    } catch {
      user.must_change_password = false;
      ctx.setMe(ctx.me);
    }
    done.replaceChildren(
      'Your password has been changed. Your other sessions have been signed out. ',
      h('a', { href: '#/' }, forced ? 'Continue to the console' : 'Back to the home page'),
    );
  });
  return h(
    'div',
    { class: 'narrow' },
    pageHeading('Change password'),
    forced ? h('p', { class: 'notice' }, 'Choose a new password to continue.') : null,
    form,
    done,
  );
}

// ---------- home ----------
export async function home(ctx) {
  const { me } = ctx;
  const u = me.user;
  const orgName = me.org ? me.org.name : null;
  const whoami = u
    ? h('p', { id: 'whoami' }, 'Signed in as ', h('strong', null, u.email), '.')
    : h('p', { id: 'whoami' }, `Signed in with an API token (${roleLabel(me.role)}).`);
  const profile = dl([
    ['Name', u ? u.name : '—'],
    ['Email', u ? u.email : '—'],
    ['Role', roleLabel(me.role)],
    ['Organization', orgName || '—'],
  ]);

  const linkList = (items) =>
    h('ul', { class: 'link-list' }, items.map(([href, text, desc]) => h('li', null, h('a', { href }, text), h('span', null, desc))));
  let roleBlock = null;
  if (me.role === 'agent') {
    roleBlock = h('p', null, `You are signed in as an agent of ${orgName || 'your organization'}.`);
  } else if (me.role === 'org_admin' && me.org) {
    roleBlock = section(
      `Manage ${orgName}`,
      linkList([
        ['#/calls', 'Calls', 'Take calls from the kiosks: availability, incoming calls, the video call.'],
        ['#/records', 'Call records', 'Finished calls with their outcome, totals and a CSV export.'],
        ['#/callbacks', 'Callbacks', 'Customers to call back.'],
        ['#/users', 'Users', 'Invite admins and agents, change roles, disable accounts.'],
        ['#/sites', 'Sites', 'Locations with their time zone, opening hours and holidays.'],
        ['#/sms', 'SMS', 'The gateways that send the kiosks’ codes, and the recent messages.'],
        ['#/erase', 'Erase a customer', 'Forget a customer’s phone number on request.'],
        ['#/settings', 'Settings', 'Call recording, how long recordings are kept, how long calls wait.'],
        ['#/tokens', 'API tokens', 'Credentials for programs that use the API.'],
        ['#/audit', 'Audit log', 'Who changed what, with a tamper-evident chain.'],
      ]),
    );
  } else if (me.role === 'super_admin') {
    roleBlock = section('Platform', linkList([['#/orgs', 'Organizations', 'Create organizations, enable or disable them, platform health.']]));
  }
  return h(
    'div',
    null,
    pageHeading('Home'),
    whoami,
    section('Your profile', profile, u ? h('p', null, h('a', { href: '#/password' }, 'Change password')) : null),
    roleBlock,
  );
}

// ---------- organizations (super admin) ----------
export async function orgs() {
  const [health, data] = await Promise.all([api('GET', '/api/v1/platform/health'), api('GET', '/api/v1/orgs')]);
  const list = data.orgs;
  const actionErr = errorBox('orgs-action-error');

  const table = tableView({
    id: 'orgs-table',
    caption: 'Organizations',
    empty: 'No organizations yet.',
    rowAttrs: (o) => ({ 'data-slug': o.slug, class: o.disabled ? 'is-disabled' : null }),
    columns: [
      { label: 'Slug', cell: (o) => h('code', null, o.slug) },
      { label: 'Name', cell: (o) => o.name },
      { label: 'Users', cell: (o) => String(o.users), class: 'num' },
      { label: 'Created', cell: (o) => fmtDate(o.created_at) },
      { label: 'Status', cell: (o) => (o.disabled ? 'Disabled' : 'Active') },
      { label: 'Actions', cell: (o) => orgActions(o) },
    ],
  });

  function orgActions(o) {
    const btn = h('button', { type: 'button', class: 'secondary', 'aria-label': `${o.disabled ? 'Enable' : 'Disable'} ${o.name}` }, o.disabled ? 'Enable' : 'Disable');
    btn.addEventListener('click', () => {
      if (!o.disabled && !window.confirm(`Disable the organization “${o.name}” (${o.slug})?`)) return;
      busy(btn, actionErr, async () => {
        const updated = await api('PATCH', `/api/v1/orgs/${seg(o.slug)}`, { disabled: !o.disabled });
        list[list.indexOf(o)] = updated;
        table.update(list);
        refocus(table.el, `tr[data-slug="${CSS.escape(updated.slug)}"]`, btn);
      });
    });
    return btn;
  }
  table.update(list);

  const err = errorBox('org-error');
  const secretSlot = h('div');
  const form = h(
    'form',
    { id: 'org-form' },
    field({ label: 'Slug', id: 'org-slug', name: 'slug', required: true, autocapitalize: 'none', spellcheck: 'false', hint: 'Short identifier used in URLs, e.g. demo-shop.' }),
    field({ label: 'Name', id: 'org-name', name: 'name', required: true }),
    field({ label: 'Administrator email', id: 'org-admin-email', name: 'admin_email', type: 'email', required: true, autocomplete: 'off' }),
    field({ label: 'Administrator name', id: 'org-admin-name', name: 'admin_name', required: true, autocomplete: 'off' }),
    err,
    submit('org-create', 'Create organization'),
  );
  onSubmit(form, err, async () => {
    const v = (n) => form.elements[n].value.trim();
    const res = await api('POST', '/api/v1/orgs', {
      slug: v('slug'),
      name: v('name'),
      admin_email: v('admin_email'),
      admin_name: v('admin_name'),
    });
    list.push(res.org);
    table.update(list);
    form.reset();
    showSecret(secretSlot, {
      id: 'admin-password',
      title: `Initial password for ${res.admin.email}`,
      secret: res.admin_password,
      note: `Give this password to the administrator of ${res.org.name}. It will not be shown again.`,
    });
  });

  return h(
    'div',
    null,
    pageHeading('Organizations'),
    section(
      'Platform health',
      dl([
        ['Organizations', String(health.orgs)],
        ['Users', String(health.users)],
        ['Active sessions', String(health.active_sessions)],
        ['Database size', fmtBytes(health.db_bytes)],
        ['Uptime', fmtDuration(health.uptime_s)],
        ['Version', health.version],
      ], 'facts stats'),
    ),
    section('New organization', form, secretSlot),
    section('All organizations', actionErr, table.el),
  );
}

// ---------- users (org admin) ----------
export async function users(ctx) {
  const base = `${orgBase(ctx)}/users`;
  const list = (await api('GET', base)).users;
  const selfId = ctx.me.user ? ctx.me.user.id : null;
  const actionErr = errorBox('users-action-error');

  const table = tableView({
    id: 'users-table',
    caption: `Users of ${ctx.me.org.name}`,
    empty: 'No users yet.',
    rowAttrs: (u) => ({ 'data-email': u.email, 'data-user-id': u.id, class: u.disabled ? 'is-disabled' : null }),
    columns: [
      { label: 'Email', cell: (u) => [u.email, u.id === selfId ? h('span', { class: 'badge' }, 'you') : null] },
      { label: 'Name', cell: (u) => u.name },
      { label: 'Role', cell: (u) => roleLabel(u.role) },
      { label: 'Languages', cell: (u) => languagesCell(u) },
      {
        label: 'Status',
        cell: (u) => [u.disabled ? 'Disabled' : 'Active', u.must_change_password ? h('span', { class: 'muted block' }, 'Must change password') : null],
      },
      { label: 'Created', cell: (u) => fmtDate(u.created_at) },
      { label: 'Last sign-in', cell: (u) => fmtDate(u.last_sign_in_at) },
      { label: 'Actions', cell: (u) => userActions(u) },
    ],
  });

  // The languages a user takes calls in, editable in place (empty: any call).
  function languagesCell(u) {
    const id = `user-langs-${u.id}`;
    const input = h('input', { id, name: 'languages', type: 'text', value: (u.languages || []).join(', '), autocomplete: 'off', spellcheck: 'false' });
    const save = h('button', { type: 'submit', class: 'secondary' }, 'Save');
    const form = h(
      'form',
      { class: 'inline-form', 'data-user-id': u.id },
      h('label', { for: id, class: 'visually-hidden' }, `Languages of ${u.email}`),
      input,
      save,
    );
    onSubmit(form, actionErr, async () => {
      const languages = input.value.split(',').map((t) => t.trim()).filter(Boolean);
      const updated = await api('PATCH', `${base}/${seg(u.id)}`, { languages });
      list[list.indexOf(u)] = updated;
      table.update(list);
      const again = table.el.querySelector(`#user-langs-${CSS.escape(String(updated.id))}`);
      if (again) again.focus();
    });
    const shown = (u.languages || []).length ? u.languages.join(', ') : 'Any';
    return h('details', null, h('summary', { 'aria-label': `Languages of ${u.email}: ${shown}. Change` }, shown), form);
  }

  // No disable/demote on one's own row: the server refuses it anyway.
  function userActions(u) {
    if (u.id === selfId) return h('span', { class: 'muted' }, '—');
    const patch = (btn, body) =>
      busy(btn, actionErr, async () => {
        const updated = await api('PATCH', `${base}/${seg(u.id)}`, body);
        list[list.indexOf(u)] = updated;
        table.update(list);
        refocus(table.el, `tr[data-user-id="${CSS.escape(String(updated.id))}"]`, btn);
      });
    const newRole = u.role === 'agent' ? 'org_admin' : 'agent';
    const roleBtn = h('button', { type: 'button', class: 'secondary', 'aria-label': `Make ${u.email} ${roleLabel(newRole).toLowerCase()}` }, `Make ${roleLabel(newRole).toLowerCase()}`);
    roleBtn.addEventListener('click', () => patch(roleBtn, { role: newRole }));
    const disBtn = h('button', { type: 'button', class: 'secondary', 'aria-label': `${u.disabled ? 'Enable' : 'Disable'} ${u.email}` }, u.disabled ? 'Enable' : 'Disable');
    disBtn.addEventListener('click', () => {
      if (!u.disabled && !window.confirm(`Disable ${u.email}? They will no longer be able to sign in.`)) return;
      patch(disBtn, { disabled: !u.disabled });
    });
    return h('div', { class: 'actions' }, roleBtn, disBtn);
  }
  table.update(list);

  const err = errorBox('user-error');
  const secretSlot = h('div');
  const form = h(
    'form',
    { id: 'user-form' },
    field({ label: 'Email', id: 'user-email', name: 'email', type: 'email', required: true, autocomplete: 'off' }),
    field({ label: 'Name', id: 'user-name', name: 'name', required: true, autocomplete: 'off' }),
    selectField({ label: 'Role', id: 'user-role', name: 'role', options: ROLE_OPTIONS, value: 'agent' }),
    field({
      label: 'Languages (optional)',
      id: 'user-languages',
      name: 'languages',
      autocomplete: 'off',
      spellcheck: 'false',
      hint: 'Language tags separated by commas, e.g. fr, en-GB. Calls in other languages ring this user only when no available colleague speaks them. Leave empty to take any call.',
    }),
    field({
      label: 'Initial password (optional)',
      id: 'user-password',
      name: 'password',
      type: 'password',
      autocomplete: 'new-password',
      hint: 'Leave empty to have one generated.',
    }),
    err,
    submit('user-create', 'Add user'),
  );
  onSubmit(form, err, async () => {
    const els = form.elements;
    const body = { email: els.email.value.trim(), name: els.name.value.trim(), role: els.role.value };
    const languages = els.languages.value.split(',').map((t) => t.trim()).filter(Boolean);
    if (languages.length) body.languages = languages;
    if (els.password.value) body.password = els.password.value;
    const res = await api('POST', base, body);
    list.push(res.user);
    table.update(list);
    form.reset();
    showSecret(secretSlot, { id: 'initial-password', title: `Initial password for ${res.user.email}`, secret: res.initial_password });
  });

  return h('div', null, pageHeading('Users'), section('Add a user', form, secretSlot), section('All users', actionErr, table.el));
}

// ---------- settings (org admin) ----------
export async function settings(ctx) {
  const url = `${orgBase(ctx)}/settings`;
  const s = await api('GET', url);
  const err = errorBox('settings-error');
  const saved = statusBox('settings-saved');
  const updated = h('p', { class: 'muted' }, 'Last changed: ', fmtDate(s.updated_at));

  const form = h(
    'form',
    { id: 'settings-form' },
    selectField({
      label: 'Call recording',
      id: 'settings-recording',
      name: 'recording',
      value: s.recording,
      options: [
        ['off', 'Off'],
        ['on_with_consent', 'On, with the customer’s consent'],
      ],
      hint: 'Even when on, a call is recorded only if the customer agrees on the kiosk screen.',
    }),
    field({
      label: 'Keep recordings for (days)',
      id: 'settings-retention',
      name: 'retention_days',
      type: 'number',
      inputmode: 'numeric',
      min: '1',
      max: '3650',
      value: String(s.retention_days),
      hint: 'Recordings older than this are deleted (1 to 3650 days).',
    }),
    field({
      label: 'Calls wait for an agent at most (seconds)',
      id: 'settings-queue-timeout',
      name: 'queue_timeout_s',
      type: 'number',
      inputmode: 'numeric',
      min: '30',
      max: '3600',
      value: String(s.queue_timeout_s ?? 180),
      hint: 'After this, an unanswered call ends and the customer is offered a callback (30 to 3600 s).',
    }),
    checkField({
      label: 'Technicians may review recordings',
      id: 'settings-review',
      name: 'technicians_may_review_recordings',
      checked: s.technicians_may_review_recordings,
      hint: 'When ticked, agents can play back the recordings of calls, not only admins.',
    }),
    err,
    submit('settings-save', 'Save settings'),
    saved,
  );
  onSubmit(form, err, async () => {
    saved.textContent = '';
    const els = form.elements;
    const next = await api('PUT', url, {
      recording: els.recording.value,
      retention_days: intValue(els.retention_days, { message: 'Enter the number of days as a whole number.' }),
      technicians_may_review_recordings: els.technicians_may_review_recordings.checked,
      queue_timeout_s: intValue(els.queue_timeout_s, { message: 'Enter the waiting time in seconds, as a whole number.' }),
    });
    updated.replaceChildren('Last changed: ', fmtDate(next.updated_at));
    saved.textContent = 'Settings saved.';
  });
  return h('div', { class: 'narrow' }, pageHeading('Settings'), updated, form);
}

// ---------- API tokens (org admin) ----------
export async function tokens(ctx) {
  const base = `${orgBase(ctx)}/api-tokens`;
  let list = (await api('GET', base)).tokens;
  const actionErr = errorBox('tokens-action-error');

  const status = (t) => {
    if (t.revoked_at) return ['Revoked ', fmtDate(t.revoked_at)];
    if (t.expires_at && new Date(t.expires_at) <= new Date()) return 'Expired';
    return 'Active';
  };
  const table = tableView({
    id: 'tokens-table',
    caption: 'API tokens',
    empty: 'No API tokens yet.',
    rowAttrs: (t) => ({ 'data-token-id': t.id, class: t.revoked_at ? 'is-revoked' : null }),
    columns: [
      { label: 'Name', cell: (t) => t.name },
      { label: 'Role', cell: (t) => roleLabel(t.role) },
      { label: 'Prefix', cell: (t) => h('code', null, `${t.prefix}…`) },
      { label: 'Created', cell: (t) => fmtDate(t.created_at) },
      { label: 'Expires', cell: (t) => (t.expires_at ? fmtDate(t.expires_at) : 'Never') },
      { label: 'Last used', cell: (t) => (t.last_used_at ? fmtDate(t.last_used_at) : 'Never') },
      { label: 'Created by', cell: (t) => (t.created_by == null ? '—' : String(t.created_by)) },
      { label: 'Status', cell: status },
      { label: 'Actions', cell: (t) => (t.revoked_at ? h('span', { class: 'muted' }, '—') : revokeButton(t)) },
    ],
  });

  function revokeButton(t) {
    const btn = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke token ${t.name}` }, 'Revoke');
    btn.addEventListener('click', () => {
      if (!window.confirm(`Revoke the token “${t.name}”? Programs using it will stop working at once.`)) return;
      busy(btn, actionErr, async () => {
        await api('DELETE', `${base}/${seg(t.id)}`);
        list = (await api('GET', base)).tokens; // to get revoked_at
        table.update(list);
        table.el.querySelector('.table-wrap').focus();
      });
    });
    return btn;
  }
  table.update(list);

  const err = errorBox('token-error');
  const secretSlot = h('div');
  const form = h(
    'form',
    { id: 'token-form' },
    field({ label: 'Name', id: 'token-name', name: 'name', required: true, autocomplete: 'off', hint: 'What the token is for, e.g. "CRM sync".' }),
    selectField({ label: 'Role', id: 'token-role', name: 'role', options: ROLE_OPTIONS, value: 'agent' }),
    field({
      label: 'Expires after (days, optional)',
      id: 'token-expires',
      name: 'expires_in_days',
      type: 'number',
      inputmode: 'numeric',
      min: '1',
      max: '3650',
      hint: '1 to 3650. Leave empty for a token that does not expire.',
    }),
    err,
    submit('token-create', 'Create token'),
  );
  onSubmit(form, err, async () => {
    const els = form.elements;
    const body = { name: els.name.value.trim(), role: els.role.value };
    const days = intValue(els.expires_in_days, { optional: true, message: 'Enter the number of days as a whole number, or leave it empty.' });
    if (days !== undefined) body.expires_in_days = days;
    const res = await api('POST', base, body);
    list.unshift(res.token);
    table.update(list);
    form.reset();
    showSecret(secretSlot, {
      id: 'token-secret',
      title: `Secret of the token “${res.token.name}”`,
      secret: res.secret,
      hint: ['Send it in the HTTP header ', h('code', null, 'Authorization: Bearer <secret>'), '.'],
    });
  });

  return h('div', null, pageHeading('API tokens'), section('New token', form, secretSlot), section('All tokens', actionErr, table.el));
}

// ---------- audit log (org admin) ----------
export async function audit(ctx) {
  const base = `${orgBase(ctx)}/audit`;
  let entries = [];
  let next = null;
  const err = errorBox('audit-error');

  const table = tableView({
    id: 'audit-table',
    caption: 'Audit log, newest first',
    empty: 'No entries yet.',
    rowAttrs: (e) => ({ 'data-seq': e.seq }),
    columns: [
      { label: 'No.', cell: (e) => String(e.seq), class: 'num' },
      { label: 'Time', cell: (e) => fmtDate(e.at) },
      { label: 'Actor', cell: (e) => e.actor ?? h('span', { class: 'muted' }, 'system') },
      { label: 'Action', cell: (e) => h('code', null, e.action) },
      { label: 'Target', cell: (e) => e.target ?? '—' },
      { label: 'Details', cell: (e) => (e.detail && Object.keys(e.detail).length ? h('code', { class: 'json' }, JSON.stringify(e.detail)) : '—') },
      { label: 'Hash', cell: (e) => h('code', { title: e.hash }, String(e.hash).slice(0, 12)) },
    ],
  });

  const older = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Older');
  async function load() {
    const q = next == null ? '?limit=50' : `?limit=50&before=${encodeURIComponent(next)}`;
    const page = await api('GET', base + q);
    entries = entries.concat(page.entries);
    next = page.next_before ?? null;
    table.update(entries);
    older.hidden = next == null;
  }
  older.addEventListener('click', () =>
    busy(older, err, async () => {
      await load();
      if (older.hidden) table.el.querySelector('.table-wrap').focus();
    }),
  );
  await load();

  const result = h('p', { id: 'audit-verify-result', role: 'status' });
  const verify = h('button', { type: 'button', id: 'audit-verify', class: 'secondary' }, 'Verify chain');
  verify.addEventListener('click', () =>
    busy(verify, err, async () => {
      result.textContent = '';
      const r = await api('GET', `${base}/verify`);
      result.className = r.ok ? 'form-ok' : 'form-error';
      result.textContent = r.ok
        ? `Chain intact: all ${r.entries} entries verified.`
        : `Chain broken: entry ${r.first_bad_seq} does not match its hash (${r.entries} entries checked).`;
    }),
  );

  return h(
    'div',
    null,
    pageHeading('Audit log'),
    h('div', { class: 'toolbar' }, verify, result),
    err,
    table.el,
    h('p', null, older),
  );
}
