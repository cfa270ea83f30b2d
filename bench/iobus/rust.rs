//! The bench contract through iobus's Rust API, on namespace `/`:
//! `join` (room, ack) → join the room and ack with no arguments;
//! `broadcast` (room, data) → emit `msg` (data) to everyone in the room;
//! `echo` (data, ack) → ack (data);
//! `stats` (ack) → ack ({log_packets, log_bytes}): the recovery log's
//! `RecoveryLog::usage()`, nulls with recovery off.
//!
//! With `BENCH_RECOVERY=1` in the environment (the reconnect jitter
//! scenario), connection state recovery is on with its default settings;
//! otherwise off, as by default.
//!
//! With `BENCH_REDIS=redis://host:port` (the cluster fan-out scenario) the
//! server joins a cluster through the Redis pub/sub adapter
//! (`@socket.io/redis-adapter` 8.3 on the wire); otherwise the in-memory
//! adapter, as by default.
//!
//! One worker thread, so the server fits the single core the benchmark
//! gives it. Usage: `bench_rust <port>`; prints a ready line once listening.

use iobus::server::RecoveryOptions;
use iobus::{Payload, Server, ServerOptions};
use serde_json::{Value, json};

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(3100);
    let recovery = std::env::var("BENCH_RECOVERY").is_ok_and(|v| v == "1");
    let redis = std::env::var("BENCH_REDIS").ok().filter(|url| !url.is_empty());
    let options = ServerOptions {
        worker_threads: 1,
        serve_client: false,
        connection_state_recovery: recovery.then(RecoveryOptions::default),
        adapter: match &redis {
            #[cfg(feature = "redis")]
            Some(url) => iobus::redis::RedisAdapter::pubsub(url).build(),
            #[cfg(not(feature = "redis"))]
            Some(_) => {
                eprintln!("BENCH_REDIS needs the `redis` feature");
                std::process::exit(2);
            }
            None => ServerOptions::default().adapter,
        },
        ..ServerOptions::default()
    };
    let server = Server::new(options);
    let nsp = server.of("/");

    nsp.on("join", |socket, args, ack| {
        if let Some(room) = args.args.first().and_then(Value::as_str) {
            socket.join(room);
        }
        if let Some(ack) = ack {
            let _ = ack.send(Payload::empty());
        }
    });
    nsp.on("broadcast", |socket, args, _ack| {
        let mut args = args.args.into_iter();
        let Some(Value::String(room)) = args.next() else { return };
        let data: Vec<Value> = args.next().into_iter().collect();
        let _ = socket.namespace().to(&room).emit("msg", Payload::new(data));
    });
    nsp.on("echo", |_socket, args, ack| {
        if let Some(ack) = ack {
            let _ = ack.send(args);
        }
    });

    nsp.on("stats", |socket, _args, ack| {
        let (bytes, packets) = match socket.namespace().recovery().map(|log| log.usage()) {
            Some((bytes, packets)) => (json!(bytes), json!(packets)),
            None => (Value::Null, Value::Null),
        };
        if let Some(ack) = ack {
            let _ = ack.send(Payload::new(vec![json!({ "log_packets": packets, "log_bytes": bytes })]));
        }
    });

    match server.start(("127.0.0.1", port)) {
        Ok(addr) => println!(
            "bench_rust ready on {addr} (recovery {}, adapter {})",
            if recovery { "on" } else { "off" },
            redis.as_deref().map_or("in-memory", |_| "redis pub/sub")
        ),
        Err(e) => {
            eprintln!("bench_rust: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    }
    wait_for_signal();
    server.stop();
}

/// Blocks until SIGINT or SIGTERM, so that the server stops cleanly either way.
fn wait_for_signal() {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(_) => return,
    };
    rt.block_on(async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}
