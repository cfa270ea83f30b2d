// Every constant the binding declares (lib/native.js, lib/records.js) against
// include/iobus.h, where they are written once: statuses, record kinds, ack
// statuses, dispatch modes, flags, the C signatures the binding calls, the
// callback types it registers, and the record layout — the header's offsets
// and widths, and records built from the header's own description of each
// kind, delivered through a Server. A change in the header fails here until
// the binding follows it.

"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { HEADER_PATH, WIDTHS, readHeader } = require("./iobus-header");
const native = require("../lib/native");
const { Kind, Header } = require("../lib/records");
const iobus = require("iobus");

const { lib, Status, AckStatus, Dispatch, Flag, SIGNATURES, CALLBACK_SIGNATURES } = native;
const { Server } = iobus;

assert.ok(fs.existsSync(HEADER_PATH), `${HEADER_PATH} is where the C ABI is declared`);
const header = readHeader();

/** An enum of the header as { SUFFIX: value }, its `prefix` taken off every name. */
function enumValues(name, prefix) {
  const values = header.enums[name];
  assert.ok(values, `iobus.h declares enum ${name}`);
  return Object.fromEntries(
    Object.entries(values).map(([key, value]) => {
      assert.ok(key.startsWith(prefix), `${key} starts with ${prefix}`);
      return [key.slice(prefix.length), value];
    }),
  );
}

/** The binding's name for each value of the record header, by the header's wording. */
const HEADER_NAMES = [
  [/^size of the record$/, "size"],
  [/^kind$/, "kind"],
  [/^ack status$/, "ackStatus"],
  [/^user data\b/, "user"],
  [/^handle$/, "handle"],
];

function headerName(words) {
  const found = HEADER_NAMES.find(([pattern]) => pattern.test(words));
  assert.ok(found, `the record header names a value the binding does not know: "${words}"`);
  return found[1];
}

/** The argument kinds (lib/native.js) that can stand for a C parameter. */
function argumentKinds(param, previous) {
  const { type, name } = param;
  if (type === "const char *") return ["s", "p"];
  if (type.endsWith("*") || /^iobus_\w+_cb$/.test(type)) return ["p"];
  if (type.startsWith("enum ")) return ["i"];
  switch (type) {
    case "size_t":
      // "n" (SIZE_MAX: NUL-terminated) only for the length of JSON text.
      return previous && /json/.test(previous.name) && /_len$/.test(name) ? ["u", "n"] : ["u"];
    case "uint64_t":
      return ["u"];
    case "uint32_t":
      return ["U"];
    case "int32_t":
      return ["i"];
    case "uint16_t":
      return ["w"];
    case "bool":
      return ["b"];
    default:
      return [];
  }
}

function returnKinds(type) {
  if (type === "void") return ["v"];
  if (type === "const char *") return ["s", "p"];
  if (type.endsWith("*")) return ["p"];
  if (type.startsWith("enum ") || type === "int32_t") return ["i"];
  if (type === "size_t" || type === "uint64_t") return ["u"];
  return [];
}

function checkParameters(what, params, kinds) {
  const count = `${what}: ${params.length} parameters in iobus.h, "${kinds}" in the binding`;
  assert.equal(kinds.length, params.length, count);
  params.forEach((param, i) => {
    const allowed = argumentKinds(param, params[i - 1]);
    assert.ok(
      allowed.includes(kinds[i]),
      `${what}: parameter ${i} (${param.type} ${param.name}) declared as "${kinds[i]}", expected one of [${allowed}]`,
    );
  });
}

/** Writes `value` as a little-endian unsigned integer of `bytes` bytes. */
function writeUnsigned(buf, offset, bytes, value) {
  if (bytes === 8) buf.writeBigUInt64LE(BigInt(value), offset);
  else buf.writeUIntLE(value, offset, bytes);
}

