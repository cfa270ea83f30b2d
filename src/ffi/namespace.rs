//! `iobus_namespace_*`: operations on a namespace as a whole — its rooms,
//! server-side emits to the other servers of a cluster — and the first
//! generation of bulk operations that select by rooms only (superseded by
//! `iobus_selection_*`, which take every kind of selection and go through
//! the adapter; kept until the bindings have moved).

use std::ffi::{c_char, c_void};
use std::time::Duration;

use super::completion::Owed;
use super::convert::{self, c_string, opt_text, text, texts};
use super::dispatch::Job;
use super::records::{JsonJob, UserData, iobus_record_kind};
use super::selection::broadcast_ack_job;
use super::server::{emit_error, iobus_server, server_ref};
use super::types::{IOBUS_EMIT_VOLATILE, iobus_broadcast_ack_cb, iobus_buf, iobus_json_cb};
use super::{Error, guard, iobus_status};
use crate::Sid;
use crate::server::{BroadcastOperator, BroadcastOptions};

/// The namespace name and the selection of the first-generation calls: the
/// sockets in any of `rooms` (none: all).
///
/// # Safety
/// `nsp` NULL or a C string; `rooms` as `convert::texts`.
unsafe fn rooms_selection(
    nsp: *const c_char,
    rooms: *const *const c_char,
    room_count: usize,
) -> Result<(String, BroadcastOptions), Error> {
    let nsp = unsafe { opt_text(nsp, "nsp") }?.unwrap_or("/").to_owned();
    let rooms = unsafe { texts(rooms, room_count, "rooms") }?;
    Ok((nsp, BroadcastOptions { rooms, ..BroadcastOptions::default() }))
}

impl iobus_server {
    /// The operator for a selection in namespace `nsp` (one that exists).
    fn select_in(&self, nsp: &str, opts: BroadcastOptions) -> Result<BroadcastOperator, Error> {
        self.running()?;
        Ok(self.existing(nsp).select(opts))
    }
}

/// Emits `event` to the sockets of namespace `nsp` (NULL: `"/"`) that are in
/// any of `rooms` (none: every socket; each socket receives it once), minus
/// those in any of `except_rooms`, minus the socket `except_sid` (NULL: none;
/// use the sender's id for "broadcast from a socket"). `flags`:
/// `IOBUS_EMIT_VOLATILE`. Arguments as in `iobus_socket_emit`. The packet is
/// encoded once for all recipients. Superseded by `iobus_selection_emit`.
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
        let mut opts = unsafe { rooms_selection(nsp, rooms, room_count) }?;
        opts.1.except = unsafe { texts(except_rooms, except_count, "except_rooms") }?;
        if let Some(sid) = unsafe { opt_text(except_sid, "except_sid") }? {
            // An id that is not a socket id excludes nobody.
            if let Some(sid) = Sid::parse(sid) {
                opts.1.except_sids.push(sid);
            }
        }
        opts.1.flags.volatile = flags & IOBUS_EMIT_VOLATILE != 0;
        let op = s.select_in(&opts.0, opts.1)?;
        let event = unsafe { text(event, "event") }?;
        let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
        op.emit(event, payload).map_err(emit_error)
    })
}

/// The ids of the sockets of `nsp` in any of `rooms` (none: all), as a JSON
/// array of strings (sorted), written to `*json_out` (free with
/// `iobus_string_free`). This server's sockets only; superseded by
/// `iobus_selection_fetch_sockets`.
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
        let (nsp, opts) = unsafe { rooms_selection(nsp, rooms, room_count) }?;
        let op = s.select_in(&nsp, opts)?;
        let mut ids: Vec<String> = op.sockets().iter().map(|s| s.id().to_string()).collect();
        ids.sort();
        let json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        unsafe { convert::give_string(json, json_out, len_out) }
    })
}

/// Makes the sockets of `nsp` in any of `rooms` (none: all) join `room`.
/// Superseded by `iobus_selection_join`.
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
        let (nsp, opts) = unsafe { rooms_selection(nsp, rooms, room_count) }?;
        let op = s.select_in(&nsp, opts)?;
        op.join(unsafe { text(room, "room") }?);
        Ok(())
    })
}

/// Makes the sockets of `nsp` in any of `rooms` (none: all) leave `room`.
/// Superseded by `iobus_selection_leave`.
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
        let (nsp, opts) = unsafe { rooms_selection(nsp, rooms, room_count) }?;
        let op = s.select_in(&nsp, opts)?;
        op.leave(unsafe { text(room, "room") }?);
        Ok(())
    })
}

