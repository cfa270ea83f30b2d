'use strict';
// End-to-end tests of the chat example: real browser pages (Debian's
// Chromium driven by playwright-core) and plain socket.io-client sockets
// against the chat host.
//
// The host command is env IOBUS_CHAT (split on whitespace; default
// <repo>/target/debug/examples/chat); the test appends a free port as its
// last argument, and runs it with CHAT_RECOVERY_MS (connection state
// recovery) short enough to see a page outlast it. The browser is
// CHROMIUM_PATH (default /usr/bin/chromium). A screenshot of the main
// scenario goes to tests/artifacts/chat.png.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');

const { chromium } = require('playwright-core');
const { io } = require('socket.io-client');

const REPO = path.resolve(__dirname, '..', '..');
const ARTIFACTS = path.join(REPO, 'tests', 'artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 5000; // the timeout of any single wait, unless stated
// How long the host keeps a dropped page's user (CHAT_RECOVERY_MS): long
// enough for a drop of a few seconds, short enough to wait out in a test.
const RECOVERY_MS = 6000;
// The host lets a user go up to a second after the server's deadline.
const EXPIRY_SLACK = 3000;
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

// ---- the host process ----------------------------------------------------

function hostCommand() {
  const raw = (process.env.IOBUS_CHAT || '').trim();
  if (raw) return raw.split(/\s+/);
  return [path.join(REPO, 'target', 'debug', 'examples', 'chat')];
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function httpRequest(url, method = 'GET', body = null) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.setTimeout(1000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

const httpGet = (url) => httpRequest(url);

/** Whether the server at `base` has connection state recovery on: its
 * CONNECT reply carries a private id (`pid`). Asked over raw polling. */
async function offersRecovery(base) {
  const url = `${base}/socket.io/?EIO=4&transport=polling`;
  const open = await httpGet(url);
  const { sid } = JSON.parse(open.body.slice(1));
  await httpRequest(`${url}&sid=${sid}`, 'POST', '40');
  const reply = await httpGet(`${url}&sid=${sid}`);
  await httpRequest(`${url}&sid=${sid}`, 'POST', '1');
  const connect = reply.body.split('\x1e').find((p) => p.startsWith('40'));
  assert.ok(connect, `no CONNECT reply: ${reply.body}`);
  return typeof JSON.parse(connect.slice(2)).pid === 'string';
}

const liveHosts = new Set();

class Host {
  /** `env`: extra environment for the host (over the test's own). */
  constructor(port, env = {}) {
    this.port = port;
    this.env = env;
    this.base = `http://127.0.0.1:${port}`;
    this.output = '';
    this.exit = null;
  }

  async start(timeoutMs = 10000) {
    const [cmd, ...args] = hostCommand();
    if (!process.env.IOBUS_CHAT && !fs.existsSync(cmd)) {
      throw new Error(`${cmd} is missing: build it with \`cargo build --example chat\` or set IOBUS_CHAT`);
    }
    const env = { ...process.env, CHAT_RECOVERY_MS: String(RECOVERY_MS), ...this.env };
    const bundled = path.join(__dirname, 'node_modules', 'socket.io-client', 'dist');
    if (!env.IOBUS_CLIENT_DIR && fs.existsSync(path.join(bundled, 'socket.io.js'))) {
      env.IOBUS_CLIENT_DIR = bundled;
    }
    this.output = '';
    this.exit = null;
    this.child = spawn(cmd, [...args, String(this.port)], {
      cwd: REPO,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so that nothing outlives the test
    });
    liveHosts.add(this);
    this.child.stdout.on('data', (d) => { this.output += d; });
    this.child.stderr.on('data', (d) => { this.output += d; });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => { this.exit = { error: err }; resolve(this.exit); });
      this.child.on('exit', (code, signal) => { this.exit = { code, signal }; resolve(this.exit); });
    });

    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exit) throw new Error(`chat host exited early (${JSON.stringify(this.exit)}):\n${this.output}`);
      try {
        const res = await httpGet(`${this.base}/`);
        if (res.status === 200) break;
      } catch (_) {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`chat host did not answer within ${timeoutMs} ms:\n${this.output}`);
      await sleep(50);
    }
    // It says where it listens.
    const banner = `chat server on http://127.0.0.1:${this.port}`;
    const bannerDeadline = Date.now() + 2000;
    while (!this.output.includes(banner) && Date.now() < bannerDeadline) await sleep(20);
    assert.ok(this.output.includes(banner), `expected "${banner}" in the host output:\n${this.output}`);
  }

  /** SIGTERM, then SIGKILL to the whole group if it lingers. Resolves with how it ended. */
  async stop(timeoutMs = 5000) {
    if (!this.child || this.exit) return { ...this.exit, killed: false };
    try { process.kill(this.child.pid, 'SIGTERM'); } catch (_) { /* gone */ }
    const ended = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
    if (ended) return { ...ended, killed: false };
    this.kill();
    await withTimeout(this.exited, 2000, 'host exit after SIGKILL').catch(() => {});
    return { ...this.exit, killed: true };
  }

  kill() {
    if (!this.child || this.exit) return;
    try { process.kill(-this.child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  }
}

// ---- pages ---------------------------------------------------------------

async function openPage(browser, url, errors, label) {
  const context = await browser.newContext({ viewport: { width: 1180, height: 760 } });
  context.setDefaultTimeout(WAIT);
  context.setDefaultNavigationTimeout(WAIT);
  const page = await context.newPage();
  page.on('pageerror', (err) => errors.push(`${label}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`${label} console: ${msg.text()} (${msg.location().url || '?'})`);
  });
  await page.goto(url);
  return page;
}

async function waitFor(page, fn, arg, what, timeout = WAIT) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (err) {
    throw new Error(`${what}: ${err.message.split('\n')[0]}`);
  }
}

function status(page, state, timeout = WAIT) {
  return waitFor(page, (s) => document.getElementById('status').dataset.state === s, state,
    `status ${state}`, timeout);
}

async function joinAs(page, name) {
  await status(page, 'connected');
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('join-button').click();
  await waitFor(page, () => document.getElementById('app').dataset.joined === 'true', null, `${name} joined`);
}

function users(page, names, timeout = WAIT) {
  return waitFor(page, (want) => {
    const got = Array.from(document.querySelectorAll('#users [data-testid="user"]')).map((u) => u.dataset.name);
    return JSON.stringify(got) === JSON.stringify(want);
  }, names, `users ${JSON.stringify(names)}`, timeout);
}

function currentRoom(page, room) {
  return waitFor(page, (r) => document.getElementById('current-room').textContent === r, room, `room ${room}`);
}

/** Waits for an entry of the message list: testid (message, notice, dm, broadcast) and text. */
function entry(page, testid, text, timeout = WAIT) {
  return waitFor(page, ([id, t]) => Array.from(document.querySelectorAll(`#messages [data-testid="${id}"]`))
    .some((li) => li.textContent.includes(t)), [testid, text], `${testid} "${text}"`, timeout);
}

function hasEntry(page, testid, text) {
  return page.evaluate(([id, t]) => Array.from(document.querySelectorAll(`#messages [data-testid="${id}"]`))
    .some((li) => li.textContent.includes(t)), [testid, text]);
}

async function say(page, text) {
  await page.getByTestId('message-input').fill(text);
  await page.getByTestId('send-button').click();
}

/** The texts of the entries with this testid, in the order shown. */
function texts(page, testid) {
  return page.evaluate((id) => Array.from(document.querySelectorAll(`#messages [data-testid="${id}"]`))
    .map((li) => (li.querySelector('[data-testid="text"]') || li).textContent), testid);
}

async function toRoom(page, room) {
  await page.getByTestId('room-input').fill(room);
  await page.getByTestId('room-button').click();
  await currentRoom(page, room);
}

/** Records the page socket's connection history in window.history_ (for asserts). */
function watchConnection(page) {
  return page.evaluate(() => {
    window.history_ = [];
    window.chat.socket.on('disconnect', (reason) => window.history_.push(['disconnect', reason]));
    window.chat.socket.on('connect', () => window.history_.push(['connect', window.chat.socket.recovered === true]));
  });
}

/** Script errors, minus what a page that is offline or reconnecting logs on purpose. */
function scriptErrors(errors) {
  return errors.filter((e) => !/console: Failed to load resource|ERR_CONNECTION_REFUSED|ERR_INTERNET_DISCONNECTED|WebSocket/.test(e));
}

// ---- plain socket.io-client sockets --------------------------------------

function connectClient(base) {
  const socket = io(base, { transports: ['websocket'], reconnection: false, forceNew: true });
  socket.events = [];
  socket.onAny((event, ...args) => socket.events.push([event, ...args]));
  return withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  }), WAIT, 'socket.io-client connect');
}

