// Small DOM and formatting helpers. Text always goes in through textContent, never
// innerHTML: model names, log lines and error messages come from outside.

/**
 * Make an element. `props`: `class`, `text`, `on` ({event: fn}), `dataset`, `style`
 * is refused (the CSP forbids inline styles set as attributes; use `css` for CSSOM
 * properties), anything else becomes an attribute (false/null/undefined: left out).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "css") for (const [p, v] of Object.entries(value)) el.style.setProperty(p, v);
    else if (key === "value") el.value = value;
    else if (key === "checked" || key === "selected" || key === "disabled" || key === "hidden") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append nodes, strings, arrays of them; null and false are skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Remove every child. */
export function clear(el) {
  el.replaceChildren();
  return el;
}

let counter = 0;
/** A document-unique id with a readable prefix. */
export function uid(prefix = "id") {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A section with a heading; returns [section, body]. */
export function card(title, { id, level = 2 } = {}) {
  const headingId = uid("h");
  const section = h("section", { class: "card", "aria-labelledby": headingId, id });
  section.append(h(`h${level}`, { id: headingId, text: title }));
  return section;
}

/** The "this service does not offer it (yet)" state of a section. */
export function unavailable(what, paths) {
  return h("p", { class: "unavailable", dataset: { unavailable: "true" } },
    `${what}: not available from this service. It needs `,
    paths.flatMap((p, i) => [i ? ", " : "", h("code", { text: p })]),
    ", which this service's API document does not list.");
}

/** A state label coloured by its value. */
export function stateBadge(state) {
  const value = state || "none";
  return h("span", { class: "state", dataset: { state: value }, text: state || "—" });
}

/** " 45 %" beside a loading model's state (`load_progress`, 0-1), or null without one. */
export function progressText(progress) {
  if (typeof progress !== "number" || !Number.isFinite(progress)) return null;
  const percent = Math.round(Math.min(Math.max(progress, 0), 1) * 100);
  return h("span", { class: "load-progress muted", title: "share of the load done", text: ` ${percent} %` });
}

// -- time: every time field is an ISO 8601 text (older answers: epoch seconds) -------------

/** A Date from an ISO 8601 text or epoch seconds; null when absent or unreadable. */
export function parseTime(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** `<time>` showing a moment in local time, its ISO text in `datetime`. */
export function timeEl(value, { short = false } = {}) {
  const date = parseTime(value);
  if (!date) return h("span", { class: "muted", text: "—" });
  return h("time", { datetime: date.toISOString(), title: date.toISOString(),
    text: (short ? clock : dateTime).format(date) });
}

/** "3 h 02 min", "41 s": a duration in seconds, compact. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

// -- numbers -------------------------------------------------------------------------------

/** "12.3 MiB" from MiB. */
export function mib(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (value >= 1024) return `${(value / 1024).toFixed(2)} GiB`;
  return `${value.toFixed(value < 10 ? 1 : 0)} MiB`;
}

/** "469 KiB" from bytes. */
export function bytes(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = value;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** "118 K", "7.2 B": a parameter count. */
export function count(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  const steps = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (const [size, unit] of steps) {
    if (value >= size) return `${(value / size).toFixed(value / size >= 100 ? 0 : 1)} ${unit}`;
  }
  return String(value);
}

/** A number with at most `digits` decimals, or "—". */
export function num(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** Call `fn` at most once per `ms`, trailing. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** Offer `text` as a file download named `name`. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A definition list of an object's scalar fields (objects shown as JSON). */
export function keyValues(object) {
  const dl = h("dl", { class: "kv" });
  for (const [key, value] of Object.entries(object || {})) {
    const shown = value !== null && typeof value === "object" ? JSON.stringify(value) : String(value ?? "—");
    dl.append(h("dt", { text: key }), h("dd", { text: shown }));
  }
  return dl;
}
