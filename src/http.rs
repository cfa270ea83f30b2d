//! The one HTTP listener: Engine.IO endpoints, the `socket.io-client`
//! bundle, and an optional directory of static files.
//!
//! Routing only; what an Engine.IO request means is the engine's business.
//! What a connection may cost (timeouts, header size, how many are open) is
//! `connection`'s.

mod connection;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

pub use self::connection::HttpOptions;
use self::connection::{Admission, Connections};
use crate::engine::{Body, BodyTimeout, ConnectionSocket, Engine, percent_decode, plain_response};

const BUNDLE_FILES: &[&str] = &[
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
    "socket.io.msgpack.min.js",
    "socket.io.msgpack.min.js.map",
];

/// The `socket.io-client` browser bundle, read from its npm package's
/// `dist/` on first request and kept in memory.
pub(crate) struct ClientBundle {
    dir: Option<PathBuf>,
    cache: Mutex<HashMap<&'static str, Bytes>>,
    warned: std::sync::Once,
}

impl ClientBundle {
    pub(crate) fn new(configured: Option<PathBuf>) -> ClientBundle {
        let dir = configured.or_else(|| {
            let mut candidates = Vec::new();
            if let Ok(d) = std::env::var("IOBUS_CLIENT_DIR") {
                candidates.push(PathBuf::from(d));
            }
            candidates.push(PathBuf::from("node_modules/socket.io-client/dist"));
            candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/socket.io-client/dist"));
            candidates.into_iter().find(|d| d.join("socket.io.js").is_file())
        });
        ClientBundle { dir, cache: Mutex::new(HashMap::new()), warned: std::sync::Once::new() }
    }

    fn get(&self, name: &'static str) -> Option<Bytes> {
        if let Some(b) = self.cache.lock().get(name) {
            return Some(b.clone());
        }
        let Some(dir) = &self.dir else {
            self.warned.call_once(|| {
                tracing::warn!(
                    "socket.io-client bundle not found: install the npm package socket.io-client \
                     or set IOBUS_CLIENT_DIR to its dist/ directory"
                );
            });
            return None;
        };
        let data = Bytes::from(std::fs::read(dir.join(name)).ok()?);
        self.cache.lock().insert(name, data.clone());
        Some(data)
    }
}

pub(crate) struct Router {
    engines: Vec<Arc<Engine>>,
    bundle: Option<ClientBundle>,
    static_dir: Option<PathBuf>,
}

fn not_found(text: &'static str) -> Response<Body> {
    plain_response(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", Bytes::from_static(text.as_bytes()))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

impl Router {
    pub(crate) fn new(engines: Vec<Arc<Engine>>, bundle: Option<ClientBundle>, static_dir: Option<PathBuf>) -> Router {
        Router { engines, bundle, static_dir }
    }

    async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        for engine in &self.engines {
            let base = engine.config().path.as_str();
            if path == base || path == base.trim_end_matches('/') {
                return engine.handle(req, remote).await;
            }
        }
        if let (Some(bundle), Some(main)) = (&self.bundle, self.engines.first()) {
            if let Some(file) = path.strip_prefix(main.config().path.as_str()) {
                if let Some(name) = BUNDLE_FILES.iter().find(|n| **n == file) {
                    return match bundle.get(name) {
                        Some(data) => {
                            let mut res = plain_response(StatusCode::OK, content_type(Path::new(name)), data);
                            res.headers_mut()
                                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=0"));
                            res
                        }
                        None => not_found("socket.io-client bundle is not installed\n"),
                    };
                }
            }
        }
        if let Some(dir) = &self.static_dir {
            if req.method() == Method::GET || req.method() == Method::HEAD {
                return serve_static(dir, &path).await;
            }
        }
        not_found("not found\n")
    }
}

async fn serve_static(dir: &Path, path: &str) -> Response<Body> {
    let decoded = percent_decode(path);
    let mut rel = PathBuf::new();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            _ => return not_found("not found\n"),
        }
    }
    let mut full = dir.join(&rel);
    if full.is_dir() {
        full = full.join("index.html");
    }
    match tokio::fs::read(&full).await {
        Ok(data) => plain_response(StatusCode::OK, content_type(&full), Bytes::from(data)),
        Err(_) => not_found("not found\n"),
    }
}

/// Accepts connections until `shutdown` is notified, each served within the
/// limits of `options`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Arc<Router>,
    options: HttpOptions,
    shutdown: Arc<tokio::sync::Notify>,
) {
    let connections = Connections::new(options);
    loop {
        crate::sched::wake_deferred_if_late();
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: make room by
                    // closing the longest-idle connection (its task runs
                    // before this one goes on), else wait (don't spin).
                    tracing::warn!("accept failed: {e}");
                    if connections.evict_idlest() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            _ = shutdown.notified() => return,
        };
        let _ = stream.set_nodelay(true);
        let socket = ConnectionSocket::of(&stream);
        let (io, conn) = match connections.admit(stream) {
            Admission::Serve(io, conn) => (io, conn),
            Admission::Refuse(stream) => {
                tokio::spawn(connection::refuse(stream));
                continue;
            }
        };
        let router = router.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            let watched = conn.clone();
            let registry = connections.clone();
            let body_timeout = BodyTimeout(connections.options().header_timeout);
            let service = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(socket);
                req.extensions_mut().insert(body_timeout);
                let router = router.clone();
                let conn = conn.clone();
                let registry = registry.clone();
                async move {
                    conn.request_started();
                    let res = router.handle(req, remote).await;
                    conn.request_done(&registry, res.status() == StatusCode::SWITCHING_PROTOCOLS);
                    Ok::<_, Infallible>(res)
                }
            });
            let options = connections.options();
            let http = http1::Builder::new()
                .keep_alive(true)
                // Read deadlines are the watchdog's (`Connections::watch`).
                .header_read_timeout(None)
                .max_header_size(options.max_header_bytes)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            let http = async {
                if let Err(e) = http.await {
                    tracing::debug!("http connection ended: {e}");
                }
            };
            connections.watch(&watched, http).await;
        });
    }
}
