// The bench contract served by the npm socket.io server, on namespace `/`:
// `join` (room, ack) → join the room and ack with no arguments;
// `broadcast` (room, data) → emit `msg` (data) to everyone in the room;
// `echo` (data, ack) → ack (data);
// `stats` (ack) → ack ({log_packets, log_bytes, heap_bytes}): the packets the
// in-memory adapter keeps for connection state recovery (it does not count
// bytes), and the V8 heap in use after a full collection (with recovery on),
// since the RSS of a garbage-collected heap says little about what it holds.
//
// With BENCH_RECOVERY=1 in the environment (the reconnect jitter scenario),
// `connectionStateRecovery` is on with socket.io's defaults; otherwise off,
// as by default.
//
// With BENCH_REDIS=redis://host:port in the environment (the cluster fan-out
// scenario), the server joins a cluster through `@socket.io/redis-adapter`
// (pub/sub, with a `redis` client pair); otherwise the in-memory adapter.
//
// Usage: node server.js <port>; prints a ready line once listening.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3100);
const httpServer = http.createServer();
const recovery = process.env.BENCH_RECOVERY === "1";
// A full collection before `stats` reads the heap; only in the jitter
// scenario, so that the other scenarios run node as it is by default.
let collect = null;
if (recovery) {
  require("node:v8").setFlagsFromString("--expose-gc");
  collect = require("node:vm").runInNewContext("gc");
}
const io = new Server(httpServer, {
  serveClient: false,
  ...(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true } } : {}),
});
const redisUrl = process.env.BENCH_REDIS || "";
let redisClients = [];

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack();
  });
  socket.on("broadcast", (room, data) => {
    io.to(room).emit("msg", data);
  });
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
  socket.on("stats", (ack) => {
    if (collect) collect();
    const packets = io.of("/").adapter.packets;
    if (typeof ack === "function") {
      ack({
        log_packets: Array.isArray(packets) ? packets.length : null,
        log_bytes: null,
        heap_bytes: collect ? process.memoryUsage().heapUsed : null,
      });
    }
  });
});

async function main() {
  if (redisUrl) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    redisClients = [pub, sub];
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  httpServer.listen(port, "127.0.0.1", () => {
    console.log(
      `socket.io ready on 127.0.0.1:${port} (recovery ${recovery ? "on" : "off"}, adapter ${redisUrl ? "redis pub/sub" : "in-memory"})`,
    );
  });
}

main().catch((err) => {
  console.error("socket.io bench server:", err);
  process.exit(1);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    io.close();
    for (const c of redisClients) c.disconnect().catch(() => {});
    process.exit(0);
  });
}
