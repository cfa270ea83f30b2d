'use strict';
// Connection state recovery seen from a browser. Debian's Chromium (driven
// by playwright-core) loads a small page, served by this test, that connects
// with the socket.io-client bundle the fixture serves (tests/FIXTURE.md, run
// with FIXTURE_RECOVERY_MS) over websocket only, polling only, and polling
// upgraded to websocket. While a Node socket.io-client streams broadcasts to
// the page's room and emits to the page's socket, the page's connection
// drops twice: the server closes it (`drop-me`, right after the page asked
// for direct `echo` replies), then the browser goes offline for longer than
// the fixture's ping timeout. After each drop the page must be the same
// socket (id, rooms, data; `socket.recovered` true) and, in the end, have
// seen every packet exactly once, in order, those it missed replayed before
// its `connect`.
//
// The fixture command is env IOBUS_FIXTURE (default
// <repo>/target/debug/examples/fixture). The test is the same whatever chat
// host the suite runs against, so it runs only when IOBUS_CHAT is unset.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');

const { chromium } = require('playwright-core');
const { io } = require('socket.io-client');

const REPO = path.resolve(__dirname, '..', '..');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 5000; // the timeout of any single wait
const RECOVERY_MS = 10000; // FIXTURE_RECOVERY_MS: far longer than any drop here
// Offline for longer than the fixture's ping interval + timeout (1.5 s), so
// that the server has seen the connection die before the page is back.
const OFFLINE_MS = 2000;
const STREAM_EVERY_MS = 15; // one packet to the page this often
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run'];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
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

// ---- the fixture -------------------------------------------------------------

function fixtureCommand() {
  const raw = (process.env.IOBUS_FIXTURE || '').trim();
  if (raw) return raw.split(/\s+/);
  return [path.join(REPO, 'target', 'debug', 'examples', 'fixture')];
}

/** Starts the fixture with recovery on; resolves with {url, stop}. */
async function startFixture() {
  const [cmd, ...args] = fixtureCommand();
  if (!process.env.IOBUS_FIXTURE && !fs.existsSync(cmd)) {
    throw new Error(`${cmd} is missing: build it with \`cargo build --example fixture\` or set IOBUS_FIXTURE`);
  }
  const port = await freePort();
  const env = { ...process.env, FIXTURE_RECOVERY_MS: String(RECOVERY_MS) };
  const bundled = path.join(__dirname, 'node_modules', 'socket.io-client', 'dist');
  if (!env.IOBUS_CLIENT_DIR && fs.existsSync(path.join(bundled, 'socket.io.js'))) env.IOBUS_CLIENT_DIR = bundled;
  const child = spawn(cmd, [...args, String(port)], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await withTimeout(new Promise((resolve, reject) => {
    const onData = (d) => {
      output += d;
      if (output.includes(`listening on 127.0.0.1:${port}`)) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => { output += d; });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`the fixture exited (${code}):\n${output}`)));
  }), 10000, 'the fixture listens');
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await withTimeout(exited, 5000, 'the fixture stops').catch(() => child.kill('SIGKILL'));
    },
  };
}

// ---- the page ----------------------------------------------------------------

/** The page: the fixture's client bundle, and a socket whose every event,
 * connect and disconnect goes into window.log. */
function pageHtml(fixtureUrl) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>recovery</title>
<script src="${fixtureUrl}/socket.io/socket.io.js"></script>
<script>
  window.log = [];
  window.start = function (url, mode) {
    var opts = { forceNew: true, reconnectionDelay: 250, reconnectionDelayMax: 250, randomizationFactor: 0,
                 auth: { silent: true } };
    if (mode === 'websocket') opts.transports = ['websocket'];
    if (mode === 'polling') opts.transports = ['polling'];
    var socket = window.socket = io(url, opts);
    socket.on('connect', function () {
      log.push({ t: 'connect', id: socket.id, recovered: socket.recovered === true,
                 transport: socket.io.engine.transport.name });
    });
    socket.on('disconnect', function (reason) { log.push({ t: 'disconnect', reason: reason }); });
    socket.onAny(function (event) { log.push({ t: 'event', event: event, args: [].slice.call(arguments, 1) }); });
  };
  window.call = function (event) {
    var s = window.socket.timeout(${WAIT});
    return s.emitWithAck.apply(s, arguments);
  };
</script></head><body></body></html>`;
}

/** A tiny HTTP server for the page (the fixture serves no static files). */
function startPageServer(fixtureUrl) {
  const server = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(pageHtml(fixtureUrl));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}/`,
      stop: () => new Promise((done) => server.close(done)),
    }));
  });
}

function waitFor(page, fn, arg, what) {
  return page.waitForFunction(fn, arg, { timeout: WAIT, polling: 20 })
    .catch((err) => { throw new Error(`${what}: ${err.message.split('\n')[0]}`); });
}

/** Waits for the connect that follows the `n`-th logged disconnect. */
function reconnected(page, n, what) {
  return waitFor(page, (k) => {
    const entries = window.log.filter((e) => e.t === 'connect' || e.t === 'disconnect');
    return entries.filter((e) => e.t === 'disconnect').length >= k && entries[entries.length - 1].t === 'connect';
  }, n, what);
}

function upgraded(page) {
  return waitFor(page, () => window.socket.connected && window.socket.io.engine.transport.name === 'websocket',
    null, 'polling upgraded to websocket');
}

// ---- the scenario ----------------------------------------------------------

