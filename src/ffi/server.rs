//! `iobus_server`: lifecycle, handler registration, and every operation on
//! sockets, rooms and namespaces.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::config::iobus_config;
use super::convert::{self, null, opt_text, text, texts};
use super::dispatch::{Dispatcher, in_callback};
use super::event::{handshake_json, iobus_buf, iobus_connect, iobus_event};
use super::records::{AckJob, ConnectJob, DisconnectJob, EventJob, UserData};
use super::{Error, guard, guard_void, iobus_status};
use crate::server::BroadcastOperator;
use crate::{AckError, EmitError, Namespace, Server, Sid, Socket};

/// A server: created by `iobus_server_new`, freed by `iobus_server_free`.
pub struct iobus_server {
    server: Server,
    dispatch: Arc<Dispatcher>,
    free_timeout: Duration,
    patterns: Mutex<HashMap<String, Arc<Namespace>>>,
    pending: PendingSockets,
}

/// Sockets waiting for the host's connect decision, so that the
/// `iobus_socket_*` calls reach them too (emits wait for the CONNECT answer).
pub(crate) type PendingSockets = Arc<Mutex<HashMap<Sid, Arc<Socket>>>>;

/// How an emit-with-ack ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum iobus_ack_status {
    /// The client answered; the reply is in the event.
    IOBUS_ACK_OK = 0,
    /// No answer within the timeout.
    IOBUS_ACK_TIMEOUT = 1,
    /// The socket disconnected first.
    IOBUS_ACK_DISCONNECTED = 2,
}

/// Flag for `iobus_namespace_emit`: drop the packet for clients that cannot
/// take it right now.
pub const IOBUS_EMIT_VOLATILE: u32 = 1;

/// Called for a new connection to a namespace. The host owns `req` and
/// answers it once, now or later, from any thread, with
/// `iobus_connect_accept` or `iobus_connect_reject`. Meanwhile the
/// `iobus_socket_*` calls already reach the socket: what is emitted to it is
/// sent after the CONNECT answer (and dropped on refusal).
///
/// For every callback type: `user_data` must stay valid until the server is
/// freed, even after the callback is replaced or removed, since callbacks
/// already queued still receive it.
pub type iobus_connect_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, req: *mut iobus_connect)>;

/// Called for an incoming event; `event` is valid during the call only.
pub type iobus_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const iobus_event)>;

/// Called when a socket leaves a namespace: its namespace, id, the reason
/// (`"client namespace disconnect"`, `"transport close"`, …) and the JSON
/// array of the rooms it was in. All valid during the call only.
pub type iobus_disconnect_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        nsp: *const c_char,
        sid: *const c_char,
        reason: *const c_char,
        rooms_json: *const c_char,
    ),
>;

/// Completion of an emit-with-ack, called exactly once: `reply` holds the
/// client's arguments when `status` is `IOBUS_ACK_OK`, and is NULL otherwise.
pub type iobus_ack_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, status: iobus_ack_status, reply: *const iobus_event)>;

fn server_ref<'a>(server: *const iobus_server) -> Result<&'a iobus_server, Error> {
    // SAFETY: NULL or a live handle from `iobus_server_new`.
    unsafe { server.as_ref() }.ok_or_else(|| null("server"))
}

fn emit_error(e: EmitError) -> Error {
    let status = match e {
        EmitError::Disconnected => iobus_status::IOBUS_ERR_DISCONNECTED,
        EmitError::ReservedEvent => iobus_status::IOBUS_ERR_RESERVED_EVENT,
        EmitError::InvalidBinary => iobus_status::IOBUS_ERR_INVALID_BINARY,
    };
    Error::new(status, e.to_string())
}

impl iobus_server {
    fn namespace(&self, nsp: Option<&str>) -> Arc<Namespace> {
        let name = nsp.unwrap_or("/");
        if let Some(template) = self.patterns.lock().get(name) {
            return template.clone();
        }
        self.server.of(name)
    }

    fn running(&self) -> Result<(), Error> {
        if self.server.is_running() {
            Ok(())
        } else {
            Err(Error::new(iobus_status::IOBUS_ERR_NOT_RUNNING, "the server is not running"))
        }
    }

    fn socket(&self, sid: *const c_char) -> Result<Arc<Socket>, Error> {
        self.running()?;
        let sid = unsafe { text(sid, "sid") }?;
        Sid::parse(sid)
            .and_then(|s| self.server.socket(s).or_else(|| self.pending.lock().get(&s).cloned()))
            .ok_or_else(|| Error::new(iobus_status::IOBUS_ERR_UNKNOWN_SOCKET, format!("no connected socket {sid}")))
    }

