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

/// Answers the upgrade request with 101 and hands the connection to a task.
/// `existing` is the polling session to move over, if any.
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

pub(super) fn accept(engine: &Arc<Engine>, mut req: Request<Incoming>, purpose: Purpose) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return error_response(ErrorCode::BadRequest);
    };
    let accept_key = derive_accept_key(key.as_bytes());
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
        match purpose {
            Purpose::Upgrade(session) => upgrade(engine, session, ws).await,
            Purpose::Open(info) => {
                let session = engine.open_session(TransportKind::Websocket, info);
                run(session, ws).await
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

/// Moves a polling session onto this websocket: `2probe` → `3probe`, the
/// pending poll is released with a noop, then `5` switches the transport.
async fn upgrade(engine: Arc<Engine>, session: Arc<Session>, mut ws: Ws) {
    let ok = probe_and_switch(&engine, &session, &mut ws).await;
    {
        let mut st = session.state.lock();
        st.probing = false;
        st.upgrading = false;
        if ok && st.closed.is_none() {
            st.transport = TransportKind::Websocket;
        }
    }
    // Wake polls waiting for the upgrade to end either way.
    session.wake.notify_waiters();
    if !ok {
        let _ = ws.close(None).await;
        return;
    }
    run(session, ws).await
}

/// The probe exchange; true once the client sent `5`.
async fn probe_and_switch(engine: &Engine, session: &Arc<Session>, ws: &mut Ws) -> bool {
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
    {
        let mut st = session.state.lock();
        if st.closed.is_some() || st.transport != TransportKind::Polling {
            return false;
        }
        st.upgrading = true;
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
                    "2probe" => continue,
                    _ => return false,
                },
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                _ => return false,
            }
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
        if session.drain_frames(|f| encode_frame(&mut out, &f)) > 0 {
            // Whatever the websocket layer still holds (an automatic pong)
            // goes first, whole; then the frames, in one write.
            let written = ws.flush().await.is_ok() && ws.get_mut().write_all(&out).await.is_ok();
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
        if session.is_closed() {
            let _ = ws.close(None).await;
            break;
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
        if next == Next::TooBig {
            refuse_too_big(&mut ws).await;
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
    /// A message was over maxPayload: close with 1009.
    TooBig,
}

/// Handles one read from the websocket (without waiting on anything).
fn handle(session: &Arc<Session>, msg: Option<Result<WsMessage, WsError>>, max_payload: usize) -> Next {
    match msg {
        Some(Ok(WsMessage::Text(t))) if t.len() > max_payload => return Next::TooBig,
        Some(Ok(WsMessage::Binary(b))) if b.len() > max_payload => return Next::TooBig,
        Some(Ok(WsMessage::Text(t))) => match decode_text(t.as_str()) {
            Ok(packet) => session.on_packet(packet),
            Err(_) => session.close(CloseReason::ParseError),
        },
        Some(Ok(WsMessage::Binary(b))) => session.on_packet(Packet::Binary(b)),
        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
        Some(Ok(WsMessage::Close(_))) | None => session.close(CloseReason::TransportClose),
        Some(Err(e)) => {
            tracing::debug!(sid = %session.sid, "websocket error: {e}");
            if matches!(e, WsError::Capacity(_)) {
                return Next::TooBig;
            }
            session.close(CloseReason::TransportError);
        }
    }
    if session.is_closed() { Next::Done } else { Next::Read }
}

/// Closes with 1009: a message was over maxPayload.
async fn refuse_too_big(ws: &mut Ws) {
    let frame = CloseFrame { code: CloseCode::Size, reason: "message too big".into() };
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
