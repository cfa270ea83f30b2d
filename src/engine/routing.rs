//! Routing of one Engine.IO endpoint: the [`Engine`] holds the sessions of
//! its path, answers CORS, and sends each request to the handshake, the
//! polling transport or the websocket transport. Query parsing lives here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use parking_lot::RwLock;

use super::config::{CorsOrigins, EngineConfig};
use super::response::{Body, ErrorCode, bare_response, error_response, upgrade_error_response};
use super::session::Session;
use super::{CloseReason, EngineHandler, RequestInfo, Sid, TransportKind, polling, websocket};

/// An Engine.IO server: the sessions of one path.
pub struct Engine {
    pub(super) config: EngineConfig,
    sessions: RwLock<HashMap<Sid, Arc<Session>, crate::sid::SidHasher>>,
    handler: Arc<dyn EngineHandler>,
    pub(super) runtime: tokio::runtime::Handle,
    closing: AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.config.path).finish()
    }
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

    pub(super) fn remove(&self, sid: Sid) {
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

    pub(super) fn open_session(self: &Arc<Self>, transport: TransportKind, request: RequestInfo) -> Arc<Session> {
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
        let session =
            Arc::new(Session::new(sid, Arc::downgrade(self), request, transport, open, self.config.max_buffered_bytes));
        self.sessions.write().insert(sid, session.clone());
        let handler = self.handler.on_open(&session);
        session.set_handler(handler);
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
                    let can_upgrade = session.claim_probe(is_ws_request && self.config.allow_upgrades);
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
