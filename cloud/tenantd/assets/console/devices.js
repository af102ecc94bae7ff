// Devices (org admin): the fleet list, claiming a kiosk by its activation
// code, enrollment tokens, and one device's page (status, telemetry, config,
// commands, revoke). Same page contract as pages.js.

import { api, seg } from './api.js';
import {
  h,
  field,
  selectField,
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
  fmtDuration,
} from './ui.js';

const orgBase = (ctx) => `/api/v1/orgs/${seg(ctx.me.org.slug)}`;
const submit = (id, text) => h('button', { type: 'submit', id }, text);
const section = (title, ...body) => h('section', { class: 'panel' }, h('h2', null, title), body);
const none = () => h('span', { class: 'muted' }, '—');
const orNone = (v) => (v == null || v === '' ? none() : String(v));

// A whole number ≥ 0 from an input. Ranges are left to the server, which
// reports every problem at once.
function wholeNumber(input, message) {
  const raw = input.value.trim();
  const n = Number(raw);
  if (raw === '' || !Number.isInteger(n) || n < 0) throw invalid(message, input.name);
  return n;
}

// Site id → name, for tables and pickers.
function siteNames(sites) {
  const byId = new Map(sites.map((s) => [s.id, s.name]));
  return (id) => (id == null ? 'No site' : byId.get(id) ?? `Site ${id}`);
}
const siteOptions = (sites) => sites.map((s) => [String(s.id), s.name]);

// The newest telemetry, when the device sent any (it is the device's own
// JSON: every value is shown as text).
function telemetryOf(d) {
  const t = d.telemetry;
  return t && typeof t === 'object' && !Array.isArray(t) ? t : null;
}

// Online / Offline / Revoked, as a text badge (colour is only a hint).
function deviceState(d) {
  if (d.revoked_at) return ['revoked', 'Revoked'];
  return d.online ? ['online', 'Online'] : ['offline', 'Offline'];
}
function stateBadge([key, text]) {
  return h('span', { class: `state state-${key}` }, text);
}

const ENROLLED_VIA = { token: 'Enrollment token', activation_code: 'Activation code' };
const humanize = (s) => {
  const t = String(s).replace(/_/g, ' ');
  return t.charAt(0).toUpperCase() + t.slice(1);
};