    fn selection(
        &self,
        nsp: *const c_char,
        rooms: *const *const c_char,
        room_count: usize,
    ) -> Result<BroadcastOperator, Error> {
        self.running()?;
        let nsp = unsafe { opt_text(nsp, "nsp") }?.unwrap_or("/");
        // Only namespaces that exist: a query must not open a namespace to
        // clients. An unknown one selects nobody.
        let namespace = self.server.existing(nsp).unwrap_or_else(|| Namespace::detached(nsp));
        let mut op = namespace.broadcast();
        for room in unsafe { texts(rooms, room_count, "rooms") }? {
            op = op.to(&room);
        }
        Ok(op)
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
        let defaults = iobus_config::default();
        let config = unsafe { config.as_ref() }.unwrap_or(&defaults);
        let options = config.options.clone();
        let dispatch = Dispatcher::new(config.dispatch, options.batch_scheduling, config.host_queue_limit)
            .map_err(|e| Error::new(iobus_status::IOBUS_ERR_IO, format!("dispatcher: {e}")))?;
        let server = Box::new(iobus_server {
            server: Server::new(options),
            dispatch,
            free_timeout: config.free_timeout,
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
/// ignored). Callbacks still queued run before it returns, on the dispatcher
/// thread or, in poll mode, on the calling thread, until the free timeout
/// (`iobus_config_set_free_timeout`, default 1000 ms from the call); past
/// it, the connect and event callbacks still queued are dropped (an event's
/// ack is never answered, a pending connection is dropped with the stopped
/// server). Emit-with-ack completions always run, so each `iobus_ack_cb` is
/// still called exactly once (pending ones get `IOBUS_ACK_DISCONNECTED`), and
/// so do disconnect callbacks: their number is bounded by the host's own
/// emits and connected sockets, not by what clients sent. So it returns
/// within about the larger of the free timeout and the stop (up to half a
/// second), plus the callback running at the deadline, plus those
/// completions and disconnects. Do not call it from inside one of this
/// server's callbacks (if you do, every queued callback is dropped instead).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_free(server: *mut iobus_server) {
    if server.is_null() {
        return;
    }
    guard_void(|| {
        // SAFETY: a live handle from `iobus_server_new`, given up by the host.
        let s = unsafe { Box::from_raw(server) };
        s.dispatch.set_deadline(std::time::Instant::now() + s.free_timeout);
        s.server.stop();
        if in_callback() {
            s.dispatch.discard();
        } else if s.dispatch.is_poll_mode() {
            s.dispatch.drain();
        }
        // The dispatcher thread runs what is queued, then ends.
        s.dispatch.shutdown();
        drop(s);
    });
}

/// The callbacks waiting for the host (queued, or taken by the dispatcher
/// thread and not yet run) and the bytes they count against the host queue
/// limit (see `iobus_config_set_host_queue_limit`), written to
/// `*callbacks_out` and `*bytes_out` (either may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_pending(
    server: *const iobus_server,
    callbacks_out: *mut usize,
    bytes_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let (callbacks, bytes) = server_ref(server)?.dispatch.pending();
        if !callbacks_out.is_null() {
            unsafe { *callbacks_out = callbacks };
        }
        if !bytes_out.is_null() {
            unsafe { *bytes_out = bytes };
        }
        Ok(())
    })
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
/// NULL). Never blocks waiting for events. Not allowed from inside a callback.
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
/// if the callback had received them. Layout, per record (host byte order,
/// no padding):
///
/// - `u32` size of the record (this field included), `u8` kind
///   (`iobus_record_kind`), `u8` ack status (`IOBUS_RECORD_ACK`, else 0),
///   two zero bytes, `u64` user data of the callback (of the emit for
///   `IOBUS_RECORD_ACK`), `u64` handle (CONNECT: `iobus_connect *`; EVENT:
///   `iobus_ack *` or 0; else 0);
/// - then fields, each a `u32` length and that many bytes, no NUL:
///   CONNECT namespace, socket id, handshake JSON; EVENT namespace, socket
///   id, event name, arguments JSON, then a `u32` count of attachments and
///   each one as a field; DISCONNECT namespace, socket id, reason, rooms
///   JSON; ACK namespace, socket id, arguments JSON (empty unless the status
///   is `IOBUS_ACK_OK`), then the attachments as for EVENT.
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

// ---- handlers ----------------------------------------------------------------

/// Accepts every namespace matching `pattern`, where `*` matches any run of
/// characters (`"/room-*"`). Handlers registered with `pattern` as their
/// namespace serve all of them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_add_namespace_pattern(
    server: *mut iobus_server,
    pattern: *const c_char,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let pattern = unsafe { text(pattern, "pattern") }?;
        if !pattern.starts_with('/') {
            return Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "a namespace pattern starts with '/'"));
        }
        let mut patterns = s.patterns.lock();
        if !patterns.contains_key(pattern) {
            let template = s.server.dynamic_namespace_pattern(pattern);
            patterns.insert(pattern.to_owned(), template);
        }
        Ok(())
    })
}

