// Kioskcall console: entry point. Holds the signed-in identity ("me"),
// routes on the URL hash, draws the header and hands <main> to pages.

import { api, setAuthHandler, errorText } from './api.js';
import { h, setChildren, roleLabel } from './ui.js';
import * as pages from './pages.js';
import * as sites from './sites.js';
import * as devices from './devices.js';
import * as calls from './calls.js';
import * as records from './records.js';
import * as callbacks from './callbacks.js';
import * as sms from './sms.js';
import * as erase from './erase.js';

const main = document.getElementById('main');
const header = document.getElementById('site-header');

// ---------- state ----------
let me = null; // the Me object, or null when signed out
let returnTo = null; // route to resume after signing in
let flash = null; // one-shot notice shown on the next page
let renderSeq = 0; // bumps on each render; stale async renders give up
let started = false; // until the first /me answer, start() does the routing

const ORG_ADMIN = ['org_admin'];
const SUPER = ['super_admin'];
const CALL_TAKERS = ['agent', 'org_admin'];

// path pattern → page. `roles` limits who may see it; `org` means an org is
// needed (the org admin pages use me.org.slug).
const ROUTES = [
  { path: '/login', name: 'login', title: 'Sign in', page: pages.login, public: true },
  { path: '/password', name: 'password', title: 'Change password', page: pages.password },
  { path: '/', name: 'home', title: 'Home', page: pages.home },
  { path: '/calls', name: 'calls', title: 'Calls', page: calls.page, roles: CALL_TAKERS, org: true },
  { path: '/records', name: 'records', title: 'Call records', page: records.page, roles: CALL_TAKERS, org: true },
  { path: '/callbacks', name: 'callbacks', title: 'Callbacks', page: callbacks.page, roles: CALL_TAKERS, org: true },
  { path: '/orgs', name: 'orgs', title: 'Organizations', page: pages.orgs, roles: SUPER },
  { path: '/users', name: 'users', title: 'Users', page: pages.users, roles: ORG_ADMIN, org: true },
  { path: '/sites', name: 'sites', title: 'Sites', page: sites.list, roles: ORG_ADMIN, org: true },
  { path: '/sites/new', name: 'site', title: 'New site', page: sites.editor, roles: ORG_ADMIN, org: true },
  { path: '/sites/:id', name: 'site', title: 'Edit site', page: sites.editor, roles: ORG_ADMIN, org: true },
  { path: '/devices', name: 'devices', title: 'Devices', page: devices.list, roles: ORG_ADMIN, org: true },
  { path: '/devices/:id', name: 'device', title: 'Device', page: devices.detail, roles: ORG_ADMIN, org: true },
  { path: '/sms', name: 'sms', title: 'SMS', page: sms.page, roles: ORG_ADMIN, org: true },
  { path: '/erase', name: 'erase', title: 'Erase a customer', page: erase.page, roles: ORG_ADMIN, org: true },
  { path: '/settings', name: 'settings', title: 'Settings', page: pages.settings, roles: ORG_ADMIN, org: true },
  { path: '/tokens', name: 'tokens', title: 'API tokens', page: pages.tokens, roles: ORG_ADMIN, org: true },
  { path: '/audit', name: 'audit', title: 'Audit log', page: pages.audit, roles: ORG_ADMIN, org: true },
];

// Header navigation per role.
const NAV = {
  org_admin: [
    ['/calls', 'Calls'],
    ['/records', 'Records'],
    ['/callbacks', 'Callbacks'],
    ['/users', 'Users'],
    ['/sites', 'Sites'],
    ['/devices', 'Devices'],
    ['/sms', 'SMS'],
    ['/erase', 'Erase customer'],
    ['/settings', 'Settings'],
    ['/tokens', 'API tokens'],
    ['/audit', 'Audit'],
  ],
  super_admin: [['/orgs', 'Organizations']],
  agent: [
    ['/calls', 'Calls'],
    ['/records', 'Records'],
    ['/callbacks', 'Callbacks'],
  ],
};

