//! The websocket transport: the HTTP upgrade, the probe that moves a polling
//! session over, and the task that reads a connection and writes its queue.
//!
//! One task per connection does both directions: it waits for either a
//! client frame or queued frames, and writes everything queued with a single
//! flush, so a burst of broadcasts costs one syscall.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};

use super::burst::Burst;
use super::{Body, CloseReason, Engine, ErrorCode, RequestInfo, Session, TransportKind, error_response};
use crate::protocol::engine::{Frame, Packet, decode_text};

/// Whether the request asks for a websocket upgrade.
pub(super) fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .any(|v| v.to_str().map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))).unwrap_or(false))
    };
    has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
        && req.headers().contains_key(header::SEC_WEBSOCKET_KEY)
}

fn to_ws(frame: Frame) -> WsMessage {
    if frame.is_binary() {
        WsMessage::Binary(frame.into_bytes())
    } else {
        let bytes = frame.into_bytes();
        // SAFETY: text frames are only ever built from `str`/`String`
        // (see `Frame`), so their bytes are valid UTF-8.
        WsMessage::Text(unsafe { Utf8Bytes::from_bytes_unchecked(bytes) })
    }
}

/// Capacity of the write buffer kept between writes.
const KEEP_WRITE_BUFFER: usize = 16 * 1024;

/// Appends a queued frame as a websocket data frame (RFC 6455 §5.2). A
/// server never masks its frames, so a frame is a 2–10 byte header and the
/// packet's bytes: the same bytes for every recipient of a broadcast, copied
/// once into the connection's write and never re-encoded.
fn encode_frame(out: &mut Vec<u8>, f: &Frame) {
    let opcode = if f.is_binary() { 0x2 } else { 0x1 };
    out.push(0x80 | opcode); // FIN: every message is one frame
    let len = f.len();
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(f.bytes());
}

/// What a websocket connection is for.
pub(super) enum Purpose {
    /// A new session that starts on websocket.
    Open(RequestInfo),
    /// Moving an existing polling session over.
    Upgrade(Arc<Session>),
    /// A connection for a session that cannot take it (already upgraded or
    /// upgrading): accepted, then closed at once.
    Refuse,
}

/// Answers the upgrade request with 101 and hands the connection to a task
/// that serves it as `purpose` says.
pub(super) fn accept(engine: &Arc<Engine>, mut req: Request<Incoming>, purpose: Purpose) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return error_response(ErrorCode::BadRequest);
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let socket = req.extensions().get::<ConnectionSocket>().copied();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = engine.clone();
    engine.runtime.clone().spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("websocket upgrade failed: {e}");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(engine.config.ws_read_buffer)
            .write_buffer_size(engine.config.ws_write_buffer)
            .max_write_buffer_size(engine.config.max_buffered_bytes.max(engine.config.ws_write_buffer + 1))
            // The exact maxPayload check happens on whole messages (so that the
            // refusal can be said with 1009 once the message is read); this
            // bound only caps memory.
            .max_message_size(Some(engine.config.max_payload.saturating_mul(2).saturating_add(1024)))
            .max_frame_size(Some(engine.config.max_payload.saturating_mul(2).saturating_add(1024)));
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        // An open websocket is served by a task of its own that holds only
        // `run`'s future: what the handshake and the probe needed does not
        // stay with every connection for as long as it lives.
        match purpose {
            Purpose::Upgrade(session) => {
                if let Some(ws) = upgrade(&engine, &session, ws, socket).await {
                    engine.runtime.spawn(run(session, ws));
                }
            }
            Purpose::Open(info) => {
                let session = engine.open_session(TransportKind::Websocket, info);
                engine.runtime.spawn(run(session, ws));
            }
            Purpose::Refuse => {
                let mut ws = ws;
                let _ = ws.close(None).await;
            }
        }
    });
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The OS socket under a connection, recorded by the listener as a request
/// extension. It is only ever asked how many bytes the client has sent that
/// nobody has read yet (see [`ConnectionSocket::unread_bytes`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionSocket {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl ConnectionSocket {
    /// The socket of `stream`.
    pub(crate) fn of(stream: &tokio::net::TcpStream) -> ConnectionSocket {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            ConnectionSocket { fd: stream.as_raw_fd() }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            ConnectionSocket {}
        }
    }

    /// Bytes received from the client and not read yet (0 where the system
    /// cannot tell). The caller must make sure the connection is still open
    /// (the descriptor could otherwise belong to another socket by now).
    pub(super) fn unread_bytes(self) -> usize {
        #[cfg(target_os = "linux")]
        {
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int through the pointer, which
            // points to a live local.
            let rc = unsafe { libc::ioctl(self.fd, libc::FIONREAD, &mut n) };
            if rc == 0 { usize::try_from(n).unwrap_or(0) } else { 0 }
        }
        #[cfg(not(target_os = "linux"))]
        {
            0
        }
    }
}

