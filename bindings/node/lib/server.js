// Server: one iobus server handle, in socket.io's shape. It owns the meeting
// point of the library's threads and Node's single thread:
//
// - the library runs in IOBUS_DISPATCH_POLL mode: its network threads only
//   queue callbacks, and a unix socket (iobus_server_poll_fd) becomes
//   readable when some are pending;
// - a net.Socket watches (a duplicate of) that descriptor from libuv, so a
//   wake-up is an ordinary I/O event on the main thread;
// - on a wake-up, iobus_server_poll runs up to POLL_BATCH queued callbacks
//   right here; each one only copies what it was given into a record (the
//   views die with the callback), and once poll returns the records are
//   delivered in order to namespaces and sockets, whose listeners may call
//   back into the library freely (they are outside any callback by then).
//
// No JavaScript ever runs on a library thread, nothing blocks the event loop
// waiting for the network, and one queue keeps each socket's events in order.

"use strict";

const net = require("node:net");
const path = require("node:path");
const { EventEmitter } = require("node:events");
const {
  lib,
  dup,
  callback,
  Status,
  DISPATCH_POLL,
  JSON_NUL_TERMINATED,
  OUT,
  LEN,
  COUNT,
  check,
  statusError,
  takeString,
  takePointer,
  takeU16,
  takeCount,
  eventBinary,
} = require("./native");
const { decodeArgs, mayHavePlaceholders } = require("./payload");
const { Namespace, ParentNamespace } = require("./namespace");
const { Socket } = require("./socket");
const { fire } = require("./listeners");

/** Callbacks run per wake-up before the loop gets a turn again. */
const POLL_BATCH = 256;

/**
 * How often the queue is also polled without a wake-up. The library's re-arm
 * of the wake-up descriptor can lose a wake-up when a callback is queued
 * while iobus_server_poll finishes (it clears its "signaled" flag before it
 * drains the descriptor); this bounds the delay such a callback can see.
 */
const RESCUE_POLL_MS = 20;

/** The namespace pattern behind every RegExp/function namespace. */
const DYNAMIC_PATTERN = "/*";
const DYNAMIC = Symbol("iobus.dynamic");

const CONNECT = 0;
const EVENT = 1;
const DISCONNECT = 2;
const ACK = 3;

function clientDist() {
  try {
    return path.join(path.dirname(require.resolve("socket.io-client/package.json")), "dist");
  } catch {
    return null;
  }
}

/** Applies socket.io-style options (plus iobus's own) to an iobus_config. */
function configure(cfg, opts) {
  const set = (code, what) => check(code, `option ${what}`);
  if (opts.path !== undefined) set(lib.iobus_config_set_path(cfg, String(opts.path)), "path");
  if (opts.pingInterval !== undefined) set(lib.iobus_config_set_ping_interval(cfg, opts.pingInterval), "pingInterval");
  if (opts.pingTimeout !== undefined) set(lib.iobus_config_set_ping_timeout(cfg, opts.pingTimeout), "pingTimeout");
  if (opts.maxHttpBufferSize !== undefined) {
    set(lib.iobus_config_set_max_payload(cfg, opts.maxHttpBufferSize), "maxHttpBufferSize");
  }
  if (opts.upgradeTimeout !== undefined) {
    set(lib.iobus_config_set_upgrade_timeout(cfg, opts.upgradeTimeout), "upgradeTimeout");
  }
  if (opts.connectTimeout !== undefined) {
    set(lib.iobus_config_set_connect_timeout(cfg, opts.connectTimeout), "connectTimeout");
  }
  if (opts.transports !== undefined) {
    const t = opts.transports;
    set(lib.iobus_config_set_transports(cfg, t.includes("polling"), t.includes("websocket")), "transports");
  }
  if (opts.allowUpgrades !== undefined) set(lib.iobus_config_set_allow_upgrades(cfg, !!opts.allowUpgrades), "allowUpgrades");
  if (opts.cors) {
    const cors = opts.cors;
    const origin = cors.origin === undefined || cors.origin === true ? "*" : cors.origin;
    const origins = origin === false ? [] : [].concat(origin);
    for (const origin of origins) set(lib.iobus_config_add_cors_origin(cfg, String(origin)), "cors.origin");
    if (cors.credentials !== undefined) {
      set(lib.iobus_config_set_cors_credentials(cfg, !!cors.credentials), "cors.credentials");
    }
    if (cors.maxAge !== undefined) set(lib.iobus_config_set_cors_max_age(cfg, cors.maxAge), "cors.maxAge");
  }
  if (opts.maxAttachments !== undefined) {
    set(lib.iobus_config_set_max_attachments(cfg, opts.maxAttachments), "maxAttachments");
  }
  if (opts.maxBufferedBytes !== undefined) {
    set(lib.iobus_config_set_max_buffered(cfg, opts.maxBufferedBytes), "maxBufferedBytes");
  }
  if (opts.workerThreads !== undefined) {
    set(lib.iobus_config_set_worker_threads(cfg, opts.workerThreads), "workerThreads");
  }
  const serveClient = opts.serveClient !== false;
  set(lib.iobus_config_set_serve_client(cfg, serveClient), "serveClient");
  const clientDir = opts.clientDir || (serveClient && !process.env.IOBUS_CLIENT_DIR ? clientDist() : null);
  if (clientDir) set(lib.iobus_config_set_client_dir(cfg, path.resolve(clientDir)), "clientDir");
  if (opts.staticDir) set(lib.iobus_config_set_static_dir(cfg, path.resolve(opts.staticDir)), "staticDir");
  set(lib.iobus_config_set_dispatch(cfg, DISPATCH_POLL), "dispatch");
}

