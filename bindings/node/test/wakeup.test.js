// The poll descriptor alone wakes the binding: there is no polling timer, so
// every record must arrive because the library made the descriptor readable.
// A wake-up the library lost would leave the queue unread for good (the
// library marks the descriptor as signaled, and no later callback signals it
// again until a poll clears the mark), so these scenarios would stall and
// fail. They load the places where a callback is queued while a poll is
// finishing: many clients with events, acks both ways and broadcasts in
// flight, and a lone client whose events arrive just as the binding has
// gone idle. IOBUS_WAKEUP_ROUNDS sets the events per client of the first
// (150 by default) for longer runs by hand.

"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { io: connectClient } = require("socket.io-client");
const { Server } = require("iobus");

/** No progress for this long is a stall (generous: the machine may be loaded). */
const STALL_MS = 5000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Resolves when `done()` is true; rejects once `progress()` has not changed
 * for STALL_MS, with `state()` in the message.
 */
function untilDone(done, progress, state) {
  return new Promise((resolve, reject) => {
    let last = progress();
    let since = Date.now();
    const timer = setInterval(() => {
      if (done()) {
        clearInterval(timer);
        resolve();
        return;
      }
      const now = progress();
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since > STALL_MS) {
        clearInterval(timer);
        reject(new Error(`no progress for ${STALL_MS} ms: ${state()}`));
      }
    }, 50);
  });
}

async function listening(t, opts = {}) {
  const io = new Server({ serveClient: false, ...opts });
  io.listen(0);
  const clients = [];
  t.after(async () => {
    for (const c of clients) c.disconnect();
    await io.close();
  });
  const url = `http://127.0.0.1:${io.httpServer.address().port}`;
  const connect = (transports) => {
    const c = connectClient(url, { transports, forceNew: true, reconnection: false });
    clients.push(c);
    return c;
  };
  return { io, connect };
}

describe("wake-ups", () => {
  it("many clients, acks both ways and broadcasts: every record is delivered", { timeout: 120000 }, async (t) => {
    const CLIENTS = 16;
    const ROUNDS = Number(process.env.IOBUS_WAKEUP_ROUNDS) || 150;
    const WINDOW = 8;
    const PROBE_EVERY = 10;
    const NEWS_EVERY = 25;
    const { io, connect } = await listening(t);

    const wrong = [];
    let probesAnswered = 0;
    let probesSent = 0;
    let newsSent = 0;
    io.on("connection", (socket) => {
      socket.join("all");
      socket.on("ping", (round, ack) => {
        // Half answered in the handler, half later, outside any delivery.
        if (round % 2 === 0) ack(round);
        else setImmediate(() => ack(round));
        if (round % PROBE_EVERY === 0) {
          probesSent += 1;
          socket.timeout(60000).emit("probe", round, (err, back) => {
            if (err || back !== round + 1) wrong.push(`probe ${round}: ${err || back}`);
            probesAnswered += 1;
          });
        }
        if (round % NEWS_EVERY === 0) {
          newsSent += 1;
          io.to("all").emit("news", round);
        }
      });
    });

    const clients = [];
    for (let i = 0; i < CLIENTS; i++) {
      // One client in four long-polls: its events arrive in POST bodies.
      const c = connect(i % 4 === 3 ? ["polling"] : ["websocket"]);
      c.acked = 0;
      c.news = 0;
      c.on("probe", (round, ack) => ack(round + 1));
      c.on("news", () => {
        c.news += 1;
      });
      clients.push(c);
    }
    await untilDone(
      () => clients.every((c) => c.connected),
      () => clients.filter((c) => c.connected).length,
      () => `${clients.filter((c) => c.connected).length} of ${CLIENTS} connected`,
    );

    // Each client keeps WINDOW events with acks in flight.
    for (const c of clients) {
      let next = 0;
      const send = () => {
        if (next >= ROUNDS) return;
        const round = next++;
        c.emit("ping", round, (back) => {
          if (back !== round) wrong.push(`ping ${round}: ${back}`);
          c.acked += 1;
          send();
        });
      };
      for (let i = 0; i < WINDOW; i++) send();
    }

    const acked = () => clients.reduce((n, c) => n + c.acked, 0);
    const news = () => clients.reduce((n, c) => n + c.news, 0);
    await untilDone(
      () => acked() === CLIENTS * ROUNDS && probesAnswered === probesSent && news() === CLIENTS * newsSent,
      () => acked() + probesAnswered + news(),
      () =>
        `${acked()} of ${CLIENTS * ROUNDS} acks, ${probesAnswered} of ${probesSent} probes, ` +
        `${news()} of ${CLIENTS * newsSent} news`,
    );
    assert.deepEqual(wrong, []);
    assert.equal(newsSent, CLIENTS * Math.ceil(ROUNDS / NEWS_EVERY));
  });

  it("a lone client's events, each arriving after the binding went idle, are each delivered", {
    timeout: 120000,
  }, async (t) => {
    const ROUNDS = 300;
    const { io, connect } = await listening(t);
    io.on("connection", (socket) => {
      socket.on("ping", (round, ack) => ack(round));
    });
    const client = connect(["websocket"]);
    let answered = 0;
    let slowest = 0;
    const run = (async () => {
      for (let round = 0; round < ROUNDS; round++) {
        // 0 to 2 ms of quiet: the binding's last poll is over, or just ending.
        await sleep(round % 3);
        const start = process.hrtime.bigint();
        const back = await client.emitWithAck("ping", round);
        slowest = Math.max(slowest, Number(process.hrtime.bigint() - start) / 1e6);
        assert.equal(back, round);
        answered += 1;
      }
    })();
    await untilDone(
      () => answered === ROUNDS,
      () => answered,
      () => `${answered} of ${ROUNDS} answered`,
    );
    await run;
    t.diagnostic(`slowest round trip: ${slowest.toFixed(2)} ms`);
  });
});
