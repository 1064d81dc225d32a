// The dashboard's shell: theme, API key, the live-status badge and a hash router that
// loads one module per page (js/pages/NAME.js, each exporting `mount(main, ctx)`).
//
// When a page has rendered its first data, <main> gets data-ready="NAME" and the
// performance mark "llamaswitch:interactive:NAME" is set: the browser tests wait for the
// former, bench/bench_ui.py reads the latter.

import * as apiModule from "./api.js";
import { feed } from "./events.js";
import { clear, h } from "./dom.js";

const PAGES = {
  overview: { title: "Overview", load: () => import("./pages/overview.js") },
  models: { title: "Models", load: () => import("./pages/models.js") },
  logs: { title: "Logs", load: () => import("./pages/logs.js") },
  benchmarks: { title: "Benchmarks", load: () => import("./pages/benchmarks.js") },
  tune: { title: "Tune", load: () => import("./pages/tune.js") },
  activity: { title: "Activity", load: () => import("./pages/activity.js") },
};
const DEFAULT_PAGE = "overview";
const THEME_STORAGE = "llamaswitch.theme";

const main = document.getElementById("main");
let current = null; // {name, unmount}
let generation = 0;
let navigated = false;

// -- theme --------------------------------------------------------------------------------

function effectiveTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen) return chosen;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function showThemeButton() {
  const button = document.getElementById("theme-toggle");
  const dark = effectiveTheme() === "dark";
  button.textContent = dark ? "Light theme" : "Dark theme";
  button.setAttribute("aria-pressed", String(dark));
  button.setAttribute("aria-label", dark ? "Switch to the light theme" : "Switch to the dark theme");
}

function setupTheme() {
  let stored = null;
  try { stored = localStorage.getItem(THEME_STORAGE); } catch { stored = null; }
  if (stored === "dark" || stored === "light") document.documentElement.dataset.theme = stored;
  showThemeButton();
  document.getElementById("theme-toggle").addEventListener("click", () => {
    const next = effectiveTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem(THEME_STORAGE, next); } catch { /* private mode: this page only */ }
    showThemeButton();
    window.dispatchEvent(new CustomEvent("llamaswitch:theme", { detail: next }));
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", showThemeButton);
}

// -- API key ------------------------------------------------------------------------------

let keyWaiters = [];

/** Resolves once a key is known (asks for it when the service needs one). */
function ensureKey() {
  if (!apiModule.keyRequired() || apiModule.getKey()) return Promise.resolve();
  return new Promise((resolve) => {
    keyWaiters.push(resolve);
    askForKey("");
  });
}

function askForKey(problem) {
  const dialog = document.getElementById("key-dialog");
  document.getElementById("key-error").textContent = problem;
  if (!dialog.open) dialog.showModal();
  document.getElementById("key-input").focus();
}

function setupKey() {
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const forget = document.getElementById("forget-key");
  forget.hidden = !apiModule.keyRequired();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      document.getElementById("key-error").textContent = "Enter the key.";
      return;
    }
    apiModule.setKey(key);
    input.value = "";
    dialog.close();
    apiModule.resetCapabilities();
    const waiters = keyWaiters;
    keyWaiters = [];
    waiters.forEach((resolve) => resolve());
    if (!waiters.length) {
      feed.start();
      route();
    }
  });
  dialog.addEventListener("cancel", (event) => {
    // Without a key nothing works; keep asking rather than show a broken page.
    if (!apiModule.getKey()) event.preventDefault();
  });
  forget.addEventListener("click", () => {
    apiModule.forgetKey();
    feed.stop();
    askForKey("");
  });
  apiModule.onUnauthorized(() => {
    apiModule.forgetKey();
    feed.stop();
    askForKey("The service refused the key. Enter it again.");
  });
}

// -- live status --------------------------------------------------------------------------

function setupLiveStatus() {
  const badge = document.getElementById("live-status");
  const texts = { connecting: "Connecting…", live: "Live", down: "Reconnecting…", stopped: "Not connected" };
  feed.onStatus((state) => {
    badge.textContent = texts[state] || state;
    badge.dataset.state = state;
  });
  feed.on("shutdown", () => {
    badge.textContent = "Service stopped";
    badge.dataset.state = "down";
  });
}

// -- router -------------------------------------------------------------------------------

/** #/models?model=x -> {name: "models", params: URLSearchParams}; null for other hashes. */
export function parseHash(hash) {
  if (!hash || hash === "#" || hash === "#/") return { name: DEFAULT_PAGE, params: new URLSearchParams() };
  if (!hash.startsWith("#/")) return null; // an in-page anchor (the skip link)
  const [path, query = ""] = hash.slice(2).split("?");
  return { name: path in PAGES ? path : DEFAULT_PAGE, params: new URLSearchParams(query) };
}

/** Go to a page (pushes history). */
export function navigate(name, params = {}) {
  const query = new URLSearchParams(params).toString();
  const hash = `#/${name}${query ? `?${query}` : ""}`;
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  const target = parseHash(location.hash);
  if (!target) return;
  navigated = navigated || current !== null;
  const mine = ++generation;
  if (current) {
    try { current.unmount?.(); } catch (error) { setTimeout(() => { throw error; }); }
    current = null;
  }
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === target.name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const page = PAGES[target.name];
  document.title = `${page.title} · llamaswitch`;
  delete main.dataset.ready;
  clear(main).append(h("p", { class: "loading", text: `Loading ${page.title}…` }));
  await ensureKey();
  if (mine !== generation) return;
  const module = await page.load();
  if (mine !== generation) return;
  clear(main);
  const ctx = { api: apiModule, feed, params: target.params, navigate, stale: () => mine !== generation };
  let unmount = null;
  try {
    unmount = await module.mount(main, ctx);
  } catch (error) {
    if (mine !== generation) return;
    if (error instanceof apiModule.ApiError && error.status === 401) return; // the key dialog is up
    main.append(h("p", { class: "notice error", role: "alert",
      text: `This page could not load: ${error.message}` }));
  }
  if (mine !== generation) {
    unmount?.();
    return;
  }
  current = { name: target.name, unmount };
  main.dataset.ready = target.name;
  performance.mark(`llamaswitch:interactive:${target.name}`);
  if (navigated) main.querySelector("h1")?.focus();
}

function start() {
  setupTheme();
  setupKey();
  setupLiveStatus();
  window.addEventListener("hashchange", route);
  ensureKey().then(() => feed.start());
  route();
}

start();
