#!/usr/bin/env node
// The chat example on the Node binding: the same event contract as main.rs
// (names, rooms, typing notices, direct messages, the tutorial's
// `chat message` broadcast), written against socket.io's server API. Only
// the lines marked "server" differ from a socket.io program; the rest would
// run unchanged on `require("socket.io")`.
//
// Usage: node examples/chat/chat.js [port]   (or env PORT; default 3000)
// Needs the binding installed: `npm install ./bindings/node` at the repo root.
//
// | event | arguments | effect | ack |
// | --- | --- | --- | --- |
// | `join` | name | joins `lobby`; `join` {name, room, id} to the room | {room, users, members} |
// | `chat` | {msg} | `chat` {name, msg, room, ts, id} to the room | {ok} |
// | `switch room` | room | `leave` to the old room, `join` to the new one | {room, users, members} |
// | `typing` | – | `typing` {name} to the room, sender excluded | – |
// | `dm` | {to, msg} | `dm` {from, fromId, msg, ts} to socket `to` | {ok} |
// | `leave` | – | `leave` {name, room, id} to the room, then disconnects | {ok} |
// | `chat message` | text | `chat message` text to everyone | – |
//
// Connection state recovery is on (env CHAT_RECOVERY_MS, default 30000; 0
// turns it off): a page whose connection drops keeps its user for that long.
// Coming back in time, it gets its id, room and every message it missed, and
// the others see nothing of the drop; a DM sent to it meanwhile waits for it.
// Only when it stays away longer does the room get its `leave` notice.

"use strict";

const path = require("node:path");
const { Server } = require("iobus"); // server

const port = Number(process.argv[2] || process.env.PORT || 3000);
const publicDir = process.env.CHAT_PUBLIC_DIR || path.join(__dirname, "public");
const envMs = Number.parseInt(process.env.CHAT_RECOVERY_MS ?? "", 10);
const keepMs = Number.isFinite(envMs) && envMs >= 0 ? envMs : 30000;
const io = new Server({
  staticDir: publicDir, // server: the page and /socket.io/ from one port
  ...(keepMs > 0 && { connectionStateRecovery: { maxDisconnectionDuration: keepMs } }),
});

const LOBBY = "lobby";
const MAX_NAME = 32;
const MAX_ROOM = 40;
const MAX_MSG = 2000;
// How much later than the server's own recovery deadline a user that has not
// come back is let go: by then no recovery of it can be under way.
const EXPIRY_GRACE_MS = 1000;
// Why a socket may come back (socket.io's list).
const RECOVERABLE = new Set([
  "transport error",
  "transport close",
  "forced close",
  "ping timeout",
  "server shutting down",
  "forced server close",
]);
// Users whose connection dropped and may still recover: id -> {user, timer}.
const away = new Map();

// Chat rooms live under a prefix, apart from the per-socket rooms named after ids.
const roomKey = (room) => `chat:${room}`;

/** Trims, drops control characters, and caps the length (in characters). */
function clean(text, max) {
  return Array.from(text.trim())
    .filter((c) => !/\p{Cc}/u.test(c))
    .slice(0, max)
    .join("")
    .trim();
}

/** A non-empty cleaned string, or null. */
function textArg(value, max) {
  if (typeof value !== "string") return null;
  const s = clean(value, max);
  return s ? s : null;
}

/** The message of a `chat` or `dm` payload: {msg}, or a bare string. */
function msgArg(value) {
  let raw = null;
  if (typeof value === "string") raw = value;
  else if (value && typeof value === "object" && !Array.isArray(value) && typeof value.msg === "string") raw = value.msg;
  if (raw === null) return null;
  const s = Array.from(raw).slice(0, MAX_MSG).join("");
  return s.trim() ? s : null;
}

/** Takes the ack callback off the end of an argument list (it may be absent). */
function takeAck(args) {
  return typeof args[args.length - 1] === "function" ? args.pop() : undefined;
}

function reply(ack, value) {
  if (typeof ack === "function") ack(value);
}

function fail(ack, error) {
  reply(ack, { ok: false, error });
}

const byNameThenId = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** {room, users, members} for a room, from the sockets in it. */
async function roster(room) {
  const sockets = await io.in(roomKey(room)).fetchSockets();
  const members = sockets
    .filter((s) => s.data.user)
    .map((s) => ({ id: s.id, name: s.data.user.name }))
    .concat([...away].filter(([, a]) => a.user.room === room).map(([id, a]) => ({ id, name: a.user.name })))
    .sort(byNameThenId);
  return { room, users: members.map((m) => m.name), members };
}

