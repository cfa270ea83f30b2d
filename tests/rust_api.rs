//! The Rust API's lifecycle and its server-side calls, driven by a raw
//! websocket peer speaking Engine.IO v4 / Socket.IO v5 strings.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use iobus::{AckError, DisconnectReason, Payload, Server, ServerOptions};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(addr: std::net::SocketAddr) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
    ws
}

/// Next text frame that is not a ping (pings are answered).
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.ok()??;
        match msg.ok()? {
            Message::Text(t) if t.as_str() == "2" => {
                let _ = ws.send(Message::text("3")).await;
            }
            Message::Text(t) => return Some(t.to_string()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

fn options() -> ServerOptions {
    let mut o = ServerOptions::default();
    o.engine.ping_interval = Duration::from_millis(300);
    o.engine.ping_timeout = Duration::from_millis(300);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_tells_handlers_server_shutting_down_and_closes_clients() {
    let server = Server::new(options());
    let (tx, rx) = mpsc::channel();
    server.of("/").on_disconnect(move |_socket, reason| {
        let _ = tx.send(reason);
    });
    let addr = server.start("127.0.0.1:0").unwrap();
    let mut ws = connect(addr).await;
    assert!(next_text(&mut ws).await.unwrap().starts_with("0{"));
    ws.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut ws).await.unwrap().starts_with("40{\"sid\":"));

    let server = Arc::new(server);
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(2)).unwrap(), DisconnectReason::ServerShuttingDown);
    assert_eq!(next_text(&mut ws).await, None, "the client sees its connection close");
    assert!(!server.is_running());
}

#[test]
fn binding_a_busy_port_is_an_error_not_a_panic() {
    let first = Server::new(options());
    let addr = first.start("127.0.0.1:0").unwrap();
    let second = Server::new(options());
    assert!(second.start(addr).is_err());
    assert!(!second.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_ack_gets_the_reply_or_a_timeout_or_a_disconnect() {
    let server = Arc::new(Server::new(options()));
    let (tx, rx) = mpsc::channel();
    server.of("/").on_connection(move |socket| {
        let _ = tx.send(socket.clone());
    });
    let addr = server.start("127.0.0.1:0").unwrap();
    let mut ws = connect(addr).await;
    next_text(&mut ws).await.unwrap();
    ws.send(Message::text("40")).await.unwrap();
    next_text(&mut ws).await.unwrap();
    let socket = rx.recv_timeout(Duration::from_secs(2)).unwrap();

    // Reply.
    let s = socket.clone();
    let reply =
        tokio::spawn(async move { s.emit_with_ack_async("question", vec![json!(1)], Duration::from_secs(2)).await });
    let question = next_text(&mut ws).await.unwrap();
    assert_eq!(question, "420[\"question\",1]");
    ws.send(Message::text("430[\"answer\",{\"n\":2}]")).await.unwrap();
    let reply = reply.await.unwrap().unwrap();
    assert_eq!(reply, Payload::new(vec![json!("answer"), json!({"n": 2})]));

    // Timeout: nobody answers.
    let s = socket.clone();
    let timed_out =
        tokio::spawn(async move { s.emit_with_ack_async("question", vec![], Duration::from_millis(100)).await });
    assert_eq!(next_text(&mut ws).await.unwrap(), "421[\"question\"]");
    assert_eq!(timed_out.await.unwrap(), Err(AckError::Timeout));
    // A late answer is ignored and the connection lives on.
    ws.send(Message::text("431[]")).await.unwrap();

    // Disconnect: the client leaves before answering.
    let s = socket.clone();
    let gone = tokio::spawn(async move { s.emit_with_ack_async("question", vec![], Duration::from_secs(5)).await });
    assert_eq!(next_text(&mut ws).await.unwrap(), "422[\"question\"]");
    ws.send(Message::text("41")).await.unwrap();
    assert_eq!(gone.await.unwrap(), Err(AckError::Disconnected));
    assert!(!socket.connected());
    assert!(socket.emit("late", vec![]).is_err());

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_rejects_reserved_names_and_mismatched_binary() {
    let server = Arc::new(Server::new(options()));
    let (tx, rx) = mpsc::channel();
    server.of("/").on_connection(move |socket| {
        let _ = tx.send(socket.clone());
    });
    let addr = server.start("127.0.0.1:0").unwrap();
    let mut ws = connect(addr).await;
    next_text(&mut ws).await.unwrap();
    ws.send(Message::text("40")).await.unwrap();
    next_text(&mut ws).await.unwrap();
    let socket = rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(socket.emit("disconnect", vec![]), Err(iobus::EmitError::ReservedEvent));
    let bad = Payload::with_binary(vec![json!(1)], vec![bytes::Bytes::from_static(b"x")]);
    assert_eq!(socket.emit("x", bad), Err(iobus::EmitError::InvalidBinary));
    socket.emit("ok", vec![json!("still fine")]).unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap(), "42[\"ok\",\"still fine\"]");
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_namespaces_are_forgotten_once_empty() {
    let server = Arc::new(Server::new(options()));
    let template = server.dynamic_namespace_pattern("/room-*");
    template.on_connect(|req| {
        let refuse = req.socket().is_some_and(|s| s.handshake().auth().get("refuse").is_some());
        if refuse {
            req.reject("no", None);
        } else {
            req.accept();
        }
    });
    let addr = server.start("127.0.0.1:0").unwrap();
    let mut ws = connect(addr).await;
    next_text(&mut ws).await.unwrap();

    ws.send(Message::text("40/room-a,")).await.unwrap();
    assert!(next_text(&mut ws).await.unwrap().starts_with("40/room-a,{\"sid\""));
    assert!(server.existing("/room-a").is_some());
    ws.send(Message::text("41/room-a,")).await.unwrap();
    ws.send(Message::text("40/room-b,{\"refuse\":1}")).await.unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap(), "44/room-b,{\"message\":\"no\"}");
    // Both are gone: one emptied by its last socket, one never joined.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while (server.existing("/room-a").is_some() || server.existing("/room-b").is_some())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.existing("/room-a").is_none());
    assert!(server.existing("/room-b").is_none());
    // Unmatched names are refused and never stored.
    ws.send(Message::text("40/other,")).await.unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap(), "44/other,{\"message\":\"Invalid namespace\"}");
    assert!(server.existing("/other").is_none());
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
}
