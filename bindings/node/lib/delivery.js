// Delivery: what one record means to the application's objects. A CONNECT
// becomes a Socket admitted through the namespace's middlewares (creating
// the child of a parent namespace on the way), an EVENT goes to its socket's
// listeners, a DISCONNECT closes its socket, a SERVER_SIDE_EMIT goes to its
// namespace's listeners, and ACK, BROADCAST_ACK, SOCKETS and ROOMS complete
// the call that asked for them. Fields are read in the order include/iobus.h
// gives for each kind; a kind this binding does not know is skipped, as the
// header asks.

"use strict";

const { lib, AckStatus, JSON_NUL_TERMINATED } = require("./native");
const { decodeArgs } = require("./payload");
const { Kind, Handle, CONNECT_RECOVERED } = require("./records");
const { Socket } = require("./socket");
const { handshakeOf } = require("./handshake");
const { fire } = require("./listeners");

/** Kind value → what its handle field holds (records.js's Handle). */
const HANDLE_BY_KIND = Object.fromEntries(Object.entries(Kind).map(([name, value]) => [value, Handle[name]]));

class Delivery {
  /** @param {import('./server').Server} server */
  constructor(server) {
    this.server = server;
    this.handlers = server._handlers;
  }

  /** Delivers the reader's current record; its fields are read here, in order. */
  deliver(rd) {
    const id = rd.user;
    switch (rd.kind) {
      case Kind.CONNECT: {
        const nsp = this._namespaceField(rd, id);
        const sid = rd.latin1();
        const handshake = rd.text();
        return this._connect(id, rd.handle, nsp, sid, handshake, rd.status === CONNECT_RECOVERED);
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
      case Kind.SERVER_SIDE_EMIT: {
        const nsp = this._namespaceField(rd, id);
        rd.skip(); // socket id (empty)
        const name = rd.text();
        const json = rd.text();
        const binary = rd.attachments();
        const ack = rd.handle;
        const namespace = this._namespaceOf(id, nsp);
        if (!namespace) {
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
        namespace._onServerSideEmit(name, args, ack === 0 ? null : ack);
        return undefined;
      }
      case Kind.ACK: {
        rd.skip(); // namespace
        rd.skip(); // socket id
        const status = rd.status;
        const json = rd.text();
        const binary = rd.attachments();
        // Decoded before the completion is taken: one that cannot be read
        // stays waiting (and fails when the server closes).
        const reply = status === AckStatus.OK ? decodeArgs(json, binary) : null;
        const done = this.handlers.take(id, Kind.ACK);
        if (done) done(status, reply);
        return undefined;
      }
      case Kind.BROADCAST_ACK: {
        const expected = rd.handle;
        const status = rd.status;
        const json = rd.text();
        const binary = rd.attachments();
        const replies = decodeArgs(json, binary);
        const done = this.handlers.take(id, Kind.BROADCAST_ACK);
        if (done) done(status, expected, replies);
        return undefined;
      }
      case Kind.SOCKETS:
      case Kind.ROOMS: {
        const list = JSON.parse(rd.text());
        const done = this.handlers.take(id, rd.kind);
        if (done) done(list);
        return undefined;
      }
      default:
        return undefined;
    }
  }

  /** Gives back the handle of a record that could not be read. */
  release(kind, handle) {
    if (handle === 0) return;
    const held = HANDLE_BY_KIND[kind];
    if (held === "connect") {
      this.server._pending.delete(handle);
      lib.iobus_connect_reject(handle, "server error", null, JSON_NUL_TERMINATED);
    } else if (held === "ack") {
      lib.iobus_ack_free(handle);
    }
  }

  /** The namespace field: its name under the dynamic pattern, else skipped (the id tells). */
  _namespaceField(rd, id) {
    if (id === this.handlers.dynamicId) return rd.text();
    rd.skip();
    return null;
  }

  _namespaceOf(id, nsp) {
    return id === this.handlers.dynamicId ? this.server._nsps.get(nsp) : this.handlers.target(id);
  }

  _socketOf(id, nsp, sid) {
    const namespace = this._namespaceOf(id, nsp);
    return namespace ? namespace.sockets.get(sid) : undefined;
  }

  /**
   * A connection to namespace `nsp` (a name only under the dynamic pattern;
   * else registration `id` tells) waiting for a decision through `req`;
   * `recovered` when it brings back a socket that dropped (connection state
   * recovery), whose data the library kept.
   */
  _connect(id, req, nsp, sid, handshakeJson, recovered) {
    const server = this.server;
    server._pending.add(req);
    if (server._closing) {
      server._pending.delete(req);
      lib.iobus_connect_reject(req, "server shutting down", null, JSON_NUL_TERMINATED);
      return;
    }
    let handshake;
    try {
      handshake = handshakeOf(handshakeJson ? JSON.parse(handshakeJson) : {});
    } catch (err) {
      server._pending.delete(req);
      lib.iobus_connect_reject(req, "server error", null, JSON_NUL_TERMINATED);
      throw err;
    }
    const admit = (namespace) => {
      if (!namespace) {
        if (server._pending.delete(req)) {
          lib.iobus_connect_reject(req, "Invalid namespace", null, JSON_NUL_TERMINATED);
        }
        return;
      }
      const socket = new Socket(namespace, sid, handshake);
      if (recovered) socket._recover();
      namespace._admit(socket, req);
    };
    if (id !== this.handlers.dynamicId) return admit(this.handlers.target(id));
    const known = server._nsps.get(nsp);
    if (known) return admit(known);
    // The first parent namespace that matches creates the child.
    const parents = server._parents;
    const tryParent = (i) => {
      if (i === parents.length) return admit(null);
      parents[i]._matches(nsp, handshake.auth, (ok) => {
        if (!ok) return tryParent(i + 1);
        let child = server._nsps.get(nsp);
        if (!child) {
          child = parents[i]._createChild(nsp);
          server._nsps.set(nsp, child);
          fire(server.sockets, "new_namespace", [child], server._report);
        }
        admit(child);
      });
    };
    return tryParent(0);
  }
}

module.exports = { Delivery };