/// Sets the connect callback of namespace `nsp` (NULL: `"/"`; a registered
/// pattern: every namespace it matches). Without one, connections are
/// accepted. `cb` NULL removes it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_connect(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_connect_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let namespace = s.namespace(unsafe { opt_text(nsp, "nsp") }?);
        let ud = UserData(user_data);
        let dispatch = s.dispatch.clone();
        let pending = s.pending.clone();
        match cb {
            None => namespace.on_connect(drop),
            Some(cb) => namespace.on_connect(move |req| {
                let gate = req.socket().map(|s| s.client.session.read_gate().clone());
                if let Some(req) = iobus_connect::new(req, pending.clone()) {
                    let job = ConnectJob { cb, user: ud, req, handshake: OnceCell::new() };
                    dispatch.push(Box::new(job), gate.as_ref());
                }
            }),
        }
        Ok(())
    })
}

fn event_handler(
    dispatch: Arc<Dispatcher>,
    cb: unsafe extern "C" fn(*mut c_void, *const iobus_event),
    ud: UserData,
) -> impl Fn(&Arc<Socket>, &str, crate::Payload, Option<crate::AckSender>) + Send + Sync + 'static {
    move |socket, name, payload, ack| {
        let event = iobus_event::new(socket.namespace().name(), socket.id().as_str(), Some(name), payload, ack);
        dispatch.push(Box::new(EventJob { cb, user: ud, event }), Some(socket.client.session.read_gate()));
    }
}

/// Sets the callback of event `event` in namespace `nsp` (NULL: `"/"`, or a
/// registered pattern). `cb` NULL removes it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_event(
    server: *mut iobus_server,
    nsp: *const c_char,
    event: *const c_char,
    cb: iobus_event_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let namespace = s.namespace(unsafe { opt_text(nsp, "nsp") }?);
        let name = unsafe { text(event, "event") }?.to_owned();
        match cb {
            None => namespace.off(&name),
            Some(cb) => {
                let handler = event_handler(s.dispatch.clone(), cb, UserData(user_data));
                let event_name = name.clone();
                namespace.on(&name, move |socket, payload, ack| handler(socket, &event_name, payload, ack));
            }
        }
        Ok(())
    })
}

/// Sets the callback of every event of `nsp` that has no callback of its own.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_any(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_event_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let namespace = s.namespace(unsafe { opt_text(nsp, "nsp") }?);
        match cb {
            None => namespace.on_any(|_, _, _, _| {}),
            Some(cb) => namespace.on_any(event_handler(s.dispatch.clone(), cb, UserData(user_data))),
        }
        Ok(())
    })
}

/// Sets the disconnect callback of `nsp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_disconnect(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_disconnect_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let namespace = s.namespace(unsafe { opt_text(nsp, "nsp") }?);
        let ud = UserData(user_data);
        let dispatch = s.dispatch.clone();
        match cb {
            None => namespace.on_disconnecting(|_, _| {}),
            // Taken while the socket still knows its rooms.
            Some(cb) => namespace.on_disconnecting(move |socket, reason| {
                let mut rooms = socket.rooms();
                rooms.sort();
                let rooms = convert::c_string(&serde_json::to_string(&rooms).unwrap_or_else(|_| "[]".into()));
                let nsp = convert::c_string(socket.namespace().name());
                let sid = convert::c_string(socket.id().as_str());
                let reason = convert::c_string(reason.as_str());
                dispatch.push(Box::new(DisconnectJob { cb, user: ud, nsp, sid, reason, rooms }), None);
            }),
        }
        Ok(())
    })
}

// ---- sockets -------------------------------------------------------------------

