// Which events the library hands to JavaScript: those some connected socket
// of the namespace listens to (by name), every event while a socket has
// catch-all listeners or middlewares, and every event while a connection is
// being admitted — so that a listener registered in a `connection` handler
// hears what its client sends right away, even from another process, while
// events nobody listens to are dropped in the library. With connection state
// recovery, what a dropped socket listened to stays subscribed while it may
// come back, since the library lets it back in before JavaScript hears of it.

"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { spawn } = require("node:child_process");
const { io: connectClient } = require("socket.io-client");
const { Server } = require("iobus");
const { Kind } = require("../lib/records");

const WAIT_MS = 4000;
const PACKAGE_DIR = path.resolve(__dirname, "..");

function withTimeout(promise, label, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function next(emitter, event) {
  return withTimeout(new Promise((resolve) => emitter.once(event, (...a) => resolve(a))), `event "${event}"`);
}

/** A listening server whose EVENT records are counted by name. */
function countingServer(t, opts = {}) {
  const io = new Server({ serveClient: false, ...opts });
  io.listen(0);
  const delivered = new Map();
  const sink = io._pump.sink;
  const deliver = sink.deliver.bind(sink);
  sink.deliver = (rd) => {
    if (rd.kind === Kind.EVENT) {
      // The name is the third field: peek at it without moving the reader.
      const at = rd.at;
      rd.skip();
      rd.skip();
      const name = rd.text();
      rd.at = at;
      delivered.set(name, (delivered.get(name) || 0) + 1);
    }
    return deliver(rd);
  };
  const clients = [];
  t.after(async () => {
    for (const c of clients) c.disconnect();
    await withTimeout(io.close(), "close");
  });
  const url = `http://127.0.0.1:${io.httpServer.address().port}`;
  const connect = async () => {
    const connection = next(io, "connection");
    const client = connectClient(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    clients.push(client);
    const [socket] = await connection;
    if (!client.connected) await next(client, "connect");
    return { client, socket };
  };
  return { io, delivered, connect, url };
}

/** The client asks for an ack, so that its answer proves every earlier emit was read. */
async function flush(client) {
  await withTimeout(client.timeout(WAIT_MS).emitWithAck("flush"), "flush");
}

describe("event subscriptions", () => {
  it("events nobody listens to stay in the library; a name is delivered while a socket listens to it", async (t) => {
    const { delivered, connect } = countingServer(t);
    const a = await connect();
    a.socket.on("flush", (ack) => ack());
    const heard = [];
    a.socket.on("heard", (x) => heard.push(x));
    for (let i = 0; i < 50; i++) a.client.emit("unheard", i);
    a.client.emit("heard", 1);
    await flush(a.client);
    assert.deepEqual(heard, [1]);
    assert.equal(delivered.get("unheard"), undefined, "an event without a listener reached JavaScript");
    assert.equal(delivered.get("heard"), 1);

    // A second socket without a listener of its own: the name is delivered
    // (another socket listens) and dropped here, as socket.io drops it.
    const b = await connect();
    b.socket.on("flush", (ack) => ack());
    b.client.emit("heard", 2);
    await flush(b.client);
    assert.deepEqual(heard, [1]);
    assert.equal(delivered.get("heard"), 2);

    // The last socket listening leaves: the name is no longer delivered.
    const gone = next(a.socket, "disconnect");
    a.client.disconnect();
    await gone;
    b.client.emit("heard", 3);
    await flush(b.client);
    assert.equal(delivered.get("heard"), 2, "an event nobody listens to any more reached JavaScript");

    // A listener again: delivered again.
    b.socket.on("heard", (x) => heard.push(x));
    b.client.emit("heard", 4);
    await flush(b.client);
    assert.deepEqual(heard, [1, 4]);
  });

  it("catch-all listeners and event middlewares take every event until their socket leaves", async (t) => {
    const { delivered, connect } = countingServer(t);
    const a = await connect();
    a.socket.on("flush", (ack) => ack());
    const any = [];
    a.socket.onAny((event, ...args) => any.push([event, ...args.filter((x) => typeof x !== "function")]));
    a.client.emit("anything", 1);
    await flush(a.client);
    assert.deepEqual(any, [["anything", 1], ["flush"]]);

    const b = await connect();
    const used = [];
    b.socket.use(([event], nextFn) => {
      used.push(event);
      nextFn();
    });
    b.socket.on("flush", (ack) => ack());
    b.client.emit("else", 2);
    await flush(b.client);
    assert.deepEqual(used, ["else", "flush"]);

    const aGone = next(a.socket, "disconnect");
    const bGone = next(b.socket, "disconnect");
    a.client.disconnect();
    b.client.disconnect();
    await aGone;
    await bGone;
    const c = await connect();
    c.socket.on("flush", (ack) => ack());
    const before = delivered.get("stray") || 0;
    c.client.emit("stray", 3);
    await flush(c.client);
    assert.equal(delivered.get("stray") || 0, before, "every event is still delivered after the catch-alls left");
  });

  it("a listener registered in the connection handler hears what a client in another process sends at once", async (t) => {
    const { io, url } = countingServer(t);
    const heard = [];
    let done;
    const all = new Promise((resolve) => {
      done = resolve;
    });
    io.on("connection", (socket) => {
      // The client sends as soon as it is connected; hold the thread so that
      // its events reach the library before the listener exists.
      const until = Date.now() + 150;
      while (Date.now() < until);
      socket.on("early", (i) => {
        heard.push(i);
        if (heard.length === 20) done();
      });
    });
    const client = spawn(
      process.execPath,
      [
        "-e",
        `const { io } = require("socket.io-client");
         const c = io(${JSON.stringify(url)}, { transports: ["websocket"], reconnection: false });
         c.on("connect", () => { for (let i = 0; i < 20; i++) c.emit("early", i); });
         setTimeout(() => process.exit(0), 6000);`,
      ],
      { cwd: PACKAGE_DIR, stdio: "ignore" },
    );
    t.after(() => client.kill());
    await withTimeout(all, "20 early events", 6000);
    assert.deepEqual(heard, Array.from({ length: 20 }, (_, i) => i));
  });

  it("what a dropped socket listened to stays subscribed while its client may come back", async (t) => {
    const { io, url } = countingServer(t, { connectionStateRecovery: { maxDisconnectionDuration: 5000 } });
    const heard = [];
    let done;
    const all = new Promise((resolve) => {
      done = resolve;
    });
    io.on("connection", (socket) => {
      socket.on("x", (i) => {
        heard.push([socket.recovered, i]);
        if (heard.length === 20) done();
      });
      if (!socket.recovered) socket.emit("m", 1);
      socket.on("disconnect", () => {
        // Busy while the client comes back and sends: the library lets it
        // in and reads its events before this process hears of it.
        const until = Date.now() + 400;
        while (Date.now() < until);
      });
    });
    const client = spawn(
      process.execPath,
      [
        "-e",
        `const { io } = require("socket.io-client");
         const c = io(${JSON.stringify(url)}, { transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 50 });
         c.once("m", () => c.io.engine.close());
         c.on("connect", () => { if (c.recovered) for (let i = 0; i < 20; i++) c.emit("x", i); });
         setTimeout(() => process.exit(0), 8000);`,
      ],
      { cwd: PACKAGE_DIR, stdio: "ignore" },
    );
    t.after(() => client.kill());
    await withTimeout(all, "20 events from the recovered client", 6000);
    assert.deepEqual(heard, Array.from({ length: 20 }, (_, i) => [true, i]));
  });
});
