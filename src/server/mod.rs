//! The Socket.IO server: options, namespaces, and the lifecycle of the
//! background runtime that serves them.
//!
//! ```no_run
//! use iobus::{Server, ServerOptions};
//! use serde_json::json;
//!
//! let server = Server::new(ServerOptions::default());
//! let chat = server.of("/");
//! chat.on("chat message", |socket, args, _ack| {
//!     let _ = socket.namespace().emit("chat message", args);
//! });
//! chat.on("ping", |_socket, _args, ack| {
//!     if let Some(ack) = ack {
//!         let _ = ack.send(vec![json!("pong")]);
//!     }
//! });
//! let addr = server.start("127.0.0.1:3000").unwrap();
//! println!("listening on {addr}");
//! # server.stop();
//! ```

mod adapter;
mod broadcast;
mod client;
mod namespace;
mod payload;
mod recovery;
mod rooms;
mod socket;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

pub use adapter::{
    Adapter, AdapterFactory, BroadcastAckResult, BroadcastAcks, BroadcastFlags, BroadcastOptions, EventPacket,
    MemoryAdapter, MemoryAdapterFactory, RestoreDone, RestoredSession, ServerSideReply, SessionReplay, SocketInfo,
};
pub use broadcast::BroadcastOperator;
pub use namespace::{
    AnyEventHandler, ConnectHandler, ConnectionHandler, DisconnectHandler, EventHandler, Handlers, Namespace,
    ServerSideHandler,
};
pub use payload::{Payload, placeholder};
pub use recovery::{RecoveryLog, RecoveryOptions, SavedSession};
pub use rooms::RoomIndex;
pub use socket::{AckCallback, AckError, AckSender, ConnectRequest, DisconnectReason, EmitError, Handshake, Socket};

use crate::Sid;
use crate::engine::{CloseReason, Engine, EngineConfig, EngineHandler};
use crate::http::{ClientBundle, HttpOptions, Router};

/// Server settings. `Default` gives Socket.IO's defaults.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Engine.IO settings: path, heartbeat, payload limit, transports, CORS.
    pub engine: EngineConfig,
    /// Limits of the HTTP listener: timeouts, header size, open connections.
    pub http: HttpOptions,
    /// How long a connection may stay without joining a namespace.
    pub connect_timeout: Duration,
    /// Most binary attachments one packet may carry.
    pub max_attachments: usize,
    /// Worker threads of the background runtime.
    pub worker_threads: usize,
    /// Whether the library's threads run in the batch scheduling class
    /// (Linux `SCHED_BATCH`): woken, they do not preempt the running thread,
    /// so threads sharing a core hand work over in batches instead of
    /// switching at every event. On by default; turn it off if the network
    /// threads must preempt the host's own threads on a busy core.
    pub batch_scheduling: bool,
    /// Whether to serve `socket.io.js` and friends under the path.
    pub serve_client: bool,
    /// Where the `socket.io-client` `dist/` files are; `None` looks in the
    /// usual places (`IOBUS_CLIENT_DIR`, `./node_modules/socket.io-client/dist`).
    pub client_dir: Option<PathBuf>,
    /// A directory of static files served for every other path.
    pub static_dir: Option<PathBuf>,
    /// Makes each namespace's adapter: in memory (this node only) by
    /// default; one that connects several nodes to share rooms and
    /// broadcasts.
    pub adapter: Arc<dyn AdapterFactory>,
    /// Connection state recovery (off by default, as in Socket.IO): a
    /// client that drops and comes back within the limit gets its socket
    /// id, rooms, data and every packet it missed.
    pub connection_state_recovery: Option<RecoveryOptions>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            engine: EngineConfig::default(),
            http: HttpOptions::default(),
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: 10,
            worker_threads: 2,
            batch_scheduling: true,
            serve_client: true,
            client_dir: None,
            static_dir: None,
            adapter: Arc::new(MemoryAdapterFactory),
            connection_state_recovery: None,
        }
    }
}

/// Why [`Server::start`] failed.
fn already_running() -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, "server is already running")
}

type NamespaceMatcher = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// What every namespace of a server shares: the runtime while it runs, and
/// the maker of adapters.
pub(crate) struct Shared {
    pub(crate) runtime: RwLock<Option<tokio::runtime::Handle>>,
    pub(crate) adapter: Arc<dyn AdapterFactory>,
    pub(crate) recovery: Option<RecoveryOptions>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared { runtime: RwLock::new(None), adapter: Arc::new(MemoryAdapterFactory), recovery: None }
    }
}

pub(crate) struct ServerInner {
    pub(crate) options: ServerOptions,
    pub(crate) shared: Arc<Shared>,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    dynamic: RwLock<Vec<(NamespaceMatcher, Arc<Namespace>)>>,
}

