// The socket.io server API, scenario by scenario, driven by the npm
// socket.io-client over every transport (websocket only, polling only,
// polling upgraded to websocket). The file takes a factory so that the same
// scenarios run against an iobus Server and against the npm socket.io
// Server: both must pass every one of them.
//
//   defineScenarios("iobus", (...args) => new (require("iobus").Server)(...args));

"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const net = require("node:net");
const { once } = require("node:events");
const { io: connectClient } = require("socket.io-client");

const WAIT_MS = 4000;
const QUIET_MS = 200;
const SCENARIO_TIMEOUT_MS = 15000;

const MODES = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  upgrade: {},
};

// ---- waiting, always bounded ---------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout(promise, label, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The argument list of the next `event` on `emitter`. */
function next(emitter, event, ms = WAIT_MS) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    `event "${event}"`,
    ms,
  );
}

/** Records every `event` on `emitter`; `wait(n)` resolves once n have arrived. */
function record(emitter, event) {
  const seen = [];
  let wake = null;
  emitter.on(event, (...args) => {
    seen.push(args);
    if (wake) wake();
  });
  return {
    seen,
    async wait(n, ms = WAIT_MS) {
      const deadline = Date.now() + ms;
      while (seen.length < n) {
        if (Date.now() > deadline) throw new Error(`got ${seen.length} of ${n} "${event}" events`);
        await new Promise((resolve) => {
          wake = resolve;
          setTimeout(resolve, 20);
        });
      }
      return seen;
    },
  };
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

// ---- a server and its clients for one scenario -------------------------------

class World {
  constructor(t, factory, mode) {
    this.factory = factory;
    this.mode = mode;
    this.clients = [];
    this.servers = [];
    t.after(() => this.end());
  }

  /** A server from the factory, listening on a free port. */
  async server(opts = {}) {
    const io = this.factory({ pingInterval: 2000, pingTimeout: 2000, ...opts });
    this.servers.push(io);
    io.listen(0);
    await this.listening(io);
    this.url = `http://127.0.0.1:${io.httpServer.address().port}`;
    return io;
  }

  async listening(io) {
    if (!io.httpServer.listening) await withTimeout(once(io.httpServer, "listening"), "listening");
  }

  /** A client socket, not yet connected. */
  raw(nsp = "/", extra = {}) {
    const socket = connectClient(this.url + nsp, {
      forceNew: true,
      reconnection: false,
      timeout: WAIT_MS,
      ...MODES[this.mode],
      ...extra,
    });
    this.clients.push(socket);
    return socket;
  }

  /**
   * A connected client socket and the server's socket for it. In upgrade
   * mode the client has moved to websocket when this resolves.
   */
  async connect(io, nsp = "/", extra = {}) {
    const target = nsp === "/" ? io : io.of(nsp);
    const serverSide = withTimeout(
      new Promise((resolve) => target.once("connection", resolve)),
      "server connection",
    );
    const client = this.raw(nsp, extra);
    await next(client, "connect");
    const socket = await serverSide;
    assert.equal(socket.id, client.id, "the server's socket id is the client's");
    if (this.mode === "upgrade" && client.io.engine.transport.name !== "websocket") {
      await next(client.io.engine, "upgrade");
    }
    assert.equal(client.io.engine.transport.name, this.mode === "polling" ? "polling" : "websocket");
    return { client, socket };
  }

  async end() {
    for (const c of this.clients) c.disconnect();
    for (const io of this.servers) await withTimeout(io.close(), "close");
  }
}

/** Asks the client side to answer `event` acks with `reply(...args)`. */
function answer(client, event, reply) {
  client.on(event, (...args) => {
    const ack = args.pop();
    ack(reply(...args));
  });
}

const sorted = (iterable) => [...iterable].sort();

// ---- the scenarios -----------------------------------------------------------------

/**
 * Registers every scenario under `describe(label)`. `factory(...args)`
 * returns `new Server(...args)` of the implementation under test.
 */
function defineScenarios(label, factory) {
  describe(label, () => {
    for (const mode of Object.keys(MODES)) {
      describe(`transport: ${mode}`, () => {
        const scenario = (name, fn) =>
          it(name, { timeout: SCENARIO_TIMEOUT_MS }, (t) => fn(new World(t, factory, mode)));

        scenario("new Server(port, options) listens at once", async (w) => {
          const port = await freePort();
          const io = factory(port, { pingInterval: 2000 });
          w.servers.push(io);
          await w.listening(io);
          assert.equal(io.httpServer.address().port, port);
          w.url = `http://127.0.0.1:${port}`;
          const { client } = await w.connect(io);
          assert.equal(client.connected, true);
        });

        scenario("connection: id, handshake (auth, query, headers, address), data, rooms", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io, "/", {
            auth: { token: "t-1", nested: { n: 1 } },
            query: { q: "42" },
            extraHeaders: { "x-trace": "abc" },
          });
          assert.equal(socket.id, client.id);
          assert.equal(socket.connected, true);
          assert.equal(socket.disconnected, false);
          assert.deepEqual(socket.handshake.auth, { token: "t-1", nested: { n: 1 } });
          assert.equal(socket.handshake.query.q, "42");
          assert.equal(socket.handshake.query.EIO, "4");
          assert.match(socket.handshake.headers.host, /^127\.0\.0\.1:\d+$/);
          if (mode !== "websocket") assert.equal(socket.handshake.headers["x-trace"], "abc");
          assert.match(socket.handshake.address, /127\.0\.0\.1$/);
          assert.equal(typeof socket.handshake.issued, "number");
          assert.equal(typeof socket.handshake.time, "string");
          assert.match(socket.handshake.url, /^\/socket\.io\/\?/);
          assert.deepEqual(socket.data, {});
          socket.data.user = "ann";
          assert.equal(io.of("/").sockets.get(socket.id).data.user, "ann");
          assert.ok(socket.rooms instanceof Set);
          assert.deepEqual([...socket.rooms], [socket.id]);
          assert.equal(socket.nsp.name, "/");
        });

        scenario("io.of(nsp): its own connections; an unknown namespace is refused", async (w) => {
          const io = await w.server();
          const admin = io.of("/admin");
          assert.equal(io.of("admin"), admin, "the same namespace by either spelling");
          let rootConnections = 0;
          io.on("connection", () => rootConnections++);
          const { socket } = await w.connect(io, "/admin");
          assert.equal(socket.nsp, admin);
          assert.equal(socket.nsp.name, "/admin");
          assert.equal(rootConnections, 0);
          const stray = w.raw("/nowhere");
          const [err] = await next(stray, "connect_error");
          assert.equal(err.message, "Invalid namespace");
        });

        scenario("io.of(RegExp): a child namespace per matching name", async (w) => {
          const io = await w.server();
          const parent = io.of(/^\/dyn-\d+$/);
          const names = [];
          parent.on("connection", (s) => {
            names.push(s.nsp.name);
            s.emit("where", s.nsp.name);
          });
          const client = w.raw("/dyn-7");
          const [where] = await next(client, "where");
          assert.equal(where, "/dyn-7");
          assert.deepEqual(names, ["/dyn-7"]);
          const other = w.raw("/dyn-x");
          const [err] = await next(other, "connect_error");
          assert.equal(err.message, "Invalid namespace");
        });

        scenario("io.use: next() admits, next(err) refuses with message and data, decisions may wait", async (w) => {
          const io = await w.server();
          const order = [];
          io.use((socket, next) => {
            order.push("first");
            socket.data.seen = true;
            next();
          });
          io.use((socket, next) => {
            order.push("second");
            const { auth } = socket.handshake;
            setTimeout(() => {
              if (auth.refuse) {
                const err = new Error("Not authorized");
                err.data = { reason: auth.refuse, code: 7 };
                next(err);
              } else {
                next();
              }
            }, 50);
          });
          let connected = null;
          io.on("connection", (s) => {
            connected = s;
          });
          const refused = w.raw("/", { auth: { refuse: "banned" } });
          const [err] = await next(refused, "connect_error");
          assert.equal(err.message, "Not authorized");
          assert.deepEqual(err.data, { reason: "banned", code: 7 });
          assert.equal(connected, null);
          const { socket } = await w.connect(io);
          assert.equal(socket.data.seen, true);
          assert.deepEqual(order, ["first", "second", "first", "second"]);

          const admin = io.of("/admin");
          admin.use((socket, next) => next(new Error("admins only")));
          const [adminErr] = await next(w.raw("/admin"), "connect_error");
          assert.equal(adminErr.message, "admins only");
        });

        scenario("socket.on(event, (...args, ack)): arguments in order, the ack answers", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          socket.on("sum", (a, b, ack) => ack({ sum: a + b }, "extra"));
          socket.on("plain", (...args) => socket.emit("plain back", ...args));
          const reply = await withTimeout(
            new Promise((resolve) => client.emit("sum", 2, 3, (...r) => resolve(r))),
            "ack",
          );
          assert.deepEqual(reply, [{ sum: 5 }, "extra"]);
          const back = next(client, "plain back");
          client.emit("plain", "s", 1, true, null, [1, { a: "ü✓" }]);
          assert.deepEqual(await back, ["s", 1, true, null, [1, { a: "ü✓" }]]);
          assert.deepEqual(await client.timeout(WAIT_MS).emitWithAck("sum", 10, 5), { sum: 15 });
        });

        scenario("events from one socket arrive in order", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          const got = record(socket, "n");
          for (let i = 0; i < 300; i++) client.emit("n", i);
          const seen = await got.wait(300);
          assert.deepEqual(seen.map(([i]) => i), Array.from({ length: 300 }, (_, i) => i));
        });

        scenario("socket.emit: to its client, with binary anywhere in the arguments", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          const arrived = next(client, "blob");
          const ab = new Uint8Array([7, 8, 9]).buffer;
          socket.emit("blob", Buffer.from([1, 2, 3]), { nested: { deep: [new Uint8Array([4, 5]), "x"] }, ab }, "tail");
          const [buf, obj, tail] = await arrived;
          assert.ok(Buffer.isBuffer(buf));
          assert.deepEqual([...buf], [1, 2, 3]);
          assert.deepEqual([...obj.nested.deep[0]], [4, 5]);
          assert.equal(obj.nested.deep[1], "x");
          assert.deepEqual([...obj.ab], [7, 8, 9]);
          assert.equal(tail, "tail");
          assert.equal(socket.emit("plain", 1), true);
          assert.throws(() => socket.emit("disconnect"), /reserved/);
        });

        scenario("binary from the client reaches handlers as Buffers; acks carry binary back", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          socket.on("upload", (meta, data, ack) => {
            assert.ok(Buffer.isBuffer(data), "the attachment is a Buffer");
            ack({ name: meta.name, size: data.length }, Buffer.concat([data, Buffer.from([0xff])]));
          });
          const big = Buffer.alloc(50000, 0xab);
          const [info, echoed] = await withTimeout(
            new Promise((resolve) => client.emit("upload", { name: "f" }, big, (...r) => resolve(r))),
            "upload ack",
          );
          assert.deepEqual(info, { name: "f", size: 50000 });
          assert.equal(echoed.length, 50001);
          assert.equal(echoed[50000], 0xff);
        });

        scenario("socket.emit with an ack, socket.emitWithAck", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          answer(client, "question", (q) => `answer to ${q}`);
          const reply = await withTimeout(
            new Promise((resolve) => socket.emit("question", "life", (...r) => resolve(r))),
            "server-side ack",
          );
          assert.deepEqual(reply, ["answer to life"]);
          assert.equal(await withTimeout(socket.emitWithAck("question", "all"), "emitWithAck"), "answer to all");
        });

        scenario("socket.timeout(ms).emit: the reply, or an error when none comes", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          answer(client, "fast", (x) => x * 2);
          client.on("silent", () => {});
          const ok = await withTimeout(
            new Promise((resolve) => socket.timeout(2000).emit("fast", 21, (err, ...r) => resolve([err, ...r]))),
            "timeout ack",
          );
          assert.deepEqual(ok, [null, 42]);
          const started = Date.now();
          const [err] = await withTimeout(
            new Promise((resolve) => socket.timeout(150).emit("silent", 1, (...r) => resolve(r))),
            "timeout error",
          );
          assert.ok(err instanceof Error);
          assert.equal(err.message, "operation has timed out");
          assert.ok(Date.now() - started >= 100, "not before the timeout");
          await assert.rejects(socket.timeout(100).emitWithAck("silent"), /operation has timed out/);
          // timeout(0) times out at once; it is not "no timeout".
          await assert.rejects(
            withTimeout(socket.timeout(0).emitWithAck("silent"), "timeout(0)"),
            /operation has timed out/,
          );
          assert.equal(await socket.timeout(2000).emitWithAck("fast", 5), 10);
        });

        scenario("join/leave and socket.rooms", async (w) => {
          const io = await w.server();
          const { socket } = await w.connect(io);
          socket.join("a");
          socket.join(["b", "c"]);
          assert.deepEqual(sorted(socket.rooms), sorted([socket.id, "a", "b", "c"]));
          socket.leave("b");
          assert.deepEqual(sorted(socket.rooms), sorted([socket.id, "a", "c"]));
        });

        scenario("socket.to(room), socket.broadcast, socket.except(room): the sender excluded", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          const c = await w.connect(io);
          a.socket.join("r");
          b.socket.join("r");
          const got = { a: record(a.client, "m"), b: record(b.client, "m"), c: record(c.client, "m") };

          a.socket.to("r").emit("m", "to r");
          await got.b.wait(1);
          a.socket.broadcast.emit("m", "broadcast");
          await got.b.wait(2);
          await got.c.wait(1);
          a.socket.except("r").emit("m", "except r");
          await got.c.wait(2);
          b.socket.to("r").to(c.socket.id).emit("m", "r or c");
          await got.a.wait(1);
          await got.c.wait(3);
          await sleep(QUIET_MS);

          assert.deepEqual(got.a.seen, [["r or c"]]);
          assert.deepEqual(got.b.seen, [["to r"], ["broadcast"]]);
          assert.deepEqual(got.c.seen, [["broadcast"], ["except r"], ["r or c"]]);
        });

        scenario("io.emit, io.to(room).except(room).emit, namespaces apart", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          const c = await w.connect(io);
          const admin = await w.connect(io, "/admin");
          a.socket.join(["r", "x"]);
          b.socket.join("r");
          const got = {
            a: record(a.client, "m"),
            b: record(b.client, "m"),
            c: record(c.client, "m"),
            admin: record(admin.client, "m"),
          };
          io.emit("m", "all", Buffer.from([1]));
          for (const k of ["a", "b", "c"]) await got[k].wait(1);
          io.to("r").except("x").emit("m", "r but not x");
          await got.b.wait(2);
          io.of("/admin").emit("m", "admins");
          await got.admin.wait(1);
          io.to(["r", "x"]).emit("m", "once");
          await got.a.wait(2);
          await got.b.wait(3);
          await sleep(QUIET_MS);
          assert.deepEqual(got.a.seen.map(([m]) => m), ["all", "once"]);
          assert.deepEqual(got.b.seen.map(([m]) => m), ["all", "r but not x", "once"]);
          assert.deepEqual(got.c.seen.map(([m]) => m), ["all"]);
          assert.deepEqual(got.admin.seen, [["admins"]]);
          assert.deepEqual([...got.a.seen[0][1]], [1]);
        });

        scenario("volatile emits: delivered when the client can take them, to the right sockets", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          const seen = { a: [], b: [] };
          a.client.onAny((event) => seen.a.push(event));
          b.client.onAny((event) => seen.b.push(event));
          // A volatile packet may be dropped while a polling client has no
          // request pending: send until one arrives.
          const until = async (send, who, event) => {
            const deadline = Date.now() + WAIT_MS;
            while (!seen[who].includes(event)) {
              if (Date.now() > deadline) throw new Error(`${who} never got the volatile "${event}"`);
              send();
              await sleep(30);
            }
          };
          await until(() => a.socket.volatile.emit("direct"), "a", "direct");
          await until(() => io.volatile.emit("everyone"), "a", "everyone");
          await until(() => io.volatile.emit("everyone"), "b", "everyone");
          await until(() => a.socket.broadcast.volatile.emit("others"), "b", "others");
          await sleep(QUIET_MS);
          assert.ok(!seen.b.includes("direct"), "a direct emit reached another socket");
          assert.ok(!seen.a.includes("others"), "a broadcast reached its sender");
        });

        scenario("broadcast acks: io.timeout(ms).emit(..., (err, responses)), emitWithAck", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          answer(a.client, "poll", (q) => `a:${q}`);
          answer(b.client, "poll", (q) => `b:${q}`);
          const [err, responses] = await withTimeout(
            new Promise((resolve) => io.timeout(2000).emit("poll", "q1", (...r) => resolve(r))),
            "broadcast ack",
          );
          assert.equal(err, null);
          assert.deepEqual(responses.sort(), ["a:q1", "b:q1"]);
          assert.deepEqual((await io.timeout(2000).emitWithAck("poll", "q2")).sort(), ["a:q2", "b:q2"]);
          const c = await w.connect(io);
          c.client.on("poll", () => {});
          const [late, partial] = await withTimeout(
            new Promise((resolve) => io.timeout(200).emit("poll", "q3", (...r) => resolve(r))),
            "broadcast ack timeout",
          );
          assert.equal(late.message, "operation has timed out");
          assert.deepEqual(partial.sort(), ["a:q3", "b:q3"]);
        });

        scenario("broadcast acks to a selection: rooms, except rooms, the sender excluded, binary replies", async (w) => {
          const io = await w.server();
          const peers = {};
          for (const name of ["a", "b", "c", "d"]) {
            peers[name] = await w.connect(io);
            answer(peers[name].client, "vote", (q) => `${name}:${q}`);
          }
          const { a, b, c, d } = peers;
          a.socket.join("r");
          b.socket.join("r");
          c.socket.join(["r", "x"]);
          d.client.on("blob", (ack) => ack(Buffer.from([1, 2, 3])));

          const [err, responses] = await withTimeout(
            new Promise((resolve) => io.timeout(2000).to("r").except("x").emit("vote", "q1", (...r) => resolve(r))),
            "to(r).except(x) acks",
          );
          assert.equal(err, null);
          assert.deepEqual(responses.sort(), ["a:q1", "b:q1"]);
          const fromA = await withTimeout(a.socket.to("r").timeout(2000).emitWithAck("vote", "q2"), "socket.to(r) acks");
          assert.deepEqual(fromA.sort(), ["b:q2", "c:q2"]);
          const others = await withTimeout(a.socket.broadcast.timeout(2000).emitWithAck("vote", "q3"), "broadcast acks");
          assert.deepEqual(others.sort(), ["b:q3", "c:q3", "d:q3"]);
          const everyone = await withTimeout(io.timeout(2000).except(["x", a.socket.id]).emitWithAck("vote", "q4"), "except");
          assert.deepEqual(everyone.sort(), ["b:q4", "d:q4"]);
          const [blob] = await withTimeout(io.timeout(2000).to(d.socket.id).emitWithAck("blob"), "binary reply");
          assert.ok(Buffer.isBuffer(blob), "a binary reply arrives as a Buffer");
          assert.deepEqual([...blob], [1, 2, 3]);
          assert.deepEqual(await withTimeout(io.timeout(500).to("nobody").emitWithAck("vote", "q5"), "nobody"), []);
        });

        scenario("broadcast acks: a silent client and one that leaves make a timeout error with the replies that came", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          const silent = await w.connect(io);
          const leaving = await w.connect(io);
          answer(a.client, "vote", (q) => `a:${q}`);
          answer(b.client, "vote", (q) => `b:${q}`);
          silent.client.on("vote", () => {});
          leaving.client.on("vote", () => leaving.client.disconnect());
          for (const peer of [a, b, silent]) peer.socket.join("quiet");
          a.socket.join("gone");
          leaving.socket.join("gone");

          const started = Date.now();
          const err = await withTimeout(
            io.timeout(300).to("quiet").emitWithAck("vote", "q1").then(
              () => assert.fail("every client answered"),
              (e) => e,
            ),
            "timeout",
          );
          assert.equal(err.message, "operation has timed out");
          assert.deepEqual(err.responses.sort(), ["a:q1", "b:q1"]);
          assert.ok(Date.now() - started >= 250, "not before the timeout");

          const [left, partial] = await withTimeout(
            new Promise((resolve) => io.timeout(1000).to("gone").emit("vote", "q2", (...r) => resolve(r))),
            "a recipient leaving",
          );
          assert.ok(left instanceof Error);
          assert.equal(left.message, "operation has timed out");
          assert.deepEqual(partial, ["a:q2"]);
        });

        scenario("fetchSockets: id, handshake, rooms, data; except rooms; from a socket; and acting on what was fetched", async (w) => {
          const io = await w.server();
          const a = await w.connect(io, "/", { auth: { user: "ann" }, query: { v: "1" } });
          const b = await w.connect(io, "/", { auth: { user: "bob" } });
          const c = await w.connect(io);
          a.socket.data.name = "ann";
          a.socket.join(["r", "s"]);
          b.socket.data = { name: "bob", score: 2 };
          b.socket.join("r");

          const inR = await withTimeout(io.in("r").fetchSockets(), "in(r)");
          assert.deepEqual(sorted(inR.map((s) => s.id)), sorted([a.socket.id, b.socket.id]));
          const fa = inR.find((s) => s.id === a.socket.id);
          const fb = inR.find((s) => s.id === b.socket.id);
          assert.deepEqual(fa.data, { name: "ann" });
          assert.deepEqual(fb.data, { name: "bob", score: 2 });
          assert.ok(fa.rooms instanceof Set);
          assert.deepEqual(sorted(fa.rooms), sorted([a.socket.id, "r", "s"]));
          assert.deepEqual(fa.handshake.auth, { user: "ann" });
          assert.equal(fa.handshake.query.v, "1");
          assert.match(fa.handshake.address, /127\.0\.0\.1$/);

          const rNotS = await withTimeout(io.in("r").except("s").fetchSockets(), "in(r).except(s)");
          assert.deepEqual(rNotS.map((s) => s.id), [b.socket.id]);
          const notA = await withTimeout(a.socket.broadcast.fetchSockets(), "socket.broadcast");
          assert.deepEqual(sorted(notA.map((s) => s.id)), sorted([b.socket.id, c.socket.id]));
          const exceptBoth = await withTimeout(io.except(["s", b.socket.id]).fetchSockets(), "except room and id");
          assert.deepEqual(exceptBoth.map((s) => s.id), [c.socket.id]);

          const hello = next(b.client, "hello");
          fb.emit("hello", "from a fetch");
          assert.deepEqual(await hello, ["from a fetch"]);
          fb.join("t");
          assert.ok(b.socket.rooms.has("t"));
          fb.leave("t");
          assert.ok(!b.socket.rooms.has("t"));
          const gone = next(b.client, "disconnect");
          fb.disconnect();
          assert.equal((await gone)[0], "io server disconnect");
        });

        scenario("socketsJoin, socketsLeave, disconnectSockets with except rooms and from a socket", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          const c = await w.connect(io);
          a.socket.join("r");
          b.socket.join("r");
          c.socket.join("x");

          io.except("x").socketsJoin("y");
          assert.ok(a.socket.rooms.has("y") && b.socket.rooms.has("y") && !c.socket.rooms.has("y"));
          a.socket.to("r").socketsJoin(["z", "w"]);
          assert.ok(b.socket.rooms.has("z") && b.socket.rooms.has("w"));
          assert.ok(!a.socket.rooms.has("z") && !c.socket.rooms.has("z"));
          io.in("y").except(a.socket.id).socketsLeave("r");
          assert.ok(a.socket.rooms.has("r") && !b.socket.rooms.has("r"));
          a.socket.broadcast.socketsLeave("y");
          assert.ok(a.socket.rooms.has("y") && !b.socket.rooms.has("y"));

          const stay = { a: record(a.client, "disconnect"), b: record(b.client, "disconnect") };
          const cGone = next(c.client, "disconnect");
          io.except("r").except("w").disconnectSockets();
          assert.equal((await cGone)[0], "io server disconnect");
          const bGone = next(b.client, "disconnect");
          a.socket.broadcast.disconnectSockets();
          assert.equal((await bGone)[0], "io server disconnect");
          await sleep(QUIET_MS);
          assert.deepEqual(stay.a.seen, []);
          assert.equal(a.client.connected, true);
        });

        scenario("io.local and socket.local: this server's sockets, the sender excluded", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          const got = { a: record(a.client, "m"), b: record(b.client, "m") };
          io.local.emit("m", "local");
          await got.a.wait(1);
          await got.b.wait(1);
          a.socket.local.emit("m", "from a");
          await got.b.wait(2);
          io.local.to(a.socket.id).emit("m", "to a");
          await got.a.wait(2);
          assert.deepEqual((await withTimeout(io.local.fetchSockets(), "local fetch")).length, 2);
          await sleep(QUIET_MS);
          assert.deepEqual(got.a.seen, [["local"], ["to a"]]);
          assert.deepEqual(got.b.seen, [["local"], ["from a"]]);
        });

        /**
         * Drops `peer`'s connection at the transport (its client reconnects
         * with the state it had) once it has received a stored packet, emits
         * `missed` to room "r" while it is away, and resolves with the
         * server's socket of its next connection and the packets its client
         * got.
         */
        async function dropAndRecover(io, peer, missed) {
          const got = record(peer.client, "m");
          io.to("r").emit("m", "before");
          await got.wait(1);
          const dropped = next(peer.socket, "disconnect");
          const back = next(io, "connection");
          const reconnected = next(peer.client, "connect");
          peer.client.io.engine.close();
          const [reason] = await dropped;
          assert.ok(["transport close", "transport error", "forced close"].includes(reason), reason);
          for (const m of missed) io.to("r").emit("m", m);
          const [socket] = await back;
          await reconnected;
          await got.wait(1 + missed.length);
          return { socket, got: got.seen.map(([m]) => m) };
        }

        const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 100 };

        scenario("connection state recovery: the same id, rooms, data and missed packets; middlewares skipped", async (w) => {
          const io = await w.server({ connectionStateRecovery: { maxDisconnectionDuration: 5000 } });
          const checked = [];
          io.use((socket, nextFn) => {
            checked.push(socket.recovered);
            nextFn();
          });
          const peer = await w.connect(io, "/", RECONNECT);
          assert.equal(peer.socket.recovered, false);
          assert.equal(peer.client.recovered, false);
          peer.socket.join("r");
          peer.socket.data.name = "ann";
          peer.socket.on("disconnect", () => {
            peer.socket.data.left = true;
          });
          const { socket, got } = await dropAndRecover(io, peer, ["missed 1", "missed 2"]);
          assert.equal(socket.id, peer.socket.id);
          assert.equal(socket.recovered, true);
          assert.equal(peer.client.recovered, true);
          assert.ok(socket.rooms.has("r"), "the rooms are back");
          assert.deepEqual(socket.data, { name: "ann", left: true });
          assert.deepEqual(got, ["before", "missed 1", "missed 2"]);
          assert.deepEqual(checked, [false], "the middleware ran for the first connection only");
          // (Stored packets carry their offset as a last argument.)
          const echoed = next(peer.client, "m");
          io.to("r").emit("m", "live");
          assert.equal((await echoed)[0], "live");
        });

        scenario("connection state recovery without skipMiddlewares: they run again and see a recovered socket", async (w) => {
          const io = await w.server({ connectionStateRecovery: { maxDisconnectionDuration: 5000, skipMiddlewares: false } });
          const checked = [];
          io.use((socket, nextFn) => {
            checked.push([socket.recovered, socket.data.name]);
            nextFn();
          });
          const peer = await w.connect(io, "/", RECONNECT);
          peer.socket.join("r");
          peer.socket.data.name = "bob";
          const { socket, got } = await dropAndRecover(io, peer, ["missed"]);
          assert.equal(socket.id, peer.socket.id);
          assert.equal(socket.recovered, true);
          assert.deepEqual(got, ["before", "missed"]);
          assert.deepEqual(checked, [[false, undefined], [true, "bob"]]);
        });

        scenario("socket.use, onAny, onAnyOutgoing, send", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          const incoming = [];
          const outgoing = [];
          socket.onAny((event, ...args) => incoming.push([event, ...args]));
          socket.onAnyOutgoing((event, ...args) => outgoing.push([event, ...args]));
          socket.use(([event], next) => (event === "forbidden" ? next(new Error("not allowed")) : next()));
          const errors = [];
          socket.on("error", (err) => errors.push(err.message));
          const handled = [];
          socket.on("allowed", (x) => handled.push(x));
          socket.on("forbidden", (x) => handled.push(x));
          const gotMessage = next(client, "message");
          client.emit("forbidden", 1);
          client.emit("allowed", 2);
          socket.send("hi");
          assert.deepEqual(await gotMessage, ["hi"]);
          const deadline = Date.now() + WAIT_MS;
          while (handled.length < 1 && Date.now() < deadline) await sleep(10);
          await sleep(50);
          assert.deepEqual(handled, [2]);
          assert.deepEqual(errors, ["not allowed"]);
          assert.deepEqual(incoming, [["forbidden", 1], ["allowed", 2]]);
          assert.deepEqual(outgoing, [["message", "hi"]]);
        });

        scenario("options: a custom path, and the namespace function form", async (w) => {
          const io = await w.server({ path: "/rt/" });
          const checked = [];
          io.of((name, auth, next) => {
            checked.push(name);
            next(null, name.startsWith("/team-"));
          }).on("connection", (s) => s.emit("team", s.nsp.name));
          const client = w.raw("/team-blue", { path: "/rt/" });
          assert.deepEqual(await next(client, "team"), ["/team-blue"]);
          const [err] = await next(w.raw("/solo", { path: "/rt/" }), "connect_error");
          assert.equal(err.message, "Invalid namespace");
          assert.deepEqual(checked, ["/team-blue", "/solo"]);
        });

        scenario("client disconnect: disconnecting (rooms still there), then disconnect", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          socket.join("room-1");
          const events = [];
          socket.on("disconnecting", (reason) => events.push(["disconnecting", reason, sorted(socket.rooms)]));
          socket.on("disconnect", (reason) => events.push(["disconnect", reason, sorted(socket.rooms)]));
          const done = next(socket, "disconnect");
          client.disconnect();
          await done;
          assert.deepEqual(events, [
            ["disconnecting", "client namespace disconnect", sorted([socket.id, "room-1"])],
            ["disconnect", "client namespace disconnect", []],
          ]);
          assert.equal(socket.connected, false);
          assert.equal(io.of("/").sockets.has(socket.id), false);
        });

        scenario("socket.disconnect(): the client sees io server disconnect", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          const clientSide = next(client, "disconnect");
          const serverSide = next(socket, "disconnect");
          socket.disconnect();
          assert.deepEqual((await clientSide)[0], "io server disconnect");
          assert.deepEqual((await serverSide)[0], "server namespace disconnect");
          assert.equal(socket.connected, false);
        });

        scenario("socket.disconnect(true): the whole connection closes", async (w) => {
          const io = await w.server();
          io.of("/admin");
          const main = await w.connect(io);
          const manager = main.client.io;
          const admin = manager.socket("/admin");
          w.clients.push(admin);
          await next(admin, "connect");
          const adminGone = next(admin, "disconnect");
          const mainGone = next(main.client, "disconnect");
          main.socket.disconnect(true);
          await mainGone;
          await adminGone;
          assert.equal(main.socket.connected, false);
        });

        scenario("io.in(room).fetchSockets, socketsJoin, socketsLeave, disconnectSockets", async (w) => {
          const io = await w.server();
          const a = await w.connect(io);
          const b = await w.connect(io);
          const c = await w.connect(io);
          a.socket.join("r");
          b.socket.join("r");
          const inR = await io.in("r").fetchSockets();
          assert.deepEqual(sorted(inR.map((s) => s.id)), sorted([a.socket.id, b.socket.id]));
          assert.ok(inR.every((s) => typeof s.emit === "function" && s.rooms.has("r")));
          const all = await io.fetchSockets();
          assert.equal(all.length, 3);
          const notR = await io.except("r").fetchSockets();
          assert.deepEqual(notR.map((s) => s.id), [c.socket.id]);

          io.in("r").socketsJoin("s");
          assert.ok(a.socket.rooms.has("s") && b.socket.rooms.has("s") && !c.socket.rooms.has("s"));
          io.socketsJoin(["t", "u"]);
          assert.ok(c.socket.rooms.has("t") && c.socket.rooms.has("u"));
          io.in("s").socketsLeave("r");
          assert.ok(!a.socket.rooms.has("r") && !b.socket.rooms.has("r"));
          assert.deepEqual(await io.in("r").fetchSockets(), []);

          const gone = next(a.client, "disconnect");
          io.in(a.socket.id).disconnectSockets();
          assert.equal((await gone)[0], "io server disconnect");
          const rest = [next(b.client, "disconnect"), next(c.client, "disconnect")];
          io.disconnectSockets(true);
          for (const [reason] of await Promise.all(rest)) assert.equal(reason, "io server disconnect");
        });

        scenario("io.close(): every socket disconnects with server shutting down", async (w) => {
          const io = await w.server();
          const { client, socket } = await w.connect(io);
          const serverSide = next(socket, "disconnect");
          const clientSide = next(client, "disconnect");
          await withTimeout(io.close(), "close");
          assert.equal((await serverSide)[0], "server shutting down");
          const [reason] = await clientSide;
          assert.ok(["transport close", "transport error", "io server disconnect"].includes(reason), reason);
        });
      });
    }
  });
}

module.exports = { defineScenarios };
