'use strict';
// Input the C chat host (examples/chat/chat.c) must survive and answer as
// main.rs does: text to clean and cap, escapes, NUL and non-ASCII
// characters, long messages, binary `chat message`s, wrong types, deep
// nesting, a packet the server refuses, bursts — then a clean stop on
// SIGTERM (exit code 0; under Valgrind that also means no memory errors).
//
// Usage: node chat_input.js <host command…>   (a free port is appended)
// Env: IOBUS_TEST_TIME_SCALE multiplies the timeouts (slow hosts).
// Prints "chat_input: N passed, N failed".

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const { io } = require('socket.io-client');

const SCALE = Number(process.env.IOBUS_TEST_TIME_SCALE || 1);
const WAIT = 5000 * SCALE;
const command = process.argv.slice(2);
if (command.length === 0) {
  process.stderr.write('usage: node chat_input.js <host command…>\n');
  process.exit(2);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function connect(base) {
  const socket = io(base, { transports: ['websocket'], reconnection: false, forceNew: true, timeout: WAIT });
  socket.events = [];
  socket.onAny((event, ...args) => socket.events.push([event, ...args]));
  return withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  }), WAIT, 'connect');
}

const call = (socket, event, ...args) => socket.timeout(WAIT).emitWithAck(event, ...args);

function next(socket, event, pred = () => true) {
  return withTimeout(new Promise((resolve) => {
    const seen = socket.events.findIndex(([e, ...a]) => e === event && pred(...a));
    if (seen >= 0) {
      const [hit] = socket.events.splice(seen, 1);
      resolve(hit.slice(1));
      return;
    }
    const on = (e, ...a) => {
      if (e === event && pred(...a)) {
        socket.offAny(on);
        const i = socket.events.findIndex(([x, ...b]) => x === e && b[0] === a[0]);
        if (i >= 0) socket.events.splice(i, 1);
        resolve(a);
      }
    };
    socket.onAny(on);
  }), WAIT, `event ${event}`);
}

/** What main.rs's clean() makes of a name: trim, drop Cc, cap, trim. */
function clean(text, max) {
  const kept = Array.from(text.trim()).filter((c) => !/\p{Cc}/u.test(c)).slice(0, max).join('');
  return kept.trim();
}

const results = { passed: 0, failed: 0 };
async function check(name, fn) {
  try {
    await fn();
    results.passed += 1;
    process.stdout.write(`ok   ${name}\n`);
  } catch (err) {
    results.failed += 1;
    process.stdout.write(`FAIL ${name}: ${err && err.stack ? err.stack : err}\n`);
  }
}

