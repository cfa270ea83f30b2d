// iobus for Node: a Socket.IO server whose protocol, heartbeats and fan-out
// run in the iobus library (Rust, over its C ABI), driven with socket.io's
// server API. See README.md.

"use strict";

const { lib, LIBRARY_PATH } = require("./lib/native");
const { Server } = require("./lib/server");
const { Namespace, ParentNamespace } = require("./lib/namespace");
const { Socket } = require("./lib/socket");
const { BroadcastOperator, RemoteSocket } = require("./lib/broadcast");
const { redisAdapter, RedisAdapter } = require("./lib/options");

/** The iobus library's version ("MAJOR.MINOR.PATCH"). */
const version = lib.iobus_version();

module.exports = {
  Server,
  Namespace,
  ParentNamespace,
  Socket,
  BroadcastOperator,
  RemoteSocket,
  RedisAdapter,
  redisAdapter,
  createAdapter: redisAdapter,
  version,
  libraryPath: LIBRARY_PATH,
};
