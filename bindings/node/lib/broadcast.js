// BroadcastOperator: a selection of the sockets of one namespace (rooms,
// excluded rooms, excluded sockets, flags) and what can be done to it —
// emit, emit with acks, fetchSockets, socketsJoin, socketsLeave,
// disconnectSockets, and server-side emits. Immutable: every modifier
// returns a new operator, as in socket.io. Each operation is one C call
// taking an `iobus_selection`: which sockets it reaches is the library's
// business (through its adapter), never computed here. RemoteSocket: a
// socket that fetchSockets found but this process holds no Socket for.

"use strict";

const { lib, Status, AckStatus, Flag, JSON_NUL_TERMINATED, check, statusError, stringArray, bufArray, selection } =
  require("./native");
const { Kind } = require("./records");
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

/**
 * How long a server-side emit waits for the other servers' replies when no
 * timeout was given: socket.io's cluster adapters wait 5000 ms.
 */
const SERVER_SIDE_TIMEOUT_MS = 5000;

function roomList(room) {
  return Array.isArray(room) ? room : [room];
}

/**
 * An ack timeout for the C ABI, where 0 means none: socket.io's `timeout(0)`
 * times out at once, so a given timeout is at least 1 ms.
 */
function timeoutMs(timeout) {
  return timeout === undefined ? 0 : Math.max(1, Math.floor(Number(timeout)) || 0);
}

/** Each reply's first argument, as socket.io keeps it. */
function firstArguments(replies) {
  return replies.map((reply) => reply[0]);
}

class BroadcastOperator {
  /**
   * @param {import('./namespace').Namespace} nsp
   * @param {Set<string>} rooms
   * @param {Set<string>} exceptRooms
   * @param {string[]} exceptSids sockets left out (the sender, for broadcasts from a socket)
   * @param {{volatile?: boolean, local?: boolean, timeout?: number, expectSingleResponse?: boolean}} flags
   */
  constructor(nsp, rooms = new Set(), exceptRooms = new Set(), exceptSids = [], flags = {}) {
    this.nsp = nsp;
    this.rooms = rooms;
    this.exceptRooms = exceptRooms;
    this.exceptSids = exceptSids;
    this.flags = flags;
  }

  _with(flags) {
    return new BroadcastOperator(this.nsp, this.rooms, this.exceptRooms, this.exceptSids, { ...this.flags, ...flags });
  }

  /** Targets a room (or rooms); a socket in several of them receives once. */
  to(room) {
    const rooms = new Set(this.rooms);
    for (const r of roomList(room)) rooms.add(String(r));
    return new BroadcastOperator(this.nsp, rooms, this.exceptRooms, this.exceptSids, this.flags);
  }

  in(room) {
    return this.to(room);
  }

  /** Excludes the sockets of a room (or rooms). */
  except(room) {
    const exceptRooms = new Set(this.exceptRooms);
    for (const r of roomList(room)) exceptRooms.add(String(r));
    return new BroadcastOperator(this.nsp, this.rooms, exceptRooms, this.exceptSids, this.flags);
  }

  /** The packet may be dropped for clients that cannot take it right now. */
  get volatile() {
    return this._with({ volatile: true });
  }

  /** This server's sockets only: an adapter that connects servers does not forward the operation. */
  get local() {
    return this._with({ local: true });
  }

  /** Accepted for compatibility; iobus does not compress per message. */
  compress() {
    return this;
  }

  /** For emits with a callback: how long to wait for every client's ack. */
  timeout(ms) {
    return this._with({ timeout: ms });
  }

  /** The selection as native.selection takes it. */
  _selection() {
    const flags = (this.flags.volatile ? Flag.SELECTION_VOLATILE : 0) | (this.flags.local ? Flag.SELECTION_LOCAL : 0);
    return {
      nsp: this.nsp.name,
      rooms: this.rooms.size > 0 ? [...this.rooms] : null,
      exceptRooms: this.exceptRooms.size > 0 ? [...this.exceptRooms] : null,
      exceptSids: this.exceptSids,
      flags,
      timeoutMs: timeoutMs(this.flags.timeout),
    };
  }

