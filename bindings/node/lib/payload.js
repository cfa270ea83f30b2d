// Event arguments in and out of the C face: JSON text of the argument array,
// with every binary value (Buffer, ArrayBuffer, typed array, DataView)
// replaced by a {"_placeholder":true,"num":N} object and carried beside it as
// attachment N — the same split socket.io-parser makes.

"use strict";

function isBinary(value) {
  return Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

function hasBinary(value) {
  if (value === null || typeof value !== "object") return false;
  if (isBinary(value)) return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (hasBinary(value[i])) return true;
    return false;
  }
  if (value instanceof Date) return false;
  for (const key in value) {
    if (Object.prototype.hasOwnProperty.call(value, key) && hasBinary(value[key])) return true;
  }
  return false;
}

function asBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function replaceBinary(value, buffers) {
  if (value === null || typeof value !== "object") return value;
  if (isBinary(value)) {
    buffers.push(asBuffer(value));
    return { _placeholder: true, num: buffers.length - 1 };
  }
  if (Array.isArray(value)) return value.map((v) => replaceBinary(v, buffers));
  if (value instanceof Date) return value;
  const out = {};
  for (const key in value) {
    if (Object.prototype.hasOwnProperty.call(value, key)) out[key] = replaceBinary(value[key], buffers);
  }
  return out;
}

/** `args` → { json, buffers }: the JSON text of the array and its attachments. */
function encodeArgs(args) {
  if (!hasBinary(args)) return { json: JSON.stringify(args), buffers: null };
  const buffers = [];
  const json = JSON.stringify(replaceBinary(args, buffers));
  return { json, buffers };
}

function fillPlaceholders(value, buffers) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = fillPlaceholders(value[i], buffers);
    return value;
  }
  if (value._placeholder === true && typeof value.num === "number") {
    return value.num >= 0 && value.num < buffers.length ? buffers[value.num] : value;
  }
  for (const key of Object.keys(value)) value[key] = fillPlaceholders(value[key], buffers);
  return value;
}

/** JSON text of an argument array plus attachments → the argument array. */
function decodeArgs(json, buffers) {
  const args = JSON.parse(json);
  if (!buffers || buffers.length === 0) return args;
  return fillPlaceholders(args, buffers);
}

module.exports = { isBinary, hasBinary, encodeArgs, decodeArgs };
