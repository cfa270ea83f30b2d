// ServerOperations: what `io.<operation>` does to sockets. As in socket.io,
// the server's selection, emit and bulk operations (`io.to(room).emit`,
// `io.fetchSockets()`, `io.disconnectSockets()`, …) and its listener methods
// (`io.on("connection")`, `io.off`, …) act on the main namespace,
// `io.sockets`; the work itself is done by the namespace (namespace.js) and
// its BroadcastOperator (broadcast.js). Server extends this class.

"use strict";

const { EventEmitter } = require("node:events");

class ServerOperations {
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

  serverSideEmitWithAck(...args) {
    return this.sockets.serverSideEmitWithAck(...args);
  }
}

// `io.on`, `io.once`, `io.off`, … act on the main namespace's listeners.
for (const method of Object.getOwnPropertyNames(EventEmitter.prototype)) {
  if (method === "constructor" || method === "emit" || typeof EventEmitter.prototype[method] !== "function") continue;
  if (Object.prototype.hasOwnProperty.call(ServerOperations.prototype, method)) continue;
  ServerOperations.prototype[method] = function delegated(...args) {
    return this.sockets[method](...args);
  };
}

module.exports = { ServerOperations };
