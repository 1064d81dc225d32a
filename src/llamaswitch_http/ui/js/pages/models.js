// Models: the catalog with search and sort (rows are built once and then only hidden or
// reordered, so it stays fast with thousands of models), load/unload per row, and a
// "Serve a model" form generated from ServerConfig's JSON Schema. The service's errors
// are shown at the field they name. Gateway-only facts (estimated memory, presets, the
// memory plan) show "not available" until the service offers their routes.

import { ApiError, errorsByField, get, getCapabilities, post } from "../api.js";
import { bytes, card, clear, count, h, keyValues, mib, stateBadge, unavailable } from "../dom.js";
import { available, modelFacts, plan, presets, ROUTES } from "../gateway.js";
import { FieldProblem, schemaForm } from "../schema_form.js";
import { servers } from "../servers.js";

const PRIMARY = ["port", "ctx_size", "threads", "n_gpu_layers", "flash_attn", "parallel"];

const COLUMNS = [
  { key: "name", title: "Name", value: (m) => m.name },
  { key: "architecture", title: "Architecture", value: (m) => m.architecture ?? "" },
  { key: "parameter_count", title: "Parameters", num: true, value: (m) => m.parameter_count ?? -1, show: (m) => count(m.parameter_count) },
  { key: "quantization", title: "Quantization", value: (m) => m.quantization ?? "" },
  { key: "context_length", title: "Context", num: true, value: (m) => m.context_length ?? -1, show: (m) => m.context_length ?? "—" },
  { key: "size", title: "Size", num: true, value: (m) => m.size ?? -1, show: (m) => bytes(m.size) },
  { key: "estimated", title: "Estimated memory", num: true, value: (m) => m._estimated ?? -1, show: (m) => mib(m._estimated) },
  { key: "measured", title: "Measured memory", num: true, value: (m) => m._measured ?? -1, show: (m) => mib(m._measured) },
  { key: "state", title: "State", value: (m) => m._state ?? "" },
];

