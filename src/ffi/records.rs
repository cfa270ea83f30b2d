//! Pending callbacks as jobs, and their description as records.
//!
//! Every callback the library owes the host is queued as a [`Job`]. The
//! dispatcher either runs it (the host's callback is called) or, through
//! `iobus_server_poll_records`, writes a record describing the call into the
//! host's buffer: one foreign call for a whole batch of events, which is what
//! hosts with costly callbacks (ctypes, ffi-napi) need. A job may have no
//! callback at all (a records-only subscription, a completion asked for
//! without one): it then exists only as a record, and running it releases
//! what it holds instead.
//!
//! The layout is documented once, for hosts, above `iobus_server_poll_records`
//! in `include/iobus.h` (from `server.rs`); the writers below follow it.

use std::cell::OnceCell;
use std::ffi::{CString, c_char, c_void};

use bytes::Bytes;

use super::event::{iobus_connect, iobus_event};
use super::types::{iobus_ack_status, iobus_buf};

/// What a record describes (and, for `iobus_server_subscribe`, what to
/// subscribe to).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum iobus_record_kind {
    /// A connect callback: decide with the handle (`iobus_connect *`).
    IOBUS_RECORD_CONNECT = 0,
    /// An event callback; the handle is its `iobus_ack *` or 0.
    IOBUS_RECORD_EVENT = 1,
    /// A disconnect callback.
    IOBUS_RECORD_DISCONNECT = 2,
    /// The completion of an emit-with-ack to one socket.
    IOBUS_RECORD_ACK = 3,
    /// The completion of an emit with acks to many
    /// (`iobus_selection_emit_with_ack`,
    /// `iobus_namespace_server_side_emit_with_ack`).
    IOBUS_RECORD_BROADCAST_ACK = 4,
    /// The completion of `iobus_selection_fetch_sockets`.
    IOBUS_RECORD_SOCKETS = 5,
    /// The completion of `iobus_namespace_all_rooms`.
    IOBUS_RECORD_ROOMS = 6,
    /// An event another server emitted to this namespace's servers; the
    /// handle is its `iobus_ack *` (the reply) or 0.
    IOBUS_RECORD_SERVER_SIDE_EMIT = 7,
}

impl iobus_record_kind {
    /// The kind with this number, if there is one.
    pub(crate) fn from_i32(n: i32) -> Option<iobus_record_kind> {
        use iobus_record_kind::*;
        Some(match n {
            0 => IOBUS_RECORD_CONNECT,
            1 => IOBUS_RECORD_EVENT,
            2 => IOBUS_RECORD_DISCONNECT,
            3 => IOBUS_RECORD_ACK,
            4 => IOBUS_RECORD_BROADCAST_ACK,
            5 => IOBUS_RECORD_SOCKETS,
            6 => IOBUS_RECORD_ROOMS,
            7 => IOBUS_RECORD_SERVER_SIDE_EMIT,
            _ => return None,
        })
    }
}

/// Size of the fixed part of a record.
const HEADER: usize = 4 + 4 + 8 + 8;

/// A callback the host is owed.
pub(crate) trait Job: Send {
    /// Calls the host's callback (without one: releases what the job holds).
    fn run(self: Box<Self>);
    /// The size of its record.
    fn record_len(&self) -> usize;
    /// Writes its record to `out`, which has exactly `record_len` bytes.
    fn record(self: Box<Self>, out: &mut [u8]);
}

/// The host's `void *`, carried to the dispatcher. The host promises it may
/// be used from the thread callbacks run on.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);
// SAFETY: only handed back to the host's own callbacks, which run one at a
// time; what it points at is the host's business (documented in the header).
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

impl UserData {
    pub(crate) fn get(self) -> *mut c_void {
        self.0
    }
}