// ---------- list ----------
export async function list(ctx) {
  const base = orgBase(ctx);
  const [devData, siteData, tokData] = await Promise.all([
    api('GET', `${base}/devices`),
    api('GET', `${base}/sites`),
    api('GET', `${base}/enrollment-tokens`),
  ]);
  let devices = devData.devices;
  const sites = siteData.sites;
  let etokens = tokData.tokens;
  const siteName = siteNames(sites);

  // --- devices ---
  const listErr = errorBox('devices-error');
  const table = tableView({
    id: 'devices-table',
    caption: 'Devices',
    empty: 'No devices yet. Claim a kiosk below, or give it an enrollment token.',
    rowAttrs: (d) => ({ 'data-device': d.id, class: d.revoked_at ? 'is-revoked' : null }),
    columns: [
      { label: 'Device', cell: (d) => h('a', { href: `#/devices/${seg(d.id)}`, class: 'nowrap' }, d.id) },
      { label: 'Site', cell: (d) => (d.site_id == null ? h('span', { class: 'muted' }, 'No site') : siteName(d.site_id)) },
      { label: 'Status', cell: (d) => stateBadge(deviceState(d)) },
      { label: 'Last seen', cell: (d) => (d.last_seen_at ? fmtDate(d.last_seen_at) : h('span', { class: 'muted' }, 'Never')) },
      { label: 'Firmware', cell: (d) => orNone((telemetryOf(d) || {}).firmware ?? d.firmware) },
      {
        label: 'Config',
        cell: (d) => [
          d.reported_version == null ? none() : `Version ${d.reported_version}`,
          d.reported_errors ? [' ', h('span', { class: 'state state-failed' }, 'Refused a version')] : null,
        ],
      },
      { label: 'Outbox', cell: (d) => orNone((telemetryOf(d) || {}).outbox_depth), class: 'num' },
      {
        label: 'Camera / encoder',
        cell: (d) => {
          const t = telemetryOf(d);
          if (!t) return none();
          return [h('span', { class: 'block' }, 'Camera: ', orNone(t.camera)), h('span', { class: 'block' }, 'Encoder: ', orNone(t.encoder))];
        },
      },
    ],
  });
  table.update(devices);

  // Re-read the list (after a claim, or on request); false if that failed.
  async function reload() {
    try {
      devices = (await api('GET', `${base}/devices`)).devices;
      table.update(devices);
      return true;
    } catch {
      return false;
    }
  }
  const refresh = h('button', { type: 'button', id: 'devices-refresh', class: 'secondary' }, 'Refresh');
  refresh.addEventListener('click', () =>
    busy(refresh, listErr, async () => {
      devices = (await api('GET', `${base}/devices`)).devices;
      table.update(devices);
    }),
  );

  const noSites = () =>
    h('p', { class: 'notice' }, 'Devices belong to a site. ', h('a', { href: '#/sites/new' }, 'Create a site'), ' first.');

  // --- claim by activation code ---
  const claimErr = errorBox('claim-error');
  const claimDone = statusBox('claim-done');
  let claimBlock = noSites();
  if (sites.length) {
    const form = h(
      'form',
      { id: 'claim-form' },
      field({
        label: 'Activation code',
        id: 'claim-code',
        name: 'code',
        required: true,
        autocomplete: 'off',
        autocapitalize: 'characters',
        spellcheck: 'false',
        placeholder: 'K7QM-X2PD',
        hint: 'The code on the kiosk’s screen. Case and the dash do not matter; a code is valid for 30 minutes.',
      }),
      selectField({ label: 'Site', id: 'claim-site', name: 'site_id', options: siteOptions(sites) }),
      claimErr,
      submit('claim-submit', 'Claim kiosk'),
    );
    onSubmit(form, claimErr, async () => {
      claimDone.textContent = '';
      const els = form.elements;
      const code = els.code.value.trim();
      if (!code) throw invalid('Enter the activation code shown on the kiosk.', 'code');
      const res = await api('POST', `${base}/devices/claim`, { code, site_id: Number(els.site_id.value) });
      els.code.value = '';
      const listed = await reload();
      claimDone.replaceChildren(
        'Kiosk ',
        h('a', { href: `#/devices/${seg(res.id)}` }, res.id),
        ` (${res.board}, serial ${res.hardware_serial}) is enrolled in ${siteName(res.site_id)}.`,
        listed ? '' : ' Reload the page to see it in the list.',
      );
    });
    claimBlock = [form, claimDone];
  }

  // --- enrollment tokens ---
  const tokErr = errorBox('etokens-action-error');
  const tokenStatus = (t) => {
    if (t.revoked_at) return ['Revoked ', fmtDate(t.revoked_at)];
    if (new Date(t.expires_at) <= new Date()) return 'Expired';
    if (t.uses_left <= 0) return 'Used up';
    return 'Active';
  };
  const tokTable = tableView({
    id: 'etokens-table',
    caption: 'Enrollment tokens',
    empty: 'No enrollment tokens yet.',
    rowAttrs: (t) => ({ 'data-etoken-id': t.id, class: t.revoked_at ? 'is-revoked' : null }),
    columns: [
      { label: 'Prefix', cell: (t) => h('code', { class: 'nowrap' }, `${t.prefix}…`) },
      { label: 'Site', cell: (t) => siteName(t.site_id) },
      { label: 'Uses left', cell: (t) => String(t.uses_left), class: 'num' },
      { label: 'Expires', cell: (t) => fmtDate(t.expires_at) },
      { label: 'Created', cell: (t) => fmtDate(t.created_at) },
      { label: 'Created by', cell: (t) => orNone(t.created_by) },
      { label: 'Status', cell: tokenStatus },
      { label: 'Actions', cell: (t) => (t.revoked_at ? none() : revokeTokenButton(t)) },
    ],
  });
  function revokeTokenButton(t) {
    const btn = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke enrollment token ${t.prefix}` }, 'Revoke');
    btn.addEventListener('click', () => {
      if (!window.confirm(`Revoke the enrollment token ${t.prefix}…? Kiosks can no longer enroll with it. Devices already enrolled stay.`)) return;
      busy(btn, tokErr, async () => {
        await api('DELETE', `${base}/enrollment-tokens/${seg(t.id)}`);
        etokens = (await api('GET', `${base}/enrollment-tokens`)).tokens; // to get revoked_at
        tokTable.update(etokens);
        tokTable.el.querySelector('.table-wrap').focus();
      });
    });
    return btn;
  }
  tokTable.update(etokens);

  const tokFormErr = errorBox('etoken-error');
  const secretSlot = h('div');
  let tokForm = noSites();
  if (sites.length) {
    tokForm = h(
      'form',
      { id: 'etoken-form' },
      selectField({ label: 'Site', id: 'etoken-site', name: 'site_id', options: siteOptions(sites) }),
      field({
        label: 'Number of kiosks',
        id: 'etoken-uses',
        name: 'uses',
        type: 'number',
        inputmode: 'numeric',
        min: '1',
        max: '10000',
        value: '1',
        hint: 'How many kiosks may enroll with it (1 to 10000).',
      }),
      field({
        label: 'Valid for (hours)',
        id: 'etoken-hours',
        name: 'expires_in_hours',
        type: 'number',
        inputmode: 'numeric',
        min: '1',
        max: '720',
        value: '72',
        hint: '1 to 720 hours (30 days).',
      }),
      tokFormErr,
      submit('etoken-create', 'Create enrollment token'),
    );
    onSubmit(tokForm, tokFormErr, async () => {
      const els = tokForm.elements;
      const res = await api('POST', `${base}/enrollment-tokens`, {
        site_id: Number(els.site_id.value),
        uses: wholeNumber(els.uses, 'Enter the number of kiosks as a whole number.'),
        expires_in_hours: wholeNumber(els.expires_in_hours, 'Enter the hours as a whole number.'),
      });
      etokens.unshift(res.token);
      tokTable.update(etokens);
      showSecret(secretSlot, {
        id: 'etoken-secret',
        title: `Enrollment token for ${siteName(res.token.site_id)}`,
        secret: res.secret,
        hint: 'A kiosk that sends it with its provisioning request is enrolled into this site at once.',
      });
    });
  }

  return h(
    'div',
    null,
    pageHeading('Devices'),
    section('All devices', h('div', { class: 'toolbar' }, refresh), listErr, table.el),
    section('Claim a kiosk', h('p', { class: 'hint' }, 'Enroll a kiosk that shows an activation code into one of your sites.'), claimBlock),
    section(
      'Enrollment tokens',
      h('p', { class: 'hint' }, 'A token lets kiosks enroll into a site without a code, e.g. when preparing many kiosks at once.'),
      tokForm,
      secretSlot,
      tokErr,
      tokTable.el,
    ),
  );
}

// ---------- one device ----------
const SERVICES = ['kiosk-sync', 'kiosk-media', 'kiosk-ui', 'kiosk-browser'];
const ACTIONS = [
  ['reboot', 'Reboot'],
  ['restart_service', 'Restart a service'],
  ['rotate_certificate', 'Rotate certificate'],
  ['factory_reset', 'Factory reset'],
  ['update', 'Install a firmware update'],
];
const COMMAND_STATES = { sent: 'Sent', accepted: 'Accepted', succeeded: 'Succeeded', failed: 'Failed', rejected: 'Rejected' };

function commandLabel(c) {
  const a = (c && c.action) || '';
  switch (a) {
    case 'reboot':
      return 'Reboot';
    case 'restart_service':
      return `Restart ${c.service}`;
    case 'rotate_certificate':
      return 'Rotate certificate';
    case 'factory_reset':
      return 'Factory reset';
    case 'update':
      return `Update to ${c.version}`;
    default:
      return String(a || '?');
  }
}

// Summary of a stored desired config, for the history table.
function configSummary(c) {
  const cfg = c || {};
  const locale = cfg.locale || {};
  const idle = cfg.idle || {};
  return {
    languages: `${(locale.available || []).join(', ')} (default ${locale.default ?? '—'})`,
    idle: `${idle.idle_s ?? '—'} s / ${idle.warning_s ?? '—'} s`,
    telemetry: `${cfg.telemetry_interval_s ?? '—'} s`,
    board: orNone(cfg.board_profile),
  };
}

// A device's millisecond timestamp as a date, or null when it is not one.
function msDate(ms) {
  const d = new Date(typeof ms === 'number' ? ms : NaN);
  return Number.isNaN(d.getTime()) ? null : fmtDate(d.toISOString());
}

function telemetryFacts(t) {
  const pairs = [];
  const at = msDate(t.at_ms);
  if (at) pairs.push(['Reading from', at]);
  pairs.push(['Uptime', t.uptime_s == null ? none() : fmtDuration(t.uptime_s)]);
  pairs.push(['Calls', t.call_state == null ? none() : humanize(t.call_state)]);
  pairs.push(['Camera', orNone(t.camera)]);
  pairs.push(['Encoder', orNone(t.encoder)]);
  pairs.push(['Outbox', t.outbox_depth == null ? none() : `${t.outbox_depth} waiting to be sent`]);
  pairs.push(['Config version', orNone(t.config_version)]);
  pairs.push(['Firmware', orNone(t.firmware)]);
  const services = t.services && typeof t.services === 'object' ? Object.entries(t.services) : [];
  pairs.push([
    'Services',
    services.length ? h('ul', { class: 'plain-list' }, services.map(([name, v]) => h('li', null, h('code', null, name), ` ${v}`))) : none(),
  ]);
  const temps = Array.isArray(t.temperatures) ? t.temperatures : [];
  pairs.push([
    'Temperatures',
    temps.length
      ? h(
          'ul',
          { class: 'plain-list' },
          temps.map((x) => {
            const c = Number(x && x.celsius);
            return h('li', null, `${x && x.zone}: ${Number.isFinite(c) ? c.toFixed(1) : '?'} °C`);
          }),
        )
      : none(),
  ]);
  return dl(pairs);
}

// The kiosk's refusal of a config: {"version": N|null, "errors": [{field, message}]}.
function refusal(errors) {
  if (!errors) return null;
  const list = Array.isArray(errors.errors) ? errors.errors : null;
  return h(
    'div',
    { class: 'refused', id: 'config-refused' },
    h('p', null, h('strong', null, errors.version == null ? 'The kiosk refused a config.' : `The kiosk refused version ${errors.version}.`), ' The version it had stays in force.'),
    list
      ? h('ul', { class: 'plain-list' }, list.map((e) => h('li', null, e && e.field ? [h('code', null, e.field), `: ${e.message}`] : String(e && e.message))))
      : h('code', { class: 'json' }, JSON.stringify(errors)),
  );
}

export async function detail(ctx) {
  const base = orgBase(ctx);
  const id = ctx.params.id;
  const dbase = `${base}/devices/${seg(id)}`;
  const [device, cfgData, cmdData, siteData] = await Promise.all([
    api('GET', dbase),
    api('GET', `${dbase}/config`),
    api('GET', `${dbase}/commands`),
    api('GET', `${base}/sites`),
  ]);
  let cfg = cfgData;
  let commands = cmdData.commands;
  const siteName = siteNames(siteData.sites);
  const revoked = !!device.revoked_at;
  const tel = telemetryOf(device);

  // --- summary ---
  const summary = section(
    'Status',
    dl([
      ['Status', [stateBadge(deviceState(device)), device.revoked_at ? [' since ', fmtDate(device.revoked_at)] : null]],
      ['Site', device.site_id == null ? h('span', { class: 'muted' }, 'No site (its site was deleted)') : h('a', { href: `#/sites/${seg(device.site_id)}` }, siteName(device.site_id))],
      ['Board', orNone(device.board)],
      ['Hardware serial', h('code', null, device.hardware_serial)],
      ['Firmware', orNone((tel || {}).firmware ?? device.firmware)],
      ['Enrolled via', ENROLLED_VIA[device.enrolled_via] || orNone(device.enrolled_via)],
      ['Enrolled', fmtDate(device.created_at)],
      ['Last seen', device.last_seen_at ? fmtDate(device.last_seen_at) : h('span', { class: 'muted' }, 'Never')],
    ]),
  );
  const telemetry = section('Telemetry', tel ? telemetryFacts(tel) : h('p', { class: 'muted' }, 'No telemetry received yet.'));

  // --- config ---
  const configState = h('div', { id: 'config-state' });
  const history = tableView({
    id: 'config-history',
    caption: 'Config versions, newest first',
    empty: 'No config has been sent to this device yet.',
    rowAttrs: (r) => ({ 'data-version': r.version }),
    columns: [
      { label: 'Version', cell: (r) => [String(r.version), r.version === cfg.reported_version ? [' ', h('span', { class: 'state state-online' }, 'In force')] : null] },
      { label: 'Saved', cell: (r) => fmtDate(r.created_at) },
      { label: 'By', cell: (r) => orNone(r.created_by) },
      { label: 'Languages', cell: (r) => configSummary(r.config).languages },
      { label: 'Idle / warning', cell: (r) => configSummary(r.config).idle },
      { label: 'Telemetry', cell: (r) => configSummary(r.config).telemetry },
      { label: 'Board profile', cell: (r) => configSummary(r.config).board },
    ],
  });
  function renderConfigState() {
    const desired = cfg.history.length ? cfg.history[0].version : null;
    const reported = cfg.reported_version;
    let line;
    if (desired == null) line = 'No config has been sent yet; the form shows the defaults.';
    else if (reported === desired) line = `Version ${desired} is in force on the kiosk.`;
    else {
      line = `Desired: version ${desired}. The kiosk reports ${reported == null ? 'no version' : `version ${reported}`} in force`;
      line += revoked ? '.' : '; it applies the new one when it is connected.';
    }
    configState.replaceChildren(h('p', null, line), refusal(cfg.reported_errors));
    history.update(cfg.history);
  }
  renderConfigState();

  let configForm = null;
  const configErr = errorBox('config-error');
  const configSaved = statusBox('config-saved');
  if (!revoked) {
    const s = cfg.settings;
    const ice = Array.isArray(s.ice_servers) ? s.ice_servers : [];
    const num = (label, idName, name, value, min, max, hint) =>
      field({ label, id: idName, name, type: 'number', inputmode: 'numeric', min, max, value: String(value ?? ''), hint });
    configForm = h(
      'form',
      { id: 'config-form' },
      field({
        label: 'Default language',
        id: 'config-language',
        name: 'default_language',
        value: s.default_language,
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        autocapitalize: 'none',
        hint: 'Language of the attract screen, as a tag such as en or fr.',
      }),
      field({
        label: 'Languages offered',
        id: 'config-languages',
        // The server reports every language problem under "languages".
        name: 'languages',
        value: (s.languages || []).join(', '),
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        autocapitalize: 'none',
        hint: 'Comma-separated, e.g. en, fr, ar. Must include the default language.',
      }),
      // The server reports idle and warning problems under "idle".
      num('Idle timeout (seconds)', 'config-idle', 'idle', s.idle_s, '10', '3600', 'A session with no activity ends after this (10 to 3600).'),
      num('Warning before the end (seconds)', 'config-warning', 'warning_s', s.warning_s, '20', '300', 'How long the “are you still there?” warning shows (20 to 300).'),
      num('Telemetry interval (seconds)', 'config-telemetry', 'telemetry_interval_s', s.telemetry_interval_s, '5', '3600', 'How often the kiosk sends its health figures (5 to 3600).'),
      field({
        label: 'Board profile',
        id: 'config-board',
        name: 'board_profile',
        value: s.board_profile,
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        autocapitalize: 'none',
        hint: `Lower-case letters, digits, - and _. The kiosk reports its board as “${device.board}”.`,
      }),
      ice.length ? h('p', { class: 'hint' }, `This device also has ${ice.length} ICE ${ice.length === 1 ? 'server' : 'servers'}; they are kept as they are (change them through the API).`) : null,
      h('p', { class: 'hint' }, 'Saving also sends the site’s current hours, holidays and time zone and the organization’s recording setting.'),
      configErr,
      submit('config-save', 'Save and send config'),
      configSaved,
    );
    onSubmit(configForm, configErr, async () => {
      configSaved.textContent = '';
      const els = configForm.elements;
      const body = {
        default_language: els.default_language.value.trim(),
        languages: els.languages.value
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
        ice_servers: ice,
        idle_s: wholeNumber(els.idle, 'Enter the idle timeout as a whole number of seconds.'),
        warning_s: wholeNumber(els.warning_s, 'Enter the warning time as a whole number of seconds.'),
        telemetry_interval_s: wholeNumber(els.telemetry_interval_s, 'Enter the telemetry interval as a whole number of seconds.'),
        board_profile: els.board_profile.value.trim(),
      };
      const res = await api('PUT', `${dbase}/config`, body);
      try {
        cfg = await api('GET', `${dbase}/config`);
      } catch {
        cfg.history.unshift({ version: res.version, config: res.config, created_by: null, created_at: new Date().toISOString() });
      }
      renderConfigState();
      configSaved.textContent = `Saved as version ${res.version}. The kiosk applies it now, or when it next connects.`;
    });
  }

  // --- commands ---
  const cmdListErr = errorBox('commands-error');
  const cmdTable = tableView({
    id: 'commands-table',
    caption: 'Commands, newest first',
    empty: 'No commands sent yet.',
    rowAttrs: (c) => ({ 'data-command': c.id }),
    columns: [
      { label: 'Command', cell: (c) => commandLabel(c.command) },
      { label: 'State', cell: (c) => h('span', { class: `state state-${c.state}` }, COMMAND_STATES[c.state] || String(c.state)) },
      { label: 'Detail', cell: (c) => orNone(c.detail) },
      { label: 'Sent by', cell: (c) => orNone(c.created_by) },
      { label: 'Sent', cell: (c) => fmtDate(c.created_at) },
      { label: 'Updated', cell: (c) => fmtDate(c.updated_at) },
    ],
  });
  cmdTable.update(commands);
  const loadCommands = async () => {
    commands = (await api('GET', `${dbase}/commands`)).commands;
    cmdTable.update(commands);
  };
  const cmdRefresh = h('button', { type: 'button', id: 'commands-refresh', class: 'secondary' }, 'Refresh');
  cmdRefresh.addEventListener('click', () => busy(cmdRefresh, cmdListErr, loadCommands));

  let cmdForm = null;
  const cmdErr = errorBox('cmd-error');
  const cmdSent = statusBox('cmd-sent');
  if (!revoked) {
    const serviceField = selectField({
      label: 'Service',
      id: 'cmd-service',
      name: 'service',
      options: SERVICES.map((s) => [s, s]),
    });
    const updateBox = h(
      'fieldset',
      { class: 'group' },
      h('legend', null, 'Firmware bundle'),
      field({ label: 'Bundle URL', id: 'cmd-url', name: 'url', type: 'url', inputmode: 'url', autocomplete: 'off', spellcheck: 'false', hint: 'Must start with https://.' }),
      field({
        label: 'SHA-256',
        id: 'cmd-sha256',
        name: 'sha256',
        autocomplete: 'off',
        spellcheck: 'false',
        autocapitalize: 'none',
        maxlength: '64',
        hint: 'The bundle’s SHA-256 in hex (64 characters).',
      }),
      field({ label: 'Version', id: 'cmd-version', name: 'version', autocomplete: 'off', spellcheck: 'false', hint: 'The firmware version being installed.' }),
      field({ label: 'Size (bytes)', id: 'cmd-size', name: 'size', type: 'number', inputmode: 'numeric', min: '0' }),
    );
    const actionField = selectField({ label: 'Command', id: 'cmd-action', name: 'action', options: ACTIONS, value: 'reboot' });
    const actionSel = actionField.querySelector('select');
    const showFields = () => {
      serviceField.hidden = actionSel.value !== 'restart_service';
      updateBox.hidden = actionSel.value !== 'update';
    };
    actionSel.addEventListener('change', showFields);
    showFields();
    cmdForm = h(
      'form',
      { id: 'cmd-form' },
      actionField,
      serviceField,
      updateBox,
      h('p', { class: 'hint' }, 'A kiosk that is offline for more than an hour ignores the command when it reconnects.'),
      cmdErr,
      submit('cmd-send', 'Send command'),
      cmdSent,
    );
    onSubmit(cmdForm, cmdErr, async () => {
      cmdSent.textContent = '';
      const els = cmdForm.elements;
      const action = els.action.value;
      const body = { action };
      if (action === 'restart_service') body.service = els.service.value;
      if (action === 'update') {
        body.url = els.url.value.trim();
        body.sha256 = els.sha256.value.trim().toLowerCase();
        body.version = els.version.value.trim();
        body.size = wholeNumber(els.size, 'Enter the bundle’s size in bytes as a whole number.');
      }
      if (action === 'factory_reset' && !window.confirm(`Factory reset ${device.id}? The kiosk forgets its enrollment and local data and must be set up again.`)) return;
      const res = await api('POST', `${dbase}/commands`, body);
      try {
        await loadCommands();
      } catch {
        commands.unshift({ id: res.id, command: body, state: res.state, detail: null, created_by: null, created_at: null, updated_at: null });
        cmdTable.update(commands);
      }
      cmdSent.textContent = `${commandLabel(body)}: sent.`;
    });
  }

  // --- revoke ---
  let revokeBlock = null;
  if (!revoked) {
    const revokeErr = errorBox('device-revoke-error');
    const revokeBtn = h('button', { type: 'button', id: 'device-revoke', class: 'danger' }, 'Revoke device');
    revokeBtn.addEventListener('click', () => {
      if (!window.confirm(`Revoke ${device.id}? It is cut off at once and cannot connect again; there is no undo.`)) return;
      busy(revokeBtn, revokeErr, async () => {
        await api('POST', `${dbase}/revoke`);
        // Draw the page again: it now shows the device as revoked, read-only.
        ctx.go(`/devices/${seg(id)}`);
      });
    });
    revokeBlock = h(
      'section',
      { class: 'panel danger-zone' },
      h('h2', null, 'Revoke'),
      h(
        'p',
        null,
        'Revoking cuts the kiosk off at once: its certificates are revoked and it cannot connect again. ',
        'Every kiosk is disconnected for a moment while the message broker restarts. ',
        'To use this kiosk again, enroll it as a new device.',
      ),
      revokeErr,
      revokeBtn,
    );
  }

  return h(
    'div',
    null,
    pageHeading(`Device ${device.id}`),
    h('p', null, h('a', { href: '#/devices' }, '← All devices')),
    revoked
      ? h(
          'p',
          { id: 'device-revoked', class: 'notice' },
          'This device was revoked ',
          fmtDate(device.revoked_at),
          '. It can no longer connect; its config and commands are shown read-only.',
        )
      : null,
    h('div', { class: 'device-grid' }, summary, telemetry),
    section('Config', configState, configForm, history.el),
    section('Commands', cmdForm, h('div', { class: 'toolbar' }, cmdRefresh), cmdListErr, cmdTable.el),
    revokeBlock,
  );
}
