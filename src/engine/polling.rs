//! HTTP long-polling: a GET waits for queued packets, a POST delivers the
//! client's packets. One GET and one POST at a time per session; an overlap
//! closes the session, as the protocol says.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as HttpBody, Incoming};

use super::session::{GetStart, PollView};
use super::{
    Body, CloseReason, Engine, ErrorCode, Session, TransportKind, bare_response, error_response, plain_response,
};
use crate::protocol::engine::{Frame, decode_payload, encode_payload};

/// How long a request's body may take to arrive, set on each request by
/// the listener (its header timeout).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub(crate) std::time::Duration);

/// Closes the session if a pending GET is abandoned by the client (the
/// request future is dropped before it answers).
struct PendingGet {
    session: Option<Arc<Session>>,
}

impl Drop for PendingGet {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.end_get();
            session.close(CloseReason::TransportError);
        }
    }
}

/// Marks a long-polling POST under way until it is answered or abandoned
/// (the request future dropped), so that a POST overlapping it is refused.
struct PostUnderWay(Arc<Session>);

impl Drop for PostUnderWay {
    fn drop(&mut self) {
        self.0.end_post();
    }
}

/// A long-polling GET: answers with everything queued (up to maxPayload),
/// waiting until something is.
pub(super) async fn get(engine: &Arc<Engine>, session: Arc<Session>) -> Response<Body> {
    match session.begin_get() {
        GetStart::Started => {}
        GetStart::WrongTransport => return error_response(ErrorCode::BadRequest),
        GetStart::Overlap => {
            session.close(CloseReason::TransportError);
            return bare_response(StatusCode::BAD_REQUEST);
        }
    }
    let mut guard = PendingGet { session: Some(session.clone()) };
    // A poll that arrives once the probe has been answered may be racing
    // with the client's `5` on the websocket (after a completed upgrade,
    // polling is over for this session, and the poll gets a 400). It waits
    // only while the client has sent bytes on the websocket that are not
    // read yet: a client that waits for this very poll before it sends `5`
    // has sent nothing there, and is not held up.
    let deadline = tokio::time::Instant::now() + engine.config.upgrade_timeout;
    loop {
        let wake = session.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let in_flight = session.upgrade_in_flight();
        if session.transport() != TransportKind::Polling {
            guard.session = None;
            session.end_get();
            return error_response(ErrorCode::BadRequest);
        }
        if !in_flight || tokio::time::timeout_at(deadline, wake).await.is_err() {
            break;
        }
    }
    let max = engine.config.max_payload;
    let mut ended = false;
    let mut waited = false;
    let frames = loop {
        // Registered before the state is read, so that a wake-up sent in
        // between (the probe's `notify_waiters`) is not lost.
        let wake = session.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let PollView { closed, upgraded } = session.poll_view();
        let frames = session.take_frames(max, true);
        if !frames.is_empty() {
            // Queued packets go first; a close waits for the next poll, so
            // that the client handles them before it sees the session end.
            break frames;
        }
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
        // The probe has been answered: the client is pausing polling and
        // waits for this poll to end before it sends `5`, so it ends now.
        // (While the websocket only waits for its probe, a poll waits for
        // packets as usual: the probe may never come.)
        if upgraded {
            break vec![Frame::noop()];
        }
        wake.await;
        waited = true;
    };
    guard.session = None;
    session.end_get();
    if ended {
        engine.remove(session.sid);
    }
    let mut res = plain_response(StatusCode::OK, "text/plain; charset=UTF-8", encode_payload(&frames));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A long-polling POST: the client's packets, separated by `\x1e`.
pub(super) async fn post(engine: &Arc<Engine>, session: Arc<Session>, req: Request<Incoming>) -> Response<Body> {
    if !session.begin_post() {
        session.close(CloseReason::TransportError);
        return bare_response(StatusCode::BAD_REQUEST);
    }
    // Until the answer: while reads are paused for a slow consumer (below),
    // a client must not get around the pause with overlapping POSTs.
    let _under_way = PostUnderWay(session.clone());
    // Version 4 sends binary inside the text payload (`b` + base64).
    let binary_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if binary_body {
        session.close(CloseReason::TransportError);
        return bare_response(StatusCode::BAD_REQUEST);
    }
    // A body declared over the limit is refused before any of it is read:
    // waiting for bytes that may never come would hold the request open.
    if HttpBody::size_hint(req.body()).lower() > engine.config.max_payload as u64 {
        return bare_response(StatusCode::PAYLOAD_TOO_LARGE);
    }
    // A body trickling in (a slowloris on the body) gets as long as a head.
    let deadline = req.extensions().get::<BodyTimeout>().map(|t| t.0);
    let collect = Limited::new(req.into_body(), engine.config.max_payload).collect();
    let body = match deadline {
        Some(limit) => tokio::time::timeout(limit, collect).await.ok(),
        None => Some(collect.await),
    };
    let Some(body) = body else {
        session.close(CloseReason::TransportError);
        return error_response(ErrorCode::BadRequest);
    };
    let body = match body.map(|c| c.to_bytes()) {
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
