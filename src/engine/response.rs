//! The engine's HTTP answers: Engine.IO error codes and the JSON error body,
//! and the few response shapes the transports send.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// Response body type of every HTTP answer.
pub type Body = Full<Bytes>;

/// Engine.IO error codes for HTTP answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

pub(crate) fn error_response(code: ErrorCode) -> Response<Body> {
    let status = if code == ErrorCode::Forbidden { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    let body = format!("{{\"code\":{},\"message\":\"{}\"}}", code as u8, code.message());
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(code);
    res
}

/// An HTTP status with no body at all.
pub(crate) fn bare_response(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}

/// The refusal of a websocket upgrade: the message as `text/html`.
pub(super) fn upgrade_error_response(code: ErrorCode) -> Response<Body> {
    plain_response(StatusCode::BAD_REQUEST, "text/html", Bytes::from_static(code.message().as_bytes()))
}

pub(crate) fn plain_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
