// The service's event stream (GET /api/v1/events), read with fetch() and a stream
// parser rather than EventSource: EventSource cannot send an Authorization header, and
// the stream needs the key when the service has one.
//
// Listeners subscribe by event name ("server.state"), by topic ("server.*") or to all
// ("*"). The stream keeps no history, so after every (re)connection listeners of
// "reconnected" are told to re-read the state they show.

import { fetchRaw, onUnauthorized } from "./api.js";

/** Parse SSE text into messages; keeps the unfinished tail between chunks. */
export class SseParser {
  constructor() {
    this.buffer = "";
  }

  /** Feed a chunk; returns the complete messages: {event, data, id, retry}. */
  push(chunk) {
    this.buffer += chunk;
    const messages = [];
    // Messages end with a blank line; lines end with \n, \r\n or \r.
    const normalised = this.buffer.replace(/\r\n?/g, "\n");
    const blocks = normalised.split("\n\n");
    this.buffer = blocks.pop();
    for (const block of blocks) {
      const message = { event: "message", data: [], id: null, retry: null };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") message.event = value;
        else if (field === "data") message.data.push(value);
        else if (field === "id") message.id = value;
        else if (field === "retry" && /^\d+$/.test(value)) message.retry = Number(value);
      }
      if (message.data.length || message.retry !== null) {
        message.data = message.data.join("\n");
        messages.push(message);
      }
    }
    return messages;
  }
}

/** One connection to the event stream shared by every page. */
export class EventFeed {
  constructor(path = "api/v1/events") {
    this.path = path;
    this.listeners = new Map();
    this.statusListeners = new Set();
    this.retryMs = 3000;
    this.controller = null;
    this.running = false;
    this.connected = false;
    this.blocked = false;
    onUnauthorized(() => { this.blocked = true; });
  }

  /** Listen to `name` ("server.state", "server.*", "*", "reconnected"); returns an unsubscribe. */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name)?.delete(fn);
  }

  /** `fn(state)` on "connecting", "live", "down", "stopped". */
  onStatus(fn) {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  emit(name, payload) {
    for (const key of [name, `${name.split(".")[0]}.*`, "*"]) {
      for (const fn of this.listeners.get(key) || []) {
        try { fn(payload); } catch (error) { reportListenerError(error); }
      }
      if (name === "reconnected") break;
    }
  }

  setStatus(state) {
    this.connected = state === "live";
    for (const fn of this.statusListeners) fn(state);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.blocked = false;
    this.loop();
  }

  stop() {
    this.running = false;
    this.controller?.abort();
    this.setStatus("stopped");
  }

  async loop() {
    let first = true;
    while (this.running) {
      this.setStatus("connecting");
      this.controller = new AbortController();
      try {
        const response = await fetchRaw(this.path, {
          headers: { Accept: "text/event-stream" }, signal: this.controller.signal, cache: "no-store",
        });
        if (response.status === 401) {
          this.blocked = true;
          this.running = false;
          this.setStatus("down");
          return;
        }
        if (!response.ok || !response.body) throw new Error(`event stream: HTTP ${response.status}`);
        this.setStatus("live");
        if (!first) this.emit("reconnected", {});
        first = false;
        await this.read(response.body);
      } catch (error) {
        if (!this.running) return;
      }
      if (!this.running) return;
      this.setStatus("down");
      await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const message of parser.push(value)) {
        if (message.retry !== null) this.retryMs = message.retry;
        if (!message.data) continue;
        if (message.event === "shutdown") {
          this.emit("shutdown", {});
          return;
        }
        let event;
        try { event = JSON.parse(message.data); } catch { continue; }
        this.emit(message.event, event);
      }
    }
  }
}

function reportListenerError(error) {
  // A broken listener must not stop the stream; say so where a developer looks.
  setTimeout(() => { throw error; });
}

/** The page's one feed. */
export const feed = new EventFeed();
