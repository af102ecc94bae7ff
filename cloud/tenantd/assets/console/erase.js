// Erase a customer (org admins): a customer asked to be forgotten, so an admin erases their
// phone number's data in the organization with POST /api/v1/orgs/{org}/customers/erase
// ({"phone"} → {"erased": {"otp_codes", "customers", "callbacks", "calls"}}). Same page
// contract as pages.js.
//
// The number must not linger: it is sent in the body only (never in the URL), the input is
// emptied as soon as the API answers, the result names no number, and nothing is logged.
//
// Test hooks (stable names):
//   #erase-form, #erase-phone, #erase-submit
//   #erase-error            the API's refusal (a bad number names the field)
//   #erase-result           what was erased (dd elements carry data-count = the API's key)

import { api, seg } from './api.js';
import { h, field, errorBox, showError, pageHeading, dl } from './ui.js';

// The API's counts, in the words of the page; any other key is shown as it comes.
const COUNTS = [
  ['otp_codes', 'One-time codes deleted'],
  ['customers', 'Verified customers deleted'],
  ['callbacks', 'Callbacks deleted'],
  ['calls', 'Call records that lost the number'],
];

export async function page(ctx) {
  const org = ctx.me.org;
  const url = `/api/v1/orgs/${seg(org.slug)}/customers/erase`;
  const err = errorBox('erase-error');
  const result = h('section', { id: 'erase-result', class: 'panel', role: 'status', tabindex: '-1', hidden: true });
  const submit = h('button', { type: 'submit', id: 'erase-submit', class: 'danger' }, 'Erase this number');

  const form = h(
    'form',
    // POST: even if a script failed, a browser would never put the number in the URL.
    { id: 'erase-form', method: 'post' },
    field({
      label: 'Phone number, with its country code',
      id: 'erase-phone',
      name: 'phone',
      type: 'tel',
      inputmode: 'tel',
      autocomplete: 'off',
      spellcheck: 'false',
      required: true,
      hint: 'As typed on the kiosk: + or 00 and the country code, e.g. +44 20 7946 0000.',
    }),
    err,
    h('div', { class: 'actions' }, submit),
  );
  const input = form.elements.namedItem('phone');
  form.noValidate = true;

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (submit.disabled) return;
    err.textContent = '';
    input.removeAttribute('aria-invalid');
    const phone = input.value.trim();
    if (!phone) {
      err.textContent = 'Enter the phone number to erase.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    const sure = window.confirm(
      `Erase this number from ${org.name}? Its one-time codes, verified customers and callbacks are deleted, and its call records lose the number. This cannot be undone.`,
    );
    if (!sure) {
      input.focus();
      return;
    }
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    result.hidden = true;
    try {
      const answer = await api('POST', url, { phone });
      showResult(answer.erased || {});
    } catch (e) {
      showError(err, e);
      if (e && e.field === 'phone') input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      // Answered (or failed): the number leaves the page.
      input.value = '';
      submit.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  function showResult(erased) {
    const known = new Set(COUNTS.map(([k]) => k));
    const rows = COUNTS.map(([k, text]) => [text, h('span', { 'data-count': k }, String(erased[k] ?? 0))]).concat(
      Object.entries(erased)
        .filter(([k]) => !known.has(k))
        .map(([k, v]) => [k.replace(/_/g, ' '), h('span', { 'data-count': k }, String(v))]),
    );
    const total = Object.values(erased).reduce((n, v) => n + (Number(v) || 0), 0);
    result.replaceChildren(
      h('h2', null, 'Erased'),
      h(
        'p',
        null,
        total
          ? `The number’s data in ${org.name} is erased.`
          : `Nothing was stored for this number in ${org.name}; nothing was erased.`,
      ),
      dl(rows),
    );
    result.hidden = false;
    result.focus();
  }

  return h(
    'div',
    { class: 'narrow' },
    pageHeading('Erase a customer'),
    h('p', null, 'When a customer asks to be forgotten, erase their phone number’s data in this organization.'),
    h(
      'section',
      { class: 'panel notice', id: 'erase-what', 'aria-labelledby': 'erase-what-title' },
      h('h2', { id: 'erase-what-title' }, 'What is erased'),
      h(
        'ul',
        { class: 'plain-list' },
        h('li', null, 'The one-time codes sent to the number are deleted.'),
        h('li', null, 'The verified customers of the number (who proved it at a kiosk) are deleted.'),
        h('li', null, 'Its callbacks are deleted, open or done.'),
        h(
          'li',
          null,
          'Its call records stay, for the organization’s figures (time, kiosk, site, agent, outcome, survey score, consent), but lose the masked number and the link to the customer.',
        ),
      ),
      h('p', null, h('strong', null, 'This cannot be undone.'), ' Only this organization’s data is touched.'),
      h('h3', null, 'What stays'),
      h(
        'ul',
        { class: 'plain-list' },
        h('li', null, 'SMS delivery records, which hold the masked number only (they are deleted after 30 days).'),
        h('li', null, 'Snapshots agents took during the calls, with their call.'),
        h('li', null, 'The audit log: the erasure is logged with its counts, never the number; earlier entries stay as they are.'),
      ),
    ),
    form,
    result,
  );
}
