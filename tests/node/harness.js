// Test harness for the iobus client-driven scenarios: starts a fixture server
// (tests/FIXTURE.md), creates socket.io-client connections in each transport
// mode, and awaits events with timeouts so that no wait can hang.

"use strict";

const { spawn } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");
const assert = require("node:assert/strict");
const { io, Manager } = require("socket.io-client");

const REPO_ROOT = path.resolve(__dirname, "../..");
const DEFAULT_FIXTURE = path.join(REPO_ROOT, "target", "debug", "examples", "fixture");
const STARTUP_TIMEOUT_MS = 20000;
const DEFAULT_WAIT_MS = 5000;

// ---------------------------------------------------------------------------
// Fixture process
// ---------------------------------------------------------------------------

/** The fixture command line: IOBUS_FIXTURE split on whitespace, or the default binary. */
function fixtureCommand() {
  const raw = (process.env.IOBUS_FIXTURE || "").trim();
  const argv = raw ? raw.split(/\s+/) : [DEFAULT_FIXTURE];
  // A program given as a path (it contains a separator) is resolved against the
  // repository root; bare names ("node", "cargo") are looked up in PATH. The
  // process also runs with the repository root as its working directory, so
  // relative paths among the arguments resolve against it too.
  if (argv[0].includes("/") || argv[0].includes(path.sep)) {
    argv[0] = path.resolve(REPO_ROOT, argv[0]);
  }
  return argv;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const done = (ok) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

const liveChildren = new Set();
process.on("exit", () => {
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * Starts the fixture on a free port and resolves once the port accepts TCP
 * connections. Rejects (with the server's output) if the process exits first
 * or STARTUP_TIMEOUT_MS passes.
 */
async function startFixture({ attempts = 3 } = {}) {
  let lastError;
  for (let i = 0; i < attempts; i++) {
    const port = await freePort();
    try {
      return await startFixtureOnPort(port);
    } catch (err) {
      lastError = err;
      // The port may have been taken between freePort() and the bind: retry
      // only when the process died early, not on a timeout.
      if (!err.exitedEarly) break;
    }
  }
  throw lastError;
}

async function startFixtureOnPort(port) {
  const [program, ...args] = fixtureCommand();
  const child = spawn(program, [...args, String(port)], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  liveChildren.add(child);

  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d) => {
    stdout += d;
  });
  child.stderr.on("data", (d) => {
    stderr += d;
  });

  let exited = null;
  let spawnError = null;
  const exitPromise = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      liveChildren.delete(child);
      resolve(exited);
    });
    child.once("error", (err) => {
      spawnError = err;
      liveChildren.delete(child);
      resolve(null);
    });
  });

  const describeOutput = () =>
    `command: ${[program, ...args, port].join(" ")}\n` +
    `--- stderr ---\n${stderr || "(empty)"}\n--- stdout ---\n${stdout || "(empty)"}`;

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (spawnError) {
      const err = new Error(`fixture could not be started: ${spawnError.message}\n${describeOutput()}`);
      err.exitedEarly = false;
      throw err;
    }
    if (exited) {
      const err = new Error(
        `fixture exited before accepting connections (code ${exited.code}, signal ${exited.signal})\n${describeOutput()}`,
      );
      err.exitedEarly = true;
      throw err;
    }
    if (await tryConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      const err = new Error(
        `fixture did not accept connections on 127.0.0.1:${port} within ${STARTUP_TIMEOUT_MS} ms\n${describeOutput()}`,
      );
      err.exitedEarly = false;
      throw err;
    }
    await sleep(50);
  }

  const listeningLine = `listening on 127.0.0.1:${port}`;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    /** Resolves once the fixture has printed its `listening on` line. */
    async waitListeningLine(timeoutMs = DEFAULT_WAIT_MS) {
      const until = Date.now() + timeoutMs;
      while (!stdout.split(/\r?\n/).includes(listeningLine)) {
        if (Date.now() > until) {
          throw new Error(`fixture never printed "${listeningLine}"\n${describeOutput()}`);
        }
        await sleep(20);
      }
    },
    /** SIGTERM, then SIGKILL if the process has not exited after `graceMs`. */
    async stop(graceMs = 3000) {
      if (exited || spawnError) return exited;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const result = await exitPromise;
      clearTimeout(timer);
      return result;
    },
  };
}

// ---------------------------------------------------------------------------
// Waiting with timeouts
// ---------------------------------------------------------------------------

