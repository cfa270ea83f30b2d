//! Engine.IO v4 sessions: handshake, heartbeat, the two transports and the
//! upgrade between them.
//!
//! The engine owns sessions and moves packets; it does not know what a
//! Socket.IO packet is. What happens to a message is decided by the
//! [`EngineHandler`] given at construction (the Socket.IO layer, or the plain
//! echo of the conformance fixture).
//!
//! Each session has one outgoing queue of encoded [`Frame`]s. Whoever owns
//! the transport drains it: a pending long-polling GET, or the websocket task
//! that writes everything queued with one flush. The queue is bounded in
//! bytes; a client that does not keep up is disconnected.

pub(crate) mod burst;
mod polling;
mod read_gate;
mod websocket;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::protocol::engine::{Frame, Packet};
pub use crate::sid::Sid;
pub use read_gate::ReadGate;

/// Response body type of every HTTP answer.
pub type Body = Full<Bytes>;

/// Which origins may call the server from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Every origin (`*`).
    Any,
    /// Only these exact origins (`https://example.com`).
    List(Vec<String>),
}

/// Cross-origin settings for the Engine.IO endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins.
    pub origins: CorsOrigins,
    /// Whether to send `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// Preflight cache duration, in seconds.
    pub max_age: Option<u64>,
}

impl Cors {
    /// Every origin, without credentials.
    pub fn any() -> Cors {
        Cors { origins: CorsOrigins::Any, credentials: false, max_age: None }
    }
}

/// Engine.IO settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Request path, with a trailing slash (`/socket.io/`).
    pub path: String,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long the server waits for the pong.
    pub ping_timeout: Duration,
    /// Largest message or POST body accepted, in bytes (maxHttpBufferSize).
    pub max_payload: usize,
    /// How long an upgrade may take from probe to `5`.
    pub upgrade_timeout: Duration,
    /// Whether HTTP long-polling is offered.
    pub polling: bool,
    /// Whether websocket is offered.
    pub websocket: bool,
    /// Whether a polling session may upgrade to websocket.
    pub allow_upgrades: bool,
    /// Cross-origin settings; `None` sends no CORS headers.
    pub cors: Option<Cors>,
    /// Bytes a session may have queued before it counts as a slow consumer
    /// and is closed.
    pub max_buffered_bytes: usize,
    /// Websocket read buffer per connection.
    pub ws_read_buffer: usize,
    /// Websocket write buffer per connection (frames are coalesced into it).
    pub ws_write_buffer: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_millis(10_000),
            polling: true,
            websocket: true,
            allow_upgrades: true,
            cors: None,
            max_buffered_bytes: 16 * 1024 * 1024,
            ws_read_buffer: 1024,
            ws_write_buffer: 4096,
        }
    }
}

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

struct SessionState {
    transport: TransportKind,
    upgrading: bool,
    /// A websocket for this session is open and waiting for its probe.
    probing: bool,
    queue: VecDeque<Frame>,
    queued_bytes: usize,
    closed: Option<CloseReason>,
    get_active: bool,
    post_active: bool,
    awaiting_pong: bool,
}

/// One Engine.IO session.
pub struct Session {
    sid: Sid,
    /// The engine's max_buffered_bytes, kept here for the hot path.
    max_buffered: usize,
    engine: Weak<Engine>,
    request: RequestInfo,
    state: Mutex<SessionState>,
    /// Wakes the queue's consumer: data queued, upgrade done, or closed.
    wake: Notify,
    /// Wakes everyone waiting for the end of the session.
    closed_signal: Notify,
    /// Wakes the heartbeat when a pong arrives.
    pong: Notify,
    handler: Mutex<Option<Arc<dyn SessionHandler>>>,
    /// Closed while the session's consumer is behind (see `read_gate`).
    read_gate: Arc<ReadGate>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("sid", &self.sid).finish()
    }
}

