//! `iobus_selection_*`: operations on the sockets an `iobus_selection`
//! chooses — emit, emit with acks, fetch, join, leave, disconnect. Each
//! goes through the namespace's adapter, so that one connecting several
//! servers reaches their sockets too; results come back through
//! completions, since such an adapter answers later.

use std::ffi::{CString, c_char, c_void};

use serde_json::{Value, json};

use super::completion::{Owed, merge_replies};
use super::convert::{self, c_string, texts};
use super::dispatch::Job;
use super::records::{BroadcastAckJob, JsonJob, UserData, iobus_record_kind};
use super::server::{emit_error, iobus_server, server_ref};
use super::types::{iobus_ack_status, iobus_broadcast_ack_cb, iobus_buf, iobus_json_cb, iobus_selection};
use super::{guard, iobus_status};
use crate::server::{BroadcastAckResult, SocketInfo};

/// The job completing an emit with acks to many; `None`: the core dropped
/// the operation (the server stopped or was freed while it was held).
pub(crate) fn broadcast_ack_job(
    cb: Option<super::records::BroadcastAckFn>,
    user: UserData,
    result: Option<BroadcastAckResult>,
) -> Job {
    let Some(result) = result else {
        let status = iobus_ack_status::IOBUS_ACK_DISCONNECTED;
        return Box::new(BroadcastAckJob {
            cb,
            user,
            status,
            expected: 0,
            replies: c_string("[]"),
            binary: Vec::new(),
        });
    };
    let status = if result.timed_out { iobus_ack_status::IOBUS_ACK_TIMEOUT } else { iobus_ack_status::IOBUS_ACK_OK };
    let (replies, binary) = merge_replies(result.replies);
    Box::new(BroadcastAckJob { cb, user, status, expected: result.expected, replies: c_string(&replies), binary })
}

/// The JSON the host gets for fetched sockets: sorted by id, each with its
/// rooms sorted.
fn sockets_json(mut sockets: Vec<SocketInfo>) -> CString {
    sockets.sort_by(|a, b| a.id.cmp(&b.id));
    let list: Vec<Value> = sockets
        .into_iter()
        .map(|mut s| {
            s.rooms.sort();
            json!({ "id": s.id, "handshake": s.handshake, "rooms": s.rooms, "data": s.data })
        })
        .collect();
    c_string(&Value::Array(list).to_string())
}

/// Emits `event` to every socket `sel` selects (see `iobus_selection`;
/// `IOBUS_SELECTION_VOLATILE` drops the packet for clients that cannot take
/// it right now). Arguments as in `iobus_socket_emit`. The packet is encoded
/// once for all recipients.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_selection_emit(
    server: *mut iobus_server,
    sel: *const iobus_selection,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> iobus_status {
    guard(|| {
        let op = server_ref(server)?.select(sel)?;
        let event = unsafe { convert::text(event, "event") }?;
        let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
        op.emit(event, payload).map_err(emit_error)
    })
}

/// Emits `event` to every socket `sel` selects and asks each for an ack
/// (Socket.IO's `io.timeout(ms).to(room).emit(ev, cb)`): one ack id, one
/// encoding for all. When this returns `IOBUS_OK`, `cb` is called exactly
/// once (see `iobus_broadcast_ack_cb`) with every reply, the number of
/// clients the packet reached, and how it ended: when the last recipient
/// answered or left, when `sel->timeout_ms` passed (0: no timeout), or
/// when the server stopped or was freed. Nobody selected: `cb` gets
/// `IOBUS_ACK_OK`, `expected` 0 and `[]`. On error `cb` is never called.
/// In `IOBUS_DISPATCH_POLL` mode `cb` may be NULL: the completion is then
/// only an `IOBUS_RECORD_BROADCAST_ACK` record carrying `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_selection_emit_with_ack(
    server: *mut iobus_server,
    sel: *const iobus_selection,
    event: *const c_char,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
    cb: iobus_broadcast_ack_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let cb = s.completion(cb)?;
        let op = s.select(sel)?;
        let event = unsafe { convert::text(event, "event") }?;
        let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
        let user = UserData(user_data);
        let (owed, issue) = Owed::new(&s.dispatch, move |result| broadcast_ack_job(cb, user, result));
        let sent = op.emit_with_ack(event, payload, move |result| owed.complete(result));
        issue.settle(sent.is_ok());
        sent.map_err(emit_error)
    })
}

/// Asks for every socket `sel` selects (on every server, through the
/// adapter). `cb` is called exactly once (see `iobus_json_cb`) with a JSON
/// array, sorted by id, of one object per socket:
/// `{"id": "…", "handshake": {…}, "rooms": […], "data": …}` — `handshake`
/// as `iobus_socket_handshake` gives it, `rooms` sorted (the socket's own
/// id included), `data` as set with `iobus_socket_set_data` (`null` until
/// then). On error `cb` is never called. In `IOBUS_DISPATCH_POLL` mode `cb`
/// may be NULL: the answer is then only an `IOBUS_RECORD_SOCKETS` record
/// carrying `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_selection_fetch_sockets(
    server: *mut iobus_server,
    sel: *const iobus_selection,
    cb: iobus_json_cb,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let cb = s.completion(cb)?;
        let op = s.select(sel)?;
        let user = UserData(user_data);
        let kind = iobus_record_kind::IOBUS_RECORD_SOCKETS;
        let (owed, issue) = Owed::new(&s.dispatch, move |sockets: Option<Vec<SocketInfo>>| -> Job {
            Box::new(JsonJob { cb, user, kind, json: sockets_json(sockets.unwrap_or_default()) })
        });
        op.fetch_sockets(move |sockets| owed.complete(sockets));
        issue.settle(true);
        Ok(())
    })
}

/// Makes every socket `sel` selects join each of `rooms` (`room_count`
/// names; 0 does nothing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_selection_join(
    server: *mut iobus_server,
    sel: *const iobus_selection,
    rooms: *const *const c_char,
    room_count: usize,
) -> iobus_status {
    guard(|| {
        let op = server_ref(server)?.select(sel)?;
        let rooms = unsafe { texts(rooms, room_count, "rooms") }?;
        if !rooms.is_empty() {
            op.join_many(&rooms.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Ok(())
    })
}

/// Makes every socket `sel` selects leave each of `rooms` (`room_count`
/// names; 0 does nothing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_selection_leave(
    server: *mut iobus_server,
    sel: *const iobus_selection,
    rooms: *const *const c_char,
    room_count: usize,
) -> iobus_status {
    guard(|| {
        let op = server_ref(server)?.select(sel)?;
        let rooms = unsafe { texts(rooms, room_count, "rooms") }?;
        if !rooms.is_empty() {
            op.leave_many(&rooms.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Ok(())
    })
}

/// Disconnects every socket `sel` selects from its namespace (clients see
/// `"io server disconnect"`); with `close`, closes their whole connections.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_selection_disconnect(
    server: *mut iobus_server,
    sel: *const iobus_selection,
    close: bool,
) -> iobus_status {
    guard(|| {
        server_ref(server)?.select(sel)?.disconnect(close);
        Ok(())
    })
}