/**
 * A record of `kind` ("CONNECT", …) laid out as the header's prose says:
 * `head` gives the header values by the binding's names, `values` the
 * fields by the header's names (attachments under "attachments").
 */
function buildRecord(kind, head, values) {
  const layout = header.record;
  const lengthBytes = WIDTHS[layout.fields.lengthType];
  const parts = [];
  const field = (bytes) => {
    const length = Buffer.alloc(lengthBytes);
    writeUnsigned(length, 0, lengthBytes, bytes.length);
    parts.push(length, bytes);
  };
  const fields = layout.fields.kinds[kind];
  assert.ok(fields, `iobus.h describes the fields of ${kind} records`);
  for (const item of fields) {
    if (typeof item === "object") {
      const list = values.attachments || [];
      const count = Buffer.alloc(WIDTHS[item.attachments]);
      writeUnsigned(count, 0, count.length, list.length);
      parts.push(count);
      for (const bytes of list) field(bytes);
    } else {
      assert.ok(item in values, `the header names a ${kind} field this test does not know: "${item}"`);
      field(Buffer.from(values[item], "utf8"));
    }
  }
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(layout.header.size + body.length);
  const all = {
    size: out.length,
    kind: header.enums.iobus_record_kind[`IOBUS_RECORD_${kind}`],
    ackStatus: 0,
    user: 0,
    handle: 0,
    ...head,
  };
  for (const f of layout.header.fields) {
    if (f.name !== null) writeUnsigned(out, f.offset, f.bytes, all[headerName(f.name)]);
  }
  body.copy(out, layout.header.size);
  return out;
}

describe("the binding's constants are iobus.h's", () => {
  it("statuses", () => {
    const values = enumValues("iobus_status", "IOBUS_");
    const named = Object.fromEntries(Object.entries(values).map(([k, v]) => [k.replace(/^ERR_/, ""), v]));
    assert.deepEqual({ ...Status }, named);
  });

  it("record kinds, ack statuses, dispatch modes", () => {
    assert.deepEqual({ ...Kind }, enumValues("iobus_record_kind", "IOBUS_RECORD_"));
    assert.deepEqual({ ...AckStatus }, enumValues("iobus_ack_status", "IOBUS_ACK_"));
    assert.deepEqual({ ...Dispatch }, enumValues("iobus_dispatch", "IOBUS_DISPATCH_"));
  });

  it("flags", () => {
    for (const [name, value] of Object.entries(Flag)) {
      assert.equal(header.defines[`IOBUS_${name}`], value, `IOBUS_${name}`);
    }
  });

  it("the version of the library is the header's", () => {
    const { IOBUS_VERSION_MAJOR: major, IOBUS_VERSION_MINOR: minor, IOBUS_VERSION_PATCH: patch } = header.defines;
    assert.equal(iobus.version, `${major}.${minor}.${patch}`);
  });

  it("the signatures of the functions the binding calls", () => {
    for (const [name, [ret, kinds]] of Object.entries(SIGNATURES)) {
      const fn = header.functions[name];
      assert.ok(fn, `iobus.h declares ${name}`);
      const allowed = returnKinds(fn.returns);
      assert.ok(allowed.includes(ret), `${name}: returns ${fn.returns}, declared as "${ret}"`);
      checkParameters(name, fn.params, kinds);
    }
    // Every function the binding holds is one it declared.
    assert.deepEqual(Object.keys(lib).sort(), Object.keys(SIGNATURES).sort());
  });

  it("the callback types", () => {
    for (const [name, kinds] of Object.entries(CALLBACK_SIGNATURES)) {
      const cb = header.callbacks[name];
      assert.ok(cb, `iobus.h declares ${name}`);
      assert.equal(cb.returns, "void", name);
      checkParameters(name, cb.params, kinds);
    }
  });

  it("the record header: size, and each value's offset and width", () => {
    const documented = header.record.header;
    assert.equal(Header.SIZE, documented.size, "header size");
    const declared = Object.keys(Header).filter((k) => k !== "SIZE");
    const named = documented.fields.filter((f) => f.name !== null);
    for (const f of named) {
      const key = headerName(f.name);
      assert.deepEqual(Header[key], { offset: f.offset, bytes: f.bytes }, `"${f.name}" (${key})`);
    }
    const documentedNames = named.map((f) => headerName(f.name));
    assert.deepEqual(declared.sort(), documentedNames.sort(), "the binding declares no other value");
  });
});

