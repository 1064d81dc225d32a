// Charts with the vendored Chart.js (loaded on first use, so pages without charts never
// pay for it): bars with error bars from a standard deviation, grouped bars, lines over
// time, and a scatter of trials with their Pareto front. Every chart gets a text
// alternative from its caller (a data table).

const CHART_URL = new URL("../vendor/chart.umd.min.js", import.meta.url);

let loading = null;

/** Chart.js, loaded once. */
export function loadChartJs() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      if (globalThis.Chart) { resolve(globalThis.Chart); return; }
      const script = document.createElement("script");
      script.src = CHART_URL.href;
      script.async = true;
      script.onload = () => {
        globalThis.Chart.register(errorBars);
        resolve(globalThis.Chart);
      };
      script.onerror = () => { loading = null; reject(new Error("Chart.js could not be loaded")); };
      document.head.append(script);
    });
  }
  return loading;
}

/**
 * Draws ±error whiskers on bars (or points) of datasets that carry `errorBars` (vertical)
 * or `xErrorBars` (horizontal, for scatters).
 */
const errorBars = {
  id: "llamaswitchErrorBars",
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    const { x: xScale, y: yScale } = chart.scales;
    if (!yScale) return;
    ctx.save();
    ctx.strokeStyle = themeColour("--text");
    ctx.lineWidth = 1.5;
    const whisker = (from, to, at, half, vertical) => {
      const line = (a, b, c, d) => { ctx.moveTo(a, b); ctx.lineTo(c, d); };
      if (vertical) {
        line(at, from, at, to);
        line(at - half, from, at + half, from);
        line(at - half, to, at + half, to);
      } else {
        line(from, at, to, at);
        line(from, at - half, from, at + half);
        line(to, at - half, to, at + half);
      }
    };
    chart.data.datasets.forEach((dataset, i) => {
      const vertical = Array.isArray(dataset.errorBars);
      const horizontal = Array.isArray(dataset.xErrorBars) && xScale;
      if (!vertical && !horizontal) return;
      const meta = chart.getDatasetMeta(i);
      if (meta.hidden) return;
      meta.data.forEach((element, j) => {
        const half = Math.max(3, Math.min(10, (element.width || 12) * 0.25));
        ctx.beginPath();
        const y = pointValue(dataset.data[j]);
        const yError = vertical ? dataset.errorBars[j] : null;
        if (Number.isFinite(y) && Number.isFinite(yError) && yError > 0) {
          whisker(yScale.getPixelForValue(y + yError), yScale.getPixelForValue(Math.max(yScale.min, y - yError)),
            element.x, half, true);
        }
        const x = dataset.data[j]?.x;
        const xError = horizontal ? dataset.xErrorBars[j] : null;
        if (Number.isFinite(x) && Number.isFinite(xError) && xError > 0) {
          whisker(xScale.getPixelForValue(Math.max(xScale.min, x - xError)), xScale.getPixelForValue(x + xError),
            element.y, half, false);
        }
        ctx.stroke();
      });
    });
    ctx.restore();
  },
};

function pointValue(point) {
  return point !== null && typeof point === "object" ? point.y : point;
}

/** A colour from the current theme's custom properties. */
export function themeColour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

/** Series colours that read on both themes. */
export const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];

function baseOptions(yTitle) {
  const text = themeColour("--text");
  const grid = themeColour("--border");
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    plugins: {
      legend: { labels: { color: text } },
      tooltip: {
        callbacks: {
          afterLabel(item) {
            const error = item.dataset.errorBars?.[item.dataIndex];
            return Number.isFinite(error) ? `± ${error.toFixed(2)} (std dev)` : "";
          },
        },
      },
    },
    scales: {
      x: { ticks: { color: text }, grid: { color: grid } },
      y: { beginAtZero: true, ticks: { color: text }, grid: { color: grid },
        title: { display: Boolean(yTitle), text: yTitle, color: text } },
    },
  };
}

/**
 * Bars: `labels` on x, one dataset per series ({label, values, errors}); several series
 * are grouped side by side.
 */
export async function barChart(canvas, { labels, series, yTitle = "tokens/s" }) {
  const Chart = await loadChartJs();
  const datasets = series.map((s, i) => ({
    label: s.label,
    data: s.values,
    errorBars: s.errors,
    backgroundColor: PALETTE[i % PALETTE.length],
    borderColor: PALETTE[i % PALETTE.length],
  }));
  const options = baseOptions(yTitle);
  options.plugins.legend.display = series.length > 1;
  return new Chart(canvas, { type: "bar", data: { labels, datasets }, options });
}

