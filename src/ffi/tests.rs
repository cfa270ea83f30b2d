//! The C ABI's server-side emits and the completions owed at free, driven
//! through the extern functions themselves. One server cannot exercise
//! them (it never receives its own server-side emits), so the server here
//! gets an adapter that stands in for a second server of a cluster running
//! the same handlers: what this server emits to "the others" comes back to
//! its own handlers, and their replies return as that server's replies.
//! Freeing past the free timeout drops what others sent but never a
//! completion. The C tests (tests/c) cover everything else against real clients.

use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::{iobus_config_free, iobus_config_new, iobus_config_set_dispatch, iobus_config_set_free_timeout};
use super::event::{iobus_ack, iobus_ack_send, iobus_event, iobus_event_args, iobus_event_name, iobus_event_namespace};
use super::event::{iobus_event_socket_id, iobus_event_take_ack};
use super::handlers::{iobus_server_on_server_side_emit, iobus_server_subscribe, iobus_server_unsubscribe};
use super::iobus_status;
use super::namespace::{
    iobus_namespace_all_rooms, iobus_namespace_server_side_emit, iobus_namespace_server_side_emit_with_ack,
};
use super::records::iobus_record_kind;
use super::server::{
    iobus_server, iobus_server_free, iobus_server_new, iobus_server_pending, iobus_server_poll_records,
    iobus_server_start,
};
use super::types::{iobus_ack_status, iobus_buf};
use crate::server::{Adapter, AdapterFactory, BroadcastAcks, EventPacket};
use crate::{Namespace, Payload};

const NUL_TERMINATED: usize = usize::MAX;

/// Another server with the same handlers, as far as server-side emits go.
/// Event `hold` is kept unanswered until the adapter is dropped; event
/// `lose` is dropped at once, as an adapter that loses a request would.
#[derive(Default)]
struct Mirror {
    held: Mutex<Vec<Arc<BroadcastAcks>>>,
}

impl Adapter for Mirror {
    fn server_side_emit(&self, nsp: &Arc<Namespace>, packet: &EventPacket, acks: Option<&Arc<BroadcastAcks>>) {
        match (packet.event.as_str(), acks) {
            ("hold", Some(acks)) => self.held.lock().push(acks.clone()),
            ("lose", _) => {}
            (_, Some(acks)) => {
                acks.expect_servers(1);
                acks.add_clients(1);
                let acks = acks.clone();
                let reply = Box::new(move |payload: Payload| acks.reply(payload));
                nsp.handle_server_side_emit(&packet.event, packet.payload.clone(), Some(reply));
            }
            (_, None) => nsp.handle_server_side_emit(&packet.event, packet.payload.clone(), None),
        }
    }
}

#[derive(Debug)]
struct MirrorFactory;

impl AdapterFactory for MirrorFactory {
    fn create(&self, _nsp: &str) -> Arc<dyn Adapter> {
        Arc::new(Mirror::default())
    }
}

/// What the callbacks saw, in order.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn text(p: *const c_char) -> String {
    if p.is_null() { "(null)".into() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned() }
}

unsafe extern "C" fn on_server_side(user: *mut c_void, ev: *const iobus_event) {
    let (nsp, sid, name, args) = unsafe {
        (
            text(iobus_event_namespace(ev)),
            text(iobus_event_socket_id(ev)),
            text(iobus_event_name(ev)),
            text(iobus_event_args(ev, std::ptr::null_mut())),
        )
    };
    SEEN.lock().push(format!("{} server-side nsp={nsp} sid={sid:?} name={name} args={args}", user as usize));
    let ack = unsafe { iobus_event_take_ack(ev) };
    if !ack.is_null() {
        let bin = iobus_buf { data: b"\x01\x02".as_ptr(), len: 2 };
        let reply = c"[\"pong\",{\"_placeholder\":true,\"num\":0}]";
        let st = unsafe { iobus_ack_send(ack, reply.as_ptr(), NUL_TERMINATED, &bin, 1) };
        SEEN.lock().push(format!("answered {st:?}"));
    }
}

unsafe extern "C" fn on_replies(
    user: *mut c_void,
    status: iobus_ack_status,
    expected: usize,
    replies: *const c_char,
    len: usize,
    binary: *const iobus_buf,
    count: usize,
) {
    let json = text(replies);
    assert_eq!(json.len(), len);
    let bufs = if count == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(binary, count) } };
    let bytes: Vec<Vec<u8>> =
        bufs.iter().map(|b| unsafe { std::slice::from_raw_parts(b.data, b.len) }.to_vec()).collect();
    SEEN.lock().push(format!("{} replies {status:?} expected={expected} {json} {bytes:?}", user as usize));
}

unsafe extern "C" fn on_rooms(user: *mut c_void, json: *const c_char, len: usize) {
    let json = text(json);
    assert_eq!(json.len(), len);
    SEEN.lock().push(format!("{} rooms {json}", user as usize));
}

