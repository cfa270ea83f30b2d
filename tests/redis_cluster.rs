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

#[allow(dead_code)]
#[path = "support/redis_nodes.rs"]
mod nodes;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iobus::redis::RedisAdapter;
use iobus::{Server, ServerOptions, placeholder};
use nodes::*;
use serde_json::{Value, json};

impl IobusNode {
    /// A node on the pub/sub adapter.
    fn start(redis: &str, name: &'static str, requests_timeout: Duration) -> IobusNode {
        let adapter = RedisAdapter::pubsub(redis).requests_timeout(requests_timeout).build();
        IobusNode::start_with(ServerOptions { adapter, ..ServerOptions::default() }, name)
    }
}

impl NpmNode {
    /// A socket.io node on `@socket.io/redis-adapter` (`tests/cluster/peer.js`).
    fn start(redis: &str, requests_timeout: Duration, specific: bool) -> NpmNode {
        let args = [
            redis.to_owned(),
            requests_timeout.as_millis().to_string(),
            if specific { "specific" } else { "shared" }.to_owned(),
        ];
        NpmNode::spawn("peer.js", &args)
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
