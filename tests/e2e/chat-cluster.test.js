'use strict';
// The chat on a cluster: two C chat hosts (examples/chat/chat.c, joined by
// env CHAT_REDIS_URL) on one redis-server of the test's own, and one
// Chromium page on each. Rosters, room notices, messages and DMs cross from
// node to node.
//
// The host is env IOBUS_CHAT (as in chat.test.js: the C host that `make
// test-e2e-cluster` builds); the Redis server is env IOBUS_REDIS_SERVER
// (default `redis-server`), started on a free port in a temporary directory.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { chromium } = require('playwright-core');
const { io } = require('socket.io-client');

const {
  CHROMIUM, CHROMIUM_ARGS, Host, freePort, sleep, withTimeout, openPage, waitFor, joinAs, users,
  entry, hasEntry, say, toRoom, scriptErrors, texts,
} = require('./chat.test.js');

const WAIT = 5000;
// The hosts' recovery window (CHAT_RECOVERY_MS); a user away longer is let
// go a second after it.
const RECOVERY_MS = 2000;

/** A redis-server of the test's own: a free port, a temporary directory, no persistence. */
class Redis {
  async start() {
    this.port = await freePort();
    this.url = `redis://127.0.0.1:${this.port}`;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iobus-chat-redis-'));
    this.output = '';
    this.child = spawn(process.env.IOBUS_REDIS_SERVER || 'redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d) => { this.output += d; });
    this.child.stderr.on('data', (d) => { this.output += d; });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => resolve({ error }));
      this.child.on('exit', (code, signal) => resolve({ code, signal }));
    });
    const deadline = Date.now() + 5000;
    while ((await this.ping()) !== '+PONG') {
      if (Date.now() > deadline) throw new Error(`redis-server did not start:\n${this.output}`);
      await sleep(50);
    }
  }

  /** PING over a plain connection: the reply line, or null. */
  ping() {
    return new Promise((resolve) => {
      const sock = net.connect(this.port, '127.0.0.1');
      let reply = '';
      sock.setTimeout(500, () => sock.destroy());
      sock.on('connect', () => sock.write('PING\r\n'));
      sock.on('data', (d) => {
        reply += d;
        if (reply.includes('\r\n')) sock.end();
      });
      sock.on('close', () => resolve(reply.split('\r\n')[0] || null));
      sock.on('error', () => {});
    });
  }

  async stop() {
    if (!this.child) return;
    this.child.kill('SIGTERM');
    await withTimeout(this.exited, 5000, 'redis-server exit').catch(() => this.child.kill('SIGKILL'));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function connectClient(base) {
  const socket = io(base, { transports: ['websocket'], reconnection: false, forceNew: true });
  return withTimeout(new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  }), WAIT, 'socket.io-client connect');
}

/** Waits until each node lists the other's users: a probe user on `a`,
 * and a roster asked of `b` until it holds the probe (the nodes find each
 * other through the stream a moment after they start). */
async function waitCluster(a, b) {
  const pa = await connectClient(a.base);
  const pb = await connectClient(b.base);
  try {
    await pa.timeout(WAIT).emitWithAck('join', 'probe-a');
    const deadline = Date.now() + 10000;
    for (;;) {
      const res = await pb.timeout(WAIT).emitWithAck('join', 'probe-b');
      if (res.users && res.users.includes('probe-a')) {
        const back = await pa.timeout(WAIT).emitWithAck('switch room', 'lobby');
        if (back.users && back.users.includes('probe-b')) break;
      }
      if (Date.now() > deadline) throw new Error(`the nodes never saw each other: ${JSON.stringify(res)}`);
      await sleep(100);
    }
  } finally {
    pa.disconnect();
    pb.disconnect();
  }
}

async function waitUntil(cond, what) {
  const deadline = Date.now() + WAIT;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
}

/** A TCP switch in front of the nodes, as a load balancer that is not
 * sticky would be: new connections go to the node it points at; `to(port)`
 * points it elsewhere and cuts every connection it carries. */
class Switch {
  constructor(port) {
    this.target = port;
    this.pairs = new Set();
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target, '127.0.0.1');
      const pair = [client, upstream];
      this.pairs.add(pair);
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const s of pair) {
        s.on('error', drop);
        s.on('close', drop);
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
  }

  to(port) {
    this.target = port;
    for (const pair of [...this.pairs]) for (const s of pair) s.destroy();
  }

  close() {
    this.to(0);
    return new Promise((resolve) => this.server.close(resolve));
  }
}

const redis = new Redis();

