// Answering acks the library handed over: an incoming event's (the client
// asked for a reply) or a server-side emit's (another server did). The ack
// function answers once, from any moment; one a listener keeps past its own
// return and then drops unanswered gives its handle back to the library when
// it is collected.

"use strict";

const { lib, Status, JSON_NUL_TERMINATED, statusError, bufArray } = require("./native");
const { encodeArgs } = require("./payload");

// Ack functions that outlived their delivery unanswered: their handles go
// back to the library if the function is collected without being called.
// (An ack answered while its listeners run, the usual case, is never
// registered here.)
const unansweredAcks = new FinalizationRegistry((handle) => lib.iobus_ack_free(handle));

/** The iobus_ack handle behind an ack function: 0 once answered. */
class PendingAck {
  constructor(handle) {
    this.handle = handle;
    /** Whether it is in `unansweredAcks` (with itself as the unregister token). */
    this.watched = false;
  }
}

/**
 * The ack function for `pending`: sends its arguments, or only the first
 * with `firstOnly` (a server-side emit's reply is one value, as in
 * socket.io's cluster adapters).
 */
function ackFunction(pending, firstOnly) {
  return (...reply) => {
    const handle = pending.handle;
    if (handle === 0) return;
    // Encoded first: a reply that cannot be encoded throws and leaves the
    // ack unanswered (and its handle watched).
    const { json, buffers } = encodeArgs(firstOnly ? reply.slice(0, 1) : reply);
    pending.handle = 0;
    if (pending.watched) unansweredAcks.unregister(pending);
    let code;
    if (buffers === null) {
      code = lib.iobus_ack_send(handle, json, JSON_NUL_TERMINATED, 0, 0);
    } else {
      const [bufs, count] = bufArray(buffers);
      code = lib.iobus_ack_send(handle, json, JSON_NUL_TERMINATED, bufs, count);
    }
    // On DISCONNECTED the library has consumed the handle; on other errors
    // it is still ours.
    if (code === Status.OK || code === Status.DISCONNECTED) return;
    lib.iobus_ack_free(handle);
    throw statusError(code, "ack");
  };
}

/**
 * Calls `deliver(ack)` with the ack function of `handle` (an iobus_ack
 * pointer); if the function is still unanswered when `deliver` returns, it
 * is watched so that its handle goes back when it is collected.
 */
function withAck(handle, firstOnly, deliver) {
  const pending = new PendingAck(handle);
  const ack = ackFunction(pending, firstOnly);
  try {
    deliver(ack);
  } finally {
    if (pending.handle !== 0) {
      pending.watched = true;
      unansweredAcks.register(ack, pending.handle, pending);
    }
  }
}

module.exports = { withAck };
