//! What a hostile or broken client may cost, with the limits set short:
//! idle and slowloris connections are closed on time, an oversized request
//! head gets 431, the connection cap makes room by closing the longest-idle
//! connection and answers 503 when nothing is idle, and a client that does
//! not read loses its volatile packets, then its connection, whether the
//! bound on what it holds or the write timeout comes first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use iobus::{DisconnectReason, Server, ServerOptions};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const HANDSHAKE: &str = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";

fn start(options: ServerOptions) -> (Server, SocketAddr) {
    let server = Server::new(options);
    let addr = server.start("127.0.0.1:0").unwrap();
    (server, addr)
}

/// Reads until the server closes the connection; how long that took (None:
/// still open after `limit`). What was read is returned too.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (Some(start.elapsed()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (Some(start.elapsed()), got),
        }
    }
    (None, got)
}

fn status_of(reply: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(reply);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// One request on a new connection (closed after the answer); the status.
fn handshake_status(addr: SocketAddr) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(HANDSHAKE.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let (_, reply) = wait_closed(&mut s, Duration::from_secs(5));
    status_of(&reply)
}

fn short_http_limits() -> ServerOptions {
    let mut o = ServerOptions::default();
    o.http.keep_alive_timeout = Duration::from_millis(300);
    o.http.header_timeout = Duration::from_millis(400);
    o
}

#[test]
fn idle_connections_close_after_the_keep_alive_timeout() {
    let (_server, addr) = start(short_http_limits());
    // Opened and silent.
    let mut silent = TcpStream::connect(addr).unwrap();
    let (closed, _) = wait_closed(&mut silent, Duration::from_secs(3));
    let closed = closed.expect("an idle connection is closed");
    assert!(closed >= Duration::from_millis(250), "not before the timeout: {closed:?}");

    // Served once, then silent: the keep-alive clock starts after the answer.
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(HANDSHAKE.as_bytes()).unwrap();
    let (closed, reply) = wait_closed(&mut kept, Duration::from_secs(3));
    assert_eq!(status_of(&reply), 200);
    assert!(closed.is_some(), "an idle keep-alive connection is closed");
}

#[test]
fn a_head_sent_a_byte_at_a_time_is_cut_off() {
    let mut o = short_http_limits();
    o.http.keep_alive_timeout = Duration::from_secs(10);
    let (_server, addr) = start(o);
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let start = Instant::now();
    let mut closed = None;
    for b in HANDSHAKE.bytes().take(40) {
        if slow.write_all(&[b]).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = Some(start.elapsed());
                break;
            }
            Ok(_) => panic!("the server answered an incomplete head"),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = Some(start.elapsed());
                break;
            }
        }
    }
    let closed = closed.expect("a slow head is cut off");
    assert!(closed < Duration::from_secs(3), "cut off by the header timeout, not the keep-alive one: {closed:?}");
    // Meanwhile and after, other clients are served.
    assert_eq!(handshake_status(addr), 200);
}