fn wait_for(needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(line) = SEEN.lock().iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no callback saw {needle:?}; seen: {:#?}", SEEN.lock());
}

/// A server whose adapter mirrors server-side emits; `free_timeout_ms`:
/// the free timeout, if not the default.
fn mirrored_server(poll: bool, free_timeout_ms: Option<u64>) -> *mut iobus_server {
    let cfg = iobus_config_new();
    unsafe {
        (*cfg).options.adapter = Arc::new(MirrorFactory);
        if poll {
            assert_eq!(iobus_config_set_dispatch(cfg, 1), iobus_status::IOBUS_OK);
        }
        if let Some(ms) = free_timeout_ms {
            assert_eq!(iobus_config_set_free_timeout(cfg, ms), iobus_status::IOBUS_OK);
        }
    }
    let mut server = std::ptr::null_mut();
    assert_eq!(unsafe { iobus_server_new(cfg, &mut server) }, iobus_status::IOBUS_OK);
    unsafe { iobus_config_free(cfg) };
    server
}

// One test, because the callbacks share SEEN.
#[test]
fn server_side_emits_reach_the_other_servers_handlers_and_their_replies_come_back() {
    // Callbacks: the event, its reply (binary kept), the completion.
    let server = mirrored_server(false, None);
    let nsp = c"/".as_ptr();
    unsafe {
        assert_eq!(iobus_server_on_server_side_emit(server, nsp, Some(on_server_side), 7 as _), iobus_status::IOBUS_OK);
        assert_eq!(iobus_server_start(server, std::ptr::null(), 0), iobus_status::IOBUS_OK);
        let st = iobus_namespace_server_side_emit_with_ack(
            server,
            nsp,
            c"ping".as_ptr(),
            c"[1]".as_ptr(),
            NUL_TERMINATED,
            std::ptr::null(),
            0,
            5000,
            Some(on_replies),
            11 as _,
        );
        assert_eq!(st, iobus_status::IOBUS_OK);
    }
    wait_for("7 server-side nsp=/ sid=\"\" name=ping args=[1]");
    wait_for("answered IOBUS_OK");
    let done = wait_for("11 replies");
    assert_eq!(
        done, "11 replies IOBUS_ACK_OK expected=1 [[\"pong\",{\"_placeholder\":true,\"num\":0}]] [[1, 2]]",
        "one server's reply, its attachment kept"
    );
    unsafe {
        let st = iobus_namespace_server_side_emit(
            server,
            nsp,
            c"note".as_ptr(),
            c"[\"x\"]".as_ptr(),
            NUL_TERMINATED,
            std::ptr::null(),
            0,
        );
        assert_eq!(st, iobus_status::IOBUS_OK);
    }
    wait_for("name=note args=[\"x\"]");

    // An operation the adapter drops at once completes as DISCONNECTED; one
    // it still holds at free completes then, before free returns.
    unsafe {
        for (event, user) in [(c"lose", 12usize), (c"hold", 13)] {
            let st = iobus_namespace_server_side_emit_with_ack(
                server,
                nsp,
                event.as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null(),
                0,
                0,
                Some(on_replies),
                user as _,
            );
            assert_eq!(st, iobus_status::IOBUS_OK);
        }
    }
    wait_for("12 replies IOBUS_ACK_DISCONNECTED expected=0 [] []");
    assert!(!SEEN.lock().iter().any(|l| l.starts_with("13 ")));
    unsafe { iobus_server_free(server) };
    wait_for("13 replies IOBUS_ACK_DISCONNECTED expected=0 [] []");

    // Records: a subscription, and a completion without a callback.
    let server = mirrored_server(true, None);
    let kind = iobus_record_kind::IOBUS_RECORD_SERVER_SIDE_EMIT as i32;
    unsafe {
        assert_eq!(iobus_server_subscribe(server, nsp, kind, std::ptr::null(), 21 as _), iobus_status::IOBUS_OK);
        assert_eq!(
            iobus_server_subscribe(server, nsp, kind, c"named".as_ptr(), 21 as _),
            iobus_status::IOBUS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(iobus_server_start(server, std::ptr::null(), 0), iobus_status::IOBUS_OK);
        let st = iobus_namespace_server_side_emit_with_ack(
            server,
            nsp,
            c"ask".as_ptr(),
            c"[2]".as_ptr(),
            NUL_TERMINATED,
            std::ptr::null(),
            0,
            5000,
            None,
            22 as _,
        );
        assert_eq!(st, iobus_status::IOBUS_OK);
    }
    let mut buf = vec![0u8; 4096];
    let records = take(server, &mut buf);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.kind, r.user), (iobus_record_kind::IOBUS_RECORD_SERVER_SIDE_EMIT as u8, 21));
    assert_eq!(r.fields, vec![b"/".to_vec(), b"".to_vec(), b"ask".to_vec(), b"[2]".to_vec()]);
    assert!(r.attachments.is_empty());
    assert_ne!(r.handle, 0);
    unsafe {
        let st =
            iobus_ack_send(r.handle as usize as *mut iobus_ack, c"[3]".as_ptr(), NUL_TERMINATED, std::ptr::null(), 0);
        assert_eq!(st, iobus_status::IOBUS_OK);
    }
    let records = take(server, &mut buf);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.kind, r.status, r.user), (iobus_record_kind::IOBUS_RECORD_BROADCAST_ACK as u8, 0, 22));
    assert_eq!(r.handle, 1, "the number of servers expected");
    assert_eq!(r.fields, vec![b"[[3]]".to_vec()]);

    // Unsubscribed: nothing more arrives.
    unsafe {
        assert_eq!(iobus_server_unsubscribe(server, nsp, kind, std::ptr::null()), iobus_status::IOBUS_OK);
        let st =
            iobus_namespace_server_side_emit(server, nsp, c"gone".as_ptr(), std::ptr::null(), 0, std::ptr::null(), 0);
        assert_eq!(st, iobus_status::IOBUS_OK);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(take(server, &mut buf).is_empty());
    unsafe { iobus_server_free(server) };

    // Freed past its free timeout (0: at once), with nothing polled: the
    // server-side emit another server sent is dropped, but the completions
    // still run, queued (all rooms) or still held by the adapter (an emit
    // with acks).
    let server = mirrored_server(true, Some(0));
    unsafe {
        assert_eq!(
            iobus_server_on_server_side_emit(server, nsp, Some(on_server_side), 31 as _),
            iobus_status::IOBUS_OK
        );
        assert_eq!(iobus_server_start(server, std::ptr::null(), 0), iobus_status::IOBUS_OK);
        let st = iobus_namespace_server_side_emit(
            server,
            nsp,
            c"late".as_ptr(),
            c"[\"x\"]".as_ptr(),
            NUL_TERMINATED,
            std::ptr::null(),
            0,
        );
        assert_eq!(st, iobus_status::IOBUS_OK);
        let st = iobus_namespace_server_side_emit_with_ack(
            server,
            nsp,
            c"hold".as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
            0,
            Some(on_replies),
            32 as _,
        );
        assert_eq!(st, iobus_status::IOBUS_OK);
        assert_eq!(iobus_namespace_all_rooms(server, nsp, Some(on_rooms), 33 as _), iobus_status::IOBUS_OK);
        let (mut callbacks, mut bytes) = (0usize, 0usize);
        assert_eq!(iobus_server_pending(server, &mut callbacks, &mut bytes), iobus_status::IOBUS_OK);
        assert_eq!(callbacks, 2, "the server-side emit and the rooms wait; the held emit is not queued yet");
        assert!(bytes >= 2 * super::records::JOB_OVERHEAD + "/late[\"x\"]".len() + "[]".len(), "{bytes} bytes");
        assert_eq!(iobus_server_pending(server, std::ptr::null_mut(), std::ptr::null_mut()), iobus_status::IOBUS_OK);
        iobus_server_free(server);
    }
    // Both ran before free returned.
    assert!(SEEN.lock().iter().any(|l| l == "33 rooms []"), "{:#?}", SEEN.lock());
    assert!(SEEN.lock().iter().any(|l| l == "32 replies IOBUS_ACK_DISCONNECTED expected=0 [] []"));
    assert!(!SEEN.lock().iter().any(|l| l.starts_with("31 ")), "dropped past the free timeout");
}