/// Moves a polling session onto this websocket: `2probe` → `3probe`, the
/// pending poll is released with a noop, then `5` switches the transport;
/// the websocket to serve the session on, unless the upgrade failed.
async fn upgrade(engine: &Engine, session: &Arc<Session>, mut ws: Ws, socket: Option<ConnectionSocket>) -> Option<Ws> {
    let ok = probe_and_switch(engine, session, &mut ws, socket).await;
    // Wakes polls waiting for the upgrade to end either way.
    session.end_upgrade(ok);
    if !ok {
        let _ = ws.close(None).await;
        return None;
    }
    Some(ws)
}

/// The probe exchange; true once the client sent `5`.
async fn probe_and_switch(
    engine: &Engine,
    session: &Arc<Session>,
    ws: &mut Ws,
    socket: Option<ConnectionSocket>,
) -> bool {
    let timeout = engine.config.upgrade_timeout;
    let probe = tokio::time::timeout(timeout, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => return t.as_str() == "2probe",
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                _ => return false,
            }
        }
    });
    let probed = tokio::select! {
        r = probe => r.unwrap_or(false),
        _ = session.closed() => false,
    };
    if !probed {
        return false;
    }
    if !session.begin_upgrade(socket) {
        return false;
    }
    if ws.send(to_ws(Frame::pong_probe())).await.is_err() {
        return false;
    }
    // Release the pending GET (it answers `6` while upgrading) so the
    // client can pause polling.
    session.wake.notify_waiters();

    let upgraded = tokio::time::timeout(timeout, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => match t.as_str() {
                    "5" => return true,
                    "2probe" => {}
                    _ => return false,
                },
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                _ => return false,
            }
            // A poll waiting to see whether a `5` was in flight looks again.
            session.wake.notify_waiters();
        }
    });
    tokio::select! {
        r = upgraded => r.unwrap_or(false),
        _ = session.closed() => false,
    }
}

/// Reads client frames and writes queued frames until the session ends.
async fn run(session: Arc<Session>, mut ws: Ws) {
    let max_payload = session.engine.upgrade().map(|e| e.config.max_payload).unwrap_or(usize::MAX);
    // The frames of one write; kept between writes unless a burst made it big.
    let mut out = Vec::new();
    loop {
        // A wake-up this thread deferred must not wait for it to run out of
        // work (see `sched::wake_later`).
        crate::sched::wake_deferred_if_late();
        if session.drain_frames(|f| encode_frame(&mut out, &f)) > 0 {
            session.writing(out.len());
            // Whatever the websocket layer still holds (an automatic pong)
            // goes first, whole; then the frames, in one write. A client
            // that does not read stalls it: the connection's write timeout
            // ends it, and so does a close that drops what is queued (ping
            // timeout, too much held), which must not wait for the client.
            let write = async { ws.flush().await.is_ok() && ws.get_mut().write_all(&out).await.is_ok() };
            let written = tokio::select! {
                ok = write => ok,
                _ = session.dropped() => false,
            };
            session.written();
            out.clear();
            if out.capacity() > KEEP_WRITE_BUFFER {
                out = Vec::new();
            }
            if !written {
                session.close(CloseReason::TransportError);
                break;
            }
            continue;
        }
        match session.close_reason() {
            None => {}
            // The client does not answer or does not read: no closing
            // handshake, the connection just goes.
            Some(CloseReason::PingTimeout | CloseReason::TransportError) => break,
            Some(_) => {
                // The sink's close also sends the answer to a close the
                // client started (its code, or 1002 for a code that is not
                // allowed), which `WebSocketStream::close` would refuse to
                // send.
                let _ = SinkExt::close(&mut ws).await;
                break;
            }
        }
        let msg = tokio::select! {
            msg = session.gated(ws.next()) => msg,
            _ = session.wake.notified() => continue,
        };
        // Take in what has already arrived before writing the answers, so
        // that a burst costs one write (and consecutive broadcasts it causes
        // are queued together: see `burst`).
        let next = {
            let _burst = Burst::begin();
            let mut next = handle(&session, msg, max_payload);
            for _ in 0..BURST {
                if next != Next::Read || session.read_gate.is_paused() {
                    break;
                }
                match ws.next().now_or_never() {
                    Some(msg) => next = handle(&session, msg, max_payload),
                    None => break,
                }
            }
            next
        };
        if let Next::Refuse(code) = next {
            refuse(&mut ws, code).await;
            session.close(CloseReason::TransportError);
        }
    }
}

