// Compiled (not run) by types.test.js: socket.io-style code against the declarations.
import { Server, Socket, Namespace, BroadcastOperator, RemoteSocket, DisconnectReason, version, redisAdapter, createAdapter, RedisAdapter } from "iobus";

const io = new Server({
  path: "/socket.io/",
  pingInterval: 25000,
  cors: { origin: "*" },
  staticDir: "public",
  maxBufferedBytes: 1 << 22,
  httpHeaderTimeout: 10000,
  httpKeepAliveTimeout: 5000,
  writeTimeout: 20000,
  maxHeaderBytes: 16384,
  maxConnections: 10000,
  connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true },
});
const other = new Server(0, { transports: ["websocket"] });
void other;

const clustered = new Server({
  adapter: redisAdapter({ url: "redis://127.0.0.1:6379", key: "socket.io", mode: "streams", requestsTimeout: 5000 }),
  hostQueueLimit: 1 << 20,
  freeTimeout: 1000,
});
const adapter: RedisAdapter | undefined = clustered.adapter();
void adapter;
void new Server({ adapter: createAdapter({ streams: true }) });

io.use((socket: Socket, next) => {
  const token: unknown = socket.handshake.auth.token;
  if (typeof token !== "string") {
    const err = new Error("unauthorized") as Error & { data?: unknown };
    err.data = { reason: "no token" };
    return next(err);
  }
  next();
});

io.on("connection", (socket: Socket) => {
  const recovered: boolean = socket.recovered;
  void recovered;
  const rooms: Set<string> = socket.rooms;
  socket.data.name = `${socket.handshake.address} ${rooms.size}`;
  socket.join(["a", "b"]);
  socket.leave("b");
  socket.on("chat", (msg: string, ack?: (reply: { ok: boolean }) => void) => {
    io.to("a").except("b").emit("chat", msg, Buffer.from([1]));
    socket.to("a").emit("chat", msg);
    socket.broadcast.volatile.emit("typing");
    socket.except("x").emit("y");
    if (ack) ack({ ok: true });
  });
  socket.timeout(1000).emit("question", (err: Error | null, answer: number) => void [err, answer]);
  socket.emitWithAck("q").then((r: unknown) => r);
  socket.on("disconnecting", (reason: DisconnectReason) => void reason);
  socket.on("disconnect", (reason) => {
    const r: DisconnectReason = reason;
    void r;
  });
  socket.onAny((event: string, ...args: unknown[]) => void [event, args]);
  socket.disconnect(true);
});

const admin: Namespace = io.of("/admin");
admin.on("connection", (s) => s.emit("hi"));
const op: BroadcastOperator = io.in("room").except("x");
op.fetchSockets().then((sockets: RemoteSocket[]) => sockets.map((s) => [s.id, s.data, s.rooms.has("x"), s.handshake.auth]));
io.timeout(1000).to("room").emit("vote", (err: Error | null, responses: unknown[]) => void [err, responses]);
io.timeout(1000).except("x").emitWithAck("vote").then((responses: unknown[]) => responses.length);
io.local.emit("here");
io.serverSideEmit("hello", 1);
io.on("hello", (n: number) => void n);
io.serverSideEmitWithAck("ping").then((responses: unknown[]) => responses);
io.timeout(500).serverSideEmitWithAck("ping").catch((err: Error) => err);
io.of("/").adapter.allRooms().then((rooms: Set<string>) => rooms.size);
io.socketsJoin("all");
io.in("all").socketsLeave("all");
io.disconnectSockets();
io.listen(3000);
const port: number | undefined = io.httpServer.address()?.port;
void [port, version];
io.close().then(() => undefined);
