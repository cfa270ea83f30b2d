// Socket: one client in one namespace, in socket.io's shape. Its state of
// record (rooms, connection) lives in the library; this object carries the
// application's side (listeners, `data`, pending acks) and turns calls into C
// calls on the socket's id.

"use strict";

const { EventEmitter } = require("node:events");
const { lib, Status, AckStatus, JSON_NUL_TERMINATED, OUT, check, statusError, bufArray, takeString } =
  require("./native");
const { Kind } = require("./records");
const { encodeArgs } = require("./payload");
const { BroadcastOperator, RESERVED_EVENTS } = require("./broadcast");
const { Handlers } = require("./handlers");
const { withAck } = require("./acks");
const { invoke, fire } = require("./listeners");

// Why a socket may come back with connection state recovery (socket.io's list).
const RECOVERABLE_REASONS = new Set([
  "transport error",
  "transport close",
  "forced close",
  "ping timeout",
  "server shutting down",
  "forced server close",
]);

// "No timeout" for emits with an ack, as iobus.h documents it; a timeout the
// application gives is at least 1 ms, so that socket.io's `timeout(0)` (which
// times out at once) is not read as none.
const NO_TIMEOUT_MS = 0;

const addListener = EventEmitter.prototype.addListener;
const prependListener = EventEmitter.prototype.prependListener;

class Socket extends EventEmitter {
  /**
   * @param {import('./namespace').Namespace} nsp
   * @param {string} id
   * @param {object} handshake
   */
  constructor(nsp, id, handshake) {
    super();
    this.nsp = nsp;
    this.server = nsp.server;
    this.id = id;
    this.handshake = handshake;
    this.data = {};
    this.connected = false;
    this.recovered = false;
    this.flags = {};
    // Connected as far as the library has told us: `connected` turns false
    // as soon as the application disconnects the socket, `_live` when the
    // library reports it gone.
    this._live = false;
    this._roomsAtClose = null;
    this._fns = [];
    this._anyListeners = null;
    this._anyOutgoingListeners = null;
    /** The event names this socket made the library deliver (Handlers.listen). */
    this._listening = new Set();
    /** Whether this socket made the library deliver every event (Handlers.catchAll). */
    this._catchAll = false;
    /** Whether the socket is gone for good: it asks for nothing more. */
    this._released = false;
    // A client "error" event without a listener must not throw (as in
    // socket.io); this listener is the binding's, not a subscription.
    addListener.call(this, "error", noop);
  }

  // ---- what the library delivers to this socket -----------------------------

  on(event, listener) {
    this._listen(event);
    return addListener.call(this, event, listener);
  }

  addListener(event, listener) {
    return this.on(event, listener);
  }

  prependListener(event, listener) {
    this._listen(event);
    return prependListener.call(this, event, listener);
  }

  // (`once` and `prependOnceListener` go through `on` and `prependListener`.)

  /**
   * A listener for `event`: the library delivers the event from now on. The
   * subscription lasts until the socket is gone, even if the listener is
   * removed (the event is then dropped here, as socket.io drops events
   * without a listener).
   */
  _listen(event) {
    if (this._released || this._listening.has(event) || !Handlers.subscribable(event)) return;
    this._listening.add(event);
    this.server._handlers.listen(this.nsp._registration, event);
  }

  /** Catch-all listeners or middlewares: the library delivers every event. */
  _listenAll() {
    if (this._released || this._catchAll) return;
    this._catchAll = true;
    this.server._handlers.catchAll(this.nsp._registration, 1);
  }

  /** The socket is gone (or was refused): its subscriptions end. */
  _release() {
    if (this._released) return;
    this._released = true;
    const handlers = this.server._handlers;
    const id = this.nsp._registration;
    for (const event of this._listening) handlers.unlisten(id, event);
    this._listening.clear();
    if (this._catchAll) handlers.catchAll(id, -1);
  }

  get disconnected() {
    return !this.connected;
  }

  /** The rooms the socket is in, its own id included. */
  get rooms() {
    if (this._roomsAtClose) return new Set(this._roomsAtClose);
    const handle = this.server._handle;
    if (!this.connected || !handle) return new Set();
    const code = lib.iobus_socket_rooms(handle, this.id, OUT, 0);
    if (code !== Status.OK) return new Set();
    return new Set(JSON.parse(takeString() || "[]"));
  }

  // ---- emitting -------------------------------------------------------------

