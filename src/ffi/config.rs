//! `iobus_config`: every server option of the core, set one at a time.

use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

use super::convert::{null, text};
use super::dispatch::iobus_dispatch;
use super::{Error, guard, guard_void, iobus_status};
use crate::ServerOptions;
use crate::engine::{Cors, CorsOrigins};

/// Server settings, created with `iobus_config_new` and freed with
/// `iobus_config_free`. `iobus_server_new` copies them.
pub struct iobus_config {
    pub(crate) options: ServerOptions,
    pub(crate) dispatch: iobus_dispatch,
}

fn with(cfg: *mut iobus_config, f: impl FnOnce(&mut iobus_config) -> Result<(), Error>) -> iobus_status {
    guard(|| {
        // SAFETY: NULL or a live handle from `iobus_config_new`.
        let cfg = unsafe { cfg.as_mut() }.ok_or_else(|| null("config"))?;
        f(cfg)
    })
}

/// Longest timeout or interval accepted, in milliseconds (one day): a
/// longer one is surely a mistake (and would overflow deadline arithmetic).
const MAX_MS: u64 = 24 * 60 * 60 * 1000;
/// Largest payload or buffer size accepted, in bytes (1 GiB).
const MAX_BYTES: usize = 1 << 30;
/// Most attachments per packet accepted.
const MAX_ATTACHMENTS: usize = 1000;
/// Smallest request head size limit accepted (a request line alone can
/// take a few hundred bytes).
const MIN_HEADER_BYTES: usize = 1024;
/// Most network worker threads accepted.
const MAX_WORKER_THREADS: usize = 1024;

fn invalid(message: String) -> Error {
    Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, message)
}

/// A duration in milliseconds, from 1 ms to a day.
fn positive(ms: u64, what: &str) -> Result<Duration, Error> {
    if ms == 0 || ms > MAX_MS {
        return Err(invalid(format!("{what} must be between 1 and {MAX_MS} ms, not {ms}")));
    }
    Ok(Duration::from_millis(ms))
}

/// A byte size between `min` and 1 GiB.
fn bytes_in_range(bytes: usize, min: usize, what: &str) -> Result<usize, Error> {
    if bytes < min || bytes > MAX_BYTES {
        return Err(invalid(format!("{what} must be between {min} and {MAX_BYTES} bytes, not {bytes}")));
    }
    Ok(bytes)
}

/// New settings with Socket.IO's defaults: path `/socket.io/`, pingInterval
/// 25000 ms, pingTimeout 20000 ms, maxHttpBufferSize 1e6, connectTimeout
/// 45000 ms, both transports with upgrades, no CORS, 2 worker threads,
/// callbacks on a dispatcher thread. NULL only if out of memory.
#[unsafe(no_mangle)]
pub extern "C" fn iobus_config_new() -> *mut iobus_config {
    std::panic::catch_unwind(|| {
        Box::into_raw(Box::new(iobus_config {
            options: ServerOptions::default(),
            dispatch: iobus_dispatch::IOBUS_DISPATCH_THREAD,
        }))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Frees settings (NULL is ignored).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_free(cfg: *mut iobus_config) {
    if !cfg.is_null() {
        guard_void(|| drop(unsafe { Box::from_raw(cfg) }));
    }
}

/// The request path, e.g. `"/socket.io/"` (a trailing slash is added).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_path(cfg: *mut iobus_config, path: *const c_char) -> iobus_status {
    with(cfg, |c| {
        let p = unsafe { text(path, "path") }?;
        if !p.starts_with('/') {
            return Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "path must start with '/'"));
        }
        c.options.engine.path = if p.ends_with('/') { p.to_owned() } else { format!("{p}/") };
        Ok(())
    })
}

/// How often the server pings, in milliseconds (1 to 86400000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_ping_interval(cfg: *mut iobus_config, ms: u64) -> iobus_status {
    with(cfg, |c| {
        c.options.engine.ping_interval = positive(ms, "ping interval")?;
        Ok(())
    })
}

/// How long the server waits for a pong, in milliseconds (1 to 86400000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_ping_timeout(cfg: *mut iobus_config, ms: u64) -> iobus_status {
    with(cfg, |c| {
        c.options.engine.ping_timeout = positive(ms, "ping timeout")?;
        Ok(())
    })
}

/// The largest message or polling body accepted, in bytes
/// (maxHttpBufferSize; 1 to 1 GiB, default 1000000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_max_payload(cfg: *mut iobus_config, bytes: usize) -> iobus_status {
    with(cfg, |c| {
        c.options.engine.max_payload = bytes_in_range(bytes, 1, "max payload")?;
        Ok(())
    })
}

/// How long an upgrade from polling to websocket may take, in milliseconds
/// (1 to 86400000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_upgrade_timeout(cfg: *mut iobus_config, ms: u64) -> iobus_status {
    with(cfg, |c| {
        c.options.engine.upgrade_timeout = positive(ms, "upgrade timeout")?;
        Ok(())
    })
}

