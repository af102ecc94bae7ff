// The Calls page (agents and org admins): availability, incoming calls ringing, and the call
// itself (call-view.js). Talks to tenantd over the agents' WebSocket, /api/v1/orgs/{org}/calls/ws,
// exactly as docs/calls.md describes it.
//
// Test hooks (stable names, relied on by end-to-end tests):
//   data-testid="calls-availability"   the Available/Away switch: a button, role="switch",
//                                      aria-checked "true" when available
//   data-testid="calls-connection"     the WebSocket's state in data-state:
//                                      offline | connecting | connected | reconnecting
//   data-testid="calls-retry"          "Reconnect now" (shown while reconnecting)
//   data-testid="calls-error"          the last refusal from the server (an `error` frame)
//   data-testid="calls-ringing"        the list of ringing calls
//   data-testid="ringing-call"         one ringing call; data-call = the call id
//   data-testid="call-accept" / "call-decline"   its buttons
//   data-testid="call-summary"         the summary of the call that just ended
//   data-testid="call-view"            the in-call view (data-call = the call id), with
//     "call-remote-video", "call-local-video", "call-state" (data-state: connecting |
//     connected | interrupted | failed), "call-timer", "call-notice", "call-mute" and
//     "call-camera" (aria-pressed="true": muted, camera off), "call-switch-camera", "call-snapshot", "call-end",
//     "call-quality" (data-path: host | srflx | relay) with "quality-bitrate", "quality-loss",
//     "quality-fps", "quality-rtt", "quality-path", and "snapshot-status", "snapshot-error",
//     "snapshots" / "snapshot" (thumbnails)
//   window.kioskcallCall, read-only:
//     { pc        the call's RTCPeerConnection, or null (call pc.getStats() for framesDecoded)
//       call      the call id, or null
//       state     idle | accepting | connecting | connected | interrupted | failed | ended
//       quality   the last once-a-second sample: {bitrateKbps, lossPercent, fps, rttMs, path,
//                 localCandidate, remoteCandidate, framesDecoded, at}, or null
//       socket    offline | connecting | connected | reconnecting
//       available true when the server says this agent is available
//       ringing   ids of the calls ringing now
//       lastEnded {call, reason, by, durationMs} of the last call, or null }

import { api, seg } from './api.js';
import { h, pageHeading } from './ui.js';
import { CallSession, activeSession, requestMedia, stopStream, fmtClock } from './call-view.js';

const PING_MS = 25000; // keep-alive
const SILENCE_MS = 60000; // no frame for this long: the socket is dead, reconnect
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];

// ---------- the ring: a WebAudio tone, no audio file ----------
// Browsers start sound only after a user gesture on the page; the first click or key press
// unlocks it. Until then a ringing call shows, the title flashes, and a notice says so.
const ringer = {
  ctx: null,
  timer: null,
  flash: null,
  title: null,
  unlock() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    try {
      if (!this.ctx) this.ctx = new AC();
      if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    } catch {
      this.ctx = null;
    }
  },
  get audible() {
    return !!this.ctx && this.ctx.state === 'running';
  },
  // One "ring-ring": two 0.4 s bursts of 440 + 480 Hz.
  burst() {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== 'running') return;
    const t0 = ctx.currentTime + 0.05;
    const gain = ctx.createGain();
    gain.gain.value = 0;
    gain.connect(ctx.destination);
    for (const start of [t0, t0 + 0.6]) {
      gain.gain.setValueAtTime(0, start);
      gain.gain.linearRampToValueAtTime(0.15, start + 0.02);
      gain.gain.setValueAtTime(0.15, start + 0.38);
      gain.gain.linearRampToValueAtTime(0, start + 0.4);
    }
    for (const f of [440, 480]) {
      const osc = ctx.createOscillator();
      osc.frequency.value = f;
      osc.connect(gain);
      osc.start(t0);
      osc.stop(t0 + 1.05);
    }
    setTimeout(() => gain.disconnect(), 1500);
  },
  start(label) {
    if (!this.timer) {
      this.burst();
      this.timer = setInterval(() => this.burst(), 3000);
    }
    if (!this.flash) {
      this.title = document.title;
      let on = false;
      this.flash = setInterval(() => {
        on = !on;
        document.title = on ? `📞 ${label}` : this.title;
      }, 1000);
    }
  },
  stop() {
    clearInterval(this.timer);
    clearInterval(this.flash);
    this.timer = null;
    if (this.flash) document.title = this.title;
    this.flash = null;
  },
};
for (const ev of ['pointerdown', 'keydown']) {
  document.addEventListener(
    ev,
    () => {
      if (!desk.onPage || ringer.audible) return;
      ringer.unlock();
      setTimeout(() => desk.refresh(), 200); // the "click to hear the ring" notice
    },
    { capture: true },
  );
}

