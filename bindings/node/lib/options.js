// Server options: socket.io's (and iobus's own) options object turned into an
// iobus_config, and the server handle made from it, always in the C ABI's
// poll mode (the records pump in pump.js is how the binding takes callbacks).

"use strict";

const path = require("node:path");
const { lib, check, Dispatch, RedisMode, OUT, takePointer } = require("./native");

/** The installed socket.io-client's browser bundle directory, if any. */
function clientDist() {
  try {
    return path.join(path.dirname(require.resolve("socket.io-client/package.json")), "dist");
  } catch {
    return null;
  }
}

/**
 * A count or duration option as the C setters take it: a non-negative
 * integer (the setters refuse values outside their range with a message).
 */
function count(value, name) {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`iobus: option ${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

const REDIS_MODES = Object.freeze({
  pubsub: RedisMode.PUBSUB,
  "pubsub-own-response-channel": RedisMode.PUBSUB_OWN_RESPONSE_CHANNEL,
  streams: RedisMode.STREAMS,
});

/**
 * The `adapter` option's value for a cluster over Redis (see
 * `redisAdapter`): checked here, applied when the server is made.
 */
class RedisAdapter {
  constructor(opts = {}) {
    if (opts === null || typeof opts !== "object") throw new TypeError("iobus: redisAdapter takes an options object");
    const mode = opts.mode !== undefined ? opts.mode : opts.streams ? "streams" : "pubsub";
    if (!Object.hasOwn(REDIS_MODES, mode)) {
      const modes = Object.keys(REDIS_MODES).join(", ");
      throw new TypeError(`iobus: redisAdapter mode is one of ${modes}, got ${String(mode)}`);
    }
    if (opts.streams !== undefined && !!opts.streams !== (mode === "streams")) {
      throw new TypeError(`iobus: redisAdapter streams: ${String(opts.streams)} contradicts mode ${mode}`);
    }
    this.url = opts.url === undefined ? "redis://127.0.0.1:6379" : String(opts.url);
    this.key = opts.key === undefined ? "socket.io" : String(opts.key);
    if (this.key === "") throw new TypeError("iobus: redisAdapter key must not be empty");
    this.mode = mode;
    this.requestsTimeout = opts.requestsTimeout === undefined ? 5000 : count(opts.requestsTimeout, "requestsTimeout");
    if (this.requestsTimeout === 0) throw new TypeError("iobus: redisAdapter requestsTimeout must be more than 0 ms");
    Object.freeze(this);
  }

  _apply(cfg) {
    check(lib.iobus_config_set_redis(cfg, this.url, this.key, REDIS_MODES[this.mode], this.requestsTimeout), "option adapter");
  }
}

/**
 * A cluster of servers through the Redis server at `url`: broadcasts, room
 * operations, fetchSockets and serverSideEmit reach every server on it
 * (iobus and npm socket.io alike). `mode`: "pubsub" (as
 * @socket.io/redis-adapter), "pubsub-own-response-channel" (its
 * publishOnSpecificResponseChannel) or "streams" (as
 * @socket.io/redis-streams-adapter; `streams: true` says the same).
 */
function redisAdapter(opts) {
  return new RedisAdapter(opts);
}

/** Applies socket.io-style options (plus iobus's own) to an iobus_config. */
function configure(cfg, opts) {
  const set = (code, what) => check(code, `option ${what}`);
  if (opts.path !== undefined) set(lib.iobus_config_set_path(cfg, String(opts.path)), "path");
  if (opts.pingInterval !== undefined) set(lib.iobus_config_set_ping_interval(cfg, opts.pingInterval), "pingInterval");
  if (opts.pingTimeout !== undefined) set(lib.iobus_config_set_ping_timeout(cfg, opts.pingTimeout), "pingTimeout");
  if (opts.maxHttpBufferSize !== undefined) {
    set(lib.iobus_config_set_max_payload(cfg, opts.maxHttpBufferSize), "maxHttpBufferSize");
  }
  if (opts.upgradeTimeout !== undefined) {
    set(lib.iobus_config_set_upgrade_timeout(cfg, opts.upgradeTimeout), "upgradeTimeout");
  }
  if (opts.connectTimeout !== undefined) {
    set(lib.iobus_config_set_connect_timeout(cfg, opts.connectTimeout), "connectTimeout");
  }
  if (opts.transports !== undefined) {
    const t = opts.transports;
    set(lib.iobus_config_set_transports(cfg, t.includes("polling"), t.includes("websocket")), "transports");
  }
  if (opts.allowUpgrades !== undefined) set(lib.iobus_config_set_allow_upgrades(cfg, !!opts.allowUpgrades), "allowUpgrades");
  if (opts.cors) {
    const cors = opts.cors;
    const origin = cors.origin === undefined || cors.origin === true ? "*" : cors.origin;
    const origins = origin === false ? [] : [].concat(origin);
    for (const origin of origins) set(lib.iobus_config_add_cors_origin(cfg, String(origin)), "cors.origin");
    if (cors.credentials !== undefined) {
      set(lib.iobus_config_set_cors_credentials(cfg, !!cors.credentials), "cors.credentials");
    }
    if (cors.maxAge !== undefined) set(lib.iobus_config_set_cors_max_age(cfg, cors.maxAge), "cors.maxAge");
  }
  if (opts.maxAttachments !== undefined) {
    set(lib.iobus_config_set_max_attachments(cfg, opts.maxAttachments), "maxAttachments");
  }
  // Bounds on what one client may hold (iobus.h gives each default).
  const limits = [
    ["maxBufferedBytes", lib.iobus_config_set_max_buffered],
    ["httpHeaderTimeout", lib.iobus_config_set_http_header_timeout],
    ["httpKeepAliveTimeout", lib.iobus_config_set_http_keep_alive_timeout],
    ["writeTimeout", lib.iobus_config_set_write_timeout],
    ["maxHeaderBytes", lib.iobus_config_set_max_header_bytes],
    ["maxConnections", lib.iobus_config_set_max_connections],
  ];
  for (const [name, setter] of limits) {
    if (opts[name] !== undefined) set(setter(cfg, count(opts[name], name)), name);
  }
  if (opts.batchScheduling !== undefined) {
    set(lib.iobus_config_set_batch_scheduling(cfg, !!opts.batchScheduling), "batchScheduling");
  }
  if (opts.workerThreads !== undefined) {
    set(lib.iobus_config_set_worker_threads(cfg, opts.workerThreads), "workerThreads");
  }
  const serveClient = opts.serveClient !== false;
  set(lib.iobus_config_set_serve_client(cfg, serveClient), "serveClient");
  const clientDir = opts.clientDir || (serveClient && !process.env.IOBUS_CLIENT_DIR ? clientDist() : null);
  if (clientDir) set(lib.iobus_config_set_client_dir(cfg, path.resolve(clientDir)), "clientDir");
  if (opts.staticDir) set(lib.iobus_config_set_static_dir(cfg, path.resolve(opts.staticDir)), "staticDir");
  const recovery = recoveryOptions(opts);
  if (recovery !== null) {
    const { maxDisconnectionDuration, skipMiddlewares, maxLogBytes } = recovery;
    set(
      lib.iobus_config_set_connection_state_recovery(cfg, true, maxDisconnectionDuration, skipMiddlewares, maxLogBytes),
      "connectionStateRecovery",
    );
  }
  if (opts.adapter !== undefined && opts.adapter !== null) {
    if (!(opts.adapter instanceof RedisAdapter)) {
      throw new TypeError("iobus: option adapter takes redisAdapter({ url, ... }); other adapters are not supported");
    }
    opts.adapter._apply(cfg);
  }
  if (opts.hostQueueLimit !== undefined) {
    set(lib.iobus_config_set_host_queue_limit(cfg, count(opts.hostQueueLimit, "hostQueueLimit")), "hostQueueLimit");
  }
  if (opts.freeTimeout !== undefined) {
    set(lib.iobus_config_set_free_timeout(cfg, count(opts.freeTimeout, "freeTimeout")), "freeTimeout");
  }
  set(lib.iobus_config_set_dispatch(cfg, Dispatch.POLL), "dispatch");
}

/**
 * socket.io's `connectionStateRecovery` option with its defaults
 * (`maxDisconnectionDuration` 120000 ms, `skipMiddlewares` true; iobus's
 * `maxLogBytes`, 0: the library's 32 MiB), or null when recovery is off.
 */
function recoveryOptions(opts) {
  const given = opts.connectionStateRecovery;
  if (!given) return null;
  const r = typeof given === "object" ? given : {};
  return {
    maxDisconnectionDuration:
      r.maxDisconnectionDuration === undefined ? 120000 : count(r.maxDisconnectionDuration, "connectionStateRecovery.maxDisconnectionDuration"),
    skipMiddlewares: r.skipMiddlewares === undefined ? true : !!r.skipMiddlewares,
    maxLogBytes: r.maxLogBytes === undefined ? 0 : count(r.maxLogBytes, "connectionStateRecovery.maxLogBytes"),
  };
}

/** A new iobus_server handle configured by `opts`; throws on a bad option. */
function createHandle(opts) {
  const cfg = lib.iobus_config_new();
  if (cfg === 0) throw new Error("iobus: out of memory");
  try {
    configure(cfg, opts);
    check(lib.iobus_server_new(cfg, OUT), "new server");
    return takePointer();
  } finally {
    lib.iobus_config_free(cfg);
  }
}

module.exports = { createHandle, recoveryOptions, redisAdapter, RedisAdapter };
