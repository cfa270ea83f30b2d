//! The C types the whole ABI shares: byte ranges, ack statuses, the
//! callback signatures, the selection of sockets and its flags. Handles
//! (`iobus_server`, `iobus_event`, …) live with the functions that serve
//! them; the status enum lives in `mod.rs`.

use std::ffi::{c_char, c_void};

use super::event::{iobus_connect, iobus_event};

/// A byte range: binary attachments in and out.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct iobus_buf {
    /// First byte (may be NULL when `len` is 0).
    pub data: *const u8,
    /// Number of bytes.
    pub len: usize,
}

/// How an emit-with-ack ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum iobus_ack_status {
    /// The client answered; the reply is in the event. For an emit to many
    /// (`iobus_broadcast_ack_cb`): every recipient answered or left.
    IOBUS_ACK_OK = 0,
    /// No answer within the timeout. For an emit to many: the timeout passed
    /// first; the replies that arrived are given.
    IOBUS_ACK_TIMEOUT = 1,
    /// The socket disconnected first. For an emit to many: the server
    /// stopped or was freed while the operation was still held; no replies.
    IOBUS_ACK_DISCONNECTED = 2,
}

/// Selection flag (`iobus_selection.flags`): drop the packet for clients
/// that cannot take it right now (emits only).
pub const IOBUS_SELECTION_VOLATILE: u32 = 1;

/// Selection flag (`iobus_selection.flags`): this server only; an adapter
/// that connects several servers does not forward the operation.
pub const IOBUS_SELECTION_LOCAL: u32 = 2;

/// Who an operation is for: sockets of one namespace, chosen in one value so
/// that a host builds it once and passes it in one call. Taken by
/// `iobus_selection_emit`, `iobus_selection_emit_with_ack`,
/// `iobus_selection_fetch_sockets`, `iobus_selection_join`,
/// `iobus_selection_leave` and `iobus_selection_disconnect`; read during the
/// call only (iobus copies what it keeps).
///
/// The selected sockets are those of namespace `nsp` that are in any of
/// `rooms` (none: every socket of the namespace; each socket counts once),
/// minus those in any of `except_rooms`, minus the sockets `except_sids`.
/// A socket id is also the name of that socket's own room. A namespace that
/// does not exist selects nobody (it is not created).
///
/// An all-zero value (`iobus_selection sel = {0};`) selects every socket of
/// `"/"`. Each array may be NULL when its count is 0; otherwise its
/// elements must be non-NULL, NUL-terminated UTF-8. `except_sids` must hold
/// socket ids (20 characters of `A-Z a-z 0-9 - _`), connected or not.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct iobus_selection {
    /// The namespace (NULL: `"/"`; `"admin"` means `"/admin"`).
    pub nsp: *const c_char,
    /// Rooms to reach (their union).
    pub rooms: *const *const c_char,
    /// Number of `rooms`.
    pub room_count: usize,
    /// Rooms whose members are left out.
    pub except_rooms: *const *const c_char,
    /// Number of `except_rooms`.
    pub except_room_count: usize,
    /// Sockets left out (for example the sender of a broadcast).
    pub except_sids: *const *const c_char,
    /// Number of `except_sids`.
    pub except_sid_count: usize,
    /// `IOBUS_SELECTION_VOLATILE`, `IOBUS_SELECTION_LOCAL` (other bits are
    /// an error).
    pub flags: u32,
    /// For `iobus_selection_emit_with_ack`: how long to wait for the
    /// replies, in milliseconds (0: until every recipient answered or left).
    /// Ignored by the other operations.
    pub timeout_ms: u64,
}

// ---- callbacks -----------------------------------------------------------------

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

/// Called for an incoming event, or for an event another server emitted to
/// this namespace's servers (`iobus_server_on_server_side_emit`; its socket
/// id is then empty). `event` is valid during the call only.
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

/// Completion of an emit that asks many for an ack
/// (`iobus_selection_emit_with_ack`: the selected clients;
/// `iobus_namespace_server_side_emit_with_ack`: the other servers), called
/// exactly once.
///
/// - `status`: `IOBUS_ACK_OK` when every recipient answered or left,
///   `IOBUS_ACK_TIMEOUT` when the timeout passed first,
///   `IOBUS_ACK_DISCONNECTED` when the server stopped or was freed while
///   the operation was still held (no replies then).
/// - `expected`: how many replies were expected (clients reached, or
///   servers asked). A recipient that disconnects without answering is no
///   longer waited for, so there may be fewer replies than `expected` with
///   `IOBUS_ACK_OK`.
/// - `replies_json` (`replies_len` bytes, NUL-terminated): a JSON array with
///   one element per reply, in arrival order; each element is that
///   recipient's argument array (`[["ok"],["ok",2]]`).
/// - `binary`, `binary_count`: the attachments of every reply, in one
///   array. The placeholders in `replies_json` are numbered across all
///   replies: `{"_placeholder":true,"num":N}` is `binary[N]`, whichever
///   reply it belongs to.
pub type iobus_broadcast_ack_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        status: iobus_ack_status,
        expected: usize,
        replies_json: *const c_char,
        replies_len: usize,
        binary: *const iobus_buf,
        binary_count: usize,
    ),
>;

/// Completion of a query (`iobus_selection_fetch_sockets`,
/// `iobus_namespace_all_rooms`), called exactly once with the JSON text of
/// the result (`len` bytes, NUL-terminated). A query that the server stopped
/// or was freed before answering gets an empty array.
pub type iobus_json_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, json: *const c_char, len: usize)>;
