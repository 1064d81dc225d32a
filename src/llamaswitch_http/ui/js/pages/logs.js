// Logs: a server's output (GET /api/v1/model/logs), followed live once a second, with a
// search that filters and highlights, and a pause that freezes the view.

import { ApiError, get } from "../api.js";
import { card, clear, h } from "../dom.js";
import { serverKey, serverQuery, servers } from "../servers.js";

const FOLLOW_MS = 1000;

export async function mount(main, ctx) {
  main.append(h("h1", { tabindex: "-1", text: "Logs" }));
  const box = card("Server output", { id: "logs" });
  const select = h("select", { id: "log-server" });
  const lines = h("select", { id: "log-lines" }, [100, 500, 2000, 10000].map((n) =>
    h("option", { value: String(n), text: String(n), selected: n === 500 })));
  const search = h("input", { type: "search", id: "log-search", autocomplete: "off", placeholder: "text in a line" });
  const pause = h("button", { type: "button", id: "log-pause", "aria-pressed": "false", text: "Pause" });
  const status = h("p", { class: "muted", id: "log-status", role: "status" });
  const output = h("pre", { class: "log", id: "log-output", tabindex: "0", role: "log",
    "aria-label": "Server output, oldest line first" });
  const empty = h("p", { class: "muted", id: "log-empty",
    text: "No model server to show: start one on the Models page." });
  box.append(h("div", { class: "toolbar" },
    h("label", { for: "log-server" }, "Server", select),
    h("label", { for: "log-lines" }, "Last lines", lines),
    h("label", { for: "log-search" }, "Search", search),
    pause), status, empty, output);
  main.append(box);

  let all = [];
  let paused = false;
  let timer = null;
  let inFlight = false;

  const render = () => {
    const needle = search.value.toLowerCase();
    const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
    clear(output);
    const frag = document.createDocumentFragment();
    let matched = 0;
    for (const line of all) {
      if (needle) {
        const at = line.toLowerCase().indexOf(needle);
        if (at < 0) continue;
        frag.append(line.slice(0, at), h("mark", { text: line.slice(at, at + needle.length) }),
          line.slice(at + needle.length), "\n");
      } else {
        frag.append(`${line}\n`);
      }
      matched += 1;
    }
    output.append(frag);
    status.textContent = `${needle ? `${matched} of ${all.length}` : all.length} lines` +
      `${paused ? " · paused" : " · following"}`;
    if (atBottom && !paused) output.scrollTop = output.scrollHeight;
  };

  let shown = [];

  const fetchLines = async () => {
    if (!select.value || paused || inFlight) return;
    inFlight = true;
    try {
      const chosen = shown.find((s) => serverKey(s) === select.value);
      if (!chosen) return;
      const next = await get("api/v1/model/logs", { ...serverQuery(chosen), lines: lines.value });
      if (paused) return;
      const changed = next.length !== all.length || next[next.length - 1] !== all[all.length - 1];
      all = next;
      if (changed) render();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        status.textContent = "That server is gone.";
      } else if (!(error instanceof ApiError && error.status === 401)) {
        status.textContent = error.message;
      }
    } finally {
      inFlight = false;
    }
  };

  const fillServers = (list) => {
    const asked = ctx.params.get("host") ? `${ctx.params.get("host")}:${ctx.params.get("port")}` : ctx.params.get("port");
    const previous = select.value || asked || "";
    const sorted = [...list].sort((a, b) => (a.host_name ?? "").localeCompare(b.host_name ?? "") || a.port - b.port);
    shown = sorted;
    clear(select);
    for (const s of sorted) {
      const where = s.host_name ? `${s.host_name} · ` : "";
      select.append(h("option", { value: serverKey(s), text: `${s.model_name} · ${where}port ${s.port} · ${s.state}` }));
    }
    if (sorted.some((s) => serverKey(s) === previous)) select.value = previous;
    empty.hidden = sorted.length > 0;
    output.hidden = sorted.length === 0;
    select.disabled = sorted.length === 0;
    if (previous !== select.value) {
      all = [];
      fetchLines();
    }
  };

  select.addEventListener("change", () => { all = []; render(); fetchLines(); });
  lines.addEventListener("change", () => fetchLines());
  search.addEventListener("input", render);
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    render();
    if (!paused) fetchLines();
  });

  fillServers(await servers.refresh());
  await fetchLines();
  render();
  const off = servers.subscribe(fillServers);
  timer = setInterval(() => { if (document.visibilityState === "visible") fetchLines(); }, FOLLOW_MS);
  return () => {
    off();
    clearInterval(timer);
  };
}
