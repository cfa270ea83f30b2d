//! `iobus_server`: the handle, its lifecycle (new, start, stop, free) and
//! the calls that run or describe pending callbacks (poll, records). What the
//! other files of the C ABI need from a server (its namespaces, its sockets,
//! a selection, the rule for completion callbacks) is here too.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::Arc;

use parking_lot::Mutex;

use super::config::iobus_config;
use super::convert::{self, null, opt_text, text};
use super::dispatch::{Dispatcher, in_callback, iobus_dispatch};
use super::types::iobus_selection;
use super::{Error, guard, guard_void, iobus_status};
use crate::server::BroadcastOperator;
use crate::{EmitError, Namespace, Server, Sid, Socket};

/// A server: created by `iobus_server_new`, freed by `iobus_server_free`.
pub struct iobus_server {
    pub(crate) server: Server,
    pub(crate) dispatch: Arc<Dispatcher>,
    /// Namespace patterns and the templates whose handlers serve them.
    pub(crate) patterns: Mutex<HashMap<String, Arc<Namespace>>>,
    pub(crate) pending: PendingSockets,
}

/// Sockets waiting for the host's connect decision, so that the
/// `iobus_socket_*` calls reach them too (emits wait for the CONNECT answer).
pub(crate) type PendingSockets = Arc<Mutex<HashMap<Sid, Arc<Socket>>>>;

pub(crate) fn server_ref<'a>(server: *const iobus_server) -> Result<&'a iobus_server, Error> {
    // SAFETY: NULL or a live handle from `iobus_server_new`.
    unsafe { server.as_ref() }.ok_or_else(|| null("server"))
}

pub(crate) fn emit_error(e: EmitError) -> Error {
    let status = match e {
        EmitError::Disconnected => iobus_status::IOBUS_ERR_DISCONNECTED,
        EmitError::ReservedEvent => iobus_status::IOBUS_ERR_RESERVED_EVENT,
        EmitError::InvalidBinary => iobus_status::IOBUS_ERR_INVALID_BINARY,
    };
    Error::new(status, e.to_string())
}

impl iobus_server {
    /// The namespace handlers are registered on: a pattern's template, or
    /// the namespace itself (created).
    pub(crate) fn handlers_of(&self, nsp: Option<&str>) -> Arc<Namespace> {
        let name = nsp.unwrap_or("/");
        if let Some(template) = self.patterns.lock().get(name) {
            return template.clone();
        }
        self.server.of(name)
    }

    /// A namespace to act on or ask about: only one that exists, since a
    /// query must not open a namespace to clients. An unknown one is an
    /// empty namespace that selects nobody.
    pub(crate) fn existing(&self, nsp: &str) -> Arc<Namespace> {
        self.server.existing(nsp).unwrap_or_else(|| Namespace::detached(nsp))
    }

    pub(crate) fn running(&self) -> Result<(), Error> {
        if self.server.is_running() {
            Ok(())
        } else {
            Err(Error::new(iobus_status::IOBUS_ERR_NOT_RUNNING, "the server is not running"))
        }
    }

    /// A connected socket, or one waiting for its connect decision.
    pub(crate) fn socket(&self, sid: *const c_char) -> Result<Arc<Socket>, Error> {
        self.running()?;
        let sid = unsafe { text(sid, "sid") }?;
        Sid::parse(sid)
            .and_then(|s| self.server.socket(s).or_else(|| self.pending.lock().get(&s).cloned()))
            .ok_or_else(|| Error::new(iobus_status::IOBUS_ERR_UNKNOWN_SOCKET, format!("no connected socket {sid}")))
    }

    /// The operator for a C selection.
    pub(crate) fn select(&self, sel: *const iobus_selection) -> Result<BroadcastOperator, Error> {
        self.running()?;
        let sel = unsafe { convert::selection(sel) }?;
        Ok(self.existing(&sel.nsp).select(sel.opts))
    }

    /// A completion callback as given: required when callbacks are called;
    /// optional in poll mode, where a host that takes records gets the
    /// completion as a record only.
    pub(crate) fn completion<F>(&self, cb: Option<F>) -> Result<Option<F>, Error> {
        if cb.is_none() && !self.dispatch.is_poll_mode() {
            return Err(Error::new(
                iobus_status::IOBUS_ERR_NULL_ARGUMENT,
                "cb is NULL (allowed only in IOBUS_DISPATCH_POLL mode, where the completion is a record)",
            ));
        }
        Ok(cb)
    }
}

// ---- lifecycle -------------------------------------------------------------

