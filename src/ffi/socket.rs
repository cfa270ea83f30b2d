//! `iobus_socket_*`: what a host does with one socket — emits (with or
//! without an ack), rooms, disconnect, its handshake and application data.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::completion::Owed;
use super::convert::{self, text};
use super::dispatch::Job;
use super::event::{handshake_json, iobus_event};
use super::records::{AckJob, UserData};
use super::server::{emit_error, iobus_server, server_ref};
use super::types::{iobus_ack_cb, iobus_ack_status, iobus_buf};
use super::{Error, guard, iobus_status};
use crate::{AckError, Payload, Socket};

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
) -> Result<(Arc<Socket>, &'a str, Payload), Error> {
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
/// In `IOBUS_DISPATCH_POLL` mode `cb` may be NULL: the completion is then
/// only an `IOBUS_RECORD_ACK` record carrying `user_data`.
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
        let cb = s.completion(cb)?;
        let (socket, event, payload) =
            unsafe { emit_parts(server, sid, event, args_json, args_len, binary, binary_count) }?;
        let timeout = if timeout_ms == 0 { Duration::MAX } else { Duration::from_millis(timeout_ms) };
        let user = UserData(user_data);
        let nsp = socket.namespace().name().to_owned();
        let sid = socket.id();
        let (owed, issue) = Owed::new(&s.dispatch, move |result: Option<Result<Payload, AckError>>| -> Job {
            let (status, reply) = match result {
                Some(Ok(reply)) => (iobus_ack_status::IOBUS_ACK_OK, reply),
                Some(Err(AckError::Timeout)) => (iobus_ack_status::IOBUS_ACK_TIMEOUT, Payload::default()),
                Some(Err(AckError::Disconnected)) | None => {
                    (iobus_ack_status::IOBUS_ACK_DISCONNECTED, Payload::default())
                }
            };
            let reply = iobus_event::new(&nsp, sid.as_str(), None, reply, None);
            Box::new(AckJob { cb, user, status, reply })
        });
        // A reply is a message the client sent: it counts against the queue
        // like an event. A timeout or a disconnect pauses nobody.
        let gate = Arc::downgrade(socket.client.session.read_gate());
        let sent = socket.emit_with_ack(event, payload, timeout, move |result| {
            let source = if result.is_ok() { gate.upgrade() } else { None };
            owed.complete_from(result, source.as_ref());
        });
        issue.settle(sent.is_ok());
        sent.map_err(emit_error)
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

/// Sets the application data of a socket (`socket.data` in Socket.IO): any
/// JSON value (`json` is `len` bytes, or NUL-terminated with `SIZE_MAX`),
/// kept with the socket for its lifetime and reported by
/// `iobus_selection_fetch_sockets` (also to other servers of a cluster).
/// NULL sets `null`. With connection state recovery, a socket that dropped
/// and may still be recovered can be given its data too (for example from
/// the disconnect callback): a recovery brings it back.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_set_data(
    server: *mut iobus_server,
    sid: *const c_char,
    json: *const c_char,
    len: usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let value = unsafe { convert::json_value(json, len, "json") }?.unwrap_or(serde_json::Value::Null);
        match s.socket(sid) {
            Ok(socket) => {
                socket.set_data(value);
                Ok(())
            }
            // A socket that dropped and may still be recovered keeps its
            // data: a host whose copy is final only in its disconnect
            // callback stores it here.
            Err(e) => {
                let text = unsafe { convert::text(sid, "sid") }?;
                if s.server.set_dropped_socket_data(text, value) { Ok(()) } else { Err(e) }
            }
        }
    })
}

/// The application data of a socket as JSON text (`null` until set),
/// written to `*json_out` (free with `iobus_string_free`) with its length
/// in `*len_out` (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_socket_data(
    server: *mut iobus_server,
    sid: *const c_char,
    json_out: *mut *mut c_char,
    len_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let socket = s.socket(sid)?;
        let json = socket.data().to_string();
        unsafe { convert::give_string(json, json_out, len_out) }
    })
}
