// The console's API client: every call goes to /v4 with the signed-in user's token,
// exactly as any other Linode API client would.

const KEY = 'nodebalancer.token';

/** ApiError is a refused or failed call, with the API's {field, reason} list. */
export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.map((e) => (e.field ? `${e.field}: ${e.reason}` : e.reason)).join('; '));
    this.name = 'ApiError';
    this.status = status;
    this.errors = errors;
  }
}

/** session holds the token for this browser tab only (sessionStorage). */
export const session = {
  get token() { return sessionStorage.getItem(KEY) || ''; },
  signIn(token) { sessionStorage.setItem(KEY, token); },
  signOut() { sessionStorage.removeItem(KEY); },
};

let onUnauthorized = () => {};
/** setUnauthorizedHandler names what happens when the API refuses the token (401). */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/**
 * call sends one request. It resolves to the decoded body, or rejects with an
 * ApiError (status 0 when the server could not be reached) or an AbortError.
 */
export async function call(method, path, body, {signal, token} = {}) {
  const headers = {Accept: 'application/json', Authorization: `Bearer ${token ?? session.token}`};
  const init = {method, headers, signal, cache: 'no-store'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/v4${path}`, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, [{reason: 'The server could not be reached. Check that nodebalancer is running.'}]);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const errors = Array.isArray(data?.errors) && data.errors.length
      ? data.errors : [{reason: `${res.status} ${res.statusText || 'error'}`}];
    const err = new ApiError(res.status, errors);
    if (res.status === 401 && token === undefined) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body, opts) => call('POST', path, body ?? {}, opts);
export const put = (path, body, opts) => call('PUT', path, body, opts);
export const del = (path, opts) => call('DELETE', path, undefined, opts);

/** all reads every page of a list endpoint (500 per page, the API's maximum). */
export async function all(path, opts) {
  const out = [];
  for (let page = 1; ; page++) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await get(`${path}${sep}page=${page}&page_size=500`, opts);
    out.push(...r.data);
    if (page >= r.pages) return out;
  }
}

/** isAbort tells an aborted request (a page left) from a real failure. */
export function isAbort(e) { return e?.name === 'AbortError'; }
