//! What the Redis cluster tests share: a `redis-server` of the test's own,
//! raw Socket.IO clients (which can also drop their connection and recover),
//! iobus and npm socket.io nodes seen through the same operations, and the
//! scenario of every cross-node operation. Included by `tests/redis_cluster.rs`
//! (pub/sub adapter) and `tests/redis_streams.rs` (streams adapter).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use iobus::{Payload, Server, ServerOptions, placeholder};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub const NEEDS: &str = "needs redis-server and tests/cluster/node_modules (make test-redis)";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

// ---- a Redis server of the test's own ----------------------------------------

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("iobus-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer { port, dir, child: None };
        server.run();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn run(&mut self) {
        let binary = std::env::var("IOBUS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary} ({e}); install it with `make setup-redis`"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Subscribers of a channel, as every node counts the others.
    pub fn numsub(&self, channel: &str) -> usize {
        let Ok(client) = redis::Client::open(self.url()) else { return 0 };
        let Ok(mut con) = client.get_connection() else { return 0 };
        let reply: redis::RedisResult<(String, usize)> =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(&mut con);
        reply.map(|(_, n)| n).unwrap_or(0)
    }

    pub async fn wait_nodes(&self, n: usize) {
        self.wait_subscribers("socket.io-request#/#", n).await;
    }

    /// Waits until `n` nodes listen on `channel`.
    pub async fn wait_subscribers(&self, channel: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.numsub(channel) != n {
            assert!(Instant::now() < deadline, "the nodes did not all subscribe to {channel}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- raw Socket.IO clients ---------------------------------------------------

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub args: Vec<Value>,
    pub binary: Vec<Vec<u8>>,
}

#[derive(Default)]
pub struct Inbox {
    pub events: Vec<Event>,
    /// Events that came before the CONNECT reply (a recovery's replay).
    pub replayed: Vec<Event>,
    /// The last string argument of an event, as socket.io-client keeps it
    /// to recover from (the offset).
    pub offset: Option<String>,
    pub disconnected: bool,
}

/// A client on one node: joins the rooms and keeps the data of its auth,
/// answers `ask` events with its socket id as ack, records the rest.
pub struct Client {
    pub sid: String,
    /// The private id to recover with (connection state recovery on).
    pub pid: Option<String>,
    pub inbox: Arc<Mutex<Inbox>>,
    out: mpsc::UnboundedSender<Message>,
    tasks: Vec<tokio::task::AbortHandle>,
}

pub fn parse_event(text: &str) -> Option<(Option<u64>, Value, usize)> {
    // 42[..], 4212[..], 451-[..], 4512-[..]
    let body = text.strip_prefix('4')?;
    let (kind, rest) = body.split_at(1);
    let (attachments, rest) = match kind {
        "2" => (0, rest),
        "5" => {
            let (n, rest) = rest.split_once('-')?;
            (n.parse().ok()?, rest)
        }
        _ => return None,
    };
    // A namespace other than `/` comes first: `/nsp,`.
    let rest = match rest.strip_prefix('/') {
        Some(_) => rest.split_once(',')?.1,
        None => rest,
    };
    let digits = rest.find('[')?;
    let id = rest[..digits].parse().ok();
    Some((id, serde_json::from_str(&rest[digits..]).ok()?, attachments))
}

impl Client {
    pub async fn connect(port: u16, auth: Value) -> Client {
        Client::connect_to(port, "/", auth).await
    }

    /// A client of namespace `nsp`. Events that arrive before the CONNECT
    /// reply are kept apart (`replayed`).
    pub async fn connect_to(port: u16, nsp: &str, auth: Value) -> Client {
        let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        let (mut sink, mut stream) = ws.split();
        let open = stream.next().await.expect("open").expect("open frame");
        assert!(open.to_text().unwrap_or("").starts_with("0{"));
        sink.send(Message::text(format!("40{prefix}{auth}"))).await.expect("connect");
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = outgoing.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let (connected, reply) = tokio::sync::oneshot::channel::<Value>();
        let (sink_in, replies) = (inbox.clone(), out.clone());
        let reader = tokio::spawn(async move {
            let mut connected = Some(connected);
            let mut own = String::new();
            let mut partial: Option<(Event, usize)> = None;
            let record = |event: Event, before: bool| {
                let mut inbox = sink_in.lock();
                if let Some(Value::String(offset)) = event.args.last() {
                    inbox.offset = Some(offset.clone());
                }
                if before { inbox.replayed.push(event) } else { inbox.events.push(event) }
            };
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    Message::Text(t) if t.as_str() == "2" => {
                        let _ = replies.send(Message::text("3"));
                    }
                    Message::Text(t) if t.as_str().starts_with("41") => sink_in.lock().disconnected = true,
                    Message::Text(t) if t.as_str().starts_with(&format!("40{prefix}")) => {
                        let v: Value = serde_json::from_str(&t.as_str()[2 + prefix.len()..]).expect("CONNECT reply");
                        own = v["sid"].as_str().unwrap_or_default().to_owned();
                        if let Some(c) = connected.take() {
                            let _ = c.send(v);
                        }
                    }
                    Message::Text(t) => {
                        let Some((id, Value::Array(mut data), attachments)) = parse_event(t.as_str()) else {
                            continue;
                        };
                        let name = data.remove(0).as_str().unwrap_or_default().to_owned();
                        if let (Some(id), "ask") = (id, name.as_str()) {
                            let _ = replies.send(Message::text(format!("43{prefix}{id}[\"{own}\"]")));
                        }
                        let event = Event { name, args: data, binary: Vec::new() };
                        if attachments > 0 {
                            partial = Some((event, attachments));
                        } else {
                            record(event, connected.is_some());
                        }
                    }
                    Message::Binary(b) => {
                        if let Some((mut event, n)) = partial.take() {
                            event.binary.push(b.to_vec());
                            if event.binary.len() == n {
                                record(event, connected.is_some());
                            } else {
                                partial = Some((event, n));
                            }
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            sink_in.lock().disconnected = true;
        });
        let reply = tokio::time::timeout(Duration::from_secs(10), reply)
            .await
            .expect("a CONNECT reply in time")
            .expect("a CONNECT reply");
        let sid = reply["sid"].as_str().expect("sid").to_owned();
        let pid = reply["pid"].as_str().map(str::to_owned);
        Client { sid, pid, inbox, out, tasks: vec![writer.abort_handle(), reader.abort_handle()] }
    }

    pub fn send(&self, text: &str) {
        let _ = self.out.send(Message::text(text.to_owned()));
    }

    /// The offset to recover from: the last string argument received.
    pub fn offset(&self) -> Option<String> {
        self.inbox.lock().offset.clone()
    }

    /// Cuts the connection without a word (to the server, a lost
    /// connection it may recover from).
    pub fn drop_connection(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Takes the first event named `name` that arrives within 5 s.
    pub async fn expect(&self, name: &str) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let mut inbox = self.inbox.lock();
                if let Some(i) = inbox.events.iter().position(|e| e.name == name) {
                    return inbox.events.remove(i);
                }
            }
            assert!(Instant::now() < deadline, "client {} got no `{name}`", self.sid);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether an event named `name` is waiting (after others were waited for).
    pub fn has(&self, name: &str) -> bool {
        self.inbox.lock().events.iter().any(|e| e.name == name)
    }

    pub async fn expect_disconnected(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.inbox.lock().disconnected {
            assert!(Instant::now() < deadline, "client {} was not disconnected", self.sid);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.drop_connection();
    }
}

// ---- the nodes -----------------------------------------------------------------

/// JSON arguments with binary values as `{"$binary": [bytes]}`, as iobus
/// takes them (placeholders and attachments).
pub fn payload(args: &[Value]) -> Payload {
    fn walk(v: &Value, binary: &mut Vec<Bytes>) -> Value {
        match v {
            Value::Object(m) if m.contains_key("$binary") => {
                let bytes: Vec<u8> = m["$binary"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).map(|b| b as u8).collect())
                    .unwrap_or_default();
                binary.push(Bytes::from(bytes));
                placeholder(binary.len() - 1)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, binary)).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), walk(x, binary))).collect()),
            other => other.clone(),
        }
    }
    let mut binary = Vec::new();
    let args = args.iter().map(|a| walk(a, &mut binary)).collect();
    Payload::with_binary(args, binary)
}

/// A server-side event a node received: its name and arguments.
pub type ServerSideEvent = (String, Vec<Value>);

pub struct IobusNode {
    pub server: Arc<Server>,
    pub port: u16,
    pub name: &'static str,
    pub server_side: Arc<Mutex<Vec<ServerSideEvent>>>,
}

impl IobusNode {
    /// A node with these options (its adapter, ...): a socket joins the
    /// rooms and keeps the data of its auth (unless it was recovered: then
    /// they are its session's); `relay` broadcasts to a room without the
    /// sender; server-side `hello` is answered.
    pub fn start_with(options: ServerOptions, name: &'static str) -> IobusNode {
        let server = Arc::new(Server::new(options));
        let nsp = server.of("/");
        nsp.on_connection(|socket| {
            if socket.recovered() {
                return;
            }
            let auth = socket.handshake().auth().clone();
            let rooms: Vec<String> = auth["rooms"]
                .as_array()
                .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
            socket.join_many(&rooms);
            *socket.data() = auth.get("data").cloned().unwrap_or(Value::Null);
        });
        nsp.on("relay", |socket, args, _ack| {
            let room = args.str(0).unwrap_or_default().to_owned();
            let message = args.args.get(1).cloned().unwrap_or(Value::Null);
            let _ = socket.broadcast().to(&room).emit("relayed", vec![message]);
        });
        let server_side = Arc::new(Mutex::new(Vec::new()));
        let record = server_side.clone();
        nsp.on_server_side_emit(move |_nsp, event, args, reply| {
            record.lock().push((event.to_owned(), args.args.clone()));
            if let Some(reply) = reply {
                reply(Payload::one(json!(format!("pong-from-{name}"))));
            }
        });
        let addr = server.start("127.0.0.1:0").expect("iobus node starts");
        IobusNode { server, port: addr.port(), name, server_side }
    }
}

pub struct NpmNode {
    child: Child,
    pub port: u16,
    stdin: Mutex<ChildStdin>,
    replies: Arc<Mutex<HashMap<u64, Value>>>,
    pub events: Arc<Mutex<Vec<Value>>>,
    next: AtomicU64,
}

pub fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster")
}

impl NpmNode {
    /// Runs `tests/cluster/<script> <port> <args...>`, a socket.io node
    /// driven over stdin/stdout, and waits until it is ready.
    pub fn spawn(script: &str, args: &[String]) -> NpmNode {
        let dir = cluster_dir();
        assert!(dir.join("node_modules/@socket.io/redis-streams-adapter").exists(), "{NEEDS}");
        let port = free_port();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let replies = Arc::new(Mutex::new(HashMap::new()));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (r, e) = (replies.clone(), events.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                match v.get("id").and_then(Value::as_u64) {
                    Some(id) => {
                        r.lock().insert(id, v);
                    }
                    None => e.lock().push(v),
                }
            }
        });
        let node = NpmNode { child, port, stdin: Mutex::new(stdin), replies, events, next: AtomicU64::new(1) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !node.events.lock().iter().any(|e| e["event"] == "ready") {
            assert!(!node.events.lock().iter().any(|e| e["event"] == "fatal"), "peer.js failed: {:?}", node.events);
            assert!(Instant::now() < deadline, "peer.js did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    pub async fn call(&self, mut command: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        command["id"] = json!(id);
        {
            let mut stdin = self.stdin.lock();
            writeln!(stdin, "{command}").expect("peer.js stdin");
            stdin.flush().expect("flush");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(reply) = self.replies.lock().remove(&id) {
                assert!(reply.get("error").is_none(), "peer.js: {reply}");
                return reply["ok"].clone();
            }
            assert!(Instant::now() < deadline, "peer.js did not answer {command}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for NpmNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One node of a cluster, iobus or npm, seen through the same operations.
pub enum Node {
    Iobus(IobusNode),
    Npm(NpmNode),
}

pub fn selection(server: &Server, to: &[&str], except: &[&str]) -> iobus::BroadcastOperator {
    let mut op = server.of("/").broadcast();
    for room in to {
        op = op.to(room);
    }
    for room in except {
        op = op.except(room);
    }
    op
}

pub fn strs(items: &[&str]) -> Value {
    json!(items)
}

/// A fetched socket: id, rooms, data.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub id: String,
    pub rooms: BTreeSet<String>,
    pub data: Value,
    pub handshake: Value,
}

impl Node {
    pub fn port(&self) -> u16 {
        match self {
            Node::Iobus(n) => n.port,
            Node::Npm(n) => n.port,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Node::Iobus(n) => n.name,
            Node::Npm(_) => "node",
        }
    }

    pub async fn emit(&self, to: &[&str], except: &[&str], event: &str, args: Vec<Value>) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, except).emit(event, payload(&args)).expect("emit"),
            Node::Npm(n) => {
                n.call(json!({"op": "emit", "to": strs(to), "except": strs(except), "event": event, "args": args}))
                    .await;
            }
        }
    }

    pub async fn emit_with_ack(&self, to: &[&str], event: &str) -> (Vec<Value>, bool) {
        match self {
            Node::Iobus(n) => {
                let result = selection(&n.server, to, &[])
                    .timeout(Duration::from_secs(3))
                    .emit_with_ack_async(event, Payload::empty())
                    .await
                    .expect("emit with ack");
                (
                    result.replies.iter().map(|p| p.args.first().cloned().unwrap_or(Value::Null)).collect(),
                    result.timed_out,
                )
            }
            Node::Npm(n) => {
                let r = n.call(json!({"op": "emitWithAck", "to": strs(to), "timeout": 3000, "event": event})).await;
                (r["replies"].as_array().cloned().unwrap_or_default(), r["timedOut"] == true)
            }
        }
    }

    pub async fn fetch(&self, to: &[&str]) -> Vec<Fetched> {
        let list: Vec<Value> = match self {
            Node::Iobus(n) => selection(&n.server, to, &[])
                .fetch_sockets_async()
                .await
                .into_iter()
                .map(|s| json!({"id": s.id, "rooms": s.rooms, "data": s.data, "handshake": s.handshake}))
                .collect(),
            Node::Npm(n) => {
                n.call(json!({"op": "fetchSockets", "to": strs(to)})).await.as_array().cloned().unwrap_or_default()
            }
        };
        let mut out: Vec<Fetched> = list
            .iter()
            .map(|s| Fetched {
                id: s["id"].as_str().unwrap_or_default().to_owned(),
                rooms: s["rooms"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
                data: s["data"].clone(),
                handshake: s["handshake"].clone(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub async fn fetch_ids(&self, to: &[&str]) -> BTreeSet<String> {
        self.fetch(to).await.into_iter().map(|s| s.id).collect()
    }

    pub async fn join(&self, to: &[&str], rooms: &[&str]) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, &[]).join_many(rooms),
            Node::Npm(n) => {
                n.call(json!({"op": "socketsJoin", "to": strs(to), "rooms": strs(rooms)})).await;
            }
        }
    }

    pub async fn leave(&self, to: &[&str], rooms: &[&str]) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, &[]).leave_many(rooms),
            Node::Npm(n) => {
                n.call(json!({"op": "socketsLeave", "to": strs(to), "rooms": strs(rooms)})).await;
            }
        }
    }

    pub async fn disconnect(&self, to: &[&str]) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, &[]).disconnect(false),
            Node::Npm(n) => {
                n.call(json!({"op": "disconnectSockets", "to": strs(to), "close": false})).await;
            }
        }
    }

    pub async fn all_rooms(&self) -> BTreeSet<String> {
        match self {
            Node::Iobus(n) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                n.server.of("/").all_rooms(move |rooms| {
                    let _ = tx.send(rooms);
                });
                rx.await.expect("all rooms").into_iter().collect()
            }
            Node::Npm(n) => n
                .call(json!({"op": "allRooms"}))
                .await
                .as_array()
                .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        }
    }

    pub async fn server_side_emit(&self, event: &str, args: Vec<Value>) {
        match self {
            Node::Iobus(n) => n.server.of("/").server_side_emit(event, args).expect("server-side emit"),
            Node::Npm(n) => {
                n.call(json!({"op": "serverSideEmit", "event": event, "args": args})).await;
            }
        }
    }

    pub async fn server_side_emit_with_ack(&self, event: &str, args: Vec<Value>) -> (Vec<Value>, bool) {
        match self {
            Node::Iobus(n) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                n.server
                    .of("/")
                    .server_side_emit_with_ack(event, args, Duration::from_secs(3), move |r| {
                        let _ = tx.send(r);
                    })
                    .expect("server-side emit");
                let r = rx.await.expect("replies");
                (r.replies.iter().map(|p| p.args.first().cloned().unwrap_or(Value::Null)).collect(), r.timed_out)
            }
            Node::Npm(n) => {
                let r = n.call(json!({"op": "serverSideEmitWithAck", "event": event, "args": args})).await;
                (r["replies"].as_array().cloned().unwrap_or_default(), r["timedOut"] == true)
            }
        }
    }

    /// Waits for a server-side event this node received from another one.
    pub async fn expect_server_side(&self, event: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = match self {
                Node::Iobus(n) => {
                    let mut got = n.server_side.lock();
                    got.iter().position(|(e, _)| e == event).map(|i| got.remove(i).1)
                }
                Node::Npm(n) => {
                    let mut got = n.events.lock();
                    got.iter()
                        .position(|e| e["event"] == "serverSide" && e["name"] == event)
                        .map(|i| got.remove(i)["args"].as_array().cloned().unwrap_or_default())
                }
            };
            if let Some(args) = found {
                return args;
            }
            assert!(Instant::now() < deadline, "{} got no server-side `{event}`", self.name());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Waits until `check` holds (cross-node room changes take a round trip).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every cross-node operation, from node `x` to the sockets of node `y`.
pub async fn scenario(x: &Node, y: &Node) {
    let tag = format!("{}->{}", x.name(), y.name());
    let x1 = Client::connect(x.port(), json!({"rooms": ["r", "vip"], "data": {"who": "x1"}})).await;
    let x2 = Client::connect(x.port(), json!({"rooms": ["r"]})).await;
    let y1 = Client::connect(y.port(), json!({"rooms": ["r"], "data": {"who": "y1"}})).await;
    let y2 = Client::connect(y.port(), json!({"rooms": ["r", "vip"]})).await;
    let y3 = Client::connect(y.port(), json!({})).await;

    // A broadcast to one room (its own channel) reaches its members everywhere.
    x.emit(&["r"], &[], "one-room", vec![json!(1), json!("two")]).await;
    for c in [&x1, &x2, &y1, &y2] {
        assert_eq!(c.expect("one-room").await.args, vec![json!(1), json!("two")], "{tag}");
    }
    // Several rooms, except a room.
    x.emit(&["r", "nobody"], &["vip"], "except-vip", vec![json!({"k": [1, 2]})]).await;
    for c in [&x2, &y1] {
        assert_eq!(c.expect("except-vip").await.args, vec![json!({"k": [1, 2]})], "{tag}");
    }
    // Everyone, with a binary argument.
    x.emit(&[], &[], "bin", vec![json!("b"), json!({"$binary": [0, 1, 255]})]).await;
    for c in [&x1, &y1, &y3] {
        let e = c.expect("bin").await;
        assert_eq!(e.args, vec![json!("b"), placeholder(0)], "{tag}");
        assert_eq!(e.binary, vec![vec![0u8, 1, 255]], "{tag}");
    }
    // A client's broadcast leaves its sender out, on every node.
    y1.send(r#"42["relay","r","hi"]"#);
    for c in [&x1, &x2, &y2] {
        assert_eq!(c.expect("relayed").await.args, vec![json!("hi")], "{tag}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!x1.has("except-vip") && !y2.has("except-vip") && !y3.has("one-room"), "{tag}: exclusions");
    assert!(!y1.has("relayed"), "{tag}: the sender got its own broadcast");

    // Fetching sockets across nodes: ids, rooms, data, handshake.
    let fetched = x.fetch(&["r"]).await;
    let ids: BTreeSet<String> = fetched.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, set(&[&x1.sid, &x2.sid, &y1.sid, &y2.sid]), "{tag}");
    let remote = fetched.iter().find(|s| s.id == y1.sid).expect("y1");
    assert_eq!(remote.rooms, set(&[&y1.sid, "r"]), "{tag}");
    assert_eq!(remote.data, json!({"who": "y1"}), "{tag}");
    assert_eq!(remote.handshake["auth"]["data"], json!({"who": "y1"}), "{tag}");
    assert!(remote.handshake["headers"].is_object(), "{tag}: {}", remote.handshake);

    // Remote join and leave of the selected sockets.
    x.join(&["vip"], &["club"]).await;
    let want = set(&[&x1.sid, &y2.sid]);
    eventually(&format!("{tag}: join"), || async { x.fetch_ids(&["club"]).await == want }).await;
    y.emit(&["club"], &[], "in-club", vec![]).await;
    y2.expect("in-club").await;
    x1.expect("in-club").await;
    x.leave(&["vip"], &["club"]).await;
    eventually(&format!("{tag}: leave"), || async { x.fetch_ids(&["club"]).await.is_empty() }).await;

    // Every room, on every node.
    let rooms = x.all_rooms().await;
    for room in ["r", "vip", x1.sid.as_str(), y3.sid.as_str()] {
        assert!(rooms.contains(room), "{tag}: all rooms lacks {room}: {rooms:?}");
    }

    // Server-side emits, with and without acks.
    x.server_side_emit("note", vec![json!(5), json!({"a": "b"})]).await;
    assert_eq!(y.expect_server_side("note").await, vec![json!(5), json!({"a": "b"})], "{tag}");
    let (replies, timed_out) = x.server_side_emit_with_ack("hello", vec![json!("hi")]).await;
    assert_eq!(replies, vec![json!(format!("pong-from-{}", y.name()))], "{tag}");
    assert!(!timed_out, "{tag}");
    assert_eq!(y.expect_server_side("hello").await, vec![json!("hi")], "{tag}");

    // A broadcast with acks counts the clients of both nodes.
    let (mut replies, timed_out) = x.emit_with_ack(&["r"], "ask").await;
    replies.sort_by_key(Value::to_string);
    let mut want: Vec<Value> = [&x1, &x2, &y1, &y2].iter().map(|c| json!(c.sid)).collect();
    want.sort_by_key(Value::to_string);
    assert_eq!(replies, want, "{tag}");
    assert!(!timed_out, "{tag}");

    // A remote disconnect.
    x.disconnect(&[&y3.sid]).await;
    y3.expect_disconnected().await;
    eventually(&format!("{tag}: disconnect"), || async { !x.fetch_ids(&[]).await.contains(&y3.sid) }).await;
    for c in [&x1, &x2, &y1, &y2] {
        c.send("41");
    }
}