describe('chat example on a two-node cluster', { timeout: 45000 }, () => {
  const hosts = [];
  let browser;
  const errors = [];

  before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
    const launching = chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 15000 });
    await redis.start();
    const env = {
      CHAT_REDIS_URL: redis.url, CHAT_REDIS_KEY: `chat-e2e-${process.pid}`, CHAT_RECOVERY_MS: String(RECOVERY_MS),
    };
    for (let i = 0; i < 2; i++) {
      const host = new Host(await freePort(), env);
      hosts.push(host);
      await host.start();
    }
    browser = await launching;
    await waitCluster(hosts[0], hosts[1]);
  });

  after(async () => {
    if (browser) await browser.close();
    for (const host of hosts) {
      const end = await host.stop();
      assert.equal(end.killed, false, `a chat host had to be killed:\n${host.output}`);
    }
    await redis.stop();
  });

  test('pages on two nodes share rooms, notices, rosters and DMs', async () => {
    const alice = await openPage(browser, `${hosts[0].base}/`, errors, 'alice@A');
    const bob = await openPage(browser, `${hosts[1].base}/`, errors, 'bob@B');

    // Joining: each roster lists the user on the other node too.
    await joinAs(alice, 'alice');
    await users(alice, ['alice']);
    await joinAs(bob, 'bob');
    await users(bob, ['alice', 'bob']);
    await entry(alice, 'notice', 'bob joined #lobby');
    await users(alice, ['alice', 'bob']);

    // Room messages both ways.
    await say(alice, 'hello from node A');
    await entry(bob, 'message', 'hello from node A');
    await say(bob, 'hello from node B');
    await entry(alice, 'message', 'hello from node B');

    // Switching rooms: the notices reach the other node, the rosters follow.
    await toRoom(alice, 'dev');
    await users(alice, ['alice']);
    await entry(bob, 'notice', 'alice left #lobby');
    await users(bob, ['bob']);
    await toRoom(bob, 'dev');
    await users(bob, ['alice', 'bob']);
    await entry(alice, 'notice', 'bob joined #dev');
    await users(alice, ['alice', 'bob']);
    await say(bob, 'made it to dev');
    await entry(alice, 'message', 'made it to dev');

    // DMs from node to node, picked from the roster.
    await alice.locator('[data-testid="user"][data-name="bob"]').click();
    await say(alice, 'psst, across nodes');
    await entry(bob, 'dm', 'psst, across nodes');
    await entry(alice, 'dm', 'psst, across nodes');
    assert.equal(await hasEntry(bob, 'message', 'psst'), false, 'the DM also showed as a room message');
    await bob.locator('[data-testid="user"][data-name="alice"]').click();
    await say(bob, 'got it on B');
    await entry(alice, 'dm', 'got it on B');

    // Leaving: the other node hears it and drops the user from its roster.
    await bob.getByTestId('leave-button').click();
    await entry(alice, 'notice', 'bob left #dev');
    await users(alice, ['alice']);

    await alice.context().close();
    await bob.context().close();
    assert.deepEqual(scriptErrors(errors), []);
  });

  test('a user whose connection moves to the other node stays, with no notice on either', async () => {
    const [a, b] = hosts;
    const lb = new Switch(a.port);
    await lb.listen();
    const dave = await openPage(browser, `${b.base}/`, errors, 'dave@B');
    const carol = io(lb.base, {
      transports: ['websocket'], forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 100,
      randomizationFactor: 0,
    });
    const heard = [];
    carol.on('chat', (ev) => heard.push(ev.msg));
    try {
      await withTimeout(new Promise((resolve) => carol.once('connect', resolve)), WAIT, 'carol connects');
      const id = carol.id;
      await joinAs(dave, 'dave');
      const joined = await carol.timeout(WAIT).emitWithAck('join', 'carol');
      assert.deepEqual(joined.users, ['carol', 'dave']);
      await entry(dave, 'notice', 'carol joined #lobby');
      await users(dave, ['carol', 'dave']);
      await say(dave, 'before the move');
      // A message from carol before the move: the node sends its offset,
      // so her recovery can start from there.
      await waitUntil(() => heard.includes('before the move'), 'carol hears dave');

      // Node A's connection is cut; carol's next one reaches node B.
      const back = withTimeout(new Promise((resolve) => carol.once('connect', resolve)), WAIT, 'carol reconnects');
      lb.to(b.port);
      await say(dave, 'while carol moves');
      await back;
      assert.equal(carol.recovered, true, 'the move was not a recovery');
      assert.equal(carol.id, id);
      await waitUntil(() => heard.includes('while carol moves'), 'carol gets what she missed');
      assert.deepEqual(heard, ['before the move', 'while carol moves']);

      // Past the recovery window and the grace after it: node A has let go
      // of the user it was keeping, quietly, since node B has her socket.
      await sleep(RECOVERY_MS + 2500);
      const notices = await texts(dave, 'notice');
      assert.deepEqual(notices.filter((t) => t.includes('carol')), ['carol joined #lobby']);

      // Node B knows carol: she talks, she is in every roster once.
      const said = await carol.timeout(WAIT).emitWithAck('chat', { msg: 'hello from node B now' });
      assert.deepEqual(said, { ok: true });
      await entry(dave, 'message', 'hello from node B now');
      const probe = io(a.base, { transports: ['websocket'], forceNew: true, reconnection: false });
      try {
        const seen = await probe.timeout(WAIT).emitWithAck('join', 'erin');
        assert.deepEqual(seen.users, ['carol', 'dave', 'erin']);
      } finally {
        probe.disconnect();
      }
      await entry(dave, 'notice', 'erin left #lobby');

      // Leaving from node B is announced once, as anywhere.
      await carol.timeout(WAIT).emitWithAck('leave');
      await entry(dave, 'notice', 'carol left #lobby');
      await users(dave, ['dave']);
    } finally {
      carol.disconnect();
      await dave.context().close();
      await lb.close();
    }
    assert.deepEqual(scriptErrors(errors), []);
  });
});

// (chat.test.js kills any chat host left at exit.)
process.on('exit', () => {
  if (redis.child && redis.child.exitCode === null) redis.child.kill('SIGKILL');
});
