// The bench contract through iobus's Node binding, on namespace "/":
// join (room, ack) -> join the room, ack with no arguments; broadcast (room,
// data) -> emit msg (data) to everyone in the room; echo (data, ack) -> ack
// (data). One network worker thread. Usage: node node.js <port>
"use strict";
const path = require("node:path");
const { Server } = require(path.join(__dirname, "..", "..", "bindings", "node"));

const port = Number(process.argv[2] || 3100);
const io = new Server({ workerThreads: 1, serveClient: false });

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

io.listen(port);
console.log(`bench node ready on 127.0.0.1:${port}`);
process.on("SIGTERM", () => io.close());
process.on("SIGINT", () => io.close());
