// Server: one iobus server handle, in socket.io's shape. It owns the meeting
// point of the library's threads and Node's single thread:
//
// - the library runs in IOBUS_DISPATCH_POLL mode: its network threads only
//   queue callbacks, and a unix socket (iobus_server_poll_fd) becomes
//   readable when some are pending;
// - a net.Socket watches (a duplicate of) that descriptor from libuv, so a
//   wake-up is an ordinary I/O event on the main thread (the library makes
//   the descriptor readable once its network thread has finished the work in
//   hand, so a wake-up usually finds a whole burst of events queued);
// - on a wake-up, one iobus_server_poll_records call takes the queued
//   callbacks as records (see records.js) into one persistent Buffer, as
//   many as fit; the records are then read straight from that Buffer and
//   delivered in order to namespaces and sockets, whose listeners may call
//   back into the library freely (the poll has returned by then). The C
//   callbacks are registered but not called on this path.
//
// No JavaScript ever runs on a library thread, nothing blocks the event loop
// waiting for the network, one queue keeps each socket's events in order,
// and a whole batch of events costs one call into C.

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
  takePointer,
  takeLength,
  takeU16,
  takeCount,
  addressOf,
} = require("./native");
const { decodeArgs } = require("./payload");
const { Kind, RecordReader, MalformedRecord } = require("./records");
const { Namespace, ParentNamespace } = require("./namespace");
const { Socket } = require("./socket");
const { fire } = require("./listeners");

/**
 * The record Buffer's starting size: what one wake-up takes at most before
 * the loop gets a turn again (a record bigger than this grows the Buffer to
 * its size).
 */
const RECORD_BUFFER_SIZE = 256 * 1024;

/**
 * How often the queue is also polled without a wake-up. The library's re-arm
 * of the wake-up descriptor can lose a wake-up when a callback is queued
 * while a poll finishes (it clears its "signaled" flag before it drains the
 * descriptor); this bounds the delay such a callback can see.
 */
const RESCUE_POLL_MS = 20;