/// Creates a server from `config` (NULL: defaults; the config is copied and
/// may be freed right after) and writes it to `*server_out`. Nothing listens
/// until `iobus_server_start`; register handlers first.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_new(
    config: *const iobus_config,
    server_out: *mut *mut iobus_server,
) -> iobus_status {
    guard(|| {
        if server_out.is_null() {
            return Err(null("server_out"));
        }
        // SAFETY: NULL or a live config.
        let (options, mode) = match unsafe { config.as_ref() } {
            Some(c) => (c.options.clone(), c.dispatch),
            None => (crate::ServerOptions::default(), iobus_dispatch::IOBUS_DISPATCH_THREAD),
        };
        let dispatch = Dispatcher::new(mode, options.batch_scheduling)
            .map_err(|e| Error::new(iobus_status::IOBUS_ERR_IO, format!("dispatcher: {e}")))?;
        let server = Box::new(iobus_server {
            server: Server::new(options),
            dispatch,
            patterns: Mutex::new(HashMap::new()),
            pending: PendingSockets::default(),
        });
        // SAFETY: checked non-NULL.
        unsafe { *server_out = Box::into_raw(server) };
        Ok(())
    })
}

/// Starts listening on `host:port` (`host` NULL: "127.0.0.1"; port 0 picks a
/// free port, see `iobus_server_port`), serving from background threads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_start(server: *mut iobus_server, host: *const c_char, port: u16) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let host = unsafe { opt_text(host, "host") }?.unwrap_or("127.0.0.1");
        match s.server.start((host, port)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::new(iobus_status::IOBUS_ERR_ALREADY_RUNNING, e.to_string()))
            }
            Err(e) => Err(Error::new(iobus_status::IOBUS_ERR_IO, format!("cannot listen on {host}:{port}: {e}"))),
        }
    })
}

/// The port the running server listens on, written to `*port_out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_port(server: *const iobus_server, port_out: *mut u16) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        if port_out.is_null() {
            return Err(null("port_out"));
        }
        let addr =
            s.server.local_addr().ok_or_else(|| Error::new(iobus_status::IOBUS_ERR_NOT_RUNNING, "not running"))?;
        unsafe { *port_out = addr.port() };
        Ok(())
    })
}

/// Stops gracefully: sockets disconnect with `"server shutting down"`
/// (disconnect callbacks still run), queued packets are flushed, threads of
/// the network end. Unlike the other calls it waits, briefly (up to about
/// half a second, for clients to receive their last packets). The server may
/// be started again. Stopping a stopped server does nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_stop(server: *mut iobus_server) -> iobus_status {
    guard(|| {
        server_ref(server)?.server.stop();
        Ok(())
    })
}

/// Stops the server if needed and frees it with everything it owns (NULL is
/// ignored). Callbacks still queued run before it returns (pending
/// emit-with-ack completions get `IOBUS_ACK_DISCONNECTED`), on the
/// dispatcher thread or, in poll mode, on the calling thread. Do not call it
/// from inside one of this server's callbacks (if you do, queued callbacks
/// are dropped instead).
///
/// Every completion promised exactly once is called by then: those the
/// server still held when it stopped run last, after the server is gone
/// (do not call into it from them). What has no callback (records of
/// `iobus_server_subscribe` subscriptions, completions asked for without a
/// callback) can no longer be taken as records: take them first (stop, then
/// `iobus_server_poll_records` until it returns none, then free). Left over,
/// they are released: a connection is refused, an ack handle dropped
/// unanswered, a completion dropped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_free(server: *mut iobus_server) {
    if server.is_null() {
        return;
    }
    guard_void(|| {
        // SAFETY: a live handle from `iobus_server_new`, given up by the host.
        let s = unsafe { Box::from_raw(server) };
        s.server.stop();
        let inside = in_callback();
        if inside {
            s.dispatch.discard();
        } else if s.dispatch.is_poll_mode() {
            s.dispatch.drain();
        }
        // The dispatcher thread runs what is queued, then ends.
        s.dispatch.shutdown();
        let dispatch = s.dispatch.clone();
        // Operations the core still held complete as it goes (see
        // `completion::Owed`); their completions run here, last.
        drop(s);
        if inside {
            dispatch.discard();
        } else {
            dispatch.run_rest();
        }
    });
}

/// In `IOBUS_DISPATCH_POLL` mode: a file descriptor that becomes readable
/// when callbacks are pending (for epoll, libuv, asyncio, …); -1 otherwise.
/// Owned by the server; do not close it. A callback queued by a network
/// thread makes it readable once that thread has finished the work in hand
/// (at most about 200 µs later while it stays busy), so that one wake-up
/// usually finds a batch.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_poll_fd(server: *const iobus_server) -> i32 {
    match server_ref(server) {
        Ok(s) => s.dispatch.fd().unwrap_or(-1),
        Err(_) => -1,
    }
}