describe('connection state recovery in the browser', {
  timeout: 60000,
  skip: process.env.IOBUS_CHAT ? 'the fixture is the same for every chat host: run once, without IOBUS_CHAT' : false,
}, () => {
  let fixture;
  let pages;
  let browser;

  before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
    const launching = chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 15000 });
    fixture = await startFixture();
    pages = await startPageServer(fixture.url);
    browser = await launching;
  });

  after(async () => {
    if (browser) await withTimeout(browser.close(), WAIT, 'close the browser').catch(() => {});
    if (pages) await pages.stop();
    if (fixture) await fixture.stop();
  });

  for (const mode of ['websocket', 'polling', 'upgrade']) {
    test(`${mode}: every missed packet once, in order, with the same id, rooms and data`, async () => {
      const context = await browser.newContext();
      const errors = [];
      let sender;
      try {
        const page = await context.newPage();
        page.on('pageerror', (err) => errors.push(err.message));
        await page.goto(pages.url);
        await page.evaluate(([url, m]) => window.start(url, m), [fixture.url, mode]);
        await waitFor(page, () => window.log.some((e) => e.t === 'connect'), null, 'the page connects');
        if (mode === 'upgrade') await upgraded(page);
        const sid = await page.evaluate(() => window.socket.id);
        const room = `browser-${mode}`;
        const data = { name: 'ada', mode };
        assert.deepEqual(await page.evaluate((r) => window.call('join', r), room), [room, sid].sort());
        await page.evaluate((d) => window.call('set-data', d), data);

        // The sender: one packet every few ms, to the page's room and to the
        // page's own socket in turn, numbered across both.
        sender = io(fixture.url, { transports: ['websocket'], forceNew: true, reconnection: false, auth: { silent: true } });
        await withTimeout(new Promise((resolve, reject) => {
          sender.once('connect', resolve);
          sender.once('connect_error', reject);
        }), WAIT, 'the sender connects');
        let sent = 0;
        let streaming = true;
        const stream = (async () => {
          while (streaming) {
            sent += 1;
            if (sent % 2) sender.emit('broadcast', { to: room }, 'tick', sent);
            else sender.emit('broadcast', { to: sid }, 'direct', sent);
            await sleep(STREAM_EVERY_MS);
          }
        })();
        await sleep(300);

        // Drop 1: the server closes the connection just after the page asked
        // for direct replies, which may be lost on the way.
        await page.evaluate(() => {
          for (const e of ['e1', 'e2', 'e3']) window.socket.emit('echo', e);
          window.socket.emit('drop-me');
        });
        await reconnected(page, 1, 'back after drop-me');
        if (mode === 'upgrade') await upgraded(page);
        await sleep(300);

        // Drop 2: the browser goes offline, and stays so until the server
        // has seen the connection die.
        await context.setOffline(true);
        await waitFor(page, () => window.log.filter((e) => e.t === 'disconnect').length === 2, null,
          'the page notices it is offline');
        await sleep(OFFLINE_MS);
        await context.setOffline(false);
        await reconnected(page, 2, 'back after going offline');
        if (mode === 'upgrade') await upgraded(page);
        await sleep(300);

        streaming = false;
        await stream;
        await sender.timeout(WAIT).emitWithAck('broadcast', { to: room }, 'tick', 'end');
        await waitFor(page, () => window.log.some((e) => e.t === 'event' && e.args[0] === 'end'), null,
          'the last packet arrives');

        const log = await page.evaluate(() => window.log);
        const links = log.filter((e) => e.t !== 'event');
        assert.deepEqual(links.map((e) => e.t), ['connect', 'disconnect', 'connect', 'disconnect', 'connect'],
          JSON.stringify(links));
        assert.deepEqual(links.filter((e) => e.t === 'connect').map((e) => [e.id, e.recovered]),
          [[sid, false], [sid, true], [sid, true]]);
        if (mode === 'websocket') assert.ok(links.every((e) => e.t !== 'connect' || e.transport === 'websocket'));
        if (mode === 'polling') assert.ok(links.every((e) => e.t !== 'connect' || e.transport === 'polling'));

        // Every numbered packet once, in order; each stored one with its
        // offset (an opaque string) last.
        const numbered = log.filter((e) => e.t === 'event' && (e.event === 'tick' || e.event === 'direct'));
        for (const e of numbered) {
          assert.equal(e.args.length, 2, JSON.stringify(e));
          assert.equal(typeof e.args[1], 'string', JSON.stringify(e));
        }
        const seen = numbered.map((e) => e.args[0]).filter((n) => n !== 'end');
        assert.equal(seen.length, sent, `the page saw ${seen.length} of ${sent} packets`);
        assert.deepEqual(seen, Array.from({ length: sent }, (_, i) => i + 1));
        for (const e of numbered) assert.equal(e.event, e.args[0] === 'end' || e.args[0] % 2 ? 'tick' : 'direct');
        const echoes = log.filter((e) => e.t === 'event' && e.event === 'echo').map((e) => e.args[0]);
        assert.deepEqual(echoes, ['e1', 'e2', 'e3']);

        // What each drop missed came back before its `connect`.
        let gap = null;
        const replayed = [];
        for (const e of log) {
          if (e.t === 'disconnect') gap = [];
          else if (e.t === 'connect' && gap) {
            replayed.push(gap.length);
            gap = null;
          } else if (gap && e.t === 'event') gap.push(e);
        }
        assert.equal(replayed.length, 2);
        assert.ok(replayed.every((n) => n > 0), `packets replayed per drop: ${replayed}`);

        // The same socket: rooms and data kept, and it knows it recovered.
        assert.deepEqual(await page.evaluate(() => window.call('rooms')), [room, sid].sort());
        assert.deepEqual(await page.evaluate(() => window.call('get-data')), data);
        assert.equal(await page.evaluate(() => window.socket.recovered), true);
        assert.deepEqual(errors, []);
      } finally {
        if (sender) sender.disconnect();
        await withTimeout(context.close(), WAIT, 'close the page').catch(() => {});
      }
    });
  }
});
