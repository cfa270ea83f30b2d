//! The bench contract served by socketioxide (axum + hyper), on namespace `/`:
//! `join` (room, ack) → join the room and ack with no arguments;
//! `broadcast` (room, data) → emit `msg` (data) to everyone in the room;
//! `echo` (data, ack) → ack (data);
//! `stats` (ack) → ack ({log_packets: null, log_bytes: null}): socketioxide
//! has no connection state recovery, so no log (and `BENCH_RECOVERY` changes
//! nothing: its clients reconnect as new sessions).
//!
//! A current-thread runtime, so the server fits the single core the
//! benchmark gives it. Usage: `bench-socketioxide <port>`; prints a ready
//! line once listening.

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

fn on_connect(s: SocketRef) {
    s.on("join", async |s: SocketRef, Data(room): Data<String>, ack: AckSender| {
        s.join(room);
        // A zero-length array serializes as an empty argument list: `43<id>[]`.
        let _ = ack.send(&[(); 0]);
    });
    s.on("broadcast", async |s: SocketRef, Data((room, data)): Data<(String, Value)>| {
        let _ = s.within(room).emit("msg", &data).await;
    });
    s.on("echo", async |Data(data): Data<Value>, ack: AckSender| {
        let _ = ack.send(&data);
    });
    s.on("stats", async |ack: AckSender| {
        let _ = ack.send(&serde_json::json!({ "log_packets": null, "log_bytes": null }));
    });
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(3100);
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |s: SocketRef| on_connect(s));
    let app = axum::Router::new().layer(layer);
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