/// Disconnects the sockets of `nsp` in any of `rooms` (none: all); with
/// `close`, their whole connections. Superseded by
/// `iobus_selection_disconnect`.
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
        let (nsp, opts) = unsafe { rooms_selection(nsp, rooms, room_count) }?;
        let op = s.select_in(&nsp, opts)?;
        op.disconnect(close);
        Ok(())
    })
}

/// The rooms of `nsp` that have members, as a JSON array (sorted), written
/// to `*json_out` (free with `iobus_string_free`). This server's rooms
/// only; `iobus_namespace_all_rooms` asks every server.
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
        let mut rooms = s.existing(nsp.unwrap_or("/")).rooms();
        rooms.sort();
        let json = serde_json::to_string(&rooms).unwrap_or_else(|_| "[]".into());
        unsafe { convert::give_string(json, json_out, len_out) }
    })
}

/// Every room that has members in namespace `nsp` (NULL: `"/"`), on every
/// server (through the adapter), sockets' own rooms included. `cb` is
/// called exactly once (see `iobus_json_cb`) with a sorted JSON array of
/// the names (`[]` for a namespace that does not exist). On error `cb` is
/// never called. In `IOBUS_DISPATCH_POLL` mode `cb` may be NULL: the answer
/// is then only an `IOBUS_RECORD_ROOMS` record carrying `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_all_rooms(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_json_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let cb = s.completion(cb)?;
        s.running()?;
        let namespace = s.existing(unsafe { opt_text(nsp, "nsp") }?.unwrap_or("/"));
        let user = UserData(user_data);
        let kind = iobus_record_kind::IOBUS_RECORD_ROOMS;
        let (owed, issue) = Owed::new(&s.dispatch, move |rooms: Option<Vec<String>>| -> Job {
            let mut rooms = rooms.unwrap_or_default();
            rooms.sort();
            let json = c_string(&serde_json::to_string(&rooms).unwrap_or_else(|_| "[]".into()));
            Box::new(JsonJob { cb, user, kind, json })
        });
        namespace.all_rooms(move |rooms| owed.complete(rooms));
        issue.settle(true);
        Ok(())
    })
}

/// Emits `event` to the handlers of namespace `nsp` (NULL: `"/"`) on the
/// other servers of a cluster (`iobus_server_on_server_side_emit` there),
/// never to clients and never to this server's own handlers: with the
/// default in-memory adapter (one server) it reaches nobody. Arguments as
/// in `iobus_socket_emit`; reserved event names are refused.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_server_side_emit(
    server: *mut iobus_server,
    nsp: *const c_char,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        s.running()?;
        let namespace = s.existing(unsafe { opt_text(nsp, "nsp") }?.unwrap_or("/"));
        let event = unsafe { text(event, "event") }?;
        let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
        namespace.server_side_emit(event, payload).map_err(emit_error)
    })
}

/// Like `iobus_namespace_server_side_emit`, and collects each other
/// server's reply (`iobus_ack_send` on the ack of the event it received).
/// When this returns `IOBUS_OK`, `cb` is called exactly once (see
/// `iobus_broadcast_ack_cb`; `expected` counts servers): when every server
/// answered, after `timeout_ms` (0: no timeout), or when the server stops
/// or is freed. With no other server (the in-memory adapter) it completes
/// at once with `IOBUS_ACK_OK`, `expected` 0 and `[]`. On error `cb` is
/// never called. In `IOBUS_DISPATCH_POLL` mode `cb` may be NULL: the
/// completion is then only an `IOBUS_RECORD_BROADCAST_ACK` record carrying
/// `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_namespace_server_side_emit_with_ack(
    server: *mut iobus_server,
    nsp: *const c_char,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
    timeout_ms: u64,
    cb: iobus_broadcast_ack_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let cb = s.completion(cb)?;
        s.running()?;
        let namespace = s.existing(unsafe { opt_text(nsp, "nsp") }?.unwrap_or("/"));
        let event = unsafe { text(event, "event") }?;
        let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
        let timeout = if timeout_ms == 0 { Duration::MAX } else { Duration::from_millis(timeout_ms) };
        let user = UserData(user_data);
        let (owed, issue) = Owed::new(&s.dispatch, move |result| broadcast_ack_job(cb, user, result));
        let sent = namespace.server_side_emit_with_ack(event, payload, timeout, move |result| owed.complete(result));
        issue.settle(sent.is_ok());
        sent.map_err(emit_error)
    })
}