impl Session {
    /// The Engine.IO session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The request that opened the session.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        self.state.lock().transport
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Queues frames for the client, in order. Returns false when the
    /// session is closed. A client whose queue outgrows the bound is closed.
    pub fn send_frames<'a>(self: &Arc<Self>, frames: impl IntoIterator<Item = &'a Frame>) -> bool {
        burst::flush();
        let limit = self.max_buffered;
        let overflow;
        let was_empty;
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return false;
            }
            was_empty = st.queue.is_empty();
            for f in frames {
                st.queued_bytes += f.len();
                st.queue.push_back(f.clone());
            }
            overflow = st.queued_bytes > limit;
        }
        if overflow {
            tracing::debug!(sid = %self.sid, "closing a session that does not read its queue");
            // Closed from a task of its own: the sender may hold locks (a
            // broadcast walks the room under them) that closing needs.
            if let Some(engine) = self.engine.upgrade() {
                let session = self.clone();
                engine.runtime.spawn(async move { session.close(CloseReason::TransportError) });
            }
            return false;
        }
        // Whoever drains the queue (the websocket writer, a pending GET)
        // looks at it before waiting and waits only when it is empty, so
        // only the push that makes it non-empty needs to wake them: under
        // load (a burst of broadcasts) the other pushes skip the wake-up.
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Queues one frame.
    pub fn send(self: &Arc<Self>, frame: Frame) -> bool {
        self.send_frames(std::iter::once(&frame))
    }

    /// Queues frames only if the transport can take them right now (nothing
    /// waiting, and for polling a request open); otherwise drops them.
    pub fn send_volatile<'a>(&self, frames: impl IntoIterator<Item = &'a Frame>) -> bool {
        burst::flush();
        {
            let mut st = self.state.lock();
            let writable = st.closed.is_none()
                && st.queue.is_empty()
                && !st.upgrading
                && (st.transport == TransportKind::Websocket || st.get_active);
            if !writable {
                return false;
            }
            for f in frames {
                st.queued_bytes += f.len();
                st.queue.push_back(f.clone());
            }
        }
        self.wake.notify_one();
        true
    }

    /// Ends the session. Frames already queued are still delivered before
    /// the transport closes. Idempotent.
    pub fn close(self: &Arc<Self>, reason: CloseReason) {
        burst::flush();
        let keep_for_poll;
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
            // A polling client learns of a server-side close on its next GET
            // (after the packets queued before it), so the session stays
            // findable a while. So does a session the client closed with a
            // POST while no GET was pending: a GET racing with that POST still
            // gets its noop.
            let server_side = matches!(
                reason,
                CloseReason::ForcedClose | CloseReason::ServerShuttingDown | CloseReason::ForcedServerClose
            );
            let client_side = reason == CloseReason::TransportClose && !st.get_active;
            keep_for_poll = st.transport == TransportKind::Polling && (server_side || client_side);
        }
        self.wake.notify_waiters();
        self.wake.notify_one();
        self.closed_signal.notify_waiters();
        if let Some(engine) = self.engine.upgrade() {
            if keep_for_poll {
                let weak = Arc::downgrade(&engine);
                let sid = self.sid;
                let linger = engine.config.ping_interval + engine.config.ping_timeout;
                engine.runtime.spawn(async move {
                    tokio::time::sleep(linger).await;
                    if let Some(engine) = weak.upgrade() {
                        engine.remove(sid);
                    }
                });
            } else {
                engine.remove(self.sid);
            }
        }
        let handler = self.handler.lock().take();
        if let Some(h) = handler {
            h.on_close(self, reason);
        }
    }

    /// Resolves once the session has ended.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed_signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    fn handler(&self) -> Option<Arc<dyn SessionHandler>> {
        self.handler.lock().clone()
    }

    /// Handles a packet from either transport.
    fn on_packet(self: &Arc<Self>, packet: Packet) {
        match packet {
            Packet::Message(text) => {
                if let Some(h) = self.handler() {
                    h.on_message(self, Message::Text(text));
                }
            }
            Packet::Binary(data) => {
                if let Some(h) = self.handler() {
                    h.on_message(self, Message::Binary(data));
                }
            }
            Packet::Pong(_) => {
                self.read_gate.pong_received();
                let was_waiting = std::mem::replace(&mut self.state.lock().awaiting_pong, false);
                if was_waiting {
                    self.pong.notify_one();
                }
            }
            Packet::Close => self.close(CloseReason::TransportClose),
            // The heartbeat goes from server to client in v4; a client ping
            // (other than an upgrade probe, handled by the websocket task)
            // breaks the protocol.
            Packet::Ping(_) => self.close(CloseReason::TransportError),
            Packet::Open => self.close(CloseReason::ParseError),
            Packet::Upgrade | Packet::Noop => {}
        }
    }

    /// Takes queued frames, at most about `max_bytes` (always at least one).
    /// Takes every queued frame, handing each to `f` under the session's
    /// lock (no intermediate list): `f` must not call back into the session.
    fn drain_frames(&self, mut f: impl FnMut(Frame)) -> usize {
        let mut st = self.state.lock();
        st.queued_bytes = 0;
        let n = st.queue.len();
        for frame in st.queue.drain(..) {
            f(frame);
        }
        n
    }

    fn take_frames(&self, max_bytes: usize, polling: bool) -> Vec<Frame> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(st.queue.len().min(256));
        let mut size = 0;
        while let Some(front) = st.queue.front() {
            let len = if polling { front.polling_len() + 1 } else { front.len() };
            if !out.is_empty() && size + len > max_bytes {
                break;
            }
            size += len;
            if let Some(f) = st.queue.pop_front() {
                st.queued_bytes -= f.len();
                out.push(f);
            }
        }
        out
    }

    async fn heartbeat(self: Arc<Self>, interval: Duration, timeout: Duration) {
        // Deadlines are planned from the previous one, so timer lateness
        // does not add up: the session ends interval + timeout after the
        // last pong, not a few milliseconds later.
        let mut next_ping = tokio::time::Instant::now() + interval;
        // Pings sent, and where the gate was when the client had answered them all.
        let (mut pings, mut answered) = (0, self.read_gate.mark());
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_ping) => {}
                _ = self.closed() => return,
            }
            self.state.lock().awaiting_pong = true;
            pings += 1;
            let pinged = self.read_gate.mark();
            if !self.send(Frame::ping()) {
                return;
            }
            let deadline = next_ping + timeout;
            tokio::select! {
                _ = self.pong.notified() => {
                    next_ping = tokio::time::Instant::now() + interval;
                    if self.read_gate.pongs() >= pings {
                        answered = self.read_gate.mark();
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.state.lock().awaiting_pong {
                        if !self.read_gate.excuses_silence(answered, pinged) {
                            self.close(CloseReason::PingTimeout);
                            return;
                        }
                        // The pong may be unread behind paused reads: ping
                        // again now (the client wants one within interval +
                        // timeout of the last).
                        next_ping = tokio::time::Instant::now();
                    }
                }
                _ = self.closed() => return,
            }
        }
    }
}

