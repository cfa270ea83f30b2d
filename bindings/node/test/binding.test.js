// What the iobus binding promises beyond socket.io's API: where the library
// comes from, failures in handlers reported without stopping the server, an
// event loop that is never blocked, and a process that exits once the server
// is closed.

"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { io: connectClient } = require("socket.io-client");
const iobus = require("iobus");

const { Server } = iobus;
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

function get(url) {
  return withTimeout(
    new Promise((resolve, reject) => {
      http
        .get(url, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (body += d));
          res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
        })
        .on("error", reject);
    }),
    `GET ${url}`,
  );
}

/** A listening server and a connected websocket client; both closed after the test. */
async function setup(t, opts = {}) {
  const io = new Server(opts);
  io.listen(0);
  const url = `http://127.0.0.1:${io.httpServer.address().port}`;
  const connection = next(io, "connection");
  const client = connectClient(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  t.after(async () => {
    client.disconnect();
    await withTimeout(io.close(), "close");
  });
  const [socket] = await connection;
  if (!client.connected) await next(client, "connect");
  return { io, url, client, socket };
}

/** Runs a script in a fresh node process (from the package directory). */
function runNode(source, env = {}) {
  return spawnSync(process.execPath, ["-e", source], {
    cwd: PACKAGE_DIR,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 20000,
  });
}

describe("the library", () => {
  it("is found without environment variables, in the package's native/ directory", () => {
    const out = runNode('console.log(require("iobus").libraryPath)', { IOBUS_LIBRARY: "" });
    assert.equal(out.status, 0, out.stderr);
    assert.equal(out.stdout.trim(), path.join(PACKAGE_DIR, "native", "libiobus.so"));
    assert.match(iobus.version, /^\d+\.\d+\.\d+$/);
  });

  it("IOBUS_LIBRARY overrides it, and a wrong one says so", () => {
    const lib = path.join(PACKAGE_DIR, "native", "libiobus.so");
    const ok = runNode('console.log(require("iobus").libraryPath)', { IOBUS_LIBRARY: lib });
    assert.equal(ok.stdout.trim(), lib);
    const bad = runNode('require("iobus")', { IOBUS_LIBRARY: "/nonexistent/libiobus.so" });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /IOBUS_LIBRARY points at \/nonexistent\/libiobus\.so/);
  });
});

describe("options", () => {
  // The policies of the library's network threads, read in a process of
  // its own so that no other test's server is counted. A thread has its
  // name a moment before it sets its policy: read until both show
  // `expected`, or 3 s have passed.
  function workerPolicies(opts, expected) {
    const source = `
      const fs = require("node:fs");
      const { Server } = require("iobus");
      const io = new Server(${JSON.stringify(opts)});
      io.listen(0);
      const policies = () => fs.readdirSync("/proc/self/task").flatMap((tid) => {
        try {
          if (fs.readFileSync("/proc/self/task/" + tid + "/comm", "utf8").trim() !== "iobus-worker") return [];
          const rest = fs.readFileSync("/proc/self/task/" + tid + "/stat", "utf8").split(")").pop().trim().split(/ +/);
          return [Number(rest[41 - 3])];
        } catch { return []; }
      });
      const started = Date.now();
      const poll = () => {
        const found = policies();
        if ((found.length === 2 && found.every((p) => p === ${expected})) || Date.now() - started > 3000) {
          console.log(JSON.stringify(found));
          io.close();
        } else setTimeout(poll, 10);
      };
      poll();`;
    const out = runNode(source);
    assert.equal(out.status, 0, out.stderr);
    return JSON.parse(out.stdout.trim());
  }

  it("batchScheduling sets the scheduling class of the network threads (SCHED_BATCH by default)", {
    skip: process.platform !== "linux",
  }, () => {
    const SCHED_OTHER = 0;
    const SCHED_BATCH = 3;
    assert.deepEqual(workerPolicies({ workerThreads: 2, serveClient: false }, SCHED_BATCH), [SCHED_BATCH, SCHED_BATCH]);
    assert.deepEqual(
      workerPolicies({ workerThreads: 2, serveClient: false, batchScheduling: false }, SCHED_OTHER),
      [SCHED_OTHER, SCHED_OTHER],
    );
  });
});

