// A socket.io 4.8 node on @socket.io/redis-adapter 8.3, driven by the Rust
// cluster tests (tests/redis_cluster.rs) over stdin/stdout, one JSON object
// per line. It also drives @socket.io/redis-emitter on the same Redis.
//
//   node peer.js <port> <redis-url> [requestsTimeoutMs] [specific]
//
// Commands: {"id": n, "op": ..., ...}; each gets {"id": n, "ok": result} or
// {"id": n, "error": message}. Things that happen on their own (server-side
// events from other nodes) are reported as {"event": ...}. Clients are the
// tests' own; on connection a socket joins `auth.rooms` and keeps
// `auth.data`, and a `relay` event (room, message) is broadcast to the room
// without the sender, as `relayed`.

"use strict";

const readline = require("node:readline");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-adapter");
const { Emitter } = require("@socket.io/redis-emitter");

const [port, url, requestsTimeout = "5000", specific = "shared"] = process.argv.slice(2);

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

// Buffers travel to the test as {"$binary": [bytes]}.
function plain(value) {
  if (Buffer.isBuffer(value)) return { $binary: [...value] };
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
  const pub = createClient({ url });
  const sub = pub.duplicate();
  const emitterClient = pub.duplicate();
  for (const c of [pub, sub, emitterClient]) c.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect(), emitterClient.connect()]);

  const io = new Server({
    adapter: createAdapter(pub, sub, {
      requestsTimeout: Number(requestsTimeout),
      publishOnSpecificResponseChannel: specific === "specific",
    }),
  });
  const emitter = new Emitter(emitterClient);

  io.on("connection", (socket) => {
    const auth = socket.handshake.auth || {};
    if (Array.isArray(auth.rooms)) socket.join(auth.rooms);
    socket.data = auth.data === undefined ? null : auth.data;
    socket.on("relay", (room, message) => socket.broadcast.to(room).emit("relayed", message));
  });
  io.on("hello", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    out({ event: "serverSide", name: "hello", args: plain(args) });
    if (ack) ack("pong-from-node");
  });
  io.on("note", (...args) => out({ event: "serverSide", name: "note", args: plain(args) }));

  const ops = {
    async emit(cmd) {
      const args = revive(cmd.args || []);
      select(cmd.volatile ? io.volatile : io, cmd).emit(cmd.event, ...args);
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
    async fetchSockets(cmd) {
      const sockets = await select(io, cmd).fetchSockets();
      return sockets.map((s) => ({
        id: s.id,
        rooms: [...s.rooms],
        data: s.data,
        handshake: s.handshake,
      }));
    },
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
    async allRooms() {
      return [...(await io.of("/").adapter.allRooms())];
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
    async emitterEmit(cmd) {
      select(emitter, cmd).emit(cmd.event, ...revive(cmd.args || []));
      return true;
    },
    async emitterJoin(cmd) {
      select(emitter, cmd).socketsJoin(cmd.rooms);
      return true;
    },
    async emitterLeave(cmd) {
      select(emitter, cmd).socketsLeave(cmd.rooms);
      return true;
    },
    async emitterDisconnect(cmd) {
      select(emitter, cmd).disconnectSockets(!!cmd.close);
      return true;
    },
    async emitterServerSideEmit(cmd) {
      emitter.serverSideEmit(cmd.event, ...(cmd.args || []));
      return true;
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