struct Record {
    kind: u8,
    status: u8,
    user: u64,
    handle: u64,
    fields: Vec<Vec<u8>>,
    attachments: Vec<Vec<u8>>,
}

/// Takes what is pending as records (waiting a little for the first).
fn take(server: *mut iobus_server, buf: &mut [u8]) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_millis(500);
    let (mut len, mut count) = (0usize, 0usize);
    while count == 0 && Instant::now() < deadline {
        let st = unsafe { iobus_server_poll_records(server, buf.as_mut_ptr(), buf.len(), &mut len, &mut count) };
        assert_eq!(st, iobus_status::IOBUS_OK);
        if count == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
    let u64_at = |b: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let size = u32_at(buf, at);
        let rec = &buf[at..at + size];
        let (kind, status, user, handle) = (rec[4], rec[5], u64_at(rec, 8), u64_at(rec, 16));
        // Both kinds here: four fields then attachments, or one field then attachments.
        let n_fields = if kind == iobus_record_kind::IOBUS_RECORD_SERVER_SIDE_EMIT as u8 { 4 } else { 1 };
        let mut p = 24;
        let mut field = || {
            let n = u32_at(rec, p);
            let f = rec[p + 4..p + 4 + n].to_vec();
            p += 4 + n;
            f
        };
        let fields: Vec<Vec<u8>> = (0..n_fields).map(|_| field()).collect();
        let count = u32_at(rec, p);
        p += 4;
        let mut attachments = Vec::new();
        for _ in 0..count {
            let n = u32_at(rec, p);
            attachments.push(rec[p + 4..p + 4 + n].to_vec());
            p += 4 + n;
        }
        assert_eq!(p, size, "the items fill the record");
        out.push(Record { kind, status, user, handle, fields, attachments });
        at += size;
    }
    out
}
