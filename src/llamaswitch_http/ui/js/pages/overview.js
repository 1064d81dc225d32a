// Overview: every model server, live (state from the event stream, figures from a slow
// poll), memory per GPU and for RAM, the gateway's queue, and the latest events.

import { ApiError, get, post } from "../api.js";
import { card, clear, duration, h, mib, parseTime, progressText, stateBadge, timeEl } from "../dom.js";
import { plan, recentRequests } from "../gateway.js";
import { serverKey, serverQuery, servers } from "../servers.js";

const MAX_EVENTS = 25;
const GATEWAY_POLL_MS = 2000;

export async function mount(main, ctx) {
  main.append(h("h1", { tabindex: "-1", text: "Overview" }));
  const health = h("p", { class: "muted", id: "health-line" });
  main.append(health);

  // -- servers ----------------------------------------------------------------------------
  const serversCard = card("Model servers", { id: "servers" });
  const notice = h("p", { class: "notice", role: "status" });
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", text: "No model server runs. Start one on the Models page." });
  const table = h("table", { id: "servers-table" },
    h("caption", { text: "Every server this service started, updated live" }),
    h("thead", {}, h("tr", {}, ["Model", "State", "Port", "PID", "Uptime", "RSS", "VRAM per GPU", "Restarts", ""]
      .map((t, i) => h("th", { scope: "col", class: [2, 3, 4, 5, 7].includes(i) ? "num" : undefined },
        t || h("span", { class: "visually-hidden", text: "Actions" }))))),
    tbody);
  serversCard.append(notice, h("div", { class: "table-wrap" }, table), empty);
  main.append(serversCard);

  // -- memory -----------------------------------------------------------------------------
  const memoryCard = card("Memory", { id: "memory" });
  const bars = h("div", { class: "membars" });
  const memoryNote = h("p", { class: "muted", id: "memory-note" });
  memoryCard.append(h("p", { class: "muted legend" },
    h("span", { class: "swatch used", "aria-hidden": "true" }), " used now (sampled) ",
    h("span", { class: "swatch estimated", "aria-hidden": "true" }), " counted by placement (measured, else estimated) ",
    h("span", { class: "swatch budget", "aria-hidden": "true" }), " budget"), bars, memoryNote);
  main.append(memoryCard);

  // -- gateway ----------------------------------------------------------------------------
  const gatewayCard = card("Gateway", { id: "gateway" });
  const gatewayBody = h("div");
  gatewayCard.append(gatewayBody);
  main.append(gatewayCard);

  // -- events -----------------------------------------------------------------------------
  const eventsCard = card("Latest events", { id: "events" });
  const eventList = h("ol", { class: "event-log", role: "log", "aria-label": "Latest events, newest first" });
  const noEvents = h("p", { class: "muted", text: "No event since this page opened." });
  eventsCard.append(noEvents, eventList);
  main.append(eventsCard);

  let list = [];
  let planData = null;

  const renderServers = () => {
    clear(tbody);
    empty.hidden = list.length > 0;
    table.hidden = list.length === 0;
    const byHost = (a, b) => (a.host_name ?? "").localeCompare(b.host_name ?? "") || a.port - b.port;
    for (const s of [...list].sort(byHost)) {
      const where = s.host_name ? ` on host ${s.host_name}` : "";
      const started = parseTime(s.start_time);
      const uptime = h("td", { class: "num", dataset: { start: started ? String(started.getTime()) : "" } });
      const live = ["starting", "ready", "unresponsive"].includes(s.state) && started;
      uptime.textContent = live ? duration((Date.now() - started.getTime()) / 1000) : "—";
      const stop = h("button", { type: "button", class: "small danger", text: "Stop",
        "aria-label": `Stop ${s.model_name} on port ${s.port}${where}`, hidden: !s.running && s.state !== "starting" });
      stop.addEventListener("click", async () => {
        stop.disabled = true;
        try {
          await post("api/v1/model/stop", serverQuery(s));
          notice.className = "notice ok";
          notice.textContent = `Stopped ${s.model_name} on port ${s.port}${where}.`;
        } catch (error) {
          notice.className = "notice error";
          notice.textContent = error.message;
          stop.disabled = false;
        }
      });
      const hostQuery = s.host_name ? `&host=${encodeURIComponent(s.host_name)}` : "";
      const logs = h("a", { href: `#/logs?port=${s.port}${hostQuery}`, text: "Logs", class: "small",
        "aria-label": `Logs of ${s.model_name} on port ${s.port}${where}` });
      tbody.append(h("tr", { dataset: { port: String(s.port), state: s.state, server: serverKey(s) } },
        h("td", {}, h("span", { title: s.model_path, text: s.model_name }),
          // A cluster head's servers say which host they run on (docs/cluster.md).
          s.host_name ? h("div", { class: "muted host", text: `host ${s.host_name}` }) : null,
          s.error ? h("div", { class: "field-error", text: s.error }) : null),
        h("td", {}, stateBadge(s.state), s.state === "starting" ? progressText(s.load_progress) : null),
        h("td", { class: "num", text: String(s.port) }),
        h("td", { class: "num", dataset: { pid: "" }, text: s.process_id ?? "—" }),
        uptime,
        h("td", { class: "num", text: mib(s.rss_mib) }),
        h("td", {}, vramText(s)),
        h("td", { class: "num", text: String(s.restarts ?? 0) }),
        h("td", {}, h("div", { class: "row-actions" }, logs, stop))));
    }
  };

  const renderMemory = () => {
    if (!planData) return;
    clear(bars);
    for (const d of planData.devices || []) {
      bars.append(memoryBar(d.id, d.name || d.id, d.used_mib, d.estimated_mib, d.budget_mib, d.total_mib));
    }
    const counts = planData.models || {};
    memoryNote.textContent = `${counts.loaded ?? 0} model${counts.loaded === 1 ? "" : "s"} loaded` +
      (Number.isFinite(counts.max_models) ? ` of at most ${counts.max_models}.` : " (no count limit).") +
      (planData.devices?.some((d) => d.id !== "ram") ? "" : " No NVIDIA GPU found: RAM only.");
  };

  const renderGateway = (requests) => {
    clear(gatewayBody);
    const inFlight = planData?.in_flight || {};
    const queued = planData?.queued || {};
    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    gatewayBody.append(h("p", { id: "gateway-counts" },
      h("strong", { text: String(sum(queued)) }), " queued, ",
      h("strong", { text: String(sum(inFlight)) }), " in flight."));
    const names = [...new Set([...Object.keys(inFlight), ...Object.keys(queued)])].sort();
    if (names.length) {
      gatewayBody.append(h("div", { class: "table-wrap" }, h("table", { id: "gateway-models" },
        h("caption", { text: "Per model: requests upstream now, and waiting for a slot or a load" }),
        h("thead", {}, h("tr", {}, [["Model"], ["In flight", true], ["Queued", true]].map(([t, n]) =>
          h("th", { scope: "col", class: n ? "num" : undefined, text: t })))),
        h("tbody", {}, names.map((name) => h("tr", { dataset: { model: name } },
          h("td", { text: name }), h("td", { class: "num", text: String(inFlight[name] || 0) }),
          h("td", { class: "num", text: String(queued[name] || 0) })))))));
    }
    const rows = requests.filter((r) => ["queued", "loading", "running"].includes(r.state));
    if (!rows.length) return;
    gatewayBody.append(h("div", { class: "table-wrap" }, h("table", { id: "gateway-requests" },
      h("caption", { text: "Requests through the gateway, waiting or running" }),
      h("thead", {}, h("tr", {}, ["Model", "Route", "State", "Since"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows.map((r) => h("tr", { dataset: { request: String(r.id), state: r.state } },
        h("td", { text: r.model ?? "—" }), h("td", { text: r.route ?? "—" }),
        h("td", {}, stateBadge(r.state)), h("td", {}, timeEl(r.started_at, { short: true }))))))));
  };

  const addEvent = (event) => {
    if (!event || !event.topic) return;
    noEvents.hidden = true;
    const d = event.data || {};
    const what = event.topic === "server"
      ? `${d.model_name ?? "server"} on port ${d.port ?? "?"}${d.host_name ? ` of host ${d.host_name}` : ""}: ${d.previous ? `${d.previous} → ` : ""}${d.state ?? event.type}`
      : event.topic === "benchmark"
        ? `benchmark ${d.task_id ?? ""} ${event.type}${d.state ? `: ${d.state}` : ""}${event.type === "progress" ? ` ${d.done}/${d.total ?? "?"}` : ""}`
        : event.topic === "gateway" ? gatewayEventText(event.type, d)
          : `${event.topic}.${event.type}`;
    eventList.prepend(h("li", { dataset: { event: `${event.topic}.${event.type}` } },
      timeEl(event.time, { short: true }), what));
    while (eventList.children.length > MAX_EVENTS) eventList.lastElementChild.remove();
  };

  // One refresh at a time; a change meanwhile asks for one more (events come in bursts).
  let refreshing = null;
  let again = false;
  const refreshGateway = async () => {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        const [requests, memory] = await Promise.all([recentRequests(100), plan()]);
        if (ctx.stale()) return;
        planData = memory;
        renderMemory();
        renderGateway(requests);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 401)) {
          gatewayBody.replaceChildren(h("p", { class: "notice error", text: `Gateway: ${error.message}` }));
        }
      }
    })().finally(() => {
      refreshing = null;
      if (again && !ctx.stale()) {
        again = false;
        refreshGateway();
      }
    });
    return refreshing;
  };

  const ticker = setInterval(() => {
    for (const cell of tbody.querySelectorAll("td[data-start]")) {
      const start = Number(cell.dataset.start);
      if (start && cell.textContent !== "—") cell.textContent = duration((Date.now() - start) / 1000);
    }
  }, 1000);

  const offs = [
    ctx.feed.on("*", addEvent),
    // A load, an eviction or a queued request changes memory and the queue; a server's
    // state changes memory. Requests that start or end send no event: the poll sees them.
    ctx.feed.on("gateway.*", () => refreshGateway()),
    ctx.feed.on("server.state", () => refreshGateway()),
    ctx.feed.on("reconnected", () => refreshGateway()),
  ];
  const gatewayTimer = setInterval(() => {
    if (document.visibilityState === "visible") refreshGateway();
  }, GATEWAY_POLL_MS);

  const [healthData] = await Promise.all([get("api/v1/health").catch(() => null), servers.refresh(), refreshGateway()]);
  if (healthData) {
    const b = healthData.binaries || {};
    health.textContent = `Service ${healthData.version ?? ""} · ${healthData.status}` +
      Object.entries(b).map(([name, info]) => ` · ${name} ${info.found ? info.version ?? "found" : "missing"}`).join("");
  }
  const offServers = servers.subscribe((next) => {
    list = next;
    renderServers();
  });

  return () => {
    offs.forEach((off) => off());
    offServers();
    clearInterval(ticker);
    clearInterval(gatewayTimer);
  };
}

