//! The adapter's operations through the Rust API, against raw websocket
//! peers speaking Engine.IO v4 / Socket.IO v5 strings: emits with acks to
//! several clients (every reply, binary replies, a timeout, a recipient
//! leaving), selections with several excluded sockets, fetch sockets
//! (handshake, rooms, data), bulk join / leave / disconnect, all rooms, and
//! server-side emits on a single server.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use iobus::server::{BroadcastFlags, BroadcastOptions};
use iobus::{Namespace, Payload, Server, ServerOptions, Sid, Socket};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn options() -> ServerOptions {
    let mut o = ServerOptions::default();
    o.engine.ping_interval = Duration::from_millis(500);
    o.engine.ping_timeout = Duration::from_millis(2000);
    o
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

/// A client connected to "/" with `query` and `auth`, and its server socket.
async fn client(
    addr: std::net::SocketAddr,
    nsp: &Arc<Namespace>,
    query: &str,
    auth: serde_json::Value,
) -> (Ws, Arc<Socket>) {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&{query}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
    assert!(next_text(&mut ws).await.unwrap().starts_with("0{"));
    ws.send(Message::text(format!("40{auth}"))).await.unwrap();
    let connect = next_text(&mut ws).await.unwrap();
    let sid = connect.trim_start_matches("40{\"sid\":\"").trim_end_matches("\"}").to_owned();
    let socket = nsp.socket_by_str(&sid).expect("the server knows the socket");
    (ws, socket)
}

/// The ack id of an event `42<id>[...]`, and the rest.
fn ack_id(frame: &str) -> (u64, &str) {
    let body = frame.strip_prefix("42").expect("an event");
    let digits = body.find('[').expect("arguments");
    (body[..digits].parse().expect("an ack id"), &body[digits..])
}

fn select(rooms: &[&str], except: &[&str], except_sids: &[Sid]) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.iter().map(|s| s.to_string()).collect(),
        except: except.iter().map(|s| s.to_string()).collect(),
        except_sids: except_sids.to_vec(),
        flags: BroadcastFlags::default(),
    }
}

