// The one way the console talks to tenantd: api(method, path, body).
// `body` is sent as JSON, or as-is when it is a Blob.
// Successful calls resolve to the parsed JSON body (or null for 204).
// Failures reject with an ApiError carrying the server's code/message/field.

export class ApiError extends Error {
  constructor(status, code, message, field = null, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
    // Set when the global auth handler already reacted (e.g. redirected to
    // the sign-in page), so pages need not show the error themselves.
    this.handled = false;
  }
}

// Called with the ApiError for `unauthenticated` and `password_change_required`.
let authHandler = null;
export function setAuthHandler(fn) {
  authHandler = fn;
}

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body instanceof Blob) {
    // Binary uploads (e.g. a JPEG snapshot) go as they are, with their own type.
    init.headers['Content-Type'] = body.type || 'application/octet-stream';
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the server. Check your connection and try again.');
  }

  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null; // e.g. an HTML error page from a proxy
    }
  }
  if (res.ok) return data;

  const e = (data && data.error) || {};
  // retry_after_s may sit inside `error` or beside it; fall back to the header.
  const retry = e.retry_after_s ?? (data && data.retry_after_s) ?? res.headers.get('Retry-After');
  const err = new ApiError(
    res.status,
    e.code || `http_${res.status}`,
    e.message || `The request failed (HTTP ${res.status}).`,
    e.field || null,
    retry == null ? null : Number(retry),
  );
  if (authHandler && (err.code === 'unauthenticated' || err.code === 'password_change_required')) {
    err.handled = authHandler(err) === true;
  }
  throw err;
}

// Human-readable text for an error (ApiError or anything else thrown).
export function errorText(err) {
  if (err instanceof ApiError) {
    if (err.code === 'too_many_attempts' && Number.isFinite(err.retryAfter)) {
      return `Too many attempts, try again in ${err.retryAfter} s.`;
    }
    return err.message;
  }
  return (err && err.message) || String(err);
}

// Path segment helper so slugs/ids never break out of their segment.
export const seg = (v) => encodeURIComponent(String(v));
