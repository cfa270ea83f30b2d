//! Socket.IO v5 packets.
//!
//! A packet is `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`; the
//! namespace is omitted when it is `/`. Binary attachments stay where the
//! wire puts them: the JSON keeps its `{"_placeholder":true,"num":N}` objects
//! and the attachments travel beside it, in order. The encoder writes the
//! Engine.IO message digit `4` in front, so the result is a ready frame.

use serde_json::Value;

use super::engine::Frame;

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `0`
    Connect = 0,
    /// `1`
    Disconnect = 1,
    /// `2`
    Event = 2,
    /// `3`
    Ack = 3,
    /// `4`
    ConnectError = 4,
    /// `5`
    BinaryEvent = 5,
    /// `6`
    BinaryAck = 6,
}

impl PacketKind {
    fn from_digit(c: u8) -> Option<PacketKind> {
        Some(match c {
            b'0' => PacketKind::Connect,
            b'1' => PacketKind::Disconnect,
            b'2' => PacketKind::Event,
            b'3' => PacketKind::Ack,
            b'4' => PacketKind::ConnectError,
            b'5' => PacketKind::BinaryEvent,
            b'6' => PacketKind::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, PacketKind::BinaryEvent | PacketKind::BinaryAck)
    }
}

/// Event names a client may not send: they are the server's own events.
pub const RESERVED_EVENTS: &[&str] =
    &["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// A decoded packet. For binary packets `attachments` says how many binary
/// frames follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The packet type.
    pub kind: PacketKind,
    /// The namespace, `/` when omitted.
    pub nsp: String,
    /// The ack id, when the sender wants an acknowledgement.
    pub id: Option<u64>,
    /// The JSON data, when present.
    pub data: Option<Value>,
    /// How many binary attachments follow (binary types only).
    pub attachments: usize,
}

/// Why a packet was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Empty string.
    Empty,
    /// The first character is not a packet type.
    UnknownType,
    /// The attachment count is missing or malformed.
    IllegalAttachments,
    /// More attachments than allowed.
    TooManyAttachments,
    /// The ack id does not fit.
    InvalidId,
    /// The JSON does not parse.
    InvalidJson,
    /// The JSON parses but is not what this packet type carries.
    InvalidPayload,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeError::Empty => "empty packet",
            DecodeError::UnknownType => "unknown packet type",
            DecodeError::IllegalAttachments => "illegal attachments",
            DecodeError::TooManyAttachments => "too many attachments",
            DecodeError::InvalidId => "invalid ack id",
            DecodeError::InvalidJson => "invalid JSON",
            DecodeError::InvalidPayload => "invalid payload",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one packet from the text of an Engine.IO message (without the `4`).
pub fn decode(text: &str, max_attachments: usize) -> Result<Packet, DecodeError> {
    let bytes = text.as_bytes();
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let kind = PacketKind::from_digit(first).ok_or(DecodeError::UnknownType)?;
    let mut i = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= bytes.len() || bytes[i] != b'-' {
            return Err(DecodeError::IllegalAttachments);
        }
        attachments = text[start..i].parse::<usize>().map_err(|_| DecodeError::TooManyAttachments)?;
        if attachments == 0 {
            return Err(DecodeError::IllegalAttachments);
        }
        if attachments > max_attachments {
            return Err(DecodeError::TooManyAttachments);
        }
        i += 1;
    }

    let mut nsp = String::from("/");
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = text[start..i].to_owned();
        if i < bytes.len() {
            i += 1; // the comma
        }
    }

    let mut id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        id = Some(text[start..i].parse::<u64>().map_err(|_| DecodeError::InvalidId)?);
    }

    let data = if i < bytes.len() {
        let value: Value = serde_json::from_str(&text[i..]).map_err(|_| DecodeError::InvalidJson)?;
        Some(value)
    } else {
        None
    };

    let packet = Packet { kind, nsp, id, data, attachments };
    if !payload_is_valid(&packet) {
        return Err(DecodeError::InvalidPayload);
    }
    Ok(packet)
}

