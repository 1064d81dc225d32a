// Tune: start a tune (a form generated from TuneRequest's parts: the model, the space the
// service derives for it as editable lists, the objective, the options and the preset's
// other settings), the tunes, live from the event stream, and one tune's view: its trials
// as a scatter of prompt against generation speed with the Pareto front and the best
// trial, a table of every trial, Cancel, Resume and Save as preset.

import { ApiError, errorsByField, get, getCapabilities, post } from "../api.js";
import { card, clear, h, num, parseTime, stateBadge, timeEl, unavailable } from "../dom.js";
import { scatterChart, updateScatter } from "../charts.js";
import { FieldProblem, schemaForm } from "../schema_form.js";

const ROUTES = ["/api/v1/tune", "/api/v1/tunes", "/api/v1/tune/status", "/api/v1/tune/space"];
const OPTIONS_PRIMARY = ["budget", "seed", "preset"];
const PARTS = new Set(["model_path", "space", "objective", "server"]);
const ERROR_ROOTS = { "$.space": "space.", "$.objective": "objective.", "$.server": "server.", $: "" };
const REFRESH_MS = 250;
const LIST_LIMIT = 50;

export async function mount(main, ctx) {
  const caps = await getCapabilities();
  main.append(h("h1", { tabindex: "-1", text: "Tune" }));
  const missing = ROUTES.filter((p) => !caps.has(p));
  if (missing.length || !caps.schemas.TuneRequest) {
    const section = card("Tuning", { id: "tune-start" });
    section.append(unavailable("Tuning", missing.length ? missing : ROUTES));
    main.append(section);
    return () => {};
  }
  const offs = [];
  let stopped = false;

  // -- start ------------------------------------------------------------------------------
  const startCard = card("Start a tune", { id: "tune-start" });
  const modelSelect = h("select", { id: "tune-model", "aria-describedby": "tune-model-error" });
  const modelError = h("p", { class: "field-error", id: "tune-model-error" });
  const requestProps = caps.schemas.TuneRequest.properties || {};
  const optionProps = Object.fromEntries(Object.entries(requestProps).filter(([name]) => !PARTS.has(name)));
  const optionsForm = schemaForm({ properties: optionProps },
    { idPrefix: "tune-option", primary: OPTIONS_PRIMARY, moreLabel: "More options" });
  const objectiveForm = schemaForm(caps.schemas.TuneObjective || {}, { idPrefix: "tune-objective", collapse: false });
  const serverForm = caps.schemas.ServerConfig
    ? schemaForm(caps.schemas.ServerConfig, { idPrefix: "tune-server", collapse: false }) : null;
  const spaceSchema = caps.schemas.TuneSpace || {};
  let spaceForm = schemaForm(spaceSchema, { idPrefix: "tune-space" });
  const spaceSlot = h("div", { id: "tune-space" }, spaceForm.element);
  const spaceNote = h("p", { class: "muted", id: "tune-space-note", role: "status" });
  const spaceError = h("p", { class: "field-error", id: "tune-space-error" });
  const objectiveError = h("p", { class: "field-error", id: "tune-objective-error" });
  const serverError = h("p", { class: "field-error", id: "tune-server-error" });
  const serverDetails = h("details", { id: "tune-server-settings" },
    h("summary", { text: "The preset's other settings (ServerConfig)" }),
    h("p", { class: "muted", text: "Written into the preset beside the tuned settings; empty: the presets file's defaults." }),
    serverForm ? serverForm.element : h("p", { class: "notice error", text: "The API document has no ServerConfig schema." }),
    serverError);
  const resetSpace = h("button", { type: "button", class: "small", id: "tune-space-reset",
    text: "Reset to the model's default space" });
  const formErrors = h("ul", { class: "form-errors", id: "tune-errors", role: "alert" });
  const result = h("p", { class: "notice", id: "tune-result", role: "status" });
  const startForm = h("form", { id: "tune-form", novalidate: true, "aria-labelledby": startCard.firstChild.id },
    h("div", { class: "field", dataset: { field: "model_path" } },
      h("label", { for: "tune-model", text: "Model" }), modelSelect, modelError),
    h("h3", { text: "Space (TuneSpace)" }),
    h("p", { class: "muted", text: "The space the service derives for the model. Several values search a setting, " +
      "one value fixes it, an empty setting is left out." }),
    spaceNote, spaceSlot, spaceError, h("div", { class: "actions" }, resetSpace),
    h("h3", { text: "Objective (TuneObjective)" }),
    h("p", { class: "muted", text: "What the tune maximises, and the test sizes every trial measures. " +
      "Empty: generation speed (tg) at llama-bench's sizes." }),
    objectiveForm.element, objectiveError,
    h("h3", { text: "Options" }),
    optionsForm.element,
    serverDetails,
    formErrors,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: "Start tune" })),
    result);
  startCard.append(startForm);
  main.append(startCard);

  // -- the tunes ----------------------------------------------------------------------------
  const listCard = card("Tunes", { id: "tune-list" });
  const listStatus = h("p", { class: "muted", id: "tunes-count", role: "status" });
  const listBody = h("tbody");
  const listTable = h("table", { id: "tunes-table" },
    h("caption", { text: "Newest first, updated live" }),
    h("thead", {}, h("tr", {}, ["Created", "Model", "State", "Progress", "Best score", "Preset", ""]
      .map((t, i) => h("th", { scope: "col", class: i === 4 ? "num" : undefined },
        t || h("span", { class: "visually-hidden", text: "Actions" }))))),
    listBody);
  listCard.append(listStatus, h("div", { class: "table-wrap" }, listTable));
  main.append(listCard);

  // -- one tune -----------------------------------------------------------------------------
  const viewCard = card("A tune", { id: "tune-view" });
  const viewBody = h("div", { id: "tune-body" },
    h("p", { class: "muted", text: "Choose View on a tune, or start one." }));
  viewCard.append(viewBody);
  main.append(viewCard);

  // -- state --------------------------------------------------------------------------------
  let tunes = [];
  let rowCache = new Map(); // tune id -> {key, tr}
  let view = null; // the shown tune's elements, chart and record

  const models = await get("api/v1/models");
  for (const m of models) modelSelect.append(h("option", { value: m.name, text: m.name }));
  const wantedModel = ctx.params.get("model");
  if (wantedModel && models.some((m) => m.name === wantedModel)) modelSelect.value = wantedModel;

  // -- the default space --------------------------------------------------------------------
  let spaceRequest = 0;
  const loadSpace = async () => {
    const model = modelSelect.value;
    const mine = ++spaceRequest;
    spaceError.textContent = "";
    if (!model) {
      spaceNote.textContent = "The catalog has no model to tune.";
      return;
    }
    spaceNote.textContent = `Reading the default space of ${model}…`;
    let defaults = {};
    let nPrompt;
    try { nPrompt = objectiveForm.fields.get("n_prompt")?.read(); } catch { nPrompt = undefined; }
    try {
      defaults = await get("api/v1/tune/space", { model_path: model, n_prompt: Number.isInteger(nPrompt) ? nPrompt : undefined });
    } catch (error) {
      if (mine !== spaceRequest) return;
      spaceNote.textContent = "";
      spaceError.textContent = `The default space could not be read: ${error.message}`;
      return;
    }
    if (mine !== spaceRequest || stopped) return;
    spaceForm = schemaForm(spaceSchema, { idPrefix: "tune-space", primary: Object.keys(defaults),
      moreLabel: "Other settings to tune" });
    spaceForm.setValues(defaults);
    spaceSlot.replaceChildren(spaceForm.element);
    spaceSlot.dataset.model = model;
    const count = Object.values(defaults).reduce((n, v) => n * (Array.isArray(v) ? v.length : 1), 1);
    spaceNote.textContent = `Default space of ${model}: ${plural(Object.keys(defaults).length, "setting")}, ` +
      `${plural(count, "combination")}.`;
  };
  modelSelect.addEventListener("change", loadSpace);
  resetSpace.addEventListener("click", loadSpace);

  // -- start --------------------------------------------------------------------------------
  const clearStartErrors = () => {
    for (const form of [spaceForm, objectiveForm, optionsForm, serverForm]) form?.clearErrors();
    for (const slot of [modelError, spaceError, objectiveError, serverError]) slot.textContent = "";
    modelSelect.removeAttribute("aria-invalid");
    clear(formErrors);
  };
  const readPart = (form, name) => {
    try {
      const value = form ? form.read() : {};
      return Object.keys(value).length ? value : undefined;
    } catch (error) {
      if (!(error instanceof FieldProblem)) throw error;
      if (name === "server") serverDetails.open = true;
      form.showErrors(new Map([[error.field, [error.message]]])).firstInvalid?.focus();
      throw error;
    }
  };
  startForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearStartErrors();
    result.className = "notice";
    result.textContent = "";
    delete result.dataset.tune;
    let body;
    try {
      body = { model_path: modelSelect.value, space: readPart(spaceForm, "space"),
        objective: readPart(objectiveForm, "objective"), server: readPart(serverForm, "server"),
        ...readPart(optionsForm, "options") };
    } catch (error) {
      if (error instanceof FieldProblem) return;
      throw error;
    }
    for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
    try {
      const tune = await post("api/v1/tune", body);
      result.className = "notice ok";
      result.dataset.tune = tune.id;
      const p = tune.progress || {};
      result.textContent = `Tune ${tune.id} ${tune.state}: ${plural(p.space_size ?? 0, "point")} in the space` +
        `${p.feasible !== null && p.feasible !== undefined ? ` (${p.feasible} can run)` : ""}, budget ${p.budget}.`;
      refreshList();
      showTune(tune.id, tune);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      result.className = "notice error";
      result.textContent = `${error.summary}: ${error.message}`;
      placeStartErrors(error);
    }
  });
  const placeStartErrors = (error) => {
    const { fields, general } = errorsByField(error, ERROR_ROOTS);
    const parts = { "space.": [spaceForm, new Map()], "objective.": [objectiveForm, new Map()],
      "server.": [serverForm, new Map()] };
    const options = new Map();
    const focus = [];
    for (const [name, reasons] of fields) {
      const prefix = Object.keys(parts).find((p) => name.startsWith(p));
      if (prefix) parts[prefix][1].set(name.slice(prefix.length), reasons);
      else if (name === "model_path") {
        modelError.textContent = reasons.join("; ");
        modelSelect.setAttribute("aria-invalid", "true");
        focus.push(modelSelect);
      } else if (name === "space") spaceError.textContent = reasons.join("; ");
      else if (name === "objective") objectiveError.textContent = reasons.join("; ");
      else if (name === "server") { serverError.textContent = reasons.join("; "); serverDetails.open = true; }
      else options.set(name, reasons);
    }
    if (error.code === "model_not_found" && !modelError.textContent) {
      modelError.textContent = error.message;
      modelSelect.setAttribute("aria-invalid", "true");
      focus.push(modelSelect);
    }
    const place = (form, map, where) => {
      if (!map.size) return;
      if (!form) {
        for (const [name, reasons] of map) general.push(...reasons.map((r) => `${r} @ ${where}${name}`));
        return;
      }
      const { unplaced, firstInvalid } = form.showErrors(map);
      for (const name of unplaced) general.push(...map.get(name).map((r) => `${r} @ ${where}${name}`));
      if (firstInvalid) focus.push(firstInvalid);
    };
    for (const [prefix, [form, map]] of Object.entries(parts)) {
      if (prefix === "server." && map.size) serverDetails.open = true;
      place(form, map, prefix);
    }
    place(optionsForm, options, "");
    for (const text of general) formErrors.append(h("li", { text }));
    focus[0]?.focus();
  };

  /** The started tune's notice says how it ended (from its event or a read status). */
  const showEnd = (id, state, error) => {
    if (!id || state === "running" || result.dataset.tune !== id) return;
    result.textContent = `Tune ${id} ${state}${error ? `: ${error}` : "."}`;
    result.className = state === "completed" ? "notice ok" : "notice error";
  };

  // -- the list -------------------------------------------------------------------------------
  const loadList = async () => {
    try {
      tunes = await get("api/v1/tunes", { limit: LIST_LIMIT });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      listStatus.textContent = error.message;
      return;
    }
    if (stopped) return;
    const frag = document.createDocumentFragment();
    const next = new Map();
    for (const tune of tunes) {
      const p = tune.progress || {};
      const key = `${tune.state}|${p.done}|${p.budget}|${p.pruned}|${tune.best?.number}|${tune.preset?.id}|${tune.preset?.trial}`;
      const cached = rowCache.get(tune.id);
      const tr = cached && cached.key === key ? cached.tr : listRow(tune);
      tr.classList.toggle("selected", view?.id === tune.id);
      next.set(tune.id, { key, tr });
      frag.append(tr);
    }
    rowCache = next;
    listBody.replaceChildren(frag);
    listTable.hidden = tunes.length === 0;
    listStatus.textContent = tunes.length ? plural(tunes.length, "tune") : "No tune yet.";
  };
  const listRow = (tune) => {
    const actions = h("div", { class: "row-actions" },
      h("button", { type: "button", class: "small", text: "View", "aria-label": `View tune ${tune.id}`,
        on: { click: () => openTune(tune.id) } }));
    if (tune.state === "running") {
      actions.append(h("button", { type: "button", class: "small danger", text: "Cancel",
        "aria-label": `Cancel tune ${tune.id}`, on: { click: () => cancelTune(tune.id, listStatus) } }));
    }
    return h("tr", { dataset: { tune: tune.id, state: tune.state } },
      h("td", {}, timeEl(tune.created_at)),
      h("td", { text: tune.model }),
      h("td", {}, stateBadge(tune.state)),
      h("td", {}, progressOf(tune, `Progress of tune ${tune.id}`)),
      h("td", { class: "num", text: tune.best ? `${speed(tune.best.score)} (${objectiveLabel(tune.objective)})` : "—" }),
      h("td", { text: tune.preset ? tune.preset.id : "—" }),
      h("td", {}, actions));
  };
  const cancelTune = async (id, where) => {
    try {
      const tune = await post("api/v1/tune/cancel", undefined, { tune_id: id });
      if (view?.id === id) paintView(tune);
      refreshList();
    } catch (error) {
      where.textContent = error.message;
    }
  };

  // -- one tune ---------------------------------------------------------------------------------
  const showTune = async (id, known) => {
    if (view?.id !== id) {
      view?.chart?.destroy();
      view = buildView(id);
      clear(viewBody).append(view.element);
      history.replaceState(null, "", `#/tune?tune=${encodeURIComponent(id)}`);
      for (const [tuneId, { tr }] of rowCache) tr.classList.toggle("selected", tuneId === id);
    }
    const mine = view;
    if (known && known.trials) paintView(known);
    let tune;
    try {
      tune = await get("api/v1/tune/status", { tune_id: id });
    } catch (error) {
      if (view === mine) mine.status.textContent = error.message;
      return;
    }
    if (view === mine && !stopped) paintView(tune);
  };
  /** View a tune from the list: the keyboard's focus goes to its heading. */
  const openTune = async (id) => {
    const shown = showTune(id);
    view.title.focus({ preventScroll: true });
    view.title.scrollIntoView({ block: "start" });
    await shown;
  };
  const reloadView = async () => {
    if (!view || stopped) return;
    await showTune(view.id);
  };

  const buildView = (id) => {
    const v = { id, tune: null, chart: null, chartPending: null, rows: new Map() };
    v.title = h("h3", { id: "tune-title", tabindex: "-1", text: `Tune ${id}` });
    v.state = h("span", { id: "tune-state" });
    v.progress = h("span", { id: "tune-progress" });
    v.current = h("span", { class: "muted", id: "tune-current" });
    v.facts = h("dl", { class: "kv", id: "tune-facts" });
    v.status = h("p", { class: "notice", id: "tune-status", role: "status" });
    v.cancel = h("button", { type: "button", class: "danger", id: "tune-cancel", text: "Cancel tune",
      on: { click: () => cancelTune(id, v.status) } });
    v.budget = h("input", { id: "tune-resume-budget", type: "text", inputmode: "numeric", autocomplete: "off",
      "aria-describedby": "tune-resume-budget-help tune-resume-budget-error" });
    v.budgetError = h("p", { class: "field-error", id: "tune-resume-budget-error" });
    v.resumeForm = h("form", { id: "tune-resume-form", class: "toolbar", novalidate: true, "aria-label": "Resume the tune" },
      h("div", { class: "field" },
        h("label", { for: "tune-resume-budget", text: "Budget (trials in all)" }), v.budget,
        h("p", { class: "help", id: "tune-resume-budget-help",
          text: "The measured trials count; empty: the budget it had. A completed tune needs a larger one." }),
        v.budgetError),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "tune-resume", text: "Resume tune" })));
    v.resumeForm.addEventListener("submit", (event) => {
      event.preventDefault();
      resume(v);
    });
    v.presetId = h("input", { id: "tune-save-preset", type: "text", autocomplete: "off",
      "aria-describedby": "tune-save-preset-help tune-save-preset-error" });
    v.presetError = h("p", { class: "field-error", id: "tune-save-preset-error" });
    v.saveBest = h("button", { type: "submit", id: "tune-save-best", text: "Save best as preset" });
    v.saveForm = h("form", { id: "tune-save-form", class: "toolbar", novalidate: true, "aria-label": "Save a trial as a preset" },
      h("div", { class: "field" },
        h("label", { for: "tune-save-preset", text: "Preset id" }), v.presetId,
        h("p", { class: "help", id: "tune-save-preset-help",
          text: "Used by Save best and by Save on a trial; empty: the tune's own preset id." }),
        v.presetError),
      h("div", { class: "actions" }, v.saveBest));
    v.saveForm.addEventListener("submit", (event) => {
      event.preventDefault();
      savePreset(v, undefined);
    });
    v.preset = h("p", { class: "notice", id: "tune-preset", role: "status" });
    v.canvas = h("canvas", { id: "tune-canvas", role: "img",
      "aria-label": "The trials: prompt tokens/s (x) against generation tokens/s (y); the Pareto front as a line; the best trial as a star" });
    v.chartBox = h("div", { class: "chart-box", id: "tune-chart" }, v.canvas);
    v.chartNote = h("p", { class: "muted", id: "tune-chart-note" });
    v.tableHead = h("thead");
    v.tableBody = h("tbody");
    v.table = h("table", { id: "trials-table" },
      h("caption", { text: "Every trial: the settings, the figures (± 1 standard deviation), the score and how it ended" }),
      v.tableHead, v.tableBody);
    v.element = h("div", { dataset: { tune: id } },
      v.title,
      h("p", {}, v.state, " ", v.progress, " ", v.current),
      v.facts,
      h("div", { class: "split two" }, h("div", {}, v.cancel, v.resumeForm), v.saveForm),
      v.status, v.preset,
      v.chartBox, v.chartNote,
      h("details", { open: true }, h("summary", { text: "Trials" }), h("div", { class: "table-wrap" }, v.table)));
    return v;
  };

  const paintView = (tune) => {
    const v = view;
    if (!v || v.id !== tune.id) return;
    v.tune = tune;
    showEnd(tune.id, tune.state, tune.error);
    const p = tune.progress || {};
    v.element.dataset.state = tune.state;
    v.title.textContent = `Tune ${tune.id} · ${tune.model}`;
    v.state.replaceChildren(stateBadge(tune.state));
    v.progress.replaceChildren(progressOf(tune, `Progress of tune ${tune.id}`));
    // Between reads, the running trial's own progress comes from its benchmark's events.
    if (tune.state !== "running") v.current.textContent = "";
    else if (!v.current.textContent && Number.isInteger(p.current_trial)) v.current.textContent = `trial ${p.current_trial} running`;
    clear(v.facts).append(...facts(tune).flatMap(([k, value]) => [h("dt", { text: k }), h("dd", {}, value)]));
    v.cancel.hidden = tune.state !== "running";
    v.resumeForm.hidden = tune.state === "running";
    v.budget.placeholder = `unchanged (${tune.options?.budget ?? p.budget})`;
    v.presetId.placeholder = tune.options?.preset || `${stem(tune.model_path || tune.model)}-tuned`;
    const completed = (tune.trials || []).filter(isMeasured);
    v.saveBest.disabled = !tune.best;
    paintPreset(v, tune);
    paintTrials(v, tune);
    paintChart(v, tune, completed);
  };

  const paintPreset = (v, tune) => {
    const preset = tune.preset;
    v.preset.className = preset?.error ? "notice error" : preset ? "notice ok" : "notice";
    v.preset.dataset.preset = preset?.id || "";
    if (!preset) {
      v.preset.textContent = tune.options?.save_preset === false
        ? "No preset written: this tune does not save one by itself."
        : tune.state === "running" ? "The best trial's settings are written as a preset when the tune completes." : "";
      return;
    }
    const written = parseTime(preset.written_at);
    v.preset.textContent = `Preset ${preset.id}: trial ${preset.trial}'s settings` +
      (written ? `, written to ${preset.path} at ${written.toLocaleString()}` : ` (${preset.path})`) +
      (preset.error ? `. ${preset.error}` : ".");
  };

  const paintTrials = (v, tune) => {
    const trials = [...(tune.trials || [])].sort((a, b) => a.number - b.number);
    const keys = paramKeys(tune, trials);
    const objective = tune.objective || {};
    const headKey = keys.join("|");
    if (v.headKey !== headKey) {
      v.headKey = headKey;
      v.rows.clear();
      clear(v.tableHead).append(h("tr", {},
        h("th", { scope: "col", class: "num", text: "Trial" }),
        keys.map((k) => h("th", { scope: "col", text: k })),
        h("th", { scope: "col", class: "num", text: `Prompt t/s (${testName("pp", objective)})` }),
        h("th", { scope: "col", class: "num", text: `Generation t/s (${testName("tg", objective)})` }),
        h("th", { scope: "col", class: "num", text: `Score (${objectiveLabel(objective)})` }),
        h("th", { scope: "col", class: "num", text: "Runs" }),
        h("th", { scope: "col", text: "State" }),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Actions" }))));
    }
    const front = new Set(tune.pareto || []);
    const best = tune.best?.number;
    const next = new Map();
    const frag = document.createDocumentFragment();
    for (const trial of trials) {
      const key = [trial.state, trial.repetitions, trial.score, trial.reason, best === trial.number,
        front.has(trial.number), tune.preset?.trial === trial.number].join("|");
      const cached = v.rows.get(trial.number);
      const tr = cached && cached.key === key ? cached.tr : trialRow(v, tune, trial, keys, { best, front });
      next.set(trial.number, { key, tr });
      frag.append(tr);
    }
    v.rows = next;
    v.tableBody.replaceChildren(frag);
    if (!trials.length) {
      v.tableBody.append(h("tr", {}, h("td", { colspan: String(keys.length + 7), class: "muted",
        text: tune.state === "running" ? "The first trial is starting…" : "No trial." })));
    }
  };

  const trialRow = (v, tune, trial, keys, { best, front }) => {
    const tags = [];
    if (trial.number === best) tags.push(h("span", { class: "tag best", text: "best" }));
    if (front.has(trial.number)) tags.push(h("span", { class: "tag", text: "front" }));
    if (tune.preset?.trial === trial.number && !tune.preset.error) {
      tags.push(h("span", { class: "tag", text: `preset ${tune.preset.id}` }));
    }
    const actions = h("div", { class: "row-actions" });
    if (isMeasured(trial)) {
      actions.append(h("button", { type: "button", class: "small", text: "Save as preset",
        "aria-label": `Save as preset: trial ${trial.number}`, dataset: { action: "save" },
        on: { click: () => savePreset(v, trial.number) } }));
    }
    const stateCell = h("td", {}, stateBadge(trial.state));
    if (trial.reason) stateCell.append(h("span", { class: "muted reason", text: ` ${trial.reason}` }));
    return h("tr", { dataset: { trial: String(trial.number), state: trial.state,
      best: trial.number === best ? "true" : undefined, front: front.has(trial.number) ? "true" : undefined } },
      h("th", { scope: "row", class: "num" }, String(trial.number), tags),
      keys.map((k) => h("td", { text: paramText(trial.params?.[k]) })),
      h("td", { class: "num", text: figure(trial.pp_ts, trial.pp_stddev) }),
      h("td", { class: "num", text: figure(trial.tg_ts, trial.tg_stddev) }),
      h("td", { class: "num", text: figure(trial.score, trial.score_error) }),
      h("td", { class: "num", text: trial.repetitions ? String(trial.repetitions) : "—" }),
      stateCell,
      h("td", {}, actions));
  };

  const paintChart = async (v, tune, completed) => {
    const front = new Set(tune.pareto || []);
    const byNumber = new Map();
    const points = completed.map((t) => {
      const point = { x: t.pp_ts, y: t.tg_ts, xError: t.pp_stddev, yError: t.tg_stddev, trial: t.number,
        title: `Trial ${t.number}: ${paramsText(t.params)}`,
        detail: `prompt ${figure(t.pp_ts, t.pp_stddev)} t/s, generation ${figure(t.tg_ts, t.tg_stddev)} t/s, ` +
          `score ${figure(t.score, t.score_error)}` };
      byNumber.set(t.number, point);
      return point;
    });
    const frontPoints = [...front].map((n) => byNumber.get(n)).filter(Boolean).sort((a, b) => a.x - b.x);
    const best = tune.best ? byNumber.get(tune.best.number) || null : null;
    // What the chart shows, once it shows it (the browser tests read these).
    const mark = (shown) => Object.assign(v.chartBox.dataset, { points: String(shown.points.length),
      front: String(shown.front.length), best: shown.best ? String(shown.best.trial) : "" });
    v.chartNote.textContent = points.length
      ? `${plural(points.length, "completed trial")}; ${plural(frontPoints.length, "trial")} on the Pareto front` +
        `${best ? `; the best is trial ${best.trial} (star)` : ""}. Whiskers and tooltips: ±1 standard deviation.`
      : "No trial measured yet: the chart fills in as trials complete.";
    const spec = { points, front: frontPoints, best };
    if (v.chart) {
      updateScatter(v.chart, spec);
      mark(spec);
      return;
    }
    if (v.chartPending) { v.nextSpec = spec; return; }
    v.chartPending = scatterChart(v.canvas, spec);
    try {
      const chart = await v.chartPending;
      if (view !== v || stopped) { chart.destroy(); return; }
      v.chart = chart;
      if (v.nextSpec) updateScatter(chart, v.nextSpec);
      mark(v.nextSpec || spec);
    } catch (error) {
      v.status.className = "notice error";
      v.status.textContent = error.message;
    } finally {
      v.chartPending = null;
      v.nextSpec = null;
    }
  };

  const resume = async (v) => {
    v.budgetError.textContent = "";
    v.budget.removeAttribute("aria-invalid");
    v.status.className = "notice";
    v.status.textContent = "";
    const text = v.budget.value.trim();
    try {
      const tune = await post("api/v1/tune/resume", undefined, { tune_id: v.id, budget: text || undefined });
      v.status.className = "notice ok";
      v.status.textContent = `Tune ${tune.id} resumed: budget ${tune.progress?.budget}.`;
      v.budget.value = "";
      paintView(tune);
      refreshList();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const { fields } = errorsByField(error, { "$.query": "", $: "" });
      const reasons = fields.get("budget");
      if (reasons || error.code === "tune_state") {
        v.budgetError.textContent = (reasons || [error.message]).join("; ");
        v.budget.setAttribute("aria-invalid", "true");
        v.budget.focus();
      } else {
        v.status.className = "notice error";
        v.status.textContent = `${error.summary}: ${error.message}`;
      }
    }
  };

  const savePreset = async (v, trial) => {
    v.presetError.textContent = "";
    v.presetId.removeAttribute("aria-invalid");
    const preset = v.presetId.value.trim();
    try {
      const tune = await post("api/v1/tune/preset", undefined, { tune_id: v.id, trial, preset: preset || undefined });
      paintView(tune);
      refreshList();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const { fields, general } = errorsByField(error, { "$.query": "", $: "" });
      const reasons = [...(fields.get("preset") || []), ...(fields.has("preset") ? [] : general)];
      v.presetError.textContent = (reasons.length ? reasons : [error.message]).join("; ");
      v.presetId.setAttribute("aria-invalid", "true");
      v.presetId.focus();
    }
  };

  // -- live -------------------------------------------------------------------------------------
  const refreshList = throttled(loadList, REFRESH_MS, () => stopped);
  const refreshView = throttled(reloadView, REFRESH_MS, () => stopped);
  offs.push(ctx.feed.on("tune.*", (event) => {
    const d = event.data || {};
    refreshList();
    if (event.type === "status") showEnd(d.tune_id, d.state, d.error);
    if (view && d.tune_id === view.id) {
      if (event.type === "trial" && d.state === "running") view.current.textContent = `trial ${d.number} running`;
      if (event.type === "status" && d.state !== "running") view.current.textContent = "";
      refreshView();
    }
  }));
  offs.push(ctx.feed.on("benchmark.progress", (event) => {
    // The running trial's own progress, from its benchmark task.
    const d = event.data || {};
    const p = view?.tune?.progress;
    if (!p || view.tune.state !== "running" || !d.task_id) return;
    // Read before its trial had a task (and the trial's event came before the stream was
    // up): read the tune again to learn it.
    if (!p.current_task_id) refreshView();
    if (d.task_id !== p.current_task_id) return;
    view.current.textContent = `trial ${p.current_trial}: ${d.current || ""}${d.step ? ` (${d.step})` : ""}`;
  }));
  offs.push(ctx.feed.on("reconnected", () => { refreshList(); refreshView(); }));
  const onTheme = () => {
    // Chart colours come from the theme: draw the chart again.
    if (!view?.chart || !view.tune) return;
    view.chart.destroy();
    view.chart = null;
    paintView(view.tune);
  };
  window.addEventListener("llamaswitch:theme", onTheme);

  const wanted = ctx.params.get("tune");
  await Promise.all([loadSpace(), loadList(), wanted ? showTune(wanted) : null]);

  return () => {
    stopped = true;
    offs.forEach((off) => off());
    refreshList.cancel();
    refreshView.cancel();
    window.removeEventListener("llamaswitch:theme", onTheme);
    view?.chart?.destroy();
  };
}

/** Run `fn` once `ms` after the first call of a burst; calls during a run queue one more. */
function throttled(fn, ms, isStopped) {
  let timer = null;
  let busy = false;
  let again = false;
  const fire = async () => {
    timer = null;
    if (isStopped()) return;
    if (busy) { again = true; return; }
    busy = true;
    try { await fn(); } finally {
      busy = false;
      if (again) { again = false; schedule(); }
    }
  };
  const schedule = () => { if (!timer) timer = setTimeout(fire, ms); };
  schedule.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return schedule;
}

const isMeasured = (trial) => trial.state === "completed" && Number.isFinite(trial.pp_ts) && Number.isFinite(trial.tg_ts);

function progressOf(tune, label) {
  const p = tune.progress || {};
  const budget = p.budget || 0;
  const bar = h("progress", { max: String(budget || 1), value: String(Math.min(p.done || 0, budget || 1)),
    "aria-label": label });
  const extra = [p.failed ? `${p.failed} failed` : "", p.pruned ? `${p.pruned} pruned` : ""].filter(Boolean);
  return h("span", { class: "progress" }, bar, ` ${p.done ?? 0}/${budget || "?"} trials`,
    extra.length ? ` (${extra.join(", ")})` : "");
}

function facts(tune) {
  const p = tune.progress || {};
  const out = [
    ["Objective", objectiveLabel(tune.objective || {})],
    ["Space", `${Object.entries(tune.space || {}).map(([k, v]) => `${k}: ${paramText(v)}`).join("; ") || "—"}` +
      (p.space_size !== null && p.space_size !== undefined ? ` (${plural(p.space_size, "point")}` +
        `${p.feasible !== null && p.feasible !== undefined ? `, ${p.feasible} can run` : ""})` : "")],
    ["Seed", String(tune.seed ?? "—")],
    ["Created", timeEl(tune.created_at)],
    ["Finished", timeEl(tune.finished_at)],
    ["llama-bench", tune.binary_version || "—"],
  ];
  if (tune.error) out.push(["Error", tune.error]);
  return out;
}

function testName(kind, objective) {
  const size = kind === "pp" ? objective.n_prompt ?? 512 : objective.n_gen ?? 128;
  return `${kind}${size}${objective.n_depth ? ` @ d${objective.n_depth}` : ""}`;
}

/** "tg128", "pp512", "0.5 pp512 + 0.5 tg128": the objective as the tune's label says it. */
export function objectiveLabel(objective) {
  const metric = objective.metric || "tg";
  if (metric === "pp" || metric === "tg") return testName(metric, objective);
  const w = objective.pp_weight ?? 0.5;
  return `${num(w, 3)} ${testName("pp", objective)} + ${num(1 - w, 3)} ${testName("tg", objective)}`;
}

function paramKeys(tune, trials) {
  const keys = Object.keys(tune.space || {});
  for (const t of trials) for (const k of Object.keys(t.params || {})) if (!keys.includes(k)) keys.push(k);
  return keys.filter((k) => trials.some((t) => t.params && k in t.params) || !trials.length);
}

function paramText(value) {
  if (value === undefined) return "—";
  if (Array.isArray(value)) return value.map(paramText).join(", ");
  return String(value);
}

function paramsText(params) {
  return Object.entries(params || {}).map(([k, v]) => `${k} ${paramText(v)}`).join(", ");
}

function speed(value) {
  if (!Number.isFinite(value)) return "—";
  return num(value, Math.abs(value) >= 100 ? 0 : 2);
}

function figure(value, spread) {
  if (!Number.isFinite(value)) return "—";
  return Number.isFinite(spread) ? `${speed(value)} ± ${speed(spread)}` : speed(value);
}

function stem(path) {
  const name = String(path || "model").split("/").pop();
  return name.replace(/\.gguf$/i, "");
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
