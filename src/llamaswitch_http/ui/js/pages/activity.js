// Activity: the gateway's recent requests (model, status, queue wait, load wait, time to
// first token, tokens/s), live, and a small playground chat that streams from the
// gateway (POST /v1/chat/completions, as any OpenAI client would).

import { card, clear, h, num, stateBadge, timeEl } from "../dom.js";
import * as gateway from "../gateway.js";

const POLL_MS = 2000;
const LIMIT = 100;

const COLUMNS = [
  ["Time", (r) => timeEl(r.started_at || r.finished_at, { short: true })],
  ["Model", (r) => r.model ?? "—"],
  ["Route", (r) => r.route ?? "—"],
  ["State", (r) => stateBadge(r.state)],
  ["Status", (r) => (r.status ?? "—"), true],
  ["Queue wait", (r) => seconds(r.queue_wait_s), true],
  ["Load wait", (r) => seconds(r.load_wait_s), true],
  ["First token", (r) => seconds(r.ttft_s), true],
  ["Tokens", (r) => (r.tokens ?? "—"), true],
  ["Tokens/s", (r) => num(r.tokens_per_s, 1), true],
  ["Duration", (r) => seconds(r.duration_s), true],
  ["Error", (r) => r.error ?? ""],
];

export async function mount(main, ctx) {
  main.append(h("h1", { tabindex: "-1", text: "Activity" }));
  const offs = [];
  const timers = [];

  // -- recent requests ----------------------------------------------------------------------
  const requestsCard = card("Recent gateway requests", { id: "requests" });
  main.append(requestsCard);
  const tbody = h("tbody");
  const status = h("p", { class: "muted", id: "requests-status", role: "status" });
  const empty = h("p", { class: "muted", id: "requests-empty",
    text: "No request through the gateway yet. Point an OpenAI client at /v1, or use the playground below." });
  const table = h("table", { id: "requests-table" },
    h("caption", { text: `The last ${LIMIT} requests, newest first (no prompt text is kept)` }),
    h("thead", {}, h("tr", {}, COLUMNS.map(([t, , n]) => h("th", { scope: "col", class: n ? "num" : undefined, text: t })))),
    tbody);
  requestsCard.append(status, empty, h("div", { class: "table-wrap" }, table));

  let shownKey = "";
  let pending = null;
  const refresh = () => {
    pending ??= gateway.recentRequests(LIMIT).then((list) => {
      if (ctx.stale()) return;
      // Redraw only when something changed (the poll mostly finds the same list).
      const key = JSON.stringify(list);
      if (key === shownKey) return;
      shownKey = key;
      tbody.replaceChildren(...list.map((r) => h("tr", { dataset: { request: String(r.id), state: r.state } },
        COLUMNS.map(([, f, n]) => h("td", { class: n ? "num" : undefined }, f(r))))));
      table.hidden = list.length === 0;
      empty.hidden = list.length > 0;
      const running = list.filter((r) => ["queued", "loading", "running"].includes(r.state)).length;
      status.textContent = `${list.length} request${list.length === 1 ? "" : "s"}` + (running ? `, ${running} not finished` : "");
    }).catch((error) => {
      if (!ctx.stale()) status.textContent = `Could not read the requests: ${error.message}`;
    }).finally(() => { pending = null; });
    return pending;
  };

  // -- playground ---------------------------------------------------------------------------
  const chatCard = card("Playground", { id: "playground" });
  main.append(chatCard);
  const model = h("select", { id: "chat-model" });
  const maxTokens = h("input", { id: "chat-max-tokens", type: "number", min: "1", step: "1", value: "64",
    inputmode: "numeric" });
  const prompt = h("textarea", { id: "chat-prompt", rows: 3, placeholder: "Say something to the model" });
  const send = h("button", { type: "submit", class: "primary", text: "Send" });
  const stop = h("button", { type: "button", text: "Stop", disabled: true });
  const output = h("div", { class: "chat-output", id: "chat-output", "aria-live": "polite", role: "log",
    "aria-label": "The model's answer" });
  const problem = h("p", { class: "notice error", id: "chat-error", role: "alert" });
  const chatStatus = h("p", { class: "muted", id: "chat-status", role: "status" });
  let controller = null;
  const form = h("form", { id: "chat-form", novalidate: true, "aria-labelledby": chatCard.firstChild.id },
    h("div", { class: "toolbar" },
      h("label", { for: "chat-model" }, "Model", model),
      h("label", { for: "chat-max-tokens" }, "Max tokens", maxTokens)),
    h("label", { for: "chat-prompt", text: "Message" }), prompt,
    h("div", { class: "actions" }, send, stop), problem, chatStatus, output);
  chatCard.append(h("p", { class: "muted",
    text: "Streams from the gateway, which loads the model first if it is not served." }), form);

  const [entries] = await Promise.all([gateway.models(), refresh()]);
  for (const entry of entries) model.append(h("option", { value: entry.id, text: entry.id }));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!prompt.value.trim()) return;
    clear(output);
    problem.textContent = "";
    chatStatus.textContent = `Sent to ${model.value}…`;
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    const began = performance.now();
    let pieces = 0;
    try {
      const limit = Number.parseInt(maxTokens.value, 10);
      await gateway.streamChat({ model: model.value, messages: [{ role: "user", content: prompt.value }],
        maxTokens: Number.isFinite(limit) && limit > 0 ? limit : undefined,
        signal: controller.signal, onText: (text) => {
          pieces += 1;
          output.append(text);
        } });
      chatStatus.textContent = `Done: ${pieces} piece${pieces === 1 ? "" : "s"} in ${seconds((performance.now() - began) / 1000)}.`;
    } catch (error) {
      if (error.name === "AbortError") chatStatus.textContent = "Stopped.";
      else {
        chatStatus.textContent = "";
        problem.textContent = error.message;
      }
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
      refresh();
    }
  });
  stop.addEventListener("click", () => controller?.abort());

  offs.push(ctx.feed.on("gateway.*", () => refresh()));
  offs.push(ctx.feed.on("reconnected", () => refresh()));
  // Requests that start or finish send no event: the poll sees them.
  timers.push(setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, POLL_MS));

  return () => {
    offs.forEach((off) => off());
    timers.forEach(clearInterval);
    controller?.abort();
  };
}

function seconds(value) {
  return Number.isFinite(value) ? `${value < 1 ? (value * 1000).toFixed(0) + " ms" : value.toFixed(2) + " s"}` : "—";
}