/// In `IOBUS_DISPATCH_POLL` mode: runs up to `max_events` pending callbacks
/// on the calling thread and writes how many ran to `*processed_out` (may be
/// NULL). What has no callback (a subscription's record, a completion asked
/// for with a NULL callback) counts as run and is released: a connection is
/// refused, an ack handle dropped unanswered, a completion dropped. Never
/// blocks waiting for events. Not allowed from inside a callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_poll(
    server: *mut iobus_server,
    max_events: usize,
    processed_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        if !s.dispatch.is_poll_mode() {
            return Err(Error::new(iobus_status::IOBUS_ERR_WRONG_STATE, "the server dispatches on its own thread"));
        }
        if in_callback() {
            return Err(Error::new(iobus_status::IOBUS_ERR_WRONG_STATE, "iobus_server_poll called from a callback"));
        }
        let n = s.dispatch.poll(max_events);
        if !processed_out.is_null() {
            unsafe { *processed_out = n };
        }
        Ok(())
    })
}

/// In `IOBUS_DISPATCH_POLL` mode, the batch alternative to
/// `iobus_server_poll`: instead of calling the pending callbacks, describes
/// each call as a record written to `buf` (`cap` bytes), oldest first, until
/// the next record does not fit or none is pending. Writes the bytes used to
/// `*len_out` and the number of records to `*count_out` (either may be NULL).
/// Handles in records (`iobus_connect *`, `iobus_ack *`) are the host's, as
/// if the callback had received them. Records also describe what has no
/// callback: subscriptions (`iobus_server_subscribe`) and completions asked
/// for with a NULL callback.
///
/// This is the one description of the record layout; bindings check their
/// constants against it. Per record, host byte order, no padding and no
/// alignment (read with `memcpy`), a 24-byte header:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `u32` size of the whole record, this field included |
/// | 4 | 1 | `u8` kind (`iobus_record_kind`) |
/// | 5 | 1 | `u8` status: an `iobus_ack_status` for ACK and BROADCAST_ACK, 1 for a CONNECT that recovers a dropped socket (`iobus_connect_recovered`), else 0 |
/// | 6 | 2 | zero |
/// | 8 | 8 | `u64` user data: the `user_data` of the registration (callback or subscription), or of the call that asked for the completion (ACK, BROADCAST_ACK, SOCKETS, ROOMS) |
/// | 16 | 8 | `u64` handle or number, by kind (below) |
///
/// then the kind's items, in this order. A field is a `u32` length and that
/// many bytes (UTF-8 text without NUL, or raw bytes); "attachments" is a
/// `u32` count followed by that many fields.
///
/// | kind | handle / number | items |
/// |---|---|---|
/// | CONNECT (0) | the `iobus_connect *` to answer | namespace, socket id, handshake JSON (as `iobus_connect_handshake`) |
/// | EVENT (1) | the `iobus_ack *` to answer, or 0 when none was asked for | namespace, socket id, event name, arguments JSON, attachments |
/// | DISCONNECT (2) | 0 | namespace, socket id, reason, rooms JSON |
/// | ACK (3) | 0 | namespace, socket id, arguments JSON of the reply (empty unless the status is `IOBUS_ACK_OK`), attachments |
/// | BROADCAST_ACK (4) | a number: the replies expected | replies JSON, attachments (both as `iobus_broadcast_ack_cb` receives them) |
/// | SOCKETS (5) | 0 | sockets JSON (as `iobus_selection_fetch_sockets` describes) |
/// | ROOMS (6) | 0 | rooms JSON (as `iobus_namespace_all_rooms` describes) |
/// | SERVER_SIDE_EMIT (7) | the `iobus_ack *` to answer (the reply to the sending server), or 0 | namespace, socket id (empty), event name, arguments JSON, attachments |
///
/// Later versions may add kinds: skip a record of an unknown kind by its
/// size.
///
/// When the oldest pending record alone is larger than `cap`, nothing is
/// taken, `*len_out` gets its size and the result is
/// `IOBUS_ERR_INVALID_ARGUMENT`: call again with a buffer that large. Never
/// blocks; not allowed from inside a callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_poll_records(
    server: *mut iobus_server,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
    count_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        if buf.is_null() {
            return Err(null("buf"));
        }
        if !s.dispatch.is_poll_mode() {
            return Err(Error::new(iobus_status::IOBUS_ERR_WRONG_STATE, "the server dispatches on its own thread"));
        }
        if in_callback() {
            return Err(Error::new(
                iobus_status::IOBUS_ERR_WRONG_STATE,
                "iobus_server_poll_records called from a callback",
            ));
        }
        // SAFETY: the host gives `cap` writable bytes at `buf`.
        let out = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
        let (len, count, result) = match s.dispatch.poll_records(out) {
            Ok((len, count)) => (len, count, Ok(())),
            Err(need) => (
                need,
                0,
                Err(Error::new(
                    iobus_status::IOBUS_ERR_INVALID_ARGUMENT,
                    format!("the next record needs {need} bytes; the buffer has {cap}"),
                )),
            ),
        };
        if !len_out.is_null() {
            unsafe { *len_out = len };
        }
        if !count_out.is_null() {
            unsafe { *count_out = count };
        }
        result
    })
}
