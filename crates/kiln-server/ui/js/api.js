// Kiln's public REST API, called with the session cookie; state-changing
// requests carry the session's CSRF token.

export const session = { user: null, admin: false, csrf: "", id: "", lakebasePort: 5432 };

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `${status} ${code}`);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body, query) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const text = q.toString();
    if (text) url += (url.includes("?") ? "&" : "?") + text;
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-Kiln-CSRF"] = session.csrf;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text };
  }
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith("/ui/api/login")) onSignedOut();
    throw new ApiError(res.status, data.error_code || data.error, data.message || data.error || text);
  }
  return data;
}

export const get = (path, query) => api("GET", path, undefined, query);
export const post = (path, body) => api("POST", path, body ?? {});

let signedOut = () => {};
export function whenSignedOut(fn) {
  signedOut = fn;
}
function onSignedOut() {
  session.user = null;
  signedOut();
}

export async function loadSession() {
  try {
    const s = await get("/ui/api/session");
    Object.assign(session, { user: s.user_name, admin: s.admin, csrf: s.csrf_token, id: s.id, lakebasePort: s.lakebase_port });
    return true;
  } catch {
    return false;
  }
}

export async function signIn(body) {
  const s = await api("POST", "/ui/api/login", body);
  Object.assign(session, { user: s.user_name, admin: s.admin, csrf: s.csrf_token, id: s.id, lakebasePort: s.lakebase_port });
}

export async function signOut() {
  await api("POST", "/ui/api/logout", {});
  session.user = null;
}

// Every page of a paged list (`next_page_token`/`page_token`).
export async function all(path, key, query = {}, maxPages = 100) {
  const out = [];
  let token;
  for (let i = 0; i < maxPages; i++) {
    const page = await get(path, { ...query, page_token: token });
    out.push(...(page[key] || []));
    token = page.next_page_token;
    if (!token) break;
  }
  return out;
}
