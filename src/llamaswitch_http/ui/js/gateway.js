// The gateway's routes, in one place. Each section that shows gateway data asks
// `available(caps, NAME)` first: a route the service's OpenAPI document does not list is
// never called, and the section says "not available from this service" instead.
//
// What each route is expected to answer (docs/dashboard.md has the same list):
//   models    GET /v1/models                      OpenAI list, not enveloped:
//             {"object": "list", "data": [{"id", "state", "aliases": [..],
//              "estimated_mib", "measured_mib"}]}
//   requests  GET /api/v1/gateway/requests?limit=N enveloped list, newest first:
//             [{"id", "model", "route", "state", "status", "queue_wait_s", "load_wait_s",
//               "ttft_s", "tokens", "tokens_per_s", "started_at", "finished_at"}]
//             state: "queued" | "loading" | "running" | "done" | "failed"
//   plan      GET /api/v1/gateway/plan[?model=M]   enveloped object:
//             {"devices": [{"id", "name", "total_mib", "used_mib", "estimated_mib",
//               "budget_mib"}], ...} (with ?model=: also "fits", "evict", anything else)
//   presets   GET /api/v1/presets                 enveloped list [{"name", "model",
//             "config", ...}] or object {name: {...}}
//   chat      POST /v1/chat/completions          OpenAI chat, "stream": true -> SSE of
//             chunks {"choices": [{"delta": {"content"}}]}, ended by "data: [DONE]"

import { fetchRaw, get, getJson } from "./api.js";
import { SseParser } from "./events.js";

export const ROUTES = {
  models: "/v1/models",
  requests: "/api/v1/gateway/requests",
  plan: "/api/v1/gateway/plan",
  presets: "/api/v1/presets",
  chat: "/v1/chat/completions",
};

/** Whether the service offers the gateway route `name`. */
export function available(caps, name) {
  return caps.has(ROUTES[name]);
}

/** Per-model gateway facts by catalog name: Map(name -> entry); names, ids and aliases all map. */
export async function modelFacts() {
  const body = await getJson(ROUTES.models.slice(1));
  const facts = new Map();
  for (const entry of (body && Array.isArray(body.data) ? body.data : [])) {
    for (const key of [entry.id, ...(Array.isArray(entry.aliases) ? entry.aliases : [])]) {
      if (typeof key === "string") facts.set(key, entry);
    }
  }
  return facts;
}

/** Recent gateway requests, newest first. */
export function recentRequests(limit = 100) {
  return get(ROUTES.requests.slice(1), { limit });
}

/** The memory plan: now, or for loading `model`. */
export function plan(model) {
  return get(ROUTES.plan.slice(1), model ? { model } : undefined);
}

/** The presets in effect, as a list of objects with a name. */
export async function presets() {
  const data = await get(ROUTES.presets.slice(1));
  if (Array.isArray(data)) return data;
  return Object.entries(data || {}).map(([name, value]) => (
    value && typeof value === "object" ? { name, ...value } : { name, value }));
}

/**
 * Stream a chat completion; `onText(delta)` for each piece. Resolves with the whole text.
 * `signal` aborts it.
 */
export async function streamChat({ model, messages, signal, onText }) {
  const response = await fetchRaw(ROUTES.chat.slice(1), {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ model, messages, stream: true }),
    signal,
  });
  if (!response.ok || !response.body) {
    const body = await response.json().catch(() => null);
    const message = body?.error?.message || body?.error || body?.message || `HTTP ${response.status}`;
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  let text = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) return text;
    for (const message of parser.push(value)) {
      if (message.data === "[DONE]") return text;
      let chunk;
      try { chunk = JSON.parse(message.data); } catch { continue; }
      const delta = chunk?.choices?.[0]?.delta?.content ?? chunk?.choices?.[0]?.text ?? "";
      if (delta) {
        text += delta;
        onText(delta);
      }
    }
  }
}