async function main() {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const [cmd, ...args] = command;
  const child = spawn(cmd, [...args, String(port)], {
    cwd: path.resolve(__dirname, '..', '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const killer = setTimeout(() => child.kill('SIGKILL'), 240000 * SCALE);

  const banner = `chat server on http://127.0.0.1:${port}`;
  const deadline = Date.now() + 6 * WAIT;
  while (!output.includes(banner) && Date.now() < deadline) await sleep(50);
  if (!output.includes(banner)) {
    child.kill('SIGKILL');
    throw new Error(`no banner from the host:\n${output}`);
  }

  const sockets = [];
  try {
    const a = await connect(base);
    const b = await connect(base);
    sockets.push(a, b);

    await check('names are trimmed, cleaned of control characters and capped', async () => {
      const raw = '  \t"Q" \\ b\u0000a\u0007d\u0085 é😀' + 'x'.repeat(60) + '  ';
      const res = await call(a, 'join', raw);
      const want = clean(raw, 32);
      assert.equal(Array.from(want).length, 32);
      assert.deepEqual(res.users, [want]);
      assert.equal(res.room, 'lobby');
      assert.deepEqual(res.members, [{ id: a.id, name: want }]);
      const [notice] = await next(a, 'join');
      assert.deepEqual(notice, { name: want, room: 'lobby', id: a.id });
    });

    await check('names that clean to nothing, and wrong types, are refused', async () => {
      for (const bad of ['\u0000\u0001 \u0085', '', 42, null, { name: 'x' }, ['x'], true]) {
        const res = await call(b, 'join', bad);
        assert.deepEqual(res, { ok: false, error: 'a name is required' }, JSON.stringify(bad));
      }
      let deep = 'x';
      for (let i = 0; i < 100; i += 1) deep = [deep];
      assert.deepEqual(await call(b, 'join', deep), { ok: false, error: 'a name is required' });
      assert.deepEqual(await call(b, 'join', 'bee'), (await call(b, 'switch room', 'lobby')));
    });

    await check('messages keep their text exactly (escapes, NUL, non-ASCII), capped at 2000 characters', async () => {
      const text = 'x\u0000y "q" \\ \n\t\u2028 é 😀 </script>';
      assert.deepEqual(await call(a, 'chat', { msg: text }), { ok: true });
      const [m] = await next(b, 'chat', (e) => e.name !== undefined && e.msg.startsWith('x'));
      assert.equal(m.msg, text);
      assert.equal(m.room, 'lobby');
      assert.equal(m.id, a.id);
      assert.equal(typeof m.ts, 'number');
      const long = '😀'.repeat(2500);
      assert.deepEqual(await call(a, 'chat', long), { ok: true });
      const [l] = await next(b, 'chat', (e) => e.msg.startsWith('😀'));
      assert.equal(Array.from(l.msg).length, 2000);
      for (const bad of [{ msg: '   \n ' }, { msg: null }, { text: 'x' }, 7, [], null]) {
        assert.deepEqual(await call(a, 'chat', bad), { ok: false, error: 'a message is required' }, JSON.stringify(bad));
      }
    });

    await check('room names are cleaned and capped at 40 characters', async () => {
      const raw = ` r\u0001${'ő'.repeat(60)} `;
      const res = await call(a, 'switch room', raw);
      assert.equal(res.room, clean(raw, 40));
      assert.equal(Array.from(res.room).length, 40);
      const [left] = await next(b, 'leave');
      assert.equal(left.room, 'lobby');
      assert.deepEqual(await call(a, 'switch room', { room: 'x' }), { ok: false, error: 'a room name is required' });
      await call(a, 'switch room', 'lobby');
    });

    await check('direct messages: bad recipients and payloads', async () => {
      assert.deepEqual(await call(a, 'dm', { to: 42, msg: 'x' }), { ok: false, error: 'a recipient is required' });
      assert.deepEqual(await call(a, 'dm', { to: `${b.id}\u0000`, msg: 'x' }), { ok: false, error: 'no such user' });
      assert.deepEqual(await call(a, 'dm', { to: '', msg: 'x' }), { ok: false, error: 'no such user' });
      assert.deepEqual(await call(a, 'dm', { to: b.id, msg: '' }), { ok: false, error: 'a message is required' });
      assert.deepEqual(await call(a, 'dm', { to: b.id }), { ok: false, error: 'a message is required' });
      assert.deepEqual(await call(a, 'dm', { to: b.id, msg: 'psst \u0000 "x"' }), { ok: true });
      const [dm] = await next(b, 'dm');
      assert.equal(dm.msg, 'psst \u0000 "x"');
      assert.equal(dm.fromId, a.id);
      assert.deepEqual(await call(a, 'dm', { to: a.id, msg: 'to myself' }), { ok: true });
      await next(a, 'dm', (e) => e.msg === 'to myself');
    });

    await check('`chat message` passes any arguments on, binary included', async () => {
      // The host has connection state recovery on: the server appends each
      // stored packet's offset as its last argument.
      const OFFSET = /^[0-9a-f]+-\d+$/;
      a.emit('chat message', 'plain');
      const plain = await next(b, 'chat message', (t) => t === 'plain');
      assert.match(plain.pop(), OFFSET);
      assert.deepEqual(plain, ['plain']);
      a.emit('chat message', Buffer.from([0, 1, 255]), { nested: [1, Buffer.from('hi')] }, 'tail');
      const got = await next(b, 'chat message', (x) => Buffer.isBuffer(x));
      assert.deepEqual(Buffer.from(got[0]), Buffer.from([0, 1, 255]));
      assert.deepEqual(Buffer.from(got[1].nested[1]).toString(), 'hi');
      assert.equal(got[2], 'tail');
      assert.match(got[3], OFFSET);
      assert.equal(got.length, 4);
      a.emit('chat message');
      await next(b, 'chat message', (...x) => x.length === 1 && OFFSET.test(x[0]));
    });

    await check('a packet the server refuses closes that client only', async () => {
      const c = await connect(base);
      sockets.push(c);
      const gone = withTimeout(new Promise((r) => c.once('disconnect', r)), WAIT, 'refused packet closes');
      c.io.engine.write('2["join","\\ud800 lone"]'); // a lone surrogate: not valid UTF-16 text
      const c2 = await connect(base);
      sockets.push(c2);
      const reason = await Promise.race([gone, sleep(1000 * SCALE).then(() => 'still connected')]);
      assert.ok(['parse error', 'io server disconnect', 'transport close', 'still connected'].includes(reason), reason);
      assert.deepEqual((await call(c2, 'join', 'after')).room, 'lobby');
    });

    await check('bursts: 200 messages, every ack', async () => {
      const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => call(a, 'chat', { msg: `n${i}` })));
      assert.ok(acks.every((r) => r.ok === true));
      await next(b, 'chat', (e) => e.msg === 'n199');
    });

    await check('leave, then a plain disconnect, both announce the leave', async () => {
      const gone = withTimeout(new Promise((r) => b.once('disconnect', r)), WAIT, 'leave disconnects');
      assert.deepEqual(await call(b, 'leave'), { ok: true });
      assert.equal(await gone, 'io server disconnect');
      await next(a, 'leave', (e) => e.name === 'bee');
      const c = await connect(base);
      sockets.push(c);
      await call(c, 'join', 'cee');
      c.disconnect();
      await next(a, 'leave', (e) => e.name === 'cee');
      assert.deepEqual((await call(a, 'switch room', 'lobby')).users.length, 2);
    });
  } finally {
    for (const s of sockets) s.disconnect();
  }

  await check('SIGTERM stops the host cleanly (exit code 0)', async () => {
    await sleep(100);
    child.kill('SIGTERM');
    const ended = await withTimeout(exited, 4 * WAIT, 'host exit');
    assert.deepEqual(ended, { code: 0, signal: null }, output);
  });
  clearTimeout(killer);
  if (results.failed) process.stdout.write(`host output:\n${output}\n`);
}

main()
  .catch((err) => {
    results.failed += 1;
    process.stdout.write(`FAIL ${err && err.stack ? err.stack : err}\n`);
  })
  .finally(() => {
    process.stdout.write(`chat_input: ${results.passed} passed, ${results.failed} failed\n`);
    process.exit(results.failed ? 1 : 0);
  });
