// The bench contract served by the npm socket.io server, on namespace `/`:
// `join` (room, ack) → join the room and ack with no arguments;
// `broadcast` (room, data) → emit `msg` (data) to everyone in the room;
// `echo` (data, ack) → ack (data).
//
// Usage: node server.js <port>; prints a ready line once listening.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3100);
const httpServer = http.createServer();
const io = new Server(httpServer, { serveClient: false });

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
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`socket.io ready on 127.0.0.1:${port}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