/// How long a connection may stay without joining a namespace, in
/// milliseconds (1 to 86400000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_connect_timeout(cfg: *mut iobus_config, ms: u64) -> iobus_status {
    with(cfg, |c| {
        c.options.connect_timeout = positive(ms, "connect timeout")?;
        Ok(())
    })
}

/// Which transports are offered (at least one).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_transports(
    cfg: *mut iobus_config,
    polling: bool,
    websocket: bool,
) -> iobus_status {
    with(cfg, |c| {
        if !polling && !websocket {
            return Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "at least one transport is needed"));
        }
        c.options.engine.polling = polling;
        c.options.engine.websocket = websocket;
        Ok(())
    })
}

/// Whether polling sessions may upgrade to websocket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_allow_upgrades(cfg: *mut iobus_config, allow: bool) -> iobus_status {
    with(cfg, |c| {
        c.options.engine.allow_upgrades = allow;
        Ok(())
    })
}

/// Allows a browser origin (`"https://example.com"`), or every origin with
/// `"*"`. Enables CORS headers and preflight answers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_add_cors_origin(cfg: *mut iobus_config, origin: *const c_char) -> iobus_status {
    with(cfg, |c| {
        let origin = unsafe { text(origin, "origin") }?;
        let cors = c.options.engine.cors.get_or_insert_with(|| Cors {
            origins: CorsOrigins::List(Vec::new()),
            credentials: false,
            max_age: None,
        });
        if origin == "*" {
            cors.origins = CorsOrigins::Any;
        } else if let CorsOrigins::List(list) = &mut cors.origins {
            list.push(origin.to_owned());
        }
        Ok(())
    })
}

/// Whether CORS answers allow credentials (cookies); requires an origin.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_cors_credentials(cfg: *mut iobus_config, allow: bool) -> iobus_status {
    with(cfg, |c| match &mut c.options.engine.cors {
        Some(cors) => {
            cors.credentials = allow;
            Ok(())
        }
        None => Err(Error::new(iobus_status::IOBUS_ERR_WRONG_STATE, "add a CORS origin first")),
    })
}

/// How long browsers may cache a preflight answer, in seconds; requires an origin.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_cors_max_age(cfg: *mut iobus_config, seconds: u64) -> iobus_status {
    with(cfg, |c| match &mut c.options.engine.cors {
        Some(cors) => {
            cors.max_age = Some(seconds);
            Ok(())
        }
        None => Err(Error::new(iobus_status::IOBUS_ERR_WRONG_STATE, "add a CORS origin first")),
    })
}

/// Connection state recovery (off by default, as in Socket.IO). When
/// `enabled`: the CONNECT reply carries a private id, every packet sent to
/// clients without an ack id and not volatile (broadcasts and direct emits)
/// is stored with an offset appended as its last argument, and a socket
/// that drops for a recoverable reason (`transport close`, `transport
/// error`, `ping timeout`, `forced close`, `server shutting down`, `forced
/// server close`) is kept for `max_disconnection_ms` (1 ms to a day; 0 means
/// Socket.IO's 120000). A client back within that time gets its socket id,
/// rooms and data back and every packet it missed, in order, before the
/// CONNECT reply — on every drop, and also when it never received a stored
/// packet. With `skip_middlewares` (Socket.IO's default) the connect
/// callback of a recovered socket only tells the host (the connection is
/// already accepted, see `iobus_connect_recovered`); without it the host
/// decides as for any connection. The log keeps at most
/// `max_disconnection_ms` of packets and `max_log_bytes` bytes per namespace
/// (1 KiB to 1 GiB; 0 means 32 MiB), oldest first; a client whose missed
/// packets were dropped from it gets an ordinary new session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_connection_state_recovery(
    cfg: *mut iobus_config,
    enabled: bool,
    max_disconnection_ms: u64,
    skip_middlewares: bool,
    max_log_bytes: usize,
) -> iobus_status {
    with(cfg, |c| {
        if !enabled {
            c.options.connection_state_recovery = None;
            return Ok(());
        }
        let defaults = crate::server::RecoveryOptions::default();
        let max_disconnection_duration = match max_disconnection_ms {
            0 => defaults.max_disconnection_duration,
            ms => positive(ms, "max disconnection duration")?,
        };
        let max_log_bytes = match max_log_bytes {
            0 => defaults.max_log_bytes,
            n => bytes_in_range(n, 1024, "recovery log size")?,
        };
        c.options.connection_state_recovery =
            Some(crate::server::RecoveryOptions { max_disconnection_duration, skip_middlewares, max_log_bytes });
        Ok(())
    })
}

/// Most binary attachments one incoming packet may carry (0 to 1000,
/// default 10; 0 refuses binary packets).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_max_attachments(cfg: *mut iobus_config, count: usize) -> iobus_status {
    with(cfg, |c| {
        if count > MAX_ATTACHMENTS {
            return Err(invalid(format!("max attachments must be at most {MAX_ATTACHMENTS}, not {count}")));
        }
        c.options.max_attachments = count;
        Ok(())
    })
}

