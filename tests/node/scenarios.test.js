// iobus client-driven scenarios: the npm socket.io-client talks to a fixture
// server (tests/FIXTURE.md) started by harness.js. Every scenario runs three
// ways: websocket only, polling only, and polling upgraded to websocket.
//
//   IOBUS_FIXTURE="node tests/node/reference-server.js" npm test   # reference
//   npm test                                # target/debug/examples/fixture

"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const {
  MODE_NAMES,
  Clients,
  awaitUpgrade,
  call,
  collect,
  expectedTransport,
  isBinary,
  normalizeBinary,
  once,
  patternBuffer,
  quiet,
  request,
  serverReason,
  startFixture,
  unique,
  withTimeout,
} = require("./harness");

const TEST_TIMEOUT_MS = 20000;
// Scenarios run at once per transport mode (the three modes run side by side).
const SCENARIO_CONCURRENCY = Number(process.env.IOBUS_TEST_CONCURRENCY) || 8;

let fixture;

/** Rooms of `sid` as the fixture reports them: sorted, own sid room included. */
const roomsOf = (sid, ...rooms) => [sid, ...rooms].sort();

/** Asserts a received argument list equals `expected`, binary compared by content. */
function assertArgs(actual, expected, message) {
  assert.deepStrictEqual(normalizeBinary(actual), normalizeBinary(expected), message);
}

/** Every binary blob inside `value` (depth-first), to check their types. */
function binaries(value, out = []) {
  if (isBinary(value)) out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => binaries(v, out));
  else if (value && typeof value === "object") Object.values(value).forEach((v) => binaries(v, out));
  return out;
}

function assertSingleDelivery(collectors, expected) {
  for (const [name, col] of Object.entries(collectors)) {
    const want = expected[name] ?? 0;
    assert.equal(col.count, want, `${name} received ${col.count} time(s), expected ${want}`);
  }
}