function createHandle(opts) {
  const cfg = lib.iobus_config_new();
  if (cfg === 0) throw new Error("iobus: out of memory");
  try {
    configure(cfg, opts);
    check(lib.iobus_server_new(cfg, OUT), "new server");
    return takePointer();
  } finally {
    lib.iobus_config_free(cfg);
  }
}

function isPort(value) {
  return typeof value === "number" || (typeof value === "string" && /^\d+$/.test(value));
}

/** `io.httpServer`: where the server listens, as http.Server shows it. */
class ListeningAddress {
  constructor(server) {
    this._server = server;
  }

  get listening() {
    return this._server._port !== null;
  }

  address() {
    const s = this._server;
    if (s._port === null) return null;
    return { address: s._host, family: s._host.includes(":") ? "IPv6" : "IPv4", port: s._port };
  }

  close(callback) {
    this._server.close(callback);
    return this;
  }
}

class Server {
  /**
   * `new Server()`, `new Server(options)`, `new Server(port[, options])`.
   * iobus serves HTTP itself: it takes a port, not a Node http.Server.
   */
  constructor(srv, opts) {
    if (srv !== undefined && srv !== null && typeof srv === "object") {
      if (typeof srv.listen === "function") {
        throw new TypeError(
          "iobus: Server takes a port or options, not an http.Server; iobus serves HTTP itself " +
            "(use the staticDir option for static files, then io.listen(port))",
        );
      }
      opts = srv;
      srv = undefined;
    }
    this.opts = { ...(opts || {}) };
    this._host = this.opts.host || "127.0.0.1";
    this._port = null;
    this._nsps = new Map();
    this._parents = [];
    this._byId = [];
    this._acks = new Map();
    this._nextAckId = 1;
    this._pending = new Set();
    this._queue = [];
    this._pumping = false;
    this._watcher = null;
    this._rescue = null;
    this._closing = null;
    this._dynamicId = -1;
    this._report = (err) => this._reportError(err);
    this._onWake = () => this._pump();

    this._handle = createHandle(this.opts);
    this._createCallbacks();
    /** The main namespace, "/". */
    this.sockets = this.of("/");
    this.httpServer = new ListeningAddress(this);
    if (srv !== undefined && srv !== null) this.listen(srv);
  }

  // ---- the callbacks: copy, queue, return ------------------------------------

