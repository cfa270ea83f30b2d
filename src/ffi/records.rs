//! Pending callbacks as jobs, and their description as records.
//!
//! Every callback the library owes the host is queued as a [`Job`]. The
//! dispatcher either runs it (the host's callback is called) or, through
//! `iobus_server_poll_records`, writes a record describing the call into the
//! host's buffer: one foreign call for a whole batch of events, which is what
//! hosts with costly callbacks (ctypes, ffi-napi) need.
//!
//! Record layout (host byte order, no padding; read fields with `memcpy`):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `u32` size of the whole record, this field included |
//! | 1 | kind ([`iobus_record_kind`]) |
//! | 1 | ack status ([`super::server::iobus_ack_status`]) for `IOBUS_RECORD_ACK`, else 0 |
//! | 2 | 0 |
//! | 8 | the registration's `user_data` (for `IOBUS_RECORD_ACK`: the emit's) |
//! | 8 | a handle the host now owns: the `iobus_connect *` (`IOBUS_RECORD_CONNECT`), the `iobus_ack *` of an event that asked for one (`IOBUS_RECORD_EVENT`), else 0 |
//! | … | fields, each a `u32` length and that many bytes (UTF-8, no NUL) |
//!
//! Fields by kind: CONNECT namespace, socket id, handshake JSON (as
//! `iobus_connect_handshake`); EVENT namespace, socket id, event name,
//! arguments JSON, then a `u32` attachment count and each attachment as a
//! field; DISCONNECT namespace, socket id, reason, rooms JSON;
//! ACK namespace, socket id, arguments JSON (empty unless the status is
//! `IOBUS_ACK_OK`), then the attachments as for EVENT.

use std::cell::OnceCell;
use std::ffi::{CString, c_char, c_void};

use bytes::Bytes;

use super::event::{iobus_connect, iobus_event};
use super::server::iobus_ack_status;

/// What a record describes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum iobus_record_kind {
    /// A connect callback: decide with the handle (`iobus_connect *`).
    IOBUS_RECORD_CONNECT = 0,
    /// An event callback; the handle is its `iobus_ack *` or 0.
    IOBUS_RECORD_EVENT = 1,
    /// A disconnect callback.
    IOBUS_RECORD_DISCONNECT = 2,
    /// The completion of an emit-with-ack.
    IOBUS_RECORD_ACK = 3,
}

/// Size of the fixed part of a record.
const HEADER: usize = 4 + 4 + 8 + 8;

/// What a pending callback counts against the host queue's bound besides
/// its data: the job, its strings' allocations and its place in the queue.
pub(crate) const JOB_OVERHEAD: usize = 512;

/// A callback the host is owed.
pub(crate) trait Job: Send {
    /// Calls the host's callback.
    fn run(self: Box<Self>);
    /// The bytes it holds while it waits: its data plus [`JOB_OVERHEAD`].
    fn held_bytes(&self) -> usize;
    /// Whether it still runs when `iobus_server_free` runs out of time:
    /// the completions and the ends the host relies on to release what it
    /// holds (their number is bounded by the host's own emits and sockets,
    /// not by what clients send).
    fn owed(&self) -> bool {
        false
    }
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
    fn new(out: &'a mut [u8], kind: iobus_record_kind, status: u8, user: UserData, handle: usize) -> Writer<'a> {
        let mut w = Writer { out, at: 0 };
        let size = u32::try_from(w.out.len()).unwrap_or(u32::MAX);
        w.bytes(&size.to_ne_bytes());
        w.bytes(&[kind as u8, status, 0, 0]);
        w.bytes(&(user.get() as usize as u64).to_ne_bytes());
        w.bytes(&(handle as u64).to_ne_bytes());
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

/// The data of an event or reply.
fn event_bytes(e: &iobus_event) -> usize {
    e.nsp_bytes().len()
        + e.sid_bytes().len()
        + e.name_bytes().len()
        + e.args_bytes().len()
        + e.attachments().iter().map(Bytes::len).sum::<usize>()
}

/// A connection waiting for the host's decision.
pub(crate) struct ConnectJob {
    pub(crate) cb: unsafe extern "C" fn(*mut c_void, *mut iobus_connect),
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
        let req = Box::into_raw(Box::new(self.req));
        // SAFETY: the host's callback with its own user data; it owns `req`.
        unsafe { (self.cb)(self.user.get(), req) };
    }

    fn held_bytes(&self) -> usize {
        let (nsp, sid) = self.req.names();
        JOB_OVERHEAD + nsp.len() + sid.len() + self.req.auth_len()
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
        let handle = &*req as *const iobus_connect as usize;
        let (nsp, sid) = req.names();
        let mut w = Writer::new(out, iobus_record_kind::IOBUS_RECORD_CONNECT, 0, user, handle);
        w.field(nsp);
        w.field(sid);
        w.field(handshake.as_bytes());
        let _ = Box::into_raw(req);
    }
}

/// An incoming event.
pub(crate) struct EventJob {
    pub(crate) cb: unsafe extern "C" fn(*mut c_void, *const iobus_event),
    pub(crate) user: UserData,
    pub(crate) event: iobus_event,
}

impl Job for EventJob {
    fn run(self: Box<Self>) {
        // SAFETY: the host's callback; `event` outlives the call.
        unsafe { (self.cb)(self.user.get(), &self.event) };
    }

    fn held_bytes(&self) -> usize {
        JOB_OVERHEAD + event_bytes(&self.event)
    }

    fn record_len(&self) -> usize {
        let e = &self.event;
        HEADER
            + fields_len(&[e.nsp_bytes(), e.sid_bytes(), e.name_bytes(), e.args_bytes()])
            + attachments_len(e.attachments())
    }

    fn record(self: Box<Self>, out: &mut [u8]) {
        let e = &self.event;
        let ack = e.take_ack_handle() as usize;
        let mut w = Writer::new(out, iobus_record_kind::IOBUS_RECORD_EVENT, 0, self.user, ack);
        w.field(e.nsp_bytes());
        w.field(e.sid_bytes());
        w.field(e.name_bytes());
        w.field(e.args_bytes());
        w.attachments(e.attachments());
    }
}

/// A socket that left.
pub(crate) struct DisconnectJob {
    pub(crate) cb: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *const c_char, *const c_char),
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
        // SAFETY: the host's callback; the strings outlive the call.
        unsafe {
            (self.cb)(self.user.get(), self.nsp.as_ptr(), self.sid.as_ptr(), self.reason.as_ptr(), self.rooms.as_ptr())
        };
    }

    fn held_bytes(&self) -> usize {
        JOB_OVERHEAD + self.fields().iter().map(|f| f.len()).sum::<usize>()
    }

    fn owed(&self) -> bool {
        true
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

/// The end of an emit-with-ack: the reply, or why there is none.
pub(crate) struct AckJob {
    pub(crate) cb: unsafe extern "C" fn(*mut c_void, iobus_ack_status, *const iobus_event),
    pub(crate) user: UserData,
    pub(crate) status: iobus_ack_status,
    /// The reply (status OK), or an empty event naming the socket.
    pub(crate) reply: iobus_event,
}

impl Job for AckJob {
    fn run(self: Box<Self>) {
        let reply: *const iobus_event =
            if self.status == iobus_ack_status::IOBUS_ACK_OK { &self.reply } else { std::ptr::null() };
        // SAFETY: the host's callback; the reply outlives the call.
        unsafe { (self.cb)(self.user.get(), self.status, reply) };
    }

    fn held_bytes(&self) -> usize {
        JOB_OVERHEAD + event_bytes(&self.reply)
    }

    fn owed(&self) -> bool {
        true
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