/// Bytes held for one client (1 to 1 GiB, default 4 MiB): packets queued
/// for it plus what its transport has taken and not delivered yet. A client
/// that falls behind first loses its volatile packets (they are sent only
/// when nothing is pending); a send that would take it over this bound
/// closes its connection (`transport error`) and drops what it held. A
/// single message larger than the bound still goes to a client that holds
/// nothing else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_max_buffered(cfg: *mut iobus_config, bytes: usize) -> iobus_status {
    with(cfg, |c| {
        c.options.engine.max_buffered_bytes = bytes_in_range(bytes, 1, "max buffered")?;
        Ok(())
    })
}

/// How long a request head (request line and headers) may take from its
/// first byte to its end, and a long-polling POST's body from the end of its
/// head, in milliseconds (1 to 86400000, default 10000). A client that sends
/// them a byte at a time is closed after this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_http_header_timeout(cfg: *mut iobus_config, ms: u64) -> iobus_status {
    with(cfg, |c| {
        c.options.http.header_timeout = positive(ms, "HTTP header timeout")?;
        Ok(())
    })
}

/// How long an HTTP connection may stay open without starting a request,
/// after it opens and after each response (keep-alive), in milliseconds
/// (1 to 86400000, default 5000).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_http_keep_alive_timeout(cfg: *mut iobus_config, ms: u64) -> iobus_status {
    with(cfg, |c| {
        c.options.http.keep_alive_timeout = positive(ms, "HTTP keep-alive timeout")?;
        Ok(())
    })
}

/// How long any write to a client (an HTTP response, websocket frames) may
/// make no progress before the connection is closed, in milliseconds
/// (1 to 86400000, default 20000): the client is not reading.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_write_timeout(cfg: *mut iobus_config, ms: u64) -> iobus_status {
    with(cfg, |c| {
        c.options.http.write_timeout = positive(ms, "write timeout")?;
        Ok(())
    })
}

/// Largest HTTP request head accepted, in bytes (1024 to 1 GiB, default
/// 16384); a larger one is answered with 431 and the connection closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_max_header_bytes(cfg: *mut iobus_config, bytes: usize) -> iobus_status {
    with(cfg, |c| {
        c.options.http.max_header_bytes = bytes_in_range(bytes, MIN_HEADER_BYTES, "max header bytes")?;
        Ok(())
    })
}

/// Most connections open at once, HTTP and websocket (0, the default: no
/// cap other than the process's descriptor limit). Over the cap the
/// connection idle the longest is closed to make room; if every connection
/// is serving a request or a websocket, the new one is answered with 503.
/// Out of descriptors, iobus also closes the longest-idle connection to
/// make room, cap or not.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_max_connections(cfg: *mut iobus_config, count: usize) -> iobus_status {
    with(cfg, |c| {
        c.options.http.max_connections = (count > 0).then_some(count);
        Ok(())
    })
}

/// Network worker threads (1 to 1024, default 2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_worker_threads(cfg: *mut iobus_config, threads: usize) -> iobus_status {
    with(cfg, |c| {
        if threads == 0 || threads > MAX_WORKER_THREADS {
            return Err(invalid(format!("worker threads must be between 1 and {MAX_WORKER_THREADS}, not {threads}")));
        }
        c.options.worker_threads = threads;
        Ok(())
    })
}

/// Whether the library's threads (network workers, the dispatcher thread)
/// run in the batch scheduling class (Linux `SCHED_BATCH`; on by default):
/// woken, they do not preempt the running thread, so threads sharing a core
/// hand work over in batches instead of switching at every event. Turn it
/// off if they must preempt the host's threads on a busy core.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_batch_scheduling(cfg: *mut iobus_config, on: bool) -> iobus_status {
    with(cfg, |c| {
        c.options.batch_scheduling = on;
        Ok(())
    })
}

/// Whether `<path>socket.io.js` (the client bundle) is served.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_serve_client(cfg: *mut iobus_config, serve: bool) -> iobus_status {
    with(cfg, |c| {
        c.options.serve_client = serve;
        Ok(())
    })
}

/// The directory holding the npm `socket.io-client` `dist/` files.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_client_dir(cfg: *mut iobus_config, dir: *const c_char) -> iobus_status {
    with(cfg, |c| {
        c.options.client_dir = Some(PathBuf::from(unsafe { text(dir, "dir") }?));
        Ok(())
    })
}

/// A directory of static files served for every other path (NULL: none).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_static_dir(cfg: *mut iobus_config, dir: *const c_char) -> iobus_status {
    with(cfg, |c| {
        c.options.static_dir = unsafe { super::convert::opt_text(dir, "dir") }?.map(PathBuf::from);
        Ok(())
    })
}

/// Where callbacks run: `IOBUS_DISPATCH_THREAD` (default) or
/// `IOBUS_DISPATCH_POLL` (the host calls `iobus_server_poll`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_config_set_dispatch(cfg: *mut iobus_config, mode: i32) -> iobus_status {
    with(cfg, |c| {
        c.dispatch = match mode {
            0 => iobus_dispatch::IOBUS_DISPATCH_THREAD,
            1 => iobus_dispatch::IOBUS_DISPATCH_POLL,
            _ => return Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "unknown dispatch mode")),
        };
        Ok(())
    })
}