export async function mount(main, ctx) {
  const caps = await getCapabilities();
  main.append(h("h1", { tabindex: "-1", text: "Models" }));

  // -- catalog ----------------------------------------------------------------------------
  const catalogCard = card("Catalog", { id: "catalog" });
  const search = h("input", { type: "search", id: "model-search", placeholder: "name, architecture, quantization…",
    autocomplete: "off" });
  const shown = h("p", { class: "muted", id: "model-count", role: "status" });
  const notice = h("p", { class: "notice", id: "models-notice", role: "status" });
  catalogCard.append(h("div", { class: "toolbar" },
    h("label", { for: "model-search" }, "Search models", search), shown), notice);
  const headRow = h("tr");
  const tbody = h("tbody");
  const table = h("table", { id: "models-table" },
    h("caption", { text: "GGUF models in the models folder; choose a column heading to sort" }),
    h("thead", {}, headRow), tbody);
  catalogCard.append(h("div", { class: "table-wrap" }, table));
  const memoryNote = h("div");
  catalogCard.append(memoryNote);
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
  const planBox = h("div", { id: "plan" });
  const serveForm = h("form", { id: "serve-form", novalidate: true, "aria-labelledby": serveCard.firstChild.id },
    h("div", { class: "field", dataset: { field: "model_path" } },
      h("label", { for: "serve-model", text: "Model" }), modelSelect, modelError),
    form ? h("h3", { text: "Settings (ServerConfig)" }) : null,
    form ? form.element : h("p", { class: "notice error", text: "The API document has no ServerConfig schema." }),
    formErrors,
    h("div", { class: "actions" }, startButton, switchButton),
    result, planBox);
  serveCard.append(h("p", { class: "muted",
    text: "Empty fields are not passed: llama.cpp's defaults apply. The service checks every value." }), serveForm);
  main.append(serveCard);

  // -- presets ----------------------------------------------------------------------------
  const presetsCard = card("Presets in effect", { id: "presets" });
  main.append(presetsCard);

  // -- data -------------------------------------------------------------------------------
  const [models] = await Promise.all([get("api/v1/models"), servers.refresh()]);
  let facts = new Map();
  const haveFacts = available(caps, "models");
  if (haveFacts) {
    try { facts = await modelFacts(); } catch (error) { memoryNote.append(h("p", { class: "notice error", text: error.message })); }
  } else {
    memoryNote.append(unavailable("Estimated memory", [`GET ${ROUTES.models}`]));
  }

  const rows = new Map(); // name -> {model, tr, cells, text}
  let sortKey = "name";
  let sortDir = 1;

  const byName = new Map(models.map((m) => [m.name, m]));
  for (const m of models) {
    modelSelect.append(h("option", { value: m.name, text: m.name }));
    const fact = facts.get(m.name) || facts.get(m.name.replace(/\.gguf$/i, "")) || null;
    m._estimated = fact && Number.isFinite(fact.estimated_mib) ? fact.estimated_mib : null;
    m._gatewayMeasured = fact && Number.isFinite(fact.measured_mib) ? fact.measured_mib : null;
  }

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
      const stopped = await post("api/v1/model/stop", { model_name: name });
      notice.className = "notice ok";
      notice.textContent = `Unloaded ${name} (${stopped.length} server${stopped.length === 1 ? "" : "s"}).`;
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
    for (const column of COLUMNS) {
      const td = h("td", { class: column.num ? "num" : undefined });
      if (column.key === "name") {
        td.append(h("span", { title: m.path, text: m.name }));
        if (m.display_name && m.display_name !== m.name) td.append(h("div", { class: "muted", text: m.display_name }));
        if (m.error) td.append(h("div", { class: "field-error", text: m.error }));
      } else if (column.key !== "state") {
        td.textContent = column.show ? column.show(m) : String(column.value(m) || "—");
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
    rows.set(m.name, { model: m, tr, cells, text, loadButton, unloadButton });
    fragment.append(tr);
  }
  tbody.append(fragment);

  const applyStates = (list) => {
    const byModel = new Map();
    for (const s of list) {
      if (!byModel.has(s.model_name)) byModel.set(s.model_name, []);
      byModel.get(s.model_name).push(s);
    }
    for (const [name, row] of rows) {
      const mine = byModel.get(name) || [];
      const active = mine.filter((s) => !["stopped"].includes(s.state));
      const state = active.length ? active[0].state : null;
      row.model._state = state;
      const measured = active.filter((s) => s.running).reduce((sum, s) =>
        sum + (s.rss_mib || 0) + Object.values(s.vram_per_gpu_mib || {}).reduce((a, b) => a + b, 0), 0);
      row.model._measured = measured > 0 ? measured : row.model._gatewayMeasured;
      const key = `${state}|${active.map((s) => s.port).join(",")}`;
      if (row.stateKey !== key) {
        row.stateKey = key;
        clear(row.cells.state);
        if (state) row.cells.state.append(stateBadge(state), ` :${active.map((s) => s.port).join(", :")}`);
        else row.cells.state.append(h("span", { class: "muted", text: "—" }));
        row.tr.dataset.state = state || "";
        row.unloadButton.hidden = !active.length;
      }
      row.cells.measured.textContent = mib(row.model._measured);
    }
  };

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
    startButton.disabled = switchButton.disabled = true;
    try {
      const status = await post(route, { model_path: name, config });
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

  // The memory plan for the chosen model (a gateway route).
  const havePlan = available(caps, "plan");
  const showPlan = async () => {
    clear(planBox);
    if (!havePlan) {
      planBox.append(unavailable("The memory plan for this model", [`GET ${ROUTES.plan}?model=`]));
      return;
    }
    try {
      const data = await plan(modelSelect.value);
      planBox.append(h("h3", { text: `Memory plan for ${modelSelect.value}` }), keyValues(data));
    } catch (error) {
      planBox.append(h("p", { class: "notice error", text: error.message }));
    }
  };
  modelSelect.addEventListener("change", showPlan);
  const wanted = ctx.params.get("model");
  if (wanted && byName.has(wanted)) modelSelect.value = wanted;

  // -- presets ----------------------------------------------------------------------------
  if (available(caps, "presets")) {
    try {
      const list = await presets();
      if (!list.length) presetsCard.append(h("p", { class: "muted", text: "No presets." }));
      else {
        const keys = [...new Set(list.flatMap((p) => Object.keys(p)))];
        presetsCard.append(h("div", { class: "table-wrap" }, h("table", { id: "presets-table" },
          h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col", text: k })))),
          h("tbody", {}, list.map((p) => h("tr", {}, keys.map((k) => h("td", {
            text: p[k] !== null && typeof p[k] === "object" ? JSON.stringify(p[k]) : String(p[k] ?? "—") }))))))));
      }
    } catch (error) {
      presetsCard.append(h("p", { class: "notice error", text: error.message }));
    }
  } else {
    presetsCard.append(unavailable("Presets", [`GET ${ROUTES.presets}`]));
  }

  const off = servers.subscribe(applyStates);
  showPlan();
  return () => off();
}
