//! What callbacks receive: the event view (`iobus_event`), the ack handle
//! (`iobus_ack`: the answer to a client's event, or to another server's
//! server-side emit) and the pending connection (`iobus_connect`), with
//! their accessors.

use std::cell::Cell;
use std::ffi::{CString, c_char};
use std::ptr;
use std::sync::Arc;

use bytes::Bytes;

use super::convert::{self, c_string};
use super::server::PendingSockets;
use super::types::iobus_buf;
use super::{Error, guard, iobus_status};
use crate::server::ServerSideReply;
use crate::{AckSender, ConnectRequest, Payload, Socket};

/// Who an answer goes to: the client that sent an event, or the server that
/// sent a server-side emit.
pub(crate) enum Reply {
    Socket(AckSender),
    Server(ServerSideReply),
}

/// An incoming event, a server-side emit from another server (its socket id
/// is empty), or the reply to an emit-with-ack. Valid only during the
/// callback that receives it.
pub struct iobus_event {
    nsp: CString,
    sid: CString,
    name: Option<CString>,
    args: CString,
    args_len: usize,
    binary: Vec<Bytes>,
    ack: Cell<Option<Reply>>,
}

impl iobus_event {
    pub(crate) fn new(nsp: &str, sid: &str, name: Option<&str>, payload: Payload, ack: Option<Reply>) -> iobus_event {
        let args = serde_json::to_string(&payload.args).unwrap_or_else(|_| "[]".into());
        let args_len = args.len();
        iobus_event {
            nsp: c_string(nsp),
            sid: c_string(sid),
            name: name.map(c_string),
            args: c_string(&args),
            args_len,
            binary: payload.binary,
            ack: Cell::new(ack),
        }
    }
}

impl iobus_event {
    pub(crate) fn nsp_bytes(&self) -> &[u8] {
        self.nsp.as_bytes()
    }

    pub(crate) fn sid_bytes(&self) -> &[u8] {
        self.sid.as_bytes()
    }

    /// The event name (empty for an ack reply).
    pub(crate) fn name_bytes(&self) -> &[u8] {
        self.name.as_ref().map_or(&b""[..], |n| n.as_bytes())
    }

    pub(crate) fn args_bytes(&self) -> &[u8] {
        self.args.as_bytes()
    }

    pub(crate) fn attachments(&self) -> &[Bytes] {
        &self.binary
    }

    /// Takes the ack as a handle the host owns (NULL if none).
    pub(crate) fn take_ack_handle(&self) -> *mut iobus_ack {
        match self.ack.take() {
            Some(reply) => Box::into_raw(Box::new(iobus_ack { reply })),
            None => ptr::null_mut(),
        }
    }
}

/// The answer to an incoming event that asked for one (from a client, or
/// from another server's server-side emit). Owned by the host once taken
/// with `iobus_event_take_ack`: answer it once with `iobus_ack_send` (from
/// any thread, at any time) or drop it with `iobus_ack_free`.
pub struct iobus_ack {
    reply: Reply,
}

/// A connection waiting for the host's decision. Owned by the host from the
/// connect callback on, until `iobus_connect_accept` or
/// `iobus_connect_reject` (from any thread, at any time) consumes it.
pub struct iobus_connect {
    request: Option<ConnectRequest>,
    /// A recovered socket already back in (connection state recovery with
    /// `skip_middlewares`): the host is told, not asked.
    accepted: Option<Arc<Socket>>,
    recovered: bool,
    pending: PendingSockets,
    socket_id: crate::Sid,
    nsp: CString,
    sid: CString,
    auth: CString,
}

impl iobus_connect {
    pub(crate) fn new(request: ConnectRequest, pending: PendingSockets) -> Option<iobus_connect> {
        let socket = request.socket()?.clone();
        pending.lock().insert(socket.id(), socket.clone());
        let auth = serde_json::to_string(socket.handshake().auth()).unwrap_or_else(|_| "{}".into());
        Some(iobus_connect {
            nsp: c_string(socket.namespace().name()),
            sid: c_string(socket.id().as_str()),
            auth: c_string(&auth),
            socket_id: socket.id(),
            recovered: socket.recovering(),
            accepted: None,
            request: Some(request),
            pending,
        })
    }

    /// The notice of a socket recovered without asking the host (its
    /// connection is already accepted).
    pub(crate) fn recovered(socket: Arc<Socket>, pending: PendingSockets) -> iobus_connect {
        let auth = serde_json::to_string(socket.handshake().auth()).unwrap_or_else(|_| "{}".into());
        iobus_connect {
            nsp: c_string(socket.namespace().name()),
            sid: c_string(socket.id().as_str()),
            auth: c_string(&auth),
            socket_id: socket.id(),
            recovered: true,
            accepted: Some(socket),
            request: None,
            pending,
        }
    }

