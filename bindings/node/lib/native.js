// The C face of iobus as seen from JavaScript: where the shared library is,
// the functions this package calls, and the marshalling between JavaScript
// values and C arguments. Nothing here knows about sockets or namespaces.
//
// Calls go through ffi-napi's libffi binding (a prepared `ffi_cif` per
// function and `ffi_call`), with argument storage allocated once per
// function: ffi-napi's generic ForeignFunction allocates and attaches a
// Buffer per argument on every call, which costs ~10 µs per argument, while
// writing into preallocated storage costs well under a microsecond. In the
// same spirit, strings go to C through a reusable arena and pointers travel as
// plain numbers (addresses). Nothing comes back through calls from C: the
// binding subscribes to records instead of registering callbacks, so events
// and completions arrive as records in a Buffer (see records.js), one C call
// per batch.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const ffi = require("@2060.io/ffi-napi");
const ref = require("@2060.io/ref-napi");
// The libffi entry points under ffi-napi's public API (pinned version).
const binding = require("@2060.io/ffi-napi/lib/bindings");

const PACKAGE_DIR = path.resolve(__dirname, "..");
const LIB_FILE = `libiobus${ffi.LIB_EXT}`;

/**
 * Where the library is looked for, first match wins: `IOBUS_LIBRARY`, the
 * copy the install script put in `native/`, then the cargo build outputs of
 * the source tree this package sits in (`bindings/node` of the iobus repo).
 */
function libraryCandidates() {
  const repo = path.resolve(PACKAGE_DIR, "..", "..");
  const target = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
  const list = [];
  if (process.env.IOBUS_LIBRARY) list.push(path.resolve(process.env.IOBUS_LIBRARY));
  list.push(path.join(PACKAGE_DIR, "native", LIB_FILE));
  list.push(path.join(target, "release", LIB_FILE));
  list.push(path.join(target, "debug", LIB_FILE));
  return list;
}

function locateLibrary() {
  const candidates = libraryCandidates();
  if (process.env.IOBUS_LIBRARY) {
    if (!fs.existsSync(candidates[0])) {
      throw new Error(`iobus: IOBUS_LIBRARY points at ${candidates[0]}, which does not exist`);
    }
    return candidates[0];
  }
  const found = candidates.find((file) => fs.existsSync(file));
  if (!found) {
    throw new Error(
      `iobus: ${LIB_FILE} not found (looked at ${candidates.join(", ")}); ` +
        "reinstall the package (its install script builds the library with cargo) or set IOBUS_LIBRARY",
    );
  }
  return found;
}

const LIBRARY_PATH = locateLibrary();
const dl = new ffi.DynamicLibrary(LIBRARY_PATH, ffi.DynamicLibrary.FLAGS.RTLD_NOW);

// ---- scratch memory --------------------------------------------------------

const TWO_32 = 4294967296;

/** Writes an integer of at most 53 bits as a little-endian u64 (byte stores: no range checks). */
function writeU64(buf, offset, value) {
  const lo = value >>> 0;
  const hi = Math.floor(value / TWO_32) >>> 0;
  buf[offset] = lo;
  buf[offset + 1] = lo >>> 8;
  buf[offset + 2] = lo >>> 16;
  buf[offset + 3] = lo >>> 24;
  buf[offset + 4] = hi;
  buf[offset + 5] = hi >>> 8;
  buf[offset + 6] = hi >>> 16;
  buf[offset + 7] = hi >>> 24;
}

function readU64(buf, offset) {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * TWO_32;
}

/** The address of a Buffer's memory, as a number. */
function addressOf(buf) {
  return ref.address(buf);
}

// Strings and arrays handed to the current call. The arena is reused by
// every call (calls into iobus never nest: the binding registers no C
// callbacks, so the library never calls back into JavaScript); bigger values
// get their own Buffers, held here until the call returns.
const ARENA_SIZE = 64 * 1024;
const arena = Buffer.alloc(ARENA_SIZE);
const arenaBase = addressOf(arena);
let arenaUsed = 0;
const held = [];

