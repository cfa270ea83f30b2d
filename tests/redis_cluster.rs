//! Several nodes on one Redis: iobus nodes with the Redis pub/sub adapter,
//! and npm socket.io 4.8 nodes with `@socket.io/redis-adapter` 8.3 (plus
//! `@socket.io/redis-emitter`), driven through `tests/cluster/peer.js`.
//! Clients are raw websocket peers speaking Engine.IO v4 / Socket.IO v5.
//!
//! Each test starts its own `redis-server` on a free port with a temporary
//! directory. They need Debian's `redis-server` and `tests/cluster`'s npm
//! packages, which `make test-redis` installs before running them:
//! `cargo test --test redis_cluster -- --include-ignored`.

#![cfg(feature = "redis")]

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
use iobus::redis::RedisAdapter;
use iobus::{Payload, Server, ServerOptions, placeholder};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const NEEDS: &str = "needs redis-server and tests/cluster/node_modules (make test-redis)";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

// ---- a Redis server of the test's own ----------------------------------------

struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("iobus-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer { port, dir, child: None };
        server.run();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
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

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Subscribers of a channel, as every node counts the others.
    fn numsub(&self, channel: &str) -> usize {
        let Ok(client) = redis::Client::open(self.url()) else { return 0 };
        let Ok(mut con) = client.get_connection() else { return 0 };
        let reply: redis::RedisResult<(String, usize)> =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(&mut con);
        reply.map(|(_, n)| n).unwrap_or(0)
    }

    async fn wait_nodes(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.numsub("socket.io-request#/#") != n {
            assert!(Instant::now() < deadline, "the nodes did not all subscribe");
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
struct Event {
    name: String,
    args: Vec<Value>,
    binary: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Inbox {
    events: Vec<Event>,
    disconnected: bool,
}

/// A client on one node: joins the rooms and keeps the data of its auth,
/// answers `ask` events with its socket id as ack, records the rest.
struct Client {
    sid: String,
    inbox: Arc<Mutex<Inbox>>,
    out: mpsc::UnboundedSender<Message>,
}

fn parse_event(text: &str) -> Option<(Option<u64>, Value, usize)> {
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
    async fn connect(port: u16, auth: Value) -> Client {
        Client::connect_to(port, "/", auth).await
    }

    /// A client of namespace `nsp`.
    async fn connect_to(port: u16, nsp: &str, auth: Value) -> Client {
        let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        let (mut sink, mut stream) = ws.split();
        let open = stream.next().await.expect("open").expect("open frame");
        assert!(open.to_text().unwrap_or("").starts_with("0{"));
        sink.send(Message::text(format!("40{prefix}{auth}"))).await.expect("connect");
        let sid = loop {
            let msg = stream.next().await.expect("connect reply").expect("frame");
            let text = msg.to_text().unwrap_or("").to_owned();
            if let Some(json) = text.strip_prefix("40").and_then(|t| t.strip_prefix(prefix.as_str())) {
                let v: Value = serde_json::from_str(json).expect("CONNECT reply");
                break v["sid"].as_str().expect("sid").to_owned();
            }
        };
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = outgoing.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let (sink_in, replies, own, nsp) = (inbox.clone(), out.clone(), sid.clone(), prefix);
        tokio::spawn(async move {
            let mut partial: Option<(Event, usize)> = None;
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    Message::Text(t) if t.as_str() == "2" => {
                        let _ = replies.send(Message::text("3"));
                    }
                    Message::Text(t) if t.as_str().starts_with("41") => sink_in.lock().disconnected = true,
                    Message::Text(t) => {
                        let Some((id, Value::Array(mut data), attachments)) = parse_event(t.as_str()) else {
                            continue;
                        };
                        let name = data.remove(0).as_str().unwrap_or_default().to_owned();
                        if let (Some(id), "ask") = (id, name.as_str()) {
                            let _ = replies.send(Message::text(format!("43{nsp}{id}[\"{own}\"]")));
                        }
                        let event = Event { name, args: data, binary: Vec::new() };
                        if attachments > 0 {
                            partial = Some((event, attachments));
                        } else {
                            sink_in.lock().events.push(event);
                        }
                    }
                    Message::Binary(b) => {
                        if let Some((mut event, n)) = partial.take() {
                            event.binary.push(b.to_vec());
                            if event.binary.len() == n {
                                sink_in.lock().events.push(event);
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
        Client { sid, inbox, out }
    }

    fn send(&self, text: &str) {
        let _ = self.out.send(Message::text(text.to_owned()));
    }

    /// Takes the first event named `name` that arrives within 5 s.
    async fn expect(&self, name: &str) -> Event {
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
    fn has(&self, name: &str) -> bool {
        self.inbox.lock().events.iter().any(|e| e.name == name)
    }

    async fn expect_disconnected(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.inbox.lock().disconnected {
            assert!(Instant::now() < deadline, "client {} was not disconnected", self.sid);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

// ---- the nodes -----------------------------------------------------------------

/// JSON arguments with binary values as `{"$binary": [bytes]}`, as iobus
/// takes them (placeholders and attachments).
fn payload(args: &[Value]) -> Payload {
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
type ServerSideEvent = (String, Vec<Value>);

struct IobusNode {
    server: Arc<Server>,
    port: u16,
    name: &'static str,
    server_side: Arc<Mutex<Vec<ServerSideEvent>>>,
}

impl IobusNode {
    fn start(redis: &str, name: &'static str, requests_timeout: Duration) -> IobusNode {
        let adapter = RedisAdapter::pubsub(redis).requests_timeout(requests_timeout).build();
        let server = Arc::new(Server::new(ServerOptions { adapter, ..ServerOptions::default() }));
        let nsp = server.of("/");
        nsp.on_connection(|socket| {
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

struct NpmNode {
    child: Child,
    port: u16,
    stdin: Mutex<ChildStdin>,
    replies: Arc<Mutex<HashMap<u64, Value>>>,
    events: Arc<Mutex<Vec<Value>>>,
    next: AtomicU64,
}

fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster")
}

impl NpmNode {
    fn start(redis: &str, requests_timeout: Duration, specific: bool) -> NpmNode {
        let dir = cluster_dir();
        assert!(dir.join("node_modules/@socket.io/redis-adapter").exists(), "{NEEDS}");
        let port = free_port();
        let mut child = Command::new("node")
            .arg(dir.join("peer.js"))
            .arg(port.to_string())
            .arg(redis)
            .arg(requests_timeout.as_millis().to_string())
            .arg(if specific { "specific" } else { "shared" })
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

    async fn call(&self, mut command: Value) -> Value {
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
enum Node {
    Iobus(IobusNode),
    Npm(NpmNode),
}

fn selection(server: &Server, to: &[&str], except: &[&str]) -> iobus::BroadcastOperator {
    let mut op = server.of("/").broadcast();
    for room in to {
        op = op.to(room);
    }
    for room in except {
        op = op.except(room);
    }
    op
}

fn strs(items: &[&str]) -> Value {
    json!(items)
}

/// A fetched socket: id, rooms, data.
#[derive(Debug, Clone, PartialEq)]
struct Fetched {
    id: String,
    rooms: BTreeSet<String>,
    data: Value,
    handshake: Value,
}

impl Node {
    fn port(&self) -> u16 {
        match self {
            Node::Iobus(n) => n.port,
            Node::Npm(n) => n.port,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Node::Iobus(n) => n.name,
            Node::Npm(_) => "node",
        }
    }

    async fn emit(&self, to: &[&str], except: &[&str], event: &str, args: Vec<Value>) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, except).emit(event, payload(&args)).expect("emit"),
            Node::Npm(n) => {
                n.call(json!({"op": "emit", "to": strs(to), "except": strs(except), "event": event, "args": args}))
                    .await;
            }
        }
    }

    async fn emit_with_ack(&self, to: &[&str], event: &str) -> (Vec<Value>, bool) {
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

    async fn fetch(&self, to: &[&str]) -> Vec<Fetched> {
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

    async fn fetch_ids(&self, to: &[&str]) -> BTreeSet<String> {
        self.fetch(to).await.into_iter().map(|s| s.id).collect()
    }

    async fn join(&self, to: &[&str], rooms: &[&str]) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, &[]).join_many(rooms),
            Node::Npm(n) => {
                n.call(json!({"op": "socketsJoin", "to": strs(to), "rooms": strs(rooms)})).await;
            }
        }
    }

    async fn leave(&self, to: &[&str], rooms: &[&str]) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, &[]).leave_many(rooms),
            Node::Npm(n) => {
                n.call(json!({"op": "socketsLeave", "to": strs(to), "rooms": strs(rooms)})).await;
            }
        }
    }

    async fn disconnect(&self, to: &[&str]) {
        match self {
            Node::Iobus(n) => selection(&n.server, to, &[]).disconnect(false),
            Node::Npm(n) => {
                n.call(json!({"op": "disconnectSockets", "to": strs(to), "close": false})).await;
            }
        }
    }

    async fn all_rooms(&self) -> BTreeSet<String> {
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

    async fn server_side_emit(&self, event: &str, args: Vec<Value>) {
        match self {
            Node::Iobus(n) => n.server.of("/").server_side_emit(event, args).expect("server-side emit"),
            Node::Npm(n) => {
                n.call(json!({"op": "serverSideEmit", "event": event, "args": args})).await;
            }
        }
    }

    async fn server_side_emit_with_ack(&self, event: &str, args: Vec<Value>) -> (Vec<Value>, bool) {
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
    async fn expect_server_side(&self, event: &str) -> Vec<Value> {
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

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Waits until `check` holds (cross-node room changes take a round trip).
async fn eventually<F, Fut>(what: &str, mut check: F)
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
async fn scenario(x: &Node, y: &Node) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn two_iobus_nodes() {
    let redis = RedisServer::start();
    let a = Node::Iobus(IobusNode::start(&redis.url(), "a", Duration::from_secs(2)));
    let b = Node::Iobus(IobusNode::start(&redis.url(), "b", Duration::from_secs(2)));
    redis.wait_nodes(2).await;
    scenario(&a, &b).await;
    scenario(&b, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn iobus_and_npm_socket_io_nodes() {
    let redis = RedisServer::start();
    let a = Node::Iobus(IobusNode::start(&redis.url(), "a", Duration::from_secs(2)));
    let n = Node::Npm(NpmNode::start(&redis.url(), Duration::from_secs(2), false));
    redis.wait_nodes(2).await;
    scenario(&a, &n).await;
    scenario(&n, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn answers_on_the_asking_nodes_own_response_channel() {
    let redis = RedisServer::start();
    let adapter = RedisAdapter::pubsub(&redis.url())
        .requests_timeout(Duration::from_secs(2))
        .publish_on_specific_response_channel(true)
        .build();
    let server = Server::new(ServerOptions { adapter, ..ServerOptions::default() });
    server.of("/").on_connection(|socket| socket.join("r"));
    let addr = server.start("127.0.0.1:0").expect("starts");
    let n = Node::Npm(NpmNode::start(&redis.url(), Duration::from_secs(2), true));
    redis.wait_nodes(2).await;
    let c = Client::connect(addr.port(), json!({})).await;
    let m = Client::connect(n.port(), json!({"rooms": ["r"]})).await;
    assert_eq!(n.fetch_ids(&["r"]).await, set(&[&c.sid, &m.sid]));
    let (replies, timed_out) = n.emit_with_ack(&["r"], "ask").await;
    assert!(!timed_out);
    assert_eq!(replies.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn emitter_messages_reach_every_node() {
    let redis = RedisServer::start();
    let a = Node::Iobus(IobusNode::start(&redis.url(), "a", Duration::from_secs(2)));
    let Node::Npm(n) = Node::Npm(NpmNode::start(&redis.url(), Duration::from_secs(2), false)) else { unreachable!() };
    redis.wait_nodes(2).await;
    let a1 = Client::connect(a.port(), json!({"rooms": ["r"]})).await;
    let a2 = Client::connect(a.port(), json!({"rooms": ["r", "vip"]})).await;
    let n1 = Client::connect(n.port, json!({"rooms": ["r"]})).await;

    n.call(json!({"op": "emitterEmit", "to": ["r"], "event": "e1", "args": [1, {"$binary": [7, 8]}]})).await;
    for c in [&a1, &a2, &n1] {
        let e = c.expect("e1").await;
        assert_eq!(e.args, vec![json!(1), placeholder(0)]);
        assert_eq!(e.binary, vec![vec![7u8, 8]]);
    }
    n.call(json!({"op": "emitterEmit", "except": ["vip"], "event": "e2", "args": []})).await;
    a1.expect("e2").await;
    n1.expect("e2").await;
    n.call(json!({"op": "emitterJoin", "to": ["vip"], "rooms": ["club"]})).await;
    eventually("emitter join", || async {
        let Node::Iobus(node) = &a else { unreachable!() };
        node.server.of("/").room_index().has_room("club")
    })
    .await;
    n.call(json!({"op": "emitterLeave", "to": ["vip"], "rooms": ["club"]})).await;
    eventually("emitter leave", || async {
        let Node::Iobus(node) = &a else { unreachable!() };
        !node.server.of("/").room_index().has_room("club")
    })
    .await;
    n.call(json!({"op": "emitterServerSideEmit", "event": "note", "args": ["from-emitter"]})).await;
    assert_eq!(a.expect_server_side("note").await, vec![json!("from-emitter")]);
    n.call(json!({"op": "emitterDisconnect", "to": ["vip"]})).await;
    a2.expect_disconnected().await;
    assert!(!a2.has("e2"), "except held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn a_node_that_never_answers_costs_the_timeout_only() {
    let redis = RedisServer::start();
    let a = Node::Iobus(IobusNode::start(&redis.url(), "a", Duration::from_millis(800)));
    let b = Node::Iobus(IobusNode::start(&redis.url(), "b", Duration::from_millis(800)));
    // A third "node" that listens on the request channel and never answers.
    let mut silent = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "subscribe", "socket.io-request#/#"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-cli");
    redis.wait_nodes(3).await;
    let a1 = Client::connect(a.port(), json!({"rooms": ["r"]})).await;
    let b1 = Client::connect(b.port(), json!({"rooms": ["r"]})).await;

    let started = Instant::now();
    assert_eq!(a.fetch_ids(&["r"]).await, set(&[&a1.sid, &b1.sid]), "the answers that came");
    assert!(started.elapsed() >= Duration::from_millis(700), "waited for the silent node");
    let rooms = a.all_rooms().await;
    assert!(rooms.contains(&b1.sid));
    let (replies, timed_out) = a.server_side_emit_with_ack("hello", vec![]).await;
    assert_eq!(replies, vec![json!("pong-from-b")]);
    assert!(timed_out);
    let _ = silent.kill();
    let _ = silent.wait();
}

#[test]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
fn redis_down_at_start_is_a_clear_error() {
    let port = free_port();
    let adapter =
        RedisAdapter::pubsub(&format!("redis://127.0.0.1:{port}")).connect_timeout(Duration::from_millis(300)).build();
    let server = Server::new(ServerOptions { adapter, ..ServerOptions::default() });
    server.of("/");
    let err = server.start("127.0.0.1:0").expect_err("no Redis");
    assert!(err.to_string().contains("Redis"), "{err}");
    assert!(!server.is_running());
    // The same server starts once Redis is there.
    let mut redis =
        RedisServer { port, dir: std::env::temp_dir().join(format!("iobus-redis-late-{port}")), child: None };
    std::fs::create_dir_all(&redis.dir).expect("dir");
    redis.run();
    server.start("127.0.0.1:0").expect("starts with Redis up");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn delivery_resumes_after_a_redis_restart() {
    let mut redis = RedisServer::start();
    let a = Node::Iobus(IobusNode::start(&redis.url(), "a", Duration::from_secs(1)));
    let b = Node::Iobus(IobusNode::start(&redis.url(), "b", Duration::from_secs(1)));
    let n = Node::Npm(NpmNode::start(&redis.url(), Duration::from_secs(1), false));
    redis.wait_nodes(3).await;
    let a1 = Client::connect(a.port(), json!({"rooms": ["r"]})).await;
    let b1 = Client::connect(b.port(), json!({"rooms": ["r"]})).await;
    let n1 = Client::connect(n.port(), json!({"rooms": ["r"]})).await;

    // Traffic from a, all along.
    let Node::Iobus(node) = &a else { unreachable!() };
    let server = node.server.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender_stop = stop.clone();
    let sender = tokio::spawn(async move {
        let mut i = 0u64;
        while !sender_stop.load(Ordering::Relaxed) {
            let _ = server.of("/").to("r").emit("tick", vec![json!(i)]);
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    b1.expect("tick").await;
    n1.expect("tick").await;

    let watched = RedisAdapter::pubsub(&redis.url()).factory();
    let watcher = Server::new(ServerOptions { adapter: watched.clone(), ..ServerOptions::default() });
    watcher.start("127.0.0.1:0").expect("starts");
    assert!(watched.connected());

    redis.kill();
    eventually("the loss is noticed", || async { !watched.connected() }).await;
    // Local clients keep working while Redis is away.
    a1.inbox.lock().events.clear();
    a1.expect("tick").await;
    redis.run();

    // Cross-node delivery resumes by itself, in every direction.
    b1.inbox.lock().events.clear();
    n1.inbox.lock().events.clear();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(b1.has("tick") && n1.has("tick")) {
        assert!(Instant::now() < deadline, "delivery did not resume (b1 {}, n1 {})", b1.has("tick"), n1.has("tick"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sender.await;
    eventually("the node sees Redis back", || async { watched.connected() }).await;
    redis.wait_nodes(3).await;
    b.emit(&["r"], &[], "from-b", vec![]).await;
    a1.expect("from-b").await;
    n1.expect("from-b").await;
    n.emit(&["r"], &[], "from-node", vec![]).await;
    a1.expect("from-node").await;
    b1.expect("from-node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn broadcasts_from_other_nodes_are_stored_for_recovery() {
    let redis = RedisServer::start();
    let adapter = RedisAdapter::pubsub(&redis.url()).build();
    let server = Server::new(ServerOptions {
        adapter,
        connection_state_recovery: Some(iobus::server::RecoveryOptions::default()),
        ..ServerOptions::default()
    });
    server.of("/");
    let addr = server.start("127.0.0.1:0").expect("starts");
    let Node::Npm(n) = Node::Npm(NpmNode::start(&redis.url(), Duration::from_secs(2), false)) else { unreachable!() };
    redis.wait_nodes(2).await;
    let a1 = Client::connect(addr.port(), json!({})).await;
    let n1 = Client::connect(n.port, json!({})).await;
    n.call(json!({"op": "emit", "event": "news", "args": [1]})).await;
    // With an offset on the iobus node (stored, replayable), none on npm's.
    let got = a1.expect("news").await.args;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], json!(1));
    assert!(got[1].as_str().is_some_and(|o| !o.is_empty()), "an offset: {got:?}");
    assert_eq!(n1.expect("news").await.args, vec![json!(1)]);
    assert_eq!(server.of("/").recovery().map(|log| log.usage().1), Some(1), "stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn dynamic_namespaces_subscribe_while_they_exist() {
    let redis = RedisServer::start();
    let start = || {
        let adapter = RedisAdapter::pubsub(&redis.url()).build();
        let server = Server::new(ServerOptions { adapter, ..ServerOptions::default() });
        server.dynamic_namespace_pattern("/dyn-*").on_connection(|socket| socket.join("r"));
        server.start("127.0.0.1:0").expect("starts");
        server
    };
    let (a, b) = (start(), start());
    let port = |s: &Server| s.local_addr().map(|a| a.port()).unwrap_or(0);
    let channel = "socket.io-request#/dyn-1#";
    let a1 = Client::connect_to(port(&a), "/dyn-1", json!({})).await;
    let b1 = Client::connect_to(port(&b), "/dyn-1", json!({})).await;
    eventually("both nodes subscribe", || async { redis.numsub(channel) == 2 }).await;
    a.existing("/dyn-1").expect("namespace").to("r").emit("first", vec![json!(1)]).expect("emit");
    assert_eq!(b1.expect("first").await.args, vec![json!(1)]);
    a1.expect("first").await;
    // b's namespace empties and is forgotten: it unsubscribes; made again,
    // it subscribes again.
    b1.send("41/dyn-1,");
    eventually("b unsubscribes", || async { redis.numsub(channel) == 1 }).await;
    let b2 = Client::connect_to(port(&b), "/dyn-1", json!({})).await;
    eventually("b subscribes again", || async { redis.numsub(channel) == 2 }).await;
    a.existing("/dyn-1").expect("namespace").to("r").emit("second", vec![json!(2)]).expect("emit");
    assert_eq!(b2.expect("second").await.args, vec![json!(2)]);
}

/// A peer speaking the wire by hand: requests the npm adapter no longer
/// sends (SOCKETS, the one-socket forms of join, leave and disconnect) and
/// the exact shape of the answers.
#[test]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
fn hand_written_requests_get_npm_shaped_answers() {
    let redis = RedisServer::start();
    let adapter = RedisAdapter::pubsub(&redis.url()).build();
    let server = Server::new(ServerOptions { adapter, ..ServerOptions::default() });
    let (tx, rx) = std::sync::mpsc::channel();
    server.of("/").on_connection(move |socket| {
        socket.join("r");
        let _ = tx.send(socket.clone());
    });
    let addr = server.start("127.0.0.1:0").expect("starts");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime.block_on(Client::connect(addr.port(), json!({})));
    let socket = rx.recv_timeout(Duration::from_secs(5)).expect("socket");

    let redis_client = redis::Client::open(redis.url()).expect("client");
    let mut publisher = redis_client.get_connection().expect("connection");
    let mut listener = redis_client.get_connection().expect("connection");
    let mut responses = listener.as_pubsub();
    responses.subscribe("socket.io-response#/#").expect("subscribe");
    responses.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut ask = |request: Value| -> Value {
        let _: () = redis::cmd("PUBLISH")
            .arg("socket.io-request#/#")
            .arg(request.to_string())
            .query(&mut publisher)
            .expect("publish");
        let message = responses.get_message().expect("an answer");
        serde_json::from_slice(message.get_payload_bytes()).expect("JSON answer")
    };
    assert_eq!(
        ask(json!({"uid": "peer", "requestId": "q1", "type": 0, "rooms": ["r"]})),
        json!({"requestId": "q1", "sockets": [client.sid]})
    );
    let rooms = ask(json!({"uid": "peer", "requestId": "q2", "type": 1}));
    assert_eq!(rooms["requestId"], "q2");
    let mut rooms: Vec<String> = serde_json::from_value(rooms["rooms"].clone()).expect("rooms");
    rooms.sort();
    let mut want = vec!["r".to_string(), client.sid.clone()];
    want.sort();
    assert_eq!(rooms, want);
    assert_eq!(
        ask(json!({"uid": "peer", "requestId": "q3", "type": 2, "sid": client.sid, "room": "solo"})),
        json!({"requestId": "q3"})
    );
    assert!(socket.rooms().contains(&"solo".to_string()));
    assert_eq!(
        ask(json!({"uid": "peer", "requestId": "q4", "type": 3, "sid": client.sid, "room": "solo"})),
        json!({"requestId": "q4"})
    );
    assert!(!socket.rooms().contains(&"solo".to_string()));
    let fetched = ask(json!({"uid": "peer", "requestId": "q5", "type": 5, "opts": {"rooms": ["r"], "except": []}}));
    let handshake = &fetched["sockets"][0]["handshake"];
    for field in ["headers", "time", "address", "xdomain", "secure", "issued", "url", "query", "auth"] {
        assert!(handshake.get(field).is_some(), "handshake lacks {field}: {handshake}");
    }
    assert_eq!(
        ask(json!({"uid": "peer", "requestId": "q6", "type": 4, "sid": client.sid, "close": false})),
        json!({"requestId": "q6"})
    );
    runtime.block_on(client.expect_disconnected());
    server.stop();
}
