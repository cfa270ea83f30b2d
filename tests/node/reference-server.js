#!/usr/bin/env node
// The iobus fixture contract (tests/FIXTURE.md) implemented with the npm
// `socket.io` 4.8 server. It is the reference the iobus fixture
// (tests/fixture/server.rs) must behave like: every scenario in
// scenarios.test.js passes against both.
//
// Usage: node reference-server.js <port>

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number.parseInt(process.argv[2] || "", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write("usage: node reference-server.js <port>\n");
  process.exit(2);
}

const httpServer = http.createServer();

const io = new Server(httpServer, {
  path: "/socket.io/",
  pingInterval: 1000,
  pingTimeout: 500,
  maxHttpBufferSize: 100000,
  connectTimeout: 1000,
  transports: ["polling", "websocket"],
  allowUpgrades: true,
  cors: { origin: "*", credentials: false },
  // FIXTURE_RECOVERY_MS: connection state recovery with that maxDisconnectionDuration.
  ...(process.env.FIXTURE_RECOVERY_MS
    ? {
        connectionStateRecovery: {
          maxDisconnectionDuration: Number(process.env.FIXTURE_RECOVERY_MS),
          skipMiddlewares: true,
        },
      }
    : {}),
});

// Every disconnect seen since start, in order, across all namespaces.
const reasons = [];

const sortedRooms = (socket) => [...socket.rooms].sort();

// The last argument when it is an ack callback, else undefined.
function popCallback(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return args.pop();
  }
  return undefined;
}

function refuseMiddleware(socket, next) {
  const auth = socket.handshake.auth;
  if (auth && typeof auth === "object" && Object.prototype.hasOwnProperty.call(auth, "refuse")) {
    const err = new Error("Not authorized");
    err.data = { reason: auth.refuse };
    next(err);
    return;
  }
  next();
}

function onConnection(socket) {
  // For a dynamic namespace this is the child namespace, not the parent.
  const nsp = socket.nsp;

  socket.on("disconnect", (reason) => {
    reasons.push({ sid: socket.id, nsp: nsp.name, reason });
  });

  socket.on("drop-me", () => socket.conn.close());

  socket.on("set-data", (value, cb) => {
    socket.data = value;
    if (typeof cb === "function") cb();
  });

  socket.on("get-data", (cb) => {
    if (typeof cb === "function") cb(socket.data === undefined ? null : socket.data);
  });

  socket.on("echo", (...args) => {
    socket.emit("echo", ...args);
  });

  socket.on("ack", (...args) => {
    const cb = popCallback(args);
    if (cb) cb(...args);
  });

  socket.on("join", (rooms, cb) => {
    socket.join(rooms);
    if (typeof cb === "function") cb(sortedRooms(socket));
  });

  socket.on("leave", (room, cb) => {
    socket.leave(room);
    if (typeof cb === "function") cb(sortedRooms(socket));
  });

  socket.on("rooms", (cb) => {
    if (typeof cb === "function") cb(sortedRooms(socket));
  });

  socket.on("node", (cb) => {
    if (typeof cb === "function") cb(process.env.FIXTURE_NODE ?? null);
  });

  socket.on("broadcast", (spec, event, ...args) => {
    const cb = popCallback(args);
    const s = spec && typeof spec === "object" ? spec : {};
    let op;
    if (s.fromSocket) {
      op = s.to !== undefined ? socket.to(s.to) : socket.broadcast;
    } else {
      op = s.to !== undefined ? nsp.to(s.to) : nsp.except([]);
    }
    if (s.except !== undefined) op = op.except(s.except);
    if (s.volatile) op = op.volatile;
    op.emit(event, ...args);
    if (cb) cb();
  });

  socket.on("ask", (timeoutMs, ...args) => {
    const cb = popCallback(args);
    socket.timeout(timeoutMs).emit("question", ...args, (err, ...reply) => {
      if (cb) cb(err ? { error: "timeout" } : { reply });
    });
  });

  socket.on("disconnect-me", (close) => {
    socket.disconnect(close === true);
  });

  socket.on("fetch", async (room, cb) => {
    const sockets = await nsp.in(room).fetchSockets();
    if (typeof cb === "function") cb(sockets.map((s) => s.id).sort());
  });

  socket.on("sockets-join", (room, newRoom, cb) => {
    nsp.in(room).socketsJoin(newRoom);
    if (typeof cb === "function") cb();
  });

  socket.on("sockets-leave", (room, oldRoom, cb) => {
    nsp.in(room).socketsLeave(oldRoom);
    if (typeof cb === "function") cb();
  });

  socket.on("disconnect-room", (room, close) => {
    nsp.in(room).disconnectSockets(close === true);
  });

  socket.on("reasons", (cb) => {
    if (typeof cb === "function") cb(reasons);
  });

  socket.on("binary", (cb) => {
    socket.emit("binary", Buffer.from([1, 2, 3]), {
      nested: { deep: [Buffer.from([4, 5]), "x"] },
    });
    if (typeof cb === "function") cb();
  });

  if (socket.handshake.auth && socket.handshake.auth.silent !== undefined && !socket.recovered) return;
  socket.emit("hello", {
    sid: socket.id,
    nsp: nsp.name,
    auth: socket.handshake.auth || {},
    ...(socket.recovered ? { recovered: true } : {}),
  });
}

for (const nsp of [io.of("/"), io.of("/admin"), io.of(/^\/dyn-[A-Za-z0-9_]+$/)]) {
  nsp.use(refuseMiddleware);
  nsp.on("connection", onConnection);
}

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening on 127.0.0.1:${httpServer.address().port}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  io.close();
  httpServer.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
