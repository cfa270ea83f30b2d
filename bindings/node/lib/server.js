// Server: one iobus server handle, in socket.io's shape — its namespaces and
// its lifecycle (listen, close). The parts it is made of live beside it:
// options.js turns options into the handle, handlers.js subscribes to what
// the library reports back, pump.js takes the library's records on Node's
// thread, delivery.js hands each record to the namespace or socket it is
// for, and operations.js gives `io.to(room).emit(…)` and friends, which act
// on the main namespace.
//
// No JavaScript ever runs on a library thread, nothing blocks the event loop
// waiting for the network, one queue keeps each socket's events in order,
// and a whole batch of events costs one call into C.

"use strict";

const { lib, check, LEN, takeU16, JSON_NUL_TERMINATED } = require("./native");
const { createHandle, recoveryOptions } = require("./options");
const { Handlers } = require("./handlers");
const { RecordPump } = require("./pump");
const { Delivery } = require("./delivery");
const { ServerOperations } = require("./operations");
const { Namespace, ParentNamespace } = require("./namespace");
const { fire } = require("./listeners");

/** The namespace pattern behind every RegExp/function namespace. */
const DYNAMIC_PATTERN = "/*";
const DYNAMIC = Symbol("iobus.dynamic");

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

class Server extends ServerOperations {
  /**
   * `new Server()`, `new Server(options)`, `new Server(port[, options])`.
   * iobus serves HTTP itself: it takes a port, not a Node http.Server.
   */
  constructor(srv, opts) {
    super();
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
    /** Namespaces by name (children of parent namespaces included). */
    this._nsps = new Map();
    this._parents = [];
    /** Connect handles not answered yet. */
    this._pending = new Set();
    this._closing = null;
    this._report = (err) => this._reportError(err);

    this._handle = createHandle(this.opts);
    /** Connection state recovery's options, or null when it is off. */
    this._recovery = recoveryOptions(this.opts);
    this._handlers = new Handlers(this._handle);
    this._pump = new RecordPump(this._handle, new Delivery(this), this._report);
    /** The main namespace, "/". */
    this.sockets = this.of("/");
    this.httpServer = new ListeningAddress(this);
    if (srv !== undefined && srv !== null) this.listen(srv);
  }

  _reportError(err) {
    if (this.sockets && this.sockets.listenerCount("error") > 0) {
      fire(this.sockets, "error", [err], (again) => console.error("iobus: an error listener threw:", again));
    } else {
      console.error("iobus: a handler threw:", err);
    }
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
      if (!this._handlers.hasPattern) this._handlers.registerPattern(DYNAMIC, DYNAMIC_PATTERN);
      nsp._registration = this._handlers.dynamicId;
    } else {
      let key = String(name);
      if (key[0] !== "/") key = `/${key}`;
      nsp = this._nsps.get(key);
      if (!nsp) {
        nsp = new Namespace(this, key);
        this._nsps.set(key, nsp);
        nsp._registration = this._handlers.register(nsp, key);
      }
    }
    if (fn) nsp.on("connect", fn);
    return nsp;
  }

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
    this._pump.watch();
    if (callback) process.nextTick(callback);
    return this;
  }

  /**
   * socket.io's `io.adapter()`: the `adapter` option's value (undefined: in
   * memory). The adapter is part of how the library server is made, so it
   * is given as the option (`new Server({ adapter: redisAdapter(...) })`);
   * setting it afterwards throws.
   */
  adapter(value) {
    if (value === undefined) return this.opts.adapter;
    throw new Error("iobus: the adapter is set when the server is made: new Server({ adapter: redisAdapter({ url }) })");
  }

  /** socket.io's `attach(port)`: the same as `listen(port)`. */
  attach(port, opts) {
    return this.listen(port, opts);
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
    // Deliver what the stop queued (disconnects, completions), then free;
    // what the library still held is completed here, exactly once.
    this._pump.finish();
    this._handle = null;
    this._port = null;
    lib.iobus_server_free(handle);
    this._handlers.failAll(this._report);
  }
}

module.exports = { Server };
