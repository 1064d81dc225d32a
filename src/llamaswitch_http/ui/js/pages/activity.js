// Activity: the gateway's recent requests (model, status, queue wait, load wait, time to
// first token, tokens/s) and a small playground chat that streams from the gateway.
// Both need gateway routes; without them each section says so and calls nothing.

import { getCapabilities, get } from "../api.js";
import { card, clear, h, num, stateBadge, timeEl, unavailable } from "../dom.js";
import { available, modelFacts, recentRequests, ROUTES, streamChat } from "../gateway.js";

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
];

export async function mount(main, ctx) {
  const caps = await getCapabilities();
  main.append(h("h1", { tabindex: "-1", text: "Activity" }));
  const offs = [];
  const timers = [];

  // -- recent requests ----------------------------------------------------------------------
  const requestsCard = card("Recent gateway requests", { id: "requests" });
  main.append(requestsCard);
  if (available(caps, "requests")) {
    const tbody = h("tbody");
    const status = h("p", { class: "muted", role: "status" });
    requestsCard.append(status, h("div", { class: "table-wrap" }, h("table", { id: "requests-table" },
      h("caption", { text: "Newest first" }),
      h("thead", {}, h("tr", {}, COLUMNS.map(([t, , n]) => h("th", { scope: "col", class: n ? "num" : undefined, text: t })))),
      tbody)));
    const refresh = async () => {
      try {
        const list = await recentRequests(100);
        tbody.replaceChildren(...list.map((r) => h("tr", {}, COLUMNS.map(([, f, n]) => h("td", { class: n ? "num" : undefined }, f(r))))));
        status.textContent = `${list.length} requests`;
      } catch (error) {
        status.textContent = error.message;
      }
    };
    await refresh();
    offs.push(ctx.feed.on("gateway.*", () => refresh()));
    timers.push(setInterval(refresh, 3000));
  } else {
    requestsCard.append(unavailable("Recent requests", [`GET ${ROUTES.requests}`]));
  }

  // -- playground ---------------------------------------------------------------------------
  const chatCard = card("Playground", { id: "playground" });
  main.append(chatCard);
  if (available(caps, "chat")) {
    const model = h("select", { id: "chat-model" });
    const prompt = h("textarea", { id: "chat-prompt", rows: 3, placeholder: "Say something to the model" });
    const send = h("button", { type: "submit", class: "primary", text: "Send" });
    const stop = h("button", { type: "button", text: "Stop", disabled: true });
    const output = h("div", { class: "chat-output", id: "chat-output", "aria-live": "polite", role: "log",
      "aria-label": "The model's answer" });
    const problem = h("p", { class: "notice error", role: "alert" });
    let controller = null;
    const form = h("form", { id: "chat-form", novalidate: true, "aria-labelledby": chatCard.firstChild.id },
      h("div", { class: "toolbar" }, h("label", { for: "chat-model" }, "Model", model)),
      h("label", { for: "chat-prompt", text: "Message" }), prompt,
      h("div", { class: "actions" }, send, stop), problem, output);
    chatCard.append(form);
    const names = new Set();
    if (available(caps, "models")) {
      for (const [key, entry] of await modelFacts().catch(() => new Map())) if (key === entry.id) names.add(key);
    }
    if (!names.size) for (const m of await get("api/v1/models")) names.add(m.name);
    for (const name of names) model.append(h("option", { value: name, text: name }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!prompt.value.trim()) return;
      clear(output);
      problem.textContent = "";
      controller = new AbortController();
      send.disabled = true;
      stop.disabled = false;
      try {
        await streamChat({ model: model.value, messages: [{ role: "user", content: prompt.value }],
          signal: controller.signal, onText: (text) => output.append(text) });
      } catch (error) {
        if (error.name !== "AbortError") problem.textContent = error.message;
      } finally {
        send.disabled = false;
        stop.disabled = true;
      }
    });
    stop.addEventListener("click", () => controller?.abort());
  } else {
    chatCard.append(unavailable("The playground", [`POST ${ROUTES.chat}`]));
  }

  return () => {
    offs.forEach((off) => off());
    timers.forEach(clearInterval);
  };
}

function seconds(value) {
  return Number.isFinite(value) ? `${value < 1 ? (value * 1000).toFixed(0) + " ms" : value.toFixed(2) + " s"}` : "—";
}
