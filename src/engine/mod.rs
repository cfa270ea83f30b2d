//! Engine.IO v4 sessions: handshake, heartbeat, the two transports and the
//! upgrade between them.
//!
//! The engine owns sessions and moves packets; it does not know what a
//! Socket.IO packet is. What happens to a message is decided by the
//! [`EngineHandler`] given at construction (the Socket.IO layer, or the plain
//! echo of the conformance fixture).
//!
//! Each session has one outgoing queue of encoded
//! [`Frame`](crate::protocol::engine::Frame)s. Whoever owns the transport
//! drains it: a pending long-polling GET, or the websocket task that writes
//! everything queued with one flush. The queue is bounded in bytes; a client
//! that does not keep up is disconnected.
//!
//! Where things are: `config` (the options), `routing` (the [`Engine`]: one
//! endpoint, its sessions, request routing), `session` (one [`Session`] and
//! every change of its state), `read_gate` (pausing a session's reads for a
//! slow consumer), `polling` and `websocket` (the transports),
//! `response` (HTTP answers and Engine.IO error codes), `burst` (sends
//! deferred to the end of a burst of client messages). This file holds the
//! types the layer above sees.

pub(crate) mod burst;
mod config;
mod polling;
mod read_gate;
mod response;
mod routing;
mod session;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::HeaderMap;

pub use self::config::{Cors, CorsOrigins, EngineConfig};
pub(crate) use self::polling::BodyTimeout;
pub use self::read_gate::ReadGate;
pub use self::response::Body;
pub(crate) use self::response::{ErrorCode, bare_response, error_response, plain_response};
pub use self::routing::Engine;
pub(crate) use self::routing::percent_decode;
pub use self::session::Session;
pub(crate) use self::websocket::ConnectionSocket;
pub use crate::sid::Sid;

/// Why a session ended. The strings are the ones Socket.IO reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the connection or sent `1`.
    TransportClose,
    /// The connection failed or broke the protocol.
    TransportError,
    /// No pong within pingTimeout.
    PingTimeout,
    /// The client sent something unreadable.
    ParseError,
    /// The server closed the session.
    ForcedClose,
    /// The server is stopping.
    ServerShuttingDown,
    /// The server closed the session as part of a socket disconnect.
    ForcedServerClose,
}

impl CloseReason {
    /// Whether a session that ends this way drops what is queued for the
    /// client at once. Only a close decided by the server (forced, or the
    /// server stopping) still delivers what was queued before it, such as
    /// the Socket.IO disconnect packet; the other reasons mean the client is
    /// gone, misbehaving or not reading, and nothing more is written to it.
    pub fn drops_queue(self) -> bool {
        !matches!(self, CloseReason::ForcedClose | CloseReason::ServerShuttingDown | CloseReason::ForcedServerClose)
    }

    /// The reason as Socket.IO spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShuttingDown => "server shutting down",
            CloseReason::ForcedServerClose => "forced server close",
        }
    }
}

/// A message received on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (the `4` stripped).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// Receives new sessions.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session was opened; return what receives its messages.
    fn on_open(&self, session: &Arc<Session>) -> Arc<dyn SessionHandler>;
}

/// Receives one session's messages and its end.
pub trait SessionHandler: Send + Sync + 'static {
    /// A message arrived. Called in order, never concurrently for one session.
    fn on_message(&self, session: &Arc<Session>, message: Message);
    /// The session ended; called once.
    fn on_close(&self, session: &Arc<Session>, reason: CloseReason);
}

/// The HTTP request that opened a session.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Request headers.
    pub headers: HeaderMap,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Peer address.
    pub remote: SocketAddr,
    /// The request URI (path and query).
    pub uri: String,
    /// When the session opened.
    pub time: SystemTime,
}

/// Which transport a session uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// Websocket.
    Websocket,
}
