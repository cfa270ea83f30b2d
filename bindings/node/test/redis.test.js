// The Redis adapter (`adapter: redisAdapter({ url, ... })`) and the host
// backpressure options (`hostQueueLimit`, `freeTimeout`): two iobus servers
// on one real Redis (Debian's redis-server, started here on a free port in a
// temporary directory and stopped after), npm socket.io-client on each.

"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { spawn, spawnSync } = require("node:child_process");
const { io: connectClient } = require("socket.io-client");
const iobus = require("iobus");

const { Server, redisAdapter, createAdapter } = iobus;
const WAIT_MS = 5000;
const HAVE_REDIS = spawnSync("redis-server", ["--version"]).status === 0;

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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, label) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms: ${label}`);
    await sleep(20);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.setTimeout(500);
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => {
      s.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    s.on("error", () => resolve(false));
    s.on("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** A redis-server of the test's own; `stop()` ends it and removes its directory. */
async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "iobus-redis-"));
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"],
    { stdio: "ignore" },
  );
  await until(() => ping(port), "redis-server");
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      const exited = new Promise((resolve) => proc.once("exit", resolve));
      proc.kill("SIGTERM");
      await withTimeout(exited, "redis-server exit");
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

let keys = 0;

/** Two listening servers on one Redis key; closed after the test. */
function cluster(t, redis, adapterOpts = {}, opts = {}) {
  const key = `t${process.pid}-${++keys}`;
  const adapter = () => redisAdapter({ url: redis.url, key, requestsTimeout: 2000, ...adapterOpts });
  const servers = [0, 1].map(() => new Server({ ...opts, adapter: adapter() }));
  for (const io of servers) io.listen(0);
  t.after(() => Promise.all(servers.map((io) => withTimeout(io.close(), "close"))));
  return servers;
}

function urlOf(io) {
  return `http://127.0.0.1:${io.httpServer.address().port}`;
}

async function connect(t, url, opts = {}) {
  const client = connectClient(url, { transports: ["websocket"], forceNew: true, reconnection: false, ...opts });
  t.after(() => client.disconnect());
  await next(client, "connect");
  return client;
}