/// The socket, event name and payload of an emit to one socket.
///
/// # Safety
/// The pointers follow the contract of `iobus_socket_emit`.
unsafe fn emit_parts<'a>(
    server: *mut iobus_server,
    sid: *const c_char,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> Result<(Arc<Socket>, &'a str, crate::Payload), Error> {
    let s = server_ref(server)?;
    let socket = s.socket(sid)?;
    let event = unsafe { text(event, "event") }?;
    let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
    Ok((socket, event, payload))
}

/// Emits `event` to one socket. `args_json` is the JSON text of the argument
/// array (`args_len` bytes, or `SIZE_MAX` when NUL-terminated; NULL for no
/// arguments); binary arguments are `{"_placeholder":true,"num":N}` objects
/// in it, with attachment N in `binary[N]` (copied before return).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_emit(
    server: *mut iobus_server,
    sid: *const c_char,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> iobus_status {
    guard(|| {
        let (socket, event, payload) =
            unsafe { emit_parts(server, sid, event, args_json, args_len, binary, binary_count) }?;
        socket.emit(event, payload).map_err(emit_error)
    })
}

/// Like `iobus_socket_emit`, but the packet is dropped if the client cannot
/// take it right now.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_emit_volatile(
    server: *mut iobus_server,
    sid: *const c_char,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> iobus_status {
    guard(|| {
        let (socket, event, payload) =
            unsafe { emit_parts(server, sid, event, args_json, args_len, binary, binary_count) }?;
        socket.emit_volatile(event, payload).map_err(emit_error)
    })
}

/// Emits `event` to one socket and asks for an ack. When this returns
/// `IOBUS_OK`, `cb` is called exactly once: with the reply, after
/// `timeout_ms` without one (0: no timeout), or when the socket disconnects
/// (also when the server stops or is freed). On error it is never called.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_emit_with_ack(
    server: *mut iobus_server,
    sid: *const c_char,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
    timeout_ms: u64,
    cb: iobus_ack_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let cb = cb.ok_or_else(|| null("cb"))?;
        let (socket, event, payload) =
            unsafe { emit_parts(server, sid, event, args_json, args_len, binary, binary_count) }?;
        let timeout = if timeout_ms == 0 { Duration::MAX } else { Duration::from_millis(timeout_ms) };
        let ud = UserData(user_data);
        let dispatch = s.dispatch.clone();
        let nsp = socket.namespace().name().to_owned();
        let sid = socket.id();
        // A reply is a message the client sent: it counts against the queue
        // like an event. A timeout or a disconnect pauses nobody.
        let gate = Arc::downgrade(socket.client.session.read_gate());
        socket
            .emit_with_ack(event, payload, timeout, move |result| {
                let source = if result.is_ok() { gate.upgrade() } else { None };
                let (status, reply) = match result {
                    Ok(reply) => (iobus_ack_status::IOBUS_ACK_OK, reply),
                    Err(AckError::Timeout) => (iobus_ack_status::IOBUS_ACK_TIMEOUT, crate::Payload::default()),
                    Err(AckError::Disconnected) => {
                        (iobus_ack_status::IOBUS_ACK_DISCONNECTED, crate::Payload::default())
                    }
                };
                let reply = iobus_event::new(&nsp, sid.as_str(), None, reply, None);
                dispatch.push(Box::new(AckJob { cb, user: ud, status, reply }), source.as_ref());
            })
            .map_err(emit_error)
    })
}

/// Makes a socket join a room.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_join(
    server: *mut iobus_server,
    sid: *const c_char,
    room: *const c_char,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let socket = s.socket(sid)?;
        socket.join(unsafe { text(room, "room") }?);
        Ok(())
    })
}

/// Makes a socket leave a room.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_leave(
    server: *mut iobus_server,
    sid: *const c_char,
    room: *const c_char,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let socket = s.socket(sid)?;
        socket.leave(unsafe { text(room, "room") }?);
        Ok(())
    })
}

/// Disconnects a socket from its namespace (the client sees
/// `"io server disconnect"`); with `close`, closes its whole connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_disconnect(
    server: *mut iobus_server,
    sid: *const c_char,
    close: bool,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        s.socket(sid)?.disconnect(close);
        Ok(())
    })
}

/// The rooms of a socket, as a JSON array of strings (sorted), written to
/// `*json_out` (free with `iobus_string_free`) with its length in `*len_out`
/// (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_rooms(
    server: *mut iobus_server,
    sid: *const c_char,
    json_out: *mut *mut c_char,
    len_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let mut rooms = s.socket(sid)?.rooms();
        rooms.sort();
        let json = serde_json::to_string(&rooms).unwrap_or_else(|_| "[]".into());
        unsafe { convert::give_string(json, json_out, len_out) }
    })
}