/** Rejects with a clear message if `promise` is not settled within `ms`. */
function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves with the argument list of the next `event` on `emitter`. Rejects
 * after `timeout` ms, or as soon as one of `failOn` events fires (e.g.
 * `connect_error`, `disconnect`), naming it.
 */
function once(emitter, event, { timeout = DEFAULT_WAIT_MS, failOn = [], label = "" } = {}) {
  return new Promise((resolve, reject) => {
    const failHandlers = [];
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      for (const [name, fn] of failHandlers) emitter.off(name, fn);
    };
    const onEvent = (...args) => {
      cleanup();
      resolve(args);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeout} ms waiting for "${event}"${label ? ` (${label})` : ""}`));
    }, timeout);
    emitter.on(event, onEvent);
    for (const name of failOn) {
      const fn = (...args) => {
        cleanup();
        const detail = args
          .map((a) => (a instanceof Error ? `${a.message} ${JSON.stringify(a.data)}` : JSON.stringify(a)))
          .join(", ");
        reject(new Error(`got "${name}" (${detail}) while waiting for "${event}"${label ? ` (${label})` : ""}`));
      };
      failHandlers.push([name, fn]);
      emitter.on(name, fn);
    }
  });
}

/**
 * Records every `event` on `emitter` from now on. `next(n)` waits until at
 * least n arrivals have been recorded (with a timeout).
 */
function collect(emitter, event) {
  const received = [];
  const waiters = [];
  const handler = (...args) => {
    received.push(args);
    for (const w of [...waiters]) {
      if (received.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(received.slice());
      }
    }
  };
  emitter.on(event, handler);
  return {
    received,
    get count() {
      return received.length;
    },
    /** Waits until `n` arrivals in total; resolves with all arrivals. */
    wait(n = 1, timeout = DEFAULT_WAIT_MS) {
      if (received.length >= n) return Promise.resolve(received.slice());
      return new Promise((resolve, reject) => {
        const w = { n, resolve };
        w.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`timed out after ${timeout} ms: got ${received.length} of ${n} "${event}" events`));
        }, timeout);
        waiters.push(w);
      });
    },
    stop() {
      emitter.off(event, handler);
    },
  };
}

/**
 * The short quiet period used only to show that something does NOT arrive
 * (sender exclusion, namespace isolation). Always awaited after the positive
 * deliveries of the same emit have been received.
 */
const QUIET_MS = 250;
function quiet(ms = QUIET_MS) {
  return sleep(ms);
}

/** Calls `probe` until it returns a truthy value; rejects after `timeout`. */
async function until(probe, { timeout = DEFAULT_WAIT_MS, interval = 25, label = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${label}`);
    await sleep(interval);
  }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/** The three ways every scenario runs. */
const MODES = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  upgrade: {}, // default transports: polling first, then upgrade to websocket
};
const MODE_NAMES = Object.keys(MODES);

function clientOptions(mode, extra = {}) {
  if (!(mode in MODES)) throw new Error(`unknown transport mode ${mode}`);
  return { forceNew: true, reconnection: false, timeout: DEFAULT_WAIT_MS, ...MODES[mode], ...extra };
}

/** The transport an engine is expected to end up on in each mode. */
function expectedTransport(mode) {
  return mode === "polling" ? "polling" : "websocket";
}

let uniqueCounter = 0;
const runTag = Math.random().toString(36).slice(2, 8);
/** A name no other test uses (rooms, event names, dynamic namespaces). */
function unique(prefix = "u") {
  uniqueCounter += 1;
  return `${prefix}_${runTag}_${uniqueCounter}`;
}

/**
 * Per-test client factory. Every socket and manager created through it is
 * closed when the test ends (`t.after`).
 */
class Clients {
  constructor(t, url, mode) {
    this.url = url;
    this.mode = mode;
    this.sockets = new Set();
    this.managers = new Set();
    t.after(() => this.closeAll());
  }

  options(extra) {
    return clientOptions(this.mode, extra);
  }

  /** A new, not yet awaited socket on its own Manager (one engine per socket). */
  raw(nsp = "/", extra = {}) {
    const socket = io(this.url + nsp, this.options(extra));
    this.sockets.add(socket);
    this.managers.add(socket.io);
    return socket;
  }

  /** A new Manager (one engine) for multiplexing several namespaces. */
  manager(extra = {}) {
    const manager = new Manager(this.url, this.options(extra));
    this.managers.add(manager);
    return manager;
  }