// ---------- the desk: this tab's WebSocket, availability, ringing calls, the call ----------

const desk = {
  org: null,
  ws: null,
  socket: 'offline',
  attempt: 0,
  retryTimer: null,
  retryAt: 0,
  pingTimer: null,
  lastFrame: 0,
  want: null, // the availability the agent asked for (null: take the server's)
  available: false,
  agent: null,
  ringing: new Map(), // call id → ringing frame (+ `seenAt`)
  declined: new Set(),
  accepting: null, // {call, media} while our accept is unanswered
  session: null,
  lastEnded: null,
  summary: null,
  error: '',
  outbox: [], // `end` frames that must reach the server after a reconnect
  view: null, // the mounted page's parts, or null
  onPage: false,

  url() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/api/v1/orgs/${seg(this.org)}/calls/ws`;
  },

  open(org) {
    if (this.org !== org) {
      this.close();
      this.org = org;
    }
    if (this.ws || this.retryTimer) return;
    this.connect();
  },

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.setSocket(this.attempt ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.lastFrame = Date.now();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.keepAlive(), PING_MS);
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      this.lastFrame = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg.type === 'string') this.receive(msg);
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return; // closed on purpose
      this.ws = null;
      clearInterval(this.pingTimer);
      this.scheduleRetry();
    });
  },

  scheduleRetry() {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.retryAt = Date.now() + jittered;
    this.retryTimer = setTimeout(() => this.connect(), jittered);
    this.setSocket('reconnecting');
    // A socket refused because the session ended: let the console's sign-in handling see it.
    if (this.attempt >= 2) api('GET', '/api/v1/me').catch(() => {});
  },

  keepAlive() {
    if (Date.now() - this.lastFrame > SILENCE_MS && this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
      clearInterval(this.pingTimer);
      this.scheduleRetry();
      return;
    }
    this.send({ type: 'ping' });
  },

  // Closes the socket for good (leaving the page, signing out).
  close() {
    this.closing = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.retryTimer = null;
    if (this.session) this.session.hangUp();
    this.flushOutbox();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'closed');
    }
    if (this.accepting) stopMedia(this.accepting.media);
    this.accepting = null;
    this.attempt = 0;
    this.ringing.clear();
    this.available = false;
    this.closing = false;
    this.setSocket('offline');
  },

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    if (frame.type === 'end') this.outbox.push(frame);
    return false;
  },

  flushOutbox() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    for (const f of this.outbox.splice(0)) ws.send(JSON.stringify(f));
  },

  setSocket(state) {
    this.socket = state;
    this.refresh();
  },

  receive(msg) {
    const mine = this.session && msg.call === this.session.id;
    switch (msg.type) {
      case 'hello':
        this.attempt = 0;
        this.agent = msg.agent || null;
        this.available = !!msg.available;
        this.ringing.clear();
        for (const c of Array.isArray(msg.calls) ? msg.calls : []) this.addRinging(c);
        this.socket = 'connected';
        this.flushOutbox();
        endStale();
        if (this.want != null && this.want !== this.available) this.send({ type: 'available', available: this.want });
        break;
      case 'availability':
        this.available = !!msg.available;
        this.want = this.available; // chosen here or in another tab: the agent's choice
        break;
      case 'ringing':
        this.addRinging(msg);
        break;
      case 'ring_cancelled':
        this.ringing.delete(msg.call);
        if (this.accepting && this.accepting.call === msg.call) {
          stopMedia(this.accepting.media);
          this.accepting = null;
          this.error = msg.reason === 'taken' ? 'Another agent took that call.' : 'The kiosk hung up before the call was answered.';
        }
        break;
      case 'accepted':
        // Only the tab that sent `accept` takes the call; the agent's other tabs let it go.
        if (this.accepting && this.accepting.call === msg.call && !this.session) this.startCall(msg);
        this.ringing.delete(msg.call);
        break;
      case 'sdp':
      case 'ice':
        if (mine) this.session.signal(msg);
        break;
      case 'ended':
        this.ringing.delete(msg.call);
        if (mine) this.session.close(msg.reason, msg.by);
        else if (this.accepting && this.accepting.call === msg.call) {
          stopMedia(this.accepting.media);
          this.accepting = null;
        }
        break;
      case 'error':
        this.error = `${msg.message || 'The server refused a message.'}${msg.code ? ` (${msg.code})` : ''}`;
        if (this.accepting && (msg.call == null || msg.call === this.accepting.call)) {
          stopMedia(this.accepting.media);
          this.accepting = null;
        }
        if (mine) this.session.notify(this.error);
        break;
      default:
        return; // pong, or something newer than this console
    }
    this.refresh();
  },

  addRinging(c) {
    if (!c || c.call == null || this.declined.has(c.call)) return;
    if (this.session && this.session.id === c.call) return;
    this.ringing.set(c.call, { ...c, seenAt: Date.now() });
  },

  setAvailable(available) {
    this.want = available;
    this.error = '';
    this.send({ type: 'available', available });
    this.refresh();
  },

  accept(id) {
    if (this.accepting || this.session) return;
    this.error = '';
    this.summary = null;
    // Ask for camera and microphone now, inside the click, so the prompt overlaps signalling.
    this.accepting = { call: id, media: requestMedia() };
    if (!this.send({ type: 'accept', call: id })) {
      stopMedia(this.accepting.media);
      this.accepting = null;
      this.error = 'Not connected to the server: the call cannot be accepted now.';
    }
    this.refresh();
  },

  decline(id) {
    this.declined.add(id);
    this.ringing.delete(id);
    this.send({ type: 'decline', call: id });
    this.refresh();
  },

  startCall(msg) {
    const ring = this.ringing.get(msg.call) || {};
    const session = new CallSession({
      call: msg.call,
      kiosk: msg.kiosk || ring.kiosk,
      site: msg.site || ring.site,
      kind: msg.kind || ring.kind,
      iceServers: msg.ice_servers,
      media: this.accepting.media,
      org: this.org,
      send: (frame) => this.send(frame),
      onClosed: (summary) => this.callClosed(summary),
    });
    this.accepting = null;
    this.session = session;
    remember(msg.call);
    session.start();
    placeCallView();
    const title = session.el.querySelector('h2');
    if (title) title.focus();
  },

  callClosed(summary) {
    this.session = null;
    this.lastEnded = summary;
    this.summary = summary;
    remember(null);
    if (!this.onPage && !this.closing) this.close();
    this.refresh();
    if (this.view) this.view.summary.focus();
  },

  refresh() {
    const ringingNow = this.ringing.size > 0 && !this.session && !this.accepting;
    if (ringingNow) ringer.start(this.ringing.size === 1 ? 'Incoming call' : `${this.ringing.size} incoming calls`);
    else ringer.stop();
    if (this.view) renderView(this.view);
  },
};

const stopMedia = (promise) => promise.then((res) => stopStream(res.stream));

// A call this tab had when it was reloaded or closed cannot go on (its peer connection is
// gone): tell the server at once rather than after the reconnect grace.
const STALE_KEY = 'kioskcall.console.call';
function remember(id) {
  try {
    if (id == null) sessionStorage.removeItem(STALE_KEY);
    else sessionStorage.setItem(STALE_KEY, String(id));
  } catch {
    /* storage unavailable: the server ends the call on its own */
  }
}
function endStale() {
  let id = null;
  try {
    id = sessionStorage.getItem(STALE_KEY);
  } catch {
    return;
  }
  if (id != null && !(desk.session && String(desk.session.id) === id)) {
    desk.send({ type: 'end', call: /^\d+$/.test(id) ? Number(id) : id });
    remember(null);
  }
}
window.addEventListener('pagehide', () => {
  if (desk.session) desk.session.hangUp();
  desk.flushOutbox();
});

// The call view lives in the page; elsewhere in the console it shrinks into a corner so the
// call goes on (a media element taken out of the document would pause).
function placeCallView() {
  const s = desk.session;
  if (!s) return;
  if (desk.view && desk.onPage) {
    s.el.classList.remove('docked');
    if (s.el.parentNode !== desk.view.callSlot) desk.view.callSlot.append(s.el);
  } else {
    s.el.classList.add('docked');
    if (s.el.parentNode !== document.body) document.body.append(s.el);
  }
  s.resume();
}

window.addEventListener('hashchange', () => {
  const onPage = location.hash.replace(/^#/, '').split('?')[0] === '/calls';
  if (onPage || !desk.onPage) return;
  desk.onPage = false;
  desk.view = null;
  if (desk.session) placeCallView();
  else desk.close();
});

// Sign-out and the like: close the socket, end a call.
export function disconnect() {
  desk.onPage = false;
  desk.view = null;
  desk.want = null;
  desk.close();
}

Object.defineProperty(window, 'kioskcallCall', {
  configurable: false,
  enumerable: false,
  writable: false,
  value: Object.freeze({
    get pc() {
      const s = activeSession();
      return s ? s.pc : null;
    },
    get call() {
      const s = activeSession();
      return s ? s.id : desk.accepting ? desk.accepting.call : null;
    },
    get state() {
      const s = activeSession();
      if (s) return s.state;
      return desk.accepting ? 'accepting' : desk.lastEnded ? 'ended' : 'idle';
    },
    get quality() {
      const s = activeSession();
      return s && s.quality ? { ...s.quality } : null;
    },
    get socket() {
      return desk.socket;
    },
    get available() {
      return desk.available;
    },
    get ringing() {
      return [...desk.ringing.keys()];
    },
    get lastEnded() {
      return desk.lastEnded ? { ...desk.lastEnded } : null;
    },
  }),
});

// ---------- the page ----------

const KIND = { test: 'Test call', customer: 'Customer call' };
const where = (c) => [c.kiosk && c.kiosk.name, c.site && c.site.name].filter(Boolean).join(', ') || 'a kiosk';

// When the call began ringing, in this browser's clock: since_ms is the server's epoch
// milliseconds; a small value is taken as "ringing for that long already".
function ringStart(c) {
  const since = Number(c.since_ms);
  if (!Number.isFinite(since) || since <= 0) return c.seenAt;
  const t = since < 1e11 ? c.seenAt - since : since;
  return Math.min(t, Date.now());
}

const ENDED_BY = {
  agent: 'You ended the call.',
  kiosk: 'The kiosk ended the call.',
  cloud: 'The service ended the call.',
};

export async function page(ctx) {
  const org = ctx.me.org.slug;

  const toggle = h(
    'button',
    { type: 'button', role: 'switch', id: 'calls-availability', class: 'switch', 'data-testid': 'calls-availability', 'aria-checked': 'false', 'aria-describedby': 'calls-availability-state' },
    h('span', { class: 'switch-track', 'aria-hidden': 'true' }, h('span', { class: 'switch-thumb' })),
    h('span', null, 'Available for calls'),
  );
  toggle.addEventListener('click', () => desk.setAvailable(toggle.getAttribute('aria-checked') !== 'true'));
  const availState = h('span', { id: 'calls-availability-state', class: 'avail-state' });
  const conn = h('span', { class: 'conn-state', 'data-testid': 'calls-connection', 'data-state': 'offline' });
  const retry = h('button', { type: 'button', class: 'secondary', 'data-testid': 'calls-retry', hidden: true }, 'Reconnect now');
  retry.addEventListener('click', () => {
    if (!desk.ws) desk.connect();
  });
  const connRow = h('p', { class: 'conn', role: 'status' }, conn, ' ', retry);
  const soundNote = h('p', { class: 'notice', hidden: true, 'data-testid': 'calls-sound-note' }, 'Click anywhere on the page to let the console ring aloud.');
  const err = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'calls-error' });
  const summary = h('section', { class: 'panel call-summary', 'data-testid': 'call-summary', tabindex: '-1', hidden: true });
  const ringTitle = h('h2', { id: 'calls-ringing-title', tabindex: '-1' }, 'Incoming calls');
  const list = h('ul', { class: 'ring-list', 'data-testid': 'calls-ringing', 'aria-label': 'Incoming calls' });
  const empty = h('p', { class: 'empty' });
  const ringSection = h('section', { class: 'panel ringing', 'aria-labelledby': 'calls-ringing-title' }, ringTitle, list, empty);
  const callSlot = h('div', { class: 'call-slot' });

  const node = h(
    'div',
    { class: 'calls-page' },
    pageHeading('Calls'),
    h('div', { class: 'availability panel' }, h('div', { class: 'avail-row' }, toggle, availState), connRow),
    soundNote,
    err,
    summary,
    callSlot,
    ringSection,
  );

  desk.view = { toggle, availState, conn, retry, soundNote, err, summary, list, empty, ringSection, ringTitle, callSlot, cards: new Map() };
  desk.onPage = true;
  desk.summary = desk.session ? null : desk.summary;
  renderView(desk.view);
  desk.open(org);
  placeCallView();
  return node;
}

// Ringing times tick once a second while the page is shown.
setInterval(() => {
  if (!desk.view) return;
  for (const [id, card] of desk.view.cards) {
    const c = desk.ringing.get(id);
    if (c) card.since.textContent = fmtClock(Date.now() - ringStart(c));
  }
  if (desk.socket === 'reconnecting' && desk.retryTimer) renderConn(desk.view);
}, 1000);

function renderConn(v) {
  const s = desk.socket;
  v.conn.dataset.state = s;
  let text;
  if (s === 'connected') text = 'Connected.';
  else if (s === 'connecting') text = 'Connecting…';
  else if (s === 'offline') text = 'Not connected.';
  else if (desk.retryTimer) text = `Not connected. Reconnecting in ${Math.max(1, Math.ceil((desk.retryAt - Date.now()) / 1000))} s…`;
  else text = 'Not connected. Reconnecting…';
  if (v.conn.textContent !== text) v.conn.textContent = text;
  v.retry.hidden = s !== 'reconnecting' || !desk.retryTimer;
}

function renderView(v) {
  const connected = desk.socket === 'connected';
  const on = desk.want ?? desk.available;
  v.toggle.setAttribute('aria-checked', String(on));
  let state = on ? 'Available' : 'Away';
  if (connected && desk.want != null && desk.want !== desk.available) state += ' (updating…)';
  else if (!connected && desk.want === true) state += ' once connected';
  v.availState.textContent = state;
  renderConn(v);
  v.err.textContent = desk.error;
  v.soundNote.hidden = !(desk.ringing.size && !desk.session && !ringer.audible);

  if (desk.summary) {
    const s = desk.summary;
    v.summary.replaceChildren(
      h('h2', null, `Call with ${where(s)} ended`),
      h('p', null, ENDED_BY[s.by] || 'The call ended.', s.reason && s.reason !== 'hung_up' ? ` Reason: ${String(s.reason).replace(/_/g, ' ')}.` : '', ` Duration ${fmtClock(s.durationMs)}.`),
      h('button', { type: 'button', class: 'secondary', 'data-testid': 'call-summary-close', onclick: () => {
        desk.summary = null;
        renderView(v);
      } }, 'Dismiss'),
    );
  }
  v.summary.hidden = !desk.summary;

  // Ringing cards: keep existing nodes (and focus), add new, drop gone.
  const inCall = !!desk.session;
  v.ringSection.hidden = inCall;
  for (const [id, card] of v.cards) {
    if (!desk.ringing.has(id)) {
      // Keep keyboard users in place when the card they were on goes away.
      const hadFocus = card.el.contains(document.activeElement);
      card.el.remove();
      v.cards.delete(id);
      if (hadFocus) v.ringTitle.focus();
    }
  }
  for (const [id, c] of desk.ringing) {
    let card = v.cards.get(id);
    if (!card) {
      card = ringCard(c);
      v.cards.set(id, card);
      v.list.append(card.el);
    }
    const accepting = desk.accepting && desk.accepting.call === id;
    card.accept.disabled = !!desk.accepting || !connected;
    card.accept.textContent = accepting ? 'Accepting…' : 'Accept';
    card.decline.disabled = !!desk.accepting || !connected;
  }
  if (!desk.ringing.size) {
    if (!connected) v.empty.textContent = 'Calls ring here once the console is connected.';
    else if (!desk.available) v.empty.textContent = 'You are away: switch on “Available for calls” to receive calls.';
    else v.empty.textContent = 'No calls are ringing. New calls ring here.';
  }
  v.empty.hidden = desk.ringing.size > 0;
}

function ringCard(c) {
  const name = where(c);
  const titleId = `ring-${String(c.call).replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const since = h('span', { 'data-testid': 'ringing-since' }, fmtClock(Date.now() - ringStart(c)));
  const accept = h('button', { type: 'button', class: 'accept', 'data-testid': 'call-accept', 'aria-label': `Accept the call from ${name}` }, 'Accept');
  const decline = h('button', { type: 'button', class: 'danger', 'data-testid': 'call-decline', 'aria-label': `Decline the call from ${name}` }, 'Decline');
  accept.addEventListener('click', () => desk.accept(c.call));
  decline.addEventListener('click', () => desk.decline(c.call));
  const el = h(
    'li',
    { class: 'ring-card', 'data-testid': 'ringing-call', 'data-call': c.call, 'aria-labelledby': titleId },
    h('div', { class: 'ring-info' },
      h('h3', { id: titleId }, (c.kiosk && c.kiosk.name) || 'Kiosk'),
      h('p', null, (c.site && c.site.name) || 'No site', KIND[c.kind] ? h('span', { class: 'badge' }, KIND[c.kind]) : null),
      h('p', { class: 'muted' }, 'Ringing for ', since),
    ),
    h('div', { class: 'actions' }, accept, decline),
  );
  return { el, since, accept, decline };
}
