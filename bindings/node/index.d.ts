// Type declarations of the iobus Node binding: socket.io's server API, as
// far as iobus provides it.

/// <reference types="node" />

import { EventEmitter } from "node:events";

/** A room name. Every socket is also in the room named after its id. */
export type Room = string;

/** Why a socket left its namespace (Socket.IO's reason strings). */
export type DisconnectReason =
  | "transport error"
  | "transport close"
  | "forced close"
  | "ping timeout"
  | "parse error"
  | "server shutting down"
  | "forced server close"
  | "client namespace disconnect"
  | "server namespace disconnect";

export interface ServerOptions {
  /** The request path. Default "/socket.io/". */
  path?: string;
  /** Milliseconds between server pings. Default 25000. */
  pingInterval?: number;
  /** Milliseconds to wait for a pong. Default 20000. */
  pingTimeout?: number;
  /** Milliseconds an upgrade from polling to websocket may take. Default 10000. */
  upgradeTimeout?: number;
  /** Milliseconds a connection may stay without joining a namespace. Default 45000. */
  connectTimeout?: number;
  /** The largest message or polling body accepted, in bytes. Default 1e6. */
  maxHttpBufferSize?: number;
  /** The transports offered. Default both. */
  transports?: Array<"polling" | "websocket">;
  /** Whether polling sessions may upgrade to websocket. Default true. */
  allowUpgrades?: boolean;
  /** Browser origins allowed (`true` or "*": any), credentials, preflight cache. */
  cors?: { origin?: string | string[] | boolean; credentials?: boolean; maxAge?: number };
  /**
   * Connection state recovery (off unless given, as in socket.io): a client
   * that dropped for a recoverable reason and comes back within
   * `maxDisconnectionDuration` ms (default 120000) gets its socket id, rooms
   * and `data` back (kept as JSON) and every packet it missed;
   * `socket.recovered` is then true. With `skipMiddlewares` (default true)
   * `io.use` middlewares do not run for it. iobus: `maxLogBytes` bounds the
   * packets kept per namespace (default 32 MiB).
   */
  connectionStateRecovery?: { maxDisconnectionDuration?: number; skipMiddlewares?: boolean; maxLogBytes?: number };
  /** Whether `<path>socket.io.js` is served. Default true. */
  serveClient?: boolean;
  /** iobus: the socket.io-client `dist/` directory to serve (default: the installed package's). */
  clientDir?: string;
  /** iobus: a directory of static files served for every other path. */
  staticDir?: string;
  /** iobus: the address `listen()` binds. Default "127.0.0.1". */
  host?: string;
  /** iobus: network worker threads. Default 2. */
  workerThreads?: number;
  /**
   * iobus: whether the library's threads run in the batch scheduling class
   * (Linux SCHED_BATCH: woken, they do not preempt the running thread).
   * Default true.
   */
  batchScheduling?: boolean;
  /** iobus: most binary attachments one incoming packet may carry. Default 10. */
  maxAttachments?: number;
  /**
   * iobus: bytes held for one client (queued packets plus what its transport
   * has not delivered yet). A client that falls behind first loses its
   * volatile packets, then its connection (`transport error`). Default
   * 4 MiB (4194304).
   */
  maxBufferedBytes?: number;
  /**
   * iobus: milliseconds a request head may take from its first byte to its
   * end (and a long-polling POST body from the end of its head). Default 10000.
   */
  httpHeaderTimeout?: number;
  /** iobus: milliseconds an HTTP connection may stay open without starting a request. Default 5000. */
  httpKeepAliveTimeout?: number;
  /** iobus: milliseconds a write to a client may make no progress before its connection is closed. Default 20000. */
  writeTimeout?: number;
  /** iobus: the largest HTTP request head accepted, in bytes (larger: 431). Default 16384. */
  maxHeaderBytes?: number;
  /**
   * iobus: most connections open at once, HTTP and websocket; over it the
   * connection idle the longest is closed. Default 0: no cap.
   */
  maxConnections?: number;
  /**
   * iobus: a cluster of servers through Redis (`redisAdapter({ url })`).
   * Default: in memory, this server alone.
   */
  adapter?: RedisAdapter;
  /**
   * iobus: bytes of callbacks (connections, events, acks, …) waiting for
   * JavaScript; over it the library stops reading from the clients that send
   * them until the queue falls to half. Nothing is dropped. 16 KiB to 64 GiB;
   * default: no bound.
   */
  hostQueueLimit?: number;
  /**
   * iobus: milliseconds `close()` keeps delivering callbacks still queued
   * (at most 600000; 0 delivers none). Default 1000.
   */
  freeTimeout?: number;
}

