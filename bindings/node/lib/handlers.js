// Handlers: what the binding registers with the library, and the numbers
// that come back in records to say what a record is for.
//
// - Each namespace (or the one pattern behind every RegExp/function
//   namespace) is registered for connects, events and disconnects; the
//   registration's id is the callbacks' user data, so a record's `user`
//   field names its namespace.
// - Each emit-with-ack takes a completion callback; its id is the user data
//   of that emit, which an ACK record carries back.
//
// The C functions want a C function pointer with each registration, but the
// pump takes what is queued as records (iobus_server_poll_records) instead of
// letting the library call these pointers. The library only calls them from
// iobus_server_free, for what was queued after the last poll (after a stop
// has already wound the network down); nothing can be delivered by then, so
// they only answer what the host owns: a pending connection is refused. (An
// event's unanswered ack handle stays the library's.)

"use strict";

const { lib, check, callback, JSON_NUL_TERMINATED } = require("./native");

/** Stands for the dynamic pattern's registration until there is one. */
const NONE = -1;

class Handlers {
  /**
   * @param {number} handle the iobus_server
   * @param {(err: Error) => void} report
   */
  constructor(handle, report) {
    this.handle = handle;
    const connect = callback("iobus_connect_cb", (id, req) => {
      lib.iobus_connect_reject(req, "server shutting down", null, JSON_NUL_TERMINATED);
    }, report);
    const event = callback("iobus_event_cb", noop, report);
    const disconnect = callback("iobus_disconnect_cb", noop, report);
    const ack = callback("iobus_ack_cb", noop, report);
    // Referenced for the server's lifetime: C may call them until it is freed.
    this._keep = [connect.keep, event.keep, disconnect.keep, ack.keep];
    this._connect = connect.address;
    this._event = event.address;
    this._disconnect = disconnect.address;
    /** The completion pointer every emit-with-ack passes. */
    this.ackCallback = ack.address;
    /** Registration id → namespace object (or the dynamic marker). */
    this._byId = [];
    /** The registration id of the dynamic pattern, NONE until registered. */
    this.dynamicId = NONE;
    this._acks = new Map();
    this._nextAckId = 1;
  }

  // ---- namespaces --------------------------------------------------------------

  /** Registers connect, event and disconnect handlers for `pattern`; returns the id. */
  register(target, pattern) {
    const id = this._byId.length;
    this._byId.push(target);
    const h = this.handle;
    check(lib.iobus_server_on_connect(h, pattern, this._connect, id), "on_connect");
    check(lib.iobus_server_on_any(h, pattern, this._event, id), "on_any");
    check(lib.iobus_server_on_disconnect(h, pattern, this._disconnect, id), "on_disconnect");
    return id;
  }

  /** Accepts every namespace matching `pattern` and registers it; returns the id. */
  registerPattern(target, pattern) {
    check(lib.iobus_server_add_namespace_pattern(this.handle, pattern), "namespace pattern");
    this.dynamicId = this.register(target, pattern);
    return this.dynamicId;
  }

  /** Whether the dynamic pattern is registered. */
  get hasPattern() {
    return this.dynamicId !== NONE;
  }

  /** What registration `id` was made for. */
  target(id) {
    return this._byId[id];
  }

  /** The registration id of `target`, or -1. */
  idOf(target) {
    return this._byId.indexOf(target);
  }

  // ---- emit-with-ack completions -------------------------------------------

  /** Keeps `callback(err, ...reply)` until its ACK record; returns the emit's user data. */
  addAck(callback) {
    const id = this._nextAckId++;
    this._acks.set(id, callback);
    return id;
  }

  /** Takes the callback of ack `id` (undefined if it is not waiting). */
  takeAck(id) {
    const callback = this._acks.get(id);
    if (callback !== undefined) this._acks.delete(id);
    return callback;
  }

  /** Takes every callback still waiting (the server is gone). */
  takeAllAcks() {
    const all = [...this._acks.values()];
    this._acks.clear();
    return all;
  }
}

function noop() {}

module.exports = { Handlers };