function call(socket, event, ...args) {
  return socket.timeout(WAIT).emitWithAck(event, ...args);
}

function nextEvent(socket, event, pred = () => true) {
  return withTimeout(new Promise((resolve) => {
    const seen = socket.events.find(([e, ...a]) => e === event && pred(...a));
    if (seen) return resolve(seen.slice(1));
    const on = (e, ...a) => {
      if (e === event && pred(...a)) {
        socket.offAny(on);
        resolve(a);
      }
    };
    socket.onAny(on);
  }), WAIT, `event ${event}`);
}

// ---- the tests -------------------------------------------------------------

// Run as a test file only (chat-cluster.test.js requires it for its helpers).
if (require.main === module) describe('chat example', { timeout: 90000 }, () => {
  let host;
  let browser;
  const errors = [];
  const contexts = [];

  async function page(url, label) {
    const p = await openPage(browser, url, errors, label);
    contexts.push(p.context());
    return p;
  }

  before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
    host = new Host(await freePort());
    const launching = chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 15000,
    });
    await host.start();
    browser = await launching;
    assert.ok(await offersRecovery(host.base), 'the chat host must have connection state recovery on');
  });

  async function closePages() {
    for (const c of contexts.splice(0)) await withTimeout(c.close(), WAIT, 'close a page').catch(() => {});
  }

  // Each test starts with no other page connected.
  afterEach(closePages);

  after(async () => {
    await closePages();
    if (browser) await withTimeout(browser.close(), WAIT, 'close the browser').catch(() => {});
    if (host) await host.stop(3000);
  });

  test('serves the page and the socket.io client bundle', async () => {
    const index = await httpGet(`${host.base}/`);
    assert.equal(index.status, 200);
    assert.match(index.body, /<script src="\/socket.io\/socket.io.js">/);
    const bundle = await httpGet(`${host.base}/socket.io/socket.io.js`);
    assert.equal(bundle.status, 200, 'socket.io-client bundle: install tests/e2e (npm ci) or set IOBUS_CLIENT_DIR');
    assert.match(bundle.headers['content-type'], /javascript/);
  });

  test('two people chat: joins, messages, typing, rooms, DMs, leaving', async () => {
    const alice = await page(`${host.base}/`, 'alice');
    const bob = await page(`${host.base}/`, 'bob');

    // Join: each sees the other's join notice and the room's user list.
    await joinAs(alice, 'alice');
    await currentRoom(alice, 'lobby');
    await entry(alice, 'notice', 'alice joined #lobby');
    await users(alice, ['alice']);
    await joinAs(bob, 'bob');
    await entry(alice, 'notice', 'bob joined #lobby');
    await entry(bob, 'notice', 'bob joined #lobby');
    await users(alice, ['alice', 'bob']);
    await users(bob, ['alice', 'bob']);
    await waitFor(bob, () => document.querySelector('[data-testid="user"][data-self="true"]').dataset.name === 'bob',
      null, 'bob is marked as self');

    // Messages reach the whole room, the sender included, with name and time.
    await say(alice, 'hi bob!');
    await entry(bob, 'message', 'hi bob!');
    await entry(alice, 'message', 'hi bob!');
    const shown = await bob.evaluate(() => {
      const li = Array.from(document.querySelectorAll('[data-testid="message"]')).find((m) => m.textContent.includes('hi bob!'));
      return { name: li.dataset.name, author: li.querySelector('[data-testid="author"]').textContent,
               time: li.querySelector('[data-testid="time"]').textContent, own: li.classList.contains('own') };
    });
    assert.equal(shown.name, 'alice');
    assert.equal(shown.author, 'alice');
    assert.match(shown.time, /\d/);
    assert.equal(shown.own, false);
    await say(bob, 'hello alice');
    await entry(alice, 'message', 'hello alice');

    // Typing: shown to the others, not to the typist, and gone after ~2 s.
    await bob.getByTestId('message-input').pressSequentially('typ', { delay: 20 });
    await waitFor(alice, () => document.getElementById('typing').textContent === 'bob is typing…', null, 'alice sees bob typing');
    assert.equal(await bob.getByTestId('typing').textContent(), '');
    const typingShownAt = Date.now();
    await waitFor(alice, () => document.getElementById('typing').textContent === '', null, 'typing indicator clears', 4000);
    assert.ok(Date.now() - typingShownAt >= 1000, 'the typing indicator stays up for a while');
    await bob.getByTestId('message-input').fill('');

    // Switching rooms: leave notice in the old room, join notice in the new one.
    await bob.locator('[data-testid="room-link"][data-room="dev"]').click();
    await currentRoom(bob, 'dev');
    await entry(alice, 'notice', 'bob left #lobby');
    await entry(bob, 'notice', 'bob joined #dev');
    await users(alice, ['alice']);
    await users(bob, ['bob']);

    // Messages stay within their rooms.
    await say(alice, 'lobby only');
    await entry(alice, 'message', 'lobby only');
    await say(bob, 'dev only');
    await entry(bob, 'message', 'dev only');
    assert.equal(await hasEntry(bob, 'message', 'lobby only'), false, 'bob (in #dev) got a #lobby message');
    assert.equal(await hasEntry(alice, 'message', 'dev only'), false, 'alice (in #lobby) got a #dev message');

    // Typing stays within the room too.
    await alice.getByTestId('message-input').pressSequentially('x');
    await alice.getByTestId('message-input').fill('');

    // The room field: alice follows bob into #dev.
    await alice.getByTestId('room-input').fill('dev');
    await alice.getByTestId('room-button').click();
    await currentRoom(alice, 'dev');
    await entry(bob, 'notice', 'alice joined #dev');
    await users(alice, ['alice', 'bob']);
    await users(bob, ['alice', 'bob']);
    assert.equal(await bob.getByTestId('typing').textContent(), '', 'typing from #lobby leaked into #dev');
    await say(alice, 'made it to dev');
    await entry(bob, 'message', 'made it to dev');

    // A direct message: pick bob from the list, send, and it arrives as a DM.
    await alice.locator('[data-testid="user"][data-name="bob"]').click();
    await waitFor(alice, () => !document.getElementById('dm-target').hidden, null, 'DM target shown');
    assert.equal(await alice.getByTestId('dm-target-name').textContent(), 'bob');
    await say(alice, 'psst, a secret');
    await entry(bob, 'dm', 'psst, a secret');
    await entry(alice, 'dm', 'psst, a secret');
    const dm = await bob.evaluate(() => {
      const li = Array.from(document.querySelectorAll('[data-testid="dm"]')).find((m) => m.textContent.includes('psst'));
      return { direction: li.dataset.direction, author: li.querySelector('[data-testid="author"]').textContent };
    });
    assert.deepEqual(dm, { direction: 'in', author: 'from alice' });
    assert.equal(await hasEntry(bob, 'message', 'psst'), false, 'the DM also showed as a room message');
    await bob.locator('[data-testid="user"][data-name="alice"]').click();
    await say(bob, 'got it');
    await entry(alice, 'dm', 'got it');
    await alice.getByTestId('dm-cancel').click();
    await waitFor(alice, () => document.getElementById('dm-target').hidden, null, 'DM target cleared');

    // Leaving: the other one sees it; the leaver is back at the name prompt.
    await bob.getByTestId('leave-button').click();
    await entry(alice, 'notice', 'bob left #dev');
    await users(alice, ['alice']);
    await status(bob, 'disconnected');
    await waitFor(bob, () => document.getElementById('app').dataset.joined === 'false', null, 'bob back at the prompt');
    assert.equal(await bob.getByTestId('join-screen').isVisible(), true);
    assert.equal(await bob.getByTestId('name-input').inputValue(), 'bob');

    await say(alice, 'bye bob');
    await entry(alice, 'message', 'bye bob');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await alice.screenshot({ path: path.join(ARTIFACTS, 'chat.png') });

    // The one who left can come back.
    await bob.getByTestId('join-button').click();
    await status(bob, 'connected');
    await waitFor(bob, () => document.getElementById('app').dataset.joined === 'true', null, 'bob joined again');
    await currentRoom(bob, 'lobby');
    await users(bob, ['bob']);

    assert.deepEqual(errors, []);
  });

  test('the classic tutorial page: `chat message` reaches everyone', async () => {
    const one = await page(`${host.base}/classic.html`, 'classic-1');
    const two = await page(`${host.base}/classic.html`, 'classic-2');
    const fancy = await page(`${host.base}/`, 'fancy');
    for (const p of [one, two, fancy]) {
      await waitFor(p, () => window.io && document.readyState === 'complete', null, 'page loaded');
    }
    await status(fancy, 'connected');
    // Both classic pages must be connected before the broadcast: poll with pings.
    let n = 0;
    let seen = false;
    const deadline = Date.now() + WAIT;
    while (!seen && Date.now() < deadline) {
      n += 1;
      await one.locator('#input').fill(`hello everyone ${n}`);
      await one.locator('#input').press('Enter');
      seen = await two.waitForFunction((t) => Array.from(document.querySelectorAll('#messages li'))
        .some((li) => li.textContent === t), `hello everyone ${n}`, { timeout: 500 }).then(() => true, () => false);
    }
    assert.ok(seen, 'the second classic page never saw a broadcast');
    const last = `hello everyone ${n}`;
    await waitFor(one, (t) => Array.from(document.querySelectorAll('#messages li')).some((li) => li.textContent === t),
      last, 'the sender sees its own message');
    await entry(fancy, 'broadcast', last);
    assert.deepEqual(errors, []);
  });

  test('the event contract, from a plain socket.io client', async () => {
    const c1 = await connectClient(host.base);
    const c2 = await connectClient(host.base);
    const c3 = await connectClient(host.base);
    try {
      // Before joining, or with bad input, nothing happens and nothing breaks.
      assert.equal((await call(c1, 'chat', { msg: 'too early' })).ok, false);
      assert.ok((await call(c1, 'join', 42)).error);
      assert.ok((await call(c1, 'join', '   ')).error);
      assert.ok((await call(c1, 'join')).error);
      assert.ok((await call(c1, 'switch room', 'x')).error);
      assert.equal((await call(c1, 'dm', { to: c2.id, msg: 'x' })).ok, false);
      c1.emit('typing');
      c1.emit('join', { name: 'object' });
      c1.emit('no such event', 1, 2, 3);

      const j1 = await call(c1, 'join', 'zed');
      assert.equal(j1.room, 'lobby');
      assert.ok(j1.users.includes('zed'));
      assert.deepEqual(j1.users, [...j1.users].sort());
      assert.ok(j1.members.some((m) => m.id === c1.id && m.name === 'zed'));
      const [joinNotice] = await nextEvent(c1, 'join', (e) => e.name === 'zed');
      assert.equal(joinNotice.room, 'lobby');

      await call(c2, 'join', 'amy');
      await call(c3, 'join', 'max');
      await call(c1, 'switch room', 'contract');
      await call(c3, 'switch room', 'contract');
      const j2 = await call(c2, 'switch room', 'contract');
      assert.deepEqual(j2.users, ['amy', 'max', 'zed']);
      assert.deepEqual(j2.members.map((m) => m.name), j2.users);
      assert.deepEqual(new Set(j2.members.map((m) => m.id)), new Set([c1.id, c2.id, c3.id]));
      await nextEvent(c1, 'join', (e) => e.name === 'amy' && e.room === 'contract');

      // chat: {name, msg, room, ts} to the room, the sender included.
      const before = Date.now();
      assert.deepEqual(await call(c2, 'chat', { msg: 'hi all' }), { ok: true });
      for (const c of [c1, c2, c3]) {
        const [m] = await nextEvent(c, 'chat', (e) => e.msg === 'hi all');
        assert.equal(m.name, 'amy');
        assert.equal(m.room, 'contract');
        assert.equal(typeof m.ts, 'number');
        assert.ok(m.ts >= before - 1000 && m.ts <= Date.now() + 1000);
      }
      for (const bad of [42, { msg: 5 }, {}, null, [], { msg: '   ' }]) {
        assert.equal((await call(c2, 'chat', bad)).ok, false, `chat ${JSON.stringify(bad)}`);
      }

      // typing: the room, the sender excluded. It is volatile (a client
      // still receiving something else may miss one), so it is repeated
      // while the room waits for it, as the page does while one types.
      const typingAgain = setInterval(() => c3.emit('typing'), 250);
      c3.emit('typing');
      try {
        const [typing] = await nextEvent(c1, 'typing');
        assert.deepEqual(typing, { name: 'max' });
        await nextEvent(c2, 'typing');
      } finally {
        clearInterval(typingAgain);
      }
      assert.equal(c3.events.some(([e]) => e === 'typing'), false);

      // dm: only to the addressed socket.
      assert.deepEqual(await call(c1, 'dm', { to: c2.id, msg: 'for amy' }), { ok: true });
      const [dm] = await nextEvent(c2, 'dm');
      assert.equal(dm.from, 'zed');
      assert.equal(dm.msg, 'for amy');
      assert.equal((await call(c1, 'dm', { to: 'nobody', msg: 'x' })).ok, false);
      assert.equal((await call(c1, 'dm', { to: 'AAAAAAAAAAAAAAAAAAAA', msg: 'x' })).ok, false);
      assert.equal((await call(c1, 'dm', { msg: 'x' })).ok, false);
      assert.equal((await call(c1, 'dm', 'x')).ok, false);
      await call(c1, 'chat', { msg: 'barrier' });
      await nextEvent(c3, 'chat', (e) => e.msg === 'barrier');
      assert.equal(c3.events.some(([e]) => e === 'dm'), false, 'a DM reached a third socket');
      assert.equal(c1.events.some(([e, a]) => e === 'leave' && a.room === 'lobby'), false,
        'zed saw a #lobby leave after moving to #contract');

      // leave: notice to the room, then the server disconnects the socket.
      const gone = withTimeout(new Promise((resolve) => c3.once('disconnect', resolve)), WAIT, 'leave disconnect');
      c3.emit('leave');
      assert.equal(await gone, 'io server disconnect');
      const [left] = await nextEvent(c1, 'leave', (e) => e.name === 'max');
      assert.equal(left.room, 'contract');

      // A plain disconnect is a leave too.
      c2.disconnect();
      await nextEvent(c1, 'leave', (e) => e.name === 'amy');
      const j3 = await call(c1, 'switch room', 'contract');
      assert.deepEqual(j3.users, ['zed']);
    } finally {
      for (const c of [c1, c2, c3]) c.disconnect();
    }
  });

  test('a page that drops for a few seconds shows every message it missed, once, in order; the room sees nothing', async () => {
    const carol = await page(`${host.base}/`, 'carol');
    const dave = await page(`${host.base}/`, 'dave');
    await joinAs(carol, 'carol');
    await joinAs(dave, 'dave');
    await toRoom(carol, 'blip');
    await toRoom(dave, 'blip');
    await users(carol, ['carol', 'dave']);
    await users(dave, ['carol', 'dave']);
    await entry(carol, 'notice', 'dave joined #blip');
    await say(dave, 'before the drop');
    await entry(carol, 'message', 'before the drop');
    await watchConnection(carol);
    const id = await carol.evaluate(() => window.chat.socket.id);
    const daveNotices = await texts(dave, 'notice');

    // Offline: the browser drops the connection and cannot reconnect.
    await carol.context().setOffline(true);
    await status(carol, 'reconnecting');
    for (let i = 1; i <= 5; i += 1) {
      await say(dave, `while away ${i}`);
      await entry(dave, 'message', `while away ${i}`);
    }
    // A DM to a page that is away waits for it.
    await dave.locator('[data-testid="user"][data-name="carol"]').click();
    await say(dave, 'a word while you were out');
    await entry(dave, 'dm', 'a word while you were out');
    await dave.getByTestId('dm-cancel').click();
    await sleep(1000); // a few seconds away in all
    await users(dave, ['carol', 'dave']);

    await carol.context().setOffline(false);
    await status(carol, 'connected');
    await entry(carol, 'message', 'while away 5');
    await entry(carol, 'dm', 'a word while you were out');
    assert.deepEqual(await carol.evaluate(() => window.history_), [['disconnect', 'transport close'], ['connect', true]]);
    assert.equal(await carol.evaluate(() => window.chat.socket.id), id, 'the recovered socket keeps its id');
    await waitFor(carol, () => document.getElementById('app').dataset.joined === 'true', null, 'carol joined again');
    assert.deepEqual(await texts(carol, 'message'),
      ['before the drop', 'while away 1', 'while away 2', 'while away 3', 'while away 4', 'while away 5']);
    assert.deepEqual(await texts(carol, 'dm'), ['a word while you were out']);
    await currentRoom(carol, 'blip');
    await users(carol, ['carol', 'dave']);
    assert.equal(await carol.evaluate(() => document.getElementById('me').textContent), 'signed in as carol');

    // The host still knows her: she talks, in her room, under her name.
    await say(carol, 'back');
    await entry(dave, 'message', 'back');
    const back = await dave.evaluate(() => Array.from(document.querySelectorAll('[data-testid="message"]'))
      .filter((li) => li.textContent.includes('back')).map((li) => [li.dataset.name, li.dataset.room]));
    assert.deepEqual(back, [['carol', 'blip']]);

    // Again, the websocket closed under the page this time, while dave talks.
    await carol.evaluate(() => window.chat.socket.io.engine.transport.ws.close());
    for (let i = 1; i <= 3; i += 1) await say(dave, `meanwhile ${i}`);
    await entry(carol, 'message', 'meanwhile 3');
    await status(carol, 'connected');
    await waitFor(carol, () => window.history_.length === 4, null, 'carol reconnected a second time');
    assert.deepEqual(await carol.evaluate(() => window.history_.slice(2)), [['disconnect', 'transport close'], ['connect', true]]);
    assert.deepEqual((await texts(carol, 'message')).slice(6),
      ['back', 'meanwhile 1', 'meanwhile 2', 'meanwhile 3']);

    // Through both drops, dave saw nothing: no leave, no join, no change.
    await say(dave, 'end');
    await entry(carol, 'message', 'end');
    assert.deepEqual(await texts(dave, 'notice'), daveNotices);
    assert.deepEqual((await texts(carol, 'notice')).filter((t) => /carol/.test(t)),
      ['carol joined #lobby', 'carol joined #blip']);
    await users(dave, ['carol', 'dave']);
    assert.deepEqual(scriptErrors(errors), []);
  });

  test('a page away longer than the recovery window comes back as a new session; the room sees it leave and join', async () => {
    const erin = await page(`${host.base}/`, 'erin');
    const frank = await page(`${host.base}/`, 'frank');
    await joinAs(erin, 'erin');
    await joinAs(frank, 'frank');
    await toRoom(erin, 'far');
    await toRoom(frank, 'far');
    await users(frank, ['erin', 'frank']);
    const id = await erin.evaluate(() => window.chat.socket.id);

    await erin.context().setOffline(true);
    await status(erin, 'reconnecting');
    const wentAt = Date.now();
    await entry(frank, 'notice', 'erin left #far', RECOVERY_MS + EXPIRY_SLACK + WAIT);
    assert.ok(Date.now() - wentAt >= RECOVERY_MS - 500, 'the room heard of the drop before the recovery window ended');
    await users(frank, ['frank']);
    await say(frank, 'anyone?');

    await erin.context().setOffline(false);
    await status(erin, 'connected');
    await currentRoom(erin, 'far');
    await users(erin, ['erin', 'frank']);
    await users(frank, ['erin', 'frank']);
    assert.equal(await erin.evaluate(() => window.chat.socket.recovered), false);
    assert.notEqual(await erin.evaluate(() => window.chat.socket.id), id);
    assert.deepEqual((await texts(frank, 'notice')).filter((t) => /erin/.test(t)),
      ['erin left #lobby', 'erin left #far', 'erin joined #far']);
    assert.deepEqual(scriptErrors(errors), []);
  });

  test('closing a page is a leave at once, not a drop to wait out', async () => {
    const gina = await page(`${host.base}/`, 'gina');
    const hal = await page(`${host.base}/`, 'hal');
    await joinAs(gina, 'gina');
    await joinAs(hal, 'hal');
    await toRoom(gina, 'door');
    await toRoom(hal, 'door');
    await users(gina, ['gina', 'hal']);
    await hal.close();
    await entry(gina, 'notice', 'hal left #door', RECOVERY_MS / 2);
    await users(gina, ['gina']);
    assert.deepEqual(scriptErrors(errors), []);
  });

  test('pages reconnect by themselves and re-join after a server restart', async () => {
    const dora = await page(`${host.base}/`, 'dora');
    const eve = await page(`${host.base}/`, 'eve');
    await joinAs(dora, 'dora');
    await joinAs(eve, 'eve');
    await dora.getByTestId('room-input').fill('ops');
    await dora.getByTestId('room-button').click();
    await currentRoom(dora, 'ops');
    await users(dora, ['dora']);

    const ended = await host.stop(5000);
    assert.deepEqual(ended, { code: 0, signal: null, killed: false }, `the host did not stop cleanly:\n${host.output}`);
    await status(dora, 'reconnecting');
    await status(eve, 'reconnecting');

    await host.start();
    await status(dora, 'connected', 10000);
    await status(eve, 'connected', 10000);
    await currentRoom(dora, 'ops');
    await users(dora, ['dora']);
    await users(eve, ['eve']);
    await say(eve, 'back again');
    await entry(eve, 'message', 'back again');
    const name = await dora.evaluate(() => document.getElementById('me').textContent);
    assert.equal(name, 'signed in as dora');

    // Reconnect attempts against a stopped server show up in the console;
    // only script errors count here.
    assert.deepEqual(scriptErrors(errors), []);
  });
});

module.exports = {
  CHROMIUM, CHROMIUM_ARGS, Host, freePort, sleep, withTimeout, openPage, waitFor, joinAs, users,
  currentRoom, entry, hasEntry, say, toRoom, scriptErrors, texts,
};

process.on('exit', () => {
  // Never leave a host running, whatever happened above.
  for (const h of liveHosts) h.kill();
});