  /**
   * Emits to every selected socket; the packet is encoded once. With a
   * callback as the last argument, each socket is asked for an ack and the
   * callback gets `(err, responses)` once all answered (or left), or when
   * the timeout passed (then with the responses that arrived).
   */
  emit(event, ...args) {
    if (RESERVED_EVENTS.has(event)) throw new Error(`"${String(event)}" is a reserved event name`);
    if (args.length > 0 && typeof args[args.length - 1] === "function") {
      const callback = args.pop();
      this._emitWithAcks(event, args, callback);
      return true;
    }
    const handle = this.nsp.server._handle;
    if (!handle) return true;
    const { json, buffers } = encodeArgs(args);
    const [bufs, bufCount] = bufArray(buffers);
    const code = lib.iobus_selection_emit(
      handle,
      selection(this._selection()),
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
      args.push((err, responses) => {
        if (err) {
          err.responses = responses;
          reject(err);
        } else {
          resolve(responses);
        }
      });
      this.emit(event, ...args);
    });
  }

  _emitWithAcks(event, args, callback) {
    const server = this.nsp.server;
    const single = !!this.flags.expectSingleResponse;
    const handle = server._handle;
    if (!handle) {
      process.nextTick(callback, null, single ? undefined : []);
      return;
    }
    const { json, buffers } = encodeArgs(args);
    const handlers = server._handlers;
    const id = handlers.expect(Kind.BROADCAST_ACK, (status, expected, replies) => {
      const responses = firstArguments(replies);
      // A client that left without answering is missing too, as with
      // socket.io, which waits for it until the timeout.
      if (status === AckStatus.OK && responses.length >= expected) {
        callback.call(this, null, single ? responses[0] : responses);
      } else {
        const message = status === AckStatus.DISCONNECTED ? "server closed" : "operation has timed out";
        callback.call(this, new Error(message), single ? null : responses);
      }
    });
    const [bufs, bufCount] = bufArray(buffers);
    const code = lib.iobus_selection_emit_with_ack(
      handle,
      selection(this._selection()),
      String(event),
      json,
      JSON_NUL_TERMINATED,
      bufs,
      bufCount,
      0,
      id,
    );
    if (code === Status.OK) return;
    handlers.forget(id);
    if (code === Status.NOT_RUNNING) process.nextTick(callback, null, single ? undefined : []);
    else throw statusError(code, `emit "${event}"`);
  }

  /**
   * The selected sockets, on every server: this process's Socket objects
   * for its own, RemoteSocket objects for the others (id, handshake, rooms,
   * data, and emit, join, leave, disconnect).
   */
  fetchSockets() {
    return new Promise((resolve, reject) => {
      const nsp = this.nsp;
      const server = nsp.server;
      const handle = server._handle;
      if (!handle) {
        resolve([]);
        return;
      }
      const handlers = server._handlers;
      const id = handlers.expect(Kind.SOCKETS, (list) => resolve(list.map((info) => nsp._fetched(info))));
      const code = lib.iobus_selection_fetch_sockets(handle, selection(this._selection()), 0, id);
      if (code === Status.OK) return;
      handlers.forget(id);
      if (code === Status.NOT_RUNNING) resolve([]);
      else reject(statusError(code, "fetchSockets"));
    });
  }

  /** Makes the selected sockets join a room (or rooms). */
  socketsJoin(room) {
    this._rooms(room, lib.iobus_selection_join, "socketsJoin");
  }

  /** Makes the selected sockets leave a room (or rooms). */
  socketsLeave(room) {
    this._rooms(room, lib.iobus_selection_leave, "socketsLeave");
  }

  _rooms(room, fn, what) {
    const handle = this.nsp.server._handle;
    if (!handle) return;
    const names = roomList(room).map(String);
    const sel = selection(this._selection());
    const [rooms, count] = stringArray(names);
    const code = fn(handle, sel, rooms, count);
    if (code !== Status.NOT_RUNNING) check(code, what);
  }

  /** Disconnects the selected sockets; with `close`, their whole connections. */
  disconnectSockets(close = false) {
    const handle = this.nsp.server._handle;
    if (!handle) return;
    const code = lib.iobus_selection_disconnect(handle, selection(this._selection()), !!close);
    if (code !== Status.NOT_RUNNING) check(code, "disconnectSockets");
  }

  /**
   * Emits to the other servers of a cluster (their `nsp.on(event)`
   * listeners), never to clients nor to this server. With a callback last,
   * asks each server for a reply: `callback(err, responses)`, one response
   * per server, after this operator's timeout (default 5000 ms) at most.
   * An iobus server alone has no other server: the callback gets `[]`.
   */
  serverSideEmit(event, ...args) {
    if (RESERVED_EVENTS.has(event)) throw new Error(`"${String(event)}" is a reserved event name`);
    if (this.rooms.size > 0 || this.exceptRooms.size > 0 || this.exceptSids.length > 0) {
      throw new Error("iobus: serverSideEmit goes to servers, not to rooms or sockets");
    }
    const server = this.nsp.server;
    const handle = server._handle;
    const callback = args.length > 0 && typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (!handle) {
      if (callback) process.nextTick(callback, null, []);
      return true;
    }
    const { json, buffers } = encodeArgs(args);
    const [bufs, bufCount] = bufArray(buffers);
    if (!callback) {
      const code = lib.iobus_namespace_server_side_emit(
        handle,
        this.nsp.name,
        String(event),
        json,
        JSON_NUL_TERMINATED,
        bufs,
        bufCount,
      );
      if (code !== Status.NOT_RUNNING) check(code, `serverSideEmit "${event}"`);
      return true;
    }
    const handlers = server._handlers;
    const id = handlers.expect(Kind.BROADCAST_ACK, (status, expected, replies) => {
      const responses = firstArguments(replies);
      if (status === AckStatus.OK && responses.length >= expected) {
        callback(null, responses);
      } else {
        callback(new Error(`timeout reached: only ${responses.length} responses received out of ${expected}`), responses);
      }
    });
    const timeout = this.flags.timeout === undefined ? SERVER_SIDE_TIMEOUT_MS : timeoutMs(this.flags.timeout);
    const code = lib.iobus_namespace_server_side_emit_with_ack(
      handle,
      this.nsp.name,
      String(event),
      json,
      JSON_NUL_TERMINATED,
      bufs,
      bufCount,
      timeout,
      0,
      id,
    );
    if (code === Status.OK) return true;
    handlers.forget(id);
    if (code === Status.NOT_RUNNING) process.nextTick(callback, null, []);
    else throw statusError(code, `serverSideEmit "${event}"`);
    return true;
  }

  /** `serverSideEmit` with a callback, as a promise of the responses. */
  serverSideEmitWithAck(event, ...args) {
    return new Promise((resolve, reject) => {
      args.push((err, responses) => {
        if (err) {
          err.responses = responses;
          reject(err);
        } else {
          resolve(responses);
        }
      });
      this.serverSideEmit(event, ...args);
    });
  }
}

/**
 * A socket fetchSockets found that this process holds no Socket for (it is
 * on another server, or not delivered here yet): what the library reported,
 * and operations that reach it through its own room, as in socket.io.
 */
class RemoteSocket {
  /**
   * @param {import('./namespace').Namespace} nsp
   * @param {{id: string, handshake: object, rooms: string[], data: any}} details
   * @param {object} handshake the handshake in socket.io's shape
   */
  constructor(nsp, details, handshake) {
    this.id = details.id;
    this.handshake = handshake;
    this.rooms = new Set(details.rooms);
    this.data = details.data;
    this.operator = new BroadcastOperator(nsp, new Set([this.id]), new Set(), [], { expectSingleResponse: true });
  }

  /** The next emit's ack callback gets `(err, reply)` and an error after `ms`. */
  timeout(ms) {
    return this.operator.timeout(ms);
  }

  emit(event, ...args) {
    return this.operator.emit(event, ...args);
  }

  join(room) {
    this.operator.socketsJoin(room);
  }

  leave(room) {
    this.operator.socketsLeave(room);
  }

  disconnect(close = false) {
    this.operator.disconnectSockets(close);
    return this;
  }
}

module.exports = { BroadcastOperator, RemoteSocket, RESERVED_EVENTS };