#[test]
fn a_post_body_sent_a_byte_at_a_time_is_cut_off() {
    let mut o = short_http_limits();
    o.http.keep_alive_timeout = Duration::from_secs(10);
    let (_server, addr) = start(o);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(HANDSHAKE.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = s.read(&mut buf).unwrap();
    let open = String::from_utf8_lossy(&buf[..n]).into_owned();
    let sid = open.split("\"sid\":\"").nth(1).and_then(|r| r.get(..20)).expect("a sid").to_owned();

    let mut slow = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let start = Instant::now();
    let mut reply = Vec::new();
    while start.elapsed() < Duration::from_secs(5) {
        if slow.write_all(b"4").is_err() {
            break;
        }
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if !reply.is_empty() {
            break;
        }
    }
    assert_eq!(status_of(&reply), 400, "{}", String::from_utf8_lossy(&reply));
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
}

#[test]
fn an_oversized_head_gets_431() {
    let mut o = ServerOptions::default();
    o.http.max_header_bytes = 2048;
    let (_server, addr) = start(o);
    let mut s = TcpStream::connect(addr).unwrap();
    let big =
        format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(4096));
    let _ = s.write_all(big.as_bytes());
    let (_, reply) = wait_closed(&mut s, Duration::from_secs(3));
    assert_eq!(status_of(&reply), 431);
    assert_eq!(handshake_status(addr), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_closes_the_idlest_then_answers_503() {
    let mut o = ServerOptions::default();
    o.http.max_connections = Some(2);
    let (_server, addr) = start(o);

    // Two idle connections fill the cap; a new client is still served, and
    // the older idle one made room for it.
    let mut first = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _second = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let status = tokio::task::spawn_blocking(move || handshake_status(addr)).await.unwrap();
    assert_eq!(status, 200);
    let (closed, _) = wait_closed(&mut first, Duration::from_secs(2));
    assert!(closed.is_some(), "the longest-idle connection was closed to make room");

    // Two websockets are busy, not idle: a third connection is refused.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut a, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for ws in [&mut a, &mut b] {
        let open = ws.next().await.unwrap().unwrap();
        assert!(open.to_text().unwrap().starts_with("0{"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::spawn_blocking(move || handshake_status(addr)).await.unwrap();
    assert_eq!(status, 503);
    // Room again once one goes.
    a.close(None).await.unwrap();
    drop(a);
    let mut served = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if tokio::task::spawn_blocking(move || handshake_status(addr)).await.unwrap() == 200 {
            served += 1;
            break;
        }
    }
    assert_eq!(served, 1, "served once a connection closed");
    let _ = b.send(Message::text("1")).await;
}

/// A websocket client with a tiny receive buffer that connects to `/` and
/// then never reads again.
async fn non_reading_client(addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with("0{"));
    ws.send(Message::text("40")).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().starts_with("40{"));
    ws.send(Message::text(r#"42["flood"]"#)).await.unwrap();
    ws.into_inner()
}

/// A server that answers `flood` with `count` events of `size` bytes (every
/// other one volatile), reporting the socket's disconnect reason and how
/// many volatile packets it dropped.
fn flooding_server(mut o: ServerOptions, count: usize, size: usize) -> (Server, SocketAddr, mpsc::Receiver<String>) {
    // The heartbeat must not be what ends the client here.
    o.engine.ping_interval = Duration::from_secs(60);
    o.engine.ping_timeout = Duration::from_secs(60);
    let server = Server::new(o);
    let (tx, rx) = mpsc::channel();
    let nsp = server.of("/");
    let on_flood = tx.clone();
    nsp.on("flood", move |socket, _args, _ack| {
        let socket = socket.clone();
        let tx = on_flood.clone();
        std::thread::spawn(move || {
            let data = "x".repeat(size);
            for i in 0..count {
                if i % 2 == 0 {
                    let _ = socket.emit_volatile("v", vec![json!(data)]);
                } else if socket.emit("n", vec![json!(data)]).is_err() {
                    let _ = tx.send(format!("refused after {i}"));
                    return;
                }
            }
            let _ = tx.send("all queued".into());
        });
    });
    nsp.on_disconnect(move |_socket, reason| {
        let _ = tx.send(reason.as_str().to_owned());
    });
    let addr = server.start("127.0.0.1:0").unwrap();
    (server, addr, rx)
}

/// Messages from `rx` until one satisfies `done` (which is the last one).
fn wait_until(rx: &mpsc::Receiver<String>, done: impl Fn(&str) -> bool, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(m) => {
                let last = done(&m);
                seen.push(m);
                if last {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("nothing awaited came within {limit:?}; saw {seen:?}");
}

fn wait_for(rx: &mpsc::Receiver<String>, what: &str, limit: Duration) -> Vec<String> {
    wait_until(rx, |m| m == what, limit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_off_at_the_bound() {
    let mut o = ServerOptions::default();
    o.engine.max_buffered_bytes = 256 * 1024;
    let (_server, addr, rx) = flooding_server(o, 20_000, 1000);
    let _client = non_reading_client(addr).await;
    let seen = wait_for(&rx, DisconnectReason::TransportError.as_str(), Duration::from_secs(10));
    assert!(!seen.iter().any(|m| m == "all queued"), "{seen:?}");
    // The sender learns it too: its next emit fails.
    if !seen.iter().any(|m| m.starts_with("refused after")) {
        wait_until(&rx, |m| m.starts_with("refused after"), Duration::from_secs(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_makes_no_progress_times_out() {
    let mut o = ServerOptions::default();
    o.engine.max_buffered_bytes = 1 << 30;
    o.http.write_timeout = Duration::from_millis(500);
    // Enough to fill every buffer on the way, not enough to reach the bound.
    let (_server, addr, rx) = flooding_server(o, 400, 64 * 1024);
    let _client = non_reading_client(addr).await;
    let started = Instant::now();
    wait_for(&rx, DisconnectReason::TransportError.as_str(), Duration::from_secs(10));
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
}
