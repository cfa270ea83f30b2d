//! The C API's argument reader (`src/ffi/convert.rs`, `payload`): the JSON
//! argument array and the binary attachments a host passes to
//! `iobus_socket_emit`, `iobus_ack_send` and the broadcasts.
//!
//! An input is one flags byte, the `args_json` bytes, then `0xFF` before each
//! attachment. Flags: bit 0 passes `args_json` as NULL, bit 1 passes the
//! attachment array as NULL, bit 2 passes the last attachment's data as NULL.
//! Each input is read twice, with its length and NUL-terminated
//! (`len == SIZE_MAX`), and the result is compared with what the C API
//! documents: NULL errors, invalid UTF-8, JSON that is not an array,
//! attachments whose placeholders do not name each exactly once (without
//! attachments the arguments are plain JSON). An accepted
//! payload, sent as an event, decodes on the wire to the same arguments.
#![no_main]

use std::ffi::c_char;

use iobus::Payload;
use iobus::ffi::types::iobus_buf;
use iobus::ffi::{fuzz_payload, iobus_status};
use iobus::protocol::socketio::{self, PacketKind};
use iobus_fuzz::{nums_match, placeholder_nums, split_frames};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

type Outcome = Result<Payload, (iobus_status, String)>;

/// Calls the reader as a C host would.
fn read(args: Option<&[u8]>, nul_terminated: bool, bufs: Option<&[iobus_buf]>, count: usize) -> Outcome {
    let mut owned;
    let (ptr, len): (*const c_char, usize) = match args {
        None => (std::ptr::null(), if nul_terminated { usize::MAX } else { 0 }),
        Some(a) if nul_terminated => {
            owned = a.to_vec();
            owned.push(0);
            (owned.as_ptr().cast(), usize::MAX)
        }
        Some(a) => (a.as_ptr().cast(), a.len()),
    };
    let bufs_ptr = bufs.map_or(std::ptr::null(), <[iobus_buf]>::as_ptr);
    // SAFETY: every pointer is NULL or points at `len` (or NUL-terminated)
    // bytes and `count` buffers that outlive the call.
    unsafe { fuzz_payload(ptr, len, bufs_ptr, count) }
}

/// What the C API documents for these inputs (status only; the message is free).
fn expected(
    args: Option<&[u8]>,
    attachments: &[Option<&[u8]>],
    bufs_null: bool,
) -> Result<(Vec<Value>, usize), iobus_status> {
    let values = match args {
        None => Vec::new(),
        Some(a) => {
            let text = std::str::from_utf8(a).map_err(|_| iobus_status::IOBUS_ERR_INVALID_UTF8)?;
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(v)) => v,
                _ => return Err(iobus_status::IOBUS_ERR_INVALID_JSON),
            }
        }
    };
    if !attachments.is_empty() && bufs_null {
        return Err(iobus_status::IOBUS_ERR_NULL_ARGUMENT);
    }
    if attachments.iter().any(|a| a.is_none()) {
        return Err(iobus_status::IOBUS_ERR_NULL_ARGUMENT);
    }
    // Without attachments the arguments are plain JSON; with them, the
    // placeholders name each attachment exactly once.
    if !attachments.is_empty() && !nums_match(&placeholder_nums(&values), attachments.len()) {
        return Err(iobus_status::IOBUS_ERR_INVALID_BINARY);
    }
    Ok((values, attachments.len()))
}

fn check(outcome: &Outcome, expect: &Result<(Vec<Value>, usize), iobus_status>, attachments: &[Option<&[u8]>]) {
    match (outcome, expect) {
        (Ok(p), Ok((values, n))) => {
            assert_eq!(&p.args, values);
            assert_eq!(p.binary.len(), *n);
            for (b, a) in p.binary.iter().zip(attachments) {
                assert_eq!(Some(&b[..]), *a);
            }
            assert!(p.is_consistent());
        }
        (Err((status, message)), Err(e)) => {
            assert_eq!(status, e, "{message}");
            assert!(!message.is_empty());
        }
        (got, want) => panic!("got {got:?}, the C API documents {want:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (args, parts) = split_frames(rest);
    let args = if flags & 1 != 0 { None } else { Some(args) };
    let bufs_null = flags & 2 != 0;
    let last_null = flags & 4 != 0;

    let mut attachments: Vec<Option<&[u8]>> = parts.iter().map(|p| Some(*p)).collect();
    let mut bufs: Vec<iobus_buf> = parts.iter().map(|p| iobus_buf { data: p.as_ptr(), len: p.len() }).collect();
    if last_null && let (Some(a), Some(b)) = (attachments.last_mut(), bufs.last_mut()) {
        b.data = std::ptr::null();
        // NULL data is fine when it has no bytes.
        *a = if b.len > 0 { None } else { Some(&[]) };
    }
    let bufs_arg = if bufs_null { None } else { Some(&bufs[..]) };

    // With a length.
    let by_len = read(args, false, bufs_arg, bufs.len());
    check(&by_len, &expected(args, &attachments, bufs_null), &attachments);

    // NUL-terminated: C reads up to the first NUL.
    let prefix = args.map(|a| &a[..a.iter().position(|&b| b == 0).unwrap_or(a.len())]);
    let by_nul = read(args, true, bufs_arg, bufs.len());
    check(&by_nul, &expected(prefix, &attachments, bufs_null), &attachments);

    // An accepted payload goes out as an event a client decodes to the same
    // arguments and attachment count.
    if let Ok(p) = by_len {
        let frame = socketio::encode_event("/", "event", &p.args, p.binary.len(), None);
        let text = std::str::from_utf8(frame.bytes()).expect("an encoded packet is UTF-8");
        let text = text.strip_prefix('4').expect("an encoded packet is an Engine.IO message");
        let packet = socketio::decode(text, p.binary.len()).expect("an accepted payload encodes to a valid packet");
        let binary = !p.binary.is_empty();
        assert_eq!(packet.kind, if binary { PacketKind::BinaryEvent } else { PacketKind::Event });
        assert_eq!(packet.attachments, p.binary.len());
        let mut expected_data = vec![Value::String("event".into())];
        expected_data.extend(p.args.iter().cloned());
        assert_eq!(packet.data, Some(Value::Array(expected_data)));
    }
});
