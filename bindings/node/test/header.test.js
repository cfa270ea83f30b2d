// Every constant the binding declares (lib/native.js, lib/records.js) against
// include/iobus.h, where they are written once: statuses, record kinds, ack
// statuses, dispatch modes, selection flags, the C signatures the binding
// calls, the layout of the structs it builds, and the record layout — the
// header's offsets and widths, what each kind's handle holds, and records
// built from the header's own description of each kind, delivered through a
// Server. A change in the header fails here until the binding follows it.

"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { HEADER_PATH, WIDTHS, readHeader } = require("./iobus-header");
const native = require("../lib/native");
const { Kind, Handle, CONNECT_RECOVERED, Header } = require("../lib/records");
const iobus = require("iobus");

const { lib, Status, AckStatus, Dispatch, RedisMode, Flag, SelectionLayout, BufLayout, SIGNATURES } = native;
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
  [/^size of the (whole )?record$/, "size"],
  [/^kind$/, "kind"],
  [/^status$/, "status"],
  [/^user data$/, "user"],
  [/^handle( or number)?$/, "handle"],
];

/** What a kind's handle holds (records.js's Handle), by the kinds table's wording. */
const HANDLE_MEANINGS = [
  [/^the `iobus_connect \*` to answer$/, "connect"],
  [/^the `iobus_ack \*` to answer\b.*, or 0\b/, "ack"],
  [/^a number: the replies expected$/, "count"],
  [/^0$/, "none"],
];

/** Sizes and alignments of the C member types on a 64-bit (LP64) host. */
function cType(type) {
  if (type.endsWith("*")) return { size: 8, align: 8 };
  const sizes = { size_t: 8, uint64_t: 8, int64_t: 8, uint32_t: 4, int32_t: 4, uint16_t: 2, uint8_t: 1, bool: 1 };
  assert.ok(sizes[type] !== undefined, `a struct member of type ${type} this test cannot lay out`);
  return { size: sizes[type], align: sizes[type] };
}