  /**
   * Connects a socket to `nsp` and resolves with `{ socket, hello }` once it is
   * connected, has received `hello`, and (in upgrade mode, for a new engine)
   * has finished the upgrade to websocket. With `manager` the socket joins an
   * existing engine instead of opening a new one.
   */
  async connect(nsp = "/", { auth, manager, extra = {} } = {}) {
    let socket;
    if (manager) {
      socket = manager.socket(nsp, auth === undefined ? {} : { auth });
      this.sockets.add(socket);
    } else {
      socket = this.raw(nsp, auth === undefined ? extra : { ...extra, auth });
    }
    const label = `${this.mode} ${nsp}`;
    let connectedAtHello = null;
    const [hello] = await once(socket, "hello", { failOn: ["connect_error", "disconnect"], label }).then((args) => {
      connectedAtHello = socket.connected;
      return args;
    });
    if (this.mode === "upgrade") await awaitUpgrade(socket.io.engine);
    assert.equal(socket.io.engine.transport.name, expectedTransport(this.mode), `${label}: transport in use`);
    return { socket, hello, connectedAtHello };
  }

  /** Connects `n` sockets to `nsp`, each on its own engine. */
  async connectMany(n, nsp = "/", opts = {}) {
    const all = [];
    for (let i = 0; i < n; i++) all.push(this.connect(nsp, opts));
    return Promise.all(all);
  }

  closeAll() {
    for (const socket of this.sockets) socket.disconnect();
    for (const manager of this.managers) manager.disconnect();
    this.sockets.clear();
    this.managers.clear();
  }
}

/** Resolves once `engine` has upgraded to websocket; rejects on upgradeError or timeout. */
function awaitUpgrade(engine, timeout = DEFAULT_WAIT_MS) {
  if (engine.transport && engine.transport.name === "websocket") return Promise.resolve();
  return once(engine, "upgrade", { failOn: ["upgradeError", "close"], timeout, label: "polling → websocket" }).then(
    ([transport]) => {
      assert.equal(transport.name, "websocket", "upgrade event carries the websocket transport");
      assert.equal(engine.transport.name, "websocket", "engine.transport after upgrade");
    },
  );
}

// ---------------------------------------------------------------------------
// Requests to the fixture
// ---------------------------------------------------------------------------

/** Emits `event` with `args` and an ack callback; resolves with the ack's argument list. */
function request(socket, event, ...args) {
  return withTimeout(
    new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply))),
    DEFAULT_WAIT_MS,
    `ack for "${event}"`,
  );
}

/** Like `request` but resolves with the ack's first argument. */
async function call(socket, event, ...args) {
  const reply = await request(socket, event, ...args);
  return reply[0];
}

/** Every disconnect the server recorded for `sid`, queried through `via`. */
async function reasonsFor(via, sid) {
  const list = await call(via, "reasons");
  return list.filter((r) => r.sid === sid);
}

/** Waits until the server has recorded a disconnect of `sid`; resolves with the record. */
function serverReason(via, sid, timeout = DEFAULT_WAIT_MS) {
  return until(
    async () => {
      const found = await reasonsFor(via, sid);
      return found.length > 0 ? found : null;
    },
    { timeout, label: `server-side disconnect record of ${sid}` },
  );
}

// ---------------------------------------------------------------------------
// Binary helpers
// ---------------------------------------------------------------------------

/** Deep copy of a received value with every binary blob turned into a Buffer. */
function normalizeBinary(value) {
  if (Buffer.isBuffer(value)) return Buffer.from(value);
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(normalizeBinary);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = normalizeBinary(v);
    return out;
  }
  return value;
}

function isBinary(value) {
  return Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

/** A deterministic buffer of `size` bytes. */
function patternBuffer(size, seed = 1) {
  const buf = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    buf[i] = x >>> 24;
  }
  return buf;
}

module.exports = {
  REPO_ROOT,
  DEFAULT_WAIT_MS,
  MODES,
  MODE_NAMES,
  QUIET_MS,
  Clients,
  awaitUpgrade,
  call,
  clientOptions,
  collect,
  expectedTransport,
  fixtureCommand,
  freePort,
  isBinary,
  normalizeBinary,
  once,
  patternBuffer,
  quiet,
  reasonsFor,
  request,
  serverReason,
  sleep,
  startFixture,
  startFixtureOnPort,
  unique,
  until,
  withTimeout,
};
