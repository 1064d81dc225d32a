// Charts with the vendored Chart.js (loaded on first use, so pages without charts never
// pay for it): bars with error bars from a standard deviation, grouped bars, and lines
// over time. Every chart gets a text alternative from its caller (a data table).

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

/** Draws ±error whiskers on bars (or points) of datasets that carry `errorBars`. */
const errorBars = {
  id: "llamaswitchErrorBars",
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    const scale = chart.scales.y;
    if (!scale) return;
    ctx.save();
    ctx.strokeStyle = themeColour("--text");
    ctx.lineWidth = 1.5;
    chart.data.datasets.forEach((dataset, i) => {
      if (!Array.isArray(dataset.errorBars)) return;
      const meta = chart.getDatasetMeta(i);
      if (meta.hidden) return;
      meta.data.forEach((element, j) => {
        const value = pointValue(dataset.data[j]);
        const error = dataset.errorBars[j];
        if (!Number.isFinite(value) || !Number.isFinite(error) || error <= 0) return;
        const top = scale.getPixelForValue(value + error);
        const bottom = scale.getPixelForValue(Math.max(scale.min, value - error));
        const half = Math.max(3, Math.min(10, (element.width || 12) * 0.25));
        ctx.beginPath();
        ctx.moveTo(element.x, top);
        ctx.lineTo(element.x, bottom);
        ctx.moveTo(element.x - half, top);
        ctx.lineTo(element.x + half, top);
        ctx.moveTo(element.x - half, bottom);
        ctx.lineTo(element.x + half, bottom);
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
