// Reads include/iobus.h, the one place where the C ABI's constants and the
// record layout are written, into plain values for header.test.js: enums,
// numeric macros, function prototypes, callback types, and the layout of
// iobus_server_poll_records' records from the prose above that function.
// Anything it does not recognise is an error, so that a change in the
// header's wording is looked at rather than skipped.

"use strict";

const fs = require("node:fs");
const path = require("node:path");

/** The header of the source tree this package sits in (bindings/node). */
const HEADER_PATH = path.resolve(__dirname, "..", "..", "..", "include", "iobus.h");

/** Byte widths of the integer names the record layout uses. */
const WIDTHS = { u8: 1, u16: 2, u32: 4, u64: 8 };
const NUMBER_WORDS = { one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7 };

function withoutComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

/** `typedef enum name { A = 0, ... } name;` → { name: { A: 0, ... } }. */
function enums(code) {
  const out = {};
  for (const m of code.matchAll(/typedef\s+enum\s+(\w+)\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    const values = {};
    for (const item of m[2].split(",")) {
      const text = item.trim();
      if (text === "") continue;
      const v = /^(\w+)\s*=\s*(-?\d+)$/.exec(text);
      if (!v) throw new Error(`enum ${m[1]}: cannot read "${text}"`);
      values[v[1]] = Number(v[2]);
    }
    out[m[1]] = values;
  }
  return out;
}

/** `#define IOBUS_NAME 123` → { IOBUS_NAME: 123 } (numeric macros only). */
function defines(code) {
  const out = {};
  for (const m of code.matchAll(/^#define\s+(IOBUS_\w+)\s+(-?\d+)\s*$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** "const char *name" → { type: "const char *", name }. */
function parameter(text) {
  const m = /^(.*?)(\w+)$/.exec(text.trim());
  if (!m) throw new Error(`cannot read the parameter "${text}"`);
  return { type: m[1].replace(/\s+/g, " ").replace(/\s*\*\s*/g, " *").trim(), name: m[2] };
}

function parameters(list) {
  const text = list.replace(/\s+/g, " ").trim();
  if (text === "void" || text === "") return [];
  return text.split(",").map(parameter);
}

/** Function prototypes: { name: { returns, params: [{ type, name }] } }. */
function functions(code) {
  const out = {};
  for (const m of code.matchAll(/^([A-Za-z_][\w \t*]*?)\s*\b(iobus_\w+)\s*\(([^)]*)\)\s*;/gm)) {
    if (/^typedef\b/.test(m[1])) continue;
    out[m[2]] = { returns: m[1].replace(/\s+/g, " ").replace(/\s*\*\s*/g, " *").trim(), params: parameters(m[3]) };
  }
  return out;
}

/** Callback types `typedef void (*name)(...)`: { name: { returns, params } }. */
function callbacks(code) {
  const out = {};
  for (const m of code.matchAll(/typedef\s+(\w+)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^)]*)\)\s*;/g)) {
    out[m[2]] = { returns: m[1], params: parameters(m[3]) };
  }
  return out;
}

/** The text of the doc comment right above the declaration of `name`, in one line. */
function docComment(text, name) {
  // The declaration: a line of code (not of a comment) naming it.
  const at = text.search(new RegExp(`^[A-Za-z_][^\\n]*\\b${name}\\s*\\(`, "m"));
  if (at < 0) throw new Error(`${name} is not declared`);
  const end = text.lastIndexOf("*/", at);
  const begin = text.lastIndexOf("/**", end);
  if (begin < 0 || end < 0 || text.slice(end + 2, at).includes(";")) throw new Error(`${name} has no doc comment`);
  return text
    .slice(begin + 3, end)
    .split("\n")
    .map((line) => line.replace(/^\s*\*\s?/, ""));
}

/** The bullets ("- …") of a doc comment, each in one line. */
function bullets(lines) {
  const out = [];
  let open = false;
  for (const line of lines) {
    if (line.startsWith("- ")) {
      out.push(line.slice(2));
      open = true;
    } else if (open && line.trim() !== "") {
      out[out.length - 1] += ` ${line.trim()}`;
    } else {
      open = false;
    }
  }
  return out.map((b) => b.replace(/\s+/g, " ").trim());
}