/** What a gateway event says, in words. */
function gatewayEventText(type, d) {
  const model = d.model ?? "?";
  switch (type) {
    case "model_loading": return `gateway: loading ${model} (${d.file ?? "?"}, estimated ${mib(d.estimated_mib)})`;
    case "model_ready": return `gateway: ${model} ready on port ${d.port ?? "?"}` +
      (d.adopted ? " (a server already running)" : Number.isFinite(d.load_s) ? ` after ${duration(d.load_s)}` : "");
    case "model_evicted": return `gateway: ${model} unloaded (${d.reason ?? "?"}${d.detail ? `: ${d.detail}` : ""})`;
    case "model_failed": return `gateway: ${model} failed to load: ${d.reason ?? "?"}`;
    case "request_queued": return `gateway: a request for ${model} queued (${d.queued ?? "?"} waiting, ${d.in_flight ?? "?"} in flight)`;
    case "presets_reloaded": return `gateway: presets reloaded (${(d.models || []).length} presets)`;
    default: return `gateway.${type}${d.model ? ` ${d.model}` : ""}`;
  }
}

function vramText(s) {
  const per = s.vram_per_gpu_mib;
  if (per && Object.keys(per).length) {
    return Object.entries(per).map(([gpu, value]) => `GPU ${gpu}: ${mib(value)}`).join(", ");
  }
  return s.vram_usage !== null && s.vram_usage !== undefined ? mib(s.vram_usage) : "—";
}