export type RedisAdapterMode = "pubsub" | "pubsub-own-response-channel" | "streams";

export interface RedisAdapterOptions {
  /** `"redis://host:port[/db]"`. Default `"redis://127.0.0.1:6379"`. */
  url?: string;
  /** The channel prefix (in streams mode, the stream's name). Default `"socket.io"`. */
  key?: string;
  /**
   * "pubsub" (as @socket.io/redis-adapter), "pubsub-own-response-channel"
   * (its publishOnSpecificResponseChannel) or "streams" (as
   * @socket.io/redis-streams-adapter). Default "pubsub".
   */
  mode?: RedisAdapterMode;
  /** The same as `mode: "streams"`. */
  streams?: boolean;
  /** Milliseconds a request (fetchSockets, acks, …) waits for the other servers. Default 5000. */
  requestsTimeout?: number;
}

/** The `adapter` option's value, made by `redisAdapter()`. */
export class RedisAdapter {
  private constructor();
  readonly url: string;
  readonly key: string;
  readonly mode: RedisAdapterMode;
  readonly requestsTimeout: number;
}

/**
 * A cluster of servers through Redis: broadcasts, room operations,
 * fetchSockets and serverSideEmit reach every server on it, iobus and npm
 * socket.io alike. `new Server({ adapter: redisAdapter({ url }) })`.
 */
export function redisAdapter(opts?: RedisAdapterOptions): RedisAdapter;
/** The same as `redisAdapter`. */
export const createAdapter: typeof redisAdapter;

export interface Handshake {
  headers: Record<string, string>;
  /** When the connection was made, as a date string. */
  time: string;
  /** The client's IP address. */
  address: string;
  /** Whether the request came from another origin. */
  xdomain: boolean;
  secure: boolean;
  /** When the connection was made, in ms since the epoch. */
  issued: number;
  url: string;
  query: Record<string, string>;
  /** The auth object the client sent with its CONNECT. */
  auth: Record<string, any>;
}

/** An error a middleware passes to `next` to refuse: `message` and `data` reach the client. */
export interface ExtendedError extends Error {
  data?: any;
}

export type Middleware = (socket: Socket, next: (err?: ExtendedError) => void) => void | Promise<void>;

export type EventMiddleware = (event: [string, ...any[]], next: (err?: Error) => void) => void;

export type AnyListener = (event: string, ...args: any[]) => void;

export type NamespaceMatcher =
  | RegExp
  | ((name: string, auth: Record<string, any>, next: (err: Error | null, allow: boolean) => void) => void);

/**
 * A socket as `fetchSockets` reports it: on this server the Socket itself,
 * on another server of a cluster this description with operations that
 * reach it.
 */
export class RemoteSocket {
  readonly id: string;
  readonly handshake: Handshake;
  readonly rooms: Set<Room>;
  readonly data: any;
  /** Emits to the socket; a function last asks for its ack (`(err, reply)` after `timeout(ms)`). */
  emit(event: string, ...args: any[]): boolean;
  timeout(ms: number): BroadcastOperator;
  join(room: Room | Room[]): void;
  leave(room: Room): void;
  disconnect(close?: boolean): this;
}

