// Overview: every model server, live (state from the event stream, figures from a slow
// poll), memory per GPU and for RAM, the gateway's queue, and the latest events.

import { ApiError, get, getCapabilities, post } from "../api.js";
import { card, clear, duration, h, mib, parseTime, stateBadge, timeEl, unavailable } from "../dom.js";
import { available, plan, recentRequests, ROUTES } from "../gateway.js";
import { servers } from "../servers.js";

const MAX_EVENTS = 25;

export async function mount(main, ctx) {
  const caps = await getCapabilities();
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
  const memoryNote = h("div");
  memoryCard.append(bars, memoryNote);
  main.append(memoryCard);
  const havePlan = available(caps, "plan");
  if (!havePlan) {
    memoryNote.append(unavailable("Estimated memory and budgets", [`GET ${ROUTES.plan}`]));
  }

  // -- gateway ----------------------------------------------------------------------------
  const gatewayCard = card("Gateway", { id: "gateway" });
  const gatewayBody = h("div");
  gatewayCard.append(gatewayBody);
  main.append(gatewayCard);
  const haveRequests = available(caps, "requests");
  if (!haveRequests) gatewayBody.append(unavailable("The gateway's queue and requests in flight", [`GET ${ROUTES.requests}`]));

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
    for (const s of [...list].sort((a, b) => a.port - b.port)) {
      const started = parseTime(s.start_time);
      const uptime = h("td", { class: "num", dataset: { start: started ? String(started.getTime()) : "" } });
      const live = ["starting", "ready", "unresponsive"].includes(s.state) && started;
      uptime.textContent = live ? duration((Date.now() - started.getTime()) / 1000) : "—";
      const stop = h("button", { type: "button", class: "small danger", text: "Stop",
        "aria-label": `Stop ${s.model_name} on port ${s.port}`, hidden: !s.running && s.state !== "starting" });
      stop.addEventListener("click", async () => {
        stop.disabled = true;
        try {
          await post("api/v1/model/stop", { port: s.port });
          notice.className = "notice ok";
          notice.textContent = `Stopped ${s.model_name} on port ${s.port}.`;
        } catch (error) {
          notice.className = "notice error";
          notice.textContent = error.message;
          stop.disabled = false;
        }
      });
      const logs = h("a", { href: `#/logs?port=${s.port}`, text: "Logs", class: "small",
        "aria-label": `Logs of ${s.model_name} on port ${s.port}` });
      tbody.append(h("tr", { dataset: { port: String(s.port), state: s.state } },
        h("td", {}, h("span", { title: s.model_path, text: s.model_name }),
          s.error ? h("div", { class: "field-error", text: s.error }) : null),
        h("td", {}, stateBadge(s.state)),
        h("td", { class: "num", text: String(s.port) }),
        h("td", { class: "num", dataset: { pid: "" }, text: s.process_id ?? "—" }),
        uptime,
        h("td", { class: "num", text: mib(s.rss_mib) }),
        h("td", {}, vramText(s)),
        h("td", { class: "num", text: String(s.restarts ?? 0) }),
        h("td", {}, h("div", { class: "row-actions" }, logs, stop))));
    }
    renderMemory();
  };

  const renderMemory = () => {
    clear(bars);
    const running = list.filter((s) => s.running);
    const ramUsed = running.reduce((sum, s) => sum + (Number.isFinite(s.rss_mib) ? s.rss_mib : 0), 0);
    const gpuUsed = new Map();
    for (const s of running) {
      for (const [gpu, value] of Object.entries(s.vram_per_gpu_mib || {})) {
        gpuUsed.set(gpu, (gpuUsed.get(gpu) || 0) + value);
      }
    }
    const devices = planData && Array.isArray(planData.devices) ? planData.devices : null;
    if (devices) {
      for (const d of devices) bars.append(memoryBar(d.name || d.id, d.used_mib, d.estimated_mib, d.budget_mib, d.total_mib));
      return;
    }
    bars.append(memoryBar("RAM (model servers)", ramUsed, null, null, null));
    for (const [gpu, used] of [...gpuUsed].sort()) bars.append(memoryBar(`GPU ${gpu}`, used, null, null, null));
    if (!gpuUsed.size) bars.append(h("p", { class: "muted", text: "No GPU memory in use by model servers (or no NVIDIA GPU)." }));
  };

  const renderGateway = (requests) => {
    clear(gatewayBody);
    const queued = requests.filter((r) => r.state === "queued" || r.state === "loading");
    const inFlight = requests.filter((r) => r.state === "running");
    gatewayBody.append(h("p", { id: "gateway-counts" },
      h("strong", { text: String(queued.length) }), " queued, ",
      h("strong", { text: String(inFlight.length) }), " in flight."));
    const rows = [...queued, ...inFlight];
    if (!rows.length) return;
    gatewayBody.append(h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { text: "Requests waiting or running" }),
      h("thead", {}, h("tr", {}, ["Model", "Route", "State", "Since"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("td", { text: r.model ?? "—" }), h("td", { text: r.route ?? "—" }),
        h("td", {}, stateBadge(r.state)), h("td", {}, timeEl(r.started_at, { short: true }))))))));
  };

  const addEvent = (event) => {
    if (!event || !event.topic) return;
    noEvents.hidden = true;
    const d = event.data || {};
    const what = event.topic === "server"
      ? `${d.model_name ?? "server"} on port ${d.port ?? "?"}: ${d.previous ? `${d.previous} → ` : ""}${d.state ?? event.type}`
      : event.topic === "benchmark"
        ? `benchmark ${d.task_id ?? ""} ${event.type}${d.state ? `: ${d.state}` : ""}${event.type === "progress" ? ` ${d.done}/${d.total ?? "?"}` : ""}`
        : `${event.topic}.${event.type}${d.model ? ` ${d.model}` : ""}`;
    eventList.prepend(h("li", { dataset: { event: `${event.topic}.${event.type}` } },
      timeEl(event.time, { short: true }), what));
    while (eventList.children.length > MAX_EVENTS) eventList.lastElementChild.remove();
  };

  const refreshGateway = async () => {
    try {
      if (haveRequests) renderGateway(await recentRequests(100));
      if (havePlan) {
        planData = await plan();
        renderMemory();
      }
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        gatewayBody.replaceChildren(h("p", { class: "notice error", text: `Gateway: ${error.message}` }));
      }
    }
  };

  const ticker = setInterval(() => {
    for (const cell of tbody.querySelectorAll("td[data-start]")) {
      const start = Number(cell.dataset.start);
      if (start && cell.textContent !== "—") cell.textContent = duration((Date.now() - start) / 1000);
    }
  }, 1000);

  const offs = [
    ctx.feed.on("*", addEvent),
    ctx.feed.on("gateway.*", () => refreshGateway()),
  ];
  const gatewayTimer = haveRequests || havePlan ? setInterval(refreshGateway, 3000) : null;

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
    if (gatewayTimer) clearInterval(gatewayTimer);
  };
}