function currentPath() {
  const raw = location.hash.replace(/^#/, '').split('?')[0];
  return raw.startsWith('/') ? raw : '/';
}

function match(path) {
  const parts = path.split('/');
  for (const r of ROUTES) {
    const rp = r.path.split('/');
    if (rp.length !== parts.length) continue;
    const params = {};
    const ok = rp.every((p, i) => {
      if (p.startsWith(':')) {
        params[p.slice(1)] = decodeURIComponent(parts[i]);
        return parts[i] !== '';
      }
      return p === parts[i];
    });
    if (ok) return { route: r, params };
  }
  return null;
}

// ---------- navigation ----------
// go(): user-level navigation (adds history). redirect(): replaces the
// current entry, so Back doesn't bounce into a guard again.
function go(path) {
  if (currentPath() === path) render();
  else location.hash = path;
}
function redirect(path) {
  if (currentPath() === path) render();
  else location.replace(`#${path}`);
}

const mustChange = () => !!(me && me.user && me.user.must_change_password);

function setMe(next) {
  me = next;
  renderHeader();
}

// Global reaction to auth errors from any API call (see api.js).
setAuthHandler((err) => {
  if (err.code === 'unauthenticated') {
    calls.disconnect();
    if (currentPath() !== '/login') returnTo = currentPath();
    setMe(null);
    if (started) redirect('/login');
    return true;
  }
  if (err.code === 'password_change_required' && me && me.user) {
    me.user.must_change_password = true;
    renderHeader();
    redirect('/password');
    return true;
  }
  return false;
});

// ---------- header ----------
function renderHeader() {
  const path = currentPath();
  const link = (href, text) =>
    h('a', { href: `#${href}`, 'aria-current': path === href || path.startsWith(`${href}/`) ? 'page' : null }, text);

  const brand = h('a', { href: '#/', class: 'brand' }, 'Kioskcall console');
  if (!me) {
    header.replaceChildren(h('div', { class: 'bar' }, brand));
    return;
  }
  const items = mustChange() ? [] : NAV[me.role] || [];
  const who = me.user ? me.user.email : `API token (${roleLabel(me.role)})`;
  const signout = h('button', { type: 'button', id: 'signout', class: 'link-button' }, 'Sign out');
  signout.addEventListener('click', signOut);

  setChildren(
    header,
    h(
      'div',
      { class: 'bar' },
      brand,
      me.org ? h('span', { class: 'org-name' }, me.org.name) : null,
      h(
        'div',
        { class: 'account' },
        h('span', { class: 'email' }, who),
        me.user ? link('/password', 'Change password') : null,
        signout,
      ),
    ),
    items.length
      ? h('nav', { 'aria-label': 'Main' }, h('ul', null, items.map(([href, text]) => h('li', null, link(href, text)))))
      : null,
  );
}

async function signOut() {
  calls.disconnect(); // hangs up a call and closes the calls socket while still signed in
  try {
    await api('POST', '/api/v1/auth/logout');
  } catch {
    /* signed out or not, we leave the console */
  }
  returnTo = null;
  setMe(null);
  flash = 'You have been signed out.';
  go('/login');
}

// ---------- rendering ----------
async function render() {
  const seq = ++renderSeq;
  const path = currentPath();
  const m = match(path);
  renderHeader();

  // Guards, in order: signed in? must change password? role allowed?
  if (!m) return show(seq, 'not-found', 'Not found', notFound());
  const { route, params } = m;
  if (!me && !route.public) {
    returnTo = path;
    return redirect('/login');
  }
  if (me && route.public) return redirect('/');
  if (mustChange() && route.name !== 'password') return redirect('/password');
  // Agents work on the Calls page: it is their home.
  if (route.name === 'home' && me.role === 'agent' && me.org) return redirect('/calls');
  if (route.roles && !(route.roles.includes(me.role) && (!route.org || me.org))) {
    return show(seq, 'forbidden', 'Not available', notAllowed());
  }

  main.removeAttribute('data-page');
  main.setAttribute('aria-busy', 'true');
  main.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));

  const ctx = {
    me,
    params,
    go,
    setMe,
    flash: (msg) => {
      flash = msg;
    },
    // After signing in: resume where the user was heading.
    afterLogin(next) {
      setMe(next);
      const target = returnTo && returnTo !== '/login' ? returnTo : '/';
      returnTo = null;
      redirect(mustChange() ? '/password' : target);
    },
  };
  try {
    const node = await route.page(ctx);
    show(seq, route.name, route.title, node);
  } catch (err) {
    if (err && err.handled) return; // auth handler navigated away
    if (err && err.code === 'forbidden') show(seq, 'forbidden', 'Not available', notAllowed());
    else show(seq, 'error', 'Error', loadFailed(err));
  }
}

// Put a finished page into <main>, unless a newer render started meanwhile.
function show(seq, name, title, node) {
  if (seq !== renderSeq) return;
  main.replaceChildren(node);
  const h1 = main.querySelector('h1');
  if (flash) {
    const note = h('p', { class: 'notice', role: 'status' }, flash);
    if (h1) h1.closest('.page-head').after(note);
    else main.prepend(note);
    flash = null;
  }
  document.title = `${h1 ? h1.textContent : title} – Kioskcall console`;
  main.removeAttribute('aria-busy');
  main.setAttribute('data-page', name);
  // Move focus to the new page's heading so keyboard and screen reader
  // users start at the top of the new content.
  if (h1) h1.focus();
  else main.focus();
}

function simplePage(title, ...body) {
  return h('div', null, h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, title)), body);
}
const homeLink = () => h('p', null, h('a', { href: '#/' }, 'Go to the home page'));
const notFound = () => simplePage('Page not found', h('p', null, 'There is no such page in the console.'), homeLink());
const notAllowed = () => simplePage('Not available', h('p', null, 'Not available for your role.'), homeLink());

function loadFailed(err) {
  const retry = h('button', { type: 'button', onclick: () => render() }, 'Try again');
  return simplePage(
    'Something went wrong',
    h('p', { class: 'form-error', role: 'alert' }, errorText(err)),
    h('p', null, retry),
  );
}

// ---------- start ----------
async function start() {
  // The skip link must not change the hash (that is our router's).
  const skip = document.querySelector('.skip-link');
  if (skip) {
    skip.addEventListener('click', (ev) => {
      ev.preventDefault();
      const h1 = main.querySelector('h1');
      (h1 || main).focus();
    });
  }
  try {
    me = (await api('GET', '/api/v1/me')) || null;
  } catch (err) {
    me = null;
    if (!err.handled) {
      // Not a plain "signed out": still show the sign-in page, with the reason.
      flash = errorText(err);
    }
  }
  started = true;
  window.addEventListener('hashchange', render);
  render();
}

start();
