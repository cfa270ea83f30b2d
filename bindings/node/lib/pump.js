// RecordPump: where the library's threads meet Node's single thread.
//
// - The server runs in IOBUS_DISPATCH_POLL mode: the library's network
//   threads only queue callbacks, and a unix socket (iobus_server_poll_fd)
//   becomes readable when some are pending (once the network thread has
//   finished the work in hand, so a wake-up usually finds a burst queued).
// - A net.Socket watches (a duplicate of) that descriptor from libuv, so a
//   wake-up is an ordinary I/O event on the main thread. The descriptor is
//   the only wake-up: the library re-arms it so that a callback queued while
//   a poll finishes signals it again (test/wakeup.test.js holds it to that).
// - On a wake-up, one iobus_server_poll_records call takes the queued
//   callbacks as records (records.js) into one persistent Buffer, as many as
//   fit; they are then read straight from that Buffer and handed, in order,
//   to `deliver`, whose listeners may call back into the library freely (the
//   poll has returned by then). When more were pending than fit, the library
//   signals the descriptor again and the rest follow on the next turn of the
//   loop, so I/O and timers are never starved.
//
// Nothing here knows what a record means (delivery.js does).

"use strict";

const net = require("node:net");
const { lib, dup, Status, LEN, COUNT, statusError, takeLength, takeCount, addressOf } = require("./native");
const { RecordReader, MalformedRecord } = require("./records");

/**
 * The record Buffer's starting size: what one wake-up takes at most before
 * the loop gets a turn again (a record bigger than this grows the Buffer to
 * its size).
 */
const RECORD_BUFFER_SIZE = 256 * 1024;

class RecordPump {
  /**
   * @param {number} handle the iobus_server
   * @param {{deliver(reader: RecordReader): void, release(kind: number, handle: number): void}} sink
   *   `deliver` reads the reader's current record; `release` gives back the
   *   handle of a record that could not be read
   * @param {(err: Error) => void} report
   */
  constructor(handle, sink, report) {
    this.handle = handle;
    this.sink = sink;
    this.report = report;
    /** The Buffer the poll writes records into, kept for the server's lifetime. */
    this.records = Buffer.alloc(RECORD_BUFFER_SIZE);
    this._recordsAddress = addressOf(this.records);
    this._reader = new RecordReader();
    this._pumping = false;
    this._watcher = null;
    this._onReadable = () => {
      this._pump();
    };
  }

  /** Starts watching the poll descriptor (once the server listens). */
  watch() {
    if (this._watcher || !this.handle) return;
    const fd = dup(lib.iobus_server_poll_fd(this.handle));
    if (fd < 0) throw new Error("iobus: cannot watch the poll descriptor");
    // The bytes read are only wake-up tokens: read into one small Buffer and
    // handed straight to the pump, without a stream's per-read allocations.
    this._watcher = new net.Socket({
      fd,
      readable: true,
      writable: false,
      onread: { buffer: Buffer.alloc(64), callback: this._onReadable },
    });
    this._watcher.on("error", this.report);
    // What was queued before the watch began (the descriptor is readable
    // then too; this only saves waiting for libuv's first turn).
    setImmediate(this._onReadable);
  }

  /**
   * Stops watching, then takes and delivers everything still queued (what
   * the stop queued: disconnects, failed acks). The handle is the caller's
   * to free afterwards; the pump no longer uses it.
   */
  finish() {
    if (this._watcher) {
      this._watcher.destroy();
      this._watcher = null;
    }
    const handle = this.handle;
    if (!handle) return;
    this._pumping = true;
    try {
      while (this._take(handle) > 0);
    } finally {
      this._pumping = false;
      this.handle = 0;
    }
  }

  _pump() {
    if (this._pumping || !this.handle) return;
    this._pumping = true;
    try {
      this._take(this.handle);
    } finally {
      this._pumping = false;
    }
  }

  /**
   * One iobus_server_poll_records into the record Buffer, then the delivery
   * of every record it took, in order. Returns how many it took (0 when the
   * queue was empty or the poll failed).
   */
  _take(handle) {
    let code = lib.iobus_server_poll_records(handle, this._recordsAddress, this.records.length, LEN, COUNT);
    if (code === Status.INVALID_ARGUMENT && takeCount() === 0 && takeLength() > this.records.length) {
      // The oldest record alone is bigger than the Buffer: nothing was taken.
      this._grow(takeLength());
      code = lib.iobus_server_poll_records(handle, this._recordsAddress, this.records.length, LEN, COUNT);
    }
    if (code !== Status.OK) {
      this.report(statusError(code, "poll"));
      return 0;
    }
    const count = takeCount();
    if (count > 0) this.deliver(takeLength());
    return count;
  }

  _grow(need) {
    let size = this.records.length;
    while (size < need) size *= 2;
    this.records = Buffer.alloc(size);
    this._recordsAddress = addressOf(this.records);
  }

  /**
   * Reads and delivers the records in the first `len` bytes of the record
   * Buffer. A listener's failure is reported and delivery goes on; so does
   * a malformed record, whose handle is given back, unless its size is what
   * is wrong, which leaves the rest of the batch unreadable.
   */
  deliver(len) {
    const reader = this._reader;
    try {
      reader.start(this.records, len);
    } catch (err) {
      this.report(err);
      return;
    }
    for (;;) {
      try {
        if (!reader.next()) return;
      } catch (err) {
        this.report(err);
        return;
      }
      try {
        this.sink.deliver(reader);
      } catch (err) {
        if (err instanceof MalformedRecord) this.sink.release(reader.kind, reader.handle);
        this.report(err);
      }
    }
  }
}

module.exports = { RecordPump };