/// An Engine.IO server: the sessions of one path.
pub struct Engine {
    config: EngineConfig,
    sessions: RwLock<HashMap<Sid, Arc<Session>, crate::sid::SidHasher>>,
    handler: Arc<dyn EngineHandler>,
    runtime: tokio::runtime::Handle,
    closing: AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.config.path).finish()
    }
}

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
fn upgrade_error_response(code: ErrorCode) -> Response<Body> {
    plain_response(StatusCode::BAD_REQUEST, "text/html", Bytes::from_static(code.message().as_bytes()))
}

pub(crate) fn plain_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// A copy of request headers that owns its bytes. The parsed headers point
/// into the connection's whole read buffer; keeping them for the life of a
/// session would keep that buffer too.
fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            out.append(name.clone(), v);
        }
    }
    out
}

/// Decodes `%xx` and `+` in a query component.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string into decoded pairs.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

fn query_get<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

impl Engine {
    /// An engine for `config.path`, spawning its timers on `runtime`.
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>, runtime: tokio::runtime::Handle) -> Arc<Engine> {
        Arc::new(Engine {
            config,
            sessions: RwLock::new(HashMap::default()),
            handler,
            runtime,
            closing: AtomicBool::new(false),
        })
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    /// A session by id.
    pub fn session(&self, sid: Sid) -> Option<Arc<Session>> {
        self.sessions.read().get(&sid).cloned()
    }

    fn remove(&self, sid: Sid) {
        self.sessions.write().remove(&sid);
    }

    /// Closes every session with `reason` and refuses new ones.
    pub fn close_all(&self, reason: CloseReason) {
        self.closing.store(true, Ordering::SeqCst);
        let sessions: Vec<_> = self.sessions.read().values().cloned().collect();
        for s in sessions {
            s.close(reason);
        }
    }

    fn open_session(self: &Arc<Self>, transport: TransportKind, request: RequestInfo) -> Arc<Session> {
        let upgrades: &[&str] =
            if transport == TransportKind::Polling && self.config.websocket && self.config.allow_upgrades {
                &["websocket"]
            } else {
                &[]
            };
        let sid = Sid::new();
        let open = crate::protocol::engine::open_packet(
            sid.as_str(),
            upgrades,
            self.config.ping_interval.as_millis() as u64,
            self.config.ping_timeout.as_millis() as u64,
            self.config.max_payload,
        );
        let session = Arc::new(Session {
            sid,
            max_buffered: self.config.max_buffered_bytes,
            engine: Arc::downgrade(self),
            request,
            state: Mutex::new(SessionState {
                transport,
                upgrading: false,
                probing: false,
                queued_bytes: open.len(),
                queue: VecDeque::from([open]),
                closed: None,
                get_active: false,
                post_active: false,
                awaiting_pong: false,
            }),
            wake: Notify::new(),
            closed_signal: Notify::new(),
            pong: Notify::new(),
            handler: Mutex::new(None),
            read_gate: Arc::default(),
        });
        self.sessions.write().insert(sid, session.clone());
        let handler = self.handler.on_open(&session);
        *session.handler.lock() = Some(handler);
        self.runtime.spawn(session.clone().heartbeat(self.config.ping_interval, self.config.ping_timeout));
        session
    }

    fn cors_headers(&self, req_headers: &HeaderMap, res_headers: &mut HeaderMap) {
        let Some(cors) = &self.config.cors else {
            return;
        };
        let origin = req_headers.get(header::ORIGIN);
        let allow = match (&cors.origins, origin) {
            (CorsOrigins::Any, Some(o)) if cors.credentials => Some(o.clone()),
            (CorsOrigins::Any, _) => Some(HeaderValue::from_static("*")),
            (CorsOrigins::List(list), Some(o)) => {
                o.to_str().ok().filter(|o| list.iter().any(|allowed| allowed == o)).map(|_| o.clone())
            }
            (CorsOrigins::List(_), None) => None,
        };
        if let Some(allow) = allow {
            if allow != "*" {
                res_headers.insert(header::VARY, HeaderValue::from_static("Origin"));
            }
            res_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            if cors.credentials {
                res_headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
        }
    }

    fn preflight(&self, req_headers: &HeaderMap) -> Response<Body> {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"));
        if let Some(requested) = req_headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
            h.insert(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
        }
        if let Some(age) = self.config.cors.as_ref().and_then(|c| c.max_age) {
            if let Ok(v) = HeaderValue::from_str(&age.to_string()) {
                h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
            }
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        res
    }

    /// Answers one HTTP request addressed to this engine's path.
    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let req_headers = req.headers().clone();
        let mut res = self.route(req, remote).await;
        self.cors_headers(&req_headers, res.headers_mut());
        res
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        if req.method() == Method::OPTIONS && self.config.cors.is_some() {
            return self.preflight(req.headers());
        }
        let is_ws_request = websocket::is_upgrade_request(&req);
        let mut res = self.route_request(req, remote, is_ws_request).await;
        if is_ws_request && res.status() == StatusCode::BAD_REQUEST {
            // Websocket clients get the refusal as text, as other servers send it.
            let code = res.extensions().get::<ErrorCode>().copied();
            if let Some(code) = code {
                res = upgrade_error_response(code);
            }
        }
        res
    }

    async fn route_request(
        self: &Arc<Self>,
        req: Request<Incoming>,
        remote: SocketAddr,
        is_ws_request: bool,
    ) -> Response<Body> {
        let query = parse_query(req.uri().query());
        let transport = match query_get(&query, "transport") {
            Some("polling") if self.config.polling => TransportKind::Polling,
            Some("websocket") if self.config.websocket => TransportKind::Websocket,
            _ => return error_response(ErrorCode::UnknownTransport),
        };
        let sid = match query_get(&query, "sid") {
            None => None,
            Some(text) => match Sid::parse(text).and_then(|sid| self.session(sid)) {
                Some(session) => Some(session),
                None => return error_response(ErrorCode::UnknownSid),
            },
        };

        match sid {
            None => {
                if req.method() != Method::GET {
                    return error_response(ErrorCode::BadHandshakeMethod);
                }
                if query_get(&query, "EIO") != Some("4") {
                    return error_response(ErrorCode::UnsupportedProtocolVersion);
                }
                if transport == TransportKind::Websocket && !is_ws_request {
                    return error_response(ErrorCode::BadRequest);
                }
                if self.closing.load(Ordering::SeqCst) {
                    return error_response(ErrorCode::Forbidden);
                }
                let info = RequestInfo {
                    headers: owned_headers(req.headers()),
                    query,
                    remote,
                    uri: req.uri().to_string(),
                    time: SystemTime::now(),
                };
                match transport {
                    TransportKind::Polling => {
                        let session = self.open_session(TransportKind::Polling, info);
                        polling::get(self, session).await
                    }
                    TransportKind::Websocket => websocket::accept(self, req, websocket::Purpose::Open(info)),
                }
            }
            Some(_) if query_get(&query, "EIO") != Some("4") => error_response(ErrorCode::BadRequest),
            Some(session) => match transport {
                TransportKind::Polling => {
                    if session.transport() != TransportKind::Polling {
                        return error_response(ErrorCode::BadRequest);
                    }
                    match *req.method() {
                        Method::GET => polling::get(self, session).await,
                        Method::POST => polling::post(self, session, req).await,
                        _ => bare_response(StatusCode::INTERNAL_SERVER_ERROR),
                    }
                }
                TransportKind::Websocket => {
                    let can_upgrade = {
                        let mut st = session.state.lock();
                        let free = st.transport == TransportKind::Polling
                            && !st.upgrading
                            && !st.probing
                            && st.closed.is_none();
                        if free && is_ws_request && self.config.allow_upgrades {
                            st.probing = true;
                        }
                        free
                    };
                    if !is_ws_request || !self.config.allow_upgrades {
                        return error_response(ErrorCode::BadRequest);
                    }
                    if !can_upgrade {
                        return websocket::accept(self, req, websocket::Purpose::Refuse);
                    }
                    websocket::accept(self, req, websocket::Purpose::Upgrade(session))
                }
            },
        }
    }
}
