// Talking to /api/v1 with the user's token (sessionStorage only; sent only in Authorization).

const TOKEN_KEY = "dlp.token";
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  spec = null;
}

let onUnauthenticated = () => {};

/** Called with the error message whenever the API answers 401 (expired or revoked token). */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

function buildUrl(path, query) {
  const url = new URL(API + path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === null || value === undefined || value === "") continue;
    url.searchParams.set(key, String(value));
  }
  return url.pathname + url.search;
}

/**
 * Call the API. Returns {data, total, headers}; `total` is the X-Total-Count header when present.
 * Throws ApiError (status, code, message) for any non-2xx answer.
 */
export async function request(path, { method = "GET", query, body, token } = {}) {
  const headers = { Accept: "application/json" };
  const secret = token ?? getToken();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(buildUrl(path, query), {
      method, headers, body: payload, credentials: "omit", cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "network", `the platform did not answer (${err.message})`);
  }
  const type = response.headers.get("content-type") || "";
  let data = null;
  if (type.includes("application/json")) {
    data = await response.json().catch(() => null);
  } else {
    data = await response.text();
  }
  if (!response.ok) {
    const code = (data && data.error) || `http_${response.status}`;
    const message = (data && data.message) || response.statusText || "request failed";
    const error = new ApiError(response.status, code, message);
    if (response.status === 401 && token === undefined) onUnauthenticated(message);
    throw error;
  }
  const totalHeader = response.headers.get("x-total-count");
  const total = totalHeader === null ? null : Number(totalHeader);
  return { data, total: Number.isFinite(total) ? total : null, headers: response.headers };
}

/**
 * Fetch a file's bytes with the token (an <img> or a link cannot send the Authorization header).
 * With `limitBytes`, reading stops once that many bytes came (the rest is never downloaded).
 * Returns {blob, truncated, type, sha256}; throws ApiError as `request` does.
 */
export async function download(path, { limitBytes } = {}) {
  const headers = {};
  const secret = getToken();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let response;
  try {
    response = await fetch(buildUrl(path), { headers, credentials: "omit", cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "network", `the platform did not answer (${err.message})`);
  }
  const type = response.headers.get("content-type") || "application/octet-stream";
  if (!response.ok) {
    const data = type.includes("application/json") ? await response.json().catch(() => null) : null;
    const message = (data && data.message) || response.statusText || "request failed";
    if (response.status === 401) onUnauthenticated(message);
    throw new ApiError(response.status, (data && data.error) || `http_${response.status}`, message);
  }
  const sha256 = response.headers.get("x-dlp-sha256");
  if (!limitBytes || !response.body) {
    return { blob: await response.blob(), truncated: false, type, sha256 };
  }
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    if (size >= limitBytes) {
      truncated = true;
      await reader.cancel();
      break;
    }
  }
  return { blob: new Blob(chunks, { type }).slice(0, limitBytes, type), truncated, type, sha256 };
}

export async function get(path, query) {
  return (await request(path, { query })).data;
}

export async function post(path, body) {
  return (await request(path, { method: "POST", body })).data;
}

// --- which routes exist: the OpenAPI document tells (routes land one by one) ---------------

let spec = null;

export async function loadSpec() {
  if (spec) return spec;
  const response = await fetch(`${API}/openapi.json`, { credentials: "omit" });
  spec = response.ok ? await response.json() : { paths: {} };
  return spec;
}

/** Whether the gateway has `method path` (path as written in OpenAPI, e.g. /datasets/{name}). */
export function has(path, method = "get") {
  const paths = (spec && spec.paths) || {};
  const wanted = path.replace(/\{[^}]+\}/g, "{}");
  return Object.entries(paths).some(
    ([p, ops]) => p.replace(/\{[^}]+\}/g, "{}") === API + wanted && method in ops,
  );
}

/** The query parameters an operation accepts (to know whether a list route paginates). */
export function paramsOf(path, method = "get") {
  const paths = (spec && spec.paths) || {};
  const wanted = path.replace(/\{[^}]+\}/g, "{}");
  for (const [p, ops] of Object.entries(paths)) {
    if (p.replace(/\{[^}]+\}/g, "{}") === API + wanted && ops[method]) {
      return (ops[method].parameters || []).map((x) => x.name);
    }
  }
  return [];
}

export function seg(value) {
  return encodeURIComponent(String(value));
}