async fn stop(server: Arc<Server>) {
    tokio::task::spawn_blocking(move || server.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_with_acks_to_a_room_collects_every_reply_binary_included() {
    let server = Arc::new(Server::new(options()));
    let addr = server.start("127.0.0.1:0").unwrap();
    let nsp = server.of("/");
    let mut peers = Vec::new();
    for _ in 0..3 {
        let (ws, socket) = client(addr, &nsp, "", json!({})).await;
        socket.join("r");
        peers.push(ws);
    }
    let (mut outside, _) = client(addr, &nsp, "", json!({})).await;

    let op = nsp.to("r").timeout(Duration::from_secs(5));
    let result = tokio::spawn(async move { op.emit_with_ack_async("q", vec![json!(1)]).await });
    let mut ids = Vec::new();
    for ws in &mut peers {
        let frame = next_text(ws).await.unwrap();
        let (id, args) = ack_id(&frame);
        assert_eq!(args, "[\"q\",1]");
        ids.push(id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one ack id for every recipient: {ids:?}");
    let id = ids[0];
    peers[0].send(Message::text(format!("43{id}[\"zero\"]"))).await.unwrap();
    peers[1].send(Message::text(format!("43{id}[1,{{\"two\":2}}]"))).await.unwrap();
    peers[2].send(Message::text(format!("461-{id}[\"bin\",{{\"_placeholder\":true,\"num\":0}}]"))).await.unwrap();
    peers[2].send(Message::binary(vec![7u8, 8])).await.unwrap();

    let r = result.await.unwrap().unwrap();
    assert!(!r.timed_out);
    assert_eq!(r.expected, 3);
    assert_eq!(r.replies.len(), 3);
    assert!(r.replies.contains(&Payload::new(vec![json!("zero")])));
    assert!(r.replies.contains(&Payload::new(vec![json!(1), json!({"two": 2})])));
    assert!(r.replies.contains(&Payload::with_binary(
        vec![json!("bin"), json!({"_placeholder": true, "num": 0})],
        vec![Bytes::from_static(&[7, 8])]
    )));
    // The socket outside the room got nothing before this.
    nsp.emit("after", vec![]).unwrap();
    assert_eq!(next_text(&mut outside).await.unwrap(), "42[\"after\"]");
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_with_acks_ends_at_its_timeout_or_when_the_silent_recipient_leaves() {
    let server = Arc::new(Server::new(options()));
    let addr = server.start("127.0.0.1:0").unwrap();
    let nsp = server.of("/");
    let (mut talker, _) = client(addr, &nsp, "", json!({})).await;
    let (mut silent, silent_socket) = client(addr, &nsp, "", json!({})).await;

    // A timeout: the reply that came, the number expected.
    let op = nsp.broadcast().timeout(Duration::from_millis(200));
    let result = tokio::spawn(async move { op.emit_with_ack_async("q", vec![]).await });
    let (id, _) = ack_id(&next_text(&mut talker).await.unwrap()).to_owned();
    next_text(&mut silent).await.unwrap();
    talker.send(Message::text(format!("43{id}[\"here\"]"))).await.unwrap();
    let r = result.await.unwrap().unwrap();
    assert!(r.timed_out);
    assert_eq!((r.expected, r.replies.clone()), (2, vec![Payload::new(vec![json!("here")])]));
    // A late answer is ignored, and the connection lives on.
    silent.send(Message::text(format!("43{id}[\"late\"]"))).await.unwrap();
    silent_socket.emit("still", vec![]).unwrap();
    assert_eq!(next_text(&mut silent).await.unwrap(), "42[\"still\"]");

    // No timeout: a recipient that leaves is no longer waited for.
    let op = nsp.broadcast();
    let result = tokio::spawn(async move { op.emit_with_ack_async("q2", vec![]).await });
    let (id, _) = ack_id(&next_text(&mut talker).await.unwrap()).to_owned();
    next_text(&mut silent).await.unwrap();
    talker.send(Message::text(format!("43{id}[]"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!result.is_finished(), "still waiting for the silent one");
    silent.send(Message::text("41")).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), result).await.expect("completes").unwrap().unwrap();
    assert!(!r.timed_out);
    assert_eq!((r.expected, r.replies.len()), (2, 1));

    // Nobody selected: at once.
    let r = nsp.to("nobody").emit_with_ack_async("q3", vec![]).await.unwrap();
    assert_eq!((r.expected, r.replies.len(), r.timed_out), (0, 0, false));
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selections_leave_out_several_sockets_and_fetch_reports_handshake_rooms_and_data() {
    let server = Arc::new(Server::new(options()));
    let addr = server.start("127.0.0.1:0").unwrap();
    let nsp = server.of("/");
    let mut peers = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..4 {
        let (ws, socket) = client(addr, &nsp, &format!("n={i}"), json!({ "token": i })).await;
        socket.join("all");
        if i % 2 == 0 {
            socket.join("even");
        }
        *socket.data() = json!({ "i": i });
        peers.push(ws);
        sockets.push(socket);
    }
    let ids: Vec<Sid> = sockets.iter().map(|s| s.id()).collect();

    // Emit to all but sockets 0 and 2, then a barrier to everyone.
    nsp.select(select(&["all"], &[], &[ids[0], ids[2]])).emit("x", vec![json!(1)]).unwrap();
    nsp.emit("barrier", vec![]).unwrap();
    for (i, ws) in peers.iter_mut().enumerate() {
        let first = next_text(ws).await.unwrap();
        if i % 2 == 0 {
            assert_eq!(first, "42[\"barrier\"]", "socket {i} was left out");
        } else {
            assert_eq!(first, "42[\"x\",1]");
            assert_eq!(next_text(ws).await.unwrap(), "42[\"barrier\"]");
        }
    }

    // Fetch: even sockets but 2, and everything about each.
    let (tx, rx) = mpsc::channel();
    nsp.select(select(&["even"], &[], &[ids[2]])).fetch_sockets(move |s| {
        let _ = tx.send(s);
    });
    let fetched = rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(fetched.len(), 1);
    let s = &fetched[0];
    assert_eq!(s.id, ids[0].to_string());
    assert_eq!(s.data, json!({ "i": 0 }));
    let mut rooms = s.rooms.clone();
    rooms.sort();
    let mut want = vec!["all".to_string(), "even".to_string(), ids[0].to_string()];
    want.sort();
    assert_eq!(rooms, want);
    assert_eq!(s.handshake["auth"], json!({ "token": 0 }));
    assert_eq!(s.handshake["query"]["n"], json!("0"));
    assert_eq!(s.handshake["address"], json!("127.0.0.1"));
    // Except rooms and except sids together.
    let local = nsp.select(select(&[], &["even"], &[ids[1]])).fetch_sockets_async().await;
    assert_eq!(local.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![ids[3].to_string()]);

    // Bulk join / leave with exclusions, all rooms.
    nsp.select(select(&["all"], &["even"], &[ids[3]])).join_many(&["odd", "picked"]);
    assert!(sockets[1].rooms().contains(&"odd".to_string()));
    assert!(!sockets[3].rooms().contains(&"odd".to_string()));
    assert!(!sockets[0].rooms().contains(&"odd".to_string()));
    nsp.to("picked").leave_many(&["odd", "picked"]);
    assert!(!sockets[1].rooms().iter().any(|r| r == "odd" || r == "picked"));
    let (tx, rx) = mpsc::channel();
    nsp.all_rooms(move |r| {
        let _ = tx.send(r);
    });
    let all = rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert!(all.contains(&"even".to_string()) && all.contains(&ids[3].to_string()));
    assert!(!all.contains(&"picked".to_string()));

    // Bulk disconnect with exclusions: sockets 1 and 3 go.
    nsp.select(select(&["all"], &["even"], &[])).disconnect(false);
    for i in [1, 3] {
        assert_eq!(next_text(&mut peers[i]).await.unwrap(), "41");
        assert!(!sockets[i].connected());
    }
    assert!(sockets[0].connected() && sockets[2].connected());
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_emits_on_one_server_reach_no_handler_and_complete_at_once() {
    let server = Arc::new(Server::new(options()));
    let _addr = server.start("127.0.0.1:0").unwrap();
    let nsp = server.of("/");
    let (tx, rx) = mpsc::channel();
    nsp.on_server_side_emit(move |nsp, event, _, _| {
        let _ = tx.send((nsp.name().to_owned(), event.to_owned()));
    });
    nsp.server_side_emit("hello", vec![json!(1)]).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    nsp.server_side_emit_with_ack("hello?", vec![], Duration::from_secs(1), move |r| {
        let _ = done_tx.send(r);
    })
    .unwrap();
    let r = done_rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!((r.expected, r.replies.len(), r.timed_out), (0, 0, false));
    assert!(nsp.server_side_emit("connect", vec![]).is_err());
    // The handler is for other servers' emits: it runs when an adapter delivers one.
    assert!(rx.try_recv().is_err());
    nsp.handle_server_side_emit("from another", Payload::empty(), None);
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), ("/".to_string(), "from another".to_string()));
    stop(server).await;
}
