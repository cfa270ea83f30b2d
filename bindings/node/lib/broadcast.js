// BroadcastOperator: a selection of the sockets of one namespace (rooms,
// excluded rooms, an excluded sender) and what can be done to it — emit,
// fetchSockets, socketsJoin, socketsLeave, disconnectSockets. Immutable:
// every modifier returns a new operator, as in socket.io.

"use strict";

const { lib, Status, Flag, JSON_NUL_TERMINATED, OUT, check, stringArray, bufArray, takeString } =
  require("./native");
const { encodeArgs } = require("./payload");

// Event names a server may not emit (socket.io's list).
const RESERVED_EVENTS = new Set([
  "connect",
  "connect_error",
  "disconnect",
  "disconnecting",
  "newListener",
  "removeListener",
]);

function roomList(room) {
  return Array.isArray(room) ? room : [room];
}

class BroadcastOperator {
  /**
   * @param {import('./namespace').Namespace} nsp
   * @param {Set<string>} rooms
   * @param {Set<string>} exceptRooms
   * @param {string|null} exceptSid the sender, for broadcasts from a socket
   * @param {{volatile?: boolean, timeout?: number}} flags
   */
  constructor(nsp, rooms = new Set(), exceptRooms = new Set(), exceptSid = null, flags = {}) {
    this.nsp = nsp;
    this.rooms = rooms;
    this.exceptRooms = exceptRooms;
    this.exceptSid = exceptSid;
    this.flags = flags;
  }

  /** Targets a room (or rooms); a socket in several of them receives once. */
  to(room) {
    const rooms = new Set(this.rooms);
    for (const r of roomList(room)) rooms.add(String(r));
    return new BroadcastOperator(this.nsp, rooms, this.exceptRooms, this.exceptSid, this.flags);
  }

  in(room) {
    return this.to(room);
  }

  /** Excludes the sockets of a room (or rooms). */
  except(room) {
    const exceptRooms = new Set(this.exceptRooms);
    for (const r of roomList(room)) exceptRooms.add(String(r));
    return new BroadcastOperator(this.nsp, this.rooms, exceptRooms, this.exceptSid, this.flags);
  }

  /** The packet may be dropped for clients that cannot take it right now. */
  get volatile() {
    return new BroadcastOperator(this.nsp, this.rooms, this.exceptRooms, this.exceptSid, {
      ...this.flags,
      volatile: true,
    });
  }

  /** One server: every broadcast is local. */
  get local() {
    return this;
  }

  /** Accepted for compatibility; iobus does not compress per message. */
  compress() {
    return this;
  }

  /** For `emit(..., callback)`: how long to wait for every client's ack. */
  timeout(ms) {
    return new BroadcastOperator(this.nsp, this.rooms, this.exceptRooms, this.exceptSid, {
      ...this.flags,
      timeout: ms,
    });
  }

  /**
   * Emits to every selected socket; the packet is encoded once. With a
   * callback as the last argument, each socket is asked for an ack and the
   * callback gets `(err, responses)` once all answered or the timeout passed.
   */
  emit(event, ...args) {
    if (RESERVED_EVENTS.has(event)) throw new Error(`"${String(event)}" is a reserved event name`);
    if (args.length > 0 && typeof args[args.length - 1] === "function") {
      const callback = args.pop();
      this._emitWithAcks(event, args, callback);
      return true;
    }
    const server = this.nsp.server;
    if (!server._handle) return true;
    const { json, buffers } = encodeArgs(args);
    const [rooms, roomCount] = stringArray([...this.rooms]);
    const [except, exceptCount] = stringArray([...this.exceptRooms]);
    const [bufs, bufCount] = bufArray(buffers);
    const code = lib.iobus_namespace_emit(
      server._handle,
      this.nsp.name,
      rooms,
      roomCount,
      except,
      exceptCount,
      this.exceptSid,
      this.flags.volatile ? Flag.EMIT_VOLATILE : 0,
      String(event),
      json,
      JSON_NUL_TERMINATED,
      bufs,
      bufCount,
    );
    if (code !== Status.NOT_RUNNING) check(code, `emit "${event}"`);
    return true;
  }

