// SMS (org admins): the organization's SMS gateways and its recent delivery records, from
// GET/PUT /api/v1/orgs/{org}/sms and GET …/sms/messages. Same page contract as pages.js.
//
// The gateways are edited as a draft (add, edit, reorder, remove) and saved whole with PUT, in
// fail-over order. Secrets (basic password, bearer token, `secret`) are write-only: the API
// says only whether one is stored (`password_set`, `token_set`, `secret_set`); a secret input
// left empty keeps the stored one, "Remove the stored secret" clears it, and choosing no
// authentication drops a stored password or token. The API keeps secrets by gateway name, so
// a renamed gateway needs them typed again. Saving an empty list goes back to the platform's
// gateways, after a confirmation.
//
// Test hooks (stable names):
//   #sms-uses               what the organization uses (data-uses = platform | organization)
//   #sms-gateways           the list; items carry data-gateway = position (0-based)
//   .gateway-edit / .gateway-up / .gateway-down / .gateway-remove   an item's buttons
//   #gw-{i}-{field}         an item's inputs (field: name, url, format, body, sender, headers,
//                           auth, username, password, token, secret, secret-clear,
//                           provider_id_pointer); #gw-{i}-{field}-error its error line
//   #sms-add-http / #sms-add-log / #sms-save / #sms-discard / #sms-platform
//   #sms-error / #sms-status the form's error and status lines
//   #sms-messages           the delivery records; rows carry data-message = the id

import { api, seg, errorText } from './api.js';
import { h, setChildren, errorBox, statusBox, busy, showError, invalid, tableView, pageHeading, dl, fmtDate } from './ui.js';

const PURPOSE = { code: 'Code', callback: 'Callback confirmation' };
const FORMATS = [
  ['json', 'JSON'],
  ['form', 'Form (URL-encoded)'],
];
const AUTH_TYPES = [
  ['none', 'None'],
  ['bearer', 'Bearer token'],
  ['basic', 'Basic (user name and password)'],
];
// The view fields this page knows; any other one is shown as it is, read-only.
const KNOWN_HTTP = new Set(['kind', 'name', 'url', 'format', 'body', 'sender', 'headers', 'auth', 'secret_set', 'provider_id_pointer', 'receipts']);
const KNOWN_RECEIPTS = new Set(['format', 'provider_id', 'status', 'error', 'delivered', 'undelivered', 'url_path']);
const KNOWN_AUTH = new Set(['type', 'username', 'password_set', 'token_set']);
const MAX_GATEWAYS = 4;
const NEW_BODY = '{\n  "to": "{to}",\n  "text": "{text}"\n}';

const none = () => h('span', { class: 'muted' }, '—');
const setText = (flag, what) => (flag ? `${what} set` : `${what} not set`);
// A CSS class suffix from any status text the API gives.
const stateClass = (s) => `state state-${String(s).toLowerCase().replace(/[^a-z0-9_-]/g, '')}`;
// Any value as text: strings as they are, anything else as JSON.
const asText = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
const humanize = (k) => String(k).replace(/_/g, ' ');

// ---------- draft gateways ----------
// A draft keeps what the inputs edit, what the API said is stored, and the fields the page
// does not know (shown, never sent back).

function fromView(g) {
  if (g.kind !== 'http') {
    return { kind: g.kind, extra: extraOf(g, new Set(['kind'])), open: false };
  }
  const auth = g.auth || null;
  return {
    kind: 'http',
    name: g.name || '',
    storedName: g.name || '',
    url: g.url || '',
    format: g.format || 'json',
    body: JSON.stringify(g.body ?? {}, null, 2),
    sender: g.sender || '',
    headers: Object.entries(g.headers || {})
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n'),
    authType: auth ? auth.type : 'none',
    storedAuthType: auth ? auth.type : 'none',
    username: auth && auth.username ? auth.username : '',
    password: '',
    token: '',
    passwordSet: !!(auth && auth.password_set),
    tokenSet: !!(auth && auth.token_set),
    secret: '',
    secretClear: false,
    secretSet: !!g.secret_set,
    pointer: g.provider_id_pointer || '',
    // Delivery receipts: the provider posts each message's status to the receipt URL.
    receipts: !!g.receipts,
    rFormat: g.receipts ? g.receipts.format || 'json' : 'form',
    rProviderId: g.receipts ? g.receipts.provider_id || '' : '',
    rStatus: g.receipts ? g.receipts.status || '' : '',
    rError: g.receipts ? g.receipts.error || '' : '',
    rDelivered: g.receipts ? (g.receipts.delivered || []).join(', ') : 'delivered',
    rUndelivered: g.receipts ? (g.receipts.undelivered || []).join(', ') : 'undelivered, failed',
    rUrlPath: g.receipts ? g.receipts.url_path || '' : '',
    rNewKey: false,
    extra: {
      ...extraOf(g, KNOWN_HTTP),
      ...prefixed(auth ? extraOf(auth, KNOWN_AUTH) : {}, 'auth '),
      ...prefixed(g.receipts ? extraOf(g.receipts, KNOWN_RECEIPTS) : {}, 'receipts '),
    },
    open: false,
  };
}