  _createCallbacks() {
    // The C function pointers; `keep` holds them for the server's lifetime.
    const connect = callback("up", (id, req) => {
      const dynamic = id === this._dynamicId;
      const record = { kind: CONNECT, id, req, nsp: null, sid: null, handshake: null };
      this._queue.push(record);
      record.nsp = dynamic ? lib.iobus_connect_namespace(req) : null;
      record.sid = lib.iobus_connect_socket_id(req);
      if (lib.iobus_connect_handshake(req, OUT, 0) === Status.OK) record.handshake = takeString();
    }, this._report);
    const event = callback("up", (id, ev) => {
      const json = lib.iobus_event_args(ev, 0);
      const ack = lib.iobus_event_take_ack(ev);
      this._queue.push({
        kind: EVENT,
        id,
        nsp: id === this._dynamicId ? lib.iobus_event_namespace(ev) : null,
        sid: lib.iobus_event_socket_id(ev),
        name: lib.iobus_event_name(ev),
        json,
        binary: mayHavePlaceholders(json) ? this._binaries(ev) : null,
        ack: ack === 0 ? null : ack,
      });
    }, this._report);
    const disconnect = callback("ussss", (id, nsp, sid, reason, rooms) => {
      this._queue.push({ kind: DISCONNECT, id, nsp, sid, reason, rooms });
    }, this._report);
    const ack = callback("uip", (id, status, reply) => {
      const record = { kind: ACK, id, status, json: null, binary: null };
      if (status === 0) {
        record.json = lib.iobus_event_args(reply, 0);
        if (mayHavePlaceholders(record.json)) record.binary = this._binaries(reply);
      }
      this._queue.push(record);
    }, this._report);
    this._callbacks = [connect.keep, event.keep, disconnect.keep, ack.keep];
    this._connectCallback = connect.address;
    this._eventCallback = event.address;
    this._disconnectCallback = disconnect.address;
    this._ackCallback = ack.address;
  }

  _binaries(event) {
    const count = lib.iobus_event_binary_count(event);
    const out = new Array(count);
    for (let i = 0; i < count; i++) out[i] = eventBinary(event, i);
    return out;
  }

  // ---- the pump: poll, then deliver ------------------------------------------

  _pump() {
    if (this._pumping || !this._handle) return;
    this._pumping = true;
    try {
      const code = lib.iobus_server_poll(this._handle, POLL_BATCH, COUNT);
      this._deliverQueued();
      if (code !== Status.OK) this._report(statusError(code, "poll"));
    } finally {
      this._pumping = false;
    }
  }

  _deliverQueued() {
    while (this._queue.length > 0) {
      const batch = this._queue;
      this._queue = [];
      for (const record of batch) {
        try {
          this._deliver(record);
        } catch (err) {
          this._report(err);
        }
      }
    }
  }

  _deliver(r) {
    switch (r.kind) {
      case CONNECT:
        return this._onConnect(r);
      case EVENT: {
        const socket = this._socketOf(r);
        if (!socket) {
          if (r.ack) lib.iobus_ack_free(r.ack);
          return;
        }
        socket._onevent(r.name, decodeArgs(r.json, r.binary), r.ack);
        return;
      }
      case DISCONNECT: {
        const socket = this._socketOf(r);
        if (socket) socket._onclose(r.reason, JSON.parse(r.rooms));
        return;
      }
      case ACK: {
        const callback = this._acks.get(r.id);
        if (!callback) return;
        this._acks.delete(r.id);
        if (r.status === 0) callback(null, ...decodeArgs(r.json, r.binary));
        else callback(new Error(r.status === 1 ? "operation has timed out" : "socket has been disconnected"));
        return;
      }
    }
  }

  _namespaceOf(r) {
    return r.id === this._dynamicId ? this._nsps.get(r.nsp) : this._byId[r.id];
  }

  _socketOf(r) {
    const nsp = this._namespaceOf(r);
    return nsp ? nsp.sockets.get(r.sid) : undefined;
  }