  /**
   * Emits to this client. A function as the last argument asks for an ack:
   * it gets the client's reply, or `(err, ...reply)` after `timeout(ms)`.
   */
  emit(event, ...args) {
    if (RESERVED_EVENTS.has(event)) throw new Error(`"${String(event)}" is a reserved event name`);
    const flags = this.flags;
    this.flags = {};
    const ack = args.length > 0 && typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (this._anyOutgoingListeners) {
      for (const fn of this._anyOutgoingListeners.slice()) invoke(fn, this, [event, ...args], this.server._report);
    }
    if (ack) {
      const withErr = flags.timeout !== undefined;
      this._emitAck(event, args, flags, (err, ...reply) => {
        if (withErr) ack.call(this, err, ...reply);
        else if (!err) ack.apply(this, reply);
      });
      return true;
    }
    const handle = this.server._handle;
    if (!handle) return true;
    const { json, buffers } = encodeArgs(args);
    const [bufs, count] = bufArray(buffers);
    const send = flags.volatile ? lib.iobus_socket_emit_volatile : lib.iobus_socket_emit;
    const code = send(handle, this.id, String(event), json, JSON_NUL_TERMINATED, bufs, count);
    settle(code, `emit "${event}"`);
    return true;
  }

  /**
   * Emits with an ack; `callback(err, ...reply)` is called once: with the
   * reply (err null), on timeout, or when the socket is gone.
   */
  _emitAck(event, args, flags, callback) {
    const server = this.server;
    const timeout = flags.timeout;
    const handle = server._handle;
    if (!handle) {
      process.nextTick(callback, new Error("socket has been disconnected"));
      return;
    }
    const { json, buffers } = encodeArgs(args);
    const handlers = server._handlers;
    const id = handlers.expect(Kind.ACK, (status, reply) => {
      if (status === AckStatus.OK) callback(null, ...reply);
      else if (status === AckStatus.TIMEOUT) callback(new Error("operation has timed out"));
      else callback(new Error("socket has been disconnected"));
    });
    const [bufs, count] = bufArray(buffers);
    const code = lib.iobus_socket_emit_with_ack(
      handle,
      this.id,
      String(event),
      json,
      JSON_NUL_TERMINATED,
      bufs,
      count,
      timeout === undefined ? NO_TIMEOUT_MS : Math.max(1, Math.floor(timeout)),
      0,
      id,
    );
    if (code !== Status.OK) {
      handlers.forget(id);
      if (isGone(code)) process.nextTick(callback, new Error("socket has been disconnected"));
      else throw statusError(code, `emit "${event}"`);
    }
  }

  /** Emits and resolves with the first argument of the client's ack. */
  emitWithAck(event, ...args) {
    const withErr = this.flags.timeout !== undefined;
    return new Promise((resolve, reject) => {
      args.push((arg1, arg2) => {
        if (withErr) return arg1 ? reject(arg1) : resolve(arg2);
        return resolve(arg1);
      });
      this.emit(event, ...args);
    });
  }

  /** Emits a `message` event. */
  send(...args) {
    this.emit("message", ...args);
    return this;
  }

  write(...args) {
    this.emit("message", ...args);
    return this;
  }

  /** The next emit's ack waits at most `ms`. */
  timeout(ms) {
    this.flags.timeout = ms;
    return this;
  }

  /** The next emit may be dropped if the client cannot take it right now. */
  get volatile() {
    this.flags.volatile = true;
    return this;
  }

  /** Accepted for compatibility; iobus does not compress per message. */
  compress() {
    return this;
  }

  // ---- broadcasting from this socket -----------------------------------------

  /** An operator excluding this socket, taking over its flags (volatile, timeout). */
  _operator() {
    const flags = this.flags;
    this.flags = {};
    return new BroadcastOperator(this.nsp, new Set(), new Set(), [this.id], flags);
  }

  /** Everyone in the namespace but this socket. */
  get broadcast() {
    return this._operator();
  }

  /** Everyone on this server but this socket. */
  get local() {
    return this._operator().local;
  }

  /** The sockets in `room` (or rooms), this one excluded. */
  to(room) {
    return this._operator().to(room);
  }

  in(room) {
    return this._operator().in(room);
  }

  /** Everyone but this socket and the sockets in `room` (or rooms). */
  except(room) {
    return this._operator().except(room);
  }

  // ---- rooms and lifecycle ---------------------------------------------------

  /** Joins a room (or rooms). */
  join(rooms) {
    const handle = this.server._handle;
    if (!handle || !this.connected) return;
    for (const room of Array.isArray(rooms) ? rooms : [rooms]) {
      settle(lib.iobus_socket_join(handle, this.id, String(room)), "join");
    }
  }

  /** Leaves a room. */
  leave(room) {
    const handle = this.server._handle;
    if (!handle || !this.connected) return;
    settle(lib.iobus_socket_leave(handle, this.id, String(room)), "leave");
  }

  /**
   * Disconnects from this namespace (the client sees "io server disconnect");
   * with `close`, closes the whole connection. The `disconnecting` and
   * `disconnect` events follow.
   */
  disconnect(close = false) {
    const handle = this.server._handle;
    if (!handle || !this.connected) return this;
    this.connected = false;
    settle(lib.iobus_socket_disconnect(handle, this.id, !!close), "disconnect");
    return this;
  }

  /** Adds a middleware for incoming events: `fn([event, ...args], next)`. */
  use(fn) {
    this._listenAll();
    this._fns.push(fn);
    return this;
  }

