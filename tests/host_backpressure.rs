//! The host queue's bound as a raw long-polling client sees it, through the
//! C ABI: a POST whose events put the queue over the limit is answered only
//! once the host has caught up, and a POST overlapping it is refused (the
//! session closes) instead of being read past the pause. The C test
//! (tests/c/test_backpressure.c) covers flooding socket.io-client peers.

use std::ffi::c_void;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use iobus::ffi::config::iobus_config_set_host_queue_limit;
use iobus::ffi::config::{iobus_config_free, iobus_config_new, iobus_config_set_dispatch};
use iobus::ffi::event::iobus_event;
use iobus::ffi::handlers::iobus_server_on_any;
use iobus::ffi::iobus_status;
use iobus::ffi::server::{iobus_server, iobus_server_free, iobus_server_new, iobus_server_pending};
use iobus::ffi::server::{iobus_server_poll, iobus_server_port, iobus_server_start};

/// The smallest limit accepted: one event of 20 KB is over it.
const LIMIT: usize = 16 << 10;

static EVENTS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn on_event(_user: *mut c_void, _ev: *const iobus_event) {
    EVENTS.fetch_add(1, Ordering::SeqCst);
}

/// A poll-mode server with the smallest host queue limit, counting events.
fn start() -> (*mut iobus_server, SocketAddr) {
    let mut server = std::ptr::null_mut();
    unsafe {
        let cfg = iobus_config_new();
        assert_eq!(iobus_config_set_dispatch(cfg, 1), iobus_status::IOBUS_OK);
        assert_eq!(iobus_config_set_host_queue_limit(cfg, LIMIT), iobus_status::IOBUS_OK);
        assert_eq!(iobus_server_new(cfg, &mut server), iobus_status::IOBUS_OK);
        iobus_config_free(cfg);
        assert_eq!(
            iobus_server_on_any(server, std::ptr::null(), Some(on_event), std::ptr::null_mut()),
            iobus_status::IOBUS_OK
        );
        assert_eq!(iobus_server_start(server, std::ptr::null(), 0), iobus_status::IOBUS_OK);
        let mut port = 0u16;
        assert_eq!(iobus_server_port(server, &mut port), iobus_status::IOBUS_OK);
        (server, SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

/// Sends one request on a new connection (closed after the answer).
fn send(addr: SocketAddr, method: &str, sid: Option<&str>, body: &str) -> TcpStream {
    let sid = sid.map(|s| format!("&sid={s}")).unwrap_or_default();
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "{method} /socket.io/?EIO=4&transport=polling{sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(body.as_bytes()).expect("body");
    s
}

/// The whole answer, or None if the server has not finished it by `limit`.
fn answer(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        s.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
    }
    None
}

fn status(reply: &str) -> u16 {
    reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A session connected to namespace "/"; its sid.
fn connected(addr: SocketAddr) -> String {
    let open = answer(&mut send(addr, "GET", None, ""), Duration::from_secs(5)).expect("open");
    let sid = open.split("\"sid\":\"").nth(1).and_then(|r| r.get(..20)).expect("a sid").to_owned();
    let reply = answer(&mut send(addr, "POST", Some(&sid), "40"), Duration::from_secs(5)).expect("connect");
    assert_eq!(status(&reply), 200, "{reply}");
    sid
}

fn big_event() -> String {
    format!("42[\"e\",\"{}\"]", "x".repeat(20_000))
}

fn pending(server: *mut iobus_server) -> (usize, usize) {
    let (mut callbacks, mut bytes) = (0, 0);
    assert_eq!(unsafe { iobus_server_pending(server, &mut callbacks, &mut bytes) }, iobus_status::IOBUS_OK);
    (callbacks, bytes)
}

// One test: the callbacks share EVENTS.
#[test]
fn a_post_over_the_limit_waits_for_the_host_and_one_overlapping_it_is_refused() {
    let (server, addr) = start();

    // Over the limit: the POST is read and its event queued, but not answered
    // until the host has taken the queue down to half the limit.
    let sid = connected(addr);
    let mut held = send(addr, "POST", Some(&sid), &big_event());
    assert_eq!(answer(&mut held, Duration::from_millis(300)), None, "held while the host is behind");
    let (callbacks, bytes) = pending(server);
    assert_eq!(callbacks, 1);
    assert!(bytes > LIMIT, "{bytes}");
    let mut ran = 0;
    assert_eq!(unsafe { iobus_server_poll(server, usize::MAX, &mut ran) }, iobus_status::IOBUS_OK);
    assert_eq!((ran, EVENTS.load(Ordering::SeqCst)), (1, 1));
    assert_eq!(pending(server), (0, 0));
    let reply = answer(&mut held, Duration::from_secs(5)).expect("answered once the host caught up");
    assert_eq!(status(&reply), 200, "{reply}");
    // The session reads on.
    let reply = answer(&mut send(addr, "POST", Some(&sid), "42[\"e\",1]"), Duration::from_secs(5)).expect("read");
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(unsafe { iobus_server_poll(server, usize::MAX, &mut ran) }, iobus_status::IOBUS_OK);
    assert_eq!((ran, EVENTS.load(Ordering::SeqCst)), (1, 2));

    // A POST sent while one is held is an overlap: refused, and the session
    // closes (which answers the held one), rather than read past the pause.
    let sid = connected(addr);
    let mut held = send(addr, "POST", Some(&sid), &big_event());
    assert_eq!(answer(&mut held, Duration::from_millis(300)), None);
    let mut overlap = send(addr, "POST", Some(&sid), "42[\"e\",2]");
    let reply = answer(&mut overlap, Duration::from_secs(5)).expect("refused at once");
    assert_eq!(status(&reply), 400, "{reply}");
    let reply = answer(&mut held, Duration::from_secs(5)).expect("answered as the session closed");
    assert_eq!(status(&reply), 200, "{reply}");
    let reply = answer(&mut send(addr, "GET", Some(&sid), ""), Duration::from_secs(5)).expect("poll");
    assert!(status(&reply) == 400 && reply.contains("\"code\":1"), "the session is gone: {reply}");
    // Only the held POST's event was queued: the overlapping one was not read.
    assert_eq!(pending(server).0, 1);

    unsafe { iobus_server_free(server) };
}
