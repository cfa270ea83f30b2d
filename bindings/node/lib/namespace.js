// Namespace: the sockets of one Socket.IO namespace, its connection
// middlewares (`use`), broadcasts, and the events other servers emit to it
// (`serverSideEmit`, heard with `nsp.on(event)`). ParentNamespace: namespaces
// named by a regular expression or a function, whose children are created as
// clients arrive.

"use strict";

const { EventEmitter } = require("node:events");
const { lib, Status, JSON_NUL_TERMINATED, statusError } = require("./native");
const { Kind } = require("./records");
const { BroadcastOperator, RemoteSocket } = require("./broadcast");
const { withAck } = require("./acks");
const { handshakeOf } = require("./handshake");
const { invoke, fire } = require("./listeners");

// Event names a namespace may not emit to its clients (socket.io's list).
const NAMESPACE_RESERVED = new Set(["connect", "connection", "new_namespace"]);

class Namespace extends EventEmitter {
  /**
   * @param {import('./server').Server} server
   * @param {string} name
   */
  constructor(server, name) {
    super();
    this.server = server;
    this.name = name;
    /** Connected sockets by id. */
    this.sockets = new Map();
    this._fns = [];
    /** The id of the library registration that serves it (Handlers). */
    this._registration = -1;
    this.adapter = new NamespaceAdapter(this);
  }

  /** Adds a connection middleware: `fn(socket, next)`; `next(err)` refuses. */
  use(fn) {
    this._fns.push(fn);
    return this;
  }

  _operator() {
    return new BroadcastOperator(this);
  }

  /** The sockets in `room` (or rooms). */
  to(room) {
    return this._operator().to(room);
  }

  in(room) {
    return this._operator().in(room);
  }

  /** Every socket but those in `room` (or rooms). */
  except(room) {
    return this._operator().except(room);
  }

  get volatile() {
    return this._operator().volatile;
  }

  get local() {
    return this._operator().local;
  }

  compress() {
    return this._operator();
  }

  timeout(ms) {
    return this._operator().timeout(ms);
  }

  /** Emits to every socket of the namespace. */
  emit(event, ...args) {
    if (NAMESPACE_RESERVED.has(event)) throw new Error(`"${String(event)}" is a reserved event name`);
    return this._operator().emit(event, ...args);
  }

  emitWithAck(event, ...args) {
    return this._operator().emitWithAck(event, ...args);
  }

  send(...args) {
    this.emit("message", ...args);
    return this;
  }

  write(...args) {
    this.emit("message", ...args);
    return this;
  }

  fetchSockets() {
    return this._operator().fetchSockets();
  }

  socketsJoin(room) {
    this._operator().socketsJoin(room);
  }

  socketsLeave(room) {
    this._operator().socketsLeave(room);
  }

  disconnectSockets(close = false) {
    this._operator().disconnectSockets(close);
  }

  /**
   * Emits to this namespace on the other servers of a cluster (their
   * `nsp.on(event)` listeners); a callback last collects one reply per
   * server. See BroadcastOperator.serverSideEmit.
   */
  serverSideEmit(event, ...args) {
    return this._operator().serverSideEmit(event, ...args);
  }

  serverSideEmitWithAck(event, ...args) {
    return this._operator().serverSideEmitWithAck(event, ...args);
  }

  /**
   * An event another server emitted to this namespace: the namespace's
   * listeners get its arguments, and a reply function last when that server
   * asked for replies (`ackHandle`, an iobus_ack pointer, or null).
   */
  _onServerSideEmit(event, args, ackHandle) {
    const report = this.server._report;
    if (NAMESPACE_RESERVED.has(event) || this.listenerCount(event) === 0) {
      if (ackHandle) lib.iobus_ack_free(ackHandle);
      return;
    }
    if (!ackHandle) {
      fire(this, event, args, report);
      return;
    }
    withAck(ackHandle, true, (ack) => fire(this, event, [...args, ack], report));
  }

  /** A socket fetchSockets found: this process's Socket, or a RemoteSocket. */
  _fetched(info) {
    const local = this.sockets.get(info.id);
    if (local) return local;
    return new RemoteSocket(this, info, handshakeOf(info.handshake));
  }

  _remove(socket) {
    if (this.sockets.get(socket.id) === socket) this.sockets.delete(socket.id);
  }

