// Fetch wrapper: same-origin cookie session (or a bearer token in localStorage), JSON in/out.
let onUnauthorised = () => {};

export function setUnauthorisedHandler(fn) { onUnauthorised = fn; }

export function authHeaders() {
  const token = localStorage.getItem("gw_token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export class ApiError extends Error {
  constructor(status, detail) { super(detail || `HTTP ${status}`); this.status = status; }
}

export async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { ...authHeaders() };
  let payload;
  if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (r.status === 401) { onUnauthorised(); throw new ApiError(401, "unauthorised"); }
  if (!r.ok) {
    let detail = "";
    try {
      const j = await r.json();
      detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail || j);
      // A 422 names the fields: say which, so the operator can fix the form.
      if (Array.isArray(j.errors) && j.errors.length) detail += `: ${j.errors.map((e) => `${e.loc} ${e.msg}`).join("; ")}`;
    } catch { /* not JSON */ }
    throw new ApiError(r.status, detail);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.text();
}

// The gateway's health report: read whatever the status (a 503 still names the gateway and says why).
export async function health() {
  const r = await fetch("/api/v1/health", { credentials: "same-origin" });
  return r.json();
}

// An ISO time, or epoch seconds (some APIs, e.g. children), as local "YYYY-MM-DD HH:MM:SS".
export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}
