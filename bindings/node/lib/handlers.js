// Handlers: what the binding subscribes to in the library, and the numbers
// that come back in records to say what a record is for. The binding
// registers no C callback: every subscription (iobus_server_subscribe) and
// every completion asked for with a NULL callback comes back as a record.
//
// - Each namespace (or the one pattern behind every RegExp/function
//   namespace) is a registration whose id is the user data of its
//   subscriptions, so a record's `user` field names its namespace.
//   Connections, disconnects and server-side emits are subscribed for the
//   server's lifetime.
// - Events are subscribed by name, for as long as a connected socket of the
//   registration listens to that name; when the last one leaves, the name is
//   unsubscribed again (`off`), and the library drops events nobody listens
//   to without waking JavaScript. Every event ("any", iobus's catch-all) is
//   subscribed while a socket has catch-all listeners (`onAny`) or event
//   middlewares (`socket.use`), and while a connection is being admitted:
//   its client may send as soon as it is accepted, before the `connection`
//   listeners that register its listeners have run (see Namespace._admit).
// - Each completion (an emit-with-ack to one socket or many, a socket fetch,
//   a room list, a server-side emit with acks) gets a fresh id as the user
//   data of the call that asks for it, which its record carries back.

"use strict";

const { lib, check, AckStatus } = require("./native");
const { Kind } = require("./records");

/** Stands for the dynamic pattern's registration until there is one. */
const NONE = -1;

// Event names a client cannot send (the library refuses them): never subscribed.
const LOCAL_EVENTS = new Set(["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]);

/** One namespace (or the dynamic pattern) as the library knows it. */
class Registration {
  constructor(id, pattern, target) {
    this.id = id;
    this.pattern = pattern;
    this.target = target;
    /** Event name → how many connected sockets listen to it. */
    this.listening = new Map();
    /** Sockets with catch-all listeners or middlewares, plus admissions in progress. */
    this.catchAll = 0;
    /** Whether "any" is subscribed. */
    this.any = false;
  }
}

class Handlers {
  /** @param {number} handle the iobus_server (0 once freed: nothing is asked of it then) */
  constructor(handle) {
    this.handle = handle;
    /** Registration id → Registration. */
    this._byId = [];
    /** The registration id of the dynamic pattern, NONE until registered. */
    this.dynamicId = NONE;
    this._completions = new Map();
    this._nextCompletion = 1;
  }

  // ---- namespaces --------------------------------------------------------------

  /** Subscribes `pattern` to connections, disconnects and server-side emits; returns the id. */
  register(target, pattern) {
    const reg = new Registration(this._byId.length, pattern, target);
    this._byId.push(reg);
    for (const kind of [Kind.CONNECT, Kind.DISCONNECT, Kind.SERVER_SIDE_EMIT]) this._subscribe(reg, kind, null);
    return reg.id;
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
    const reg = this._byId[id];
    return reg === undefined ? undefined : reg.target;
  }

  /** The registration id of `target`, or -1. */
  idOf(target) {
    return this._byId.findIndex((reg) => reg.target === target);
  }

  // ---- event subscriptions ----------------------------------------------------

  /** Whether a listener for `event` needs a subscription (strings a client can send). */
  static subscribable(event) {
    return typeof event === "string" && !LOCAL_EVENTS.has(event);
  }

  /** One more socket of registration `id` listens to `event`. */
  listen(id, event) {
    const reg = this._byId[id];
    const count = reg.listening.get(event) || 0;
    reg.listening.set(event, count + 1);
    if (count === 0) this._subscribe(reg, Kind.EVENT, event);
  }

  /** One socket fewer listens to `event`: the last one unsubscribes it. */
  unlisten(id, event) {
    const reg = this._byId[id];
    const count = reg.listening.get(event);
    if (count === undefined) return;
    if (count > 1) {
      reg.listening.set(event, count - 1);
      return;
    }
    reg.listening.delete(event);
    this._unsubscribe(reg, Kind.EVENT, event);
  }

  /** `delta` more (or fewer) reasons to take every event of registration `id`. */
  catchAll(id, delta) {
    const reg = this._byId[id];
    reg.catchAll += delta;
    const want = reg.catchAll > 0;
    if (want === reg.any) return;
    reg.any = want;
    if (want) this._subscribe(reg, Kind.EVENT, null);
    else this._unsubscribe(reg, Kind.EVENT, null);
  }

  _subscribe(reg, kind, event) {
    if (!this.handle) return;
    check(lib.iobus_server_subscribe(this.handle, reg.pattern, kind, event, reg.id), "subscribe");
  }

  _unsubscribe(reg, kind, event) {
    if (!this.handle) return;
    check(lib.iobus_server_unsubscribe(this.handle, reg.pattern, kind, event), "unsubscribe");
  }

  // ---- completions ------------------------------------------------------------

  /**
   * Keeps `done` until the record completing a call of `kind` (a Kind);
   * returns the id to pass as that call's user data. `done` receives, by
   * kind: ACK `(status, args)`, BROADCAST_ACK `(status, expected, replies)`,
   * SOCKETS and ROOMS `(list)`.
   */
  expect(kind, done) {
    const id = this._nextCompletion++;
    this._completions.set(id, { kind, done });
    return id;
  }

  /** Forgets completion `id` (its call failed: no record will come). */
  forget(id) {
    this._completions.delete(id);
  }

  /** Takes completion `id` if it is of `kind` (undefined otherwise). */
  take(id, kind) {
    const completion = this._completions.get(id);
    if (completion === undefined || completion.kind !== kind) return undefined;
    this._completions.delete(id);
    return completion.done;
  }

  /**
   * Completes everything still waiting as the library would have for a
   * server that is gone: acks as disconnected, queries with nothing.
   */
  failAll(report) {
    const all = [...this._completions.values()];
    this._completions.clear();
    this.handle = 0;
    for (const { kind, done } of all) {
      try {
        if (kind === Kind.ACK) done(AckStatus.DISCONNECTED, null);
        else if (kind === Kind.BROADCAST_ACK) done(AckStatus.DISCONNECTED, 0, []);
        else done([]);
      } catch (err) {
        report(err);
      }
    }
  }
}

module.exports = { Handlers };
