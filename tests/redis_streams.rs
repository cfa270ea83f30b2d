//! Several nodes on one Redis stream: iobus nodes with the Redis streams
//! adapter, and npm socket.io 4.8 nodes with
//! `@socket.io/redis-streams-adapter` 0.3 (`tests/cluster/streams-peer.js`),
//! including connection state recovery across nodes — with raw clients that
//! check every byte of a recovery, and with the stock `socket.io-client`
//! behind a TCP load balancer that the test switches between nodes.
//!
//! Each test starts its own `redis-server` on a free port. They need
//! Debian's `redis-server` and `tests/cluster`'s npm packages, which `make
//! test-redis` installs before running them:
//! `cargo test --test redis_streams -- --include-ignored`.

#![cfg(feature = "redis")]

#[allow(dead_code)]
#[path = "support/redis_nodes.rs"]
mod nodes;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use iobus::redis::{RedisAdapter, RedisStreamsAdapterFactory};
use iobus::server::{AdapterFactory, RecoveryOptions};
use iobus::{ServerOptions, placeholder};
use nodes::*;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// The channel every node serving `/` listens on.
const PUBLIC: &str = "socket.io#/#";
/// How long a dropped socket's session is kept.
const RECOVERY: Duration = Duration::from_secs(20);

fn iobus_node(adapter: Arc<dyn AdapterFactory>, name: &'static str, recovery: bool) -> IobusNode {
    let recovery =
        recovery.then(|| RecoveryOptions { max_disconnection_duration: RECOVERY, ..RecoveryOptions::default() });
    IobusNode::start_with(
        ServerOptions { adapter, connection_state_recovery: recovery, ..ServerOptions::default() },
        name,
    )
}

fn iobus(redis: &RedisServer, name: &'static str, recovery: bool) -> Node {
    let adapter = RedisAdapter::streams(&redis.url()).requests_timeout(Duration::from_secs(2)).build();
    Node::Iobus(iobus_node(adapter, name, recovery))
}

fn npm(redis: &RedisServer, recovery: bool) -> Node {
    let ms = if recovery { RECOVERY.as_millis().to_string() } else { "0".to_owned() };
    Node::Npm(NpmNode::spawn("streams-peer.js", &[redis.url(), ms]))
}

fn redis_connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url()).and_then(|c| c.get_connection()).expect("a Redis connection")
}

/// How many clients are reading a stream (blocked in XREAD, or between two).
fn stream_readers(redis: &RedisServer) -> usize {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut redis_connection(redis)).unwrap_or_default();
    list.lines().filter(|l| l.contains("cmd=xread")).count()
}

fn stream_len(redis: &RedisServer) -> usize {
    redis::cmd("XLEN").arg("socket.io").query(&mut redis_connection(redis)).unwrap_or(0)
}

/// Waits until `n` nodes listen on `/`'s channel and read the stream.
async fn wait_cluster(redis: &RedisServer, n: usize) {
    redis.wait_subscribers(PUBLIC, n).await;
    eventually("every node reads the stream", || async { stream_readers(redis) >= n }).await;
}

/// Emits, and waits until the entry is in the stream: the stream's order is
/// then the order of the calls, whichever node made them.
async fn emit_in_order(redis: &RedisServer, node: &Node, to: &[&str], except: &[&str], event: &str, args: Vec<Value>) {
    let before = stream_len(redis);
    node.emit(to, except, event, args).await;
    eventually(&format!("`{event}` is in the stream"), || async { stream_len(redis) > before }).await;
}

/// Whether `offset` has the shape of a stream entry id.
fn is_stream_id(offset: &Value) -> bool {
    offset.as_str().and_then(|o| o.split_once('-')).is_some_and(|(ms, seq)| {
        !ms.is_empty() && !seq.is_empty() && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
    })
}

