//! HTTP long-polling: a GET waits for queued packets, a POST delivers the
//! client's packets. One GET and one POST at a time per session; an overlap
//! closes the session, as the protocol says.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{
    Body, CloseReason, Engine, ErrorCode, Session, TransportKind, bare_response, error_response, plain_response,
};
use crate::protocol::engine::{Frame, decode_payload, encode_payload};

/// How long a poll that arrives mid-upgrade waits for the upgrade to finish.
const UPGRADE_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// Closes the session if a pending GET is abandoned by the client (the
/// request future is dropped before it answers).
struct PendingGet {
    session: Option<Arc<Session>>,
}

impl Drop for PendingGet {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.state.lock().get_active = false;
            session.close(CloseReason::TransportError);
        }
    }
}

/// A long-polling GET: answers with everything queued (up to maxPayload),
/// waiting until something is.
pub(super) async fn get(engine: &Arc<Engine>, session: Arc<Session>) -> Response<Body> {
    {
        let mut st = session.state.lock();
        if st.transport != TransportKind::Polling {
            return error_response(ErrorCode::BadRequest);
        }
        if st.get_active {
            drop(st);
            session.close(CloseReason::TransportError);
            return bare_response(StatusCode::BAD_REQUEST);
        }
        st.get_active = true;
    }
    let mut guard = PendingGet { session: Some(session.clone()) };
    // A poll that arrives while an upgrade is under way gives the upgrade a
    // moment to finish (its `5` may be in flight on the websocket): after a
    // completed upgrade, polling is over for this session. Otherwise it is
    // answered with a noop below.
    let deadline = tokio::time::Instant::now() + UPGRADE_GRACE;
    loop {
        let wait = session.wake.notified();
        tokio::pin!(wait);
        wait.as_mut().enable();
        let (upgrading, transport) = {
            let st = session.state.lock();
            (st.upgrading || st.probing, st.transport)
        };
        if transport != TransportKind::Polling {
            guard.session = None;
            session.state.lock().get_active = false;
            return error_response(ErrorCode::BadRequest);
        }
        if !upgrading || tokio::time::timeout_at(deadline, wait).await.is_err() {
            break;
        }
    }
    let max = engine.config.max_payload;
    let mut ended = false;
    let mut waited = false;
    let frames = loop {
        let frames = session.take_frames(max, true);
        if !frames.is_empty() {
            // Queued packets go first; a close waits for the next poll, so
            // that the client handles them before it sees the session end.
            break frames;
        }
        let (closed, upgraded) = {
            let st = session.state.lock();
            (st.closed, st.upgrading || st.transport != TransportKind::Polling)
        };
        if let Some(reason) = closed {
            ended = true;
            break if reason == CloseReason::TransportClose {
                // The client that closed already knows.
                vec![Frame::noop()]
            } else if waited {
                vec![Frame::close()]
            } else {
                // A poll that arrives after the close.
                vec![Frame::noop(), Frame::close()]
            };
        }
        if upgraded {
            break vec![Frame::noop()];
        }
        session.wake.notified().await;
        waited = true;
    };
    guard.session = None;
    session.state.lock().get_active = false;
    if ended {
        engine.remove(session.sid);
    }
    let mut res = plain_response(StatusCode::OK, "text/plain; charset=UTF-8", encode_payload(&frames));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A long-polling POST: the client's packets, separated by `\x1e`.
pub(super) async fn post(engine: &Arc<Engine>, session: Arc<Session>, req: Request<Incoming>) -> Response<Body> {
    {
        let mut st = session.state.lock();
        if st.post_active {
            drop(st);
            session.close(CloseReason::TransportError);
            return bare_response(StatusCode::BAD_REQUEST);
        }
        st.post_active = true;
    }
    // Version 4 sends binary inside the text payload (`b` + base64).
    let binary_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if binary_body {
        session.state.lock().post_active = false;
        session.close(CloseReason::TransportError);
        return bare_response(StatusCode::BAD_REQUEST);
    }
    let body = Limited::new(req.into_body(), engine.config.max_payload).collect().await.map(|c| c.to_bytes());
    session.state.lock().post_active = false;
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            // Too large: refused, but the session lives on. Anything else
            // means the request broke off.
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return bare_response(StatusCode::PAYLOAD_TOO_LARGE);
            }
            session.close(CloseReason::TransportError);
            return error_response(ErrorCode::BadRequest);
        }
    };
    let packets = std::str::from_utf8(&body).ok().and_then(|text| decode_payload(text).ok());
    match packets {
        Some(packets) => {
            for p in packets {
                if session.is_closed() {
                    break;
                }
                session.on_packet(p);
            }
        }
        None => session.close(CloseReason::ParseError),
    }
    // Paused for a slow consumer: the client sends its next POST after this answer.
    session.readable().await;
    plain_response(StatusCode::OK, "text/html", Bytes::from_static(b"ok"))
}
