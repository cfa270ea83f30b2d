// A socket.io 4.8 node on @socket.io/redis-streams-adapter 0.3, driven by the
// Rust cluster tests (tests/redis_streams.rs) over stdin/stdout, one JSON
// object per line, like peer.js.
//
//   node streams-peer.js <port> <redis-url> [recoveryMs]
//
// With recoveryMs > 0, connection state recovery is on with that
// maxDisconnectionDuration (skipMiddlewares). On connection a socket joins
// `auth.rooms` and keeps `auth.data` — unless it was recovered, then its
// rooms and data are its session's; every connection is reported as
// {"event": "connection", "id", "recovered"}. A `relay` event (room,
// message) is broadcast to the room without the sender, as `relayed`.

"use strict";

const readline = require("node:readline");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

const [port, url, recoveryMs = "0"] = process.argv.slice(2);

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

// Buffers travel to the test as {"$binary": [bytes]}.
function plain(value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { $binary: [...value] };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") {
    if (Array.isArray(value.$binary)) return Buffer.from(value.$binary);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

function select(target, cmd) {
  let op = target;
  for (const room of cmd.to || []) op = op.to(room);
  for (const room of cmd.except || []) op = op.except(room);
  return op;
}

async function main() {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();

  const recovery = Number(recoveryMs);
  const io = new Server({
    adapter: createAdapter(client),
    connectionStateRecovery: recovery > 0 ? { maxDisconnectionDuration: recovery, skipMiddlewares: true } : undefined,
  });

  io.on("connection", (socket) => {
    out({ event: "connection", id: socket.id, recovered: socket.recovered });
    if (!socket.recovered) {
      const auth = socket.handshake.auth || {};
      if (Array.isArray(auth.rooms)) socket.join(auth.rooms);
      socket.data = auth.data === undefined ? null : auth.data;
    }
    socket.on("relay", (room, message) => socket.broadcast.to(room).emit("relayed", message));
  });
  io.on("hello", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    out({ event: "serverSide", name: "hello", args: plain(args) });
    if (ack) ack("pong-from-node");
  });
  io.on("note", (...args) => out({ event: "serverSide", name: "note", args: plain(args) }));

  const fetch = async (cmd) =>
    (await select(io, cmd).fetchSockets()).map((s) => ({
      id: s.id,
      rooms: [...s.rooms],
      data: s.data,
      handshake: s.handshake,
    }));

  const ops = {
    async emit(cmd) {
      const args = revive(cmd.args || []);
      select(cmd.volatile ? io.volatile : io, cmd).emit(cmd.event, ...args);
      return true;
    },
    // An emit to one socket of this node (stored like a broadcast with recovery on).
    async emitToSocket(cmd) {
      const socket = io.of("/").sockets.get(cmd.sid);
      if (!socket) return false;
      socket.emit(cmd.event, ...revive(cmd.args || []));
      return true;
    },
    async emitWithAck(cmd) {
      const op = select(io, cmd).timeout(cmd.timeout);
      try {
        return { replies: plain(await op.emitWithAck(cmd.event, ...(cmd.args || []))), timedOut: false };
      } catch (e) {
        return { replies: [], timedOut: true };
      }
    },
    fetchSockets: fetch,
    async socketsJoin(cmd) {
      select(io, cmd).socketsJoin(cmd.rooms);
      return true;
    },
    async socketsLeave(cmd) {
      select(io, cmd).socketsLeave(cmd.rooms);
      return true;
    },
    async disconnectSockets(cmd) {
      select(io, cmd).disconnectSockets(!!cmd.close);
      return true;
    },
    // The streams adapter has no request for rooms: the rooms of every
    // node's sockets.
    async allRooms() {
      return [...new Set((await fetch({})).flatMap((s) => s.rooms))];
    },
    async serverSideEmit(cmd) {
      io.serverSideEmit(cmd.event, ...(cmd.args || []));
      return true;
    },
    async serverSideEmitWithAck(cmd) {
      try {
        return { replies: await io.serverSideEmitWithAck(cmd.event, ...(cmd.args || [])), timedOut: false };
      } catch (e) {
        return { replies: [], timedOut: true };
      }
    },
  };

  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      return;
    }
    const op = ops[cmd.op];
    if (!op) return out({ id: cmd.id, error: `unknown op ${cmd.op}` });
    try {
      out({ id: cmd.id, ok: await op(cmd) });
    } catch (e) {
      out({ id: cmd.id, error: String(e && e.message) });
    }
  });
  lines.on("close", () => process.exit(0));

  io.listen(Number(port));
  out({ event: "ready", uid: io.of("/").adapter.uid });
}

main().catch((e) => {
  out({ event: "fatal", error: String(e && e.stack) });
  process.exit(1);
});