/** A NUL-terminated UTF-8 copy of `s` for the current call: its address. */
function cString(s) {
  const text = String(s);
  if (text.length * 3 + 1 <= ARENA_SIZE - arenaUsed) {
    const at = arenaUsed;
    const n = arena.write(text, at, "utf8");
    arena[at + n] = 0;
    arenaUsed = at + n + 1;
    return arenaBase + at;
  }
  const own = Buffer.from(`${text}\0`, "utf8");
  held.push(own);
  return addressOf(own);
}

/** `n` zeroed bytes for the current call, 8-byte aligned: [buffer, address]. */
function scratch(n) {
  const at = (arenaUsed + 7) & ~7;
  if (at + n <= ARENA_SIZE) {
    arenaUsed = at + n;
    const view = arena.subarray(at, at + n).fill(0);
    return [view, arenaBase + at];
  }
  const own = Buffer.alloc(n);
  held.push(own);
  return [own, addressOf(own)];
}

function releaseCallMemory() {
  arenaUsed = 0;
  if (held.length > 0) held.length = 0;
}

// stringArray, bufArray and selection build their values in the arena: build
// them right before the call they are for, since every call releases the
// arena.

/** A `const char *const *` array of names for the current call: [address, count]. */
function stringArray(list) {
  if (!list || list.length === 0) return [0, 0];
  const [array, at] = scratch(8 * list.length);
  for (let i = 0; i < list.length; i++) writeU64(array, 8 * i, cString(list[i]));
  return [at, list.length];
}

/** An `iobus_buf` array of attachments (Buffers) for the current call: [address, count]. */
function bufArray(buffers) {
  if (!buffers || buffers.length === 0) return [0, 0];
  const L = BufLayout;
  const [array, at] = scratch(L.SIZE * buffers.length);
  for (let i = 0; i < buffers.length; i++) {
    const b = buffers[i];
    held.push(b);
    if (b.length > 0) writeU64(array, L.SIZE * i + L.data.offset, addressOf(b));
    writeU64(array, L.SIZE * i + L.len.offset, b.length);
  }
  return [at, buffers.length];
}

/**
 * An `iobus_selection` for the current call: its address. `sel.nsp` is the
 * namespace, `rooms`, `exceptRooms` and `exceptSids` arrays of names,
 * `flags` a combination of Flag bits, `timeoutMs` the ack timeout (0: none).
 */
function selection(sel) {
  const L = SelectionLayout;
  const [rooms, roomCount] = stringArray(sel.rooms);
  const [exceptRooms, exceptRoomCount] = stringArray(sel.exceptRooms);
  const [exceptSids, exceptSidCount] = stringArray(sel.exceptSids);
  const [struct, at] = scratch(L.SIZE);
  writeU64(struct, L.nsp.offset, cString(sel.nsp));
  writeU64(struct, L.rooms.offset, rooms);
  writeU64(struct, L.room_count.offset, roomCount);
  writeU64(struct, L.except_rooms.offset, exceptRooms);
  writeU64(struct, L.except_room_count.offset, exceptRoomCount);
  writeU64(struct, L.except_sids.offset, exceptSids);
  writeU64(struct, L.except_sid_count.offset, exceptSidCount);
  struct.writeUInt32LE((sel.flags || 0) >>> 0, L.flags.offset);
  writeU64(struct, L.timeout_ms.offset, sel.timeoutMs || 0);
  return at;
}

// Out-parameters: one slot each, read right after the call that fills it.
const outSlot = Buffer.alloc(8);
const OUT = addressOf(outSlot);
const lenSlot = Buffer.alloc(8);
const LEN = addressOf(lenSlot);
// iobus_server_poll_records' record count (its byte count goes to LEN).
const countSlot = Buffer.alloc(8);
const COUNT = addressOf(countSlot);

// Reads of memory the library owns, by address. ref-napi reads at "buffer +
// offset" without a bounds check, so an offset from the arena's address
// reaches any address without wrapping it in a new (external) Buffer first,
// which is what makes these reads cheap.

/** The C string at `address` (null for NULL). */
function stringAt(address) {
  return address === 0 ? null : ref.readCString(arena, address - arenaBase);
}

// ---- functions -----------------------------------------------------------------