/** Removes parenthesised remarks (they may hold commas and semicolons). */
function withoutRemarks(text) {
  let out = text;
  for (let before = null; before !== out; ) {
    before = out;
    out = out.replace(/\s*\([^()]*\)/g, "");
  }
  return out;
}

/**
 * The record header from its bullet: "`u32` size of the record (…), `u8`
 * kind (…), …, two zero bytes, `u64` …;" → [{ name, type, offset, bytes }]
 * (padding has no name) and its total size.
 */
function recordHeader(bullet) {
  const items = withoutRemarks(bullet).replace(/[;.]\s*$/, "").split(",");
  const fields = [];
  let offset = 0;
  for (const raw of items) {
    const item = raw.trim();
    const value = /^`(u8|u16|u32|u64)`\s+(.+)$/.exec(item);
    const padding = /^(\w+) zero bytes?$/.exec(item);
    if (value) {
      const bytes = WIDTHS[value[1]];
      fields.push({ name: value[2], type: value[1], offset, bytes });
      offset += bytes;
    } else if (padding && NUMBER_WORDS[padding[1]] !== undefined) {
      const bytes = NUMBER_WORDS[padding[1]];
      fields.push({ name: null, type: "padding", offset, bytes });
      offset += bytes;
    } else {
      throw new Error(`record header: cannot read "${item}"`);
    }
  }
  return { fields, size: offset };
}

/**
 * The fields of each kind from their bullet: "then fields, each a `u32`
 * length …: CONNECT namespace, socket id, handshake JSON; EVENT …, then a
 * `u32` count of attachments and each one as a field; …; ACK …, then the
 * attachments as for EVENT." → { lengthType, kinds: { CONNECT: [names or
 * { attachments: countType }] } }.
 */
function recordFields(bullet) {
  const length = /each a `(u8|u16|u32|u64)` length/.exec(bullet);
  if (!length) throw new Error(`record fields: no field length type in "${bullet}"`);
  const colon = bullet.indexOf(":");
  const clauses = withoutRemarks(bullet.slice(colon + 1)).replace(/\.\s*$/, "").split(";");
  const kinds = {};
  for (const raw of clauses) {
    const m = /^([A-Z]+)\s+(.+)$/.exec(raw.trim());
    if (!m) throw new Error(`record fields: cannot read "${raw.trim()}"`);
    const fields = [];
    for (const rawItem of m[2].split(",")) {
      const item = rawItem.trim();
      const count = /^then a `(u8|u16|u32|u64)` count of attachments and each one as a field$/.exec(item);
      const same = /^then the attachments as for ([A-Z]+)$/.exec(item);
      if (count) {
        fields.push({ attachments: count[1] });
      } else if (same) {
        const other = (kinds[same[1]] || []).find((f) => typeof f === "object");
        if (!other) throw new Error(`record fields: ${m[1]} refers to the attachments of ${same[1]}, which has none`);
        fields.push({ ...other });
      } else if (/^then\b/.test(item)) {
        throw new Error(`record fields: cannot read "${item}"`);
      } else {
        fields.push(item);
      }
    }
    kinds[m[1]] = fields;
  }
  return { lengthType: length[1], kinds };
}

/** Everything header.test.js compares, read from the header at `file`. */
function readHeader(file = HEADER_PATH) {
  const text = fs.readFileSync(file, "utf8");
  const code = withoutComments(text);
  const layout = bullets(docComment(text, "iobus_server_poll_records"));
  const header = layout.find((b) => /^`u\d+` size of the record\b/.test(b));
  const fields = layout.find((b) => /^then fields\b/.test(b));
  if (!header || !fields) throw new Error("iobus_server_poll_records: the record layout bullets are not there");
  return {
    enums: enums(code),
    defines: defines(code),
    functions: functions(code),
    callbacks: callbacks(code),
    record: { header: recordHeader(header), fields: recordFields(fields) },
  };
}

module.exports = { HEADER_PATH, WIDTHS, readHeader };
