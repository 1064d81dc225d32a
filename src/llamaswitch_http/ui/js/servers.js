// The model servers' statuses (GET /api/v1/model/status), shared by the pages that show
// them. A server event refreshes them at once (the event itself is applied first, so the
// state shows without waiting for the round trip); a slow poll keeps RSS, VRAM and CPU
// figures current, which no event carries, and a faster one a starting server's
// load_progress.

import { get } from "./api.js";
import { feed } from "./events.js";

const POLL_MS = 2000;
const STARTING_POLL_MS = 500;

class ServerStore {
  constructor() {
    this.list = [];
    this.loaded = false;
    this.listeners = new Set();
    this.timer = null;
    this.pending = null;
    this.again = false;
    this.unsubscribe = [];
  }

  /** `fn(list)` on every change; starts the polling while anyone listens. */
  subscribe(fn) {
    this.listeners.add(fn);
    if (this.listeners.size === 1) this.startFollowing();
    if (this.loaded) fn(this.list);
    return () => {
      this.listeners.delete(fn);
      if (!this.listeners.size) this.stopFollowing();
    };
  }

  startFollowing() {
    this.unsubscribe = [
      feed.on("server.state", (event) => this.apply(event)),
      // The gateway's load/evict events change servers too (they come with the gateway).
      feed.on("gateway.*", () => this.refresh().catch(() => {})),
      feed.on("reconnected", () => this.refresh().catch(() => {})),
    ];
    // Faster while a server starts: its load_progress moves (every 200 ms of a long load).
    let ticks = 0;
    this.timer = setInterval(() => {
      ticks += 1;
      const starting = this.list.some((s) => s.state === "starting");
      if (!starting && ticks % (POLL_MS / STARTING_POLL_MS) !== 0) return;
      if (document.visibilityState === "visible") this.refresh().catch(() => {});
    }, STARTING_POLL_MS);
  }

  stopFollowing() {
    this.unsubscribe.forEach((off) => off());
    this.unsubscribe = [];
    clearInterval(this.timer);
  }

  /** Apply a server.state event now, then re-read the statuses. */
  apply(event) {
    const data = event && event.data ? event.data : {};
    // A cluster head's servers are told apart by host too (ports repeat across hosts).
    const entry = this.list.find((s) => s.port === data.port && (s.host_name ?? null) === (data.host_name ?? null));
    if (entry && data.state) {
      entry.state = data.state;
      if ("pid" in data) entry.process_id = data.pid;
      if (typeof data.restarts === "number") entry.restarts = data.restarts;
      this.notify();
    }
    this.refresh().catch(() => {});
  }

  /** Re-read every status (coalesced: at most one request in flight, one queued). */
  refresh() {
    if (this.pending) {
      this.again = true;
      return this.pending;
    }
    this.pending = get("api/v1/model/status").then((list) => {
      this.list = Array.isArray(list) ? list : [];
      this.loaded = true;
      this.notify();
      return this.list;
    }).finally(() => {
      this.pending = null;
      if (this.again) {
        this.again = false;
        this.refresh().catch(() => {});
      }
    });
    return this.pending;
  }

  notify() {
    for (const fn of this.listeners) fn(this.list);
  }
}

/** A server's key on the pages: its port, and its cluster host if it has one. */
export function serverKey(s) {
  return s.host_name ? `${s.host_name}:${s.port}` : String(s.port);
}

/** The query that names a server to the API: its port, and its cluster host if any. */
export function serverQuery(s) {
  return s.host_name ? { port: s.port, host: s.host_name } : { port: s.port };
}

/** The page's one store. */
export const servers = new ServerStore();
