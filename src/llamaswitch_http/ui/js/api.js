// The REST client of the dashboard: the documented API only, with the bearer key when
// the service has one. Every answer is the envelope {success, message, data, error};
// a failure becomes an ApiError carrying the envelope's data (code, errors...).

/** The service's root (the page lives at <root>/ui/), so a reverse proxy may mount it anywhere. */
export const ROOT = new URL("..", document.baseURI);

const KEY_STORAGE = "llamaswitch.apiKey";

/** Whether the service needs a key: its page says so (a probe would log a 401). */
export function keyRequired() {
  return document.querySelector('meta[name="llamaswitch-auth"]')?.content === "bearer";
}

/** The key of this session, or null. sessionStorage only: it ends with the tab. */
export function getKey() {
  try { return sessionStorage.getItem(KEY_STORAGE); } catch { return null; }
}

export function setKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

/** Headers every call sends. */
export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

const unauthorizedListeners = new Set();
/** `fn()` runs when a call is refused with 401 (the key is wrong or missing). */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

/** An API failure: HTTP status, the envelope's code and errors, and its texts. */
export class ApiError extends Error {
  constructor(status, envelope) {
    const data = envelope && typeof envelope.data === "object" && envelope.data ? envelope.data : {};
    super((envelope && (envelope.error || envelope.message)) || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.summary = envelope?.message || `HTTP ${status}`;
    this.code = data.code || "http_error";
    this.errors = Array.isArray(data.errors) ? data.errors : [];
    this.data = data;
  }
}

/** An absolute URL of the service for `path` ("api/v1/models") and query parameters. */
export function url(path, query) {
  const target = new URL(path.replace(/^\//, ""), ROOT);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, String(value));
  }
  return target;
}

async function send(method, path, { query, body, signal } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), init);
  if (response.status === 401) for (const fn of unauthorizedListeners) fn();
  return response;
}

/** Call an enveloped route; its full envelope (throws ApiError on failure). */
export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  let envelope = null;
  try { envelope = await response.json(); } catch { envelope = null; }
  if (!response.ok || !envelope || envelope.success === false) throw new ApiError(response.status, envelope);
  envelope.status = response.status;
  return envelope;
}

/** Call an enveloped route; its `data`. */
export async function api(method, path, options = {}) {
  return (await request(method, path, options)).data;
}

export const get = (path, query, options = {}) => api("GET", path, { ...options, query });
export const post = (path, body, query) => api("POST", path, { body, query });

/** Call a route that answers plain JSON (the OpenAPI document, OpenAI-style routes). */
export async function getJson(path, query) {
  const response = await send("GET", path, { query });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body && body.success === false ? body : null);
  return body;
}

/** Raw fetch with the key, for streams. */
export function fetchRaw(path, init = {}) {
  return fetch(url(path), { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
}

let capabilities = null;
/**
 * What this service offers, from its OpenAPI document: `paths` (a Set of "/api/v1/...")
 * and `schemas` (components.schemas). Sections that need a route the document lacks show
 * "not available" instead of calling it.
 */
export async function getCapabilities() {
  if (!capabilities) {
    capabilities = getJson("api/v1/openapi.json").then((doc) => ({
      paths: new Set(Object.keys(doc.paths || {})),
      schemas: (doc.components && doc.components.schemas) || {},
      version: doc.info?.version || "",
      has(path) { return this.paths.has(path); },
    })).catch((error) => { capabilities = null; throw error; });
  }
  return capabilities;
}

/** Forget the cached capabilities (after a new key). */
export function resetCapabilities() {
  capabilities = null;
}

/**
 * Split an error's `errors` ("reason @ $.config.threads") by field under `root`
 * ("$.config"): {fields: Map(name -> [reason]), general: [text]}. A field named by
 * `data.field` (unsupported_option) gets the whole message.
 */
export function errorsByField(error, roots = { "$.config": "", $: "" }) {
  const fields = new Map();
  const general = [];
  const add = (name, text) => {
    if (!fields.has(name)) fields.set(name, []);
    fields.get(name).push(text);
  };
  const entries = error.errors.length ? error.errors : [error.message];
  for (const entry of entries) {
    const text = String(entry);
    const at = text.lastIndexOf(" @ ");
    const reason = at >= 0 ? text.slice(0, at) : text;
    const path = at >= 0 ? text.slice(at + 3).trim() : "";
    let placed = false;
    for (const [root, prefix] of Object.entries(roots)) {
      if (!path.startsWith(`${root}.`) && !path.startsWith(`${root}[`)) continue;
      const rest = path.slice(root.length).replace(/^\./, "");
      const name = rest.split(/[.[]/)[0];
      if (name) {
        add(prefix + name, reason);
        placed = true;
        break;
      }
    }
    if (!placed) general.push(text);
  }
  if (typeof error.data.field === "string" && !fields.size) {
    add(error.data.field, error.message);
    general.length = 0;
  }
  return { fields, general };
}