/** Lines over time: series of {label, points: [{x: epoch ms, y, error}]}. */
export async function timeChart(canvas, { series, yTitle = "tokens/s" }) {
  const Chart = await loadChartJs();
  const datasets = series.map((s, i) => ({
    label: s.label,
    data: s.points.map((p) => ({ x: p.x, y: p.y })),
    errorBars: s.points.map((p) => p.error),
    borderColor: PALETTE[i % PALETTE.length],
    backgroundColor: PALETTE[i % PALETTE.length],
    pointRadius: 3,
    tension: 0,
  }));
  const options = baseOptions(yTitle);
  const format = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  // One moment only (a single task): give the axis an hour each side rather than a
  // range Chart.js would invent.
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const span = Math.max(...xs) - Math.min(...xs);
  const pad = span > 0 ? span * 0.05 : 3_600_000;
  options.scales.x = {
    type: "linear",
    min: Math.min(...xs) - pad,
    max: Math.max(...xs) + pad,
    ticks: { color: themeColour("--text"), maxTicksLimit: 6, callback: (value) => format.format(new Date(value)) },
    grid: { color: themeColour("--border") },
  };
  options.plugins.tooltip.callbacks.title = (items) => (items.length ? format.format(new Date(items[0].parsed.x)) : "");
  return new Chart(canvas, { type: "line", data: { datasets }, options });
}

/**
 * Trials as points, prompt t/s (x) against generation t/s (y), with ±1 standard deviation
 * whiskers both ways; the Pareto front (its points in x order) drawn as a line over them,
 * the best trial as a larger mark. `points`, `front`, `best`: {x, y, xError, yError,
 * title, detail}; the same objects may appear in several (the tooltip reads them).
 */
export async function scatterChart(canvas, spec) {
  const Chart = await loadChartJs();
  const options = baseOptions(spec.yTitle || "generation t/s");
  const text = themeColour("--text");
  const grid = themeColour("--border");
  options.scales = {
    x: { type: "linear", grace: "5%", ticks: { color: text }, grid: { color: grid },
      title: { display: true, text: spec.xTitle || "prompt t/s", color: text } },
    y: { type: "linear", grace: "5%", ticks: { color: text }, grid: { color: grid },
      title: { display: true, text: spec.yTitle || "generation t/s", color: text } },
  };
  options.plugins.tooltip.callbacks = {
    title: (items) => (items.length ? items[0].raw.title : ""),
    label: (item) => item.raw.detail,
    afterLabel: () => "",
  };
  Object.assign(options.scales.x, whiskerRange(spec.points, "x", "xError"));
  Object.assign(options.scales.y, whiskerRange(spec.points, "y", "yError"));
  return new Chart(canvas, { type: "scatter", data: { datasets: scatterDatasets(spec) }, options });
}

/** Show new trials on a chart made by scatterChart (no redraw from scratch). */
export function updateScatter(chart, spec) {
  chart.data.datasets = scatterDatasets(spec);
  Object.assign(chart.options.scales.x, whiskerRange(spec.points, "x", "xError"));
  Object.assign(chart.options.scales.y, whiskerRange(spec.points, "y", "yError"));
  chart.update("none");
}

/** Axis bounds from 0 (speeds) that keep every whisker in view. */
function whiskerRange(points, key, errorKey) {
  const values = points.filter((p) => Number.isFinite(p[key]));
  const spread = (p) => (Number.isFinite(p[errorKey]) ? p[errorKey] : 0);
  return { min: 0, suggestedMax: values.length ? Math.max(...values.map((p) => p[key] + spread(p))) : undefined };
}

function scatterDatasets({ points, front, best }) {
  const frontColour = PALETTE[1];
  const bestColour = PALETTE[7];
  return [
    { label: "Best trial", data: best ? [best] : [], pointStyle: "star", pointRadius: 12, pointHoverRadius: 14,
      borderWidth: 2, borderColor: bestColour, backgroundColor: bestColour, order: 0 },
    { label: "Pareto front", data: front, showLine: true, pointStyle: "rectRot", pointRadius: 6,
      pointHoverRadius: 8, borderWidth: 2, borderColor: frontColour, backgroundColor: frontColour, order: 1 },
    { label: "Completed trials", data: points, errorBars: points.map((p) => p.yError),
      xErrorBars: points.map((p) => p.xError), pointRadius: 4, pointHoverRadius: 6,
      borderColor: PALETTE[0], backgroundColor: PALETTE[0], order: 2 },
  ];
}
