//! `iobus_namespace_*`: operations on a namespace as a whole — its rooms,
//! server-side emits to the other servers of a cluster. What acts on some
//! of its sockets takes an `iobus_selection` (`iobus_selection_*`).

use std::ffi::{c_char, c_void};
use std::time::Duration;

use super::completion::Owed;
use super::convert::{self, c_string, opt_text, text, texts};
use super::dispatch::Job;
use super::records::{JsonJob, UserData, iobus_record_kind};
use super::selection::broadcast_ack_job;
use super::server::{emit_error, iobus_server, server_ref};
use super::types::{iobus_broadcast_ack_cb, iobus_buf, iobus_json_cb};
use super::{guard, iobus_status};
use crate::server::BroadcastOptions;

/// The ids of this server's sockets of `nsp` (NULL: `"/"`) in any of
/// `rooms` (none: every socket), now, as a sorted JSON array of strings
/// written to `*json_out` (free with `iobus_string_free`). Synchronous, so a
/// handler can ask it and get the answer before it returns; other servers
/// of a cluster are not asked (for those, and for exceptions and socket
/// details, `iobus_selection_fetch_sockets`).
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
        let nsp = unsafe { opt_text(nsp, "nsp") }?.unwrap_or("/").to_owned();
        let rooms = unsafe { texts(rooms, room_count, "rooms") }?;
        s.running()?;
        let op = s.existing(&nsp).select(BroadcastOptions { rooms, ..BroadcastOptions::default() });
        let mut ids: Vec<String> = op.sockets().iter().map(|s| s.id().to_string()).collect();
        ids.sort();
        let json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        unsafe { convert::give_string(json, json_out, len_out) }
    })
}

/// Every room that has members in namespace `nsp` (NULL: `"/"`), on every
/// server (through the adapter), sockets' own rooms included. `cb` is
/// called exactly once (see `iobus_json_cb`) with a sorted JSON array of
/// the names (`[]` for a namespace that does not exist). On error `cb` is
/// never called. In `IOBUS_DISPATCH_POLL` mode `cb` may be NULL: the answer
/// is then only an `IOBUS_RECORD_ROOMS` record carrying `user_data`. The
/// rooms of this server alone are those of the sockets that
/// `iobus_selection_fetch_sockets` gives for a selection with
/// `IOBUS_SELECTION_LOCAL`; those of one socket, `iobus_socket_rooms`.
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
