//! Engine.IO v4 packets and long-polling payloads.
//!
//! A text packet is one type digit followed by its data (`4hello`, `2probe`).
//! Over websocket a binary frame is a raw binary message without a type byte.
//! Over long-polling several packets travel in one body, separated by the
//! record separator `\x1e`; a binary message is written as `b` + base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};

/// The record separator between packets of a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// A packet received from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `1`: the client closes the session.
    Close,
    /// `2` with optional data (`2probe` during an upgrade).
    Ping(String),
    /// `3` with optional data (`3probe`, or a heartbeat answer).
    Pong(String),
    /// `4`: a text message.
    Message(String),
    /// A binary message.
    Binary(Bytes),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: nothing.
    Noop,
    /// `0`: only a server sends it; a client sending it is an error.
    Open,
}

/// Why a packet or payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Empty packet.
    Empty,
    /// The first character is not a packet type.
    UnknownType,
    /// A `b` packet whose base64 does not decode.
    InvalidBase64,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeError::Empty => "empty packet",
            DecodeError::UnknownType => "unknown packet type",
            DecodeError::InvalidBase64 => "invalid base64 in binary packet",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one text packet (a websocket text frame, or one record of a
/// polling payload that does not start with `b`).
pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open,
        '1' => Packet::Close,
        '2' => Packet::Ping(rest.to_owned()),
        '3' => Packet::Pong(rest.to_owned()),
        '4' => Packet::Message(rest.to_owned()),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        _ => return Err(DecodeError::UnknownType),
    })
}

/// Decodes one record of a long-polling payload.
pub fn decode_record(record: &str) -> Result<Packet, DecodeError> {
    if let Some(b64) = record.strip_prefix('b') {
        let data = BASE64.decode(b64.as_bytes()).map_err(|_| DecodeError::InvalidBase64)?;
        return Ok(Packet::Binary(Bytes::from(data)));
    }
    decode_text(record)
}

/// Decodes a whole long-polling payload (the body of a POST).
pub fn decode_payload(body: &str) -> Result<Vec<Packet>, DecodeError> {
    body.split('\u{1e}').map(decode_record).collect()
}

/// A packet queued for a client, already encoded.
///
/// A text frame holds the whole Engine.IO text packet including its type
/// digit, so a broadcast is encoded once and the same bytes go to every
/// recipient. Text frames are built only from `str`/`String`, so their bytes
/// are always valid UTF-8 — the websocket writer relies on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    binary: bool,
    bytes: Bytes,
}

impl Frame {
    /// A text frame from an encoded packet (type digit included).
    pub fn text(text: String) -> Frame {
        Frame { binary: false, bytes: Bytes::from(text) }
    }
    /// A text frame from a constant.
    pub const fn text_static(text: &'static str) -> Frame {
        Frame { binary: false, bytes: Bytes::from_static(text.as_bytes()) }
    }
    /// A binary message.
    pub fn binary(bytes: Bytes) -> Frame {
        Frame { binary: true, bytes }
    }
    /// `2`: the server's heartbeat.
    pub const fn ping() -> Frame {
        Frame::text_static("2")
    }
    /// `3probe`: the answer to an upgrade probe.
    pub const fn pong_probe() -> Frame {
        Frame::text_static("3probe")
    }
    /// `6`: nothing, used to release a pending poll during an upgrade.
    pub const fn noop() -> Frame {
        Frame::text_static("6")
    }
    /// `1`: the session is over.
    pub const fn close() -> Frame {
        Frame::text_static("1")
    }
    /// `4` + text: a message.
    pub fn message(text: &str) -> Frame {
        let mut s = String::with_capacity(text.len() + 1);
        s.push('4');
        s.push_str(text);
        Frame::text(s)
    }
    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        self.binary
    }
    /// The encoded bytes (UTF-8 for a text frame).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// The encoded bytes, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
    /// Bytes this frame takes on the wire (before base64 for polling).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Whether the frame carries no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// The size of this frame inside a polling payload.
    pub fn polling_len(&self) -> usize {
        if self.binary { 1 + self.bytes.len().div_ceil(3) * 4 } else { self.bytes.len() }
    }
}

/// Builds the `0{…}` open packet.
pub fn open_packet(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> Frame {
    let upgrades: Vec<String> = upgrades.iter().map(|u| format!("\"{u}\"")).collect();
    // The sid is base64url, so it needs no escaping.
    let text = format!(
        "0{{\"sid\":\"{sid}\",\"upgrades\":[{}],\"pingInterval\":{ping_interval_ms},\"pingTimeout\":{ping_timeout_ms},\"maxPayload\":{max_payload}}}",
        upgrades.join(",")
    );
    Frame::text(text)
}

/// Joins frames into one long-polling payload.
pub fn encode_payload<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        if frame.binary {
            out.put_u8(b'b');
            out.put_slice(BASE64.encode(&frame.bytes).as_bytes());
        } else {
            out.put_slice(&frame.bytes);
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_text_type() {
        assert_eq!(decode_text("1"), Ok(Packet::Close));
        assert_eq!(decode_text("2probe"), Ok(Packet::Ping("probe".into())));
        assert_eq!(decode_text("3"), Ok(Packet::Pong(String::new())));
        assert_eq!(decode_text("4héllo"), Ok(Packet::Message("héllo".into())));
        assert_eq!(decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(decode_text("6"), Ok(Packet::Noop));
        assert_eq!(decode_text("0"), Ok(Packet::Open));
        assert_eq!(decode_text(""), Err(DecodeError::Empty));
        assert_eq!(decode_text("7"), Err(DecodeError::UnknownType));
        assert_eq!(decode_text("x4"), Err(DecodeError::UnknownType));
    }

    #[test]
    fn decodes_a_polling_payload_with_binary() {
        let packets = decode_payload("4hello\u{1e}bAQID\u{1e}3").unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message("hello".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3])),
                Packet::Pong(String::new()),
            ]
        );
        assert_eq!(decode_payload("b!!!"), Err(DecodeError::InvalidBase64));
        assert_eq!(decode_payload("4a\u{1e}"), Err(DecodeError::Empty));
    }

    #[test]
    fn encodes_a_polling_payload() {
        let frames = [Frame::message("hi"), Frame::binary(Bytes::from_static(&[1, 2, 3])), Frame::ping()];
        assert_eq!(&encode_payload(&frames)[..], b"4hi\x1ebAQID\x1e2");
        assert_eq!(frames[1].polling_len(), 5);
        assert_eq!(&encode_payload(&[])[..], b"");
    }

    #[test]
    fn open_packet_has_the_handshake_fields() {
        let frame = open_packet("abc", &["websocket"], 25000, 20000, 1_000_000);
        assert!(!frame.is_binary());
        let text = std::str::from_utf8(frame.bytes()).unwrap();
        assert!(text.starts_with('0'));
        let v: serde_json::Value = serde_json::from_str(&text[1..]).unwrap();
        assert_eq!(v["sid"], "abc");
        assert_eq!(v["upgrades"][0], "websocket");
        assert_eq!(v["pingInterval"], 25000);
        assert_eq!(v["pingTimeout"], 20000);
        assert_eq!(v["maxPayload"], 1_000_000);
    }
}