    /// Whether the connection recovers a dropped socket.
    pub(crate) fn is_recovered(&self) -> bool {
        self.recovered
    }
}

impl iobus_connect {
    /// The namespace and socket id.
    pub(crate) fn names(&self) -> (&[u8], &[u8]) {
        (self.nsp.as_bytes(), self.sid.as_bytes())
    }

    /// The handshake JSON, while the client is still there.
    pub(crate) fn handshake(&self) -> Option<String> {
        self.request.as_ref().and_then(ConnectRequest::socket).or(self.accepted.as_ref()).map(|s| handshake_json(s))
    }

    /// Refuses the connection (nobody decided on it).
    pub(crate) fn refuse(mut self) {
        if let Some(request) = self.request.take() {
            request.reject("Connection refused", None);
        }
    }
}

impl Drop for iobus_connect {
    fn drop(&mut self) {
        // Answered (or dropped, which accepts): no longer pending.
        self.pending.lock().remove(&self.socket_id);
    }
}

/// The handshake of a socket as JSON text (see `Handshake::to_json`).
pub(crate) fn handshake_json(socket: &Socket) -> String {
    socket.handshake().to_json().to_string()
}

// ---- iobus_event accessors -------------------------------------------------

/// The namespace of the event (`"/"`, `"/admin"`, …).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_namespace(event: *const iobus_event) -> *const c_char {
    // SAFETY: NULL or a pointer handed to the running callback.
    unsafe { event.as_ref() }.map_or(ptr::null(), |e| e.nsp.as_ptr())
}

/// The id of the socket that sent the event (empty for a server-side emit).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_socket_id(event: *const iobus_event) -> *const c_char {
    unsafe { event.as_ref() }.map_or(ptr::null(), |e| e.sid.as_ptr())
}

/// The event name; NULL for an ack reply.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_name(event: *const iobus_event) -> *const c_char {
    unsafe { event.as_ref() }.and_then(|e| e.name.as_ref()).map_or(ptr::null(), |n| n.as_ptr())
}

/// The arguments as the JSON text of an array (NUL-terminated; its length
/// in bytes goes to `len` when not NULL). Binary arguments appear as
/// `{"_placeholder":true,"num":N}`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_args(event: *const iobus_event, len: *mut usize) -> *const c_char {
    let Some(e) = (unsafe { event.as_ref() }) else { return ptr::null() };
    if !len.is_null() {
        // SAFETY: checked non-NULL.
        unsafe { *len = e.args_len };
    }
    e.args.as_ptr()
}

/// How many binary attachments the event carries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_binary_count(event: *const iobus_event) -> usize {
    unsafe { event.as_ref() }.map_or(0, |e| e.binary.len())
}

/// Attachment `index` (placeholder `num` = index): a pointer to its bytes and
/// their count in `len` (may be NULL). NULL when out of range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_binary(event: *const iobus_event, index: usize, len: *mut usize) -> *const u8 {
    let Some(b) = (unsafe { event.as_ref() }).and_then(|e| e.binary.get(index)) else { return ptr::null() };
    if !len.is_null() {
        unsafe { *len = b.len() };
    }
    b.as_ptr()
}

/// Whether the sender asked for an ack that has not been taken yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_wants_ack(event: *const iobus_event) -> bool {
    let Some(e) = (unsafe { event.as_ref() }) else { return false };
    let ack = e.ack.take();
    let wants = ack.is_some();
    e.ack.set(ack);
    wants
}

/// Takes the ack handle of the event (NULL when no ack was asked for, or it
/// was already taken). The host then owns it: answer it with
/// `iobus_ack_send` or release it with `iobus_ack_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_event_take_ack(event: *const iobus_event) -> *mut iobus_ack {
    let Some(e) = (unsafe { event.as_ref() }) else { return ptr::null_mut() };
    e.take_ack_handle()
}

// ---- iobus_ack ---------------------------------------------------------------

/// Answers the ack with arguments (`args_json`: a JSON array, `args_len`
/// bytes; NULL for none; pass `SIZE_MAX` as the length for a NUL-terminated
/// string) and binary attachments. Consumes `ack` on success and on
/// `IOBUS_ERR_DISCONNECTED` (the client is gone); on invalid arguments it
/// stays valid. The answer to a server-side emit goes to the server that
/// sent it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_ack_send(
    ack: *mut iobus_ack,
    args_json: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> iobus_status {
    guard(|| {
        if ack.is_null() {
            return Err(convert::null("ack"));
        }
        let payload = unsafe { convert::payload(args_json, args_len, binary, binary_count) }?;
        // SAFETY: a handle from `iobus_event_take_ack`, not yet consumed.
        let owned = unsafe { Box::from_raw(ack) };
        match owned.reply {
            Reply::Socket(sender) => {
                sender.send(payload).map_err(|e| Error::new(iobus_status::IOBUS_ERR_DISCONNECTED, e.to_string()))
            }
            Reply::Server(reply) => {
                reply(payload);
                Ok(())
            }
        }
    })
}

