//! What the fuzz targets share: how an input file is cut into a text part and
//! the binary frames that follow it, how a decoded Engine.IO packet is written
//! back, and an independent reading of the placeholder rules to compare the
//! library's against.

use iobus::protocol::engine::{Frame, Packet};
use serde_json::Value;

/// Separates the text part of an input from its binary frames. No UTF-8 text
/// holds this byte, so a seed file is the packet as it travels, then one
/// `0xFF` before each attachment.
pub const FRAME_SEPARATOR: u8 = 0xFF;

/// The text part of an input and its binary frames, in order.
pub fn split_frames(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let mut parts = data.split(|&b| b == FRAME_SEPARATOR);
    let text = parts.next().unwrap_or(&[]);
    (text, parts.collect())
}

/// A decoded Engine.IO packet written back as the frame that carries it.
/// Data after `1`, `5`, `6` and `0` is not kept by the decoder, so it is not
/// written either.
pub fn engine_frame(packet: &Packet) -> Frame {
    match packet {
        Packet::Open => Frame::text_static("0"),
        Packet::Close => Frame::close(),
        Packet::Ping(data) => Frame::text(format!("2{data}")),
        Packet::Pong(data) => Frame::text(format!("3{data}")),
        Packet::Message(text) => Frame::message(text),
        Packet::Binary(bytes) => Frame::binary(bytes.clone()),
        Packet::Upgrade => Frame::text_static("5"),
        Packet::Noop => Frame::noop(),
    }
}

/// The `num` of every placeholder object in `values`, depth first; `None`
/// for a placeholder whose `num` is missing or not a non-negative integer. A
/// placeholder is an object with `"_placeholder": true` (as Socket.IO's
/// parsers read it); its other members are not searched.
pub fn placeholder_nums(values: &[Value]) -> Vec<Option<u64>> {
    fn walk(v: &Value, out: &mut Vec<Option<u64>>) {
        match v {
            Value::Object(m) => {
                if m.get("_placeholder") == Some(&Value::Bool(true)) {
                    out.push(m.get("num").and_then(Value::as_u64));
                } else {
                    m.values().for_each(|x| walk(x, out));
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    values.iter().for_each(|v| walk(v, &mut out));
    out
}

/// Every placeholder points below `attachments`.
pub fn nums_in_range(nums: &[Option<u64>], attachments: usize) -> bool {
    nums.iter().all(|n| n.is_some_and(|n| n < attachments as u64))
}

/// The placeholders name each of `0..attachments` exactly once.
pub fn nums_match(nums: &[Option<u64>], attachments: usize) -> bool {
    let mut sorted: Vec<Option<u64>> = nums.to_vec();
    sorted.sort();
    sorted.len() == attachments && sorted.iter().enumerate().all(|(i, n)| *n == Some(i as u64))
}