fn stream_order(offset: &Value) -> (u64, u64) {
    let (ms, seq) = offset.as_str().and_then(|o| o.split_once('-')).unwrap_or(("0", "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Whether node `node` reports the socket `sid` as recovered.
async fn recovered_on(node: &Node, sid: &str) -> bool {
    match node {
        Node::Iobus(n) => n.server.of("/").socket_by_str(sid).is_some_and(|s| s.recovered()),
        Node::Npm(n) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let seen = n.events.lock().iter().any(|e| e["event"] == "connection" && e["id"] == sid);
                if seen {
                    return n.events.lock().iter().any(|e| e["id"] == sid && e["recovered"] == true);
                }
                assert!(Instant::now() < deadline, "node never reported {sid}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn two_iobus_nodes_on_streams() {
    let redis = RedisServer::start();
    let a = iobus(&redis, "a", false);
    let b = iobus(&redis, "b", false);
    wait_cluster(&redis, 2).await;
    scenario(&a, &b).await;
    scenario(&b, &a).await;

    // The entry as the npm adapter writes it.
    a.emit(&["r"], &["x"], "wire", vec![json!(1), json!({"k": "v"})]).await;
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg("socket.io")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut redis_connection(&redis))
        .expect("XREVRANGE");
    let (_, fields) = &entries[0];
    assert_eq!(fields.len(), 8, "{fields:?}");
    assert_eq!((fields[0].as_str(), fields[1].len()), ("uid", 16));
    assert!(fields[1].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(&fields[2..6], ["nsp", "/", "type", "3"]);
    assert_eq!(fields[6], "data");
    assert_eq!(
        fields[7],
        r#"{"packet":{"type":2,"data":["wire",1,{"k":"v"}]},"opts":{"rooms":["r"],"except":["x"],"flags":{}}}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn iobus_and_npm_socket_io_nodes_on_streams() {
    let redis = RedisServer::start();
    let a = iobus(&redis, "a", false);
    let n = npm(&redis, false);
    wait_cluster(&redis, 2).await;
    scenario(&a, &n).await;
    scenario(&n, &a).await;
}

/// A client of node `x` drops, misses packets from both nodes, and comes
/// back on node `y`: same id, its rooms and data, every missed packet once,
/// in the stream's order, before the CONNECT reply. Then it drops again and
/// comes back on `x`.
async fn recovery_scenario(redis: &RedisServer, x: &Node, y: &Node) {
    let tag = format!("{}->{}", x.name(), y.name());
    let c = Client::connect(x.port(), json!({"rooms": ["r", "s"], "data": {"who": "c"}})).await;
    let pid = c.pid.clone().expect("a private id: recovery is on");
    let other = Client::connect(x.port(), json!({"rooms": ["t"]})).await;

    // A stored packet from the other node: the client has an offset.
    emit_in_order(redis, y, &["r"], &[], "first", vec![json!(0)]).await;
    let first = c.expect("first").await;
    assert_eq!(first.args.len(), 2, "{tag}: {first:?}");
    assert!(is_stream_id(&first.args[1]), "{tag}: the offset is the entry id: {first:?}");
    let offset = c.offset().expect("an offset");

    c.drop_connection();
    eventually(&format!("{tag}: the drop is seen"), || async { !x.fetch_ids(&[]).await.contains(&c.sid) }).await;
    // Missed while away, from both nodes, and what is not for it.
    emit_in_order(redis, y, &["r"], &[], "m1", vec![json!(1)]).await;
    emit_in_order(redis, x, &[], &[], "m2", vec![json!(2)]).await;
    emit_in_order(redis, y, &["t"], &[], "not-for-c", vec![]).await;
    emit_in_order(redis, x, &["s"], &["r"], "excluded", vec![]).await;
    emit_in_order(redis, y, &[&c.sid], &[], "m3", vec![json!("direct")]).await;
    emit_in_order(redis, x, &["s"], &[], "m4", vec![json!({"$binary": [1, 2, 3]})]).await;
    other.expect("not-for-c").await;
    // The session waits in Redis, for the recovery's duration at most.
    let key = format!("sio:session:{pid}");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut redis_connection(redis)).expect("PTTL");
    assert!(ttl > 0 && ttl <= RECOVERY.as_millis() as i64, "{tag}: {key} expires in {ttl} ms");

    // Back on the other node, with nothing but its private id and offset.
    let back = Client::connect(y.port(), json!({"pid": pid, "offset": offset})).await;
    assert_eq!(back.sid, c.sid, "{tag}: the same socket id");
    assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "{tag}: the same private id: recovered");
    let replayed = back.inbox.lock().replayed.clone();
    let names: Vec<&str> = replayed.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["m1", "m2", "m3", "m4"], "{tag}: every missed packet once, in order");
    let offsets: Vec<(u64, u64)> =
        replayed.iter().map(|e| stream_order(e.args.last().unwrap_or(&Value::Null))).collect();
    assert!(replayed.iter().all(|e| is_stream_id(e.args.last().unwrap_or(&Value::Null))), "{tag}: {replayed:?}");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{tag}: offsets grow: {offsets:?}");
    assert_eq!(replayed[0].args[0], json!(1));
    assert_eq!(replayed[2].args[0], json!("direct"));
    assert_eq!(replayed[3].args[0], placeholder(0), "{tag}: {:?}", replayed[3]);
    assert_eq!(replayed[3].binary, vec![vec![1u8, 2, 3]], "{tag}");
    assert!(recovered_on(y, &c.sid).await, "{tag}: the node sees a recovered socket");
    let kept: i64 = redis::cmd("EXISTS").arg(&key).query(&mut redis_connection(redis)).expect("EXISTS");
    assert_eq!(kept, 0, "{tag}: a session is taken once");

    // Its rooms and data are back, on every node's view.
    let fetched = x.fetch(&[&c.sid]).await;
    assert_eq!(fetched.len(), 1, "{tag}");
    assert_eq!(fetched[0].rooms, set(&[&c.sid, "r", "s"]), "{tag}");
    assert_eq!(fetched[0].data, json!({"who": "c"}), "{tag}");
    // Live again, once.
    emit_in_order(redis, x, &["r"], &[], "after", vec![json!(5)]).await;
    assert_eq!(back.expect("after").await.args[0], json!(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!back.has("after") && !back.has("m1") && !back.has("m4"), "{tag}: nothing twice");

    // And once more, back to the first node.
    let offset = back.offset().expect("an offset");
    back.drop_connection();
    eventually(&format!("{tag}: the second drop is seen"), || async { !y.fetch_ids(&[]).await.contains(&c.sid) }).await;
    emit_in_order(redis, y, &["s"], &[], "m5", vec![]).await;
    let again = Client::connect(x.port(), json!({"pid": pid, "offset": offset})).await;
    assert_eq!((again.sid.as_str(), again.pid.as_deref()), (c.sid.as_str(), Some(pid.as_str())), "{tag}");
    let names: Vec<String> = again.inbox.lock().replayed.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["m5"], "{tag}: recovered a second time");
    again.send("41");
    other.send("41");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn recovery_across_iobus_nodes() {
    let redis = RedisServer::start();
    let a = iobus(&redis, "a", true);
    let b = iobus(&redis, "b", true);
    wait_cluster(&redis, 2).await;
    recovery_scenario(&redis, &a, &b).await;

    // Unknown sessions, and offsets that are no entry ids, start afresh.
    let c = Client::connect(a.port(), json!({"pid": "AAAAAAAAAAAAAAAAAAAA", "offset": "1-0"})).await;
    assert_ne!(c.pid.as_deref(), Some("AAAAAAAAAAAAAAAAAAAA"));
    let d = Client::connect(b.port(), json!({"pid": "AAAAAAAAAAAAAAAAAAAA", "offset": "not an id"})).await;
    assert_ne!(d.pid.as_deref(), Some("AAAAAAAAAAAAAAAAAAAA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn recovery_across_iobus_and_npm_nodes() {
    let redis = RedisServer::start();
    let a = iobus(&redis, "a", true);
    let n = npm(&redis, true);
    wait_cluster(&redis, 2).await;
    recovery_scenario(&redis, &a, &n).await;
    recovery_scenario(&redis, &n, &a).await;
}

/// The numbers of the `n` events a client received, replayed ones first.
fn numbers(client: &Client) -> Vec<u64> {
    let inbox = client.inbox.lock();
    inbox
        .replayed
        .iter()
        .chain(inbox.events.iter())
        .filter(|e| e.name == "n")
        .filter_map(|e| e.args[0].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn recovering_under_traffic_misses_nothing_and_repeats_nothing() {
    let redis = RedisServer::start();
    let a = iobus(&redis, "a", true);
    let b = iobus(&redis, "b", true);
    wait_cluster(&redis, 2).await;
    // Numbered packets from node a, all along (a's own clients get them
    // when a reads them back, b's when b does).
    let Node::Iobus(node) = &a else { unreachable!() };
    let server = node.server.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let sender_stop = stop.clone();
    let sender = tokio::spawn(async move {
        let mut i = 0u64;
        while !sender_stop.load(Ordering::Relaxed) {
            let _ = server.of("/").to("r").emit("n", vec![json!(i)]);
            i += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut client = Client::connect(b.port(), json!({"rooms": ["r"]})).await;
    let (sid, pid) = (client.sid.clone(), client.pid.clone().expect("a private id"));
    let mut got = Vec::new();
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        client.drop_connection();
        tokio::time::sleep(Duration::from_millis(20)).await;
        got.extend(numbers(&client));
        let offset = client.offset().expect("an offset");
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Back on each node in turn, while packets keep coming.
        let node = if round % 2 == 0 { &a } else { &b };
        client = Client::connect(node.port(), json!({"pid": pid, "offset": offset})).await;
        assert_eq!(client.sid, sid, "round {round}: recovered");
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sender.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    got.extend(numbers(&client));
    assert!(got.len() > 200, "traffic flowed: {}", got.len());
    let gaps: Vec<(u64, u64)> = got.windows(2).filter(|w| w[1] != w[0] + 1).map(|w| (w[0], w[1])).collect();
    assert!(gaps.is_empty(), "every packet once, in order; out of step: {gaps:?}");
}

// ---- the stock client behind a load balancer ---------------------------------

/// A TCP load balancer in front of the nodes: new connections go to the
/// node it routes to (none: they are closed at once); `cut` drops every
/// connection it carries, as a failing node would.
struct Balancer {
    port: u16,
    target: Arc<AtomicU16>,
    carried: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::AbortHandle,
}

impl Balancer {
    async fn start(target: u16) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Arc::new(AtomicU16::new(target));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let (to, carry) = (target.clone(), carried.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = to.load(Ordering::Acquire);
                if port == 0 {
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                carry.lock().push(task.abort_handle());
            }
        });
        Balancer { port, target, carried, accept: accept.abort_handle() }
    }

    fn route(&self, port: u16) {
        self.target.store(port, Ordering::Release);
    }

    fn cut(&self) {
        for task in self.carried.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// `tests/cluster/recovering-client.js`: the stock socket.io-client.
struct StockClient {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl StockClient {
    fn start(port: u16, auth: Value) -> StockClient {
        let mut child = Command::new("node")
            .arg(cluster_dir().join("recovering-client.js"))
            .arg(format!("http://127.0.0.1:{port}"))
            .arg(auth.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().push(v);
                }
            }
        });
        StockClient { child, lines }
    }

    /// Takes what the client reported up to (and including) its next
    /// `connect`.
    async fn until_connected(&self) -> (Vec<Value>, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut lines = self.lines.lock();
                if let Some(i) = lines.iter().position(|l| l.get("connect").is_some()) {
                    let mut taken: Vec<Value> = lines.drain(..=i).collect();
                    let connect = taken.pop().unwrap_or(Value::Null);
                    return (taken, connect);
                }
            }
            assert!(Instant::now() < deadline, "the stock client did not connect: {:?}", self.lines.lock());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn expect(&self, event: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let mut lines = self.lines.lock();
                if let Some(i) = lines.iter().position(|l| l["event"] == event) {
                    return lines.remove(i)["args"].as_array().cloned().unwrap_or_default();
                }
            }
            assert!(Instant::now() < deadline, "the stock client got no `{event}`");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for StockClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events of a client's reports, with their first argument.
fn events(lines: &[Value]) -> Vec<(String, Value)> {
    lines
        .iter()
        .filter_map(|l| Some((l["event"].as_str()?.to_owned(), l["args"].get(0).cloned().unwrap_or(Value::Null))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn the_stock_client_recovers_on_another_node_behind_a_load_balancer() {
    let redis = RedisServer::start();
    let a = iobus(&redis, "a", true);
    let n = npm(&redis, true);
    wait_cluster(&redis, 2).await;
    let balancer = Balancer::start(a.port()).await;
    let client = StockClient::start(balancer.port, json!({"rooms": ["r"], "data": {"who": "stock"}}));
    let (_, connect) = client.until_connected().await;
    let id = connect["connect"].as_str().expect("an id").to_owned();
    assert_eq!(connect["recovered"], false);
    emit_in_order(&redis, &a, &["r"], &[], "e0", vec![json!(0)]).await;
    let args = client.expect("e0").await;
    assert!(is_stream_id(&args[1]), "{args:?}");

    // Node a fails: its connections drop, the balancer sends the client to
    // the npm node.
    balancer.route(0);
    balancer.cut();
    eventually("the drop is seen", || async { !a.fetch_ids(&[]).await.contains(&id) }).await;
    emit_in_order(&redis, &n, &["r"], &[], "e1", vec![json!(1)]).await;
    emit_in_order(&redis, &a, &[], &[], "e2", vec![json!(2)]).await;
    balancer.route(n.port());
    let (missed, connect) = client.until_connected().await;
    assert_eq!((connect["connect"].as_str(), &connect["recovered"]), (Some(id.as_str()), &json!(true)));
    assert_eq!(events(&missed), [("e1".to_owned(), json!(1)), ("e2".to_owned(), json!(2))], "{missed:?}");
    let fetched = a.fetch(&[&id]).await;
    assert_eq!(fetched[0].data, json!({"who": "stock"}));

    // And back from the npm node to iobus.
    balancer.route(0);
    balancer.cut();
    eventually("the second drop is seen", || async { !n.fetch_ids(&[]).await.contains(&id) }).await;
    emit_in_order(&redis, &n, &["r"], &[], "e3", vec![json!(3)]).await;
    balancer.route(a.port());
    let (missed, connect) = client.until_connected().await;
    assert_eq!((connect["connect"].as_str(), &connect["recovered"]), (Some(id.as_str()), &json!(true)));
    assert_eq!(events(&missed), [("e3".to_owned(), json!(3))], "{missed:?}");
    assert!(recovered_on(&a, &id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
async fn delivery_resumes_after_a_redis_restart_on_streams() {
    let mut redis = RedisServer::start();
    let watched: Arc<RedisStreamsAdapterFactory> = RedisAdapter::streams(&redis.url()).factory();
    // Node a stores its packets for recovery: while Redis is away they
    // still reach its own clients.
    let a = Node::Iobus(iobus_node(watched.clone(), "a", true));
    let b = iobus(&redis, "b", false);
    let n = npm(&redis, false);
    wait_cluster(&redis, 3).await;
    let a1 = Client::connect(a.port(), json!({"rooms": ["r"]})).await;
    let b1 = Client::connect(b.port(), json!({"rooms": ["r"]})).await;
    let n1 = Client::connect(n.port(), json!({"rooms": ["r"]})).await;

    let Node::Iobus(node) = &a else { unreachable!() };
    let server = node.server.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let sender_stop = stop.clone();
    let sender = tokio::spawn(async move {
        let mut i = 0u64;
        while !sender_stop.load(Ordering::Relaxed) {
            let _ = server.of("/").to("r").emit("tick", vec![json!(i)]);
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(is_stream_id(&a1.expect("tick").await.args[1]), "stored, with an offset");
    b1.expect("tick").await;
    n1.expect("tick").await;
    assert!(watched.connected());

    redis.kill();
    eventually("the loss is noticed", || async { !watched.connected() }).await;
    a1.inbox.lock().events.clear();
    let local = a1.expect("tick").await;
    assert_eq!(local.args.len(), 1, "delivered at once, without an offset: {local:?}");
    redis.run();

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
    wait_cluster(&redis, 3).await;
    b.emit(&["r"], &[], "from-b", vec![]).await;
    a1.expect("from-b").await;
    n1.expect("from-b").await;
    n.emit(&["r"], &[], "from-node", vec![]).await;
    a1.expect("from-node").await;
    b1.expect("from-node").await;
}

#[test]
#[ignore = "needs redis-server and tests/cluster/node_modules (make test-redis)"]
fn redis_down_at_start_is_a_clear_error_on_streams() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let adapter =
        RedisAdapter::streams(&format!("redis://127.0.0.1:{port}")).connect_timeout(Duration::from_millis(300)).build();
    let server = iobus::Server::new(ServerOptions { adapter, ..ServerOptions::default() });
    server.of("/");
    let err = server.start("127.0.0.1:0").expect_err("no Redis");
    assert!(err.to_string().contains("Redis"), "{err}");
    assert!(!server.is_running());
}