describe("redis adapter", { skip: HAVE_REDIS ? false : "redis-server is not installed (make setup-redis)" }, () => {
  let redis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    if (redis) await redis.stop();
  });

  for (const adapterOpts of [{}, { mode: "pubsub-own-response-channel" }, { streams: true }]) {
    it(`reaches the other server's sockets (${adapterOpts.mode || (adapterOpts.streams ? "streams" : "pubsub")})`, async (t) => {
      const [a, b] = cluster(t, redis, adapterOpts);
      for (const io of [a, b]) io.on("connection", (socket) => socket.join("r"));
      const ca = await connect(t, urlOf(a));
      const cb = await connect(t, urlOf(b));
      const sockets = await until(async () => {
        const found = await a.in("r").fetchSockets();
        return found.length === 2 && found;
      }, "both sockets from a");
      assert.deepEqual(sockets.map((s) => s.id).sort(), [ca.id, cb.id].sort());

      // A room broadcast from a reaches b's client, and the other way round.
      const onB = next(cb, "news");
      const onA = next(ca, "news");
      a.to("r").emit("news", { from: "a" });
      assert.deepEqual(await onB, [{ from: "a" }]);
      assert.deepEqual(await onA, [{ from: "a" }]);
      const back = next(ca, "news");
      b.to("r").except(cb.id).emit("news", "from b");
      assert.deepEqual(await back, ["from b"]);

      // socketsJoin from a puts b's socket in a room a broadcast then reaches.
      a.in(cb.id).socketsJoin("extra");
      await until(async () => (await b.in("extra").fetchSockets()).length === 1, "b's socket in extra");
      const extra = next(cb, "only");
      a.to("extra").emit("only", 1);
      assert.deepEqual(await extra, [1]);

      // Acks of a broadcast come from both servers' clients.
      for (const c of [ca, cb]) c.on("ask", (n, ack) => ack(n + 1));
      const answers = await a.timeout(2000).to("r").emitWithAck("ask", 1);
      assert.deepEqual(answers, [2, 2]);

      // serverSideEmit reaches the other server's listeners.
      b.on("hello", (x, ack) => ack(`b got ${x}`));
      assert.deepEqual(await a.timeout(2000).serverSideEmitWithAck("hello", 7), ["b got 7"]);

      // disconnectSockets from a disconnects b's client.
      const gone = next(cb, "disconnect");
      a.in(cb.id).disconnectSockets();
      assert.deepEqual(await gone, ["io server disconnect", undefined]);
      assert.equal(ca.connected, true);
    });
  }

  it("recovers a session on the other server (streams)", async (t) => {
    const [a, b] = cluster(t, redis, { streams: true }, { connectionStateRecovery: { maxDisconnectionDuration: 10000 } });
    const onA = [];
    for (const io of [a, b]) {
      io.on("connection", (socket) => {
        if (!socket.recovered) socket.join("r");
      });
    }
    a.on("connection", (socket) => onA.push(socket));
    // The client reaches the servers through one port, as behind a load
    // balancer: first a, then, once its connection is cut, b.
    let target = a.httpServer.address().port;
    const conns = new Set();
    const proxy = net.createServer((down) => {
      const up = net.connect(target, "127.0.0.1");
      conns.add(down);
      down.on("close", () => {
        conns.delete(down);
        up.destroy();
      });
      down.pipe(up).pipe(down);
      up.on("error", () => down.destroy());
      down.on("error", () => up.destroy());
    });
    await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    t.after(() => proxy.close());
    const client = await connect(t, `http://127.0.0.1:${proxy.address().port}`, {
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 500,
      randomizationFactor: 0,
    });
    const id = client.id;
    const seen = [];
    client.on("news", (n) => seen.push(n));
    // A first packet gives the client an offset to recover from.
    b.to("r").emit("news", 1);
    await until(() => seen.length === 1, "news 1");
    target = b.httpServer.address().port;
    const dropped = next(client, "disconnect");
    const left = next(onA[0], "disconnect");
    const back = next(client, "connect");
    for (const c of conns) c.destroy();
    assert.equal((await dropped)[0], "transport close");
    assert.match((await left)[0], /^transport (close|error)$/);
    a.to("r").emit("news", 2); // missed while away
    await back;
    assert.equal(client.recovered, true);
    assert.equal(client.id, id);
    await until(() => seen.length === 2, "the missed packet");
    assert.deepEqual(seen, [1, 2]);
    const sockets = await b.in("r").fetchSockets();
    assert.deepEqual(sockets.map((s) => s.id), [id]);
  });

  it("refuses to listen when Redis is down", async () => {
    const io = new Server({ adapter: redisAdapter({ url: `redis://127.0.0.1:${await freePort()}` }) });
    try {
      assert.throws(() => io.listen(0), /listen/);
    } finally {
      await withTimeout(io.close(), "close");
    }
  });
});

describe("adapter and backpressure options", () => {
  it("checks the adapter's options", () => {
    assert.equal(createAdapter, redisAdapter);
    assert.throws(() => redisAdapter({ mode: "carrier-pigeon" }), /mode/);
    assert.throws(() => redisAdapter({ mode: "pubsub", streams: true }), /streams/);
    assert.throws(() => redisAdapter({ key: "" }), /key/);
    assert.throws(() => redisAdapter({ requestsTimeout: -1 }), /requestsTimeout/);
    assert.throws(() => new Server({ adapter: redisAdapter({ url: "http://127.0.0.1:6379" }) }), /adapter.*redis:\/\//);
    assert.throws(() => new Server({ adapter: {} }), /adapter/);
    const io = new Server();
    assert.equal(io.adapter(), undefined);
    assert.throws(() => io.adapter(redisAdapter()), /when the server is made/);
    return io.close();
  });

  it("passes hostQueueLimit and freeTimeout to the library", async (t) => {
    assert.throws(() => new Server({ hostQueueLimit: 1 }), /hostQueueLimit/);
    assert.throws(() => new Server({ hostQueueLimit: 2 ** 40 }), /hostQueueLimit/);
    assert.throws(() => new Server({ freeTimeout: 3600000 }), /freeTimeout/);
    assert.throws(() => new Server({ freeTimeout: -1 }), /freeTimeout/);
    const io = new Server({ hostQueueLimit: 64 << 10, freeTimeout: 500 });
    io.listen(0);
    t.after(() => withTimeout(io.close(), "close"));
    io.on("connection", (socket) => socket.on("echo", (x, ack) => ack(x)));
    const client = await connect(t, urlOf(io));
    const big = "x".repeat(4096);
    const asks = Array.from({ length: 50 }, (_, i) => client.timeout(WAIT_MS).emitWithAck("echo", big + i));
    const replies = await Promise.all(asks);
    assert.deepEqual(replies, Array.from({ length: 50 }, (_, i) => big + i));
  });
});
