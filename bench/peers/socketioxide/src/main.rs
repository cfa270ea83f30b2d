//! The bench contract served by socketioxide (axum + hyper), on namespace `/`:
//! `join` (room, ack) → join the room and ack with no arguments;
//! `broadcast` (room, data) → emit `msg` (data) to everyone in the room;
//! `echo` (data, ack) → ack (data);
//! `stats` (ack) → ack ({log_packets: null, log_bytes: null}): socketioxide
//! has no connection state recovery, so no log (and `BENCH_RECOVERY` changes
//! nothing: its clients reconnect as new sessions).
//!
//! With `BENCH_REDIS=redis://host:port` (the cluster fan-out scenario) the
//! server joins the other servers on that Redis through socketioxide's own
//! Redis adapter (`socketioxide-redis`, its own wire format over pub/sub,
//! RESP3); otherwise the in-memory one.
//!
//! A current-thread runtime, so the server fits the single core the
//! benchmark gives it. Usage: `bench-socketioxide <port>`; prints a ready
//! line once listening.

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

fn on_connect<A: Adapter>(s: SocketRef<A>) {
    s.on("join", async |s: SocketRef<A>, Data(room): Data<String>, ack: AckSender<A>| {
        s.join(room);
        // A zero-length array serializes as an empty argument list: `43<id>[]`.
        let _ = ack.send(&[(); 0]);
    });
    s.on("broadcast", async |s: SocketRef<A>, Data((room, data)): Data<(String, Value)>| {
        let _ = s.within(room).emit("msg", &data).await;
    });
    s.on("echo", async |Data(data): Data<Value>, ack: AckSender<A>| {
        let _ = ack.send(&data);
    });
    s.on("stats", async |ack: AckSender<A>| {
        let _ = ack.send(&serde_json::json!({ "log_packets": null, "log_bytes": null }));
    });
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("bench-socketioxide: {what}: {e}");
    std::process::exit(1);
}

/// The app: the in-memory adapter, or Redis at `redis_url`.
async fn app(redis_url: Option<String>) -> axum::Router {
    let Some(url) = redis_url else {
        let (layer, io) = SocketIo::new_layer();
        io.ns("/", async |s: SocketRef| on_connect(s));
        return axum::Router::new().layer(layer);
    };
    // The adapter's driver speaks RESP3.
    let url = if url.contains('?') { format!("{url}&protocol=resp3") } else { format!("{url}?protocol=resp3") };
    let client = redis::Client::open(url).unwrap_or_else(|e| fail("redis url", e));
    let ctr = RedisAdapterCtr::new_with_redis(&client).await.unwrap_or_else(|e| fail("redis", e));
    let (layer, io) = SocketIo::builder().with_adapter::<RedisAdapter<_>>(ctr).build_layer();
    if let Err(e) = io.ns("/", async |s: SocketRef<RedisAdapter<_>>| on_connect(s)).await {
        fail("redis adapter", e);
    }
    axum::Router::new().layer(layer)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(3100);
    let redis_url = std::env::var("BENCH_REDIS").ok().filter(|u| !u.is_empty());
    let app = app(redis_url).await;
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench-socketioxide: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("bench-socketioxide ready on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
    let serve = axum::serve(listener, app);
    tokio::select! {
        r = serve => if let Err(e) = r { eprintln!("bench-socketioxide: {e}") },
        _ = tokio::signal::ctrl_c() => {}
    }
}