  _onConnect(r) {
    this._pending.add(r.req);
    if (this._closing) {
      this._pending.delete(r.req);
      lib.iobus_connect_reject(r.req, "server shutting down", null, JSON_NUL_TERMINATED);
      return;
    }
    const handshake = buildHandshake(r.handshake);
    const admit = (nsp) => {
      if (!nsp) {
        if (this._pending.delete(r.req)) {
          lib.iobus_connect_reject(r.req, "Invalid namespace", null, JSON_NUL_TERMINATED);
        }
        return;
      }
      nsp._admit(new Socket(nsp, r.sid, handshake), r.req);
    };
    if (r.id !== this._dynamicId) return admit(this._byId[r.id]);
    const known = this._nsps.get(r.nsp);
    if (known) return admit(known);
    // The first parent namespace that matches creates the child.
    const tryParent = (i) => {
      if (i === this._parents.length) return admit(null);
      this._parents[i]._matches(r.nsp, handshake.auth, (ok) => {
        if (!ok) return tryParent(i + 1);
        let child = this._nsps.get(r.nsp);
        if (!child) {
          child = this._parents[i]._createChild(r.nsp);
          this._nsps.set(r.nsp, child);
          fire(this.sockets, "new_namespace", [child], this._report);
        }
        admit(child);
      });
    };
    tryParent(0);
  }

  _registerAck(callback) {
    const id = this._nextAckId++;
    this._acks.set(id, callback);
    return id;
  }

  _reportError(err) {
    if (this.sockets && this.sockets.listenerCount("error") > 0) {
      fire(this.sockets, "error", [err], (again) => console.error("iobus: an error listener threw:", again));
    } else {
      console.error("iobus: a handler threw:", err);
    }
  }

  // ---- namespaces --------------------------------------------------------------

  _register(nsp, pattern) {
    const id = this._byId.length;
    this._byId.push(nsp);
    const h = this._handle;
    check(lib.iobus_server_on_connect(h, pattern, this._connectCallback, id), "on_connect");
    check(lib.iobus_server_on_any(h, pattern, this._eventCallback, id), "on_any");
    check(lib.iobus_server_on_disconnect(h, pattern, this._disconnectCallback, id), "on_disconnect");
    return id;
  }

  /**
   * The namespace `name` (created on first use), or a parent namespace for a
   * RegExp or `fn(name, auth, next)`. `fn` becomes a connection listener.
   */
  of(name, fn) {
    if (!this._handle) throw new Error("iobus: the server is closed");
    let nsp;
    if (name instanceof RegExp || typeof name === "function") {
      nsp = new ParentNamespace(this, name);
      this._parents.push(nsp);
      if (this._dynamicId === -1) {
        check(lib.iobus_server_add_namespace_pattern(this._handle, DYNAMIC_PATTERN), "namespace pattern");
        this._dynamicId = this._register(DYNAMIC, DYNAMIC_PATTERN);
      }
    } else {
      let key = String(name);
      if (key[0] !== "/") key = `/${key}`;
      nsp = this._nsps.get(key);
      if (!nsp) {
        nsp = new Namespace(this, key);
        this._nsps.set(key, nsp);
        this._register(nsp, key);
      }
    }
    if (fn) nsp.on("connect", fn);
    return nsp;
  }

  // ---- the main namespace's face -------------------------------------------------

  use(fn) {
    this.sockets.use(fn);
    return this;
  }

  to(room) {
    return this.sockets.to(room);
  }

  in(room) {
    return this.sockets.in(room);
  }

  except(room) {
    return this.sockets.except(room);
  }

  get volatile() {
    return this.sockets.volatile;
  }

  get local() {
    return this.sockets.local;
  }

  compress(compress) {
    return this.sockets.compress(compress);
  }

  timeout(ms) {
    return this.sockets.timeout(ms);
  }

  emit(event, ...args) {
    return this.sockets.emit(event, ...args);
  }

  emitWithAck(event, ...args) {
    return this.sockets.emitWithAck(event, ...args);
  }

  send(...args) {
    this.sockets.emit("message", ...args);
    return this;
  }

  write(...args) {
    this.sockets.emit("message", ...args);
    return this;
  }

  fetchSockets() {
    return this.sockets.fetchSockets();
  }

  socketsJoin(room) {
    this.sockets.socketsJoin(room);
  }

  socketsLeave(room) {
    this.sockets.socketsLeave(room);
  }

  disconnectSockets(close = false) {
    this.sockets.disconnectSockets(close);
  }

  serverSideEmit(...args) {
    return this.sockets.serverSideEmit(...args);
  }

  // ---- lifecycle ---------------------------------------------------------------

