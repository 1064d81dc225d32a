// Models: the catalog with search and sort (rows are built once and then only hidden,
// reordered or have a cell's text changed, so it stays fast with thousands of models),
// each with the gateway's estimated and measured memory and its state; load, unload and
// switch; a "Serve a model" form generated from ServerConfig's JSON Schema, whose API
// errors are shown at the field they name; what loading the chosen model would unload
// (the gateway's dry run); and the presets in effect, with a reload.

import { ApiError, errorsByField, get, getCapabilities, post } from "../api.js";
import { bytes, card, clear, count, debounce, h, keyValues, mib, progressText, stateBadge } from "../dom.js";
import * as gateway from "../gateway.js";
import { FieldProblem, schemaForm } from "../schema_form.js";
import { servers } from "../servers.js";

const PRIMARY = ["port", "ctx_size", "threads", "n_gpu_layers", "flash_attn", "parallel"];
// While the gateway serves a model its measurement is refreshed (every 5 s there).
const FACTS_POLL_MS = 5000;

const COLUMNS = [
  { key: "name", title: "Name", value: (m) => m.name },
  { key: "architecture", title: "Architecture", value: (m) => m.architecture ?? "" },
  { key: "parameter_count", title: "Parameters", num: true, value: (m) => m.parameter_count ?? -1, show: (m) => count(m.parameter_count) },
  { key: "quantization", title: "Quantization", value: (m) => m.quantization ?? "" },
  { key: "context_length", title: "Context", num: true, value: (m) => m.context_length ?? -1, show: (m) => m.context_length ?? "—" },
  { key: "size", title: "Size", num: true, value: (m) => m.size ?? -1, show: (m) => bytes(m.size) },
  { key: "estimated", title: "Estimated memory", num: true, value: (m) => m._estimated ?? -1 },
  { key: "measured", title: "Measured memory", num: true, value: (m) => m._measured ?? -1 },
  { key: "state", title: "State", value: (m) => m._state ?? "" },
];