describe("iobus fixture scenarios", { concurrency: true }, () => {
  before(async () => {
    fixture = await startFixture();
  });

  after(async () => {
    if (fixture) await fixture.stop();
  });

  it("the fixture announces its address on stdout", async () => {
    await fixture.waitListeningLine();
  });

  for (const mode of MODE_NAMES) {
    // Bounded concurrency: the heartbeat is tight (pingInterval 1000 ms,
    // pingTimeout 500 ms) and every client shares this process's event loop.
    describe(`transport: ${mode}`, { concurrency: SCENARIO_CONCURRENCY }, () => {
      const clients = (t) => new Clients(t, fixture.url, mode);
      const scenario = (name, fn) => it(name, { timeout: TEST_TIMEOUT_MS }, fn);

      // -------------------------------------------------------------------
      // Connection
      // -------------------------------------------------------------------

      scenario("connect: hello carries sid, namespace and empty auth", async (t) => {
        const c = clients(t);
        const { socket, hello, connectedAtHello } = await c.connect("/");
        assert.deepStrictEqual(hello, { sid: socket.id, nsp: "/", auth: {} });
        assert.equal(typeof socket.id, "string");
        assert.ok(socket.id.length > 0, "socket id is not empty");
        assert.equal(connectedAtHello, true, "hello is delivered after the CONNECT reply");
        const engine = socket.io.engine;
        assert.match(engine.id, /^[A-Za-z0-9_-]{20}$/, "Engine.IO sid is 20 base64url characters");
        assert.notEqual(socket.id, engine.id, "the namespace sid is not the Engine.IO sid");
        assert.equal(engine.transport.name, expectedTransport(mode));
      });

      scenario("connect: handshake announces heartbeat, payload limit and upgrades", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        // The open packet's values as engine.io-client 6.6 (pinned through
        // socket.io-client 4.8.3) stores them in its private fields.
        const engine = socket.io.engine;
        assert.equal(engine._pingInterval, 1000, "pingInterval");
        assert.equal(engine._pingTimeout, 500, "pingTimeout");
        assert.equal(engine._maxPayload, 100000, "maxPayload");
        // A websocket-only session must be offered no upgrade; the client keeps
        // only upgrades it supports, so polling-only sees none either.
        assert.deepStrictEqual(engine._upgrades, mode === "upgrade" ? ["websocket"] : []);
      });

      scenario("connect: the auth object reaches the server", async (t) => {
        const c = clients(t);
        const auth = {
          token: "t-1",
          n: 42,
          unicode: "ünïcødé ✓ 🚀",
          nested: { list: [1, "two", null, { three: 3 }], ok: true },
        };
        const { socket, hello } = await c.connect("/", { auth });
        assert.deepStrictEqual(hello, { sid: socket.id, nsp: "/", auth });
      });

      scenario("connect: refusal carries message and data", async (t) => {
        const c = clients(t);
        const cases = [
          ["/", "banned"],
          ["/admin", { code: 7, why: ["a", "b"] }],
          [`/dyn-${unique("refused")}`, null],
        ];
        await Promise.all(
          cases.map(async ([nsp, refuse]) => {
            const socket = c.raw(nsp, { auth: { refuse } });
            const hellos = collect(socket, "hello");
            const [err] = await once(socket, "connect_error", { failOn: ["connect"], label: nsp });
            assert.equal(err.message, "Not authorized", `${nsp}: message`);
            assert.deepStrictEqual(err.data, { reason: refuse }, `${nsp}: data`);
            assert.equal(socket.connected, false);
            assert.equal(hellos.count, 0, "no hello after a refusal");
          }),
        );
      });

      scenario("connect: unknown namespaces are refused with Invalid namespace", async (t) => {
        const c = clients(t);
        const names = ["/nope", "/dyn-", "/dyn-a.b", "/dyn-a/b", "/Admin", "/admin2", `/${unique("x")}`];
        await Promise.all(
          names.map(async (nsp) => {
            const socket = c.raw(nsp);
            const [err] = await once(socket, "connect_error", { failOn: ["connect"], label: nsp });
            assert.equal(err.message, "Invalid namespace", `${nsp}: message`);
            assert.equal(err.data, undefined, `${nsp}: no data`);
            assert.equal(socket.connected, false);
          }),
        );
      });

      scenario("connect: a dynamic namespace is accepted and served", async (t) => {
        const c = clients(t);
        const nsp = `/dyn-${unique("ok")}`;
        const { socket, hello } = await c.connect(nsp, { auth: { who: "dyn" } });
        assert.deepStrictEqual(hello, { sid: socket.id, nsp, auth: { who: "dyn" } });
        assert.deepStrictEqual(await request(socket, "ack", "in", nsp), ["in", nsp]);
        const room = unique("room");
        assert.deepStrictEqual(await call(socket, "join", room), roomsOf(socket.id, room));
        assert.deepStrictEqual(await call(socket, "fetch", room), [socket.id]);
      });

      // -------------------------------------------------------------------
      // Multiplexing
      // -------------------------------------------------------------------

      scenario("multiplexing: / and /admin share one Manager and one engine", async (t) => {
        const c = clients(t);
        const { socket: root, hello: rootHello } = await c.connect("/");
        const manager = root.io;
        const engineId = manager.engine.id;
        const { socket: admin, hello: adminHello } = await c.connect("/admin", {
          manager,
          auth: { role: "admin" },
        });
        assert.equal(admin.io, manager, "io.socket(nsp) uses the same Manager");
        assert.equal(admin.io.engine, root.io.engine, "same engine object");
        assert.equal(admin.io.engine.id, engineId, "same Engine.IO session");
        assert.deepStrictEqual(rootHello, { sid: root.id, nsp: "/", auth: {} });
        assert.deepStrictEqual(adminHello, { sid: admin.id, nsp: "/admin", auth: { role: "admin" } });
        assert.notEqual(root.id, admin.id, "each namespace socket has its own sid");
        assert.notEqual(admin.id, engineId);

        // Each namespace gets only its own echo.
        const rootEchoes = collect(root, "echo");
        const adminEchoes = collect(admin, "echo");
        admin.emit("echo", "for admin");
        root.emit("echo", "for root");
        const [[a]] = await adminEchoes.wait(1);
        const [[r]] = await rootEchoes.wait(1);
        assert.equal(a, "for admin");
        assert.equal(r, "for root");

        // A refused namespace on the same engine leaves the others untouched.
        const bad = manager.socket("/nope");
        c.sockets.add(bad);
        const [err] = await once(bad, "connect_error", { failOn: ["connect"] });
        assert.equal(err.message, "Invalid namespace");
        const refused = manager.socket(`/dyn-${unique("mx")}`, { auth: { refuse: 1 } });
        c.sockets.add(refused);
        const [err2] = await once(refused, "connect_error", { failOn: ["connect"] });
        assert.equal(err2.message, "Not authorized");
        assert.deepStrictEqual(err2.data, { reason: 1 });
        assert.deepStrictEqual(await request(root, "ack", 1), [1]);
        assert.deepStrictEqual(await request(admin, "ack", 2), [2]);
        assert.equal(manager.engine.id, engineId, "still the same engine");
        assert.equal(manager.engine.transport.name, expectedTransport(mode));
      });

      // -------------------------------------------------------------------
      // Events
      // -------------------------------------------------------------------

      scenario("events: JSON arguments round-trip in order", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        const cases = [
          ["plain"],
          ["héllo wörld ✓ 🚀 中文 العربية", ""],
          ['quotes " backslash \\ slash / newline \n tab \t nul \u0000 seps \u2028\u2029 end'],
          [0, -1, 1.5, -273.15, 1e21, 2 ** 53 - 1, -(2 ** 53 - 1), 1e-7],
          [true, false, null],
          [[], {}, [[[]]], { a: { b: { c: { d: { e: "deep" } } } } }],
          [{ list: [1, "two", { three: 3 }, [4], null, true], "key with spaces": 1, ключ: "значение", "": "empty key" }],
          Array.from({ length: 25 }, (_, i) => (i % 2 ? `s${i}` : i)),
          [],
          ["x".repeat(20000)],
          // Looks like a binary placeholder but travels in a plain EVENT: it must stay as is.
          [{ _placeholder: true, num: 0 }],
        ];
        const echoes = collect(socket, "echo");
        for (const args of cases) socket.emit("echo", ...args);
        const got = await echoes.wait(cases.length);
        assert.equal(got.length, cases.length);
        got.forEach((args, i) => assert.deepStrictEqual(args, cases[i], `case ${i}`));
      });

      // -------------------------------------------------------------------
      // Binary
      // -------------------------------------------------------------------

      scenario("binary: echo keeps buffers at every depth", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        const b = (...bytes) => Buffer.from(bytes);
        const cases = [
          [b(1, 2, 3)],
          [Buffer.alloc(0)],
          [{ a: { b: [1, { c: b(0xff, 0x00, 0x7f) }] } }],
          [b(1), "str ✓", { x: b(2, 2), y: [b(3, 3, 3), Buffer.alloc(0)] }, b(4, 4, 4, 4), null],
          [patternBuffer(50 * 1024, 7)],
          [[b(0x61), b(0x62)], [[[b(0x63)]]]],
          [{ u8: new Uint8Array([250, 251, 252]) }],
          ["before", b(9), "after", 42, { deep: { list: [b(10), { x: b(11) }] } }],
        ];
        const echoes = collect(socket, "echo");
        for (const args of cases) socket.emit("echo", ...args);
        const got = await echoes.wait(cases.length);
        got.forEach((args, i) => {
          assertArgs(args, cases[i], `case ${i}`);
          for (const blob of binaries(args)) assert.ok(Buffer.isBuffer(blob), `case ${i}: binary arrives as Buffer`);
        });
        assert.equal(binaries(got[3]).length, 5, "several attachments in one packet");
      });

      scenario("binary: server-originated binary event, then its ack", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        // Recorded synchronously in the listeners: several packets can be
        // decoded in one tick, before any promise continuation runs.
        const order = [];
        socket.on("binary", () => order.push("binary"));
        const gotBinary = once(socket, "binary");
        const acked = new Promise((resolve) =>
          socket.emit("binary", () => {
            order.push("ack");
            resolve();
          }),
        );
        const args = await gotBinary;
        await withTimeout(acked, 5000, "binary ack");
        assert.equal(args.length, 2);
        assertArgs(args, [Buffer.from([1, 2, 3]), { nested: { deep: [Buffer.from([4, 5]), "x"] } }]);
        assert.ok(Buffer.isBuffer(args[0]));
        assert.ok(Buffer.isBuffer(args[1].nested.deep[0]));
        assert.deepStrictEqual(order, ["binary", "ack"], "the event is delivered before the ack");
        // Without an ack callback too.
        const again = once(socket, "binary");
        socket.emit("binary");
        assertArgs(await again, args);
      });

      // -------------------------------------------------------------------
      // Acks client → server
      // -------------------------------------------------------------------

      scenario("acks: the server acknowledges with the same arguments", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        assert.deepStrictEqual(await request(socket, "ack", 1, "two", { three: [3] }, null, "ü✓"), [
          1,
          "two",
          { three: [3] },
          null,
          "ü✓",
        ]);
        assert.deepStrictEqual(await request(socket, "ack"), [], "ack with no arguments");
        assert.equal(await withTimeout(socket.emitWithAck("ack", "only"), 5000, "emitWithAck"), "only");
        assert.deepStrictEqual(await socket.timeout(5000).emitWithAck("ack", { k: [1, 2] }), { k: [1, 2] });
        // Many acks in flight at once are matched to their own callbacks.
        const replies = await Promise.all(
          Array.from({ length: 50 }, (_, i) => request(socket, "ack", i, `n${i}`)),
        );
        replies.forEach((reply, i) => assert.deepStrictEqual(reply, [i, `n${i}`]));
      });

      scenario("acks: binary in acknowledgements", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        const args = [Buffer.from([1, 2]), { nested: [Buffer.alloc(0), Buffer.from("ü✓")] }, "text"];
        const reply = await request(socket, "ack", ...args);
        assertArgs(reply, args);
        assert.ok(binaries(reply).every((blob) => Buffer.isBuffer(blob)));
        const big = patternBuffer(50 * 1024, 3);
        assertArgs(await request(socket, "ack", { big }), [{ big }]);
      });

      // -------------------------------------------------------------------
      // Acks server → client
      // -------------------------------------------------------------------

      scenario("ask: the client answers the server's question", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        const questions = [];
        socket.on("question", (...args) => {
          const ack = args.pop();
          assert.equal(typeof ack, "function", "the question asks for an ack");
          questions.push(args);
          ack("answer", { n: args.length }, null);
        });
        const result = await call(socket, "ask", 2000, "q1", { k: 1 });
        assert.deepStrictEqual(result, { reply: ["answer", { n: 2 }, null] });
        assert.deepStrictEqual(questions, [["q1", { k: 1 }]]);
      });

      scenario("ask: an unanswered question times out", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        const asked = once(socket, "question");
        const started = Date.now();
        const result = await call(socket, "ask", 200, "will not answer");
        const elapsed = Date.now() - started;
        const [question] = await asked;
        assert.equal(question, "will not answer");
        assert.deepStrictEqual(result, { error: "timeout" });
        assert.ok(elapsed >= 150, `the timeout fired after ${elapsed} ms, not before ~200 ms`);
      });

      scenario("ask: a late answer after the timeout is ignored", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        let sendLateAnswer;
        socket.on("question", (...args) => {
          sendLateAnswer = args.pop();
        });
        const result = await call(socket, "ask", 150, "slow");
        assert.deepStrictEqual(result, { error: "timeout" });
        assert.equal(typeof sendLateAnswer, "function");
        sendLateAnswer("too late");
        // The late ACK is ahead of this request on the same connection.
        assert.deepStrictEqual(await request(socket, "ack", "still here"), ["still here"]);
        assert.equal(socket.connected, true);
      });

      scenario("ask: binary in the question and in the answer", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        let question;
        socket.on("question", (...args) => {
          const ack = args.pop();
          question = args;
          ack(Buffer.from([9, 8, 7]), { b: Buffer.alloc(0), list: [Buffer.from([6])] });
        });
        const result = await call(socket, "ask", 2000, Buffer.from([1, 2]), { inner: Buffer.from([3]) });
        assertArgs(question, [Buffer.from([1, 2]), { inner: Buffer.from([3]) }]);
        assert.ok(Buffer.isBuffer(question[0]));
        assertArgs(result, {
          reply: [Buffer.from([9, 8, 7]), { b: Buffer.alloc(0), list: [Buffer.from([6])] }],
        });
        assert.ok(binaries(result).every((blob) => Buffer.isBuffer(blob)));
      });

      // -------------------------------------------------------------------
      // Rooms
      // -------------------------------------------------------------------

      scenario("rooms: join, leave and list", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        const sid = socket.id;
        const [r1, r2, r3, never] = [unique("r1"), unique("r2"), unique("r3"), unique("never")];
        assert.deepStrictEqual(await call(socket, "rooms"), [sid], "a new socket is in its own sid room only");
        assert.deepStrictEqual(await call(socket, "join", r1), roomsOf(sid, r1));
        assert.deepStrictEqual(await call(socket, "join", [r2, r3]), roomsOf(sid, r1, r2, r3));
        assert.deepStrictEqual(await call(socket, "join", r1), roomsOf(sid, r1, r2, r3), "joining twice");
        assert.deepStrictEqual(await call(socket, "leave", r2), roomsOf(sid, r1, r3));
        assert.deepStrictEqual(await call(socket, "leave", never), roomsOf(sid, r1, r3), "leaving a room not joined");
        assert.deepStrictEqual(await call(socket, "rooms"), roomsOf(sid, r1, r3));
        assert.deepStrictEqual(await call(socket, "fetch", sid), [sid], "own sid room");
        assert.deepStrictEqual(await call(socket, "fetch", r1), [sid]);
        assert.deepStrictEqual(await call(socket, "fetch", r2), []);
      });

      // -------------------------------------------------------------------
      // Broadcasts
      // -------------------------------------------------------------------

      scenario("broadcast: namespace-wide reaches every socket, sender included", async (t) => {
        const c = clients(t);
        // Namespace-wide: a namespace of its own, so the recipients are exactly known.
        const nsp = `/dyn-${unique("bc")}`;
        const [{ socket: a }, { socket: b }, { socket: d }] = await c.connectMany(3, nsp);
        const ev = unique("ev");
        const cols = { a: collect(a, ev), b: collect(b, ev), d: collect(d, ev) };
        const payload = ["ü✓", { n: 1, bin: Buffer.from([1, 2]) }, [null]];
        await call(a, "broadcast", {}, ev, ...payload);
        for (const col of Object.values(cols)) {
          const [args] = await col.wait(1);
          assertArgs(args, payload);
        }
        await quiet();
        assertSingleDelivery(cols, { a: 1, b: 1, d: 1 });
      });

      scenario("broadcast: from the socket excludes the sender", async (t) => {
        const c = clients(t);
        // Namespace-wide: a namespace of its own, so the recipients are exactly known.
        const nsp = `/dyn-${unique("bc")}`;
        const [{ socket: a }, { socket: b }, { socket: d }] = await c.connectMany(3, nsp);
        const ev = unique("ev");
        const cols = { a: collect(a, ev), b: collect(b, ev), d: collect(d, ev) };
        await call(a, "broadcast", { fromSocket: true }, ev, "x");
        await cols.b.wait(1);
        await cols.d.wait(1);
        await quiet();
        assertSingleDelivery(cols, { b: 1, d: 1 });
      });

      scenario("broadcast: to a room reaches its members only", async (t) => {
        const c = clients(t);
        const [{ socket: a }, { socket: b }, { socket: x }, { socket: sender }] = await c.connectMany(4);
        const room = unique("room");
        await Promise.all([call(a, "join", room), call(b, "join", room)]);
        const ev = unique("ev");
        const cols = { a: collect(a, ev), b: collect(b, ev), x: collect(x, ev), sender: collect(sender, ev) };
        await call(sender, "broadcast", { to: room }, ev, 1, "two");
        assert.deepStrictEqual((await cols.a.wait(1))[0], [1, "two"]);
        assert.deepStrictEqual((await cols.b.wait(1))[0], [1, "two"]);
        await quiet();
        assertSingleDelivery(cols, { a: 1, b: 1 });
      });

      scenario("broadcast: a union of rooms delivers once per socket", async (t) => {
        const c = clients(t);
        const [{ socket: both }, { socket: only1 }, { socket: only2 }, { socket: none }] = await c.connectMany(4);
        const [r1, r2] = [unique("r1"), unique("r2")];
        await Promise.all([call(both, "join", [r1, r2]), call(only1, "join", r1), call(only2, "join", r2)]);
        const ev = unique("ev");
        const cols = {
          both: collect(both, ev),
          only1: collect(only1, ev),
          only2: collect(only2, ev),
          none: collect(none, ev),
        };
        await call(none, "broadcast", { to: [r1, r2] }, ev, "u");
        await Promise.all([cols.both.wait(1), cols.only1.wait(1), cols.only2.wait(1)]);
        await quiet();
        assertSingleDelivery(cols, { both: 1, only1: 1, only2: 1 });
      });

      scenario("broadcast: except leaves out the excepted rooms", async (t) => {
        const c = clients(t);
        // Namespace-wide: a namespace of its own, so the recipients are exactly known.
        const nsp = `/dyn-${unique("bc")}`;
        const [{ socket: a }, { socket: b }, { socket: d }, { socket: sender }] = await c.connectMany(4, nsp);
        const [room, x, y] = [unique("room"), unique("x"), unique("y")];
        await Promise.all([call(a, "join", room), call(b, "join", [room, x]), call(d, "join", [room, y])]);

        // to + except (a single room)
        const ev1 = unique("ev");
        const c1 = { a: collect(a, ev1), b: collect(b, ev1), d: collect(d, ev1), sender: collect(sender, ev1) };
        await call(sender, "broadcast", { to: room, except: x }, ev1);
        await Promise.all([c1.a.wait(1), c1.d.wait(1)]);

        // to + except (a list of rooms)
        const ev2 = unique("ev");
        const c2 = { a: collect(a, ev2), b: collect(b, ev2), d: collect(d, ev2), sender: collect(sender, ev2) };
        await call(sender, "broadcast", { to: room, except: [x, y] }, ev2);
        await c2.a.wait(1);

        // namespace-wide except: everyone outside the room, sender included
        const ev3 = unique("ev");
        const c3 = { a: collect(a, ev3), b: collect(b, ev3), d: collect(d, ev3), sender: collect(sender, ev3) };
        await call(sender, "broadcast", { except: room }, ev3);
        await c3.sender.wait(1);

        await quiet();
        assertSingleDelivery(c1, { a: 1, d: 1 });
        assertSingleDelivery(c2, { a: 1 });
        assertSingleDelivery(c3, { sender: 1 });
      });

      scenario("broadcast: socket.to(room) excludes the sender", async (t) => {
        const c = clients(t);
        const [{ socket: a }, { socket: b }, { socket: d }] = await c.connectMany(3);
        const [room, x] = [unique("room"), unique("x")];
        await Promise.all([call(a, "join", room), call(b, "join", room), call(d, "join", [room, x])]);

        const ev1 = unique("ev");
        const c1 = { a: collect(a, ev1), b: collect(b, ev1), d: collect(d, ev1) };
        await call(a, "broadcast", { to: room, fromSocket: true }, ev1, "hi");
        await Promise.all([c1.b.wait(1), c1.d.wait(1)]);

        const ev2 = unique("ev");
        const c2 = { a: collect(a, ev2), b: collect(b, ev2), d: collect(d, ev2) };
        await call(a, "broadcast", { to: room, fromSocket: true, except: x }, ev2);
        await c2.b.wait(1);

        // The same room from the namespace includes the sender.
        const ev3 = unique("ev");
        const c3 = { a: collect(a, ev3), b: collect(b, ev3), d: collect(d, ev3) };
        await call(a, "broadcast", { to: room }, ev3);
        await Promise.all([c3.a.wait(1), c3.b.wait(1), c3.d.wait(1)]);

        await quiet();
        assertSingleDelivery(c1, { b: 1, d: 1 });
        assertSingleDelivery(c2, { b: 1 });
        assertSingleDelivery(c3, { a: 1, b: 1, d: 1 });
      });

      scenario("broadcast: volatile reaches a connected socket", async (t) => {
        // A volatile packet may be dropped while the receiver's transport is
        // busy (e.g. between two long-polling requests), so each attempt is
        // followed by a regular marker event: the volatile one, if delivered,
        // arrives before its marker, never after, never twice.
        const c = clients(t);
        // Namespace-wide: a namespace of its own, so the recipients are exactly known.
        const nsp = `/dyn-${unique("bc")}`;
        const [{ socket: a }, { socket: b }] = await c.connectMany(2, nsp);
        const room = unique("room");
        await call(b, "join", room);
        const forms = [
          { to: room, volatile: true },
          { fromSocket: true, volatile: true },
          { to: room, fromSocket: true, volatile: true },
        ];
        for (const form of forms) {
          const ev = unique("vol");
          const marker = unique("marker");
          const seen = [];
          b.on(ev, (n) => seen.push(`v${n}`));
          b.on(marker, (n) => seen.push(`m${n}`));
          let delivered = false;
          for (let attempt = 0; attempt < 5 && !delivered; attempt++) {
            const markerArrived = once(b, marker, { label: `marker ${attempt}` });
            await call(a, "broadcast", form, ev, attempt);
            await call(a, "broadcast", { to: room }, marker, attempt);
            await markerArrived;
            delivered = seen.includes(`v${attempt}`);
          }
          assert.ok(delivered, `volatile ${JSON.stringify(form)} never delivered: ${seen.join(",")}`);
          // Each delivered volatile comes right before its own marker.
          seen.forEach((item, i) => {
            if (item.startsWith("v")) assert.equal(seen[i + 1], `m${item.slice(1)}`, seen.join(","));
          });
        }
      });

      // -------------------------------------------------------------------
      // Server-side operations on rooms
      // -------------------------------------------------------------------

      scenario("fetch: lists the sockets of a room, sorted", async (t) => {
        const c = clients(t);
        const [{ socket: a }, { socket: b }, { socket: x }] = await c.connectMany(3);
        const room = unique("room");
        await Promise.all([call(a, "join", room), call(b, "join", room)]);
        assert.deepStrictEqual(await call(x, "fetch", room), [a.id, b.id].sort());
        assert.deepStrictEqual(await call(x, "fetch", unique("empty")), []);
        assert.deepStrictEqual(await call(x, "fetch", a.id), [a.id]);
        await call(a, "leave", room);
        assert.deepStrictEqual(await call(x, "fetch", room), [b.id]);
      });

      scenario("sockets-join and sockets-leave act on every socket of a room", async (t) => {
        const c = clients(t);
        const [{ socket: a }, { socket: b }, { socket: x }] = await c.connectMany(3);
        const [room, added] = [unique("room"), unique("added")];
        await Promise.all([call(a, "join", room), call(b, "join", room)]);

        assert.deepStrictEqual(await request(x, "sockets-join", room, added), []);
        assert.deepStrictEqual(await call(x, "fetch", added), [a.id, b.id].sort());
        assert.deepStrictEqual(await call(a, "rooms"), roomsOf(a.id, room, added));
        assert.deepStrictEqual(await call(x, "rooms"), roomsOf(x.id), "the caller is not in the room");

        const ev = unique("ev");
        const cols = { a: collect(a, ev), b: collect(b, ev), x: collect(x, ev) };
        await call(x, "broadcast", { to: added }, ev);
        await Promise.all([cols.a.wait(1), cols.b.wait(1)]);

        assert.deepStrictEqual(await request(x, "sockets-leave", room, added), []);
        assert.deepStrictEqual(await call(x, "fetch", added), []);
        assert.deepStrictEqual(await call(a, "rooms"), roomsOf(a.id, room));
        assert.deepStrictEqual(await call(b, "rooms"), roomsOf(b.id, room));
        await quiet();
        assertSingleDelivery(cols, { a: 1, b: 1 });
      });

      scenario("disconnect-room without close disconnects the room's sockets only", async (t) => {
        const c = clients(t);
        const [{ socket: a }, { socket: b }, { socket: x }] = await c.connectMany(3);
        const room = unique("room");
        await Promise.all([call(a, "join", room), call(b, "join", room)]);
        const ids = [a.id, b.id]; // socket.id is cleared on disconnect
        const da = once(a, "disconnect");
        const db = once(b, "disconnect");
        x.emit("disconnect-room", room, false);
        assert.deepStrictEqual((await da)[0], "io server disconnect");
        assert.deepStrictEqual((await db)[0], "io server disconnect");
        assert.deepStrictEqual(await request(x, "ack", "x alive"), ["x alive"]);
        assert.deepStrictEqual(await call(x, "fetch", room), []);
        for (const sid of ids) {
          assert.deepStrictEqual(await serverReason(x, sid), [
            { sid, nsp: "/", reason: "server namespace disconnect" },
          ]);
        }
      });

      scenario("disconnect-room with close also closes the other namespaces of the connection", async (t) => {
        const c = clients(t);
        // A second namespace of the same connection; a dynamic one of its own,
        // so that no other scenario's broadcast writes to it while it closes.
        const other = `/dyn-${unique("side")}`;
        const { socket: a } = await c.connect("/");
        const { socket: aOther } = await c.connect(other, { manager: a.io });
        const [{ socket: b }, { socket: x }] = await c.connectMany(2);
        const room = unique("room");
        await Promise.all([call(a, "join", room), call(b, "join", room)]);
        const expected = [
          [a.id, "/"],
          [aOther.id, other],
          [b.id, "/"],
        ];
        const waits = [a, aOther, b].map((s) => once(s, "disconnect"));
        x.emit("disconnect-room", room, true);
        const reasons = (await Promise.all(waits)).map(([reason]) => reason);
        assert.deepStrictEqual(reasons, ["io server disconnect", "io server disconnect", "io server disconnect"]);
        assert.deepStrictEqual(await request(x, "ack", "x alive"), ["x alive"]);
        for (const [sid, nsp] of expected) {
          assert.deepStrictEqual(await serverReason(x, sid), [{ sid, nsp, reason: "server namespace disconnect" }]);
        }
      });

      // -------------------------------------------------------------------
      // Disconnect reasons
      // -------------------------------------------------------------------

      scenario("disconnect-me false: io server disconnect, other namespace stays", async (t) => {
        const c = clients(t);
        // A second namespace of the same connection; a dynamic one of its own,
        // so that no other scenario's broadcast writes to it while it closes.
        const other = `/dyn-${unique("side")}`;
        const { socket: root } = await c.connect("/");
        const { socket: side } = await c.connect(other, { manager: root.io });
        const { socket: watcher } = await c.connect("/");
        const engineId = root.io.engine.id;
        const sideId = side.id;
        const gone = once(side, "disconnect");
        side.emit("disconnect-me", false);
        const [reason] = await gone;
        assert.equal(reason, "io server disconnect");
        assert.equal(side.connected, false);
        assert.deepStrictEqual(await request(root, "ack", "root alive"), ["root alive"]);
        assert.equal(root.io.engine.id, engineId, "the connection is kept");
        assert.deepStrictEqual(await serverReason(watcher, sideId), [
          { sid: sideId, nsp: other, reason: "server namespace disconnect" },
        ]);
      });

      scenario("disconnect-me true: every namespace of the connection is disconnected", async (t) => {
        const c = clients(t);
        // A second namespace of the same connection; a dynamic one of its own,
        // so that no other scenario's broadcast writes to it while it closes.
        const other = `/dyn-${unique("side")}`;
        const { socket: root } = await c.connect("/");
        const { socket: side } = await c.connect(other, { manager: root.io });
        const { socket: watcher } = await c.connect("/");
        const [rootId, sideId] = [root.id, side.id];
        const waits = [root, side].map((s) => once(s, "disconnect"));
        root.emit("disconnect-me", true);
        const reasons = (await Promise.all(waits)).map(([reason]) => reason);
        assert.deepStrictEqual(reasons, ["io server disconnect", "io server disconnect"]);
        assert.deepStrictEqual(await serverReason(watcher, rootId), [
          { sid: rootId, nsp: "/", reason: "server namespace disconnect" },
        ]);
        assert.deepStrictEqual(await serverReason(watcher, sideId), [
          { sid: sideId, nsp: other, reason: "server namespace disconnect" },
        ]);
      });

      scenario("client disconnect: io client disconnect / client namespace disconnect", async (t) => {
        const c = clients(t);
        // A second namespace of the same connection; a dynamic one of its own,
        // so that no other scenario's broadcast writes to it while it closes.
        const other = `/dyn-${unique("side")}`;
        const { socket: root } = await c.connect("/");
        const { socket: side } = await c.connect(other, { manager: root.io });
        const { socket: watcher } = await c.connect("/");
        const sideId = side.id;
        const gone = once(side, "disconnect");
        side.disconnect();
        assert.equal((await gone)[0], "io client disconnect");
        assert.deepStrictEqual(await serverReason(watcher, sideId), [
          { sid: sideId, nsp: other, reason: "client namespace disconnect" },
        ]);
        assert.deepStrictEqual(await request(root, "ack", "root alive"), ["root alive"], "/ stays connected");

        const rootId = root.id;
        const rootGone = once(root, "disconnect");
        root.disconnect();
        assert.equal((await rootGone)[0], "io client disconnect");
        assert.deepStrictEqual(await serverReason(watcher, rootId), [
          { sid: rootId, nsp: "/", reason: "client namespace disconnect" },
        ]);
      });

      scenario("client closes its engine: the server sees transport close", async (t) => {
        const c = clients(t);
        // A second namespace of the same connection; a dynamic one of its own,
        // so that no other scenario's broadcast writes to it while it closes.
        const other = `/dyn-${unique("side")}`;
        const { socket: root } = await c.connect("/");
        const { socket: side } = await c.connect(other, { manager: root.io });
        const { socket: watcher } = await c.connect("/");
        const [rootId, sideId] = [root.id, side.id];
        const waits = [root, side].map((s) => once(s, "disconnect"));
        root.io.engine.close();
        const reasons = (await Promise.all(waits)).map(([reason]) => reason);
        assert.deepStrictEqual(reasons, ["forced close", "forced close"], "client-side reason");
        assert.deepStrictEqual(await serverReason(watcher, rootId), [
          { sid: rootId, nsp: "/", reason: "transport close" },
        ]);
        assert.deepStrictEqual(await serverReason(watcher, sideId), [
          { sid: sideId, nsp: other, reason: "transport close" },
        ]);
      });

      // -------------------------------------------------------------------
      // Namespace isolation
      // -------------------------------------------------------------------

      scenario("isolation: a broadcast in /admin is not seen in /", async (t) => {
        const c = clients(t);
        const { socket: root1 } = await c.connect("/");
        const { socket: admin1 } = await c.connect("/admin", { manager: root1.io });
        const { socket: admin2 } = await c.connect("/admin");
        const { socket: root2 } = await c.connect("/");
        const ev = unique("ev");
        const cols = {
          root1: collect(root1, ev),
          admin1: collect(admin1, ev),
          admin2: collect(admin2, ev),
          root2: collect(root2, ev),
        };
        await call(admin1, "broadcast", {}, ev, "admins only");
        await Promise.all([cols.admin1.wait(1), cols.admin2.wait(1)]);

        // Rooms belong to a namespace: the same name in / is another room.
        const room = unique("room");
        await call(admin2, "join", room);
        assert.deepStrictEqual(await call(root1, "fetch", room), []);
        assert.deepStrictEqual(await call(admin1, "fetch", room), [admin2.id]);
        const ev2 = unique("ev");
        const cols2 = {
          root1: collect(root1, ev2),
          admin1: collect(admin1, ev2),
          admin2: collect(admin2, ev2),
          root2: collect(root2, ev2),
        };
        await call(root2, "join", room);
        await call(root1, "broadcast", { to: room }, ev2);
        await cols2.root2.wait(1);

        await quiet();
        assertSingleDelivery(cols, { admin1: 1, admin2: 1 });
        assertSingleDelivery(cols2, { root2: 1 });
      });

      // -------------------------------------------------------------------
      // Heartbeat and transport changes
      // -------------------------------------------------------------------

      scenario("heartbeat: the connection survives several pings", async (t) => {
        const c = clients(t);
        const { socket } = await c.connect("/");
        const disconnects = collect(socket, "disconnect");
        const pings = collect(socket.io, "ping");
        await pings.wait(3, 6000);
        assert.equal(disconnects.count, 0);
        assert.equal(socket.connected, true);
        assert.deepStrictEqual(await request(socket, "ack", "alive"), ["alive"]);
      });

      scenario("ordering: events keep their order from before connect through the upgrade", async (t) => {
        const c = clients(t);
        const socket = c.raw("/");
        const engine = socket.io.engine;
        const echoes = collect(socket, "echo");
        let sent = 0;
        const send = () => socket.emit("echo", sent++, Buffer.from([sent & 0xff]));
        // Buffered by the client until the namespace is connected.
        for (let i = 0; i < 10; i++) send();
        await once(socket, "connect", { failOn: ["connect_error", "disconnect"] });
        // A ping-pong chain: each echo triggers the next emit, so packets flow
        // while the transport changes (in upgrade mode) and after it.
        let upgradedAt = mode === "upgrade" ? null : 0;
        const upgraded = mode === "upgrade" ? awaitUpgrade(engine) : Promise.resolve();
        upgraded.then(
          () => {
            upgradedAt = sent;
          },
          () => {},
        );
        socket.on("echo", () => {
          if (upgradedAt === null || sent < upgradedAt + 10) {
            if (sent < 1000) send();
          }
        });
        for (let i = 0; i < 10; i++) send();
        await upgraded;
        const target = () => (upgradedAt === null ? Infinity : Math.max(upgradedAt + 10, 20));
        await withTimeout(
          (async () => {
            while (echoes.count < target() || echoes.count < sent) await echoes.wait(echoes.count + 1);
          })(),
          10000,
          "echo chain",
        );
        assert.equal(engine.transport.name, expectedTransport(mode));
        const got = echoes.received.map(([n, bin]) => [n, normalizeBinary(bin)]);
        got.forEach(([n, bin], i) => {
          assert.equal(n, i, `echo ${i} out of order`);
          assert.deepStrictEqual(bin, Buffer.from([(i + 1) & 0xff]));
        });
      });
    });
  }
});