/// Writes one record into a slice sized by `record_len`.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    /// The header; `handle` is the kind's handle, or its number.
    fn new(out: &'a mut [u8], kind: iobus_record_kind, status: u8, user: UserData, handle: u64) -> Writer<'a> {
        let mut w = Writer { out, at: 0 };
        let size = u32::try_from(w.out.len()).unwrap_or(u32::MAX);
        w.bytes(&size.to_ne_bytes());
        w.bytes(&[kind as u8, status, 0, 0]);
        w.bytes(&(user.get() as usize as u64).to_ne_bytes());
        w.bytes(&handle.to_ne_bytes());
        w
    }

    fn bytes(&mut self, b: &[u8]) {
        self.out[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    fn field(&mut self, b: &[u8]) {
        self.bytes(&field_len(b).to_ne_bytes());
        self.bytes(b);
    }

    fn attachments(&mut self, list: &[Bytes]) {
        self.bytes(&(list.len() as u32).to_ne_bytes());
        for b in list {
            self.field(b);
        }
    }
}

fn field_len(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap_or(u32::MAX)
}

fn fields_len(fields: &[&[u8]]) -> usize {
    fields.iter().map(|f| 4 + f.len()).sum()
}

fn attachments_len(list: &[Bytes]) -> usize {
    4 + list.iter().map(|b| 4 + b.len()).sum::<usize>()
}

/// The callback of a connect, or none (a subscription).
pub(crate) type ConnectFn = unsafe extern "C" fn(*mut c_void, *mut iobus_connect);
/// The callback of an event, or of a server-side emit.
pub(crate) type EventFn = unsafe extern "C" fn(*mut c_void, *const iobus_event);
/// The callback of a disconnect.
pub(crate) type DisconnectFn =
    unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *const c_char, *const c_char);
/// The completion of an emit-with-ack to one socket.
pub(crate) type AckFn = unsafe extern "C" fn(*mut c_void, iobus_ack_status, *const iobus_event);
/// The completion of an emit with acks to many.
pub(crate) type BroadcastAckFn =
    unsafe extern "C" fn(*mut c_void, iobus_ack_status, usize, *const c_char, usize, *const iobus_buf, usize);
/// The completion of a query answered with JSON.
pub(crate) type JsonFn = unsafe extern "C" fn(*mut c_void, *const c_char, usize);

/// A connection waiting for the host's decision.
pub(crate) struct ConnectJob {
    pub(crate) cb: Option<ConnectFn>,
    pub(crate) user: UserData,
    pub(crate) req: iobus_connect,
    /// The handshake JSON, made only for a record.
    pub(crate) handshake: OnceCell<String>,
}

impl ConnectJob {
    fn handshake(&self) -> &str {
        self.handshake.get_or_init(|| self.req.handshake().unwrap_or_else(|| "{}".into()))
    }
}

impl Job for ConnectJob {
    fn run(self: Box<Self>) {
        let Some(cb) = self.cb else {
            // Nobody to decide (a subscription's record not taken): refused,
            // rather than let in unseen.
            self.req.refuse();
            return;
        };
        let req = Box::into_raw(Box::new(self.req));
        // SAFETY: the host's callback with its own user data; it owns `req`.
        unsafe { cb(self.user.get(), req) };
    }

    fn record_len(&self) -> usize {
        let (nsp, sid) = self.req.names();
        HEADER + fields_len(&[nsp, sid, self.handshake().as_bytes()])
    }

    fn record(self: Box<Self>, out: &mut [u8]) {
        self.handshake(); // made by record_len already; the same text either way
        let ConnectJob { user, req, handshake, .. } = *self;
        let handshake = handshake.into_inner().unwrap_or_default();
        // The handle goes to the host; its address does not move with the box.
        let req = Box::new(req);
        let handle = &*req as *const iobus_connect as usize as u64;
        let (nsp, sid) = req.names();
        let recovered = u8::from(req.is_recovered());
        let mut w = Writer::new(out, iobus_record_kind::IOBUS_RECORD_CONNECT, recovered, user, handle);
        w.field(nsp);
        w.field(sid);
        w.field(handshake.as_bytes());
        let _ = Box::into_raw(req);
    }
}

/// An incoming event, or a server-side emit from another server.
pub(crate) struct EventJob {
    pub(crate) cb: Option<EventFn>,
    pub(crate) user: UserData,
    pub(crate) event: iobus_event,
    /// `IOBUS_RECORD_EVENT` or `IOBUS_RECORD_SERVER_SIDE_EMIT`.
    pub(crate) kind: iobus_record_kind,
}

impl Job for EventJob {
    fn run(self: Box<Self>) {
        // Without a callback, the ack (if any) is dropped unanswered.
        if let Some(cb) = self.cb {
            // SAFETY: the host's callback; `event` outlives the call.
            unsafe { cb(self.user.get(), &self.event) };
        }
    }

    fn record_len(&self) -> usize {
        let e = &self.event;
        HEADER
            + fields_len(&[e.nsp_bytes(), e.sid_bytes(), e.name_bytes(), e.args_bytes()])
            + attachments_len(e.attachments())
    }

    fn record(self: Box<Self>, out: &mut [u8]) {
        let e = &self.event;
        let ack = e.take_ack_handle() as usize as u64;
        let mut w = Writer::new(out, self.kind, 0, self.user, ack);
        w.field(e.nsp_bytes());
        w.field(e.sid_bytes());
        w.field(e.name_bytes());
        w.field(e.args_bytes());
        w.attachments(e.attachments());
    }
}

/// A socket that left.
pub(crate) struct DisconnectJob {
    pub(crate) cb: Option<DisconnectFn>,
    pub(crate) user: UserData,
    pub(crate) nsp: CString,
    pub(crate) sid: CString,
    pub(crate) reason: CString,
    pub(crate) rooms: CString,
}

impl DisconnectJob {
    fn fields(&self) -> [&[u8]; 4] {
        [self.nsp.as_bytes(), self.sid.as_bytes(), self.reason.as_bytes(), self.rooms.as_bytes()]
    }
}

impl Job for DisconnectJob {
    fn run(self: Box<Self>) {
        if let Some(cb) = self.cb {
            // SAFETY: the host's callback; the strings outlive the call.
            unsafe {
                cb(self.user.get(), self.nsp.as_ptr(), self.sid.as_ptr(), self.reason.as_ptr(), self.rooms.as_ptr())
            };
        }
    }

    fn record_len(&self) -> usize {
        HEADER + fields_len(&self.fields())
    }

    fn record(self: Box<Self>, out: &mut [u8]) {
        let mut w = Writer::new(out, iobus_record_kind::IOBUS_RECORD_DISCONNECT, 0, self.user, 0);
        for f in self.fields() {
            w.field(f);
        }
    }
}

/// The end of an emit-with-ack to one socket: the reply, or why there is none.
pub(crate) struct AckJob {
    pub(crate) cb: Option<AckFn>,
    pub(crate) user: UserData,
    pub(crate) status: iobus_ack_status,
    /// The reply (status OK), or an empty event naming the socket.
    pub(crate) reply: iobus_event,
}

impl Job for AckJob {
    fn run(self: Box<Self>) {
        let Some(cb) = self.cb else { return };
        let reply: *const iobus_event =
            if self.status == iobus_ack_status::IOBUS_ACK_OK { &self.reply } else { std::ptr::null() };
        // SAFETY: the host's callback; the reply outlives the call.
        unsafe { cb(self.user.get(), self.status, reply) };
    }

    fn record_len(&self) -> usize {
        let e = &self.reply;
        HEADER + fields_len(&[e.nsp_bytes(), e.sid_bytes(), self.args()]) + attachments_len(e.attachments())
    }

    fn record(self: Box<Self>, out: &mut [u8]) {
        let e = &self.reply;
        let mut w = Writer::new(out, iobus_record_kind::IOBUS_RECORD_ACK, self.status as u8, self.user, 0);
        w.field(e.nsp_bytes());
        w.field(e.sid_bytes());
        w.field(self.args());
        w.attachments(e.attachments());
    }
}

impl AckJob {
    fn args(&self) -> &[u8] {
        if self.status == iobus_ack_status::IOBUS_ACK_OK { self.reply.args_bytes() } else { b"" }
    }
}

/// The end of an emit with acks to many: every reply, how many were
/// expected, and how it ended.
pub(crate) struct BroadcastAckJob {
    pub(crate) cb: Option<BroadcastAckFn>,
    pub(crate) user: UserData,
    pub(crate) status: iobus_ack_status,
    pub(crate) expected: usize,
    /// The JSON array of the replies' argument arrays.
    pub(crate) replies: CString,
    /// Every reply's attachments, numbered across the replies.
    pub(crate) binary: Vec<Bytes>,
}

impl Job for BroadcastAckJob {
    fn run(self: Box<Self>) {
        let Some(cb) = self.cb else { return };
        let bufs: Vec<iobus_buf> = self.binary.iter().map(|b| iobus_buf { data: b.as_ptr(), len: b.len() }).collect();
        let binary = if bufs.is_empty() { std::ptr::null() } else { bufs.as_ptr() };
        // SAFETY: the host's callback; the text and buffers outlive the call.
        unsafe {
            cb(
                self.user.get(),
                self.status,
                self.expected,
                self.replies.as_ptr(),
                self.replies.as_bytes().len(),
                binary,
                bufs.len(),
            )
        };
    }

    fn record_len(&self) -> usize {
        HEADER + fields_len(&[self.replies.as_bytes()]) + attachments_len(&self.binary)
    }

    fn record(self: Box<Self>, out: &mut [u8]) {
        let kind = iobus_record_kind::IOBUS_RECORD_BROADCAST_ACK;
        let mut w = Writer::new(out, kind, self.status as u8, self.user, self.expected as u64);
        w.field(self.replies.as_bytes());
        w.attachments(&self.binary);
    }
}

/// The answer to a query: JSON text.
pub(crate) struct JsonJob {
    pub(crate) cb: Option<JsonFn>,
    pub(crate) user: UserData,
    /// `IOBUS_RECORD_SOCKETS` or `IOBUS_RECORD_ROOMS`.
    pub(crate) kind: iobus_record_kind,
    pub(crate) json: CString,
}

impl Job for JsonJob {
    fn run(self: Box<Self>) {
        if let Some(cb) = self.cb {
            // SAFETY: the host's callback; the text outlives the call.
            unsafe { cb(self.user.get(), self.json.as_ptr(), self.json.as_bytes().len()) };
        }
    }

    fn record_len(&self) -> usize {
        HEADER + fields_len(&[self.json.as_bytes()])
    }

    fn record(self: Box<Self>, out: &mut [u8]) {
        let mut w = Writer::new(out, self.kind, 0, self.user, 0);
        w.field(self.json.as_bytes());
    }
}