export async function mount(main, ctx) {
  const caps = await getCapabilities();
  main.append(h("h1", { tabindex: "-1", text: "Models" }));
  const offs = [];
  const timers = [];

  // -- catalog ----------------------------------------------------------------------------
  const catalogCard = card("Catalog", { id: "catalog" });
  const search = h("input", { type: "search", id: "model-search", placeholder: "name, architecture, quantization…",
    autocomplete: "off" });
  const shown = h("p", { class: "muted", id: "model-count", role: "status" });
  const notice = h("p", { class: "notice", id: "models-notice", role: "status" });
  const unloadForce = h("input", { type: "checkbox", id: "unload-force" });
  catalogCard.append(h("div", { class: "toolbar" },
    h("label", { for: "model-search" }, "Search models", search), shown,
    h("label", { for: "unload-force", class: "inline" }, unloadForce,
      " Unload cuts gateway requests in flight (else it waits for them)")), notice);
  const headRow = h("tr");
  const tbody = h("tbody");
  const table = h("table", { id: "models-table" },
    h("caption", { text: "GGUF models in the models folder, with the gateway's memory figures; choose a column heading to sort" }),
    h("thead", {}, headRow), tbody);
  const factsNote = h("p", { class: "notice error", id: "facts-error", role: "alert" });
  catalogCard.append(h("div", { class: "table-wrap" }, table), factsNote);
  main.append(catalogCard);

  // -- serve form -------------------------------------------------------------------------
  const serveCard = card("Serve a model", { id: "serve" });
  const schema = caps.schemas.ServerConfig;
  const modelSelect = h("select", { id: "serve-model", "aria-describedby": "serve-model-error" });
  const modelError = h("p", { class: "field-error", id: "serve-model-error" });
  const form = schema ? schemaForm(schema, { idPrefix: "server", primary: PRIMARY }) : null;
  const formErrors = h("ul", { class: "form-errors", id: "serve-errors", role: "alert" });
  const result = h("p", { class: "notice", id: "serve-result", role: "status" });
  const startButton = h("button", { type: "submit", class: "primary", value: "start", text: "Start alongside" });
  const switchButton = h("button", { type: "submit", value: "switch", text: "Switch (replace on its port)" });
  const switchForce = h("input", { type: "checkbox", id: "switch-force" });
  const planBox = h("div", { id: "plan", "aria-live": "polite" });
  const serveForm = h("form", { id: "serve-form", novalidate: true, "aria-labelledby": serveCard.firstChild.id },
    h("div", { class: "field", dataset: { field: "model_path" } },
      h("label", { for: "serve-model", text: "Model" }), modelSelect, modelError),
    form ? h("h3", { text: "Settings (ServerConfig)" }) : null,
    form ? form.element : h("p", { class: "notice error", text: "The API document has no ServerConfig schema." }),
    formErrors,
    h("div", { class: "actions" }, startButton, switchButton,
      h("label", { for: "switch-force", class: "inline" }, switchForce,
        " Switch cuts gateway requests in flight on that port")),
    result, planBox);
  serveCard.append(h("p", { class: "muted",
    text: "Empty fields are not passed: llama.cpp's defaults apply. The service checks every value. " +
      "Clients of the gateway need none of this: naming a model in a request loads it. A server " +
      "started here is used by the gateway when a client names its model, but never unloaded by " +
      "it to make room (Unload it here)." }), serveForm);
  main.append(serveCard);

  // -- presets ----------------------------------------------------------------------------
  const presetsCard = card("Presets in effect", { id: "presets" });
  const presetsBody = h("div", { id: "presets-body" });
  const reloadButton = h("button", { type: "button", id: "presets-reload", text: "Reload presets file" });
  const reloadResult = h("div", { id: "presets-reload-result", role: "status" });
  presetsCard.append(presetsBody, h("div", { class: "actions" }, reloadButton), reloadResult);
  main.append(presetsCard);

  // -- data -------------------------------------------------------------------------------
  const [models, , entries, presetData] = await Promise.all([
    get("api/v1/models"), servers.refresh(), gateway.models().catch((error) => error),
    gateway.presets().catch((error) => error),
  ]);

  const rows = new Map(); // name -> {model, tr, cells, text, ...}
  let sortKey = "name";
  let sortDir = 1;
  let facts = new Map(); // relative path -> gateway entry
  let serverList = [];

  const byName = new Map(models.map((m) => [m.name, m]));
  for (const m of models) modelSelect.append(h("option", { value: m.name, text: m.name }));

  // Header with sort buttons.
  for (const column of COLUMNS) {
    const th = h("th", { scope: "col", class: column.num ? "num" : undefined, dataset: { key: column.key } });
    th.append(h("button", { type: "button", class: "sort", text: column.title,
      on: { click: () => sortBy(column.key) } }));
    headRow.append(th);
  }
  headRow.append(h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Actions" })));

  const load = async (name, action) => {
    modelSelect.value = name;
    await submit(action, { fromRow: true });
  };
  const unload = async (name, button) => {
    button.disabled = true;
    try {
      const stopped = await post("api/v1/model/stop", { model_name: name },
        unloadForce.checked ? { force: "true" } : undefined);
      notice.className = "notice ok";
      notice.textContent = `Unloaded ${name} (${stopped.length} server${stopped.length === 1 ? "" : "s"}).`;
      servers.refresh().catch(() => {});
    } catch (error) {
      notice.className = "notice error";
      notice.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  };

  const fragment = document.createDocumentFragment();
  for (const m of models) {
    const cells = {};
    const tr = h("tr", { dataset: { model: m.name } });
    let names = null;
    for (const column of COLUMNS) {
      const td = h("td", { class: column.num ? "num" : undefined });
      if (column.key === "name") {
        td.append(h("span", { title: m.path, text: m.name }));
        if (m.display_name && m.display_name !== m.name) td.append(h("div", { class: "muted", text: m.display_name }));
        names = h("div", { class: "muted names" });
        td.append(names);
        if (m.error) td.append(h("div", { class: "field-error", text: m.error }));
      } else if (column.show) {
        td.textContent = column.show(m);
      } else if (!["estimated", "measured", "state"].includes(column.key)) {
        td.textContent = String(column.value(m) || "—");
      }
      cells[column.key] = td;
      tr.append(td);
    }
    const loadButton = h("button", { type: "button", class: "small", text: "Load", "aria-label": `Load ${m.name}`,
      dataset: { action: "load" }, disabled: Boolean(m.error) });
    const unloadButton = h("button", { type: "button", class: "small danger", text: "Unload",
      "aria-label": `Unload ${m.name}`, dataset: { action: "unload" }, hidden: true });
    loadButton.addEventListener("click", () => load(m.name, "start"));
    unloadButton.addEventListener("click", () => unload(m.name, unloadButton));
    tr.append(h("td", {}, h("div", { class: "row-actions" }, loadButton, unloadButton)));
    const text = [m.name, m.display_name, m.architecture, m.quantization, m.relative_path].filter(Boolean).join(" ").toLowerCase();
    rows.set(m.name, { model: m, tr, cells, names, text, baseText: text, loadButton, unloadButton, shown: {} });
    fragment.append(tr);
  }
  tbody.append(fragment);

  /** Set a cell's content only when it changed (1,000 rows are redrawn on every poll). */
  const put = (row, key, signature, fill) => {
    if (row.shown[key] === signature) return;
    row.shown[key] = signature;
    fill(row.cells[key]);
  };

  const renderRow = (row, active) => {
    const m = row.model;
    const fact = facts.get(m.relative_path ?? m.name) || null;
    // State: a running server's (whoever started it), else the gateway's when it says more
    // than "unloaded" (loading, failed...).
    const serverState = active.length ? active[0].state : null;
    const gatewayState = fact && fact.state !== "unloaded" ? fact.state : null;
    m._state = serverState || gatewayState;
    const ports = active.map((s) => s.port);
    // How far a load has come: its server's, else the gateway's (a cluster host's load).
    const progress = serverState === "starting" ? active[0].load_progress
      : gatewayState === "loading" ? fact.load_progress : null;
    put(row, "state", `${serverState}|${gatewayState}|${ports}|${fact?.error ?? ""}|${progress}`, (cell) => {
      clear(cell);
      if (serverState) cell.append(stateBadge(serverState), ` :${ports.join(", :")}`);
      else if (gatewayState) cell.append(stateBadge(gatewayState));
      else cell.append(h("span", { class: "muted", text: "—" }));
      const shown = progressText(progress);
      if (shown) cell.append(shown);
      if (!serverState && fact?.error) cell.append(h("div", { class: "field-error", text: fact.error }));
    });
    row.tr.dataset.state = m._state || "";
    row.unloadButton.hidden = !active.length;

    m._estimated = fact && Number.isFinite(fact.estimated_mib) ? fact.estimated_mib : null;
    put(row, "estimated", `${m._estimated}|${JSON.stringify(fact?.estimated?.vram_mib ?? null)}`, (cell) => {
      cell.textContent = mib(m._estimated);
      cell.title = fact?.estimated ? breakdown(fact.estimated) : "";
    });
    // Measured: what the gateway stored for this model and its settings; without one, what
    // its running servers hold now.
    let measured = fact && Number.isFinite(fact.measured_mib) ? fact.measured_mib : null;
    let title = fact?.measured ? `${breakdown(fact.measured)} (measured once it was ready)` : "";
    if (measured === null) {
      const live = active.filter((s) => s.running).reduce((sum, s) =>
        sum + (s.rss_mib || 0) + Object.values(s.vram_per_gpu_mib || {}).reduce((a, b) => a + b, 0), 0);
      if (live > 0) {
        measured = live;
        title = "RSS and VRAM of its running server, now";
      }
    }
    m._measured = measured;
    put(row, "measured", `${measured}|${title}`, (cell) => {
      cell.textContent = mib(measured);
      cell.title = title;
    });
    const ids = fact ? [...new Set([...(fact.ids || [fact.id]), ...(fact.aliases || [])])].filter((n) => n !== m.name) : [];
    put(row, "names", ids.join(","), () => {
      row.names.textContent = ids.length ? `gateway: ${ids.join(", ")}` : "";
      row.text = `${row.baseText} ${ids.join(" ").toLowerCase()}`;
    });
  };

  const renderAll = () => {
    const byModel = new Map();
    for (const s of serverList) {
      if (s.state === "stopped") continue;
      if (!byModel.has(s.model_name)) byModel.set(s.model_name, []);
      byModel.get(s.model_name).push(s);
    }
    for (const [name, row] of rows) renderRow(row, byModel.get(name) || []);
  };

  const setFacts = (value) => {
    if (value instanceof Error) {
      factsNote.textContent = `The gateway's model list (${gateway.ROUTES.models}) failed: ${value.message}`;
      return;
    }
    factsNote.textContent = "";
    facts = gateway.byFile(value);
  };
  setFacts(entries);

  const refreshFacts = debounce(async () => {
    const value = await gateway.models().catch((error) => error);
    if (ctx.stale()) return;
    setFacts(value);
    renderAll();
  }, 250);

  const filter = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let visible = 0;
    for (const row of rows.values()) {
      const match = words.every((w) => row.text.includes(w));
      if (row.tr.hidden === match) row.tr.hidden = !match;
      if (match) visible += 1;
    }
    shown.textContent = `${visible} of ${rows.size} models`;
  };

  const sortBy = (key) => {
    sortDir = sortKey === key ? -sortDir : 1;
    sortKey = key;
    applySort();
  };
  const applySort = () => {
    const column = COLUMNS.find((c) => c.key === sortKey);
    const ordered = [...rows.values()].sort((a, b) => {
      const x = column.value(a.model);
      const y = column.value(b.model);
      const cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return cmp * sortDir || a.model.name.localeCompare(b.model.name);
    });
    const frag = document.createDocumentFragment();
    for (const row of ordered) frag.append(row.tr);
    tbody.append(frag);
    for (const th of headRow.querySelectorAll("th[data-key]")) {
      if (th.dataset.key === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  };

  search.addEventListener("input", filter);
  serverList = servers.list;
  renderAll();
  applySort();
  filter();

  // -- serving ----------------------------------------------------------------------------
  const clearServeErrors = () => {
    form?.clearErrors();
    clear(formErrors);
    modelError.textContent = "";
    modelSelect.removeAttribute("aria-invalid");
  };
  const submit = async (action, { fromRow = false } = {}) => {
    clearServeErrors();
    result.className = "notice";
    result.textContent = "";
    const name = modelSelect.value;
    let config;
    try {
      config = form ? form.read() : {};
    } catch (error) {
      if (!(error instanceof FieldProblem)) throw error;
      form.showErrors(new Map([[error.field, [error.message]]])).firstInvalid?.focus();
      return;
    }
    const route = action === "switch" ? "api/v1/model/switch" : "api/v1/model/start";
    const query = action === "switch" && switchForce.checked ? { force: "true" } : undefined;
    startButton.disabled = switchButton.disabled = true;
    try {
      const status = await post(route, { model_path: name, config }, query);
      result.className = "notice ok";
      result.textContent = `${status.model_name} is ${status.state} on port ${status.port} (pid ${status.process_id ?? "—"}).`;
      servers.refresh().catch(() => {});
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showApiError(error, fromRow);
    } finally {
      startButton.disabled = switchButton.disabled = false;
    }
  };
  const showApiError = (error, fromRow) => {
    result.className = "notice error";
    result.textContent = `${error.summary}: ${error.message}`;
    const { fields, general } = errorsByField(error);
    const modelReasons = fields.get("model_path");
    fields.delete("model_path");
    if (modelReasons || ["model_not_found", "model_path_refused"].includes(error.code)) {
      modelError.textContent = (modelReasons || [error.message]).join("; ");
      modelSelect.setAttribute("aria-invalid", "true");
    }
    const { unplaced, firstInvalid } = form ? form.showErrors(fields) : { unplaced: [...fields.keys()], firstInvalid: null };
    for (const name of unplaced) general.push(...fields.get(name).map((r) => `${r} @ ${name}`));
    for (const text of general) formErrors.append(h("li", { text }));
    if (fromRow) serveCard.scrollIntoView({ block: "start" });
    (firstInvalid || (modelReasons ? modelSelect : null))?.focus();
  };
  serveForm.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(event.submitter?.value === "switch" ? "switch" : "start");
  });

  // -- the dry run: what loading the chosen model through the gateway would take ----------
  let planAsked = 0;
  const showPlan = async () => {
    const mine = ++planAsked;
    const name = modelSelect.value;
    if (!name) return;
    let data;
    try {
      data = await gateway.plan(name);
    } catch (error) {
      if (mine !== planAsked || ctx.stale()) return;
      planBox.replaceChildren(h("p", { class: "notice error", text: `The memory plan for ${name}: ${error.message}` }));
      return;
    }
    if (mine !== planAsked || ctx.stale()) return;
    planBox.replaceChildren(...planView(name, data.plan));
  };
  const refreshPlan = debounce(showPlan, 250);
  modelSelect.addEventListener("change", showPlan);
  const wanted = ctx.params.get("model");
  if (wanted && byName.has(wanted)) modelSelect.value = wanted;

  // -- presets ----------------------------------------------------------------------------
  const showPresets = (data) => {
    if (data instanceof Error) {
      presetsBody.replaceChildren(h("p", { class: "notice error", text: `Presets: ${data.message}` }));
      return;
    }
    presetsBody.replaceChildren(...presetsView(data));
  };
  showPresets(presetData);
  const refreshPresets = async () => {
    const data = await gateway.presets().catch((error) => error);
    if (!ctx.stale()) showPresets(data);
  };
  reloadButton.addEventListener("click", async () => {
    reloadButton.disabled = true;
    clear(reloadResult);
    try {
      const data = await gateway.reloadPresets();
      reloadResult.append(h("p", { class: "notice ok",
        text: `Reloaded ${data.path ?? "the presets"}: ${data.models.length} preset${data.models.length === 1 ? "" : "s"}.` }));
      showPresets(data);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      // The service keeps the problems too (GET /api/v1/presets `error`): the list shows
      // them above, as it does for a reload by SIGHUP or a script.
      const n = gateway.presetProblems(error.data).length;
      reloadResult.append(h("p", { class: "notice error", id: "presets-reload-error",
        text: `Not reloaded (${error.summary}): the presets in effect stay. ` +
          (n ? `${n} problem${n === 1 ? "" : "s"}, listed above.` : error.message) }));
      await refreshPresets();
    } finally {
      reloadButton.disabled = false;
    }
  });

  // -- live -------------------------------------------------------------------------------
  offs.push(servers.subscribe((list) => {
    serverList = list;
    renderAll();
  }));
  offs.push(ctx.feed.on("gateway.*", (event) => {
    refreshFacts();
    refreshPlan();
    if (event?.type === "presets_reloaded") refreshPresets();
  }));
  offs.push(ctx.feed.on("server.state", () => {
    refreshFacts();
    refreshPlan();
  }));
  offs.push(ctx.feed.on("reconnected", () => {
    refreshFacts();
    refreshPlan();
    refreshPresets();
  }));
  // Measurements are taken while a model runs (no event says so): follow them then.
  timers.push(setInterval(() => {
    if (document.visibilityState !== "visible") return;
    if ([...facts.values()].some((f) => f.state === "ready" || f.state === "loading")) refreshFacts();
  }, FACTS_POLL_MS));
  // The dry run fills its box when it comes: the catalog is usable before.
  showPlan();

  return () => {
    offs.forEach((off) => off());
    timers.forEach(clearInterval);
    refreshFacts.cancel();
    refreshPlan.cancel();
  };
}

/** "RAM 32 MiB · GPU 0 1.5 MiB" */
function breakdown(need) {
  return gateway.needParts(need).map(([label, value]) => `${label} ${mib(value)}`).join(" · ");
}

const ACTIONS = {
  ready: () => "It is loaded: a request goes to it at once.",
  load: (plan) => (plan.evict?.length ? "It would be loaded now, after unloading the idle models below."
    : "It would be loaded now, unloading nothing."),
  wait: () => "It would wait for the models below to finish their requests, unload them, then load.",
  refuse: () => "It would be refused at once: it cannot fit even alone.",
};

/** The dry run's answer, in words and a table of figures. */
function planView(name, plan) {
  if (!plan) return [h("p", { class: "muted", text: `No plan for ${name}.` })];
  const list = (items) => (items.length ? items.join(", ") : "nothing");
  const figures = Object.entries(plan.figures || {});
  const isCount = (key) => key === "models";
  const cell = (key, value) => (isCount(key) ? (value ?? "no limit") : (value === null || value === undefined ? "no limit" : mib(value)));
  return [
    h("h3", { text: `If a request for ${name} came now` }),
    h("p", { id: "plan-verdict", dataset: { action: plan.action } },
      h("strong", { class: "state", dataset: { state: plan.action === "refuse" ? "failed" : plan.action === "ready" ? "ready" : "loading" },
        text: plan.action }), ` (${plan.model}): ${plan.reason}. ${ACTIONS[plan.action]?.(plan) ?? ""}`),
    keyValues({
      needs: `${breakdown(plan.need)} (${plan.need?.source ?? "?"})`,
      unloads: list(plan.evict || []),
      "waits for": list(plan.wait_for || []),
    }),
    figures.length ? h("div", { class: "table-wrap" }, h("table", { id: "plan-figures" },
      h("caption", { text: "Per resource: held now, the budget, and what it needs" }),
      h("thead", {}, h("tr", {}, [["Resource"], ["Used", true], ["Budget", true], ["Needs", true]].map(([t, n]) =>
        h("th", { scope: "col", class: n ? "num" : undefined, text: t })))),
      h("tbody", {}, figures.map(([key, f]) => h("tr", { dataset: { resource: key } },
        h("td", { text: key === "ram" ? "RAM" : key === "models" ? "models (count)" : key.replace(/^gpu/, "GPU ") }),
        h("td", { class: "num", text: String(cell(key, f.used_mib ?? f.used)) }),
        h("td", { class: "num", text: String(cell(key, f.budget_mib ?? f.budget)) }),
        h("td", { class: "num", text: String(cell(key, f.need_mib ?? f.need)) }))))))
      : null,
  ];
}

/** The presets in effect: where from, the last reload's problem, defaults, one row each. */
function presetsView(data) {
  const out = [];
  out.push(data.path
    ? h("p", {}, "From ", h("code", { text: data.path }), ".")
    : h("p", { class: "muted" }, "No presets file: every catalog model answers to its file name and its stem. " +
      "Write ", h("code", { text: "llamaswitch.toml" }), " in the models folder (or set ",
      h("code", { text: "LLAMASWITCH_PRESETS" }), ") to add ids, aliases and settings."));
  if (data.error) {
    out.push(h("div", { class: "notice error", id: "presets-error", role: "alert" },
      h("p", { text: "The file was changed but could not be read; the presets below stay in effect:" }),
      h("ul", {}, gateway.presetProblems(data.error).map((p) => h("li", { text: p })))));
  }
  const defaults = data.defaults || {};
  if (Object.keys(defaults).length) out.push(h("h3", { text: "Defaults (every model)" }), keyValues(defaults));
  const models = data.models || [];
  if (!models.length) {
    out.push(h("p", { class: "muted", id: "presets-empty", text: "No preset models." }));
    return out;
  }
  const settings = (config) => Object.entries(config || {}).map(([k, v]) =>
    `${k} = ${v !== null && typeof v === "object" ? JSON.stringify(v) : v}`).join(", ") || "—";
  out.push(h("div", { class: "table-wrap" }, h("table", { id: "presets-table" },
    h("caption", { text: "Preset models: the id clients send, the file it loads, and its settings" }),
    h("thead", {}, h("tr", {}, ["Id", "File", "Aliases", "Preload", "Pinned", "Idle TTL", "Settings"].map((t) =>
      h("th", { scope: "col", text: t })))),
    h("tbody", {}, models.map((p) => h("tr", { dataset: { preset: p.id } },
      h("td", {}, h("code", { text: p.id })),
      h("td", { text: p.file ?? "—" }),
      h("td", { text: (p.aliases || []).join(", ") || "—" }),
      h("td", { text: p.preload ? "yes" : "no" }),
      h("td", { text: p.pinned ? "yes" : "no" }),
      h("td", { text: Number.isFinite(p.ttl_s) ? `${p.ttl_s} s` : "—" }),
      h("td", { class: "mono", text: settings(p.config) })))))));
  return out;
}
