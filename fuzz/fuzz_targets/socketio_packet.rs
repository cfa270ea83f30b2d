//! One Socket.IO packet and the binary frames that follow it, read the way
//! the server's client does (`src/server/client.rs`): decode with the default
//! attachment cap, collect one frame per announced attachment, then pair
//! placeholders and attachments (`bind_attachments`).
//!
//! An input is the packet text (without the Engine.IO `4`), then `0xFF`
//! before each binary frame. Nothing panics; a decoded packet has the shape
//! its type requires; EVENT, ACK and DISCONNECT packets encoded by the
//! server's encoder decode to the same packet; the placeholder checks agree
//! with an independent reading of the rules.
#![no_main]

use bytes::Bytes;
use iobus::ServerOptions;
use iobus::protocol::socketio::{
    self, Packet, PacketKind, RESERVED_EVENTS, bind_attachments, encode_ack, encode_disconnect, encode_event,
    placeholders_match,
};
use iobus_fuzz::{nums_in_range, nums_match, placeholder_nums, split_frames};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The packet text of an encoded frame (after the Engine.IO `4`).
fn packet_text(frame: &iobus::protocol::engine::Frame) -> &str {
    assert!(!frame.is_binary());
    let text = std::str::from_utf8(frame.bytes()).expect("an encoded packet is UTF-8");
    text.strip_prefix('4').expect("an encoded packet is an Engine.IO message")
}

fn check_shape(p: &Packet, max_attachments: usize) {
    assert!(p.nsp.starts_with('/'));
    assert!(!p.nsp.contains(','));
    let binary = matches!(p.kind, PacketKind::BinaryEvent | PacketKind::BinaryAck);
    if binary {
        assert!(p.attachments >= 1 && p.attachments <= max_attachments);
    } else {
        assert_eq!(p.attachments, 0);
    }
    match (p.kind, &p.data) {
        (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(a))) => match a.first() {
            Some(Value::String(name)) => assert!(!RESERVED_EVENTS.contains(&name.as_str())),
            Some(Value::Number(_)) => {}
            other => panic!("event name {other:?}"),
        },
        (PacketKind::Ack | PacketKind::BinaryAck, Some(Value::Array(_))) => {}
        (PacketKind::Connect, None | Some(Value::Object(_))) => {}
        (PacketKind::Disconnect, None) => {}
        (PacketKind::ConnectError, Some(Value::Object(_) | Value::String(_))) => {}
        (kind, data) => panic!("{kind:?} decoded with data {data:?}"),
    }
}

/// Re-encodes what the server itself sends and decodes it again.
fn check_round_trip(p: &Packet, max_attachments: usize) {
    let args = p.data.as_ref().and_then(Value::as_array);
    match (p.kind, args) {
        (PacketKind::Event | PacketKind::BinaryEvent, Some(a)) => {
            let (name, rest) = match a.split_first() {
                Some((Value::String(s), rest)) => (s.clone(), rest),
                // A numeric name reaches the host as its text (client.rs).
                Some((n, rest)) => (n.to_string(), rest),
                None => return,
            };
            let frame = encode_event(&p.nsp, &name, rest, p.attachments, p.id);
            let back = socketio::decode(packet_text(&frame), max_attachments);
            let mut expected = p.clone();
            if let Some(Value::Array(a)) = expected.data.as_mut() {
                a[0] = Value::String(name);
            }
            assert_eq!(back, Ok(expected));
        }
        (PacketKind::Ack | PacketKind::BinaryAck, Some(a)) => {
            let Some(id) = p.id else { return };
            let frame = encode_ack(&p.nsp, id, a, p.attachments);
            assert_eq!(socketio::decode(packet_text(&frame), max_attachments), Ok(p.clone()));
        }
        (PacketKind::Disconnect, _) => {
            let back = socketio::decode(packet_text(&encode_disconnect(&p.nsp)), max_attachments);
            // The server's DISCONNECT carries no ack id.
            assert_eq!(back, Ok(Packet { id: None, ..p.clone() }));
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let (text, frames) = split_frames(data);
    // Websocket text frames and polling bodies reach the decoder only as UTF-8.
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let max_attachments = ServerOptions::default().max_attachments;
    let Ok(packet) = socketio::decode(text, max_attachments) else {
        return;
    };
    check_shape(&packet, max_attachments);
    check_round_trip(&packet, max_attachments);

    let args: &[Value] = packet.data.as_ref().and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let nums = placeholder_nums(args);
    for n in 0..=max_attachments {
        assert_eq!(placeholders_match(args, n), nums_match(&nums, n), "matching {n}");
    }

    if packet.attachments == 0 {
        // Binary frames after a packet that announced none close the session.
        return;
    }
    // One frame per announced attachment; the packet is complete with the last.
    let binary: Vec<Bytes> = frames.iter().take(packet.attachments).map(|f| Bytes::copy_from_slice(f)).collect();
    if binary.len() < packet.attachments {
        // Still waiting: the next text packet would close the session.
        return;
    }
    // The session closes unless every placeholder takes an attachment of its
    // own; otherwise the host gets them paired one to one, renumbered in the
    // order they are met, and the attachments nobody named are dropped.
    let mut bound_args = args.to_vec();
    let bound = bind_attachments(&mut bound_args, binary.clone());
    let distinct = {
        let mut seen: Vec<u64> = nums.iter().flatten().copied().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() == nums.len()
    };
    let expect_bound = nums_in_range(&nums, binary.len()) && distinct;
    assert_eq!(bound.is_some(), expect_bound, "binding {nums:?} to {} attachments", binary.len());
    let Some(kept) = bound else {
        return;
    };
    assert_eq!(kept.len(), nums.len());
    for (i, n) in nums.iter().enumerate() {
        let n = n.expect("a bound placeholder has a number") as usize;
        assert_eq!(kept[i], binary[n]);
    }
    let payload = iobus::Payload::with_binary(bound_args, kept);
    assert!(nums_match(&placeholder_nums(&payload.args), payload.binary.len()));
    assert!(payload.is_consistent());
});