fn payload_is_valid(p: &Packet) -> bool {
    match (p.kind, &p.data) {
        (PacketKind::Connect, None) => true,
        (PacketKind::Connect, Some(v)) => v.is_object(),
        (PacketKind::Disconnect, d) => d.is_none(),
        (PacketKind::ConnectError, Some(v)) => v.is_object() || v.is_string(),
        (PacketKind::ConnectError, None) => false,
        (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(a))) => match a.first() {
            Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
            Some(Value::Number(_)) => true,
            _ => false,
        },
        (PacketKind::Event | PacketKind::BinaryEvent, _) => false,
        (PacketKind::Ack | PacketKind::BinaryAck, Some(v)) => v.is_array(),
        (PacketKind::Ack | PacketKind::BinaryAck, None) => false,
    }
}

/// The JSON object standing for binary attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// Whether `v` is a binary placeholder object.
pub fn is_placeholder(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.get("_placeholder") == Some(&Value::Bool(true)),
        _ => false,
    }
}

/// Checks that placeholders and attachments pair up one to one: every
/// placeholder points at an attachment that exists, and every attachment is
/// referenced exactly once, so a host cannot send a packet a client would
/// fail to rebuild.
pub fn placeholders_match(values: &[Value], attachments: usize) -> bool {
    fn walk(v: &Value, seen: &mut [bool]) -> bool {
        match v {
            Value::Object(m) if is_placeholder(v) => match m.get("num").and_then(Value::as_u64) {
                Some(n) if (n as usize) < seen.len() && !seen[n as usize] => {
                    seen[n as usize] = true;
                    true
                }
                _ => false,
            },
            Value::Object(m) => m.values().all(|x| walk(x, seen)),
            Value::Array(a) => a.iter().all(|x| walk(x, seen)),
            _ => true,
        }
    }
    let mut seen = vec![false; attachments];
    values.iter().all(|v| walk(v, &mut seen)) && seen.iter().all(|s| *s)
}

/// Pairs the placeholders of a received binary packet with its attachments,
/// so that a handler gets arguments it can send back as they are: each
/// placeholder points at an attachment of its own and each attachment is
/// pointed at once. Placeholders are renumbered in the order they are met,
/// and attachments no placeholder points at are dropped, as other servers
/// drop them. Returns the attachments in their new order.
///
/// `None` when an object marked `"_placeholder":true` does not point at an
/// attachment (`num` missing, negative, fractional, out of range), or points
/// at one that another placeholder already took: sharing would let a client
/// have one attachment copied once per placeholder by whoever reads the event.
pub fn bind_attachments<T>(values: &mut [Value], attachments: Vec<T>) -> Option<Vec<T>> {
    fn walk<T>(v: &mut Value, slots: &mut [Option<T>], out: &mut Vec<T>) -> bool {
        match v {
            Value::Object(m) if m.get("_placeholder") == Some(&Value::Bool(true)) => {
                let taken = m
                    .get("num")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| slots.get_mut(n))
                    .and_then(Option::take);
                let Some(attachment) = taken else {
                    return false;
                };
                *v = placeholder(out.len());
                out.push(attachment);
                true
            }
            Value::Object(m) => m.values_mut().all(|x| walk(x, slots, out)),
            Value::Array(a) => a.iter_mut().all(|x| walk(x, slots, out)),
            _ => true,
        }
    }
    let mut slots: Vec<Option<T>> = attachments.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    values.iter_mut().all(|v| walk(v, &mut slots, &mut out)).then_some(out)
}

fn write_header(out: &mut Vec<u8>, kind: PacketKind, nsp: &str, attachments: usize, id: Option<u64>) {
    out.push(b'4');
    let kind = if attachments > 0 {
        match kind {
            PacketKind::Event => PacketKind::BinaryEvent,
            PacketKind::Ack => PacketKind::BinaryAck,
            k => k,
        }
    } else {
        kind
    };
    out.push(b'0' + kind as u8);
    if kind.is_binary() {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.push(b'-');
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
}

fn write_array<'a>(out: &mut Vec<u8>, head: Option<&str>, values: impl IntoIterator<Item = &'a Value>) {
    out.push(b'[');
    let mut first = true;
    if let Some(head) = head {
        // Writing a `&str` as JSON cannot fail.
        let _ = serde_json::to_writer(&mut *out, head);
        first = false;
    }
    for v in values {
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, v);
    }
    out.push(b']');
}

