// The gateway's routes, in one place (docs/gateway.md and docs/dashboard.md describe them;
// the gateway's code is the truth: src/llamaswitch_http/_gateway.py, _handlers.py).
//
//   models    GET /v1/models                       OpenAI list, not enveloped:
//             {"object": "list", "data": [{"id", "aliases", "file", "state", "port",
//              "estimated", "measured", "estimated_mib", "measured_mib", "in_flight",
//              "queued", "slots", "pinned", "ttl_s", "preset", "last_used", "error",
//              "load_progress"}]}
//             state: unloaded | loading | ready | unloading | failed; load_progress:
//             0-1 while loading (a build that says), else null
//   requests  GET /api/v1/gateway/requests?limit=N enveloped list, newest first:
//             [{"id", "model", "route", "state", "status", "queue_wait_s", "load_wait_s",
//               "ttft_s", "tokens", "tokens_per_s", "started_at", "finished_at",
//               "duration_s", "error"}]; state: queued | loading | running | done | failed
//   plan      GET /api/v1/gateway/plan[?model=M]   enveloped: {"devices": [{"id", "name",
//             "used_mib", "estimated_mib", "budget_mib", "total_mib"}], "models":
//             {"loaded", "max_models"}, "in_flight": {model: n}, "queued": {model: n}};
//             with ?model=, also "plan": {"model", "action", "reason", "need", "evict",
//             "wait_for", "figures"}; action: ready | load | wait | refuse
//   presets   GET /api/v1/presets                  enveloped: {"path", "defaults",
//             "models": [{"id", "file", "aliases", "preload", "pinned", "ttl_s"?,
//             "config"}], "error": null | {"code", "path", "errors": ["reason @ where"],
//             "fields": [{"where", "reason"}], "message"}}; POST /api/v1/presets/reload
//             reads the file again (422 with the same "errors" and "fields" when it is bad)
//   chat      POST /v1/chat/completions           "stream": true -> llama-server's SSE:
//             chunks {"choices": [{"delta": {"content"}}]}, ended by "data: [DONE]"; a
//             server that dies mid-stream ends it with "event: error"

import { fetchRaw, get, getJson, post } from "./api.js";
import { SseParser } from "./events.js";

export const ROUTES = {
  models: "/v1/models",
  requests: "/api/v1/gateway/requests",
  plan: "/api/v1/gateway/plan",
  presets: "/api/v1/presets",
  reload: "/api/v1/presets/reload",
  chat: "/v1/chat/completions",
};

/** Every model the gateway can serve (GET /v1/models `data`). */
export async function models() {
  const body = await getJson(ROUTES.models.slice(1));
  return body && Array.isArray(body.data) ? body.data : [];
}

// Most telling first: what a catalog row shows when several gateway ids share its file.
const STATE_RANK = { ready: 5, loading: 4, unloading: 3, failed: 2, unloaded: 1 };

/**
 * The gateway's entry for each catalog file: Map(relative path -> entry). Several ids
 * can load one file (presets): the one that answers to the file's own name (its
 * catalog entry) gives the memory figures, the busiest one gives the state, and
 * `ids` lists them all.
 */
export function byFile(entries) {
  const groups = new Map();
  for (const entry of entries) {
    if (typeof entry.file !== "string") continue;
    if (!groups.has(entry.file)) groups.set(entry.file, []);
    groups.get(entry.file).push(entry);
  }
  const result = new Map();
  for (const [file, group] of groups) {
    const name = file.split("/").pop();
    const own = group.find((e) => e.id === name || (e.aliases || []).includes(name)) || group[0];
    const busiest = group.reduce((a, b) => ((STATE_RANK[b.state] || 0) > (STATE_RANK[a.state] || 0) ? b : a));
    result.set(file, { ...own, state: busiest.state, error: busiest.error ?? own.error,
      ids: group.map((e) => e.id) });
  }
  return result;
}

/** Recent gateway requests, newest first. */
export function recentRequests(limit = 100) {
  return get(ROUTES.requests.slice(1), { limit });
}

/** Memory per device, model count, requests in flight and queued; with `model`, also
 *  `plan`: what loading it would take. */
export function plan(model) {
  return get(ROUTES.plan.slice(1), model ? { model } : undefined);
}

/** The presets in effect: {path, defaults, models, error}. */
export function presets() {
  return get(ROUTES.presets.slice(1));
}

/** Read the presets file again (throws ApiError with `data.errors` when it is bad). */
export function reloadPresets() {
  return post(ROUTES.reload.slice(1));
}

/**
 * "[models.fast] ctx_size: must be ..." lines of a presets error (the 422's `data`, or
 * GET /api/v1/presets's `error`): from its `fields` ({where, reason}), else its `errors`
 * ("reason @ where" texts).
 */
export function presetProblems(error) {
  const fields = Array.isArray(error?.fields) ? error.fields : [];
  if (fields.length) return fields.map((f) => (f.where ? `${f.where}: ${f.reason}` : String(f.reason ?? "")));
  return (Array.isArray(error?.errors) ? error.errors : []).map((e) => {
    if (e && typeof e === "object") return e.where ? `${e.where}: ${e.reason}` : String(e.reason ?? "");
    const text = String(e);
    const at = text.lastIndexOf(" @ ");
    return at >= 0 ? `${text.slice(at + 3)}: ${text.slice(0, at)}` : text;
  });
}

/** The figures of a MemoryNeed ({ram_mib, vram_mib: {gpu: mib}}) as [[label, mib]]. */
export function needParts(need) {
  if (!need || typeof need !== "object") return [];
  const parts = [["RAM", need.ram_mib]];
  for (const [gpu, value] of Object.entries(need.vram_mib || {}).sort()) parts.push([`GPU ${gpu}`, value]);
  return parts;
}

/**
 * Stream a chat completion; `onText(delta)` for each piece. Resolves with the whole text.
 * `signal` aborts it (which aborts the upstream generation too).
 */
export async function streamChat({ model, messages, signal, onText, maxTokens }) {
  const body = { model, messages, stream: true };
  if (maxTokens) body.max_tokens = maxTokens;
  const response = await fetchRaw(ROUTES.chat.slice(1), {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok || !response.body) throw new Error(errorText(await response.json().catch(() => null), response.status));
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
      if (message.event === "error" || chunk?.error) throw new Error(errorText(chunk, 502));
      const delta = chunk?.choices?.[0]?.delta?.content ?? chunk?.choices?.[0]?.text ?? "";
      if (delta) {
        text += delta;
        onText(delta);
      }
    }
  }
}

function errorText(body, status) {
  const message = body?.error?.message || body?.error || body?.message || `HTTP ${status}`;
  return typeof message === "string" ? message : JSON.stringify(message);
}
