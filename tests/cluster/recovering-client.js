// The stock socket.io-client 4.8 with connection state recovery in mind, for
// the Rust cluster tests (tests/redis_streams.rs): it connects to <url>
// (a load balancer the test switches between nodes), reconnects by itself
// after a drop, and reports on stdout, one JSON object per line:
// {"connect": id, "recovered": bool}, {"disconnect": reason} and
// {"event": name, "args": [...]} (events in the order the client emits them:
// a recovery's missed packets before its "connect").
//
//   node recovering-client.js <url> [auth-json]

"use strict";

const { io } = require("socket.io-client");

const [url, auth = "{}"] = process.argv.slice(2);

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const socket = io(url, {
  transports: ["websocket"],
  auth: JSON.parse(auth),
  reconnectionDelay: 100,
  reconnectionDelayMax: 100,
  randomizationFactor: 0,
});
socket.on("connect", () => out({ connect: socket.id, recovered: socket.recovered }));
socket.on("disconnect", (reason) => out({ disconnect: reason }));
socket.onAny((event, ...args) => out({ event, args }));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