// Argument kinds: p pointer (number, 0 = NULL), s string (null = NULL),
// u size_t/uint64, U uint32, i int32 or enum, w uint16, b bool, n JSON text
// length (always SIZE_MAX: NUL-terminated). Return kinds: v void, i int32 or
// enum, p pointer, u size_t, s C string.
const ARG_TYPES = {
  p: "pointer",
  s: "pointer",
  u: "uint64",
  U: "uint32",
  i: "int32",
  w: "uint16",
  b: "bool",
  n: "uint64",
};
const RET_TYPES = { v: "void", i: "int32", p: "pointer", u: "uint64", s: "pointer" };

function prepare(ret, kinds) {
  return ffi.CIF(ref.coerceType(RET_TYPES[ret]), [...kinds].map((k) => ref.coerceType(ARG_TYPES[k])));
}

/** Argument storage for one call of a prepared function: [slots, argv]. */
function storage(count) {
  const slots = Buffer.alloc(8 * Math.max(count, 1));
  const argv = Buffer.alloc(8 * Math.max(count, 1));
  const base = addressOf(slots);
  for (let i = 0; i < count; i++) writeU64(argv, 8 * i, base + 8 * i);
  return [slots, argv];
}

function writeArgs(slots, kinds, args) {
  for (let i = 0; i < kinds.length; i++) {
    const v = args[i];
    const at = 8 * i;
    switch (kinds.charCodeAt(i)) {
      case 112: // p
      case 117: // u
        writeU64(slots, at, v || 0);
        break;
      case 115: // s
        writeU64(slots, at, v === null || v === undefined ? 0 : cString(v));
        break;
      case 105: // i
        slots.writeInt32LE(v | 0, at);
        break;
      case 85: // U
        slots.writeUInt32LE(v >>> 0, at);
        break;
      case 119: // w
        slots.writeUInt16LE(v & 0xffff, at);
        break;
      case 98: // b
        slots[at] = v ? 1 : 0;
        break;
      case 110: // n: SIZE_MAX
        slots.writeUInt32LE(0xffffffff, at);
        slots.writeUInt32LE(0xffffffff, at + 4);
        break;
    }
  }
}

function readResult(ret, result) {
  switch (ret) {
    case "i":
      return result.readInt32LE(0);
    case "p":
    case "u":
      return readU64(result, 0);
    case "s":
      return stringAt(readU64(result, 0));
    default:
      return undefined;
  }
}

/** A JavaScript function calling the C function `name`. */
function declare(name, ret, kinds) {
  const cif = prepare(ret, kinds);
  const fn = dl.get(name);
  const [slots, argv] = storage(kinds.length);
  const result = Buffer.alloc(8);
  const call = function callC() {
    try {
      writeArgs(slots, kinds, arguments);
      binding.ffi_call(cif, fn, result, argv);
    } finally {
      releaseCallMemory();
    }
    return readResult(ret, result);
  };
  /**
   * The same call on libuv's thread pool; `callback(err, value)` on the main
   * thread. Numbers and pointers only: the arena is not the call's own.
   */
  call.async = function callAsync(...args) {
    if (kinds.includes("s")) throw new Error(`iobus: ${name} cannot run on the thread pool`);
    const callback = args.pop();
    const [ownSlots, ownArgv] = storage(kinds.length);
    const own = Buffer.alloc(8);
    writeArgs(ownSlots, kinds, args);
    binding.ffi_call_async(cif, fn, own, ownArgv, (err) => {
      // Referenced until here: the thread pool reads them until it is done.
      void [ownSlots, ownArgv, fn];
      callback(err || null, err ? undefined : readResult(ret, own));
    });
  };
  return call;
}