/** `struct name` laid out as a 64-bit C compiler does: { SIZE, member: { offset, bytes } }. */
function structLayout(name) {
  const members = header.structs[name];
  assert.ok(members, `iobus.h declares struct ${name}`);
  const out = {};
  let offset = 0;
  let align = 1;
  for (const member of members) {
    const t = cType(member.type);
    offset = Math.ceil(offset / t.align) * t.align;
    out[member.name] = { offset, bytes: t.size };
    offset += t.size;
    align = Math.max(align, t.align);
  }
  return { SIZE: Math.ceil(offset / align) * align, ...out };
}

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
      return previous && /json/.test(previous.name) && /(^|_)len$/.test(name) ? ["u", "n"] : ["u"];
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
    status: 0,
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
    assert.deepEqual({ ...RedisMode }, enumValues("iobus_redis_mode", "IOBUS_REDIS_"));
  });

  it("selection flags: every one of the header's, with its value", () => {
    const documented = Object.fromEntries(
      Object.entries(header.defines)
        .filter(([name]) => name.startsWith("IOBUS_SELECTION_"))
        .map(([name, value]) => [name.slice("IOBUS_".length), value]),
    );
    assert.ok(Object.keys(documented).length > 0, "iobus.h defines IOBUS_SELECTION_* flags");
    assert.deepEqual({ ...Flag }, documented);
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

  it("the structs the binding builds: iobus_selection and iobus_buf, member by member", () => {
    assert.deepEqual(JSON.parse(JSON.stringify(SelectionLayout)), structLayout("iobus_selection"));
    assert.deepEqual(JSON.parse(JSON.stringify(BufLayout)), structLayout("iobus_buf"));
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

  it("the status of a CONNECT that recovers a dropped socket", () => {
    const status = header.record.header.fields.find((f) => f.name !== null && headerName(f.name) === "status");
    const m = /\b(\d+) for a CONNECT that recovers\b/.exec(status.text);
    assert.ok(m, `the status says what a recovering CONNECT carries: "${status.text}"`);
    assert.equal(CONNECT_RECOVERED, Number(m[1]));
  });

  it("the kinds table: every kind's value, and what its handle holds", () => {
    const { values, handles } = header.record.fields;
    assert.deepEqual(values, enumValues("iobus_record_kind", "IOBUS_RECORD_"));
    const meanings = Object.fromEntries(
      Object.entries(handles).map(([kind, words]) => {
        const found = HANDLE_MEANINGS.find(([pattern]) => pattern.test(words));
        assert.ok(found, `${kind}: the handle holds something the binding does not know: "${words}"`);
        return [kind, found[1]];
      }),
    );
    assert.deepEqual({ ...Handle }, meanings);
  });
});

describe("records laid out as iobus.h describes them", () => {
  it("are delivered as the header says: every kind, and one the binding does not know is skipped", async (t) => {
    const io = new Server({ serveClient: false });
    // The handles below are made up: the calls that answer them are
    // replaced for the test.
    const accepted = [];
    const sent = [];
    const { iobus_connect_accept: accept, iobus_ack_send: ackSend } = lib;
    lib.iobus_connect_accept = (handle) => {
      accepted.push(handle);
      return Status.OK;
    };
    lib.iobus_ack_send = (handle, json, len, bufs, count) => {
      sent.push([handle, json, count]);
      return Status.OK;
    };
    t.after(async () => {
      lib.iobus_connect_accept = accept;
      lib.iobus_ack_send = ackSend;
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
    io.on("peer news", (...args) => {
      const reply = args.pop();
      seen.push(["peer news", ...args]);
      reply("noted", "only the first argument goes back");
    });
    const done = [];
    const expect = (kind, label) => io._handlers.expect(Kind[kind], (...result) => done.push([label, ...result]));
    const ok = expect("ACK", "ack ok");
    const late = expect("ACK", "ack timeout");
    const gone = expect("ACK", "ack disconnected");
    const many = expect("BROADCAST_ACK", "broadcast ack");
    const sockets = expect("SOCKETS", "sockets");
    const rooms = expect("ROOMS", "rooms");

    const user = io._handlers.idOf(io.sockets);
    const ack = header.enums.iobus_ack_status;
    const sid = "AbCdEfGhIjKlMnOpQrSt";
    const common = { namespace: "/", "socket id": sid };
    const handshake = '{"auth":{"token":"t"},"query":{"q":"1"},"headers":{},"address":"127.0.0.1","url":"/socket.io/?EIO=4","issued":1}';
    const unknown = Buffer.alloc(header.record.header.size + 4);
    unknown.writeUInt32LE(unknown.length, 0);
    unknown[4] = 200;
    const bytes = Buffer.concat([
      buildRecord("CONNECT", { user, handle: 0x7f00_1234_5678 }, { ...common, "handshake JSON": handshake }),
      buildRecord("EVENT", { user }, {
        ...common,
        "event name": "m",
        "arguments JSON": '["ü",{"_placeholder":true,"num":0}]',
        attachments: [Buffer.from([1, 2, 3])],
      }),
      unknown,
      buildRecord("ACK", { user: ok, status: ack.IOBUS_ACK_OK }, {
        ...common,
        "arguments JSON of the reply": '[7,{"_placeholder":true,"num":0}]',
        attachments: [Buffer.from([9])],
      }),
      buildRecord("ACK", { user: late, status: ack.IOBUS_ACK_TIMEOUT }, { ...common, "arguments JSON of the reply": "" }),
      buildRecord("ACK", { user: gone, status: ack.IOBUS_ACK_DISCONNECTED }, {
        ...common,
        "arguments JSON of the reply": "",
      }),
      buildRecord("BROADCAST_ACK", { user: many, status: ack.IOBUS_ACK_TIMEOUT, handle: 3 }, {
        "replies JSON": '[["a",{"_placeholder":true,"num":0}],["b",{"_placeholder":true,"num":1}]]',
        attachments: [Buffer.from([4]), Buffer.from([5])],
      }),
      buildRecord("SOCKETS", { user: sockets }, {
        "sockets JSON": `[{"id":"${"z".repeat(20)}","handshake":${handshake},"rooms":["r","${"z".repeat(20)}"],"data":{"n":1}}]`,
      }),
      buildRecord("ROOMS", { user: rooms }, { "rooms JSON": '["r","s"]' }),
      buildRecord("SERVER_SIDE_EMIT", { user, handle: 0x7f00_0000_0042 }, {
        namespace: "/",
        "socket id": "",
        "event name": "peer news",
        "arguments JSON": "[1,2]",
      }),
      buildRecord("DISCONNECT", { user }, { ...common, reason: "transport close", "rooms JSON": `["${sid}","r"]` }),
    ]);
    bytes.copy(io._pump.records);
    io._pump.deliver(bytes.length);

    assert.deepEqual(errors, []);
    assert.deepEqual(accepted, [0x7f00_1234_5678]);
    assert.deepEqual(seen, [
      ["connection", sid, { token: "t" }, { q: "1" }],
      ["m", "ü", Buffer.from([1, 2, 3])],
      ["peer news", 1, 2],
      ["disconnecting", "transport close", [sid, "r"]],
      ["disconnect", "transport close"],
    ]);
    assert.deepEqual(sent, [[0x7f00_0000_0042, '["noted"]', 0]]);
    const [fetched] = done.find(([label]) => label === "sockets")[1];
    assert.equal(fetched.id, "z".repeat(20));
    assert.deepEqual(fetched.data, { n: 1 });
    assert.deepEqual(done, [
      ["ack ok", ack.IOBUS_ACK_OK, [7, Buffer.from([9])]],
      ["ack timeout", ack.IOBUS_ACK_TIMEOUT, null],
      ["ack disconnected", ack.IOBUS_ACK_DISCONNECTED, null],
      ["broadcast ack", ack.IOBUS_ACK_TIMEOUT, 3, [["a", Buffer.from([4])], ["b", Buffer.from([5])]]],
      ["sockets", [fetched]],
      ["rooms", ["r", "s"]],
    ]);
  });
});