describe("limits", () => {
  /** A raw TCP connection to the server; resolves how long it stayed open once the server closes it. */
  function rawConnection(port, send) {
    const net = require("node:net");
    const started = Date.now();
    const sock = net.connect(port, "127.0.0.1");
    const closed = new Promise((resolve) => sock.on("close", () => resolve(Date.now() - started)));
    sock.on("error", () => {});
    sock.on("connect", () => {
      if (send) sock.write(send);
    });
    sock.resume();
    return { sock, closed };
  }

  it("httpKeepAliveTimeout and httpHeaderTimeout close idle and stalled connections", async (t) => {
    const io = new Server({ serveClient: false, httpKeepAliveTimeout: 300, httpHeaderTimeout: 400 });
    io.listen(0);
    t.after(() => io.close());
    const port = io.httpServer.address().port;
    const idle = rawConnection(port, null);
    const stalled = rawConnection(port, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n");
    t.after(() => {
      idle.sock.destroy();
      stalled.sock.destroy();
    });
    // The defaults are 5 s and 10 s: closing well before proves the options.
    const idleFor = await withTimeout(idle.closed, "idle connection closed");
    const stalledFor = await withTimeout(stalled.closed, "stalled head closed");
    assert.ok(idleFor >= 200 && idleFor < 3000, `idle connection closed after ${idleFor} ms`);
    assert.ok(stalledFor >= 300 && stalledFor < 3000, `stalled head closed after ${stalledFor} ms`);
  });

  it("maxHeaderBytes answers a larger request head with 431", async (t) => {
    const { url } = await setup(t, { maxHeaderBytes: 2048 });
    const res = await withTimeout(
      new Promise((resolve, reject) => {
        http
          .get(`${url}/socket.io/?EIO=4&transport=polling`, { headers: { "x-big": "a".repeat(4096) } }, resolve)
          .on("error", reject);
      }),
      "431",
    );
    res.resume();
    assert.equal(res.statusCode, 431);
    const small = await get(`${url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(small.status, 200);
  });

  it("maxConnections closes the connection idle the longest to make room", async (t) => {
    const io = new Server({ serveClient: false, maxConnections: 2 });
    io.listen(0);
    t.after(() => io.close());
    const port = io.httpServer.address().port;
    const first = rawConnection(port, null);
    t.after(() => first.sock.destroy());
    await new Promise((resolve) => first.sock.once("connect", resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = rawConnection(port, null);
    t.after(() => second.sock.destroy());
    await new Promise((resolve) => second.sock.once("connect", resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const page = await get(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`);
    assert.equal(page.status, 200);
    await withTimeout(first.closed, "the idlest connection closed");
    assert.equal(second.sock.destroyed, false, "the newer idle connection stays");
  });

  it("bad values are refused with the option's name", () => {
    assert.throws(() => new Server({ maxHeaderBytes: 10 }), /option maxHeaderBytes/);
    assert.throws(() => new Server({ writeTimeout: 0 }), /option writeTimeout/);
    assert.throws(() => new Server({ httpHeaderTimeout: -1 }), /httpHeaderTimeout must be a non-negative integer/);
    assert.throws(() => new Server({ maxConnections: "3" }), /maxConnections must be a non-negative integer/);
    assert.throws(() => new Server({ maxBufferedBytes: 1.5 }), /maxBufferedBytes must be a non-negative integer/);
    const io = new Server({
      serveClient: false,
      httpHeaderTimeout: 1000,
      httpKeepAliveTimeout: 1000,
      writeTimeout: 1000,
      maxHeaderBytes: 4096,
      maxConnections: 0,
      maxBufferedBytes: 1 << 20,
    });
    return io.close();
  });
});

describe("connection state recovery", () => {
  it("socket.data that is not JSON is reported when its socket drops, and the server goes on", async (t) => {
    const { io, client, socket } = await setup(t, { connectionStateRecovery: {} });
    const errors = [];
    io.on("error", (err) => errors.push(err.message));
    socket.data.self = socket.data;
    const dropped = next(socket, "disconnect");
    client.io.engine.close();
    assert.equal((await dropped)[0], "transport close");
    assert.equal(errors.length, 1);
    assert.match(errors[0], /socket\.data of \S+ is not JSON, a recovery cannot restore it/);
  });

  it("bad options are refused", () => {
    assert.throws(
      () => new Server({ connectionStateRecovery: { maxDisconnectionDuration: -1 } }),
      /maxDisconnectionDuration must be a non-negative integer/,
    );
    assert.throws(
      () => new Server({ connectionStateRecovery: { maxDisconnectionDuration: 100 * 86400000 } }),
      /option connectionStateRecovery/,
    );
  });
});

describe("cluster operations on a server alone", () => {
  it("serverSideEmit reaches no other server: acks complete with no response; own emits are not heard", async (t) => {
    const { io, client, socket } = await setup(t);
    const heard = [];
    io.on("hello", (...args) => heard.push(args));
    assert.equal(io.serverSideEmit("hello", 1, { two: 2 }), true);
    assert.throws(() => io.serverSideEmit("disconnect"), /reserved event name/);
    assert.throws(() => io.to("r").serverSideEmit("hello"), /not to rooms/);
    const [err, responses] = await withTimeout(
      new Promise((resolve) => io.serverSideEmit("ping", 1, (...r) => resolve(r))),
      "serverSideEmit ack",
    );
    assert.equal(err, null);
    assert.deepEqual(responses, []);
    assert.deepEqual(await withTimeout(io.serverSideEmitWithAck("ping"), "serverSideEmitWithAck"), []);
    assert.deepEqual(await withTimeout(io.timeout(100).serverSideEmitWithAck("ping"), "with a timeout"), []);
    assert.deepEqual(await withTimeout(io.of("/admin").serverSideEmitWithAck("ping"), "another namespace"), []);
    // An event from the client after the emits: everything before it was read.
    socket.on("flush", (ack) => ack());
    await client.timeout(WAIT_MS).emitWithAck("flush");
    assert.deepEqual(heard, []);
  });

  it("nsp.adapter.allRooms(): every room with members, sockets' own included", async (t) => {
    const { io, socket } = await setup(t);
    socket.join(["a", "b"]);
    assert.deepEqual([...(await withTimeout(io.of("/").adapter.allRooms(), "allRooms"))].sort(), [socket.id, "a", "b"].sort());
    assert.deepEqual([...(await withTimeout(io.of("/empty").adapter.allRooms(), "allRooms of another"))], []);
  });
});

describe("handlers", () => {
  it("an exception in an event handler goes to io.on('error'); serving continues", async (t) => {
    const { io, client, socket } = await setup(t);
    const errors = [];
    io.on("error", (err) => errors.push(err.message));
    socket.on("boom", () => {
      throw new Error("handler failed");
    });
    socket.on("async boom", async () => {
      throw new Error("async handler failed");
    });
    socket.on("echo", (x, ack) => ack(x));
    client.emit("boom");
    client.emit("async boom");
    assert.equal(await client.timeout(WAIT_MS).emitWithAck("echo", 5), 5);
    assert.deepEqual(errors.sort(), ["async handler failed", "handler failed"]);
  });

  it("without an error listener, the exception is printed; other listeners still run", async (t) => {
    const { client, socket } = await setup(t);
    const printed = [];
    const original = console.error;
    console.error = (...args) => printed.push(args.map(String).join(" "));
    t.after(() => {
      console.error = original;
    });
    let second = false;
    socket.on("boom", () => {
      throw new Error("first listener failed");
    });
    socket.on("boom", () => {
      second = true;
    });
    socket.on("echo", (x, ack) => ack(x));
    client.emit("boom");
    assert.equal(await client.timeout(WAIT_MS).emitWithAck("echo", 1), 1);
    console.error = original;
    assert.equal(second, true);
    assert.ok(printed.some((line) => line.includes("first listener failed")), printed.join("\n"));
  });

  it("a connection middleware that throws refuses the connection and is reported", async (t) => {
    const io = new Server();
    io.listen(0);
    t.after(() => io.close());
    const errors = [];
    io.on("error", (err) => errors.push(err.message));
    io.use(() => {
      throw new Error("middleware failed");
    });
    const url = `http://127.0.0.1:${io.httpServer.address().port}`;
    const client = connectClient(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    t.after(() => client.disconnect());
    const [err] = await next(client, "connect_error");
    assert.equal(err.message, "middleware failed");
    assert.deepEqual(errors, ["middleware failed"]);
  });

  it("io.close() from inside a handler", async (t) => {
    const { io, client, socket } = await setup(t);
    const gone = next(socket, "disconnect");
    socket.on("stop", () => io.close());
    client.emit("stop");
    assert.deepEqual(await gone, ["server shutting down", undefined]);
  });
});

describe("the event loop", () => {
  it("keeps turning while events stream in", async (t) => {
    const { client, socket } = await setup(t);
    let count = 0;
    socket.on("tick", () => {
      count += 1;
    });
    let last = Date.now();
    let worstGap = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = Date.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
      if (count > 0 && count < 5000) ticks += 1;
    }, 5);
    for (let i = 0; i < 5000; i++) client.emit("tick", i);
    const deadline = Date.now() + 10000;
    while (count < 5000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    clearInterval(timer);
    assert.equal(count, 5000);
    // Timers ran while the events were being delivered, and no turn of the
    // loop took long (the bound leaves room for a busy machine).
    assert.ok(ticks > 0, "no timer ran while the events streamed in");
    assert.ok(worstGap < 1000, `the loop stalled for ${worstGap} ms`);
  });

  it("a process exits by itself after io.close()", () => {
    const script = `
      const { Server } = require("iobus");
      const { io } = require("socket.io-client");
      const server = new Server();
      server.listen(0);
      server.on("connection", (s) => s.on("bye", (ack) => ack("bye")));
      const c = io("http://127.0.0.1:" + server.httpServer.address().port, { transports: ["polling"], reconnection: false });
      c.emit("bye", async (reply) => {
        c.disconnect();
        await server.close();
        console.log("closed", reply);
      });
    `;
    const started = Date.now();
    const out = runNode(script);
    assert.equal(out.status, 0, out.stderr);
    assert.equal(out.stdout.trim(), "closed bye");
    assert.ok(Date.now() - started < 10000);
  });
});

describe("records from the library", () => {
  it("an event bigger than the record buffer arrives whole, in order with its neighbours", async (t) => {
    const { client, socket } = await setup(t);
    const seen = [];
    socket.on("m", (...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      seen.push(args.map((a) => (Buffer.isBuffer(a) ? `buffer ${a.length} ${a[a.length - 1]}` : typeof a === "string" ? `string ${a.length}` : a)));
      if (ack) ack(seen.length);
    });
    const text = "é".repeat(300 * 1024); // 600 KiB of UTF-8
    const blob = Buffer.alloc(700 * 1024, 7);
    client.emit("m", 1);
    client.emit("m", text, blob);
    const count = await client.timeout(WAIT_MS).emitWithAck("m", 2);
    assert.equal(count, 3);
    assert.deepEqual(seen, [[1], [`string ${300 * 1024}`, `buffer ${700 * 1024} 7`], [2]]);
  });

  it("a malformed record is reported, its handle given back, and delivery goes on; an unknown kind is skipped", async (t) => {
    const { io, socket } = await setup(t);
    const { lib } = require("../lib/native");
    const { Kind, HEADER_SIZE } = require("../lib/records");
    const errors = [];
    io.on("error", (err) => errors.push(err));
    const got = [];
    socket.on("m", (...args) => got.push(args));

    // Handles in these records are made up: the calls that would give them
    // back to the library are replaced for the test.
    const freed = [];
    const rejected = [];
    const { iobus_ack_free: ackFree, iobus_connect_reject: connectReject } = lib;
    lib.iobus_ack_free = (handle) => freed.push(handle);
    lib.iobus_connect_reject = (handle, message) => rejected.push([handle, message]);
    t.after(() => {
      lib.iobus_ack_free = ackFree;
      lib.iobus_connect_reject = connectReject;
    });

    const field = (text) => {
      const bytes = Buffer.from(text, "utf8");
      const len = Buffer.alloc(4);
      len.writeUInt32LE(bytes.length, 0);
      return Buffer.concat([len, bytes]);
    };
    const record = (kind, handle, size, ...parts) => {
      const body = Buffer.concat(parts);
      const header = Buffer.alloc(HEADER_SIZE);
      header.writeUInt32LE(size ?? HEADER_SIZE + body.length, 0);
      header[4] = kind;
      header.writeBigUInt64LE(BigInt(io._handlers.idOf(io.sockets)), 8);
      header.writeBigUInt64LE(BigInt(handle), 16);
      return Buffer.concat([header, body]);
    };
    const count = Buffer.alloc(4);
    const event = (text) => [field("/"), field(socket.id), field("m"), field(JSON.stringify([text])), count];
    const bytes = Buffer.concat([
      record(Kind.EVENT, 0x1234, undefined, field("/"), field(socket.id), field("m"), Buffer.from([0xff, 0xff, 0, 0])),
      record(Kind.EVENT, 0, undefined, ...event("first")),
      record(Kind.CONNECT, 0x5678, undefined, field("/"), field("x".repeat(20))),
      record(200, 0, undefined, field("a kind from a later version")),
      record(Kind.EVENT, 0, undefined, ...event("second")),
      record(Kind.EVENT, 0, HEADER_SIZE - 1, ...event("never")),
      record(Kind.EVENT, 0, undefined, ...event("after the broken size")),
    ]);
    bytes.copy(io._pump.records);
    io._pump.deliver(bytes.length);

    assert.deepEqual(got, [["first"], ["second"]]);
    assert.deepEqual(freed, [0x1234]);
    assert.deepEqual(rejected, [[0x5678, "server error"]]);
    assert.equal(errors.length, 3, errors.map(String).join("\n"));
    assert.ok(errors.every((err) => err.code === "IOBUS_MALFORMED_RECORD"), errors.map(String).join("\n"));
  });
});

describe("acks", () => {
  it("an ack answered after its listener returned reaches the client, once", async (t) => {
    const { client, socket } = await setup(t);
    socket.on("later", (x, ack) => {
      setTimeout(() => {
        ack(`late ${x}`);
        ack("twice");
      }, 20);
    });
    assert.equal(await client.timeout(WAIT_MS).emitWithAck("later", 1), "late 1");
    assert.equal(await client.timeout(WAIT_MS).emitWithAck("later", 2), "late 2");
  });

  it("an ack function dropped unanswered gives its handle back once collected; answered ones are not", () => {
    const script = `
      const { Server } = require("iobus");
      const { lib } = require("./lib/native");
      const { io } = require("socket.io-client");
      const freed = [];
      const free = lib.iobus_ack_free;
      lib.iobus_ack_free = (handle) => { freed.push(handle); free(handle); };
      const server = new Server();
      server.listen(0);
      let arrived = 0;
      server.on("connection", (s) => {
        s.on("answered", (ack) => ack(1));
        s.on("kept", (ack) => { setTimeout(() => ack(2), 10); });
        s.on("dropped", () => { arrived += 1; });
      });
      const c = io("http://127.0.0.1:" + server.httpServer.address().port, { transports: ["websocket"], reconnection: false });
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      c.on("connect", async () => {
        await c.emitWithAck("answered");
        await c.emitWithAck("kept");
        c.emit("dropped", () => {});
        c.emit("dropped", () => {});
        while (arrived < 2) await sleep(10);
        for (let i = 0; i < 50 && freed.length < 2; i++) { global.gc(); await sleep(20); }
        await sleep(100);
        console.log(freed.length);
        c.disconnect();
        await server.close();
      });
    `;
    const out = spawnSync(process.execPath, ["--expose-gc", "-e", script], {
      cwd: PACKAGE_DIR,
      encoding: "utf8",
      timeout: 20000,
    });
    assert.equal(out.status, 0, out.stderr);
    assert.equal(out.stdout.trim(), "2");
  });
});

describe("HTTP", () => {
  it("serves the client bundle and a static directory beside Socket.IO", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "iobus-static-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, "index.html"), "<h1>hello</h1>");
    const { url } = await setup(t, { staticDir: dir });
    const page = await get(`${url}/`);
    assert.equal(page.status, 200);
    assert.equal(page.body, "<h1>hello</h1>");
    const bundle = await get(`${url}/socket.io/socket.io.js`);
    assert.equal(bundle.status, 200);
    assert.match(bundle.headers["content-type"], /javascript/);
  });

  it("options: cors answers browsers from an allowed origin, transports restrict", async (t) => {
    const { url } = await setup(t, {
      cors: { origin: ["https://app.example"], credentials: true },
      transports: ["websocket"],
    });
    const res = await withTimeout(
      new Promise((resolve, reject) => {
        const req = http.request(`${url}/socket.io/?EIO=4&transport=polling`, {
          method: "OPTIONS",
          headers: { origin: "https://app.example", "access-control-request-method": "GET" },
        });
        req.on("response", resolve).on("error", reject).end();
      }),
      "preflight",
    );
    res.resume();
    assert.equal(res.headers["access-control-allow-origin"], "https://app.example");
    assert.equal(res.headers["access-control-allow-credentials"], "true");
    const polling = await get(`${url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(polling.status, 400, "polling is not offered");
  });

  it("refuses an http.Server, which iobus does not need", () => {
    assert.throws(() => new Server(http.createServer()), /iobus serves HTTP itself/);
  });

  it("a port in use is an error from listen()", async (t) => {
    const first = new Server();
    first.listen(0);
    t.after(() => first.close());
    const second = new Server();
    t.after(() => second.close());
    assert.throws(() => second.listen(first.httpServer.address().port), /cannot listen/);
  });
});

describe("README", () => {
  const readme = fs.readFileSync(path.join(PACKAGE_DIR, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## The classic chat, ported"));
  const [original, ported] = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  const handlers = (source) => source.slice(source.indexOf('io.on("connection"'), source.indexOf("\n});\n") + 4);

  it("the ported classic chat keeps every handler line of the socket.io original", () => {
    assert.match(original, /require\("socket\.io"\)/);
    assert.match(ported, /require\("iobus"\)/);
    assert.ok(handlers(original).length > 100);
    assert.equal(handlers(ported), handlers(original));
  });

  it("the ported classic chat runs: join, chat message and leave reach everyone", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "iobus-classic-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.mkdirSync(path.join(dir, "public"));
    fs.writeFileSync(path.join(dir, "public", "index.html"), "<p>chat</p>");
    const program = ported
      .replace('require("iobus")', `require(${JSON.stringify(PACKAGE_DIR)})`)
      .replace("io.listen(3000,", "io.listen(0,")
      .replace("http://127.0.0.1:3000", 'http://127.0.0.1:" + io.httpServer.address().port + "');
    // The IPC channel must not keep the process alive: the server alone does.
    fs.writeFileSync(path.join(dir, "chat.js"), `${program}\nprocess.channel.unref();\nprocess.on("message", () => io.close());\n`);
    const { fork } = require("node:child_process");
    const child = fork(path.join(dir, "chat.js"), { stdio: ["ignore", "pipe", "pipe", "ipc"] });
    t.after(() => child.kill());
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    await withTimeout(
      new Promise((resolve) => child.stdout.on("data", () => output.includes("chat server on") && resolve())),
      "chat server banner",
    );
    const port = Number(/chat server on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)[1]);
    const url = `http://127.0.0.1:${port}`;
    assert.equal((await get(`${url}/`)).body, "<p>chat</p>");
    const ann = connectClient(url, { forceNew: true, reconnection: false });
    const bob = connectClient(url, { forceNew: true, reconnection: false, transports: ["websocket"] });
    t.after(() => {
      ann.disconnect();
      bob.disconnect();
    });
    await Promise.all([next(ann, "connect"), next(bob, "connect")]);
    const joined = next(bob, "join");
    ann.emit("join", "ann");
    assert.deepEqual(await joined, ["ann"]);
    const message = next(ann, "chat message");
    bob.emit("chat message", "hello");
    assert.deepEqual(await message, ["hello"]);
    const left = next(bob, "leave");
    ann.disconnect();
    assert.deepEqual(await left, ["ann"]);
    const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    child.send("stop");
    assert.equal(await withTimeout(exited, "chat exit"), 0);
  });
});