  /**
   * Starts listening on `port` (0: any free port; see
   * `io.httpServer.address().port`) on the `host` option (default 127.0.0.1).
   * Throws if the address cannot be bound. Returns the server.
   */
  listen(port, ...rest) {
    if (!this._handle || this._closing) throw new Error("iobus: the server is closed");
    const callback = typeof rest[rest.length - 1] === "function" ? rest.pop() : null;
    if (typeof rest[0] === "string") this._host = rest[0];
    else if (rest[0] && typeof rest[0] === "object" && rest[0].host) this._host = rest[0].host;
    if (!isPort(port)) throw new TypeError("iobus: listen(port) takes a port number");
    check(lib.iobus_server_start(this._handle, this._host, Number(port)), "listen");
    check(lib.iobus_server_port(this._handle, LEN), "port");
    this._port = takeU16();
    this._watch();
    if (callback) process.nextTick(callback);
    return this;
  }

  /** socket.io's `attach(port)`: the same as `listen(port)`. */
  attach(port, opts) {
    return this.listen(port, opts);
  }

  _watch() {
    if (this._watcher) return;
    const fd = dup(lib.iobus_server_poll_fd(this._handle));
    if (fd < 0) throw new Error("iobus: cannot watch the poll descriptor");
    this._watcher = new net.Socket({ fd, readable: true, writable: false });
    this._watcher.on("data", this._onWake);
    this._watcher.on("error", this._report);
    this._rescue = setInterval(this._onWake, RESCUE_POLL_MS);
    this._rescue.unref();
    setImmediate(this._onWake);
  }

  /**
   * Stops the server: every socket disconnects with "server shutting down"
   * (their `disconnect` listeners run), then the library handle is freed and
   * nothing of the server keeps the process alive. Resolves when done.
   */
  close(fn) {
    if (!this._closing) {
      for (const req of this._pending) {
        lib.iobus_connect_reject(req, "server shutting down", null, JSON_NUL_TERMINATED);
      }
      this._pending.clear();
      const handle = this._handle;
      this._closing = new Promise((resolve) => {
        if (!handle) return resolve();
        // The stop waits for the network to wind down: off the main thread.
        lib.iobus_server_stop.async(handle, () => {
          this._finishClose(handle);
          resolve();
        });
      });
    }
    return this._closing.then(() => {
      if (fn) fn();
    });
  }

  _finishClose(handle) {
    if (this._watcher) {
      this._watcher.destroy();
      this._watcher = null;
    }
    if (this._rescue) {
      clearInterval(this._rescue);
      this._rescue = null;
    }
    // Deliver what the stop queued (disconnects, failed acks), then free.
    this._pumping = true;
    try {
      for (;;) {
        const code = lib.iobus_server_poll(handle, POLL_BATCH, COUNT);
        const ran = takeCount();
        this._deliverQueued();
        if (code !== Status.OK || ran === 0) break;
      }
    } finally {
      this._pumping = false;
    }
    this._handle = null;
    this._port = null;
    lib.iobus_server_free(handle);
    const stranded = [...this._acks.values()];
    this._acks.clear();
    for (const callback of stranded) callback(new Error("socket has been disconnected"));
  }
}

/** The handshake JSON of the library → socket.io's `socket.handshake`. */
function buildHandshake(json) {
  const hs = json ? JSON.parse(json) : {};
  const headers = hs.headers || {};
  const issued = hs.issued || Date.now();
  return {
    headers,
    time: new Date(issued).toString(),
    address: hs.address,
    xdomain: !!headers.origin,
    secure: false,
    issued,
    url: hs.url,
    query: hs.query || {},
    auth: hs.auth || {},
  };
}

// `io.on`, `io.once`, `io.off`, … act on the main namespace, as in socket.io.
for (const method of Object.getOwnPropertyNames(EventEmitter.prototype)) {
  if (method === "constructor" || method === "emit" || typeof EventEmitter.prototype[method] !== "function") continue;
  if (Object.prototype.hasOwnProperty.call(Server.prototype, method)) continue;
  Server.prototype[method] = function delegated(...args) {
    return this.sockets[method](...args);
  };
}

module.exports = { Server };