const notice = (socket, user) => ({ name: user.name, room: user.room, id: socket.id });

/** Puts a joined socket into `room` (leaving its current one) and announces it. */
function enter(socket, name, room) {
  const old = socket.data.user;
  const user = { name, room };
  socket.data.user = user;
  if (old && old.room !== room) {
    socket.leave(roomKey(old.room));
    io.to(roomKey(old.room)).emit("leave", notice(socket, old));
  }
  socket.join(roomKey(room));
  io.to(roomKey(room)).emit("join", notice(socket, user));
  return roster(room);
}

/** Takes a socket out of the chat, telling its room. Whether it had joined. */
function depart(socket) {
  const user = socket.data.user;
  if (!user) return false;
  delete socket.data.user;
  socket.leave(roomKey(user.room));
  io.to(roomKey(user.room)).emit("leave", notice(socket, user));
  return true;
}

/** A dropped socket that may recover: its user stays until it is back or the window has passed. */
function keep(socket) {
  const user = socket.data.user;
  if (!user) return;
  const timer = setTimeout(() => {
    if (away.get(socket.id)?.timer !== timer) return;
    away.delete(socket.id);
    io.to(roomKey(user.room)).emit("leave", notice(socket, user));
  }, keepMs + EXPIRY_GRACE_MS);
  timer.unref(); // a closing server does not wait for it
  away.set(socket.id, { user, timer });
}

/** A recovered socket: same id, rooms and data. If its user was let go meanwhile, its room hears it join again. */
function comeBack(socket) {
  const kept = away.get(socket.id);
  if (kept) {
    clearTimeout(kept.timer);
    away.delete(socket.id);
    return;
  }
  const user = socket.data.user;
  if (!user) return;
  socket.join(roomKey(user.room));
  io.to(roomKey(user.room)).emit("join", notice(socket, user));
}

io.on("connection", (socket) => {
  if (socket.recovered) comeBack(socket);

  socket.on("join", async (...args) => {
    const ack = takeAck(args);
    const [name] = args;
    const clean = textArg(name, MAX_NAME);
    if (!clean) return fail(ack, "a name is required");
    reply(ack, await enter(socket, clean, LOBBY));
  });

  socket.on("switch room", async (...args) => {
    const ack = takeAck(args);
    const [room] = args;
    const target = textArg(room, MAX_ROOM);
    if (!target) return fail(ack, "a room name is required");
    const user = socket.data.user;
    if (!user) return fail(ack, "join first");
    reply(ack, await enter(socket, user.name, target));
  });

  socket.on("chat", (...args) => {
    const ack = takeAck(args);
    const [payload] = args;
    const user = socket.data.user;
    if (!user) return fail(ack, "join first");
    const msg = msgArg(payload);
    if (!msg) return fail(ack, "a message is required");
    io.to(roomKey(user.room)).emit("chat", { name: user.name, msg, room: user.room, ts: Date.now(), id: socket.id });
    reply(ack, { ok: true });
  });

  socket.on("typing", () => {
    const user = socket.data.user;
    if (user) socket.to(roomKey(user.room)).volatile.emit("typing", { name: user.name });
  });

  socket.on("dm", (...args) => {
    const ack = takeAck(args);
    const [payload] = args;
    const user = socket.data.user;
    if (!user) return fail(ack, "join first");
    const to = payload && typeof payload === "object" ? payload.to : undefined;
    if (typeof to !== "string") return fail(ack, "a recipient is required");
    const msg = msgArg(payload);
    if (!msg) return fail(ack, "a message is required");
    const dm = { from: user.name, fromId: socket.id, msg, ts: Date.now() };
    const target = io.sockets.sockets.get(to);
    if (target) target.emit("dm", dm);
    // Away for a moment: its own room keeps the DM for its recovery.
    else if (away.has(to)) io.to(to).emit("dm", dm);
    else return fail(ack, "no such user");
    reply(ack, { ok: true });
  });

  socket.on("leave", (...args) => {
    const ack = takeAck(args);
    reply(ack, { ok: depart(socket) });
    socket.disconnect();
  });

  // The Socket.IO tutorial's chat: every message to everyone.
  socket.on("chat message", (...args) => {
    takeAck(args);
    io.emit("chat message", ...args);
  });

  socket.on("disconnect", (reason) => {
    if (keepMs > 0 && RECOVERABLE.has(reason)) keep(socket);
    else depart(socket);
  });
});

try {
  io.listen(port); // server
} catch (err) {
  console.error(`cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
}
console.log(`chat server on http://127.0.0.1:${io.httpServer.address().port}`);

for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => io.close());