describe("records laid out as iobus.h describes them", () => {
  it("are delivered as the header says: connect, event with attachments, acks, disconnect", async (t) => {
    const io = new Server({ serveClient: false });
    // The connect handle below is made up: the call that answers it is
    // replaced for the test.
    const accepted = [];
    const accept = lib.iobus_connect_accept;
    lib.iobus_connect_accept = (handle) => {
      accepted.push(handle);
      return Status.OK;
    };
    t.after(async () => {
      lib.iobus_connect_accept = accept;
      await io.close();
    });
    const errors = [];
    io.on("error", (err) => errors.push(err));
    const seen = [];
    io.on("connection", (socket) => {
      seen.push(["connection", socket.id, socket.handshake.auth, socket.handshake.query]);
      socket.on("m", (...args) => seen.push(["m", ...args]));
      socket.on("disconnecting", (reason) => seen.push(["disconnecting", reason, [...socket.rooms]]));
      socket.on("disconnect", (reason) => seen.push(["disconnect", reason]));
    });
    const replies = [];
    const okId = io._handlers.addAck((err, ...reply) => replies.push(["ok", err, ...reply]));
    const lateId = io._handlers.addAck((err, ...reply) => replies.push(["late", err && err.message, ...reply]));
    const goneId = io._handlers.addAck((err, ...reply) => replies.push(["gone", err && err.message, ...reply]));

    const user = io._handlers.idOf(io.sockets);
    const ack = header.enums.iobus_ack_status;
    const sid = "AbCdEfGhIjKlMnOpQrSt";
    const common = { namespace: "/", "socket id": sid };
    const bytes = Buffer.concat([
      buildRecord("CONNECT", { user, handle: 0x7f00_1234_5678 }, {
        ...common,
        "handshake JSON": '{"auth":{"token":"t"},"query":{"q":"1"}}',
      }),
      buildRecord("EVENT", { user }, {
        ...common,
        "event name": "m",
        "arguments JSON": '["ü",{"_placeholder":true,"num":0}]',
        attachments: [Buffer.from([1, 2, 3])],
      }),
      buildRecord("ACK", { user: okId, ackStatus: ack.IOBUS_ACK_OK }, {
        ...common,
        "arguments JSON": '[7,{"_placeholder":true,"num":0}]',
        attachments: [Buffer.from([9])],
      }),
      buildRecord("ACK", { user: lateId, ackStatus: ack.IOBUS_ACK_TIMEOUT }, { ...common, "arguments JSON": "" }),
      buildRecord("ACK", { user: goneId, ackStatus: ack.IOBUS_ACK_DISCONNECTED }, { ...common, "arguments JSON": "" }),
      buildRecord("DISCONNECT", { user }, { ...common, reason: "transport close", "rooms JSON": `["${sid}","r"]` }),
    ]);
    bytes.copy(io._pump.records);
    io._pump.deliver(bytes.length);

    assert.deepEqual(errors, []);
    assert.deepEqual(accepted, [0x7f00_1234_5678]);
    assert.deepEqual(seen, [
      ["connection", sid, { token: "t" }, { q: "1" }],
      ["m", "ü", Buffer.from([1, 2, 3])],
      ["disconnecting", "transport close", [sid, "r"]],
      ["disconnect", "transport close"],
    ]);
    assert.deepEqual(replies, [
      ["ok", null, 7, Buffer.from([9])],
      ["late", "operation has timed out"],
      ["gone", "socket has been disconnected"],
    ]);
  });
});
