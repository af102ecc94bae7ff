// The kiosk's page. It shows the view kiosk-ui sends (GET /api/view, then server-sent events
// from /api/events) and sends the customer's actions (POST /api/action). The journey itself
// runs in kiosk-ui; this script only draws it and keeps what the customer is typing.
//
// Privacy: the digits typed live in two variables here until they are sent; they are never
// written to storage, a cookie, the URL or the history. When kiosk-ui starts a new session
// (a privacy reset), the page reloads itself with location.replace, so nothing of the last
// customer stays in memory and the history keeps one entry.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const app = $('app');
  const dicts = {};
  const ENDONYMS = { en: 'English', fr: 'Français', ar: 'العربية' };
  const PHONE_MAX = 15;
  const LANGS = ['en', 'fr', 'ar'];

  let dict = {};
  let view = null;
  let viewAt = 0;
  let session = null;
  let language = null;
  let shown = null;
  let leaving = false;
  let lastTouch = 0;
  let lastProblemSeq = 0;
  // What the customer is typing; sent once, then forgotten.
  let phoneDigits = '';
  let phoneCountry = null;
  let codeDigits = '';

  // ---------- words ----------

  function t(key) {
    if (dict[key] !== undefined) return dict[key];
    if (dicts.en && dicts.en[key] !== undefined) return dicts.en[key];
    return key;
  }

  // Fills `el` with the words of `key`; `{name}` takes vars[name]. A value given as
  // {ltr: text} is isolated left to right (numbers, codes) so it reads right in Arabic.
  function fill(el, key, vars) {
    const text = t(key);
    el.textContent = '';
    const parts = text.split(/\{(\w+)\}/);
    parts.forEach((part, i) => {
      if (i % 2 === 0) {
        if (part) el.append(part);
        return;
      }
      const v = vars ? vars[part] : undefined;
      if (v && typeof v === 'object') {
        const b = document.createElement('bdi');
        b.className = 'ltr';
        b.dir = 'ltr';
        b.textContent = v.ltr;
        el.append(b);
      } else {
        el.append(v === undefined ? '' : String(v));
      }
    });
  }

  function applyWords() {
    document.querySelectorAll('[data-i18n]').forEach((el) => {
      el.textContent = t(el.dataset.i18n);
    });
    document.querySelectorAll('[data-i18n-label]').forEach((el) => {
      el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    });
    document.title = t('app.title');
  }

  async function loadWords() {
    await Promise.all(
      LANGS.map(async (l) => {
        const r = await fetch(`/i18n/${l}.json`, { cache: 'no-store', credentials: 'omit' });
        if (r.ok) dicts[l] = await r.json();
      }),
    );
  }

  // ---------- talking to kiosk-ui ----------

  async function post(action) {
    lastTouch = Date.now();
    try {
      const r = await fetch('/api/action', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(action),
        cache: 'no-store',
        credentials: 'omit',
      });
      if (r.ok) {
        apply(await r.json());
        return true;
      }
    } catch (_) {
      // The server is restarting; the event stream brings the next view.
    }
    return false;
  }

  function touched() {
    const now = Date.now();
    if (now - lastTouch > 1000) {
      lastTouch = now;
      post({ type: 'touch' });
    }
  }

  function leave() {
    // A new session: forget everything and reload without adding a history entry.
    leaving = true;
    phoneDigits = '';
    codeDigits = '';
    phoneCountry = null;
    view = null;
    location.replace('/');
  }

  // ---------- drawing ----------

  function apply(v) {
    if (leaving || !v || typeof v.session !== 'string') return;
    if (session === null) session = v.session;
    if (v.session !== session) {
      leave();
      return;
    }
    if (view && v.rev < view.rev) return;
    view = v;
    viewAt = performance.now();
    render();
  }

  function render() {
    const v = view;
    if (v.language !== language) {
      language = v.language;
      dict = dicts[language] || dicts.en || {};
      document.documentElement.lang = language;
      document.documentElement.dir = v.dir;
      applyWords();
    }
    const screen = v.screen;
    const changed = screen !== shown;
    if (changed) {
      if (shown === 'phone') phoneDigits = '';
      if (shown === 'code') codeDigits = '';
      closeCountries();
      document.querySelectorAll('main > section.screen').forEach((s) => {
        s.hidden = s.id !== `screen-${screen}`;
      });
      app.dataset.screen = screen;
      document.body.dataset.screen = screen;
    }
    if (v.problem && v.problem.seq !== lastProblemSeq) {
      lastProblemSeq = v.problem.seq;
      if (screen === 'code') codeDigits = '';
    }
    renderLanguages(v);
    renderProblem(v);
    switch (screen) {
      case 'closed':
        if (v.closed && v.closed.next_opening) {
          fill($('closed-next'), 'closed.next', { when: v.closed.next_opening });
        } else {
          fill($('closed-next'), 'closed.never');
        }
        break;
      case 'phone':
        if (!phoneCountry) phoneCountry = v.phone.country;
        fill($('phone-title'), v.phone.purpose === 'callback' ? 'phone.title_callback' : 'phone.title');
        renderPhone();
        break;
      case 'code':
        fill($('code-sent'), 'code.sent', { phone: { ltr: v.code.masked_phone } });
        renderCode();
        break;
      case 'consent':
        $('consent-notice').textContent = v.consent.notice;
        break;
      case 'booked':
        fill($('booked-text'), 'booked.text', { phone: { ltr: v.booked.masked_phone } });
        break;
      case 'activation':
        $('activation-code').textContent = v.activation.code;
        break;
      case 'call_failed':
        $('call-failed-retry').hidden = !v.can_retry;
        break;
      default:
        break;
    }
    renderQueue(v);
    renderCall(v);
    tick();
    const busy = v.busy;
    $('busy').hidden = !busy;
    app.querySelectorAll('button').forEach((b) => {
      b.disabled = busy || b.dataset.off === 'true';
    });
    const warning = $('idle-warning');
    const warn = Boolean(v.warning);
    if (warn !== !warning.hidden) {
      warning.hidden = !warn;
      if (warn) $('idle-extend').focus();
    }
    if (changed) {
      shown = screen;
      const h = document.querySelector(`#screen-${screen} h1`);
      if (h && !warn) h.focus({ preventScroll: true });
    }
  }

  function renderLanguages(v) {
    const box = $('languages');
    const have = Array.from(box.children).map((b) => b.dataset.lang).join(',');
    if (have !== v.languages.join(',')) {
      box.textContent = '';
      v.languages.forEach((l) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'secondary';
        b.dataset.lang = l;
        b.dataset.testid = `lang-${l}`;
        b.setAttribute('data-testid', `lang-${l}`);
        b.lang = l;
        b.dir = l === 'ar' ? 'rtl' : 'ltr';
        b.textContent = ENDONYMS[l] || l;
        b.addEventListener('click', () => post({ type: 'language', language: l }));
        box.append(b);
      });
    }
    Array.from(box.children).forEach((b) => {
      b.setAttribute('aria-pressed', String(b.dataset.lang === v.language));
    });
  }

  function problemText(p) {
    switch (p.kind) {
      case 'limited':
        return ['problem.limited', { m: Math.max(1, Math.ceil(p.retry_after_s / 60)) }];
      case 'wrong_code':
        return ['problem.wrong_code', { n: p.tries_left }];
      case 'code_dead': {
        const key = `problem.code_dead.${p.why}`;
        return [t(key) === key ? 'problem.code_dead.expired' : key];
      }
      default:
        return [`problem.${p.kind}`];
    }
  }

  function renderProblem(v) {
    document.querySelectorAll('p.problem').forEach((el) => {
      const mine = el.closest('section').id === `screen-${v.screen}`;
      if (mine && v.problem) {
        const [key, vars] = problemText(v.problem);
        fill(el, key, vars);
        el.dataset.kind = v.problem.kind;
        el.hidden = false;
      } else {
        el.hidden = true;
        el.textContent = '';
      }
    });
  }

  function countryCode(iso) {
    const c = view && view.phone && view.phone.countries.find((x) => x.iso === iso);
    return c ? c.code : '';
  }

  function countryName(iso) {
    try {
      return new Intl.DisplayNames([language], { type: 'region' }).of(iso) || iso;
    } catch (_) {
      return iso;
    }
  }

  function renderPhone() {
    const btn = $('phone-country');
    btn.textContent = `${countryName(phoneCountry)} `;
    const code = document.createElement('bdi');
    code.className = 'ltr';
    code.dir = 'ltr';
    code.textContent = `+${countryCode(phoneCountry)}`;
    btn.append(code);
    btn.setAttribute('aria-label', t('phone.country').replace('{country}', countryName(phoneCountry)));
    const echo = $('phone-echo');
    echo.textContent = '';
    if (!phoneDigits) {
      echo.classList.add('empty');
      echo.textContent = t('phone.empty');
    } else {
      echo.classList.remove('empty');
      const shownDigits = phoneDigits.length <= 2
        ? phoneDigits
        : '•'.repeat(phoneDigits.length - 2) + phoneDigits.slice(-2);
      const b = document.createElement('bdi');
      b.className = 'ltr';
      b.dir = 'ltr';
      b.textContent = `+${countryCode(phoneCountry)} ${shownDigits}`;
      echo.append(b);
    }
    echo.setAttribute('aria-label', t('phone.number'));
    const submit = $('phone-submit');
    submit.dataset.off = String(phoneDigits.length < 4);
    submit.disabled = view.busy || phoneDigits.length < 4;
  }

  function renderCode() {
    const echo = $('code-echo');
    echo.textContent = '';
    const n = view.code.length;
    for (let i = 0; i < n; i += 1) {
      const s = document.createElement('span');
      s.textContent = codeDigits[i] || '';
      if (i === codeDigits.length) s.className = 'next';
      echo.append(s);
    }
    echo.setAttribute('aria-label', t('code.typed').replace('{n}', String(codeDigits.length)));
    const submit = $('code-submit');
    submit.dataset.off = String(codeDigits.length !== n);
    submit.disabled = view.busy || codeDigits.length !== n;
  }

  function renderQueue(v) {
    if (!v.queue) return;
    const q = v.queue;
    const pos = $('queue-position');
    if (!q.queued) fill(pos, 'queue.placing');
    else if (q.position === null || q.position === undefined) fill(pos, 'queue.ringing');
    else if (q.position <= 1) fill(pos, 'queue.next');
    else fill(pos, 'queue.position', { n: { ltr: String(q.position) } });
    const wait = $('queue-wait');
    if (q.estimated_wait_s === null || q.estimated_wait_s === undefined) wait.textContent = '';
    else if (q.estimated_wait_s < 60) fill(wait, 'queue.wait_short');
    else fill(wait, 'queue.wait', { m: { ltr: String(Math.round(q.estimated_wait_s / 60)) } });
  }

  function renderCall(v) {
    if (!v.call) return;
    $('call-recording').hidden = !v.call.recording;
    const mute = $('call-mute');
    mute.setAttribute('aria-pressed', String(v.call.muted));
    fill(mute, v.call.muted ? 'call.unmute' : 'call.mute');
    $('call-muted-note').hidden = !v.call.muted;
  }

  function since() {
    return Math.floor((performance.now() - viewAt) / 1000);
  }

  function clock(s) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    const two = (x) => String(x).padStart(2, '0');
    return h > 0 ? `${h}:${two(m)}:${two(sec)}` : `${two(m)}:${two(sec)}`;
  }

  // Counts down and up between views.
  function tick() {
    if (!view) return;
    const v = view;
    const d = since();
    if (v.call) $('call-timer').textContent = clock(v.call.elapsed_s + d);
    if (v.code && v.screen === 'code') {
      const left = Math.max(0, v.code.resend_in_s - d);
      const b = $('code-resend');
      b.dataset.off = String(left > 0);
      b.disabled = v.busy || left > 0;
      if (left > 0) fill(b, 'code.resend_in', { s: { ltr: String(left) } });
      else fill(b, 'code.resend');
    }
    if (v.warning) {
      fill($('idle-text'), 'idle.text', { s: { ltr: String(Math.max(0, v.warning.seconds_left - d)) } });
    }
    document.querySelectorAll('[data-auto-reset]').forEach((el) => {
      if (v.auto_reset_s === undefined || v.auto_reset_s === null) {
        el.textContent = '';
      } else {
        fill(el, 'auto_reset', { s: { ltr: String(Math.max(0, v.auto_reset_s - d)) } });
      }
    });
  }

  // ---------- the country picker ----------

  function openCountries() {
    const list = $('country-list');
    list.textContent = '';
    const collator = new Intl.Collator(language);
    const countries = view.phone.countries.slice().sort((a, b) => collator.compare(countryName(a.iso), countryName(b.iso)));
    countries.forEach((c) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('data-testid', `country-${c.iso}`);
      b.setAttribute('aria-pressed', String(c.iso === phoneCountry));
      const name = document.createElement('span');
      name.textContent = countryName(c.iso);
      const code = document.createElement('bdi');
      code.className = 'ltr';
      code.dir = 'ltr';
      code.textContent = `+${c.code}`;
      b.append(name, code);
      b.addEventListener('click', () => {
        phoneCountry = c.iso;
        closeCountries();
        renderPhone();
        $('phone-country').focus();
      });
      list.append(b);
    });
    $('country-picker').hidden = false;
    const current = list.querySelector('[aria-pressed="true"]') || list.firstElementChild;
    if (current) current.focus();
  }

  function closeCountries() {
    $('country-picker').hidden = true;
    $('country-list').textContent = '';
  }

  // ---------- keypads ----------

  function buildKeypad(box, prefix) {
    box.setAttribute('aria-label', t('keypad.label'));
    ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'del', '0'].forEach((k) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('data-testid', `${prefix}-key-${k}`);
      if (k === 'del') {
        b.className = 'delete';
        b.dataset.i18n = 'key.delete';
        b.dataset.i18nLabel = 'key.delete_label';
        b.textContent = t('key.delete');
      } else {
        b.textContent = k;
      }
      b.addEventListener('click', () => press(prefix, k));
      box.append(b);
    });
  }

  function press(which, key) {
    if (!view || view.busy) return;
    if (which === 'phone' && view.screen === 'phone') {
      if (key === 'del') phoneDigits = phoneDigits.slice(0, -1);
      else if (phoneDigits.length < PHONE_MAX) phoneDigits += key;
      renderPhone();
    } else if (which === 'code' && view.screen === 'code') {
      if (key === 'del') codeDigits = codeDigits.slice(0, -1);
      else if (codeDigits.length < view.code.length) codeDigits += key;
      renderCode();
    }
  }

  async function submit(which) {
    if (!view || view.busy) return;
    if (which === 'phone' && view.screen === 'phone' && phoneDigits.length >= 4) {
      await post({ type: 'submit_phone', country: phoneCountry, number: phoneDigits });
    } else if (which === 'code' && view.screen === 'code' && codeDigits.length === view.code.length) {
      const code = codeDigits;
      codeDigits = '';
      renderCode();
      await post({ type: 'submit_code', code });
    }
  }

  // ---------- events ----------

  function wire() {
    buildKeypad($('phone-keypad'), 'phone');
    buildKeypad($('code-keypad'), 'code');
    document.querySelectorAll('[data-action]').forEach((b) => {
      b.addEventListener('click', () => post({ type: b.dataset.action }));
    });
    document.querySelectorAll('[data-submit]').forEach((b) => {
      b.addEventListener('click', () => submit(b.dataset.submit));
    });
    document.querySelectorAll('[data-score]').forEach((b) => {
      b.addEventListener('click', () => post({ type: 'survey', score: Number(b.dataset.score) }));
    });
    $('consent-yes').addEventListener('click', () => post({ type: 'consent', granted: true }));
    $('consent-no').addEventListener('click', () => post({ type: 'consent', granted: false }));
    $('callback-yes').addEventListener('click', () => post({ type: 'callback', accept: true }));
    $('callback-no').addEventListener('click', () => post({ type: 'callback', accept: false }));
    $('call-mute').addEventListener('click', () => post({ type: 'mute', muted: !(view && view.call && view.call.muted) }));
    $('phone-country').addEventListener('click', openCountries);
    $('country-close').addEventListener('click', () => {
      closeCountries();
      $('phone-country').focus();
    });

    document.addEventListener('pointerdown', touched, true);
    // Nothing to paste into, drop onto or select: the keypads are the only way in.
    ['paste', 'drop', 'dragover', 'dragstart', 'copy', 'cut', 'contextmenu'].forEach((type) => {
      document.addEventListener(type, (e) => e.preventDefault(), true);
    });
    document.addEventListener('keydown', onKey, true);
    setInterval(tick, 1000);
  }

  function onKey(e) {
    touched();
    if (!view) return;
    if (e.ctrlKey || e.metaKey || e.altKey) {
      // No shortcuts: no paste (Ctrl+V), no history navigation, no reload.
      e.preventDefault();
      return;
    }
    if (!$('country-picker').hidden) {
      if (e.key === 'Escape') {
        closeCountries();
        $('phone-country').focus();
        e.preventDefault();
      }
      return;
    }
    const screen = view.screen;
    const entry = screen === 'phone' || screen === 'code';
    if (entry && /^[0-9]$/.test(e.key)) {
      press(screen, e.key);
      e.preventDefault();
      return;
    }
    if (entry && e.key === 'Backspace') {
      press(screen, 'del');
      e.preventDefault();
      return;
    }
    if (e.key === 'Backspace') {
      e.preventDefault();
      return;
    }
    if (e.key === 'Enter') {
      const active = document.activeElement;
      if (active && active.tagName === 'BUTTON') return; // the button itself answers
      e.preventDefault();
      if (!$('idle-warning').hidden) {
        post({ type: 'extend' });
      } else if (entry) {
        submit(screen);
      } else {
        const primary = document.querySelector(`#screen-${screen} button.primary:not([hidden]):not(:disabled), #screen-${screen} button.hero`);
        if (primary && !primary.disabled) primary.click();
      }
    }
  }

  async function start() {
    wire();
    await loadWords();
    dict = dicts.en || {};
    applyWords();
    for (;;) {
      try {
        const r = await fetch('/api/view', { cache: 'no-store', credentials: 'omit' });
        if (r.ok) {
          apply(await r.json());
          break;
        }
      } catch (_) {
        // kiosk-ui is starting: try again.
      }
      await new Promise((res) => setTimeout(res, 1000));
    }
    const events = new EventSource('/api/events');
    events.addEventListener('view', (e) => {
      try {
        apply(JSON.parse(e.data));
      } catch (_) {
        // A malformed event: the next one redraws.
      }
    });
  }

  start();
})();