/** A selection of sockets of one namespace; every modifier returns a new operator. */
export class BroadcastOperator {
  /** Adds a room (or rooms) to the selection; a socket in several receives once. */
  to(room: Room | Room[]): BroadcastOperator;
  in(room: Room | Room[]): BroadcastOperator;
  /** Excludes the sockets in a room (or rooms). */
  except(room: Room | Room[]): BroadcastOperator;
  /** The packet may be dropped for clients that cannot take it right now. */
  readonly volatile: BroadcastOperator;
  /** This server's sockets only (a cluster adapter does not forward the operation). */
  readonly local: BroadcastOperator;
  compress(compress: boolean): BroadcastOperator;
  /** For emits with a callback: how long to wait for every client's ack. */
  timeout(ms: number): BroadcastOperator;
  /**
   * Emits to the selection. With a callback last, every selected client is
   * asked for an ack: `callback(err, responses)`, one response (the
   * client's first argument) per client; `err` when the timeout passed or a
   * client left first, with the responses that came.
   */
  emit(event: string, ...args: any[]): boolean;
  /** Resolves with the responses; rejects with an error carrying `responses`. */
  emitWithAck(event: string, ...args: any[]): Promise<any[]>;
  /** The selected sockets, on every server. */
  fetchSockets(): Promise<RemoteSocket[]>;
  socketsJoin(room: Room | Room[]): void;
  socketsLeave(room: Room | Room[]): void;
  disconnectSockets(close?: boolean): void;
  /**
   * Emits to the other servers of a cluster (their `nsp.on(event)`
   * listeners). With a callback last: `callback(err, responses)`, one
   * response per server, after this operator's timeout (default 5000 ms).
   */
  serverSideEmit(event: string, ...args: any[]): boolean;
  serverSideEmitWithAck(event: string, ...args: any[]): Promise<any[]>;
}

/** One client in one namespace. */
export class Socket extends EventEmitter {
  readonly id: string;
  readonly nsp: Namespace;
  readonly server: Server;
  readonly handshake: Handshake;
  /** Application data kept with the socket. */
  data: any;
  connected: boolean;
  readonly disconnected: boolean;
  /** Whether this connection recovered a socket that dropped (connectionStateRecovery). */
  readonly recovered: boolean;
  /** The rooms the socket is in, its id included (a fresh Set). */
  readonly rooms: Set<Room>;

  /** Emits to this client; a function last asks for an ack. */
  emit(event: string, ...args: any[]): boolean;
  emitWithAck(event: string, ...args: any[]): Promise<any>;
  send(...args: any[]): this;
  write(...args: any[]): this;
  /** The next emit's ack callback gets `(err, ...reply)` and an error after `ms`. */
  timeout(ms: number): this;
  readonly volatile: this;
  compress(compress: boolean): this;

  readonly broadcast: BroadcastOperator;
  readonly local: BroadcastOperator;
  to(room: Room | Room[]): BroadcastOperator;
  in(room: Room | Room[]): BroadcastOperator;
  except(room: Room | Room[]): BroadcastOperator;

  join(rooms: Room | Room[]): void;
  leave(room: Room): void;
  /** Leaves the namespace; with `close`, closes the whole connection. */
  disconnect(close?: boolean): this;
  use(fn: EventMiddleware): this;

  onAny(listener: AnyListener): this;
  prependAny(listener: AnyListener): this;
  offAny(listener?: AnyListener): this;
  listenersAny(): AnyListener[];
  onAnyOutgoing(listener: AnyListener): this;
  prependAnyOutgoing(listener: AnyListener): this;
  offAnyOutgoing(listener?: AnyListener): this;
  listenersAnyOutgoing(): AnyListener[];

