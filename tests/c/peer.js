'use strict';
// The socket.io-client peers of the C test programs, driven through JSON
// lines: commands on stdin, what the clients see on stdout.
//
// Usage: node peer.js <base url>   (e.g. http://127.0.0.1:41234)
//
// Commands (one JSON object per line; `c` names a client):
//   {"op":"connect","c":"a","nsp":"/","auth":{},"query":{},"transports":["websocket"],
//    "path":"/socket.io/","headers":{}}
//   {"op":"emit","c":"a","event":"e","args":[...],"ack":true,"seq":1,"timeout":5000}
//   {"op":"burst","c":"a","event":"n","count":200}     emits e(0), e(1), … e(count-1)
//   {"op":"reply","c":"a","event":"e","mode":"echo"|"ignore"|"args","args":[...],"delay":0}
//        how to answer the server's emit-with-ack of that event (default: echo);
//        answered with {"t":"reply_set",…} once in force
//   {"op":"disconnect","c":"a"}   socket.disconnect() (client namespace disconnect)
//   {"op":"close","c":"a"}        closes the whole connection (transport close)
//   {"op":"drop","c":"a"}         closes the transport under a client connected with
//                                 "reconnection":true, which then reconnects (and may recover)
//   {"op":"quit"}
//
// Output lines, keys always in this order so that tests can match substrings:
//   {"t":"ready"}
//   {"t":"connect","c":"a","sid":"…"}
//   {"t":"connect_error","c":"a","message":"…","data":…}
//   {"t":"disconnect","c":"a","reason":"…"}
//   {"t":"event","c":"a","event":"e","args":[…],"ack":false}
//   {"t":"ack","c":"a","seq":1,"args":[…]}
//   {"t":"ack_error","c":"a","seq":1,"message":"…"}
//   {"t":"sent","c":"a","seq":1}   after a burst or an emit without ack
//   {"t":"reply_set","c":"a","event":"e"}
//   {"t":"error","message":"…"}
// Binary values travel as {"$bin":"<base64>"} both ways.

const readline = require('node:readline');
const { io } = require('socket.io-client');

const base = process.argv[2];
if (!base) {
  process.stderr.write('usage: node peer.js <base url>\n');
  process.exit(2);
}

const clients = new Map();

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Buffers (and ArrayBuffers) → {"$bin": base64}, recursively. */
function encode(value) {
  if (Buffer.isBuffer(value)) return { $bin: value.toString('base64') };
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString('base64') };
  if (ArrayBuffer.isView(value)) return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === 'object') {
    const o = {};
    for (const [k, v] of Object.entries(value)) o[k] = encode(v);
    return o;
  }
  return value;
}

/** {"$bin": base64} → Buffer, recursively. */
function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === 'object') {
    if (typeof value.$bin === 'string' && Object.keys(value).length === 1) return Buffer.from(value.$bin, 'base64');
    const o = {};
    for (const [k, v] of Object.entries(value)) o[k] = decode(v);
    return o;
  }
  return value;
}

function client(name) {
  const c = clients.get(name);
  if (!c) throw new Error(`no client ${name}`);
  return c;
}

function connect(cmd) {
  const nsp = cmd.nsp || '/';
  const socket = io(base + (nsp === '/' ? '' : nsp), {
    forceNew: true,
    reconnection: cmd.reconnection === true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
    timeout: cmd.timeout || 10000,
    transports: cmd.transports || ['websocket'],
    path: cmd.path || '/socket.io/',
    auth: cmd.auth || {},
    query: cmd.query || {},
    extraHeaders: cmd.headers || {},
  });
  const entry = { socket, replies: new Map() };
  clients.set(cmd.c, entry);
  socket.on('connect', () => out({ t: 'connect', c: cmd.c, sid: socket.id, recovered: socket.recovered === true }));
  socket.on('connect_error', (err) => {
    const line = { t: 'connect_error', c: cmd.c, message: err.message };
    if (err.data !== undefined) line.data = encode(err.data);
    out(line);
  });
  socket.on('disconnect', (reason) => out({ t: 'disconnect', c: cmd.c, reason }));
  socket.onAny((event, ...args) => {
    let ack = null;
    if (args.length > 0 && typeof args[args.length - 1] === 'function') ack = args.pop();
    out({ t: 'event', c: cmd.c, event, args: encode(args), ack: ack !== null });
    if (!ack) return;
    const rule = entry.replies.get(event) || { mode: 'echo', delay: 0 };
    if (rule.mode === 'ignore') return;
    const answer = () => {
      if (rule.mode === 'args') ack(...decode(rule.args || []));
      else ack(...args);
    };
    if (rule.delay) setTimeout(answer, rule.delay);
    else answer();
  });
}

function emit(cmd) {
  const { socket } = client(cmd.c);
  const args = decode(cmd.args || []);
  if (cmd.ack) {
    socket.timeout(cmd.timeout || 5000).emit(cmd.event, ...args, (err, ...reply) => {
      if (err) out({ t: 'ack_error', c: cmd.c, seq: cmd.seq, message: err.message });
      else out({ t: 'ack', c: cmd.c, seq: cmd.seq, args: encode(reply) });
    });
  } else {
    socket.emit(cmd.event, ...args);
    if (cmd.seq !== undefined) out({ t: 'sent', c: cmd.c, seq: cmd.seq });
  }
}

function handle(cmd) {
  switch (cmd.op) {
    case 'connect': return connect(cmd);
    case 'emit': return emit(cmd);
    case 'burst': {
      const { socket } = client(cmd.c);
      for (let i = 0; i < cmd.count; i += 1) socket.emit(cmd.event, i);
      return out({ t: 'sent', c: cmd.c, seq: cmd.seq === undefined ? null : cmd.seq });
    }
    case 'drop':
      return client(cmd.c).socket.io.engine.close();
    case 'reply':
      client(cmd.c).replies.set(cmd.event, { mode: cmd.mode || 'echo', args: cmd.args, delay: cmd.delay || 0 });
      return out({ t: 'reply_set', c: cmd.c, event: cmd.event });
    case 'disconnect': return client(cmd.c).socket.disconnect();
    case 'close': return client(cmd.c).socket.io.engine.close();
    case 'quit': return quit();
    default: throw new Error(`unknown op ${cmd.op}`);
  }
}

function quit() {
  for (const { socket } of clients.values()) socket.disconnect();
  // Let the DISCONNECT packets go out before leaving.
  setTimeout(() => process.exit(0), 50);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  try {
    handle(JSON.parse(line));
  } catch (err) {
    out({ t: 'error', message: String(err && err.message) });
  }
});
rl.on('close', quit);
// A test that dies must not leave its peers behind.
setTimeout(() => { out({ t: 'error', message: 'peer lifetime exceeded' }); process.exit(3); }, 600000).unref();
out({ t: 'ready' });
