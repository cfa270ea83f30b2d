#!/usr/bin/env node
// Echo rate through the binding: a client process keeps WINDOW events in
// flight; the server answers each `ping` with a `pong` carrying the same
// argument. Prints events/s (ping in + pong out counts as one) and the time
// the main thread spends per event inside the binding's pump (the poll for
// records, reading them, decoding, the handler and its emit back).
//
//   node bench/echo.js [iobus|socket.io] [seconds]

"use strict";

const { fork } = require("node:child_process");
const { performance } = require("node:perf_hooks");

const WINDOW = 200;

if (process.argv[2] === "--client") {
  const { io } = require("socket.io-client");
  const [, , , url, seconds] = process.argv;
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  let done = 0;
  let stopAt = 0;
  socket.on("pong", (n) => {
    done += 1;
    if (Date.now() < stopAt) socket.emit("ping", n + 1);
    else if (done >= sent) finish();
  });
  let sent = 0;
  let started = 0;
  const finish = () => {
    process.send({ events: done, ms: Date.now() - started });
    socket.disconnect();
  };
  socket.on("connect", () => {
    started = Date.now();
    stopAt = started + Number(seconds) * 1000;
    for (let i = 0; i < WINDOW; i++) socket.emit("ping", i);
    sent = WINDOW;
    const origEmit = socket.emit.bind(socket);
    socket.emit = (...a) => {
      sent += 1;
      return origEmit(...a);
    };
  });
  return;
}

async function main() {
  const which = process.argv[2] || "iobus";
  const seconds = Number(process.argv[3] || 3);
  const { Server } = require(which === "socket.io" ? "socket.io" : "iobus");
  const io = new Server({ serveClient: false });
  let pumpMs = 0;
  if (which !== "socket.io") {
    const pump = io._pump;
    const wake = pump._pump;
    pump._pump = function timed() {
      const t0 = performance.now();
      wake.call(this);
      pumpMs += performance.now() - t0;
    };
  }
  io.on("connection", (socket) => socket.on("ping", (n) => socket.emit("pong", n)));
  io.listen(0);
  if (!io.httpServer.listening) await new Promise((r) => io.httpServer.once("listening", r));
  const url = `http://127.0.0.1:${io.httpServer.address().port}`;
  const cpu0 = process.cpuUsage();
  const child = fork(__filename, ["--client", url, String(seconds)]);
  const result = await new Promise((resolve) => child.once("message", resolve));
  const cpu = process.cpuUsage(cpu0);
  await io.close();
  child.kill();
  const rate = Math.round(result.events / (result.ms / 1000));
  const perEvent = (ms) => ((ms * 1000) / result.events).toFixed(1);
  console.log(`${which}: ${result.events} echoes in ${result.ms} ms = ${rate} events/s`);
  console.log(`  server process CPU: ${perEvent((cpu.user + cpu.system) / 1000)} µs per event (all threads)`);
  if (which !== "socket.io") console.log(`  main thread in the binding's pump: ${perEvent(pumpMs)} µs per event`);
  process.exit(0);
}

main();