/** The C functions this package calls (test/header.test.js checks them against iobus.h). */
const SIGNATURES = Object.freeze({
  iobus_last_error: ["s", ""],
  iobus_version: ["s", ""],
  iobus_string_free: ["v", "p"],

  iobus_config_new: ["p", ""],
  iobus_config_free: ["v", "p"],
  iobus_config_set_path: ["i", "ps"],
  iobus_config_set_ping_interval: ["i", "pu"],
  iobus_config_set_ping_timeout: ["i", "pu"],
  iobus_config_set_max_payload: ["i", "pu"],
  iobus_config_set_upgrade_timeout: ["i", "pu"],
  iobus_config_set_connect_timeout: ["i", "pu"],
  iobus_config_set_transports: ["i", "pbb"],
  iobus_config_set_allow_upgrades: ["i", "pb"],
  iobus_config_add_cors_origin: ["i", "ps"],
  iobus_config_set_cors_credentials: ["i", "pb"],
  iobus_config_set_cors_max_age: ["i", "pu"],
  iobus_config_set_max_attachments: ["i", "pu"],
  iobus_config_set_max_buffered: ["i", "pu"],
  iobus_config_set_http_header_timeout: ["i", "pu"],
  iobus_config_set_http_keep_alive_timeout: ["i", "pu"],
  iobus_config_set_write_timeout: ["i", "pu"],
  iobus_config_set_max_header_bytes: ["i", "pu"],
  iobus_config_set_max_connections: ["i", "pu"],
  iobus_config_set_worker_threads: ["i", "pu"],
  iobus_config_set_batch_scheduling: ["i", "pb"],
  iobus_config_set_serve_client: ["i", "pb"],
  iobus_config_set_client_dir: ["i", "ps"],
  iobus_config_set_static_dir: ["i", "ps"],
  iobus_config_set_dispatch: ["i", "pi"],
  iobus_config_set_redis: ["i", "pssiu"],
  iobus_config_set_host_queue_limit: ["i", "pu"],
  iobus_config_set_free_timeout: ["i", "pu"],
  iobus_config_set_connection_state_recovery: ["i", "pbubu"],

  iobus_ack_send: ["i", "psnpu"],
  iobus_ack_free: ["v", "p"],

  iobus_connect_accept: ["i", "p"],
  iobus_connect_reject: ["i", "pssn"],

  iobus_server_new: ["i", "pp"],
  iobus_server_start: ["i", "psw"],
  iobus_server_port: ["i", "pp"],
  iobus_server_stop: ["i", "p"],
  iobus_server_free: ["v", "p"],
  iobus_server_poll_fd: ["i", "p"],
  iobus_server_poll_records: ["i", "ppupp"],
  iobus_server_add_namespace_pattern: ["i", "ps"],
  iobus_server_subscribe: ["i", "psisp"],
  iobus_server_unsubscribe: ["i", "psis"],

  iobus_socket_emit: ["i", "psssnpu"],
  iobus_socket_emit_volatile: ["i", "psssnpu"],
  iobus_socket_emit_with_ack: ["i", "psssnpuupp"],
  iobus_socket_join: ["i", "pss"],
  iobus_socket_leave: ["i", "pss"],
  iobus_socket_disconnect: ["i", "psb"],
  iobus_socket_rooms: ["i", "pspp"],
  iobus_socket_data: ["i", "pspp"],
  iobus_socket_set_data: ["i", "pssn"],

  iobus_selection_emit: ["i", "ppssnpu"],
  iobus_selection_emit_with_ack: ["i", "ppssnpupp"],
  iobus_selection_fetch_sockets: ["i", "pppp"],
  iobus_selection_join: ["i", "pppu"],
  iobus_selection_leave: ["i", "pppu"],
  iobus_selection_disconnect: ["i", "ppb"],

  iobus_namespace_all_rooms: ["i", "pspp"],
  iobus_namespace_server_side_emit: ["i", "psssnpu"],
  iobus_namespace_server_side_emit_with_ack: ["i", "psssnpuupp"],
});

const lib = {};
for (const [name, [ret, kinds]] of Object.entries(SIGNATURES)) lib[name] = declare(name, ret, kinds);

// dup(2) from the C library already in the process: the poll descriptor
// belongs to the server, while the stream watching it closes what it is given.
const libc = new ffi.DynamicLibrary(null);
const dup = (() => {
  const cif = prepare("i", "i");
  const fn = libc.get("dup");
  const [slots, argv] = storage(1);
  const result = Buffer.alloc(8);
  return (fd) => {
    slots.writeInt32LE(fd, 0);
    binding.ffi_call(cif, fn, result, argv);
    return result.readInt32LE(0);
  };
})();

// ---- constants ---------------------------------------------------------------
//
// Written once, in include/iobus.h; test/header.test.js checks every value
// here against it.

