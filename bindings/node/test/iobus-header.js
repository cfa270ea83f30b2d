// Reads include/iobus.h, the one place where the C ABI's constants and the
// record layout are written, into plain values for header.test.js: enums,
// numeric macros, function prototypes, callback types, structs, and the
// layout of iobus_server_poll_records' records from the tables above that
// function.
// Anything it does not recognise is an error, so that a change in the
// header's wording is looked at rather than skipped.

"use strict";

const fs = require("node:fs");
const path = require("node:path");

/** The header of the source tree this package sits in (bindings/node). */
const HEADER_PATH = path.resolve(__dirname, "..", "..", "..", "include", "iobus.h");

/** Byte widths of the integer names the record layout uses. */
const WIDTHS = { u8: 1, u16: 2, u32: 4, u64: 8 };

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

/** The rows of the Markdown table whose header row is `head` (cells trimmed, header and rule left out). */
function table(lines, head) {
  const start = lines.findIndex((line) => line.replace(/\s+/g, " ").trim() === head);
  if (start < 0) throw new Error(`no table "${head}"`);
  const rows = [];
  for (let i = start + 1; i < lines.length && lines[i].trim().startsWith("|"); i++) {
    const cells = lines[i].trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
    if (cells.every((c) => /^-+$/.test(c))) continue;
    rows.push(cells);
  }
  if (rows.length === 0) throw new Error(`table "${head}" has no rows`);
  return rows;
}

/** Removes parenthesised remarks (they may hold commas and colons). */
function withoutRemarks(text) {
  let out = text;
  for (let before = null; before !== out; ) {
    before = out;
    out = out.replace(/\s*\([^()]*\)/g, "");
  }
  return out;
}

/**
 * The record header from its table ("| offset | size | field |"): each row
 * a value ("`u32` size of the whole record, …" → name "size of the whole
 * record") or zero padding ("zero"). The offsets must follow one another and
 * each size must be its type's width. → { fields: [{ name, type, offset,
 * bytes }] (padding has no name), size }.
 */
function recordHeader(lines) {
  const fields = [];
  let offset = 0;
  for (const [at, size, text] of table(lines, "| offset | size | field |")) {
    const bytes = Number(size);
    if (Number(at) !== offset) throw new Error(`record header: "${text}" at ${at}, expected at ${offset}`);
    const value = /^`(u8|u16|u32|u64)`\s+(.+)$/.exec(text);
    if (value) {
      if (WIDTHS[value[1]] !== bytes) throw new Error(`record header: "${text}" is ${size} bytes`);
      const name = withoutRemarks(value[2]).split(/[:,]/)[0].trim();
      fields.push({ name, type: value[1], offset, bytes, text: value[2] });
    } else if (text === "zero") {
      fields.push({ name: null, type: "padding", offset, bytes, text });
    } else {
      throw new Error(`record header: cannot read "${text}"`);
    }
    offset += bytes;
  }
  return { fields, size: offset };
}

/**
 * The items of each kind from the kinds table ("| kind | handle / number |
 * items |"), with the field and attachment encodings from the prose ("A
 * field is a `u32` length …; "attachments" is a `u32` count …"). →
 * { lengthType, kinds: { CONNECT: [names, or { attachments: countType }] },
 * values: { CONNECT: 0 }, handles: { CONNECT: "the `iobus_connect *` to
 * answer" } }.
 */
function recordFields(lines) {
  const prose = lines.join(" ").replace(/\s+/g, " ");
  const length = /A field is a `(u8|u16|u32|u64)` length/.exec(prose);
  const count = /"attachments" is a `(u8|u16|u32|u64)` count followed by that many fields/.exec(prose);
  if (!length || !count) throw new Error("record fields: the field and attachment encodings are not described");
  const kinds = {};
  const values = {};
  const handles = {};
  for (const [kind, handle, items] of table(lines, "| kind | handle / number | items |")) {
    const m = /^([A-Z_]+) \((\d+)\)$/.exec(kind);
    if (!m) throw new Error(`record fields: cannot read the kind "${kind}"`);
    values[m[1]] = Number(m[2]);
    handles[m[1]] = handle;
    kinds[m[1]] = withoutRemarks(items)
      .split(",")
      .map((item) => item.trim())
      .map((item) => (item === "attachments" ? { attachments: count[1] } : item));
  }
  return { lengthType: length[1], kinds, values, handles };
}

/** C struct definitions `typedef struct name { type member; … } name;` → { name: [{ type, name }] }. */
function structs(code) {
  const out = {};
  for (const m of code.matchAll(/typedef\s+struct\s+(\w+)\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    out[m[1]] = m[2]
      .split(";")
      .map((member) => member.trim())
      .filter((member) => member !== "")
      .map(parameter);
  }
  return out;
}

/** Everything header.test.js compares, read from the header at `file`. */
function readHeader(file = HEADER_PATH) {
  const text = fs.readFileSync(file, "utf8");
  const code = withoutComments(text);
  const layout = docComment(text, "iobus_server_poll_records");
  return {
    enums: enums(code),
    defines: defines(code),
    functions: functions(code),
    callbacks: callbacks(code),
    structs: structs(code),
    record: { header: recordHeader(layout), fields: recordFields(layout) },
  };
}

module.exports = { HEADER_PATH, WIDTHS, readHeader };