function newHttp(n) {
  return {
    ...fromView({ kind: 'http', name: '', url: 'https://', format: 'json', body: {}, headers: {}, secret_set: false }),
    name: n ? `gateway-${n}` : 'primary',
    storedName: null,
    body: NEW_BODY,
    open: true,
  };
}

function extraOf(obj, known) {
  return Object.fromEntries(Object.entries(obj || {}).filter(([k, v]) => !known.has(k) && v != null));
}
const prefixed = (obj, p) => Object.fromEntries(Object.entries(obj).map(([k, v]) => [`${p}${k}`, v]));

// "Name: value" lines → {Name: value}.
function parseHeaders(text, id) {
  const out = {};
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf(':');
    if (at <= 0) throw invalid(`Header line ${n + 1}: write it as Name: value.`, id);
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

// The PUT body of one gateway. Secrets go only when typed (or cleared, for `secret`).
function toInput(d, i) {
  if (d.kind !== 'http') return { kind: d.kind };
  let body;
  try {
    body = JSON.parse(d.body);
  } catch {
    throw Object.assign(invalid(`Gateway ${i + 1}: the body template is not valid JSON.`, 'body'), { gateway: i });
  }
  let headers;
  try {
    headers = parseHeaders(d.headers, 'headers');
  } catch (e) {
    throw Object.assign(invalid(`Gateway ${i + 1}: ${e.message}`, 'headers'), { gateway: i });
  }
  const out = { kind: 'http', name: d.name.trim(), url: d.url.trim(), format: d.format, body, headers };
  if (d.sender.trim()) out.sender = d.sender.trim();
  if (d.pointer.trim()) out.provider_id_pointer = d.pointer.trim();
  if (d.authType === 'basic') {
    out.auth = { type: 'basic', username: d.username };
    if (d.password) out.auth.password = d.password;
  } else if (d.authType === 'bearer') {
    out.auth = { type: 'bearer' };
    if (d.token) out.auth.token = d.token;
  }
  if (d.secretClear) out.secret = '';
  else if (d.secret) out.secret = d.secret;
  if (d.receipts) {
    const values = (text) => text.split(',').map((v) => v.trim()).filter(Boolean);
    out.receipts = {
      format: d.rFormat,
      provider_id: d.rProviderId.trim(),
      status: d.rStatus.trim(),
      delivered: values(d.rDelivered),
      undelivered: values(d.rUndelivered),
    };
    if (d.rError.trim()) out.receipts.error = d.rError.trim();
    if (d.rNewKey) out.receipts.new_key = true;
  }
  return out;
}

// The full receipt URL a provider is given: this console's own address and the key's path.
const receiptUrl = (path) => `${location.origin}${path}`;

// ---------- page ----------
export async function page(ctx) {
  const base = `/api/v1/orgs/${seg(ctx.me.org.slug)}/sms`;
  let [stored, messages] = await Promise.all([api('GET', base), api('GET', `${base}/messages`)]);
  let draft = stored.gateways.map(fromView);
  let dirty = false;

  const uses = h('div', { id: 'sms-uses', role: 'status' });
  const list = h('ol', { id: 'sms-gateways', class: 'gateways', 'aria-label': 'Gateways in fail-over order' });
  const err = errorBox('sms-error');
  const status = statusBox('sms-status');
  const unsaved = h('p', { id: 'sms-unsaved', class: 'notice', hidden: true }, 'You have unsaved changes.');
  const addHttp = h('button', { type: 'button', id: 'sms-add-http', class: 'secondary' }, 'Add HTTP gateway');
  const addLog = h('button', { type: 'button', id: 'sms-add-log', class: 'secondary' }, 'Add log gateway');
  const save = h('button', { type: 'submit', id: 'sms-save' }, 'Save gateways');
  const discard = h('button', { type: 'button', id: 'sms-discard', class: 'secondary' }, 'Discard changes');
  const platform = h('button', { type: 'button', id: 'sms-platform', class: 'danger' }, 'Use the platform’s gateways');

  function renderUses() {
    uses.dataset.uses = stored.uses;
    setChildren(
      uses,
      h(
        'p',
        null,
        stored.uses === 'organization'
          ? [h('strong', null, 'This organization uses its own gateways'), `, tried in this order until one takes the message (${stored.gateways.length}).`]
          : [h('strong', null, 'This organization uses the platform’s gateways.'), ' Add a gateway below to send through your own provider account instead.'],
      ),
      stored.updated_at ? h('p', { class: 'muted' }, 'Last changed: ', fmtDate(stored.updated_at)) : null,
    );
    platform.hidden = stored.uses !== 'organization';
  }

  function changed() {
    dirty = true;
    unsaved.hidden = false;
    discard.hidden = false;
    status.textContent = '';
  }

  // ---------- the list ----------
  function render(focus) {
    setChildren(list, draft.map((d, i) => item(d, i)));
    if (!draft.length) {
      list.append(h('li', { class: 'empty' }, stored.uses === 'organization' ? 'No gateways: saving goes back to the platform’s gateways.' : 'No gateways of your own.'));
    }
    addHttp.disabled = addLog.disabled = draft.length >= MAX_GATEWAYS;
    discard.hidden = !dirty;
    if (focus) {
      const el = list.querySelector(focus) || addHttp;
      el.focus();
    }
  }

  function label(d) {
    return d.kind === 'http' ? `http:${d.name || '(no name)'}` : d.kind;
  }

  function item(d, i) {
    const title = `Gateway ${i + 1}: ${label(d)}`;
    const moveUp = h('button', { type: 'button', class: 'secondary gateway-up', disabled: i === 0, 'aria-label': `Move ${label(d)} up` }, 'Move up');
    const moveDown = h('button', { type: 'button', class: 'secondary gateway-down', disabled: i === draft.length - 1, 'aria-label': `Move ${label(d)} down` }, 'Move down');
    const remove = h('button', { type: 'button', class: 'danger gateway-remove', 'aria-label': `Remove ${label(d)}` }, 'Remove');
    const edit =
      d.kind === 'http'
        ? h('button', { type: 'button', class: 'secondary gateway-edit', 'aria-expanded': d.open ? 'true' : 'false', 'aria-controls': `gw-${i}-editor`, 'aria-label': `${d.open ? 'Close the editor of' : 'Edit'} ${label(d)}` }, d.open ? 'Close editor' : 'Edit')
        : null;
    moveUp.addEventListener('click', () => move(i, -1, '.gateway-up'));
    moveDown.addEventListener('click', () => move(i, 1, '.gateway-down'));
    remove.addEventListener('click', () => {
      draft.splice(i, 1);
      changed();
      render(`[data-gateway="${Math.min(i, draft.length - 1)}"] .gateway-remove`);
    });
    if (edit) {
      edit.addEventListener('click', () => {
        d.open = !d.open;
        render(`[data-gateway="${i}"] ${d.open ? `#gw-${i}-name` : '.gateway-edit'}`);
      });
    }
    return h(
      'li',
      { class: 'gateway panel', 'data-gateway': String(i), 'aria-labelledby': `gw-${i}-title` },
      h('h3', { id: `gw-${i}-title` }, title),
      summary(d, i),
      h('p', { class: 'field-error', id: `gw-${i}-kind-error` }),
      h('div', { class: 'actions' }, edit, moveUp, moveDown, remove),
      d.kind === 'http' && d.open ? editor(d, i) : null,
    );
  }

  function move(i, by, cls) {
    const j = i + by;
    [draft[i], draft[j]] = [draft[j], draft[i]];
    changed();
    const target = draft[j] ? j : i;
    render(`[data-gateway="${target}"] ${cls}:not(:disabled), [data-gateway="${target}"] .gateway-remove`);
  }

  // What the gateway holds, as text; secrets only as "set" or "not set".
  function summary(d, i) {
    const extras = Object.entries(d.extra || {}).map(([k, v]) => [humanize(k), asText(v)]);
    if (d.kind === 'log') {
      return dl([['Kind', 'log: messages are written to a file on the server (development only)'], ...extras]);
    }
    if (d.kind !== 'http') return dl([['Kind', String(d.kind)], ...extras]);
    let auth = 'None';
    if (d.authType === 'bearer') auth = `Bearer, ${d.token ? 'new token typed' : setText(d.tokenSet && d.storedAuthType === 'bearer' && d.name === d.storedName, 'token')}`;
    if (d.authType === 'basic')
      auth = `Basic, user ${d.username || '(none)'}, ${d.password ? 'new password typed' : setText(d.passwordSet && d.storedAuthType === 'basic' && d.name === d.storedName, 'password')}`;
    let secret = d.secretSet && d.name === d.storedName ? 'set' : 'not set';
    if (d.secretClear) secret = 'to be removed';
    else if (d.secret) secret = 'new secret typed';
    return dl([
      ['Kind', 'http'],
      ['Name', d.name || none()],
      ['URL', h('code', null, d.url)],
      ['Body', `${d.format === 'form' ? 'form' : 'JSON'} template`],
      ['Sender', d.sender || none()],
      ['Headers', d.headers.trim() ? d.headers.split('\n').filter((l) => l.trim()).map((l) => h('code', { class: 'block' }, l)) : none()],
      ['Authentication', h('span', { id: `gw-${i}-auth-state` }, auth)],
      ['Secret', h('span', { id: `gw-${i}-secret-state` }, secret)],
      ['Provider id at', d.pointer ? h('code', null, d.pointer) : none()],
      ['Delivery receipts', h('span', { id: `gw-${i}-receipts-state` }, receiptsText(d))],
      ...extras,
    ]);
  }

  function receiptsText(d) {
    if (!d.receipts) return d.rUrlPath ? 'to be turned off (the receipt URL stops working)' : 'off';
    if (!d.rUrlPath) return 'on when saved: the receipt URL is shown then';
    const url = h('code', { class: 'block' }, receiptUrl(d.rUrlPath));
    const how = `${d.rFormat === 'form' ? 'form' : 'JSON'} body; status at ${d.rStatus}; delivered: ${d.rDelivered || '—'}`;
    return [d.rNewKey ? 'a new URL is made when saved; until then:' : 'the provider posts to', url, h('span', { class: 'muted' }, how)];
  }

  // ---------- one gateway's editor ----------
  function editor(d, i) {
    const id = (f) => `gw-${i}-${f}`;
    // A labelled control bound to d[key]; its error line is #…-error.
    function control(f, labelText, key, { tag = 'input', hint, attrs = {}, options } = {}) {
      const errId = `${id(f)}-error`;
      const hintId = hint ? `${id(f)}-hint` : null;
      const a = { id: id(f), name: f, 'aria-describedby': [hintId, errId].filter(Boolean).join(' '), ...attrs };
      let el;
      if (tag === 'select') {
        el = h('select', a, options.map(([v, t]) => h('option', { value: v }, t)));
        el.value = d[key];
      } else if (tag === 'textarea') {
        el = h('textarea', { rows: '5', spellcheck: 'false', ...a });
        el.value = d[key];
      } else {
        el = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', ...a, value: d[key] });
      }
      el.addEventListener(tag === 'select' ? 'change' : 'input', () => {
        d[key] = el.value;
        changed();
        if (key === 'authType') {
          render(`#${id('auth')}`);
        }
      });
      return h('div', { class: 'field' }, h('label', { for: id(f) }, labelText), el, hint ? h('p', { class: 'hint', id: hintId }, hint) : null, h('p', { class: 'field-error', id: errId }));
    }
    const keeps = (flag, what) => (flag ? `A ${what} is stored: leave this empty to keep it.` : `No ${what} is stored.`);
    const sameName = d.storedName != null && d.name === d.storedName;
    const renamed = d.storedName != null && d.name !== d.storedName;

    const authFields = [];
    if (d.authType === 'basic') {
      authFields.push(control('username', 'User name', 'username'));
      authFields.push(
        control('password', 'Password', 'password', {
          attrs: { type: 'password', autocomplete: 'new-password' },
          hint: keeps(sameName && d.storedAuthType === 'basic' && d.passwordSet, 'password'),
        }),
      );
    } else if (d.authType === 'bearer') {
      authFields.push(
        control('token', 'Token', 'token', {
          attrs: { type: 'password', autocomplete: 'new-password' },
          hint: keeps(sameName && d.storedAuthType === 'bearer' && d.tokenSet, 'token'),
        }),
      );
    }

    const clear = h('input', { type: 'checkbox', id: id('secret-clear'), name: 'secret-clear', checked: d.secretClear });
    clear.addEventListener('change', () => {
      d.secretClear = clear.checked;
      if (clear.checked) d.secret = '';
      changed();
      render(`#${id('secret-clear')}`);
    });
    const secretStored = sameName && d.secretSet;

    return h(
      'fieldset',
      { class: 'group gateway-editor', id: id('editor') },
      h('legend', null, `Edit gateway ${i + 1}`),
      control('name', 'Name', 'name', {
        hint: renamed || (d.storedName != null && (d.secretSet || d.passwordSet || d.tokenSet))
          ? 'Lower-case letters, digits and -. Stored secrets belong to the name: after a rename, type them again.'
          : 'Lower-case letters, digits and -; records name the gateway http:NAME.',
      }),
      control('url', 'URL', 'url', { attrs: { type: 'url', inputmode: 'url' }, hint: 'https://… ({secret} may be in it). Redirects are not followed.' }),
      control('format', 'Body format', 'format', { tag: 'select', options: FORMATS }),
      control('body', 'Body template (JSON)', 'body', {
        tag: 'textarea',
        hint: 'Strings may hold {to}, {text}, {sender} and {secret}; {to} and {text} are needed. A form body is an object of strings.',
      }),
      control('sender', 'Sender', 'sender', { hint: 'What fills {sender}: a sender id or number (optional).' }),
      control('headers', 'Extra headers', 'headers', { tag: 'textarea', attrs: { rows: '3' }, hint: 'One per line, as Name: value. Values may hold the same placeholders.' }),
      h(
        'fieldset',
        { class: 'group' },
        h('legend', null, 'Authentication'),
        control('auth', 'Type', 'authType', {
          tag: 'select',
          options: AUTH_TYPES,
          hint: 'Choosing None removes a stored password or token when you save.',
        }),
        authFields,
      ),
      h(
        'fieldset',
        { class: 'group' },
        h('legend', null, 'Secret'),
        d.secretClear
          ? h('p', { class: 'hint' }, 'The stored secret is removed when you save.')
          : control('secret', 'Secret', 'secret', {
              attrs: { type: 'password', autocomplete: 'new-password' },
              hint: `What fills {secret}, such as an API key. ${keeps(secretStored, 'secret')}`,
            }),
        secretStored
          ? h(
              'div',
              { class: 'field check' },
              clear,
              h('label', { for: id('secret-clear') }, 'Remove the stored secret'),
              h('p', { class: 'field-error', id: `${id('secret-clear')}-error` }),
            )
          : null,
      ),
      control('provider_id_pointer', 'Provider’s message id at', 'pointer', { hint: 'A JSON pointer into the provider’s answer, such as /messages/0/id (optional). Receipts need it: they name the message by this id.' }),
      receiptsEditor(d, i, control),
    );
  }

  // Delivery receipts: whether the provider's status callbacks are read, and how.
  function receiptsEditor(d, i, control) {
    const id = (f) => `gw-${i}-${f}`;
    const on = h('input', { type: 'checkbox', id: id('receipts-on'), name: 'receipts-on', checked: d.receipts });
    on.addEventListener('change', () => {
      d.receipts = on.checked;
      changed();
      render(`#${id('receipts-on')}`);
    });
    const fields = [];
    if (d.receipts) {
      if (d.rUrlPath) {
        const url = receiptUrl(d.rUrlPath);
        fields.push(
          h('div', { class: 'field' }, h('p', null, 'Receipt URL (give it to the provider as the status callback; it works without signing in, so keep it private):'), h('code', { class: 'block', id: id('receipts-url') }, url)),
        );
        const fresh = h('input', { type: 'checkbox', id: id('receipts-new-key'), name: 'receipts-new-key', checked: d.rNewKey });
        fresh.addEventListener('change', () => {
          d.rNewKey = fresh.checked;
          changed();
          render(`#${id('receipts-new-key')}`);
        });
        fields.push(h('div', { class: 'field check' }, fresh, h('label', { for: id('receipts-new-key') }, 'Make a new receipt URL (the current one stops working when you save)')));
      } else {
        fields.push(h('p', { class: 'hint' }, 'The receipt URL is made when you save.'));
      }
      const where = d.rFormat === 'form' ? 'A form field name, such as ' : 'A JSON pointer, such as ';
      fields.push(
        control('receipts-format', 'Receipt body', 'rFormat', { tag: 'select', options: [['form', 'Form (application/x-www-form-urlencoded)'], ['json', 'JSON']] }),
        control('receipts-provider-id', 'Message id at', 'rProviderId', { hint: `${where}${d.rFormat === 'form' ? 'MessageSid' : '/id'}.` }),
        control('receipts-status', 'Status at', 'rStatus', { hint: `${where}${d.rFormat === 'form' ? 'MessageStatus' : '/status'}.` }),
        control('receipts-error', 'Reason at', 'rError', { hint: `${where}${d.rFormat === 'form' ? 'ErrorCode' : '/error'} (optional): kept with an undelivered status.` }),
        control('receipts-delivered', 'Statuses meaning delivered', 'rDelivered', { hint: 'Separated by commas; letter case does not matter.' }),
        control('receipts-undelivered', 'Statuses meaning undelivered', 'rUndelivered', { hint: 'Separated by commas. Other statuses (queued, sent…) are accepted and ignored.' }),
      );
    }
    return h(
      'fieldset',
      { class: 'group' },
      h('legend', null, 'Delivery receipts'),
      h('div', { class: 'field check' }, on, h('label', { for: id('receipts-on') }, 'Read the provider’s delivery receipts'), h('p', { class: 'field-error', id: `${id('receipts-on')}-error` })),
      fields,
    );
  }

  // ---------- errors next to their field ----------
  function clearFieldErrors() {
    for (const el of list.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    for (const el of list.querySelectorAll('.field-error')) el.textContent = '';
  }

  // The API names the field, and its message starts "gateway N:".
  function pinError(e) {
    const m = /^gateway (\d+):/i.exec(e.message || '');
    const i = e.gateway ?? (m ? Number(m[1]) - 1 : null);
    if (i == null || !draft[i] || !e.field) return false;
    const d = draft[i];
    if (d.kind === 'http' && !d.open) {
      d.open = true;
      render();
    }
    const ctl = list.querySelector(`#gw-${i}-${controlOf(d, e)}`);
    const line = ctl && list.querySelector(`#${ctl.id}-error`);
    if (ctl && line) {
      line.textContent = errorText(e);
      ctl.setAttribute('aria-invalid', 'true');
      ctl.focus();
      return true;
    }
    // A field without a control of its own (the kind): next to the gateway.
    const item = list.querySelector(`[data-gateway="${i}"]`);
    if (!item) return false;
    item.querySelector('.field-error').textContent = errorText(e);
    const btn = item.querySelector('button:not(:disabled)');
    if (btn) btn.focus();
    return true;
  }

  // The input an API field error is about.
  function controlOf(d, e) {
    if (e.field === 'auth') {
      if (d.authType === 'basic') return /user name/.test(e.message) ? 'username' : 'password';
      return d.authType === 'bearer' ? 'token' : 'auth';
    }
    if (e.field === 'secret' && d.secretClear) return 'secret-clear';
    if (e.field === 'receipts') {
      const m = /receipts: (provider_id|status|error|delivered|undelivered)\b/.exec(e.message || '') || /: (provider_id|status|error|delivered|undelivered):/.exec(e.message || '');
      return m ? `receipts-${m[1].replace('_id', '-id')}` : 'receipts-on';
    }
    return e.field === 'kind' ? 'kind' : e.field;
  }

  async function put(gateways) {
    const answer = await api('PUT', base, { gateways });
    stored = answer;
    draft = stored.gateways.map(fromView);
    dirty = false;
    unsaved.hidden = true;
    renderUses();
    render();
  }

  const form = h(
    'form',
    { id: 'sms-form', method: 'post', class: 'wide', 'aria-labelledby': 'sms-gateways-title' },
    h('h2', { id: 'sms-gateways-title' }, 'Gateways'),
    h(
      'p',
      { class: 'hint' },
      `At most ${MAX_GATEWAYS}, tried in this order. Secrets are never shown: only whether one is stored. `,
      'The log gateway writes messages to a file on the server, for development; the platform may refuse it.',
    ),
    list,
    h('div', { class: 'actions' }, addHttp, addLog),
    unsaved,
    err,
    h('div', { class: 'actions' }, save, discard, platform),
    status,
  );
  form.noValidate = true;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (save.disabled) return;
    err.textContent = '';
    status.textContent = '';
    clearFieldErrors();
    save.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const gateways = draft.map(toInput);
      if (!gateways.length && stored.uses === 'organization' && !confirmPlatform()) return;
      await put(gateways);
      status.textContent = gateways.length ? 'Gateways saved.' : 'The organization uses the platform’s gateways again.';
    } catch (e) {
      showError(err, e);
      pinError(e);
    } finally {
      save.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  function confirmPlatform() {
    return window.confirm(
      'Go back to the platform’s SMS gateways? The organization’s own gateways and their stored secrets are deleted; codes and callback messages are sent through the platform’s gateways from now on.',
    );
  }

  addHttp.addEventListener('click', () => {
    draft.push(newHttp(draft.length));
    changed();
    render(`#gw-${draft.length - 1}-name`);
  });
  addLog.addEventListener('click', () => {
    draft.push({ kind: 'log', extra: {}, open: false });
    changed();
    render(`[data-gateway="${draft.length - 1}"] .gateway-remove`);
  });
  discard.addEventListener('click', () => {
    draft = stored.gateways.map(fromView);
    dirty = false;
    unsaved.hidden = true;
    err.textContent = '';
    status.textContent = 'Changes discarded.';
    render('#sms-add-http');
  });
  platform.addEventListener('click', () => {
    if (!confirmPlatform()) return;
    clearFieldErrors();
    busy(platform, err, async () => {
      await put([]);
      status.textContent = 'The organization uses the platform’s gateways again.';
      addHttp.focus();
    });
  });

  // ---------- delivery records ----------
  const msgErr = errorBox('sms-messages-error');
  const refresh = h('button', { type: 'button', id: 'sms-messages-refresh', class: 'secondary' }, 'Refresh');
  const table = tableView({
    id: 'sms-messages',
    caption: 'Recent messages, newest first',
    empty: 'No messages yet.',
    rowAttrs: (m) => ({ 'data-message': m.id }),
    columns: [
      { label: 'Time', cell: (m) => fmtDate(m.created_at) },
      { label: 'Purpose', cell: (m) => PURPOSE[m.purpose] || String(m.purpose ?? '—') },
      { label: 'Number', cell: (m) => h('span', { class: 'phone' }, m.phone_masked || '—') },
      { label: 'Gateway', cell: (m) => h('code', null, m.gateway || '—') },
      {
        label: 'Status',
        cell: (m) => [
          h('span', { class: stateClass(m.status) }, String(m.status ?? '—')),
          m.updated_at && m.updated_at !== m.created_at ? h('span', { class: 'muted block' }, fmtDate(m.updated_at)) : null,
        ],
      },
      { label: 'Provider id', cell: (m) => (m.provider_id ? h('code', null, m.provider_id) : none()) },
      { label: 'Error', cell: (m) => (m.error ? String(m.error) : none()) },
    ],
  });
  table.update(messages.messages);
  refresh.addEventListener('click', () =>
    busy(refresh, msgErr, async () => {
      messages = await api('GET', `${base}/messages`);
      table.update(messages.messages);
    }),
  );

  renderUses();
  render();
  return h(
    'div',
    null,
    pageHeading('SMS'),
    h('p', null, 'How the kiosks’ one-time codes and callback confirmations are sent by SMS.'),
    uses,
    h('section', { class: 'panel' }, form),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'sms-messages-title' },
      h('h2', { id: 'sms-messages-title' }, 'Recent messages'),
      h('p', { class: 'hint' }, '“sent” means a gateway took the message; “delivered” and “undelivered” come from the provider’s delivery receipts, with the time of the receipt. A message one gateway refused and the next took shows twice.'),
      h('div', { class: 'toolbar' }, refresh),
      msgErr,
      table.el,
    ),
  );
}