impl ServerInner {
    /// The namespace a CONNECT addresses: a configured one, or a new one
    /// accepted by a dynamic matcher.
    pub(crate) fn namespace_for(&self, name: &str) -> Option<Arc<Namespace>> {
        self.lookup(name, false)
    }

    /// Like `namespace_for`, and counts a socket joining it, under the same
    /// lock that removes empty dynamic namespaces.
    pub(crate) fn namespace_for_socket(&self, name: &str) -> Option<Arc<Namespace>> {
        self.lookup(name, true)
    }

    fn lookup(&self, name: &str, for_socket: bool) -> Option<Arc<Namespace>> {
        {
            let namespaces = self.namespaces.read();
            if let Some(nsp) = namespaces.get(name) {
                if for_socket {
                    nsp.live.fetch_add(1, Ordering::AcqRel);
                }
                return Some(nsp.clone());
            }
        }
        let template = {
            let dynamic = self.dynamic.read();
            dynamic.iter().find(|(matches, _)| matches(name)).map(|(_, t)| t.handlers.clone())
        }?;
        let mut namespaces = self.namespaces.write();
        let nsp = namespaces
            .entry(name.to_owned())
            .or_insert_with(|| Namespace::new(name, template, true, self.shared.clone()))
            .clone();
        if for_socket {
            nsp.live.fetch_add(1, Ordering::AcqRel);
        }
        Some(nsp)
    }

    /// A socket of `nsp` is gone; a dynamic namespace left empty is
    /// forgotten, so that names clients try do not pile up.
    pub(crate) fn socket_left(&self, nsp: &Arc<Namespace>) {
        if nsp.live.fetch_sub(1, Ordering::AcqRel) != 1 || !nsp.is_dynamic() {
            return;
        }
        let mut namespaces = self.namespaces.write();
        if nsp.live.load(Ordering::Acquire) == 0 && namespaces.get(nsp.name()).is_some_and(|n| Arc::ptr_eq(n, nsp)) {
            namespaces.remove(nsp.name());
            drop(namespaces);
            nsp.adapter().stop();
        }
    }
}

struct Running {
    runtime: tokio::runtime::Runtime,
    shutdown: Arc<tokio::sync::Notify>,
    engines: Vec<Arc<Engine>>,
    local_addr: SocketAddr,
}

/// A Socket.IO server with its own background runtime.
pub struct Server {
    inner: Arc<ServerInner>,
    extra_engines: Mutex<Vec<(EngineConfig, Arc<dyn EngineHandler>)>>,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr()).finish()
    }
}

fn normalize_nsp(name: &str) -> String {
    if name.starts_with('/') { name.to_owned() } else { format!("/{name}") }
}

/// Matches `text` against a pattern where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

impl Server {
    /// A server with these options; nothing listens until [`start`](Self::start).
    pub fn new(options: ServerOptions) -> Server {
        let shared = Arc::new(Shared {
            runtime: RwLock::new(None),
            adapter: options.adapter.clone(),
            recovery: options.connection_state_recovery.clone(),
        });
        Server {
            inner: Arc::new(ServerInner {
                shared,
                options,
                namespaces: RwLock::new(HashMap::new()),
                dynamic: RwLock::new(Vec::new()),
            }),
            extra_engines: Mutex::new(Vec::new()),
            running: Mutex::new(None),
        }
    }

    /// The options the server was made with.
    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    /// The namespace `name`, created if needed (`"admin"` means `/admin`).
    pub fn of(&self, name: &str) -> Arc<Namespace> {
        let name = normalize_nsp(name);
        if let Some(nsp) = self.inner.namespace_for(&name) {
            return nsp;
        }
        self.inner
            .namespaces
            .write()
            .entry(name.clone())
            .or_insert_with(|| Namespace::new(&name, Arc::new(Handlers::default()), false, self.inner.shared.clone()))
            .clone()
    }

    /// Accepts every namespace for which `matches` says yes. Handlers set on
    /// the returned template serve all of them; use [`of`](Self::of) to reach
    /// one of them for a broadcast.
    pub fn dynamic_namespace(&self, matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Arc<Namespace> {
        // A template is never started: it only holds handlers.
        let template = Namespace::new("*", Arc::new(Handlers::default()), false, Arc::new(Shared::default()));
        self.inner.dynamic.write().push((Box::new(matches), template.clone()));
        template
    }

    /// Accepts every namespace matching a pattern where `*` is a wildcard
    /// (`/room-*`).
    pub fn dynamic_namespace_pattern(&self, pattern: &str) -> Arc<Namespace> {
        let pattern = pattern.to_owned();
        self.dynamic_namespace(move |name| glob_match(&pattern, name))
    }

    /// The namespace `name` if it exists (never creates one).
    pub fn existing(&self, name: &str) -> Option<Arc<Namespace>> {
        self.inner.namespaces.read().get(&normalize_nsp(name)).cloned()
    }

    /// A connected socket of any namespace, by id.
    pub fn socket(&self, sid: Sid) -> Option<Arc<Socket>> {
        self.inner.namespaces.read().values().find_map(|nsp| nsp.socket(sid))
    }

    /// Replaces the application data kept for a socket that dropped and may
    /// still be recovered (connection state recovery); whether one was kept.
    pub fn set_dropped_socket_data(&self, sid: &str, data: serde_json::Value) -> bool {
        self.namespaces()
            .iter()
            .any(|nsp| nsp.recovery().is_some() && nsp.adapter().update_session_data(nsp, sid, data.clone()))
    }

    /// The namespaces that exist now.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.inner.namespaces.read().values().cloned().collect()
    }

