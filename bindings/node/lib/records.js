// Reading what iobus_server_poll_records writes: one record per callback the
// library owes the host, packed into one Buffer. The layout is documented
// once, in include/iobus.h above iobus_server_poll_records: a fixed header
// (declared below as `Header`), then fields, each a u32 length and that many
// bytes, in an order fixed by the record's kind. test/header.test.js checks
// the declarations here against the header, and delivers records built from
// the header's description through the binding.
//
// The reader checks every length against the record and the record against
// the bytes the poll wrote, so a malformed record becomes an exception here
// and never a read outside what the library wrote.

"use strict";

/** iobus_record_kind values (IOBUS_RECORD_<name>). */
const Kind = Object.freeze({
  CONNECT: 0,
  EVENT: 1,
  DISCONNECT: 2,
  ACK: 3,
  BROADCAST_ACK: 4,
  SOCKETS: 5,
  ROOMS: 6,
  SERVER_SIDE_EMIT: 7,
});

/** The status of a CONNECT record whose socket recovers one that dropped. */
const CONNECT_RECOVERED = 1;

/**
 * What the header's handle field holds, by kind: a connect handle to answer,
 * an ack handle to answer (or 0), a number (the replies expected), or
 * nothing (0).
 */
const Handle = Object.freeze({
  CONNECT: "connect",
  EVENT: "ack",
  DISCONNECT: "none",
  ACK: "none",
  BROADCAST_ACK: "count",
  SOCKETS: "none",
  ROOMS: "none",
  SERVER_SIDE_EMIT: "ack",
});

/**
 * The record header, little-endian: where each value sits and its width in
 * bytes (the bytes between the status and the user data are zero).
 */
const Header = Object.freeze({
  SIZE: 24,
  size: Object.freeze({ offset: 0, bytes: 4 }),
  kind: Object.freeze({ offset: 4, bytes: 1 }),
  status: Object.freeze({ offset: 5, bytes: 1 }),
  user: Object.freeze({ offset: 8, bytes: 8 }),
  handle: Object.freeze({ offset: 16, bytes: 8 }),
});

const HEADER_SIZE = Header.SIZE;
const SIZE_AT = Header.size.offset;
const KIND_AT = Header.kind.offset;
const STATUS_AT = Header.status.offset;
const USER_AT = Header.user.offset;
const HANDLE_AT = Header.handle.offset;
const TWO_32 = 4294967296;
const EMPTY = Buffer.alloc(0);

/** A record that cannot be read as the format says. */
class MalformedRecord extends Error {
  constructor(message, framing) {
    super(`iobus: malformed record from iobus_server_poll_records: ${message}`);
    this.code = "IOBUS_MALFORMED_RECORD";
    /** Whether the record's own size is wrong: then nothing after it can be found either. */
    this.framing = framing;
  }
}

/**
 * A cursor over the records of one poll. `start(buf, len)`, then `next()`
 * for each record, whose header is in `kind`, `status`, `user` and `handle`
 * and whose fields are read in order with `text`, `latin1`, `skip`,
 * `attachments`. Reading a field past the record's end throws
 * MalformedRecord; so does `next()` when a record's size does not fit.
 */
class RecordReader {
  constructor() {
    this.buf = EMPTY;
    this.end = 0;
    /** Where the next record starts. */
    this.following = 0;
    /** The current field position and the end of the current record. */
    this.at = 0;
    this.limit = 0;
    this.kind = 0;
    this.status = 0;
    this.user = 0;
    this.handle = 0;
  }

  /** Reads the `len` bytes a poll wrote at the start of `buf`. */
  start(buf, len) {
    if (!(len >= 0 && len <= buf.length)) {
      throw new MalformedRecord(`the poll reports ${len} bytes written into a buffer of ${buf.length}`, true);
    }
    this.buf = buf;
    this.end = len;
    this.following = 0;
    this.at = 0;
    this.limit = 0;
  }

  /** Moves to the next record: false when there is none. */
  next() {
    const begin = this.following;
    const left = this.end - begin;
    if (left <= 0) return false;
    const buf = this.buf;
    if (left < HEADER_SIZE) {
      this.following = this.end;
      throw new MalformedRecord(`${left} trailing bytes, less than a header`, true);
    }
    const size = buf.readUInt32LE(begin + SIZE_AT);
    if (size < HEADER_SIZE || size > left) {
      this.following = this.end;
      throw new MalformedRecord(`a record of ${size} bytes with ${left} bytes left`, true);
    }
    this.kind = buf[begin + KIND_AT];
    this.status = buf[begin + STATUS_AT];
    this.user = buf.readUInt32LE(begin + USER_AT) + buf.readUInt32LE(begin + USER_AT + 4) * TWO_32;
    this.handle = buf.readUInt32LE(begin + HANDLE_AT) + buf.readUInt32LE(begin + HANDLE_AT + 4) * TWO_32;
    this.at = begin + HEADER_SIZE;
    this.limit = begin + size;
    this.following = this.limit;
    return true;
  }

  /** A u32 of the record. */
  u32() {
    const at = this.at;
    if (this.limit - at < 4) throw new MalformedRecord(`kind ${this.kind}: a field runs past the record`, false);
    this.at = at + 4;
    return this.buf.readUInt32LE(at);
  }

  /** Steps over the next field; returns where its bytes start (they end at `this.at`). */
  field() {
    const length = this.u32();
    const begin = this.at;
    if (length > this.limit - begin) {
      throw new MalformedRecord(`kind ${this.kind}: a field of ${length} bytes runs past the record`, false);
    }
    this.at = begin + length;
    return begin;
  }

  /** The next field as UTF-8 text. */
  text() {
    const begin = this.field();
    return this.buf.toString("utf8", begin, this.at);
  }

  /** The next field as text known to be ASCII (socket ids). */
  latin1() {
    const begin = this.field();
    return this.buf.toString("latin1", begin, this.at);
  }

  /** Steps over the next field. */
  skip() {
    this.field();
  }

  /** The attachment count and attachments: an array of Buffer copies, or null for none. */
  attachments() {
    const count = this.u32();
    if (count === 0) return null;
    // Every attachment takes at least its 4-byte length.
    if (count > (this.limit - this.at) / 4) {
      throw new MalformedRecord(`kind ${this.kind}: ${count} attachments cannot fit in the record`, false);
    }
    const out = new Array(count);
    for (let i = 0; i < count; i++) {
      const begin = this.field();
      const length = this.at - begin;
      if (length === 0) {
        out[i] = Buffer.alloc(0);
      } else {
        const copy = Buffer.allocUnsafe(length);
        this.buf.copy(copy, 0, begin, this.at);
        out[i] = copy;
      }
    }
    return out;
  }
}

module.exports = { Kind, Handle, CONNECT_RECOVERED, Header, HEADER_SIZE, RecordReader, MalformedRecord };