fn into_frame(out: Vec<u8>) -> Frame {
    // Everything written above came from `&str` or serde_json, both UTF-8.
    match String::from_utf8(out) {
        Ok(s) => Frame::text(s),
        Err(e) => Frame::text(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Encodes an EVENT (or BINARY_EVENT when `attachments > 0`) as a whole
/// Engine.IO text frame: `42["event",…]`.
pub fn encode_event(nsp: &str, event: &str, args: &[Value], attachments: usize, id: Option<u64>) -> Frame {
    let mut out = Vec::with_capacity(16 + nsp.len() + event.len() + 32 * args.len());
    write_header(&mut out, PacketKind::Event, nsp, attachments, id);
    write_array(&mut out, Some(event), args);
    into_frame(out)
}

/// Encodes an ACK (or BINARY_ACK) frame: `43<id>[…]`.
pub fn encode_ack(nsp: &str, id: u64, args: &[Value], attachments: usize) -> Frame {
    let mut out = Vec::with_capacity(16 + nsp.len() + 32 * args.len());
    write_header(&mut out, PacketKind::Ack, nsp, attachments, Some(id));
    write_array(&mut out, None, args);
    into_frame(out)
}

/// Encodes the CONNECT reply: `40{"sid":"…"}`.
pub fn encode_connect(nsp: &str, sid: &str) -> Frame {
    let mut out = Vec::with_capacity(40 + nsp.len());
    write_header(&mut out, PacketKind::Connect, nsp, 0, None);
    let _ = serde_json::to_writer(&mut out, &serde_json::json!({ "sid": sid }));
    into_frame(out)
}

/// Encodes a CONNECT reply that also carries the private id used for
/// connection state recovery: `40{"sid":"…","pid":"…"}`.
pub fn encode_connect_with_pid(nsp: &str, sid: &str, pid: &str) -> Frame {
    let mut out = Vec::with_capacity(70 + nsp.len());
    write_header(&mut out, PacketKind::Connect, nsp, 0, None);
    let _ = serde_json::to_writer(&mut out, &serde_json::json!({ "sid": sid, "pid": pid }));
    into_frame(out)
}

/// Encodes a CONNECT_ERROR: `44{"message":"…","data":…}`.
pub fn encode_connect_error(nsp: &str, message: &str, data: Option<&Value>) -> Frame {
    let mut out = Vec::with_capacity(40 + nsp.len() + message.len());
    write_header(&mut out, PacketKind::ConnectError, nsp, 0, None);
    out.extend_from_slice(b"{\"message\":");
    let _ = serde_json::to_writer(&mut out, message);
    if let Some(d) = data {
        out.extend_from_slice(b",\"data\":");
        let _ = serde_json::to_writer(&mut out, d);
    }
    out.push(b'}');
    into_frame(out)
}

/// Encodes a DISCONNECT: `41` or `41/admin,`.
pub fn encode_disconnect(nsp: &str) -> Frame {
    let mut out = Vec::with_capacity(4 + nsp.len());
    write_header(&mut out, PacketKind::Disconnect, nsp, 0, None);
    into_frame(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(f: Frame) -> String {
        String::from_utf8(f.bytes().to_vec()).unwrap()
    }

    #[test]
    fn decodes_every_packet_type() {
        let p = decode("0", 10).unwrap();
        assert_eq!((p.kind, p.nsp.as_str(), p.data), (PacketKind::Connect, "/", None));
        let p = decode("0/admin,{\"token\":\"1\"}", 10).unwrap();
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.data, Some(json!({"token": "1"})));
        let p = decode("0/admin,", 10).unwrap();
        assert_eq!((p.nsp.as_str(), p.data), ("/admin", None));
        let p = decode("0/admin", 10).unwrap();
        assert_eq!(p.nsp, "/admin");
        assert_eq!(decode("1", 10).unwrap().kind, PacketKind::Disconnect);
        assert_eq!(decode("1/admin,", 10).unwrap().nsp, "/admin");
        let p = decode("2[\"foo\",1]", 10).unwrap();
        assert_eq!((p.kind, p.id), (PacketKind::Event, None));
        assert_eq!(p.data, Some(json!(["foo", 1])));
        let p = decode("2/admin,12[\"bar\"]", 10).unwrap();
        assert_eq!((p.nsp.as_str(), p.id), ("/admin", Some(12)));
        let p = decode("312[1,\"2\"]", 10).unwrap();
        assert_eq!((p.kind, p.id, p.data), (PacketKind::Ack, Some(12), Some(json!([1, "2"]))));
        let p = decode("4{\"message\":\"no\"}", 10).unwrap();
        assert_eq!(p.kind, PacketKind::ConnectError);
        let p = decode("51-[\"baz\",{\"_placeholder\":true,\"num\":0}]", 10).unwrap();
        assert_eq!((p.kind, p.attachments), (PacketKind::BinaryEvent, 1));
        let p = decode("61-/admin,15[{\"_placeholder\":true,\"num\":0}]", 10).unwrap();
        assert_eq!((p.kind, p.attachments, p.nsp.as_str(), p.id), (PacketKind::BinaryAck, 1, "/admin", Some(15)));
        let p = decode("2[42]", 10).unwrap();
        assert_eq!(p.data, Some(json!([42])));
    }

    #[test]
    fn refuses_malformed_packets() {
        assert_eq!(decode("", 10), Err(DecodeError::Empty));
        assert_eq!(decode("7", 10), Err(DecodeError::UnknownType));
        assert_eq!(decode("a", 10), Err(DecodeError::UnknownType));
        assert_eq!(decode("2[\"a\"", 10), Err(DecodeError::InvalidJson));
        assert_eq!(decode("2{\"a\":1}", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2[]", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2[{}]", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2[\"connect\"]", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2[\"disconnecting\",1]", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("3{}", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("3", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("0[1]", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("0\"x\"", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("1{}", 10), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("5[\"a\"]", 10), Err(DecodeError::IllegalAttachments));
        assert_eq!(decode("51[\"a\"]", 10), Err(DecodeError::IllegalAttachments));
        assert_eq!(decode("5-[\"a\"]", 10), Err(DecodeError::IllegalAttachments));
        assert_eq!(decode("511-[\"a\"]", 10), Err(DecodeError::TooManyAttachments));
        assert_eq!(decode("50-[\"a\"]", 10), Err(DecodeError::IllegalAttachments));
        assert_eq!(decode("599999999999999999999999-[\"a\"]", 10), Err(DecodeError::TooManyAttachments));
        assert_eq!(decode("2999999999999999999999[\"a\"]", 10), Err(DecodeError::InvalidId));
    }

    #[test]
    fn encodes_packets_as_frames() {
        assert_eq!(s(encode_event("/", "foo", &[json!(1)], 0, None)), "42[\"foo\",1]");
        assert_eq!(s(encode_event("/admin", "bar", &[], 0, Some(12))), "42/admin,12[\"bar\"]");
        assert_eq!(
            s(encode_event("/", "baz", &[placeholder(0)], 1, None)),
            "451-[\"baz\",{\"_placeholder\":true,\"num\":0}]"
        );
        assert_eq!(s(encode_ack("/", 12, &[json!(1), json!("2")], 0)), "4312[1,\"2\"]");
        assert_eq!(
            s(encode_ack("/admin", 15, &[placeholder(0)], 1)),
            "461-/admin,15[{\"_placeholder\":true,\"num\":0}]"
        );
        assert_eq!(s(encode_connect("/", "abc")), "40{\"sid\":\"abc\"}");
        assert_eq!(s(encode_connect("/admin", "abc")), "40/admin,{\"sid\":\"abc\"}");
        assert_eq!(
            s(encode_connect_error("/random", "Invalid namespace", None)),
            "44/random,{\"message\":\"Invalid namespace\"}"
        );
        assert_eq!(
            s(encode_connect_error("/", "Not authorized", Some(&json!({"a": 1})))),
            "44{\"message\":\"Not authorized\",\"data\":{\"a\":1}}"
        );
        assert_eq!(s(encode_disconnect("/")), "41");
        assert_eq!(s(encode_disconnect("/admin")), "41/admin,");
        assert_eq!(s(encode_event("/", "ü\"", &[json!("é")], 0, None)), "42[\"ü\\\"\",\"é\"]");
    }

    #[test]
    fn round_trips_through_the_decoder() {
        let frame = encode_event("/chat", "msg", &[json!({"a": [1, null]}), placeholder(0)], 1, Some(7));
        let text = std::str::from_utf8(&frame.bytes()[1..]).unwrap();
        let p = decode(text, 10).unwrap();
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!(p.attachments, 1);
        assert_eq!(p.id, Some(7));
        assert_eq!(p.nsp, "/chat");
        assert_eq!(p.data, Some(json!(["msg", {"a": [1, null]}, placeholder(0)])));
    }

    #[test]
    fn relays_numbers_exactly() {
        // Read correctly rounded (as JSON.parse reads it) and written back unchanged.
        let p = decode("2[\"n\",1890123.67890123456789012389012345678901234567890]", 10).unwrap();
        assert_eq!(p.data, Some(json!(["n", 1890123.6789012346])));
        let frame = encode_event("/", "n", &[json!(1890123.6789012346)], 0, None);
        assert_eq!(s(frame.clone()), "42[\"n\",1890123.6789012346]");
        assert_eq!(decode(&s(frame)[1..], 10), Ok(p));
    }

    #[test]
    fn checks_placeholders_against_attachments() {
        assert!(placeholders_match(&[json!(1)], 0));
        assert!(placeholders_match(&[json!({"x": [placeholder(0)]}), placeholder(1)], 2));
        assert!(!placeholders_match(&[placeholder(1)], 1));
        assert!(!placeholders_match(&[placeholder(0), placeholder(0)], 1));
        assert!(!placeholders_match(&[json!(1)], 1));
        assert!(!placeholders_match(&[json!({"_placeholder": true, "num": "a"})], 1));
        // A marked object without a number is a placeholder a client cannot resolve.
        assert!(!placeholders_match(&[json!({"_placeholder": true}), placeholder(0)], 1));
    }

    #[test]
    fn binds_received_placeholders_to_attachments() {
        let bind = |mut values: Vec<Value>, n: usize| {
            let attachments: Vec<usize> = (0..n).collect();
            bind_attachments(&mut values, attachments).map(|a| (values, a))
        };
        // In order, nested, and renumbered in the order they are met.
        assert_eq!(
            bind(vec![json!({"x": [placeholder(1)]}), placeholder(0)], 2),
            Some((vec![json!({"x": [placeholder(0)]}), placeholder(1)], vec![1, 0]))
        );
        // Attachments nobody points at are dropped.
        assert_eq!(bind(vec![placeholder(1)], 2), Some((vec![placeholder(0)], vec![1])));
        assert_eq!(bind(vec![json!(1)], 1), Some((vec![json!(1)], vec![])));
        let not_marked = json!({"_placeholder": false, "num": 0});
        assert_eq!(bind(vec![not_marked.clone()], 1), Some((vec![not_marked], vec![])));
        // A placeholder that points nowhere, or at a taken attachment.
        assert_eq!(bind(vec![placeholder(1)], 1), None);
        assert_eq!(bind(vec![placeholder(0), json!([placeholder(0)])], 1), None);
        for num in [json!(-1), json!(0.5), json!(0.0), json!("splice"), json!(null), json!(u64::MAX)] {
            assert_eq!(bind(vec![json!({"_placeholder": true, "num": num})], 1), None, "num {num}");
        }
        assert_eq!(bind(vec![json!({"_placeholder": true})], 1), None);
    }
}
