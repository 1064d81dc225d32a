// Benchmarks: a submit form generated from BenchConfig's JSON Schema (sweeps included),
// live progress of running tasks (event stream), the history with filters, a task's
// chart (t/s per test with standard-deviation error bars), grouped bars comparing tasks,
// a model's trend over time, and CSV / JSON / markdown export.

import { ApiError, errorsByField, get, getCapabilities, post, api } from "../api.js";
import { card, clear, debounce, download, duration, h, num, parseTime, stateBadge, timeEl } from "../dom.js";
import { barChart, timeChart } from "../charts.js";
import { FieldProblem, schemaForm } from "../schema_form.js";

const PRIMARY = ["n_prompt", "n_gen", "n_depth", "threads", "repetitions", "n_gpu_layers", "batch_size", "flash_attn"];
const ACTIVE = new Set(["queued", "running"]);

export async function mount(main, ctx) {
  const caps = await getCapabilities();
  main.append(h("h1", { tabindex: "-1", text: "Benchmarks" }));
  const charts = new Set();
  const offs = [];

  // -- submit -----------------------------------------------------------------------------
  const submitCard = card("Run a benchmark", { id: "bench-submit" });
  const modelSelect = h("select", { id: "bench-model", "aria-describedby": "bench-model-error" });
  const modelError = h("p", { class: "field-error", id: "bench-model-error" });
  const schema = caps.schemas.BenchConfig;
  const configForm = schema ? schemaForm(schema, { idPrefix: "bench", primary: PRIMARY }) : null;
  const requestSchema = caps.schemas.BenchmarkRequest;
  const extraProps = {};
  for (const [name, prop] of Object.entries(requestSchema?.properties || {})) {
    if (name !== "model_path" && name !== "config") extraProps[name] = prop;
  }
  const requestForm = schemaForm({ properties: extraProps }, { idPrefix: "bench-request", collapse: false });
  const formErrors = h("ul", { class: "form-errors", id: "bench-errors", role: "alert" });
  const result = h("p", { class: "notice", id: "bench-result", role: "status" });
  const submitForm = h("form", { id: "bench-form", novalidate: true, "aria-labelledby": submitCard.firstChild.id },
    h("div", { class: "field", dataset: { field: "model_path" } },
      h("label", { for: "bench-model", text: "Model" }), modelSelect, modelError),
    h("h3", { text: "llama-bench settings (BenchConfig)" }),
    h("p", { class: "muted", text: "Give several values to a setting to sweep it: llama-bench runs every combination." }),
    configForm ? configForm.element : h("p", { class: "notice error", text: "The API document has no BenchConfig schema." }),
    Object.keys(extraProps).length ? requestForm.element : null,
    formErrors,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: "Run benchmark" })),
    result);
  submitCard.append(submitForm);
  main.append(submitCard);

  // -- running ----------------------------------------------------------------------------
  const runningCard = card("Running and queued", { id: "bench-running" });
  const runningList = h("ul", { class: "event-log", id: "running-list" });
  const noneRunning = h("p", { class: "muted", text: "No benchmark is running or waiting." });
  runningCard.append(noneRunning, runningList);
  main.append(runningCard);

  // -- history ----------------------------------------------------------------------------
  const historyCard = card("History", { id: "bench-history" });
  const fModel = h("select", { id: "filter-model" }, h("option", { value: "", text: "every model" }));
  const fState = h("select", { id: "filter-state" }, ["", "completed", "failed", "cancelled", "interrupted", "running", "queued"]
    .map((s) => h("option", { value: s, text: s || "every state" })));
  const fSince = h("input", { type: "date", id: "filter-since" });
  const fUntil = h("input", { type: "date", id: "filter-until" });
  const fLimit = h("select", { id: "filter-limit" }, [50, 200, 1000].map((n) => h("option", { value: String(n), text: String(n), selected: n === 200 })));
  const historyStatus = h("p", { class: "muted", id: "history-count", role: "status" });
  const compareButton = h("button", { type: "button", id: "compare", text: "Compare selected", disabled: true });
  const exportButtons = ["csv", "json", "md"].map((format) => h("button", { type: "button", class: "small",
    dataset: { export: format }, text: { csv: "Export CSV", json: "Export JSON", md: "Export markdown" }[format] }));
  const historyBody = h("tbody");
  const historyTable = h("table", { id: "history-table" },
    h("caption", { text: "Newest first; select tasks to compare or export them" }),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Select" })),
      ["Created", "Model", "State", "Tests", "Best t/s", "Took", ""].map((t, i) => h("th", { scope: "col", class: [4, 5, 6].includes(i) ? "num" : undefined },
        t || h("span", { class: "visually-hidden", text: "Actions" }))))),
    historyBody);
  historyCard.append(
    h("form", { class: "toolbar", id: "history-filters", role: "search", "aria-label": "Filter the history" },
      h("label", { for: "filter-model" }, "Model", fModel),
      h("label", { for: "filter-state" }, "State", fState),
      h("label", { for: "filter-since" }, "Since", fSince),
      h("label", { for: "filter-until" }, "Until", fUntil),
      h("label", { for: "filter-limit" }, "At most", fLimit)),
    historyStatus,
    h("div", { class: "actions" }, compareButton, ...exportButtons),
    h("div", { class: "table-wrap" }, historyTable));
  main.append(historyCard);

  // -- chart ------------------------------------------------------------------------------
  const chartCard = card("Chart", { id: "bench-chart" });
  const chartBody = h("div", { id: "chart-body" },
    h("p", { class: "muted", text: "Choose Chart on a task, or select two or more and Compare." }));
  chartCard.append(chartBody);
  main.append(chartCard);

  // -- trend ------------------------------------------------------------------------------
  const trendCard = card("Trend of a model", { id: "bench-trend" });
  const trendModel = h("select", { id: "trend-model" });
  const trendBody = h("div", { id: "trend-body" });
  trendCard.append(h("div", { class: "toolbar" }, h("label", { for: "trend-model" }, "Model", trendModel),
    h("button", { type: "button", id: "trend-show", text: "Show trend", on: { click: () => showTrend() } })), trendBody);
  main.append(trendCard);

  // -- state ------------------------------------------------------------------------------
  let tasks = [];
  const selected = new Set();
  const active = new Map(); // task_id -> {task, li, bar, text}

  const models = await get("api/v1/models");
  for (const m of models) {
    modelSelect.append(h("option", { value: m.name, text: m.name }));
    fModel.append(h("option", { value: m.name, text: m.name }));
    trendModel.append(h("option", { value: m.name, text: m.name }));
  }

  const destroyCharts = () => {
    charts.forEach((c) => c.destroy());
    charts.clear();
  };

  // -- history ------------------------------------------------------------------------------
  const loadHistory = async () => {
    const query = { model: fModel.value, state: fState.value, limit: fLimit.value,
      since: fSince.value, until: fUntil.value ? `${fUntil.value}T23:59:59Z` : "" };
    try {
      tasks = await get("api/v1/benchmarks", query);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      historyStatus.textContent = error.message;
      return;
    }
    for (const id of [...selected]) if (!tasks.some((t) => t.id === id)) selected.delete(id);
    renderHistory();
  };
  // Rows are reused while their task is unchanged: a refresh must not swap out the
  // checkbox or button under the user's pointer.
  let rowCache = new Map(); // task id -> {key, tr}
  const renderHistory = () => {
    const frag = document.createDocumentFragment();
    const next = new Map();
    for (const task of tasks) {
      const key = `${task.state}|${(task.results || []).length}|${task.finished_at}`;
      const cached = rowCache.get(task.id);
      const tr = cached && cached.key === key ? cached.tr : historyRow(task);
      const box = tr.querySelector("input[type=checkbox]");
      if (box) box.checked = selected.has(task.id);
      next.set(task.id, { key, tr });
      frag.append(tr);
    }
    rowCache = next;
    historyBody.replaceChildren(frag);
    historyTable.hidden = tasks.length === 0;
    historyStatus.textContent = tasks.length ? `${tasks.length} task${tasks.length === 1 ? "" : "s"}` : "No benchmark task matches.";
    updateSelection();
  };
  const historyRow = (task) => {
    const box = h("input", { type: "checkbox", "aria-label": `Select task ${task.id} (${task.model})`,
      checked: selected.has(task.id) });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(task.id);
      else selected.delete(task.id);
      updateSelection();
    });
    const best = Math.max(...(task.results || []).map((r) => r.avg_ts).filter(Number.isFinite));
    const started = parseTime(task.started_at);
    const finished = parseTime(task.finished_at);
    const actions = h("div", { class: "row-actions" },
      h("button", { type: "button", class: "small", text: "Chart", "aria-label": `Chart of task ${task.id}`,
        dataset: { action: "chart" }, disabled: !(task.results || []).length,
        on: { click: () => showTasks([task.id]) } }));
    if (ACTIVE.has(task.state)) {
      actions.append(h("button", { type: "button", class: "small danger", text: "Cancel", "aria-label": `Cancel task ${task.id}`,
        on: { click: () => post("api/v1/benchmark/cancel", undefined, { task_id: task.id }).catch(showError) } }));
    } else {
      actions.append(h("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete task ${task.id}`,
        on: { click: async () => {
          try {
            await api("DELETE", "api/v1/benchmark", { query: { task_id: task.id } });
            selected.delete(task.id);
            await loadHistory();
          } catch (error) { showError(error); }
        } } }));
    }
    return h("tr", { dataset: { task: task.id, state: task.state } },
      h("td", {}, box),
      h("td", {}, timeEl(task.created_at)),
      h("td", { text: task.model }),
      h("td", {}, stateBadge(task.state)),
      h("td", { class: "num", text: String((task.results || []).length) }),
      h("td", { class: "num", text: Number.isFinite(best) ? num(best, 1) : "—" }),
      h("td", { class: "num", text: started && finished ? duration((finished - started) / 1000) : "—" }),
      h("td", {}, actions));
  };
  const updateSelection = () => {
    compareButton.disabled = selected.size < 2;
    compareButton.textContent = `Compare selected (${selected.size})`;
  };
  const showError = (error) => {
    historyStatus.textContent = error.message;
  };

  // -- charts -------------------------------------------------------------------------------
  let lastShown = null;
  const showTasks = async (ids) => {
    lastShown = ids;
    for (const c of [...charts]) if (c.canvas.id === "bench-canvas") { c.destroy(); charts.delete(c); }
    clear(chartBody).append(h("p", { class: "muted", text: "Loading…" }));
    let comparison;
    try {
      comparison = await get("api/v1/benchmarks/compare", { task_ids: ids.join(",") });
    } catch (error) {
      clear(chartBody).append(h("p", { class: "notice error", text: error.message }));
      return;
    }
    const taskInfo = comparison.tasks || [];
    const rows = comparison.rows || [];
    const labels = rows.map((r) => r.label || r.test);
    const series = taskInfo.map((t) => ({
      label: `${t.model} · ${shortTime(t.created_at)} · ${t.id.slice(0, 6)}`,
      values: rows.map((r) => r.results?.[t.id]?.avg_ts ?? null),
      errors: rows.map((r) => r.results?.[t.id]?.stddev_ts ?? null),
    }));
    const single = taskInfo.length === 1;
    const title = single
      ? `Task ${taskInfo[0].id} · ${taskInfo[0].model}: tokens/s per test (error bars: ±1 standard deviation)`
      : `${taskInfo.length} tasks compared: tokens/s per test (error bars: ±1 standard deviation)`;
    const canvas = h("canvas", { id: "bench-canvas", role: "img", "aria-label": title });
    const table = h("table", { id: "chart-table" },
      h("caption", { text: "The chart's data" }),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Test" }),
        series.map((s) => h("th", { scope: "col", class: "num", text: `${s.label} t/s` })))),
      h("tbody", {}, rows.map((r, i) => h("tr", { dataset: { test: labels[i] } },
        h("th", { scope: "row", text: labels[i] }),
        series.map((s) => h("td", { class: "num",
          text: s.values[i] === null ? "—" : `${num(s.values[i], 2)} ± ${num(s.errors[i], 2)}` }))))));
    const box = h("div", { class: "chart-box" }, canvas);
    clear(chartBody).append(h("h3", { id: "chart-title", text: title }), box,
      h("details", { open: true }, h("summary", { text: "Data table" }), h("div", { class: "table-wrap" }, table)));
    try {
      charts.add(await barChart(canvas, { labels, series }));
      // Said once the chart is drawn (Chart.js loads on first use), not before.
      Object.assign(box.dataset, { bars: String(rows.length), series: String(series.length) });
    } catch (error) {
      chartBody.append(h("p", { class: "notice error", text: error.message }));
    }
    chartCard.scrollIntoView({ block: "nearest" });
  };
  compareButton.addEventListener("click", () => showTasks([...selected]));

  const showTrend = async () => {
    const model = trendModel.value;
    for (const c of [...charts]) if (c.canvas.id === "trend-canvas") { c.destroy(); charts.delete(c); }
    clear(trendBody).append(h("p", { class: "muted", text: "Loading…" }));
    let history;
    try {
      history = await get("api/v1/benchmarks", { model, state: "completed", limit: 1000 });
    } catch (error) {
      clear(trendBody).append(h("p", { class: "notice error", text: error.message }));
      return;
    }
    const byTest = new Map();
    for (const task of history) {
      const when = parseTime(task.finished_at || task.created_at);
      if (!when) continue;
      for (const r of task.results || []) {
        if (!Number.isFinite(r.avg_ts)) continue;
        const key = r.test || "test";
        if (!byTest.has(key)) byTest.set(key, []);
        byTest.get(key).push({ x: when.getTime(), y: r.avg_ts, error: r.stddev_ts });
      }
    }
    const series = [...byTest].map(([label, points]) => ({ label, points: points.sort((a, b) => a.x - b.x) }));
    if (!series.length) {
      clear(trendBody).append(h("p", { class: "muted", text: `No completed benchmark of ${model} yet.` }));
      return;
    }
    const canvas = h("canvas", { id: "trend-canvas", role: "img",
      "aria-label": `Tokens per second of ${model} over time, one line per test` });
    const box = h("div", { class: "chart-box" }, canvas);
    clear(trendBody).append(box,
      h("p", { class: "muted", text: `${plural(history.length, "completed task")}; ` +
        `${series.map((s) => `${s.label}: ${plural(s.points.length, "point")}`).join(", ")}.` }));
    charts.add(await timeChart(canvas, { series }));
    box.dataset.series = String(series.length);
  };

  // -- export -------------------------------------------------------------------------------
  const exportRows = () => {
    const chosen = selected.size ? tasks.filter((t) => selected.has(t.id)) : tasks;
    const rows = [];
    for (const t of chosen) {
      for (const r of t.results || []) {
        rows.push({ task_id: t.id, created_at: t.created_at, model: t.model, state: t.state, test: r.test,
          n_prompt: r.n_prompt, n_gen: r.n_gen, n_depth: r.n_depth, avg_ts: r.avg_ts, stddev_ts: r.stddev_ts,
          build: r.build_commit ?? t.binary_version ?? "" });
      }
    }
    return { chosen, rows };
  };
  for (const button of exportButtons) {
    button.addEventListener("click", () => {
      const { chosen, rows } = exportRows();
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      const format = button.dataset.export;
      if (format === "json") download(`benchmarks-${stamp}.json`, `${JSON.stringify(chosen, null, 2)}\n`, "application/json");
      else if (format === "csv") download(`benchmarks-${stamp}.csv`, toCsv(rows), "text/csv");
      else download(`benchmarks-${stamp}.md`, toMarkdown(rows), "text/markdown");
    });
  }

  // -- submit -------------------------------------------------------------------------------
  const clearSubmitErrors = () => {
    configForm?.clearErrors();
    requestForm.clearErrors();
    clear(formErrors);
    modelError.textContent = "";
    modelSelect.removeAttribute("aria-invalid");
  };
  submitForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearSubmitErrors();
    result.className = "notice";
    result.textContent = "";
    let config;
    let extra;
    try {
      config = configForm ? configForm.read() : {};
      extra = requestForm.read();
    } catch (error) {
      if (!(error instanceof FieldProblem)) throw error;
      (configForm.fields.has(error.field) ? configForm : requestForm)
        .showErrors(new Map([[error.field, [error.message]]])).firstInvalid?.focus();
      return;
    }
    try {
      const task = await post("api/v1/benchmark", { model_path: modelSelect.value, config, ...extra });
      result.className = "notice ok";
      result.dataset.task = task.id;
      result.textContent = `Task ${task.id} ${task.state}${task.queue_position ? ` (position ${task.queue_position} in the queue)` : ""}.`;
      // A short task may have ended (and its event come) before this answer did.
      if (ended.get(task.id)) paintResult(task.id, ended.get(task.id));
      track(task);
      loadHistory();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      result.className = "notice error";
      result.textContent = `${error.summary}: ${error.message}`;
      const { fields, general } = errorsByField(error);
      const modelReasons = fields.get("model_path");
      fields.delete("model_path");
      if (modelReasons || error.code === "model_not_found") {
        modelError.textContent = (modelReasons || [error.message]).join("; ");
        modelSelect.setAttribute("aria-invalid", "true");
      }
      const requestFields = new Map([...fields].filter(([k]) => requestForm.fields.has(k)));
      const configFields = new Map([...fields].filter(([k]) => !requestForm.fields.has(k)));
      requestForm.showErrors(requestFields);
      const { unplaced, firstInvalid } = configForm ? configForm.showErrors(configFields) : { unplaced: [...configFields.keys()] };
      for (const name of unplaced) general.push(...configFields.get(name).map((r) => `${r} @ ${name}`));
      for (const text of general) formErrors.append(h("li", { text }));
      firstInvalid?.focus();
    }
  });

  // -- live progress ------------------------------------------------------------------------
  // Tasks seen to end, with their final state (undefined: it left the running list, state
  // unknown). A status fetched while one ran, or the answer to its submission, can come
  // after its end event (a tiny benchmark ends in milliseconds): it must not bring the
  // task back to the list, nor leave the form's notice at "running".
  const ended = new Map();
  const track = (task) => {
    if (!ACTIVE.has(task.state) || ended.has(task.id)) return;
    let entry = active.get(task.id);
    if (!entry) {
      const bar = h("progress", { max: "1", value: "0", "aria-label": `Progress of task ${task.id}` });
      const text = h("span");
      const li = h("li", { dataset: { task: task.id } }, h("strong", { text: `${task.model} ` }),
        h("span", { class: "muted", text: `${task.id} ` }), bar, " ", text);
      entry = { task, li, bar, text };
      active.set(task.id, entry);
      runningList.append(li);
    }
    entry.task = { ...entry.task, ...task };
    paintProgress(entry);
    noneRunning.hidden = active.size > 0;
  };
  const paintProgress = (entry) => {
    const p = entry.task.progress || {};
    const total = p.total || 0;
    entry.bar.max = total || 1;
    entry.bar.value = Math.min(p.done || 0, total || 1);
    entry.text.textContent = `${entry.task.state} · ${p.done ?? 0}/${total || "?"} tests` +
      `${p.current ? ` · ${p.current}` : ""}${p.step ? ` (${p.step})` : ""}`;
  };
  const paintResult = (taskId, state) => {
    if (result.dataset.task !== taskId) return;
    result.textContent = `Task ${taskId} ${state}.`;
    result.className = state === "completed" ? "notice ok" : "notice error";
  };
  const finish = (taskId, state) => {
    if (!ended.get(taskId)) ended.set(taskId, state);
    const entry = active.get(taskId);
    if (entry) {
      entry.li.remove();
      active.delete(taskId);
    }
    noneRunning.hidden = active.size > 0;
  };
  const refreshSoon = debounce(loadHistory, 300);
  offs.push(ctx.feed.on("benchmark.*", (event) => {
    const d = event.data || {};
    if (!d.task_id) return;
    if (event.type === "progress") {
      const entry = active.get(d.task_id);
      if (entry) {
        entry.task.progress = { done: d.done, total: d.total, current: d.current, step: d.step };
        paintProgress(entry);
      } else {
        get("api/v1/benchmark/status", { task_id: d.task_id }).then(track).catch(() => {});
      }
    } else if (event.type === "state") {
      if (ACTIVE.has(d.state)) {
        const entry = active.get(d.task_id);
        if (entry) { entry.task.state = d.state; paintProgress(entry); }
        else get("api/v1/benchmark/status", { task_id: d.task_id }).then(track).catch(() => {});
      } else {
        finish(d.task_id, d.state);
        paintResult(d.task_id, d.state);
      }
      refreshSoon();
    }
  }));
  offs.push(ctx.feed.on("reconnected", () => { loadActive(); loadHistory(); }));

  const loadActive = async () => {
    const [running, queued] = await Promise.all([
      get("api/v1/benchmarks", { state: "running", limit: 50 }),
      get("api/v1/benchmarks", { state: "queued", limit: 50 }),
    ]);
    const ids = new Set([...running, ...queued].map((t) => t.id));
    for (const id of [...active.keys()]) if (!ids.has(id)) finish(id);
    [...running, ...queued].forEach(track);
    noneRunning.hidden = active.size > 0;
  };

  for (const control of [fModel, fState, fSince, fUntil, fLimit]) control.addEventListener("change", loadHistory);
  const onTheme = () => {
    // Chart colours come from the theme: redraw what is shown.
    const shown = [...charts].map((c) => c.canvas.id);
    if (shown.includes("bench-canvas") && lastShown) showTasks(lastShown);
    if (shown.includes("trend-canvas")) showTrend();
  };
  window.addEventListener("llamaswitch:theme", onTheme);

  await Promise.all([loadHistory(), loadActive()]);
  const wanted = ctx.params.get("task");
  if (wanted) await showTasks([wanted]);

  return () => {
    offs.forEach((off) => off());
    refreshSoon.cancel();
    window.removeEventListener("llamaswitch:theme", onTheme);
    destroyCharts();
  };
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function shortTime(value) {
  const date = parseTime(value);
  return date ? date.toISOString().slice(0, 16).replace("T", " ") : "?";
}

/** CSV with a header; fields quoted when they need it (RFC 4180). */
export function toCsv(rows) {
  if (!rows.length) return "";
  const keys = Object.keys(rows[0]);
  const cell = (v) => {
    const text = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return `${[keys.join(","), ...rows.map((r) => keys.map((k) => cell(r[k])).join(","))].join("\n")}\n`;
}

/** A markdown table, pipes escaped. */
export function toMarkdown(rows) {
  if (!rows.length) return "";
  const keys = Object.keys(rows[0]);
  const cell = (v) => (v === null || v === undefined ? "" : String(v)).replace(/\|/g, "\\|").replace(/\n/g, " ");
  const line = (cells) => `| ${cells.join(" | ")} |`;
  return `${[line(keys), line(keys.map(() => "---")), ...rows.map((r) => line(keys.map((k) => cell(r[k]))))].join("\n")}\n`;
}
