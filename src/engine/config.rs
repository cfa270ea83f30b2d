//! Engine.IO settings: the options of one endpoint and its cross-origin
//! policy. Plain data; the engine reads them, nothing here acts on them.

use std::time::Duration;

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
    /// Bytes held for one client: packets queued for it plus what its
    /// transport has taken and not delivered yet (the websocket writer's
    /// buffer, the last polling response). Default 4 MiB. A client that
    /// falls behind first loses its volatile packets (they are sent only
    /// when nothing is pending); a send that would take it over this bound
    /// closes its session (`transport error`) and drops what it held. A
    /// single message larger than the bound still goes to a client that
    /// holds nothing else.
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
            max_buffered_bytes: 4 * 1024 * 1024,
            ws_read_buffer: 1024,
            ws_write_buffer: 4096,
        }
    }
}