/// The handshake of a socket as a JSON object (`auth`, `query`, `headers`,
/// `address`, `port`, `url`, `issued`), written to `*json_out` (free with
/// `iobus_string_free`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_handshake(
    server: *mut iobus_server,
    sid: *const c_char,
    json_out: *mut *mut c_char,
    len_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let socket = s.socket(sid)?;
        unsafe { convert::give_string(handshake_json(&socket), json_out, len_out) }
    })
}

// ---- namespaces ----------------------------------------------------------------

/// Emits `event` to the sockets of namespace `nsp` (NULL: `"/"`) that are in
/// any of `rooms` (none: every socket; each socket receives it once), minus
/// those in any of `except_rooms`, minus the socket `except_sid` (NULL: none;
/// use the sender's id for "broadcast from a socket"). `flags`:
/// `IOBUS_EMIT_VOLATILE`. Arguments as in `iobus_socket_emit`. The packet is
/// encoded once for all recipients.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_emit(
    server: *mut iobus_server,
    nsp: *const c_char,
    rooms: *const *const c_char,
    room_count: usize,
    except_rooms: *const *const c_char,
    except_count: usize,
    except_sid: *const c_char,
    flags: u32,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let mut op = s.selection(nsp, rooms, room_count)?;
        for room in unsafe { texts(except_rooms, except_count, "except_rooms") }? {
            op = op.except(&room);
        }
        if let Some(sid) = unsafe { opt_text(except_sid, "except_sid") }? {
            // An id that is not a socket id excludes nobody.
            if let Some(sid) = Sid::parse(sid) {
                op = op.except_socket(sid);
            }
        }
        if flags & IOBUS_EMIT_VOLATILE != 0 {
            op = op.volatile();
        }
        let event = unsafe { text(event, "event") }?;
        let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
        op.emit(event, payload).map_err(emit_error)
    })
}

/// The ids of the sockets of `nsp` in any of `rooms` (none: all), as a JSON
/// array of strings (sorted), written to `*json_out` (free with
/// `iobus_string_free`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_fetch_sockets(
    server: *mut iobus_server,
    nsp: *const c_char,
    rooms: *const *const c_char,
    room_count: usize,
    json_out: *mut *mut c_char,
    len_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let op = s.selection(nsp, rooms, room_count)?;
        let mut ids: Vec<String> = op.sockets().iter().map(|s| s.id().to_string()).collect();
        ids.sort();
        let json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        unsafe { convert::give_string(json, json_out, len_out) }
    })
}

/// Makes the sockets of `nsp` in any of `rooms` (none: all) join `room`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_sockets_join(
    server: *mut iobus_server,
    nsp: *const c_char,
    rooms: *const *const c_char,
    room_count: usize,
    room: *const c_char,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let op = s.selection(nsp, rooms, room_count)?;
        op.join(unsafe { text(room, "room") }?);
        Ok(())
    })
}

/// Makes the sockets of `nsp` in any of `rooms` (none: all) leave `room`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_sockets_leave(
    server: *mut iobus_server,
    nsp: *const c_char,
    rooms: *const *const c_char,
    room_count: usize,
    room: *const c_char,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let op = s.selection(nsp, rooms, room_count)?;
        op.leave(unsafe { text(room, "room") }?);
        Ok(())
    })
}

/// Disconnects the sockets of `nsp` in any of `rooms` (none: all); with
/// `close`, their whole connections.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_disconnect_sockets(
    server: *mut iobus_server,
    nsp: *const c_char,
    rooms: *const *const c_char,
    room_count: usize,
    close: bool,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let op = s.selection(nsp, rooms, room_count)?;
        op.disconnect(close);
        Ok(())
    })
}

/// The rooms of `nsp` that have members, as a JSON array (sorted), written
/// to `*json_out` (free with `iobus_string_free`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_rooms(
    server: *mut iobus_server,
    nsp: *const c_char,
    json_out: *mut *mut c_char,
    len_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        s.running()?;
        let nsp = unsafe { opt_text(nsp, "nsp") }?;
        let mut rooms = s.server.existing(nsp.unwrap_or("/")).map(|n| n.rooms()).unwrap_or_default();
        rooms.sort();
        let json = serde_json::to_string(&rooms).unwrap_or_else(|_| "[]".into());
        unsafe { convert::give_string(json, json_out, len_out) }
    })
}
