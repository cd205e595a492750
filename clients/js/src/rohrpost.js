// The rohrpost client for browsers and Node 20+: one plain ES module, no build step,
// no imports. Wire format: docs/protocol.md; guide and API: docs/js-client.md.
//
// Its API is a superset of rohrpost.js 0.6:
//
//   const client = new RohrpostClient("wss://example.com/ws/rohrpost/", {token});
//   client.on("board-1", (err, update) => render(update.object));
//   await client.subscribe({type: "board", id: 1});      // -> {group: "board-1"}
//   const sum = await client.call("add", [1, 2, 3]);     // -> 6
//
// What it adds: keepalive pings that replace a silent connection, reconnects with
// exponential backoff and jitter, resubscription after a reconnect, calls queued while
// connecting, and a stop on the close codes that mean "log in again" (4001, 4003).
// For groups with history it keeps the last position applied, resubscribes `since` it
// (the server replays what was missed), drops duplicates, asks the same way for a push
// lost on a live connection (a gap in the offsets that stays open), and emits "reset"
// when the missed pushes are gone.

/** Lifecycle events; any other name given to `on()` is a group name. */
export const EVENTS = Object.freeze(["open", "closed", "reconnecting", "error", "message", "unsubscribed", "reset"]);

/** Close codes after which the client stops instead of reconnecting (docs/protocol.md). */
export const STOP_CODES = Object.freeze([4001, 4003]);

/** The server's close code for a client that kept flooding: reconnect, but only after the longest delay. */
export const CLOSE_FLOODING = 4029;

/**
 * Most pushes applied beyond a gap in a group's offsets before the client asks the server
 * for what is missing at once, without waiting for the `gapFillDelay` option (a busy group).
 */
export const MAX_AHEAD = 100;

/** Codes of the errors the client makes itself; none of the server's codes is among them. */
export const CLIENT_ERROR_CODES = Object.freeze({
  TIMEOUT: "timeout",
  CONNECTION_LOST: "connection_lost",
  CLOSED: "closed",
  QUEUE_FULL: "queue_full",
  SOCKET_ERROR: "socket_error",
  INVALID_FRAME: "invalid_frame",
  UNSUBSCRIBED: "unsubscribed",
});

const { TIMEOUT, CONNECTION_LOST: LOST, CLOSED, QUEUE_FULL } = CLIENT_ERROR_CODES;
// Failures of the client or the connection, as opposed to the server's answer.
const LOCAL_FAILURES = new Set([TIMEOUT, LOST, CLOSED, QUEUE_FULL]);

export const DEFAULTS = Object.freeze({
  token: null,
  pingInterval: 30000,
  pingTimeout: null, // null: the smaller of pingInterval and 10 s
  callTimeout: 10000,
  connectTimeout: 10000,
  reconnect: true,
  reconnectDelay: 500,
  maxReconnectDelay: 30000,
  stopCodes: STOP_CODES,
  maxQueue: 100,
  // Pushes from several publishers may cross and close a gap in the offsets by themselves
  // within milliseconds; a gap still open after this long is a push lost on its way.
  gapFillDelay: 1000,
  protocols: undefined,
  socketOptions: undefined,
  WebSocket: undefined, // undefined: globalThis.WebSocket
});

// A connection that stayed open this long counts as a success: the backoff starts over.
const STABLE_CONNECTION_MS = 5000;
// Close code for a socket the client gave up on itself (no pong, no handshake): RFC 6455's
// "closed abnormally", which no peer ever sends.
const CLOSE_ABNORMAL = 1006;
const CLOSE_NORMAL = 1000;

const EVENT_NAMES = new Set(EVENTS);
const UPDATE_TYPE = "subscription-update";
const UNSUBSCRIBED_TYPE = "unsubscribed";
const noop = () => {};

/**
 * An error answer from the server, or a failure of the client itself.
 *
 * `code` is the server's machine code (`forbidden`, `invalid`, ...) or one of
 * CLIENT_ERROR_CODES; `type` and `id` are those of the request it answers.
 */