/** iobus_status values (IOBUS_OK, IOBUS_ERR_<name>). */
const Status = Object.freeze({
  OK: 0,
  NULL_ARGUMENT: 1,
  INVALID_UTF8: 2,
  INVALID_JSON: 3,
  INVALID_ARGUMENT: 4,
  UNKNOWN_SOCKET: 5,
  NOT_RUNNING: 6,
  ALREADY_RUNNING: 7,
  IO: 8,
  RESERVED_EVENT: 9,
  INVALID_BINARY: 10,
  WRONG_STATE: 11,
  DISCONNECTED: 12,
  PANIC: 13,
});

const STATUS_NAMES = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k]));

/** iobus_ack_status values (IOBUS_ACK_<name>): how an emit-with-ack ended. */
const AckStatus = Object.freeze({ OK: 0, TIMEOUT: 1, DISCONNECTED: 2 });

/** iobus_dispatch values (IOBUS_DISPATCH_<name>). */
const Dispatch = Object.freeze({ THREAD: 0, POLL: 1 });
/** `iobus_redis_mode`. */
const RedisMode = Object.freeze({ PUBSUB: 0, PUBSUB_OWN_RESPONSE_CHANNEL: 1, STREAMS: 2 });

/** Flag macros (IOBUS_<name>): the bits of `iobus_selection.flags`. */
const Flag = Object.freeze({ SELECTION_VOLATILE: 1, SELECTION_LOCAL: 2 });

/** The layout of `struct iobus_buf` on a 64-bit host (as SelectionLayout). */
const BufLayout = Object.freeze({
  SIZE: 16,
  data: Object.freeze({ offset: 0, bytes: 8 }),
  len: Object.freeze({ offset: 8, bytes: 8 }),
});

/**
 * The layout of `struct iobus_selection` on a 64-bit host: each member's
 * offset and width in bytes, and the struct's size. test/header.test.js
 * derives them from the header's declaration.
 */
const SelectionLayout = Object.freeze({
  SIZE: 72,
  nsp: Object.freeze({ offset: 0, bytes: 8 }),
  rooms: Object.freeze({ offset: 8, bytes: 8 }),
  room_count: Object.freeze({ offset: 16, bytes: 8 }),
  except_rooms: Object.freeze({ offset: 24, bytes: 8 }),
  except_room_count: Object.freeze({ offset: 32, bytes: 8 }),
  except_sids: Object.freeze({ offset: 40, bytes: 8 }),
  except_sid_count: Object.freeze({ offset: 48, bytes: 8 }),
  flags: Object.freeze({ offset: 56, bytes: 4 }),
  timeout_ms: Object.freeze({ offset: 64, bytes: 8 }),
});

/** Stands in the JSON-length argument positions (declared as SIZE_MAX). */
const JSON_NUL_TERMINATED = -1;

/** An Error for a failed call: the library's message, with the status attached. */
function statusError(code, what) {
  const message = lib.iobus_last_error() || STATUS_NAMES[code] || `status ${code}`;
  const err = new Error(`iobus: ${what}: ${message}`);
  err.code = `IOBUS_ERR_${STATUS_NAMES[code] || code}`;
  err.status = code;
  return err;
}

/** Throws unless `code` is IOBUS_OK. */
function check(code, what) {
  if (code !== Status.OK) throw statusError(code, what);
}

/** Reads and frees the string a call wrote to the OUT slot. */
function takeString() {
  const address = readU64(outSlot, 0);
  if (address === 0) return null;
  const s = stringAt(address);
  lib.iobus_string_free(address);
  return s;
}

/** The pointer a call wrote to the OUT slot. */
function takePointer() {
  return readU64(outSlot, 0);
}

/** The size_t a call wrote to the LEN slot. */
function takeLength() {
  return readU64(lenSlot, 0);
}

/** The uint16 a call wrote to the LEN slot. */
function takeU16() {
  return lenSlot.readUInt16LE(0);
}

/** The size_t iobus_server_poll_records wrote to the COUNT slot. */
function takeCount() {
  return readU64(countSlot, 0);
}

module.exports = {
  lib,
  dup,
  LIBRARY_PATH,
  SIGNATURES,
  Status,
  AckStatus,
  Dispatch,
  RedisMode,
  Flag,
  SelectionLayout,
  BufLayout,
  JSON_NUL_TERMINATED,
  OUT,
  LEN,
  COUNT,
  statusError,
  check,
  stringArray,
  bufArray,
  selection,
  takeString,
  takePointer,
  takeLength,
  takeU16,
  takeCount,
  addressOf,
};
