'use strict';
// A socket.io-client (npm) that the Python tests steer: one JSON command per
// line on stdin, one JSON answer per line on stdout ({id, ...result} or
// {id, error}). Binary travels as {"$b64": "..."} both ways.
//
// Commands (c names a client):
//   connect {c, url, nsp, auth, query, transports, forceNew, reconnection}
//                                                    → {sid} | {refused: {message, data}}
//     (forceNew false: share one connection with the other clients that say so;
//     reconnection true: reconnect at once after a drop, recovering if the server allows)
//   emit {c, event, args, ack, timeout}              → {} | {reply: [...]} | {timeout: true}
//   blast {c, event, count}                          → {}   (emits `event` 0..count-1 at once)
//   answer {c, event, reply, delay}                  → {}   (acks `event` with `reply` after `delay` ms)
//   wait {c, event, count, timeout}                  → {events: [[name, ...args], ...]} of that name
//   events {c}                                       → {events: [...]} everything received
//   drop {c}                                         → {}   (closes the transport: the server sees `transport close`)
//   connected {c, count, timeout}                    → {sid, recovered} of the count-th connect
//   disconnect {c}                                   → {reason}
//   exit                                             → ends the process

const path = require('node:path');
const readline = require('node:readline');

function loadClient() {
  const bases = [
    __dirname,
    path.resolve(__dirname, '..', '..', '..', '..', 'tests', 'node'),
    path.resolve(__dirname, '..', '..', '..', '..'),
  ];
  for (const base of bases) {
    try {
      return require(require.resolve('socket.io-client', { paths: [base] }));
    } catch (_) {
      // next place
    }
  }
  throw new Error('socket.io-client not found: npm install in bindings/python/tests/node');
}

const { io } = loadClient();
const clients = new Map();

function toWire(value) {
  if (Buffer.isBuffer(value)) return { $b64: value.toString('base64') };
  if (value instanceof ArrayBuffer) return { $b64: Buffer.from(value).toString('base64') };
  if (ArrayBuffer.isView(value)) return { $b64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  if (Array.isArray(value)) return value.map(toWire);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = toWire(v);
    return out;
  }
  return value;
}

function fromWire(value) {
  if (Array.isArray(value)) return value.map(fromWire);
  if (value && typeof value === 'object') {
    if (Object.keys(value).length === 1 && typeof value.$b64 === 'string') return Buffer.from(value.$b64, 'base64');
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromWire(v);
    return out;
  }
  return value;
}

function client(name) {
  const c = clients.get(name);
  if (!c) throw new Error(`no client ${name}`);
  return c;
}

function withTimeout(ms, what, executor) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    executor((v) => { clearTimeout(timer); resolve(v); }, (e) => { clearTimeout(timer); reject(e); });
  });
}

const commands = {
  async connect({ c, url, nsp = '/', auth, query, transports, forceNew = true, reconnection = false }) {
    const socket = io(url + (nsp === '/' ? '' : nsp), {
      auth,
      query,
      transports: transports || ['websocket'],
      reconnection,
      reconnectionDelay: 50,
      reconnectionDelayMax: 100,
      forceNew,
      timeout: 5000,
    });
    const entry = { socket, events: [], waiters: [], connects: [] };
    clients.set(c, entry);
    socket.on('connect', () => {
      entry.connects.push({ sid: socket.id, recovered: socket.recovered });
      for (const w of entry.waiters.splice(0)) w();
    });
    socket.onAny((event, ...args) => {
      const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null;
      entry.events.push([event, ...args]);
      if (cb && entry.answers && entry.answers[event]) {
        const { reply, delay } = entry.answers[event];
        setTimeout(() => cb(...fromWire(reply)), delay || 0);
      }
      for (const w of entry.waiters.splice(0)) w();
    });
    socket.on('disconnect', (reason) => {
      entry.disconnectReason = reason;
      entry.events.push(['$disconnect', reason]);
      for (const w of entry.waiters.splice(0)) w();
    });
    return withTimeout(6000, 'connect', (resolve) => {
      socket.once('connect', () => resolve({ sid: socket.id }));
      socket.once('connect_error', (err) => resolve({ refused: { message: err.message, data: err.data === undefined ? null : err.data } }));
    });
  },

  async emit({ c, event, args = [], ack = false, timeout = 5000 }) {
    const { socket } = client(c);
    const values = fromWire(args);
    if (!ack) {
      socket.emit(event, ...values);
      return {};
    }
    return new Promise((resolve) => {
      socket.timeout(timeout).emit(event, ...values, (err, ...reply) => {
        resolve(err ? { timeout: true } : { reply: toWire(reply) });
      });
    });
  },

  async blast({ c, event, count }) {
    const { socket } = client(c);
    for (let i = 0; i < count; i += 1) socket.emit(event, i);
    return {};
  },

  async answer({ c, event, reply = [], delay = 0 }) {
    const entry = client(c);
    entry.answers = entry.answers || {};
    entry.answers[event] = { reply, delay };
    return {};
  },

  async wait({ c, event, count = 1, timeout = 5000 }) {
    const entry = client(c);
    const matching = () => entry.events.filter(([e]) => e === event);
    await withTimeout(timeout, `${count} × ${event}`, (resolve) => {
      const check = () => (matching().length >= count ? resolve() : entry.waiters.push(check));
      check();
    });
    return { events: toWire(matching()) };
  },

  async events({ c }) {
    return { events: toWire(client(c).events) };
  },

  async drop({ c }) {
    client(c).socket.io.engine.close();
    return {};
  },

  async connected({ c, count = 1, timeout = 5000 }) {
    const entry = client(c);
    await withTimeout(timeout, `connect #${count}`, (resolve) => {
      const check = () => (entry.connects.length >= count ? resolve() : entry.waiters.push(check));
      check();
    });
    return entry.connects[count - 1];
  },

  async disconnect({ c }) {
    const entry = client(c);
    entry.socket.disconnect();
    clients.delete(c);
    return { reason: entry.disconnectReason || null };
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    return;
  }
  if (msg.op === 'exit') {
    for (const { socket } of clients.values()) socket.disconnect();
    process.exit(0);
  }
  let answer;
  try {
    const fn = commands[msg.op];
    if (!fn) throw new Error(`unknown op ${msg.op}`);
    answer = { id: msg.id, ...(await fn(msg)) };
  } catch (e) {
    answer = { id: msg.id, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
rl.on('close', () => process.exit(0));