export class RohrpostError extends Error {
  constructor(message, { code, data, type, id, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RohrpostError";
    this.code = code;
    this.data = data;
    this.type = type;
    this.id = id;
  }
}

/** JSON with sorted object keys: equal group objects get equal keys whatever their key order. */
function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const fields = Object.keys(value)
      .sort()
      .filter((key) => value[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`);
    return `{${fields.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function isTimeout(ms) {
  return typeof ms === "number" && ms > 0 && Number.isFinite(ms);
}

function reportListenerError(error) {
  // A listener's bug must not break the client's bookkeeping, nor vanish: rethrow it
  // outside, where the browser's console or Node's uncaught-exception handling sees it.
  queueMicrotask(() => {
    throw error;
  });
}

/**
 * The text of a socket error event. `ws` (Node) says why a handshake failed; a 403 is
 * nearly always the server's Origin check, which browsers pass by themselves.
 */
function socketErrorMessage(cause) {
  const detail = typeof cause?.message === "string" && cause.message ? ` ${cause.message}` : "";
  const hint = /\b403\b/.test(detail)
    ? " (is the Origin allowed? Outside a browser, pass socketOptions: { origin })"
    : "";
  return `WebSocket error.${detail}${hint}`;
}

export class RohrpostClient {
  /**
   * Connects at once; see DEFAULTS and docs/js-client.md for the options.
   *
   * @param {string} url  e.g. "wss://example.com/ws/rohrpost/"
   * @param {object} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this._WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError(
        "No WebSocket class: pass one as the `WebSocket` option (e.g. the `ws` package on Node).",
      );
    }
    this._token = this.options.token ?? null;
    this._nextId = 1;
    this._pending = new Map(); // id -> request entry, sent or queued
    this._queue = []; // entries waiting for an open connection, in call order
    this._subscriptions = new Map(); // canonicalJson(group object) -> {object, group}
    this._positions = new Map(); // group name -> {epoch, offset}: every push up to it applied
    this._ahead = new Map(); // group name -> offsets applied beyond a gap (pushes that crossed)
    this._gaps = new Map(); // group name -> {timer, inFlight}: asking for a gap's missing pushes
    this._events = new Map(); // event name -> [listener]
    this._groups = new Map(); // group name -> [listener]
    this._socket = null;
    this._state = "connecting";
    this._attempt = 0; // failed attempts since the last stable connection
    this._openedAt = 0;
    this._opens = 0;
    this._timers = { connect: null, reconnect: null, ping: null };
    this._pingInFlight = false;
    this._openSocket();
  }

  /** "connecting", "open", "reconnecting" (waiting to retry), "stopped" (see reconnect()) or "closed". */
  get state() {
    return this._state;
  }

  /** The token sent as `auth_jwt` with every call, subscribe and unsubscribe; null for none. */
  get token() {
    return this._token;
  }

  set token(token) {
    this._token = token ?? null;
  }

  setToken(token) {
    this.token = token;
    return this;
  }

  /** Names of the groups the client holds a confirmed subscription to (resubscribed after reconnects). */
  get groups() {
    return [...this._subscriptions.values()].map((subscription) => subscription.group);
  }

  /** The last position applied in a group with history, `{epoch, offset}`; null for none. */
  positionOf(group) {
    const position = this._positions.get(group);
    return position ? { ...position } : null;
  }

  // --- requests -------------------------------------------------------------------------

  /**
   * Send a request and resolve with its reply's `data`.
   *
   * Rejects with a RohrpostError: the server's error (its `code`, `error` as `message`,
   * `data`), or `timeout`, `connection_lost` (the socket went after sending), `closed`
   * or `queue_full`. Made while not connected, the call waits in a bounded queue.
   */
  call(type, data, { timeout = this.options.callTimeout } = {}) {
    return this._request(type, data, { timeout, withToken: true });
  }

  /**
   * Join the group a group object names; resolves with the reply's data: `{group}`, and
   * for a kind with history its `position` (and `snapshot`, for a kind that has one).
   */
  async subscribe(group, { timeout = this.options.callTimeout } = {}) {
    const key = canonicalJson(group);
    const reply = await this._request("subscribe", group, { timeout, withToken: true });
    // resetting: a subscribe for a fresh snapshot is on its way; pendingReset: the next
    // resubscribe answers a reset that the connection's loss interrupted.
    const subscription = { object: group, group: reply?.group, resetting: false, pendingReset: false };
    this._subscriptions.set(key, subscription);
    this._takePosition(subscription, reply);
    return reply;
  }

  /** Leave a group; it is no longer resubscribed from now on, whatever the answer. */
  unsubscribe(group, { timeout = this.options.callTimeout } = {}) {
    const key = canonicalJson(group);
    const name = this._subscriptions.get(key)?.group;
    this._subscriptions.delete(key);
    if (name !== undefined) {
      this._positions.delete(name);
      this._ahead.delete(name);
      this._dropGap(name);
    }
    return this._request("unsubscribe", group, { timeout, withToken: true });
  }

  _request(type, data, { timeout, withToken, extraText = "" }) {
    if (this._state === "closed" || this._state === "stopped") {
      return Promise.reject(
        new RohrpostError(`The client is ${this._state}; ${type} was not sent.`, {
          code: CLOSED,
          type,
        }),
      );
    }
    let dataText;
    try {
      dataText = data === undefined ? undefined : JSON.stringify(data);
    } catch (error) {
      return Promise.reject(error); // a cycle or a BigInt: the caller's bug, say so now
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const entry = { id, type, dataText, extraText, withToken, resolve, reject, timer: null, sent: false };
      if (isTimeout(timeout)) {
        entry.timer = setTimeout(() => {
          this._fail(entry, `No answer to ${type} within ${timeout} ms.`, TIMEOUT);
        }, timeout);
      }
      this._pending.set(id, entry);
      if (this._state === "open") {
        this._transmit(entry);
      } else if (this._queue.length >= this.options.maxQueue) {
        this._fail(entry, `More than ${this.options.maxQueue} calls wait for a connection.`, QUEUE_FULL);
      } else {
        this._queue.push(entry);
      }
    });
  }

  _transmit(entry) {
    let text = `{"id":${entry.id},"type":${JSON.stringify(entry.type)}`;
    if (entry.dataText !== undefined) text += `,"data":${entry.dataText}`;
    text += entry.extraText;
    if (entry.withToken && this._token !== null) text += `,"auth_jwt":${JSON.stringify(this._token)}`;
    entry.sent = true;
    this._socket.send(`${text}}`);
  }

  _settle(entry) {
    clearTimeout(entry.timer);
    this._pending.delete(entry.id);
    if (!entry.sent) {
      const index = this._queue.indexOf(entry);
      if (index !== -1) this._queue.splice(index, 1);
    }
  }

  _fail(entry, message, code, data) {
    if (this._pending.get(entry.id) !== entry) return;
    this._settle(entry);
    entry.reject(new RohrpostError(message, { code, data, type: entry.type, id: entry.id }));
  }

  _failAll(entries, message, code, data) {
    for (const entry of entries) this._fail(entry, message, code, data);
  }

  // --- listeners ------------------------------------------------------------------------

  /**
   * Listen to a lifecycle event (EVENTS) or to a group's pushes.
   *
   * Event listeners get one argument (see docs/js-client.md); group listeners get
   * `(error, update)`: `update` is a push's data `{type, group, object}`; `error` is set,
   * once, when the subscription ends without unsubscribe(): the server took the connection
   * out of the group (code `unsubscribed`) or refused a resubscribe after a reconnect.
   */
  on(name, listener) {
    return this._listen(EVENT_NAMES.has(name) ? this._events : this._groups, name, listener);
  }

  off(name, listener) {
    return this._unlisten(EVENT_NAMES.has(name) ? this._events : this._groups, name, listener);
  }

  once(name, listener) {
    const wrapper = (...args) => {
      this.off(name, wrapper);
      listener.apply(this, args);
    };
    wrapper.listener = listener;
    return this.on(name, wrapper);
  }

  /** Listen to a group's pushes, even when its name is also an event name. */
  onGroup(group, listener) {
    return this._listen(this._groups, group, listener);
  }

  offGroup(group, listener) {
    return this._unlisten(this._groups, group, listener);
  }

  _listen(registry, name, listener) {
    if (typeof listener !== "function") throw new TypeError("A listener must be a function.");
    const listeners = registry.get(name);
    if (listeners) listeners.push(listener);
    else registry.set(name, [listener]);
    return this;
  }

  _unlisten(registry, name, listener) {
    const listeners = registry.get(name);
    if (!listeners) return this;
    if (listener === undefined) {
      registry.delete(name);
      return this;
    }
    const index = listeners.findLastIndex((each) => each === listener || each.listener === listener);
    if (index !== -1) listeners.splice(index, 1);
    if (listeners.length === 0) registry.delete(name);
    return this;
  }

  _call(registry, name, args) {
    const listeners = registry.get(name);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener.apply(this, args);
      } catch (error) {
        reportListenerError(error);
      }
    }
  }

  _emit(event, payload) {
    this._call(this._events, event, [payload]);
  }

  // --- the connection -------------------------------------------------------------------

  _openSocket() {
    this._state = "connecting";
    const { protocols, socketOptions, connectTimeout } = this.options;
    const socket = new this._WebSocket(this.url, protocols, socketOptions);
    this._socket = socket;
    socket.onopen = () => this._onOpen(socket);
    socket.onmessage = (event) => this._onMessage(socket, event.data);
    socket.onclose = (event) => {
      if (socket === this._socket) this._onLost(event.code, event.reason, event.wasClean);
    };
    socket.onerror = (event) => {
      if (socket !== this._socket) return;
      const cause = event?.error ?? event;
      this._emit(
        "error",
        new RohrpostError(socketErrorMessage(cause), { code: CLIENT_ERROR_CODES.SOCKET_ERROR, cause }),
      );
    };
    if (isTimeout(connectTimeout)) {
      this._timers.connect = setTimeout(() => {
        this._abandon(`The WebSocket did not open within ${connectTimeout} ms.`);
      }, connectTimeout);
    }
  }

  _onOpen(socket) {
    if (socket !== this._socket) return;
    clearTimeout(this._timers.connect);
    this._state = "open";
    this._openedAt = Date.now();
    const reconnected = this._opens > 0;
    this._opens += 1;
    this._startKeepalive();
    this._resubscribe();
    const queued = this._queue;
    this._queue = [];
    for (const entry of queued) this._transmit(entry);
    this._emit("open", { reconnected });
  }

  _onMessage(socket, text) {
    if (socket !== this._socket) return;
    let frame;
    try {
      if (typeof text !== "string") throw new TypeError("a binary frame");
      frame = JSON.parse(text);
      if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
        throw new TypeError("not an object");
      }
    } catch (cause) {
      this._emit(
        "error",
        new RohrpostError("The server sent a frame that is not a JSON object.", {
          code: CLIENT_ERROR_CODES.INVALID_FRAME,
          data: text,
          cause,
        }),
      );
      return;
    }
    this._emit("message", frame);
    if (frame.type === UPDATE_TYPE) {
      const group = frame.data?.group;
      if (typeof group !== "string") return;
      if (frame.position !== undefined) {
        if (!this._advance(group, frame.position)) return;
      } else if (this._positions.has(group)) {
        // The server did not record this push in the group's history (Redis restarted
        // empty, or the history expired): a resume could not replay what is missing.
        this._resetLive(group);
      }
      this._call(this._groups, group, [null, frame.data]);
      return;
    }
    if (frame.type === UNSUBSCRIBED_TYPE && frame.data?.group !== undefined) {
      this._onExpelled(frame.data.group, frame.data.reason ?? null);
      return;
    }
    const entry = this._pending.get(frame.id);
    if (entry?.sent) {
      this._settle(entry);
      if ("error" in frame) {
        entry.reject(
          new RohrpostError(String(frame.error), {
            code: frame.code,
            data: frame.data,
            type: entry.type,
            id: entry.id,
          }),
        );
      } else {
        entry.resolve(frame.data);
      }
    } else if ("error" in frame && !(typeof frame.id === "number" && frame.id < this._nextId)) {
      // An error that answers none of our requests (e.g. `rate_limited`, sent without an
      // id); a late answer to one of ours that timed out is dropped instead.
      this._emit(
        "error",
        new RohrpostError(String(frame.error), {
          code: frame.code,
          data: frame.data,
          type: frame.type,
          id: frame.id,
        }),
      );
    }
  }

  _onExpelled(group, reason, error) {
    for (const [key, subscription] of this._subscriptions) {
      if (subscription.group === group) this._subscriptions.delete(key);
    }
    this._positions.delete(group);
    this._ahead.delete(group);
    this._dropGap(group);
    const cause =
      error ??
      new RohrpostError(reason ?? `The server took this connection out of ${group}.`, {
        code: CLIENT_ERROR_CODES.UNSUBSCRIBED,
        data: { group, reason },
      });
    this._emit("unsubscribed", { group, reason, error: cause });
    this._call(this._groups, group, [cause, undefined]);
  }

  // --- positions (groups with history) --------------------------------------------------

  /**
   * Whether the push at `position` is new for `group`, recording it when it is. A push
   * at or below the last one applied, in the same epoch, is a duplicate; one of another
   * epoch means the group's history was lost: the group is reset.
   */
  _advance(group, position) {
    const { epoch, offset } = position ?? {};
    if (typeof epoch !== "string" || !Number.isInteger(offset)) return true;
    const last = this._positions.get(group);
    if (last === undefined) {
      // A group subscribed without history, or not subscribed through this client.
      if (this._findSubscription(group) === undefined) return true;
    } else if (last.epoch === epoch) {
      const ahead = this._ahead.get(group) ?? new Set();
      if (offset <= last.offset || ahead.has(offset)) return false;
      if (offset !== last.offset + 1) {
        // Pushes from several publishers may cross: apply this one, and keep the
        // position (what a resume asks for) below the gap until it closes. A gap
        // that stays open is a push lost on its way: ask the server for it.
        ahead.add(offset);
        this._ahead.set(group, ahead);
        this._watchGap(group, ahead.size > MAX_AHEAD);
        return true;
      }
    } else {
      this._resetLive(group);
    }
    this._setPosition(group, { epoch, offset });
    return true;
  }

  /** Move a group's position to `position`, and past the pushes already ahead of it. */
  _setPosition(group, position) {
    const last = this._positions.get(group);
    let ahead = this._ahead.get(group) ?? new Set();
    if (last !== undefined && last.epoch !== position.epoch) ahead = new Set();
    let offset = position.offset;
    while (ahead.has(offset + 1)) offset += 1;
    const still = new Set([...ahead].filter((seen) => seen > offset));
    this._ahead.set(group, still);
    this._positions.set(group, { epoch: position.epoch, offset });
    if (still.size === 0) this._gapClosed(group);
  }

  // --- gaps: pushes lost on their way (groups with history) -------------------------------

  /**
   * A push of `group` came beyond a gap in its offsets. Give the gap `gapFillDelay` ms to
   * close by itself (pushes that crossed), or none when MAX_AHEAD pushes have passed it;
   * then ask for what is missing. At most one such request per group is on its way.
   */
  _watchGap(group, now) {
    let gap = this._gaps.get(group);
    if (gap === undefined) {
      gap = { timer: null, inFlight: false };
      this._gaps.set(group, gap);
    }
    if (gap.inFlight) return; // its answer looks at the gap again
    if (now) {
      clearTimeout(gap.timer);
      gap.timer = null;
      this._fillGap(group, gap);
    } else if (gap.timer === null) {
      gap.timer = setTimeout(() => {
        gap.timer = null;
        this._fillGap(group, gap);
      }, this.options.gapFillDelay);
    }
  }

  /**
   * Subscribe again `since` the group's position: the server replays the pushes after it
   * (those seen beyond the gap are dropped as duplicates), or answers `reset` when its
   * history no longer has them.
   */
  _fillGap(group, gap) {
    const found = this._findSubscription(group);
    const since = this._positions.get(group);
    // Not connected: the next connection's resubscribe asks `since` the position anyway.
    if (found === undefined || since === undefined || !this._ahead.get(group)?.size || this._state !== "open") {
      this._dropGap(group);
      return;
    }
    const [key, subscription] = found;
    if (subscription.resetting) {
      this._watchGap(group, false); // a fresh snapshot is on its way: look again later
      return;
    }
    gap.inFlight = true;
    const request = this._request("subscribe", subscription.object, {
      timeout: this.options.callTimeout,
      withToken: true,
      extraText: `,"since":${JSON.stringify(since)}`,
    });
    request.then(
      (reply) => {
        gap.inFlight = false;
        if (this._subscriptions.get(key) !== subscription) return;
        this._takePosition(subscription, reply); // emits "reset" when the reply says so
        this._lookAgain(group);
      },
      (error) => {
        gap.inFlight = false;
        if (this._subscriptions.get(key) !== subscription) return;
        // Refused now: the server took the connection out of the group.
        if (!LOCAL_FAILURES.has(error.code)) this._onExpelled(subscription.group, error.message, error);
        else this._lookAgain(group); // a timeout or a lost connection: try again later
      },
    );
  }

  /** After an answer for a gap: is one (still, or again) open? */
  _lookAgain(group) {
    if (this._ahead.get(group)?.size) this._watchGap(group, false);
    else this._dropGap(group);
  }

  /** The gap of `group` closed: no need to ask, unless a request is already on its way. */
  _gapClosed(group) {
    if (!this._gaps.get(group)?.inFlight) this._dropGap(group);
  }

  _dropGap(group) {
    const gap = this._gaps.get(group);
    if (gap === undefined) return;
    clearTimeout(gap.timer);
    this._gaps.delete(group);
  }

  _findSubscription(group) {
    for (const [key, subscription] of this._subscriptions) {
      if (subscription.group === group) return [key, subscription];
    }
    return undefined;
  }

  /** Record the position of a subscribe reply; emit "reset" when it says so. */
  _takePosition(subscription, reply) {
    const position = reply?.position;
    const group = subscription.group;
    if (typeof group !== "string" || typeof position?.epoch !== "string" || !Number.isInteger(position.offset)) {
      return;
    }
    const last = this._positions.get(group);
    // Pushes read before this reply (a replay) are at or below its position.
    if (!(last && last.epoch === position.epoch && last.offset > position.offset)) {
      this._setPosition(group, { epoch: position.epoch, offset: position.offset });
    }
    if (reply.reset === true) {
      this._emit("reset", { group, snapshot: reply.snapshot ?? null, position: { ...position } });
    }
  }

  /**
   * A push of a new epoch, or one without a position, came for a group held live (Redis
   * restarted empty, say): what was pushed meanwhile may be lost. Subscribe again for a
   * fresh snapshot and position, then emit "reset".
   */
  _resetLive(group) {
    const found = this._findSubscription(group);
    if (found === undefined) return;
    const [key, subscription] = found;
    if (subscription.resetting) return;
    subscription.resetting = true;
    const request = this._request("subscribe", subscription.object, {
      timeout: this.options.callTimeout,
      withToken: true,
    });
    request.then(
      (reply) => {
        subscription.resetting = false;
        if (this._subscriptions.get(key) !== subscription) return;
        this._takePosition(subscription, { ...reply, reset: true });
      },
      (error) => {
        subscription.resetting = false;
        // A lost connection resubscribes `since` the new epoch's position, which is
        // not enough: forget it, so the next connection starts from a snapshot.
        if (this._subscriptions.get(key) !== subscription) return;
        this._positions.delete(group);
        this._ahead.delete(group);
        subscription.pendingReset = true;
        if (!LOCAL_FAILURES.has(error.code)) this._onExpelled(subscription.group, error.message, error);
      },
    );
  }

  _resubscribe() {
    for (const [key, subscription] of this._subscriptions) {
      const since = this._positions.get(subscription.group);
      const request = this._request("subscribe", subscription.object, {
        timeout: this.options.callTimeout,
        withToken: true,
        extraText: since ? `,"since":${JSON.stringify(since)}` : "",
      });
      request.then(
        (reply) => {
          if (this._subscriptions.get(key) !== subscription) return;
          if (reply?.group) subscription.group = reply.group;
          const reset = subscription.pendingReset && reply?.position !== undefined;
          subscription.pendingReset = false;
          this._takePosition(subscription, reset ? { ...reply, reset: true } : reply);
          this._lookAgain(subscription.group);
        },
        (error) => {
          // Refused now (the token expired, access was revoked): the subscription is over.
          // A lost connection or a timeout leaves it for the next connection to retry.
          if (LOCAL_FAILURES.has(error.code)) return;
          if (this._subscriptions.get(key) !== subscription) return;
          this._onExpelled(subscription.group, error.message, error);
        },
      );
    }
  }

  _startKeepalive() {
    const { pingInterval } = this.options;
    this._pingInFlight = false;
    if (!isTimeout(pingInterval)) return;
    this._timers.ping = setInterval(() => this._ping(), pingInterval);
  }

  _ping() {
    if (this._state !== "open" || this._pingInFlight) return;
    const { pingInterval, pingTimeout } = this.options;
    const timeout = pingTimeout ?? Math.min(pingInterval, 10000);
    const socket = this._socket;
    this._pingInFlight = true;
    const alive = () => {
      if (socket === this._socket) this._pingInFlight = false;
    };
    this._request("ping", undefined, { timeout, withToken: false }).then(alive, (error) => {
      if (error.code !== TIMEOUT) return alive(); // any answer means alive
      if (socket === this._socket) this._abandon(`No answer to a ping within ${timeout} ms.`);
    });
  }

  _stopTimers() {
    clearTimeout(this._timers.connect);
    clearTimeout(this._timers.reconnect);
    clearInterval(this._timers.ping);
  }

  _detach() {
    const socket = this._socket;
    this._socket = null;
    this._stopTimers();
    if (!socket) return null;
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = noop; // `ws` throws an error event that has no listener
    return socket;
  }

  /** Give up on a socket that went silent: close it without waiting for its handshake. */
  _abandon(reason) {
    const socket = this._socket;
    this._detach();
    if (typeof socket.terminate === "function") {
      socket.terminate(); // `ws`
    } else {
      socket.close();
    }
    this._onLost(CLOSE_ABNORMAL, reason, false);
  }

  _onLost(code, reason, wasClean) {
    const wasOpen = this._state === "open";
    this._detach();
    if (wasOpen && Date.now() - this._openedAt >= STABLE_CONNECTION_MS) this._attempt = 0;
    const detail = { code, reason };
    const sent = [...this._pending.values()].filter((entry) => entry.sent);
    this._failAll(sent, `The connection was lost (${code}) before the answer came.`, LOST, detail);
    const stop = !this.options.reconnect || this.options.stopCodes.includes(code);
    if (stop) {
      this._state = "stopped";
      this._failAll([...this._queue], `The connection closed (${code}); the client stopped.`, CLOSED, detail);
      this._emit("closed", { code, reason, wasClean, willReconnect: false });
      return;
    }
    this._state = "reconnecting";
    this._emit("closed", { code, reason, wasClean, willReconnect: true });
    if (this._state === "reconnecting") this._scheduleReconnect(code);
  }

  _scheduleReconnect(code) {
    const { reconnectDelay, maxReconnectDelay } = this.options;
    const attempt = this._attempt;
    this._attempt += 1;
    const ceiling =
      code === CLOSE_FLOODING
        ? maxReconnectDelay
        : Math.min(maxReconnectDelay, reconnectDelay * 2 ** attempt);
    // "Equal jitter": at least half the delay, so clients that lost one server spread out.
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this._timers.reconnect = setTimeout(() => this._openSocket(), delay);
    this._emit("reconnecting", { attempt: attempt + 1, delay, code });
  }

  /**
   * Connect anew now: after a stop (4001, 4003), or to drop the current connection
   * (its unanswered calls are rejected with `connection_lost`). Resets the backoff.
   */
  reconnect() {
    if (this._state === "closed") {
      throw new RohrpostError("The client was closed for good.", { code: CLOSED });
    }
    const socket = this._detach();
    this._attempt = 0;
    this._state = "reconnecting";
    if (socket) {
      const detail = { code: CLOSE_NORMAL, reason: "reconnect" };
      socket.close(detail.code, detail.reason);
      const sent = [...this._pending.values()].filter((entry) => entry.sent);
      this._failAll(sent, "The client reconnected before the answer came.", LOST, detail);
      this._emit("closed", { ...detail, wasClean: true, willReconnect: true });
    }
    if (this._state === "reconnecting") this._openSocket(); // unless a listener closed the client
    return this;
  }

  /** Close for good: no more reconnects; unanswered and queued calls are rejected with `closed`. */
  close(code = CLOSE_NORMAL, reason = "") {
    if (this._state === "closed") return;
    const hadSocket = this._socket !== null;
    const socket = this._detach();
    this._state = "closed";
    for (const group of [...this._gaps.keys()]) this._dropGap(group);
    socket?.close(code, reason);
    this._failAll([...this._pending.values()], "The client was closed.", CLOSED, { code, reason });
    this._queue = [];
    if (hadSocket) this._emit("closed", { code, reason, wasClean: true, willReconnect: false });
  }
}

export default RohrpostClient;
