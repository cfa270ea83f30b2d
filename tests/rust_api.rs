//! The Rust API's lifecycle and its server-side calls, driven by a raw
//! websocket peer speaking Engine.IO v4 / Socket.IO v5 strings.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use iobus::{AckError, DisconnectReason, Payload, Server, ServerOptions, Sid};
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

/// Connects to "/" and returns the socket id.
async fn connect_socket(addr: std::net::SocketAddr) -> (Ws, String) {
    let mut ws = connect(addr).await;
    next_text(&mut ws).await.unwrap();
    ws.send(Message::text("40")).await.unwrap();
    let connect = next_text(&mut ws).await.unwrap();
    let sid = connect.trim_start_matches("40{\"sid\":\"").trim_end_matches("\"}").to_owned();
    (ws, sid)
}

/// Sends several messages in one write, so the server reads them as one burst.
async fn send_burst(ws: &mut Ws, messages: &[String]) {
    for m in messages {
        ws.feed(Message::text(m.clone())).await.unwrap();
    }
    ws.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_in_one_burst_keep_their_order_against_joins_emits_and_leaves() {
    let server = Arc::new(Server::new(options()));
    let nsp = server.of("/");
    // bc(n): to room r; join / leave: the sender; to(sid, n): one socket;
    // ask(n): ack with n.
    nsp.on("bc", |socket, payload, _| {
        let _ = socket.namespace().to("r").emit("m", payload);
    });
    nsp.on("join", |socket, _, _| socket.join("r"));
    nsp.on("leave", |socket, _, _| socket.leave("r"));
    let s = server.clone();
    nsp.on("to", move |_, payload, _| {
        if let Some(target) = payload.str(0).and_then(Sid::parse).and_then(|sid| s.of("/").socket(sid)) {
            let _ = target.emit("m", vec![payload.args[1].clone()]);
        }
    });
    nsp.on("ask", |_, payload, ack| {
        if let Some(ack) = ack {
            let _ = ack.send(payload);
        }
    });
    let addr = server.start("127.0.0.1:0").unwrap();
    let (mut receiver, receiver_sid) = connect_socket(addr).await;
    send_burst(&mut receiver, &["42[\"join\"]".into(), "421[\"ask\",0]".into()]).await;
    assert_eq!(next_text(&mut receiver).await.unwrap(), "431[0]");
    let (mut sender, _) = connect_socket(addr).await;

    let bc = |n: u32| format!("42[\"bc\",{n}]");
    send_burst(
        &mut sender,
        &[
            bc(1),
            bc(2),
            // The receiver gets 3 between 2 and 4.
            format!("42[\"to\",\"{receiver_sid}\",3]"),
            bc(4),
            // The sender joins: it gets 5 and 6, not what came before.
            "42[\"join\"]".into(),
            bc(5),
            "427[\"ask\",\"after 5\"]".into(),
            bc(6),
            // The sender leaves: 7 is not for it.
            "42[\"leave\"]".into(),
            bc(7),
        ],
    )
    .await;
    for n in 1..=7 {
        assert_eq!(next_text(&mut receiver).await.unwrap(), format!("42[\"m\",{n}]"));
    }
    assert_eq!(next_text(&mut sender).await.unwrap(), "42[\"m\",5]");
    assert_eq!(next_text(&mut sender).await.unwrap(), "437[\"after 5\"]");
    assert_eq!(next_text(&mut sender).await.unwrap(), "42[\"m\",6]");
    // Nothing else for the sender: the next thing it gets is this answer.
    sender.send(Message::text("428[\"ask\",\"end\"]")).await.unwrap();
    assert_eq!(next_text(&mut sender).await.unwrap(), "438[\"end\"]");

    // A socket that disconnects inside the burst still gets what was
    // broadcast before it left, then its disconnect.
    let (mut leaving, _) = connect_socket(addr).await;
    send_burst(&mut leaving, &["42[\"join\"]".into(), "421[\"ask\",0]".into()]).await;
    assert_eq!(next_text(&mut leaving).await.unwrap(), "431[0]");
    send_burst(&mut sender, &[bc(8), bc(9)]).await;
    for n in 8..=9 {
        assert_eq!(next_text(&mut leaving).await.unwrap(), format!("42[\"m\",{n}]"));
        assert_eq!(next_text(&mut receiver).await.unwrap(), format!("42[\"m\",{n}]"));
    }
    // Its own broadcast was emitted while it was still in the room.
    send_burst(&mut leaving, &[bc(10), "41".into()]).await;
    assert_eq!(next_text(&mut leaving).await.unwrap(), "42[\"m\",10]");
    assert_eq!(next_text(&mut receiver).await.unwrap(), "42[\"m\",10]");
    // And nothing after it left.
    send_burst(&mut sender, &[bc(11)]).await;
    assert_eq!(next_text(&mut receiver).await.unwrap(), "42[\"m\",11]");
    leaving.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut leaving).await.unwrap().starts_with("40{\"sid\""));

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_counts_size_nothing_and_placeholders_are_paired_before_handlers() {
    // With the limit raised as far as it goes, the count a client announces
    // must not size anything up front: `451000000000000-[...]` once reserved
    // room for that many attachments and aborted the process.
    let mut o = options();
    o.max_attachments = usize::MAX;
    let server = Arc::new(Server::new(o));
    server.of("/").on("echo", |socket, payload, _ack| {
        let _ = socket.emit("echo", payload);
    });
    let addr = server.start("127.0.0.1:0").unwrap();
    let (mut greedy, _) = connect_socket(addr).await;
    greedy.send(Message::text("451000000000000-[\"echo\",{\"_placeholder\":true,\"num\":0}]")).await.unwrap();
    greedy.send(Message::binary(vec![1u8])).await.unwrap();

    // The server still serves, and a handler gets placeholders renumbered in
    // the order they appear, each with its own attachment, so it can send
    // the payload back as it is.
    let (mut ws, _) = connect_socket(addr).await;
    ws.send(Message::text("452-[\"echo\",{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]"))
        .await
        .unwrap();
    ws.send(Message::binary(b"zero".to_vec())).await.unwrap();
    ws.send(Message::binary(b"one".to_vec())).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await.unwrap(),
        "452-[\"echo\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]"
    );
    let mut binaries = Vec::new();
    while binaries.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Binary(b) => binaries.push(b.to_vec()),
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(binaries, [b"one".to_vec(), b"zero".to_vec()]);

    // A text packet where an attachment belongs ends the greedy connection.
    greedy.send(Message::text("42[\"echo\",1]")).await.unwrap();
    assert_eq!(next_text(&mut greedy).await, None);
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
}