  on(event: "disconnecting" | "disconnect", listener: (reason: DisconnectReason, description?: any) => void): this;
  on(event: "error", listener: (err: Error) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
  once(event: "disconnecting" | "disconnect", listener: (reason: DisconnectReason, description?: any) => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
}

export class Namespace extends EventEmitter {
  readonly name: string;
  readonly server: Server;
  /** Connected sockets by id. */
  readonly sockets: Map<string, Socket>;

  /** A connection middleware; `next(err)` refuses with `err.message` and `err.data`. */
  use(fn: Middleware): this;
  to(room: Room | Room[]): BroadcastOperator;
  in(room: Room | Room[]): BroadcastOperator;
  except(room: Room | Room[]): BroadcastOperator;
  readonly volatile: BroadcastOperator;
  readonly local: BroadcastOperator;
  compress(compress: boolean): BroadcastOperator;
  timeout(ms: number): BroadcastOperator;
  emit(event: string, ...args: any[]): boolean;
  emitWithAck(event: string, ...args: any[]): Promise<any[]>;
  send(...args: any[]): this;
  write(...args: any[]): this;
  fetchSockets(): Promise<RemoteSocket[]>;
  socketsJoin(room: Room | Room[]): void;
  socketsLeave(room: Room | Room[]): void;
  disconnectSockets(close?: boolean): void;
  /**
   * Emits to this namespace on the other servers of a cluster, heard there
   * with `nsp.on(event, ...)`; a callback last collects one reply per
   * server (`(err, responses)`). A server alone reaches nobody.
   */
  serverSideEmit(event: string, ...args: any[]): boolean;
  serverSideEmitWithAck(event: string, ...args: any[]): Promise<any[]>;
  /** What iobus's adapter answers beyond the operations above. */
  readonly adapter: {
    /** Every room with members, on every server, sockets' own rooms included. */
    allRooms(): Promise<Set<Room>>;
  };

  on(event: "connection" | "connect", listener: (socket: Socket) => void): this;
  on(event: "error", listener: (err: Error) => void): this;
  on(event: "new_namespace", listener: (nsp: Namespace) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
  once(event: "connection" | "connect", listener: (socket: Socket) => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
}

/** Namespaces named by a RegExp or a function; its children are the namespaces that matched. */
export class ParentNamespace extends Namespace {
  readonly children: Set<Namespace>;
}

/** Where the server listens, shaped like `http.Server`. */
export interface ListeningAddress {
  readonly listening: boolean;
  address(): { address: string; family: string; port: number } | null;
  close(callback?: () => void): this;
}

export class Server {
  /** Options only; call `listen(port)` to serve. */
  constructor(opts?: ServerOptions);
  /** Listens on `port` at once. */
  constructor(port: number | string, opts?: ServerOptions);

  readonly opts: ServerOptions;
  /** The main namespace, "/". */
  readonly sockets: Namespace;
  readonly httpServer: ListeningAddress;

  /**
   * The `adapter` option's value (undefined: in memory). The adapter is set
   * when the server is made; passing one here throws.
   */
  adapter(): RedisAdapter | undefined;
  /** Starts listening (port 0: any free port). Throws if the address cannot be bound. */
  listen(port: number | string, callback?: () => void): this;
  listen(port: number | string, host: string | { host?: string }, callback?: () => void): this;
  attach(port: number | string, opts?: { host?: string }): this;
  /**
   * Disconnects every socket ("server shutting down"), stops the server and
   * frees it; the process can then exit by itself.
   */
  close(fn?: (err?: Error) => void): Promise<void>;

  of(nsp: string, fn?: (socket: Socket) => void): Namespace;
  of(nsp: NamespaceMatcher, fn?: (socket: Socket) => void): ParentNamespace;

  use(fn: Middleware): this;
  to(room: Room | Room[]): BroadcastOperator;
  in(room: Room | Room[]): BroadcastOperator;
  except(room: Room | Room[]): BroadcastOperator;
  readonly volatile: BroadcastOperator;
  readonly local: BroadcastOperator;
  compress(compress: boolean): BroadcastOperator;
  timeout(ms: number): BroadcastOperator;
  emit(event: string, ...args: any[]): boolean;
  emitWithAck(event: string, ...args: any[]): Promise<any[]>;
  send(...args: any[]): this;
  write(...args: any[]): this;
  fetchSockets(): Promise<RemoteSocket[]>;
  socketsJoin(room: Room | Room[]): void;
  socketsLeave(room: Room | Room[]): void;
  disconnectSockets(close?: boolean): void;
  serverSideEmit(event: string, ...args: any[]): boolean;
  serverSideEmitWithAck(event: string, ...args: any[]): Promise<any[]>;

  // EventEmitter methods act on the main namespace.
  on(event: "connection" | "connect", listener: (socket: Socket) => void): Namespace;
  on(event: "error", listener: (err: Error) => void): Namespace;
  on(event: string, listener: (...args: any[]) => void): Namespace;
  once(event: "connection" | "connect", listener: (socket: Socket) => void): Namespace;
  once(event: string, listener: (...args: any[]) => void): Namespace;
  off(event: string, listener: (...args: any[]) => void): Namespace;
  addListener(event: string, listener: (...args: any[]) => void): Namespace;
  removeListener(event: string, listener: (...args: any[]) => void): Namespace;
  removeAllListeners(event?: string): Namespace;
  listeners(event: string): Function[];
  listenerCount(event: string): number;
}

/** The iobus library's version ("MAJOR.MINOR.PATCH"). */
export const version: string;
/** The shared library this process loaded. */
export const libraryPath: string;