  // ---- catch-all listeners --------------------------------------------------

  onAny(listener) {
    this._listenAll();
    (this._anyListeners ||= []).push(listener);
    return this;
  }

  prependAny(listener) {
    this._listenAll();
    (this._anyListeners ||= []).unshift(listener);
    return this;
  }

  offAny(listener) {
    if (!this._anyListeners) return this;
    if (listener) {
      const i = this._anyListeners.indexOf(listener);
      if (i !== -1) this._anyListeners.splice(i, 1);
    } else {
      this._anyListeners = [];
    }
    return this;
  }

  listenersAny() {
    return this._anyListeners ? this._anyListeners.slice() : [];
  }

  onAnyOutgoing(listener) {
    (this._anyOutgoingListeners ||= []).push(listener);
    return this;
  }

  prependAnyOutgoing(listener) {
    (this._anyOutgoingListeners ||= []).unshift(listener);
    return this;
  }

  offAnyOutgoing(listener) {
    if (!this._anyOutgoingListeners) return this;
    if (listener) {
      const i = this._anyOutgoingListeners.indexOf(listener);
      if (i !== -1) this._anyOutgoingListeners.splice(i, 1);
    } else {
      this._anyOutgoingListeners = [];
    }
    return this;
  }

  listenersAnyOutgoing() {
    return this._anyOutgoingListeners ? this._anyOutgoingListeners.slice() : [];
  }

  // ---- what the server delivers -------------------------------------------

  /**
   * The socket recovers one that dropped: its data is what the library kept
   * (what `_keep` stored when it dropped); its rooms are the library's.
   */
  _recover() {
    this.recovered = true;
    const handle = this.server._handle;
    if (!handle || lib.iobus_socket_data(handle, this.id, OUT, 0) !== Status.OK) return;
    const data = JSON.parse(takeString() || "null");
    if (data !== null) this.data = data;
  }

  /** The library accepted the connection. */
  _onconnect() {
    this._live = true;
    this.connected = true;
  }

  /** An incoming event; `ackHandle` is an iobus_ack pointer or null. */
  _onevent(event, args, ackHandle) {
    if (!ackHandle) {
      this._dispatch(event, args);
      return;
    }
    withAck(ackHandle, false, (ack) => {
      args.push(ack);
      this._dispatch(event, args);
    });
  }

  /** Middlewares, catch-all listeners, then the event's listeners. */
  _dispatch(event, args) {
    const report = this.server._report;
    if (this._anyListeners && this._anyListeners.length > 0) {
      for (const fn of this._anyListeners.slice()) invoke(fn, this, [event, ...args], report);
    }
    if (this._fns.length === 0) {
      fire(this, event, args, report);
      return;
    }
    const fns = this._fns.slice();
    const run = (i) => {
      invoke(fns[i], this, [[event, ...args], (err) => {
        if (err) return fire(this, "error", [err], report);
        if (i + 1 < fns.length) return run(i + 1);
        if (this.connected) fire(this, event, args, report);
      }], report);
    };
    run(0);
  }

  /** The socket left its namespace: `disconnecting` (rooms still known), then `disconnect`. */
  _onclose(reason, rooms) {
    if (!this._live) return;
    const report = this.server._report;
    this._roomsAtClose = rooms;
    fire(this, "disconnecting", [reason, undefined], report);
    this._roomsAtClose = null;
    this._live = false;
    this.connected = false;
    this.nsp._remove(this);
    const recovery = this.server._recovery;
    const recoverable = recovery !== null && RECOVERABLE_REASONS.has(reason);
    if (!recoverable) this._release();
    fire(this, "disconnect", [reason, undefined], report);
    if (recoverable) this._keep(recovery.maxDisconnectionDuration);
  }

  /**
   * The socket dropped and its client may come back within `ms`
   * (connection state recovery): the library keeps `data` as it is after the
   * `disconnect` listeners, for the recovered socket. Its client may send as
   * soon as it is back, before this process hears of it: what the socket
   * listened to stays subscribed meanwhile.
   */
  _keep(ms) {
    const handle = this.server._handle;
    if (handle) {
      let json;
      try {
        json = JSON.stringify(this.data === undefined ? null : this.data);
      } catch (err) {
        this.server._report(new Error(`iobus: socket.data of ${this.id} is not JSON, a recovery cannot restore it: ${err.message}`));
      }
      if (json !== undefined) settle(lib.iobus_socket_set_data(handle, this.id, json, JSON_NUL_TERMINATED), "keep data");
    }
    setTimeout(() => this._release(), ms).unref();
  }
}

function noop() {}

function isGone(code) {
  return code === Status.UNKNOWN_SOCKET || code === Status.DISCONNECTED || code === Status.NOT_RUNNING;
}

/** Calls on a socket that has gone are silently dropped, as in socket.io. */
function settle(code, what) {
  if (code !== Status.OK && !isGone(code)) check(code, what);
}

module.exports = { Socket };