function vramText(s) {
  const per = s.vram_per_gpu_mib;
  if (per && Object.keys(per).length) {
    return Object.entries(per).map(([gpu, value]) => `GPU ${gpu}: ${mib(value)}`).join(", ");
  }
  return s.vram_usage !== null && s.vram_usage !== undefined ? mib(s.vram_usage) : "—";
}

/** One memory bar: used (solid), estimated (light), budget (a line), against total or budget. */
function memoryBar(name, used, estimated, budget, total) {
  const scale = Math.max(total || 0, budget || 0, estimated || 0, used || 0, 1);
  const pct = (v) => `${Math.min(100, (100 * (v || 0)) / scale).toFixed(2)}%`;
  const track = h("div", { class: "membar-track", "aria-hidden": "true" });
  if (Number.isFinite(estimated)) track.append(h("div", { class: "membar-estimated", css: { width: pct(estimated) } }));
  track.append(h("div", { class: "membar-used", css: { width: pct(used) } }));
  if (Number.isFinite(budget)) track.append(h("div", { class: "membar-budget", css: { left: pct(budget) } }));
  const figures = [
    `used ${mib(used)}`,
    `estimated ${Number.isFinite(estimated) ? mib(estimated) : "—"}`,
    `budget ${Number.isFinite(budget) ? mib(budget) : "—"}`,
  ];
  if (Number.isFinite(total)) figures.push(`of ${mib(total)}`);
  return h("div", { class: "membar", dataset: { device: name } },
    h("div", { class: "membar-label" }, h("strong", { text: name }), h("span", { text: figures.join(" · ") })),
    track);
}