/// Client messages read in a row before queued frames are written.
const BURST: usize = 32;

/// What to do after handling a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read on.
    Read,
    /// The session is over.
    Done,
    /// The client broke the rules: close with this code (RFC 6455 §7.4.1),
    /// 1009 for a message over maxPayload, 1002 for a malformed frame (RSV
    /// bits, unknown opcode, unmasked, broken fragmentation), 1007 for text
    /// that is not UTF-8.
    Refuse(CloseCode),
}

/// Handles one read from the websocket (without waiting on anything).
fn handle(session: &Arc<Session>, msg: Option<Result<WsMessage, WsError>>, max_payload: usize) -> Next {
    match msg {
        Some(Ok(WsMessage::Text(t))) if t.len() > max_payload => return Next::Refuse(CloseCode::Size),
        Some(Ok(WsMessage::Binary(b))) if b.len() > max_payload => return Next::Refuse(CloseCode::Size),
        Some(Ok(WsMessage::Text(t))) => match decode_text(t.as_str()) {
            Ok(packet) => session.on_packet(packet),
            Err(_) => session.close(CloseReason::ParseError),
        },
        Some(Ok(WsMessage::Binary(b))) => session.on_packet(Packet::Binary(b)),
        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
        Some(Ok(WsMessage::Close(_))) | None => session.close(CloseReason::TransportClose),
        Some(Err(e)) => {
            tracing::debug!(sid = %session.sid, "websocket error: {e}");
            match e {
                WsError::Capacity(_) => return Next::Refuse(CloseCode::Size),
                WsError::Protocol(_) => return Next::Refuse(CloseCode::Protocol),
                WsError::Utf8(_) => return Next::Refuse(CloseCode::Invalid),
                _ => session.close(CloseReason::TransportError),
            }
        }
    }
    if session.is_closed() { Next::Done } else { Next::Read }
}

/// Closes with the code saying what the client did wrong.
async fn refuse(ws: &mut Ws, code: CloseCode) {
    let reason = match code {
        CloseCode::Size => "message too big",
        CloseCode::Invalid => "invalid UTF-8",
        _ => "protocol error",
    };
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = ws.send(WsMessage::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    /// The frames as a websocket client parses them: (opcode, payload).
    fn parse(mut bytes: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let mut cursor = Cursor::new(bytes);
            let (header, len) = FrameHeader::parse(&mut cursor).expect("header").expect("complete header");
            assert!(header.is_final && header.mask.is_none());
            let start = cursor.position() as usize;
            let end = start + len as usize;
            out.push((header.opcode, bytes[start..end].to_vec()));
            bytes = &bytes[end..];
        }
        out
    }

    #[test]
    fn frames_encode_with_every_length_form() {
        let small = Frame::message("hi");
        let medium = Frame::message(&"m".repeat(300));
        let large = Frame::message(&"l".repeat(70_000));
        let binary = Frame::binary(Bytes::from_static(&[0, 1, 2, 255]));
        let frames = [small.clone(), medium.clone(), large.clone(), binary.clone()];
        let encode = |frames: &[Frame]| {
            let mut out = Vec::new();
            for f in frames {
                encode_frame(&mut out, f);
            }
            out
        };
        let parsed = parse(&encode(&frames));
        assert_eq!(parsed.len(), 4);
        for ((opcode, payload), frame) in parsed.iter().zip(&frames) {
            let want = if frame.is_binary() { OpCode::Data(Data::Binary) } else { OpCode::Data(Data::Text) };
            assert_eq!(*opcode, want);
            assert_eq!(payload.as_slice(), frame.bytes().as_ref());
        }
        // Length forms: 7-bit, 16-bit (126) and 64-bit (127).
        assert_eq!(encode(&[small])[1], 3);
        assert_eq!(encode(&[medium])[1], 126);
        assert_eq!(encode(&[large])[1], 127);
    }
}