/** One memory bar: used (solid), counted by placement (light), budget (a line), on a
 *  scale of the device's total (or the largest figure). The text says the same. */
function memoryBar(id, name, used, estimated, budget, total) {
  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  const scale = Math.max(finite(total) ? total : 0, finite(budget) ? budget : 0, estimated || 0, used || 0, 1);
  const pct = (v) => `${Math.min(100, (100 * (v || 0)) / scale).toFixed(2)}%`;
  const track = h("div", { class: "membar-track", "aria-hidden": "true" });
  if (finite(estimated)) track.append(h("div", { class: "membar-estimated", css: { width: pct(estimated) } }));
  track.append(h("div", { class: "membar-used", css: { width: pct(used) } }));
  if (finite(budget)) track.append(h("div", { class: "membar-budget", css: { left: pct(budget) } }));
  const figure = (key, label, value) => h("span", { dataset: { figure: key } }, `${label} ${finite(value) ? mib(value) : "—"}`);
  const figures = [figure("used", "used", used), " · ", figure("estimated", "estimated", estimated), " · ",
    figure("budget", "budget", budget)];
  if (finite(total)) figures.push(" · ", figure("total", "of", total));
  const over = finite(budget) && finite(estimated) && estimated > budget;
  return h("div", { class: over ? "membar over" : "membar", dataset: { device: id } },
    h("div", { class: "membar-label" }, h("strong", { text: name }), h("span", {}, figures)),
    track);
}