  /**
   * Runs the middlewares for a new socket, then accepts or refuses it through
   * the library's connect handle `req` (which `server._pending` tracks until
   * it is answered). A recovered socket skips them with the
   * `skipMiddlewares` option (the library has accepted it already).
   */
  _admit(socket, req) {
    const server = this.server;
    const report = server._report;
    const skip = socket.recovered && server._recovery !== null && server._recovery.skipMiddlewares;
    const fns = skip ? [] : this._fns.slice();
    const decide = (err) => {
      if (!server._pending.delete(req)) {
        socket._release(); // answered already (the server closed)
        return;
      }
      if (err) {
        socket._release();
        refuse(req, err);
        return;
      }
      // The client may send as soon as it is accepted, before the listeners
      // below have registered what they listen to: meanwhile the library
      // delivers every event of the namespace (Handlers).
      const handlers = server._handlers;
      handlers.catchAll(this._registration, 1);
      try {
        if (lib.iobus_connect_accept(req) !== Status.OK) {
          socket._release(); // the client left meanwhile
          return;
        }
        this.sockets.set(socket.id, socket);
        socket._onconnect();
        fire(this, "connect", [socket], report);
        fire(this, "connection", [socket], report);
      } finally {
        handlers.catchAll(this._registration, -1);
      }
    };
    const run = (i) => {
      if (i === fns.length) return decide(null);
      let called = false;
      const next = (err) => {
        if (called) return;
        called = true;
        if (err) decide(err);
        else run(i + 1);
      };
      invoke(fns[i], this, [socket, next], (thrown) => {
        report(thrown);
        next(thrown instanceof Error ? thrown : new Error(String(thrown)));
      });
    };
    run(0);
  }
}

/** Answers a connect handle with a refusal: `err.message`, and `err.data` when set. */
function refuse(req, err) {
  const message = err && err.message !== undefined ? String(err.message) : String(err);
  let data = null;
  if (err && err.data !== undefined) {
    try {
      data = JSON.stringify(err.data);
    } catch {
      data = null;
    }
  }
  if (lib.iobus_connect_reject(req, message, data, JSON_NUL_TERMINATED) !== Status.OK) {
    lib.iobus_connect_reject(req, message, null, JSON_NUL_TERMINATED);
  }
}

/**
 * Namespaces named by a RegExp or by `fn(name, auth, next)`; each matching
 * name becomes a child Namespace that shares the parent's middlewares and
 * connection listeners.
 */
class ParentNamespace extends Namespace {
  constructor(server, matcher) {
    super(server, String(matcher));
    this._matcher = matcher;
    this.children = new Set();
  }

  /** Calls `done(matches)` for a namespace name. */
  _matches(name, auth, done) {
    if (this._matcher instanceof RegExp) {
      this._matcher.lastIndex = 0;
      done(this._matcher.test(name));
      return;
    }
    let answered = false;
    const next = (err, allow) => {
      if (answered) return;
      answered = true;
      done(!err && !!allow);
    };
    invoke(this._matcher, null, [name, auth, next], (err) => {
      this.server._report(err);
      next(err);
    });
  }

  _createChild(name) {
    const child = new Namespace(this.server, name);
    child._registration = this._registration;
    child._fns = this._fns.slice();
    for (const event of ["connect", "connection"]) {
      for (const fn of this.listeners(event)) child.on(event, fn);
    }
    child._parent = this;
    this.children.add(child);
    return child;
  }

  /** Emits to every child namespace. */
  emit(event, ...args) {
    if (NAMESPACE_RESERVED.has(event)) throw new Error(`"${String(event)}" is a reserved event name`);
    for (const child of this.children) child.emit(event, ...args);
    return true;
  }

  fetchSockets() {
    return Promise.all([...this.children].map((c) => c.fetchSockets())).then((lists) => lists.flat());
  }

  socketsJoin(room) {
    for (const child of this.children) child.socketsJoin(room);
  }

  socketsLeave(room) {
    for (const child of this.children) child.socketsLeave(room);
  }

  disconnectSockets(close = false) {
    for (const child of this.children) child.disconnectSockets(close);
  }

  serverSideEmit(event, ...args) {
    for (const child of this.children) child.serverSideEmit(event, ...args);
    return true;
  }

  _operator() {
    throw new Error("iobus: select rooms on a child namespace (socket.nsp), not on a parent namespace");
  }
}

/**
 * `nsp.adapter`: what iobus's adapter answers beyond the operations above,
 * shaped as socket.io's cluster adapters show it.
 */
class NamespaceAdapter {
  constructor(nsp) {
    this.nsp = nsp;
  }

  /** Every room with members, on every server, sockets' own rooms included: a Set. */
  allRooms() {
    return new Promise((resolve, reject) => {
      const server = this.nsp.server;
      const handle = server._handle;
      if (!handle) {
        resolve(new Set());
        return;
      }
      const handlers = server._handlers;
      const id = handlers.expect(Kind.ROOMS, (list) => resolve(new Set(list)));
      const code = lib.iobus_namespace_all_rooms(handle, this.nsp.name, 0, id);
      if (code === Status.OK) return;
      handlers.forget(id);
      if (code === Status.NOT_RUNNING) resolve(new Set());
      else reject(statusError(code, "allRooms"));
    });
  }
}

module.exports = { Namespace, ParentNamespace };
