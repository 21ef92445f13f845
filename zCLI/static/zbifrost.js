// zbifrost.js: the browser client of zBifrost. An ES module with no build step.
//
//   import { connect } from "/zbifrost.js";
//   const bridge = await connect("ws://127.0.0.1:56891", { token });
//   const reply = await bridge.dispatch("^Ping");   // {result: {message: "Pong!"}, _requestId: ...}
//   bridge.on("display", (msg) => ...);               // also "server_shutdown", "input_request",
//                                                     // "close", "reconnect", or any plugin event
//
// Replies are matched to requests by _requestId; a request that gets no reply within
// `timeout` ms rejects. After an unexpected close the client reconnects with backoff
// (250 ms doubling to `maxBackoff`) unless the server refused it (close 1008), on the
// first connection or on a reconnect attempt.

export class ZBifrost {
  constructor(url, { token = null, timeout = 10000, reconnect = true, maxBackoff = 8000,
                     onInput = null } = {}) {
    this.url = url;
    this.token = token;
    this.timeout = timeout;
    this.reconnect = reconnect;
    this.maxBackoff = maxBackoff;
    this.onInput = onInput || ((req) => Promise.resolve(window.prompt(req.prompt)));
    this.info = null;
    this.handlers = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.attempts = 0;
    this.closedByUser = false;
    this.ws = null;
  }

  connect() {
    const url = this.token ? `${this.url}?token=${encodeURIComponent(this.token)}` : this.url;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this.ws = ws;
      let opened = false;
      ws.onmessage = (message) => {
        const data = JSON.parse(message.data);
        if (!opened && data.event === "connection_info") {
          opened = true;
          this.attempts = 0;
          this.info = data.data;
          resolve(this);
        }
        this._receive(data);
      };
      ws.onclose = (event) => {
        this._failPending(`connection closed (${event.code} ${event.reason})`);
        this._emit("close", { code: event.code, reason: event.reason });
        if (!opened) {
          const error = new Error(`zBifrost refused the connection: ${event.code} ${event.reason}`);
          error.code = event.code;
          reject(error);
        }
        if (opened && this.reconnect && !this.closedByUser && event.code !== 1008) {
          this._scheduleReconnect();
        }
      };
    });
  }

  _scheduleReconnect() {
    const delay = Math.min(this.maxBackoff, 250 * 2 ** this.attempts);
    this.attempts += 1;
    setTimeout(() => {
      if (this.closedByUser) return;
      this.connect().then(
        () => this._emit("reconnect", this.info),
        (error) => {  // a refusal (1008: a revoked or expired token) ends the retries
          if (!this.closedByUser && error.code !== 1008) this._scheduleReconnect();
        });
    }, delay);
  }

  _receive(data) {
    if ("_requestId" in data && this.pending.has(data._requestId) &&
        ("result" in data || "error" in data || data.event === "pong" ||
         data.event === "connection_info")) {
      const { resolve, timer } = this.pending.get(data._requestId);
      clearTimeout(timer);
      this.pending.delete(data._requestId);
      resolve(data);
      return;
    }
    if (data.event === "input_request") {
      Promise.resolve(this.onInput(data)).then((value) => this.ws.send(JSON.stringify(
        { event: "input_response", requestId: data.requestId, value: value ?? null })));
    }
    if (data.event) {
      this._emit(data.event, data);
    }
  }

  _failPending(reason) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new Error(reason));
    }
    this.pending.clear();
  }

  _emit(event, data) {
    for (const fn of this.handlers.get(event) || []) fn(data);
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(fn);
    return () => this.handlers.set(event, this.handlers.get(event).filter((f) => f !== fn));
  }

  send(payload) {
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${payload.event} within ${this.timeout} ms`));
      }, this.timeout);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...payload, _requestId: id }));
    });
  }

  dispatch(zKey) {
    return this.send({ event: "dispatch", zKey });
  }

  menu() {
    return this.send({ event: "menu" });
  }

  close() {
    this.closedByUser = true;
    this.ws.close(1000);
  }
}

export function connect(url, options = {}) {
  return new ZBifrost(url, options).connect();
}

// The WebSocket URL of the zBifrost that runs beside the zServer serving this page.
export async function bridgeUrl() {
  const response = await fetch("/api/config");
  return (await response.json()).websocket;
}
