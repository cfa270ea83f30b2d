// Two iobus nodes on one Redis behind HAProxy, configured by the README's
// "Several nodes" example (its ports changed): the npm socket.io-client
// connects through the proxy over polling only, websocket only, and polling
// upgraded to websocket, and room broadcasts reach clients on both nodes.
// Everything started here (redis-server, the two fixture nodes, haproxy)
// runs on free ports of 127.0.0.1 in a temporary directory and is stopped
// after, also on failure. Run by `make test-haproxy`.

"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { io } = require("socket.io-client");

const REPO_ROOT = path.resolve(__dirname, "../..");
const FIXTURE = path.join(REPO_ROOT, "target", "debug", "examples", "fixture");
const HAPROXY = process.env.IOBUS_HAPROXY || (fs.existsSync("/usr/sbin/haproxy") ? "/usr/sbin/haproxy" : "haproxy");
const WAIT_MS = 5000;

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function accepts(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

/** Runs a program and resolves once `port` accepts connections; its output is kept for errors. */
async function run(name, program, args, port, env = {}) {
  const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  children.add(child);
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  let failed = null;
  child.once("error", (err) => (failed = err.message));
  child.once("exit", (code, signal) => {
    children.delete(child);
    failed = failed || `exited (code ${code}, signal ${signal})`;
  });
  const deadline = Date.now() + 20000;
  while (!(await accepts(port))) {
    if (failed || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${name} did not start on port ${port}: ${failed || "timeout"}\n${output}`);
    }
    await sleep(30);
  }
  return child;
}

async function stop(child) {
  if (!children.has(child)) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The README's HAProxy configuration, in front of the given ports. */
function haproxyConfig(lbPort, portA, portB) {
  const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
  const block = readme.match(/^```haproxy\n([\s\S]*?)^```$/m);
  assert.ok(block, "README.md has a ```haproxy block");
  let config = block[1];
  for (const [from, to] of [
    ["bind :8080", `bind 127.0.0.1:${lbPort}`],
    ["127.0.0.1:3001", `127.0.0.1:${portA}`],
    ["127.0.0.1:3002", `127.0.0.1:${portB}`],
  ]) {
    assert.ok(config.includes(from), `the README's HAProxy config has "${from}"`);
    config = config.replace(from, to);
  }
  return config;
}

let dir;
let redisPort;
let lbUrl;
const started = [];
const clients = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "iobus-haproxy-"));
  redisPort = await freePort();
  started.push(
    await run(
      "redis-server",
      "redis-server",
      ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
      redisPort,
    ),
  );
  const nodePorts = [];
  for (const name of ["a", "b"]) {
    const port = await freePort();
    const env = { FIXTURE_REDIS_URL: `redis://127.0.0.1:${redisPort}`, FIXTURE_NODE: name };
    started.push(await run(`fixture node ${name}`, FIXTURE, [String(port)], port, env));
    nodePorts.push(port);
  }
  // Both nodes listen for the others' requests before any client comes.
  const deadline = Date.now() + 10000;
  for (;;) {
    const out = execFileSync("redis-cli", ["-p", String(redisPort), "pubsub", "numsub", "socket.io-request#/#"]);
    if (out.toString().trim().split("\n")[1] === "2") break;
    assert.ok(Date.now() < deadline, `the nodes did not both subscribe: ${out}`);
    await sleep(30);
  }
  const lbPort = await freePort();
  const config = path.join(dir, "haproxy.cfg");
  fs.writeFileSync(config, haproxyConfig(lbPort, nodePorts[0], nodePorts[1]));
  started.push(await run("haproxy", HAPROXY, ["-db", "-f", config], lbPort));
  lbUrl = `http://127.0.0.1:${lbPort}`;
});

after(async () => {
  for (const c of clients) c.disconnect();
  for (const child of started.reverse()) await stop(child);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A client through the proxy with its own connection (and cookie jar). */
async function connect(opts) {
  const socket = io(lbUrl, { forceNew: true, reconnection: false, withCredentials: true, ...opts });
  clients.push(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    "connect",
  );
  return socket;
}

/** Emits `event` and resolves with every argument of its ack. */
const call = (socket, event, ...args) =>
  withTimeout(new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply))), `the ack of ${event}`);

const MODES = {
  polling: { transports: ["polling"], transport: "polling" },
  websocket: { transports: ["websocket"], transport: "websocket" },
  upgrade: { transports: ["polling", "websocket"], transport: "websocket" },
};

for (const [mode, { transports, transport }] of Object.entries(MODES)) {
  test(`${mode}: clients through HAProxy on both nodes share rooms`, async () => {
    const room = `room-${mode}`;
    const group = [];
    for (let i = 0; i < 4; i++) {
      const socket = await connect({ transports });
      if (transport !== socket.io.engine.transport.name) {
        await withTimeout(new Promise((resolve) => socket.io.engine.once("upgrade", resolve)), "the upgrade");
      }
      assert.equal(socket.io.engine.transport.name, transport);
      const [node] = await call(socket, "node");
      group.push({ socket, node });
    }
    const nodes = new Set(group.map((c) => c.node));
    assert.deepEqual([...nodes].sort(), ["a", "b"], "the proxy spread the clients over both nodes");

    for (const { socket, node } of group) {
      // An event with an ack, and the node still the same: the session stuck.
      assert.deepEqual(await call(socket, "ack", 1, "two", { three: [3] }), [1, "two", { three: [3] }]);
      assert.deepEqual(await call(socket, "node"), [node]);
      const [rooms] = await call(socket, "join", room);
      assert.ok(rooms.includes(room));
    }

    // A broadcast from a client of each node reaches every client of the room.
    for (const from of ["a", "b"]) {
      const sender = group.find((c) => c.node === from).socket;
      const got = group.map(({ socket }) =>
        withTimeout(new Promise((resolve) => socket.once("news", (...args) => resolve(args))), `news from ${from}`),
      );
      await call(sender, "broadcast", { to: room }, "news", from, { mode });
      assert.deepEqual(await Promise.all(got), group.map(() => [from, { mode }]));
    }
    for (const { socket } of group) socket.disconnect();
  });
}
