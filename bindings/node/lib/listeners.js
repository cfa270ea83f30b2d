// Calling application handlers. Every listener runs on its own: one that
// throws, or returns a promise that rejects, is reported and the others (and
// the server) carry on.

"use strict";

const { EventEmitter } = require("node:events");

/** Calls `fn` with `args` on `self`; a failure goes to `report`. */
function invoke(fn, self, args, report) {
  try {
    const result = fn.apply(self, args);
    if (result && typeof result.then === "function") result.then(undefined, report);
  } catch (err) {
    report(err);
  }
}

/**
 * Emits a local event on an EventEmitter whose own `emit` sends to clients
 * (sockets, namespaces): each listener runs through `invoke`.
 */
function fire(emitter, event, args, report) {
  const listeners = emitter.rawListeners(event);
  if (listeners.length === 0) return false;
  if (listeners.length === 1) {
    invoke(listeners[0], emitter, args, report);
    return true;
  }
  for (const fn of listeners.slice()) invoke(fn, emitter, args, report);
  return true;
}

/** EventEmitter's own `emit`, for the classes that override it. */
const localEmit = EventEmitter.prototype.emit;

module.exports = { invoke, fire, localEmit };
