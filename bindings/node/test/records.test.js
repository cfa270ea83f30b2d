// The reader of iobus_server_poll_records' format (lib/records.js), on
// records built here byte by byte as the C ABI lays them out.

"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { Kind, RecordReader, MalformedRecord, HEADER_SIZE } = require("../lib/records");

/** A field: u32 length + bytes. */
function field(value) {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(bytes.length, 0);
  return Buffer.concat([len, bytes]);
}

function u32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

/** One record: header (size computed unless given) and body parts. */
function record({ kind, status = 0, user = 0, handle = 0, size }, ...parts) {
  const body = Buffer.concat(parts);
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt32LE(size === undefined ? HEADER_SIZE + body.length : size, 0);
  header[4] = kind;
  header[5] = status;
  header.writeBigUInt64LE(BigInt(user), 8);
  header.writeBigUInt64LE(BigInt(handle), 16);
  return Buffer.concat([header, body]);
}

/** `bytes` at the start of a larger buffer, as the poll leaves them. */
function polled(...records) {
  const bytes = Buffer.concat(records);
  const buf = Buffer.alloc(bytes.length + 64, 0xee);
  bytes.copy(buf);
  return [buf, bytes.length];
}

describe("records", () => {
  it("reads every kind, with header values, text and attachments", () => {
    const [buf, len] = polled(
      record({ kind: Kind.CONNECT, user: 3, handle: 0x7f12_3456_7890 }, field("/chat"), field("AbCdEfGhIjKlMnOpQrSt"), field('{"auth":{}}')),
      record(
        { kind: Kind.EVENT, user: 3, handle: 2 ** 40 + 8 },
        field("/chat"),
        field("AbCdEfGhIjKlMnOpQrSt"),
        field("grüße"),
        field('[{"_placeholder":true,"num":0},"ü✓"]'),
        u32(2),
        field(Buffer.from([1, 2, 3])),
        field(Buffer.alloc(0)),
      ),
      record({ kind: Kind.DISCONNECT, user: 3 }, field("/chat"), field("AbCdEfGhIjKlMnOpQrSt"), field("transport close"), field('["r"]')),
      record({ kind: Kind.ACK, status: 1, user: 2 ** 33 }, field("/"), field("AbCdEfGhIjKlMnOpQrSt"), field(""), u32(0)),
    );
    const rd = new RecordReader();
    rd.start(buf, len);

    assert.equal(rd.next(), true);
    assert.deepEqual([rd.kind, rd.user, rd.handle], [Kind.CONNECT, 3, 0x7f12_3456_7890]);
    assert.deepEqual([rd.text(), rd.latin1(), rd.text()], ["/chat", "AbCdEfGhIjKlMnOpQrSt", '{"auth":{}}']);

    assert.equal(rd.next(), true);
    assert.deepEqual([rd.kind, rd.handle], [Kind.EVENT, 2 ** 40 + 8]);
    rd.skip();
    assert.equal(rd.latin1(), "AbCdEfGhIjKlMnOpQrSt");
    assert.equal(rd.text(), "grüße");
    assert.equal(rd.text(), '[{"_placeholder":true,"num":0},"ü✓"]');
    const attachments = rd.attachments();
    assert.deepEqual(attachments, [Buffer.from([1, 2, 3]), Buffer.alloc(0)]);

    assert.equal(rd.next(), true);
    assert.equal(rd.kind, Kind.DISCONNECT);
    rd.skip();
    rd.skip();
    assert.deepEqual([rd.text(), rd.text()], ["transport close", '["r"]']);

    assert.equal(rd.next(), true);
    assert.deepEqual([rd.kind, rd.status, rd.user, rd.handle], [Kind.ACK, 1, 2 ** 33, 0]);
    rd.skip();
    rd.skip();
    assert.equal(rd.text(), "");
    assert.equal(rd.attachments(), null);
    assert.equal(rd.next(), false);
    assert.equal(rd.next(), false);

    // Attachments are copies: the next poll reuses the buffer.
    buf.fill(0);
    assert.deepEqual(attachments[0], Buffer.from([1, 2, 3]));
  });

  it("nothing written: no records", () => {
    const rd = new RecordReader();
    rd.start(Buffer.alloc(64), 0);
    assert.equal(rd.next(), false);
  });

  it("a field longer than its record is malformed, and the next record is still found", () => {
    const bad = record({ kind: Kind.EVENT, user: 1 }, field("/"), u32(1000), Buffer.from("short"));
    const good = record({ kind: Kind.DISCONNECT, user: 1 }, field("/"), field("s"), field("r"), field("[]"));
    const [buf, len] = polled(bad, good);
    const rd = new RecordReader();
    rd.start(buf, len);
    assert.equal(rd.next(), true);
    rd.skip();
    assert.throws(() => rd.text(), (err) => err instanceof MalformedRecord && err.framing === false);
    assert.equal(rd.next(), true);
    assert.equal(rd.kind, Kind.DISCONNECT);
    assert.deepEqual([rd.text(), rd.text(), rd.text(), rd.text()], ["/", "s", "r", "[]"]);
    assert.equal(rd.next(), false);
  });

  it("fields never reach into the next record or past the bytes written", () => {
    // The first record's size excludes its last field's bytes: reading that
    // field must fail rather than read the second record.
    const second = record({ kind: Kind.DISCONNECT }, field("/"), field("s"), field("r"), field("[]"));
    const first = record({ kind: Kind.EVENT, size: HEADER_SIZE + 4 }, field("/x"));
    const [buf, len] = polled(first.subarray(0, HEADER_SIZE + 4), second);
    const rd = new RecordReader();
    rd.start(buf, len);
    assert.equal(rd.next(), true);
    assert.throws(() => rd.text(), MalformedRecord);
    assert.equal(rd.next(), true);
    assert.equal(rd.kind, Kind.DISCONNECT);

    // A count of attachments that cannot fit.
    const [buf2, len2] = polled(record({ kind: Kind.ACK }, field("/"), field("s"), field("[]"), u32(0xffffffff)));
    rd.start(buf2, len2);
    assert.equal(rd.next(), true);
    rd.skip();
    rd.skip();
    rd.skip();
    assert.throws(() => rd.attachments(), MalformedRecord);

    // A u32 cut by the end of the record.
    const [buf3, len3] = polled(record({ kind: Kind.EVENT }, Buffer.from([1, 0])));
    rd.start(buf3, len3);
    assert.equal(rd.next(), true);
    assert.throws(() => rd.skip(), MalformedRecord);
  });

  it("a record whose size is wrong ends the batch", () => {
    const rd = new RecordReader();
    for (const size of [0, 8, HEADER_SIZE - 1, 10_000]) {
      const [buf, len] = polled(record({ kind: Kind.DISCONNECT, size }, field("/")));
      rd.start(buf, len);
      assert.throws(() => rd.next(), (err) => err instanceof MalformedRecord && err.framing === true, `size ${size}`);
      assert.equal(rd.next(), false, `nothing after a size of ${size}`);
    }
    // Fewer bytes left than a header.
    const [buf, len] = polled(record({ kind: Kind.DISCONNECT }, field("/")), Buffer.alloc(10));
    rd.start(buf, len);
    assert.equal(rd.next(), true);
    assert.throws(() => rd.next(), (err) => err.framing === true);
    assert.equal(rd.next(), false);
  });

  it("a byte count the buffer cannot hold is refused", () => {
    const rd = new RecordReader();
    assert.throws(() => rd.start(Buffer.alloc(16), 17), MalformedRecord);
    assert.throws(() => rd.start(Buffer.alloc(16), -1), MalformedRecord);
    assert.throws(() => rd.start(Buffer.alloc(16), NaN), MalformedRecord);
  });
});