/// Releases an ack handle without answering (NULL is ignored).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_ack_free(ack: *mut iobus_ack) {
    if !ack.is_null() {
        super::guard_void(|| drop(unsafe { Box::from_raw(ack) }));
    }
}

// ---- iobus_connect -----------------------------------------------------------

/// The namespace the client is joining.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_connect_namespace(req: *const iobus_connect) -> *const c_char {
    unsafe { req.as_ref() }.map_or(ptr::null(), |r| r.nsp.as_ptr())
}

/// The id the socket will have.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_connect_socket_id(req: *const iobus_connect) -> *const c_char {
    unsafe { req.as_ref() }.map_or(ptr::null(), |r| r.sid.as_ptr())
}

/// The auth payload of the CONNECT packet, as JSON text (`{}` when none).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_connect_auth(req: *const iobus_connect) -> *const c_char {
    unsafe { req.as_ref() }.map_or(ptr::null(), |r| r.auth.as_ptr())
}

/// The whole handshake as a JSON object (`auth`, `query`, `headers`,
/// `address`, `port`, `url`, `issued`), written to `*json_out` (free with
/// `iobus_string_free`) with its length in `*len_out` (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_connect_handshake(
    req: *const iobus_connect,
    json_out: *mut *mut c_char,
    len_out: *mut usize,
) -> iobus_status {
    guard(|| {
        let r = unsafe { req.as_ref() }.ok_or_else(|| convert::null("req"))?;
        let socket = r
            .request
            .as_ref()
            .and_then(ConnectRequest::socket)
            .or(r.accepted.as_ref())
            .ok_or_else(|| Error::new(iobus_status::IOBUS_ERR_DISCONNECTED, "gone"))?;
        unsafe { convert::give_string(handshake_json(socket), json_out, len_out) }
    })
}

/// Whether this connection recovers a socket that dropped (connection
/// state recovery, see `iobus_config_set_connection_state_recovery`): the
/// socket has its old id, and once in, its rooms, data and the packets it
/// missed. With `skip_middlewares` the connection is already accepted when
/// the callback runs: the host is told, not asked (`iobus_connect_accept`
/// does nothing more, `iobus_connect_reject` disconnects it again). False
/// for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_connect_recovered(req: *const iobus_connect) -> bool {
    // SAFETY: NULL or a handle given to the connect callback.
    unsafe { req.as_ref() }.is_some_and(iobus_connect::is_recovered)
}

/// Accepts the connection. Consumes `req` (also when the client has
/// already left, which returns `IOBUS_ERR_DISCONNECTED`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_connect_accept(req: *mut iobus_connect) -> iobus_status {
    guard(|| {
        if req.is_null() {
            return Err(convert::null("req"));
        }
        // SAFETY: a handle given to the connect callback, not yet consumed.
        let mut r = unsafe { Box::from_raw(req) };
        if let Some(socket) = r.accepted.take() {
            // Recovered without asking: already in.
            return if socket.connected() {
                Ok(())
            } else {
                Err(Error::new(iobus_status::IOBUS_ERR_DISCONNECTED, "the client left"))
            };
        }
        match r.request.take().and_then(ConnectRequest::accept) {
            Some(_) => Ok(()),
            None => Err(Error::new(iobus_status::IOBUS_ERR_DISCONNECTED, "the client left before the answer")),
        }
    })
}

/// Refuses the connection: the client's `connect_error` receives `message`
/// (NULL: "Connection refused") and, when `data_json` is not NULL, that JSON
/// value as `data` (`data_len` bytes, or `SIZE_MAX` for NUL-terminated).
/// Consumes `req` on success; on invalid arguments it stays valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_connect_reject(
    req: *mut iobus_connect,
    message: *const c_char,
    data_json: *const c_char,
    data_len: usize,
) -> iobus_status {
    guard(|| {
        if req.is_null() {
            return Err(convert::null("req"));
        }
        let message = unsafe { convert::opt_text(message, "message") }?.unwrap_or("Connection refused").to_owned();
        let data = unsafe { convert::json_value(data_json, data_len, "data_json") }?;
        let mut r = unsafe { Box::from_raw(req) };
        if let Some(request) = r.request.take() {
            request.reject(&message, data);
        }
        // A recovered socket is already in: refusing it disconnects it.
        if let Some(socket) = r.accepted.take() {
            socket.disconnect(false);
        }
        Ok(())
    })
}