  /** Like `emit` with an ack callback, as a promise of the responses. */
  emitWithAck(event, ...args) {
    return new Promise((resolve, reject) => {
      this.emit(event, ...args, (err, responses) => (err ? reject(err) : resolve(responses)));
    });
  }

  _emitWithAcks(event, args, callback) {
    const sockets = this._selectedSockets();
    const responses = [];
    let pending = sockets.length;
    let done = false;
    let timer = null;
    const finish = (err) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      callback(err, responses);
    };
    if (this.flags.timeout !== undefined) {
      timer = setTimeout(() => finish(new Error("operation has timed out")), this.flags.timeout);
    }
    if (pending === 0) {
      process.nextTick(() => finish(null));
      return;
    }
    // A socket that timed out (or left) means not everyone answered in time.
    let missing = false;
    for (const socket of sockets) {
      socket._emitAck(event, args, { timeout: this.flags.timeout }, (err, ...reply) => {
        if (done) return;
        if (err) missing = true;
        else responses.push(reply[0]);
        pending -= 1;
        if (pending === 0) finish(missing ? new Error("operation has timed out") : null);
      });
    }
  }

  /** The ids of the selected sockets (connected ones, as the library knows them). */
  _selectedIds() {
    const server = this.nsp.server;
    if (!server._handle) return [];
    const ids = this._fetch([...this.rooms]);
    if (this.exceptRooms.size === 0 && this.exceptSid === null) return ids;
    const excluded = new Set(this.exceptRooms.size > 0 ? this._fetch([...this.exceptRooms]) : []);
    if (this.exceptSid !== null) excluded.add(this.exceptSid);
    return ids.filter((id) => !excluded.has(id));
  }

  _fetch(roomNames) {
    const server = this.nsp.server;
    const [rooms, count] = stringArray(roomNames);
    const code = lib.iobus_namespace_fetch_sockets(server._handle, this.nsp.name, rooms, count, OUT, 0);
    if (code === Status.NOT_RUNNING) return [];
    check(code, "fetchSockets");
    return JSON.parse(takeString() || "[]");
  }

  _selectedSockets() {
    const out = [];
    for (const id of this._selectedIds()) {
      const socket = this.nsp.sockets.get(id);
      if (socket) out.push(socket);
    }
    return out;
  }

  /** The selected sockets (this server's Socket objects). */
  fetchSockets() {
    try {
      return Promise.resolve(this._selectedSockets());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Makes the selected sockets join a room (or rooms). */
  socketsJoin(room) {
    this._roomOp(room, "iobus_namespace_sockets_join", (socket, r) => socket.join(r));
  }

  /** Makes the selected sockets leave a room (or rooms). */
  socketsLeave(room) {
    this._roomOp(room, "iobus_namespace_sockets_leave", (socket, r) => socket.leave(r));
  }

  _roomOp(room, fn, perSocket) {
    const server = this.nsp.server;
    if (!server._handle) return;
    if (this._hasExclusions()) {
      for (const socket of this._selectedSockets()) for (const r of roomList(room)) perSocket(socket, String(r));
      return;
    }
    for (const r of roomList(room)) {
      const [rooms, count] = stringArray([...this.rooms]);
      const code = lib[fn](server._handle, this.nsp.name, rooms, count, String(r));
      if (code === Status.NOT_RUNNING) break;
      check(code, fn.replace("iobus_namespace_", ""));
    }
  }

  /** Disconnects the selected sockets; with `close`, their whole connections. */
  disconnectSockets(close = false) {
    const server = this.nsp.server;
    if (!server._handle) return;
    if (this._hasExclusions()) {
      for (const socket of this._selectedSockets()) socket.disconnect(close);
      return;
    }
    for (const socket of this._selectedSockets()) socket.connected = false;
    const [rooms, count] = stringArray([...this.rooms]);
    const code = lib.iobus_namespace_disconnect_sockets(server._handle, this.nsp.name, rooms, count, !!close);
    if (code !== Status.NOT_RUNNING) check(code, "disconnectSockets");
  }

  _hasExclusions() {
    return this.exceptRooms.size > 0 || this.exceptSid !== null;
  }
}

module.exports = { BroadcastOperator, RESERVED_EVENTS };