/** The namespace pattern behind every RegExp/function namespace. */
const DYNAMIC_PATTERN = "/*";
const DYNAMIC = Symbol("iobus.dynamic");

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
  if (opts.batchScheduling !== undefined) {
    set(lib.iobus_config_set_batch_scheduling(cfg, !!opts.batchScheduling), "batchScheduling");
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
    this._records = Buffer.alloc(RECORD_BUFFER_SIZE);
    this._recordsAddress = addressOf(this._records);
    this._reader = new RecordReader();
    this._pumping = false;
    this._watcher = null;
    this._rescue = null;
    this._closing = null;
    this._dynamicId = -1;
    this._report = (err) => this._reportError(err);
    this._onWake = () => {
      this._pump();
    };
    this._onReadable = () => {
      this._pump();
    };

    this._handle = createHandle(this.opts);
    this._createCallbacks();
    /** The main namespace, "/". */
    this.sockets = this.of("/");
    this.httpServer = new ListeningAddress(this);
    if (srv !== undefined && srv !== null) this.listen(srv);
  }

  // ---- the callbacks: registered, not called -----------------------------------

  _createCallbacks() {
    // Registering a handler takes a C function pointer, but the pump takes
    // what is queued as records (iobus_server_poll_records) instead of
    // letting the library call these. The library only calls them from
    // iobus_server_free, for what was queued after the last poll (after a
    // stop has already wound the network down); nothing can be delivered by
    // then, so they only answer what the host owns: a pending connection is
    // refused. (An event's unanswered ack handle stays the library's.)
    // `keep` holds the pointers for the server's lifetime.
    const connect = callback("up", (id, req) => {
      lib.iobus_connect_reject(req, "server shutting down", null, JSON_NUL_TERMINATED);
    }, this._report);
    const event = callback("up", noop, this._report);
    const disconnect = callback("ussss", noop, this._report);
    const ack = callback("uip", noop, this._report);
    this._callbacks = [connect.keep, event.keep, disconnect.keep, ack.keep];
    this._connectCallback = connect.address;
    this._eventCallback = event.address;
    this._disconnectCallback = disconnect.address;
    this._ackCallback = ack.address;
  }

  // ---- the pump: take records, deliver them ------------------------------------

  _pump() {
    if (this._pumping || !this._handle) return;
    this._pumping = true;
    try {
      this._take(this._handle);
    } finally {
      this._pumping = false;
    }
  }

  /**
   * One iobus_server_poll_records into the record Buffer, then the delivery
   * of every record it took, in order. Returns how many it took (0 when the
   * queue was empty or the poll failed).
   */
  _take(handle) {
    let code = lib.iobus_server_poll_records(handle, this._recordsAddress, this._records.length, LEN, COUNT);
    if (code === Status.INVALID_ARGUMENT && takeCount() === 0 && takeLength() > this._records.length) {
      // The oldest record alone is bigger than the Buffer: nothing was taken.
      this._growRecords(takeLength());
      code = lib.iobus_server_poll_records(handle, this._recordsAddress, this._records.length, LEN, COUNT);
    }
    if (code !== Status.OK) {
      this._report(statusError(code, "poll"));
      return 0;
    }
    const count = takeCount();
    if (count > 0) this._deliverRecords(takeLength());
    return count;
  }

  _growRecords(need) {
    let size = this._records.length;
    while (size < need) size *= 2;
    this._records = Buffer.alloc(size);
    this._recordsAddress = addressOf(this._records);
  }

  /**
   * Reads and delivers the records in the first `len` bytes of the record
   * Buffer. A listener's failure is reported and delivery goes on; so does
   * a malformed record, whose handle is given back, unless its size is what
   * is wrong, which leaves the rest of the batch unreadable.
   */
  _deliverRecords(len) {
    const reader = this._reader;
    try {
      reader.start(this._records, len);
    } catch (err) {
      this._report(err);
      return;
    }
    for (;;) {
      try {
        if (!reader.next()) return;
      } catch (err) {
        this._report(err);
        return;
      }
      try {
        this._deliver(reader);
      } catch (err) {
        if (err instanceof MalformedRecord) this._release(reader.kind, reader.handle);
        this._report(err);
      }
    }
  }

  /** Gives back the handle of a record that could not be read. */
  _release(kind, handle) {
    if (handle === 0) return;
    if (kind === Kind.CONNECT) {
      this._pending.delete(handle);
      lib.iobus_connect_reject(handle, "server error", null, JSON_NUL_TERMINATED);
    } else if (kind === Kind.EVENT) {
      lib.iobus_ack_free(handle);
    }
  }

  /** Delivers the reader's current record; its fields are read here, in order. */
  _deliver(rd) {
    const id = rd.user;
    switch (rd.kind) {
      case Kind.CONNECT: {
        const nsp = this._namespaceField(rd, id);
        const sid = rd.latin1();
        const handshake = rd.text();
        return this._onConnect(id, rd.handle, nsp, sid, handshake);
      }
      case Kind.EVENT: {
        const nsp = this._namespaceField(rd, id);
        const sid = rd.latin1();
        const name = rd.text();
        const json = rd.text();
        const binary = rd.attachments();
        const ack = rd.handle;
        const socket = this._socketOf(id, nsp, sid);
        if (!socket) {
          if (ack !== 0) lib.iobus_ack_free(ack);
          return undefined;
        }
        let args;
        try {
          args = decodeArgs(json, binary);
        } catch (err) {
          if (ack !== 0) lib.iobus_ack_free(ack);
          throw err;
        }
        socket._onevent(name, args, ack === 0 ? null : ack);
        return undefined;
      }
      case Kind.DISCONNECT: {
        const nsp = this._namespaceField(rd, id);
        const sid = rd.latin1();
        const reason = rd.text();
        const rooms = rd.text();
        const socket = this._socketOf(id, nsp, sid);
        if (socket) socket._onclose(reason, JSON.parse(rooms));
        return undefined;
      }
      case Kind.ACK: {
        rd.skip(); // namespace
        rd.skip(); // socket id
        const status = rd.status;
        const json = rd.text();
        const binary = rd.attachments();
        const callback = this._acks.get(id);
        if (!callback) return undefined;
        this._acks.delete(id);
        if (status === 0) callback(null, ...decodeArgs(json, binary));
        else callback(new Error(status === 1 ? "operation has timed out" : "socket has been disconnected"));
        return undefined;
      }
      default:
        throw new MalformedRecord(`unknown kind ${rd.kind}`, false);
    }
  }

  /** The namespace field: its name under the dynamic pattern, else skipped (the id tells). */
  _namespaceField(rd, id) {
    if (id === this._dynamicId) return rd.text();
    rd.skip();
    return null;
  }

  _namespaceOf(id, nsp) {
    return id === this._dynamicId ? this._nsps.get(nsp) : this._byId[id];
  }

  _socketOf(id, nsp, sid) {
    const namespace = this._namespaceOf(id, nsp);
    return namespace ? namespace.sockets.get(sid) : undefined;
  }

  /**
   * A connection to namespace `nsp` (a name only under the dynamic pattern;
   * else registration `id` tells) waiting for a decision through `req`.
   */
  _onConnect(id, req, nsp, sid, handshakeJson) {
    this._pending.add(req);
    if (this._closing) {
      this._pending.delete(req);
      lib.iobus_connect_reject(req, "server shutting down", null, JSON_NUL_TERMINATED);
      return;
    }
    let handshake;
    try {
      handshake = buildHandshake(handshakeJson);
    } catch (err) {
      this._pending.delete(req);
      lib.iobus_connect_reject(req, "server error", null, JSON_NUL_TERMINATED);
      throw err;
    }
    const admit = (namespace) => {
      if (!namespace) {
        if (this._pending.delete(req)) {
          lib.iobus_connect_reject(req, "Invalid namespace", null, JSON_NUL_TERMINATED);
        }
        return;
      }
      namespace._admit(new Socket(namespace, sid, handshake), req);
    };
    if (id !== this._dynamicId) return admit(this._byId[id]);
    const known = this._nsps.get(nsp);
    if (known) return admit(known);
    // The first parent namespace that matches creates the child.
    const tryParent = (i) => {
      if (i === this._parents.length) return admit(null);
      this._parents[i]._matches(nsp, handshake.auth, (ok) => {
        if (!ok) return tryParent(i + 1);
        let child = this._nsps.get(nsp);
        if (!child) {
          child = this._parents[i]._createChild(nsp);
          this._nsps.set(nsp, child);
          fire(this.sockets, "new_namespace", [child], this._report);
        }
        admit(child);
      });
    };
    return tryParent(0);
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
    // The bytes read are only wake-up tokens: read into one small Buffer and
    // handed straight to the pump, without a stream's per-read allocations.
    this._watcher = new net.Socket({
      fd,
      readable: true,
      writable: false,
      onread: { buffer: Buffer.alloc(64), callback: this._onReadable },
    });
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
      while (this._take(handle) > 0);
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

function noop() {}

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
