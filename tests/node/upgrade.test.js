// The upgrade from polling to websocket adds no wait of its own: the stock
// socket.io-client (polling first, then websocket) connects one client after
// another; each emits an ack request the moment it is connected. The upgrade
// and the ack are timed. A healthy server finishes both in a few milliseconds
// (a loopback round trip or two); a server that holds the pending poll during
// the probe stalls them by the length of its hold (tens of milliseconds).
//
// The bounds are loose on purpose (a shared, loaded machine): most clients must
// be fast, and only a few may be slow.

"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { DEFAULT_WAIT_MS, once, startFixture, withTimeout } = require("./harness");

const CLIENTS = 20;
// A healthy upgrade takes two loopback round trips on the websocket plus the
// end of the pending poll; a stall shows up as 50 ms and more.
const MEDIAN_BOUND_MS = 30;
const SLOW_MS = 45;
// On a busy machine a client or two can be descheduled past SLOW_MS.
const SLOW_ALLOWED = 3;

let fixture;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Connects one client over polling-then-websocket; resolves with its timings in ms. */
async function timedClient(url) {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: DEFAULT_WAIT_MS });
  try {
    const engine = socket.io.engine;
    const opened = once(engine, "open", { label: "engine open" }).then(() => performance.now());
    const upgraded = once(engine, "upgrade", { failOn: ["upgradeError", "close"], label: "upgrade" }).then(
      () => performance.now(),
    );
    // The ack request leaves the moment the socket is connected, so it is
    // queued while the upgrade is under way.
    const acked = once(socket, "connect", { failOn: ["connect_error"], label: "connect" }).then(() => {
      const sent = performance.now();
      return withTimeout(
        new Promise((resolve) => socket.emit("ack", "ping", (reply) => resolve([reply, performance.now() - sent]))),
        DEFAULT_WAIT_MS,
        "ack",
      );
    });
    const [openAt, upgradeAt, [reply, ackMs]] = await Promise.all([opened, upgraded, acked]);
    assert.equal(reply, "ping");
    assert.equal(engine.transport.name, "websocket");
    return { upgradeMs: upgradeAt - openAt, ackMs };
  } finally {
    socket.disconnect();
  }
}

describe("polling → websocket upgrade", () => {
  before(async () => {
    fixture = await startFixture();
  });

  after(async () => {
    if (fixture) await fixture.stop();
  });

  it(`${CLIENTS} clients upgrade and get their first ack without a stall`, { timeout: 60000 }, async () => {
    const upgrades = [];
    const acks = [];
    for (let i = 0; i < CLIENTS; i++) {
      const { upgradeMs, ackMs } = await timedClient(fixture.url);
      upgrades.push(upgradeMs);
      acks.push(ackMs);
    }
    const fmt = (list) => list.map((v) => v.toFixed(1)).join(" ");
    const summary = `upgrade ms: ${fmt(upgrades)}\nack ms: ${fmt(acks)}`;
    console.log(summary);
    for (const [name, list] of [
      ["upgrade", upgrades],
      ["ack", acks],
    ]) {
      assert.ok(median(list) < MEDIAN_BOUND_MS, `${name}: median ${median(list).toFixed(1)} ms\n${summary}`);
      const slow = list.filter((v) => v > SLOW_MS).length;
      assert.ok(slow <= SLOW_ALLOWED, `${name}: ${slow} of ${CLIENTS} over ${SLOW_MS} ms\n${summary}`);
    }
  });
});