    /// Serves a plain Engine.IO endpoint beside Socket.IO on the same
    /// listener, with its own settings (`config.path`) and handler. Takes
    /// effect at the next start.
    pub fn add_engine(&self, config: EngineConfig, handler: Arc<dyn EngineHandler>) {
        self.extra_engines.lock().push((config, handler));
    }

    /// The address the server listens on, while running.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.lock().as_ref().map(|r| r.local_addr)
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Binds `addr` and serves it from a new background runtime. Returns the
    /// bound address (useful with port 0). Fails, without serving, when the
    /// address cannot be bound or the adapter cannot reach what connects
    /// the nodes (a Redis server).
    pub fn start(&self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        let mut running = self.running.lock();
        if running.is_some() {
            return Err(already_running());
        }
        let batch = self.inner.options.batch_scheduling;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.inner.options.worker_threads.max(1))
            .thread_name("iobus-worker")
            .on_thread_start(move || {
                if batch {
                    crate::sched::batch_this_thread();
                }
            })
            // What a worker deferred waking (see `sched::wake_later`) is
            // woken when it runs out of work, and when it ends. Only workers
            // park, so this also tells them from the blocking pool's threads
            // (which wake at once).
            .on_thread_park(crate::sched::network_thread_parks)
            .on_thread_stop(crate::sched::wake_deferred)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };

        let handle = runtime.handle().clone();
        let mut engines = vec![Engine::new(
            self.inner.options.engine.clone(),
            Arc::new(client::SocketIoHandler { server: self.inner.clone(), runtime: handle.clone() }),
            handle.clone(),
        )];
        for (config, handler) in self.extra_engines.lock().iter() {
            engines.push(Engine::new(config.clone(), handler.clone(), handle.clone()));
        }
        let bundle = if self.inner.options.serve_client {
            Some(ClientBundle::new(self.inner.options.client_dir.clone()))
        } else {
            None
        };
        *self.inner.shared.runtime.write() = Some(handle.clone());
        for nsp in self.namespaces() {
            nsp.adapter().start(&nsp, &handle);
        }
        // Shared adapter connections (a Redis server, ...) open last, so
        // that they serve every namespace that exists; failing, they fail
        // the start.
        if let Err(e) = self.inner.shared.adapter.start(&handle) {
            *self.inner.shared.runtime.write() = None;
            for nsp in self.namespaces() {
                nsp.adapter().stop();
            }
            self.inner.shared.adapter.stop();
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(1));
            }
            return Err(e);
        }
        let router = Arc::new(Router::new(engines.clone(), bundle, self.inner.options.static_dir.clone()));
        let shutdown = Arc::new(tokio::sync::Notify::new());
        runtime.spawn(crate::http::serve(listener, router, self.inner.options.http.clone(), shutdown.clone()));
        *running = Some(Running { runtime, shutdown, engines, local_addr });
        Ok(local_addr)
    }

    /// Stops gracefully: no new connections, every socket disconnects with
    /// `server shutting down`, queued packets are flushed (briefly), then the
    /// runtime and its threads end. Does nothing when not running.
    pub fn stop(&self) {
        let Some(running) = self.running.lock().take() else {
            return;
        };
        running.shutdown.notify_one();
        for engine in &running.engines {
            engine.close_all(CloseReason::ServerShuttingDown);
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && running.engines.iter().any(|e| e.session_count() > 0) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Let transports write their last frames.
        std::thread::sleep(Duration::from_millis(20));
        *self.inner.shared.runtime.write() = None;
        for nsp in self.namespaces() {
            nsp.adapter().stop();
            // A restarted server recovers nothing from before.
            if let Some(log) = nsp.recovery() {
                log.clear();
            }
        }
        self.inner.shared.adapter.stop();
        if tokio::runtime::Handle::try_current().is_ok() {
            running.runtime.shutdown_background();
        } else {
            running.runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_patterns() {
        assert!(glob_match("/dyn-*", "/dyn-abc"));
        assert!(glob_match("/dyn-*", "/dyn-"));
        assert!(!glob_match("/dyn-*", "/dy"));
        assert!(glob_match("*", "/anything"));
        assert!(glob_match("/a*c", "/abbbc"));
        assert!(!glob_match("/a*c", "/abbbd"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exact2"));
    }
}
