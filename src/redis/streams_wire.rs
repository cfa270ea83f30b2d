//! The `@socket.io/redis-streams-adapter` 0.3 wire format, as pure
//! functions: names, the cluster messages of `socket.io-adapter`'s
//! `ClusterAdapter`, stream offsets, and the saved sessions of connection
//! state recovery. No I/O.
//!
//! A message is `{uid, nsp, type, data}`: the sender node's id (16 hex
//! characters, one per namespace adapter in Node; `emitter` for an
//! emitter), the namespace, a type from 1 to 13 (see [`MessageType`]) and,
//! for most types, a data object.
//!
//! - Messages that must reach every node in order — broadcasts without acks,
//!   remote joins, leaves and disconnects — are stream entries: `XADD
//!   <stream> MAXLEN ~ <maxLen> * uid <uid> nsp <nsp> type <n> data <data>`
//!   (fields in that order, `type` as decimal text, `data` absent when the
//!   message has none). `data` is the object's JSON text, or — when a
//!   message of a type that may carry binary holds some — the base64 text
//!   of its MessagePack encoding; readers tell them apart by the first
//!   character (`{`). The entry's id (`<ms>-<seq>`) is the offset a stored
//!   packet carries as its last argument.
//! - Short-lived requests — broadcasts with acks, fetching sockets,
//!   server-side emits — are the whole message as MessagePack, PUBLISHed to
//!   `<prefix>#<nsp>#`; answers go to the asking node's own channel
//!   `<prefix>#<nsp>#<uid>#`. The number of nodes serving a namespace is
//!   `PUBSUB NUMSUB <prefix>#<nsp>#`.
//! - A dropped socket's session is `SET <sessionPrefix><pid> <base64
//!   MessagePack of {sid, pid, rooms, data}> PX <maxDisconnectionDuration>`.
//!
//! A broadcast's data is `{packet: {type: 2, data: [event, ...args]}, opts:
//! {rooms, except, flags}}` (plus `requestId` with acks), the packet as
//! socket.io-parser's object, binary arguments as MessagePack `bin`.

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{Value, json};

use super::wire::{self, WireError};
use crate::server::{BroadcastOptions, EventPacket, SavedSession};

/// socket.io-parser's EVENT packet type.
const EVENT: u64 = 2;

/// Reads base64 with or without padding, as Node's `Buffer.from(s, "base64")`.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The kinds of cluster messages (`socket.io-adapter`'s `MessageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageType {
    /// A node started (heartbeat adapters only; not sent by 0.3).
    InitialHeartbeat = 1,
    /// A node is alive (heartbeat adapters only; not sent by 0.3).
    Heartbeat = 2,
    /// A broadcast (with `requestId`: one that asks for acks).
    Broadcast = 3,
    /// The matching sockets join rooms.
    SocketsJoin = 4,
    /// The matching sockets leave rooms.
    SocketsLeave = 5,
    /// The matching sockets disconnect.
    DisconnectSockets = 6,
    /// Which sockets match.
    FetchSockets = 7,
    /// A node's matching sockets.
    FetchSocketsResponse = 8,
    /// An event for the other servers' handlers.
    ServerSideEmit = 9,
    /// A server's reply to it.
    ServerSideEmitResponse = 10,
    /// A node's number of recipients of a broadcast with acks.
    BroadcastClientCount = 11,
    /// One recipient's ack.
    BroadcastAck = 12,
    /// A node's adapter closed (heartbeat adapters only; not sent by 0.3).
    AdapterClose = 13,
}

impl MessageType {
    fn of(n: u64) -> Option<MessageType> {
        Some(match n {
            1 => MessageType::InitialHeartbeat,
            2 => MessageType::Heartbeat,
            3 => MessageType::Broadcast,
            4 => MessageType::SocketsJoin,
            5 => MessageType::SocketsLeave,
            6 => MessageType::DisconnectSockets,
            7 => MessageType::FetchSockets,
            8 => MessageType::FetchSocketsResponse,
            9 => MessageType::ServerSideEmit,
            10 => MessageType::ServerSideEmitResponse,
            11 => MessageType::BroadcastClientCount,
            12 => MessageType::BroadcastAck,
            13 => MessageType::AdapterClose,
            _ => return None,
        })
    }

    /// Whether messages of this type may carry binary (and are then sent
    /// as MessagePack in a stream entry).
    fn may_carry_binary(self) -> bool {
        matches!(
            self,
            MessageType::Broadcast
                | MessageType::FetchSocketsResponse
                | MessageType::ServerSideEmit
                | MessageType::ServerSideEmitResponse
                | MessageType::BroadcastAck
        )
    }
}

// ---- names -------------------------------------------------------------------

/// The channel every node serving namespace `nsp` listens on.
pub(crate) fn public_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// The channel of node `uid` alone (the answers to its requests).
pub(crate) fn private_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    format!("{prefix}#{nsp}#{uid}#")
}

/// The stream a namespace's messages go to: `name` with one stream, else
/// `name-<i>` for `i = hashCode(nsp) % count` computed as JavaScript does
/// (32-bit, over UTF-16 units; a negative hash gives a negative `i`).
pub(crate) fn stream_name(name: &str, count: u32, nsp: &str) -> String {
    if count <= 1 {
        return name.to_owned();
    }
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    format!("{name}-{}", hash_code(nsp) % count)
}

/// Java's `String.hashCode`, as the npm adapter computes it.
pub(crate) fn hash_code(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// A random id like `socket.io-adapter`'s: 8 random bytes as hex.
pub(crate) fn random_id() -> String {
    let mut raw = [0u8; 8];
    rand::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- offsets -----------------------------------------------------------------

/// A stream entry id, `<ms>-<seq>`: the offset of a stored packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct StreamId {
    ms: u64,
    seq: u64,
}

impl StreamId {
    /// Reads an id; `None` unless it is `<digits>-<digits>` (the npm
    /// adapter's check of a client's offset) and fits.
    pub(crate) fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }

    /// The smallest id after this one (an exclusive XRANGE start that
    /// Redis before 6.2 understands, as the npm adapter computes it).
    pub(crate) fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId { ms: self.ms.saturating_add(1), seq: 0 },
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

// ---- messages ----------------------------------------------------------------

/// A cluster message, read or to be written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    /// The sender node.
    pub(crate) uid: String,
    /// The namespace.
    pub(crate) nsp: String,
    /// The type number as sent (unknown ones are kept, and ignored).
    pub(crate) kind: u64,
    /// The data object, binary values as placeholders into `binary`.
    pub(crate) data: Value,
    /// The binary values, in placeholder order.
    pub(crate) binary: Vec<Bytes>,
}

impl Message {
    /// A message of this node.
    pub(crate) fn new(uid: &str, nsp: &str, kind: MessageType, data: Value, binary: Vec<Bytes>) -> Message {
        Message { uid: uid.to_owned(), nsp: nsp.to_owned(), kind: kind as u64, data, binary }
    }

    /// The type, when known.
    pub(crate) fn kind(&self) -> Option<MessageType> {
        MessageType::of(self.kind)
    }

    /// A text field of the data object.
    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.data.get(name).and_then(Value::as_str)
    }

    /// The request id (a broadcast with one asks for acks).
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.str("requestId")
    }

    /// The fields of the stream entry, in the npm adapter's order: `uid`,
    /// `nsp`, `type`, and `data` unless the message has none (`null`).
    pub(crate) fn to_entry(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = vec![
            ("uid", self.uid.as_bytes().to_vec()),
            ("nsp", self.nsp.as_bytes().to_vec()),
            ("type", self.kind.to_string().into_bytes()),
        ];
        if !self.data.is_null() {
            let binary = !self.binary.is_empty() && self.kind().is_some_and(MessageType::may_carry_binary);
            let data = if binary {
                STANDARD.encode(wire::encode(&wire::to_msgpack(&self.data, &self.binary)))
            } else {
                self.data.to_string()
            };
            fields.push(("data", data.into_bytes()));
        }
        fields
    }

    /// A message from a stream entry's fields; `None` for an entry without
    /// a namespace (the npm adapter skips those too).
    pub(crate) fn from_entry<'a>(
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Option<Message>, WireError> {
        let (mut uid, mut nsp, mut kind, mut data) = (None, None, None, None);
        for (name, value) in fields {
            match name {
                b"uid" => uid = Some(text(value)),
                b"nsp" => nsp = Some(text(value)),
                b"type" => kind = Some(text(value)),
                b"data" => data = Some(value),
                _ => {}
            }
        }
        let Some(nsp) = nsp.filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let kind = kind.as_deref().and_then(|k| k.trim().parse::<u64>().ok()).unwrap_or(0);
        let (data, binary) = match data.filter(|d| !d.is_empty()) {
            None => (Value::Null, Vec::new()),
            Some(d) if d.first() == Some(&b'{') => {
                let v = serde_json::from_slice(d).map_err(|e| WireError(format!("invalid JSON data: {e}")))?;
                (v, Vec::new())
            }
            Some(d) => {
                let raw = BASE64_LENIENT.decode(d).map_err(|e| WireError(format!("invalid base64 data: {e}")))?;
                wire::decode(&raw)?
            }
        };
        Ok(Some(Message { uid: uid.unwrap_or_default(), nsp, kind, data, binary }))
    }

    /// The message as published: MessagePack `{type, data, uid, nsp}`.
    pub(crate) fn to_msgpack(&self) -> Vec<u8> {
        let mut entries = vec![(Mp::from("type"), Mp::from(self.kind))];
        if !self.data.is_null() {
            entries.push((Mp::from("data"), wire::to_msgpack(&self.data, &self.binary)));
        }
        entries.push((Mp::from("uid"), Mp::from(self.uid.as_str())));
        entries.push((Mp::from("nsp"), Mp::from(self.nsp.as_str())));
        wire::encode(&Mp::Map(entries))
    }

    /// A published message.
    pub(crate) fn from_msgpack(bytes: &[u8]) -> Result<Message, WireError> {
        let mut input = bytes;
        let value = rmpv::decode::read_value(&mut input).map_err(|e| WireError(format!("invalid MessagePack: {e}")))?;
        let mut binary = Vec::new();
        let value = wire::from_msgpack(&value, &mut binary).unwrap_or(Value::Null);
        if !value.is_object() {
            return Err(WireError("a message is a map".into()));
        }
        let kind = match value.get("type") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        Ok(Message {
            uid: wire::str_field(&value, "uid").unwrap_or_default().to_owned(),
            nsp: wire::str_field(&value, "nsp").unwrap_or_default().to_owned(),
            kind,
            data: value.get("data").cloned().unwrap_or(Value::Null),
            binary,
        })
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- data objects ------------------------------------------------------------

/// socket.io-parser's packet object for an event, as a Node server hands
/// it to its adapter: `{type: 2, data: [event, ...args]}`.
pub(crate) fn packet_json(packet: &EventPacket) -> Value {
    let mut data = Vec::with_capacity(1 + packet.payload.args.len());
    data.push(Value::String(packet.event.clone()));
    data.extend(packet.payload.args.iter().cloned());
    json!({ "type": EVENT, "data": data })
}

/// A selection as the messages carry it: `{rooms, except, flags}`, the
/// excluded socket ids among the excluded rooms.
pub(crate) fn opts_json(opts: &BroadcastOptions) -> Value {
    let mut except = opts.except_rooms_and_sids();
    let mut seen = std::collections::HashSet::new();
    except.retain(|r| seen.insert(r.clone()));
    let mut flags = serde_json::Map::new();
    if opts.flags.volatile {
        flags.insert("volatile".into(), Value::Bool(true));
    }
    if let Some(timeout) = opts.flags.timeout {
        flags.insert("timeout".into(), json!(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)));
    }
    json!({ "rooms": opts.rooms, "except": except, "flags": flags })
}

/// A broadcast's data: `{packet, opts}`, or `{packet, requestId, opts}` for
/// one that asks for acks.
pub(crate) fn broadcast_data(packet: &EventPacket, opts: &BroadcastOptions, request_id: Option<&str>) -> Value {
    match request_id {
        Some(id) => json!({ "packet": packet_json(packet), "requestId": id, "opts": opts_json(opts) }),
        None => json!({ "packet": packet_json(packet), "opts": opts_json(opts) }),
    }
}

/// A broadcast read from a message's data: the packet and the selection
/// (`None` for anything but an event).
pub(crate) fn broadcast_from(message: &Message) -> Option<(EventPacket, BroadcastOptions)> {
    let (_, packet) = wire::packet_from(message.data.get("packet")?, message.binary.clone())?;
    Some((packet, wire::opts_from(message.data.get("opts"))))
}

/// Whether a broadcast's selection was volatile (such packets get no offset
/// and are not replayed).
pub(crate) fn is_volatile(message: &Message) -> bool {
    // socket.io-adapter checks `flags.volatile === undefined`: any value counts.
    message.data.get("opts").and_then(|o| o.get("flags")).and_then(|f| f.get("volatile")).is_some()
}

/// The server-side emit's `packet`: `[event, ...args]`.
pub(crate) fn server_side_packet(packet: &EventPacket) -> Value {
    let mut data = Vec::with_capacity(1 + packet.payload.args.len());
    data.push(Value::String(packet.event.clone()));
    data.extend(packet.payload.args.iter().cloned());
    Value::Array(data)
}

// ---- sessions ----------------------------------------------------------------

/// A dropped socket's session as stored: base64 of the MessagePack map
/// `{sid, pid, rooms, data}` (what socket.io persists).
pub(crate) fn encode_session(session: &SavedSession) -> String {
    let rooms = Mp::Array(session.rooms.iter().map(|r| Mp::from(r.as_str())).collect());
    let map = Mp::Map(vec![
        (Mp::from("sid"), Mp::from(session.sid.as_str())),
        (Mp::from("pid"), Mp::from(session.pid.as_str())),
        (Mp::from("rooms"), rooms),
        (Mp::from("data"), wire::to_msgpack(&session.data, &[])),
    ]);
    STANDARD.encode(wire::encode(&map))
}

/// A stored session; binary values in its data become Node's JSON form of
/// a Buffer (`{"type":"Buffer","data":[...]}`), as iobus keeps data as JSON.
pub(crate) fn decode_session(text: &[u8]) -> Result<SavedSession, WireError> {
    let raw = BASE64_LENIENT.decode(text).map_err(|e| WireError(format!("invalid base64 session: {e}")))?;
    let (value, binary) = wire::decode(&raw)?;
    let field = |name: &str| wire::str_field(&value, name).map(str::to_owned);
    let (Some(sid), Some(pid)) = (field("sid"), field("pid")) else {
        return Err(WireError("a session has a sid and a pid".into()));
    };
    let data = value.get("data").map_or(Value::Null, |d| wire::json_with_buffers(d, &binary));
    Ok(SavedSession { sid, pid, rooms: wire::rooms(value.get("rooms")), data, start: 0 })
}

/// Whether a stored packet reached a socket in `rooms` (socket.io's rule).
pub(crate) fn reaches(opts: &BroadcastOptions, rooms: &[String]) -> bool {
    let included = opts.rooms.is_empty() || rooms.iter().any(|r| opts.rooms.contains(r));
    included && !rooms.iter().any(|r| opts.except.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{BroadcastFlags, Payload, placeholder};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn names_follow_the_npm_adapter() {
        assert_eq!(public_channel("socket.io", "/"), "socket.io#/#");
        assert_eq!(private_channel("socket.io", "/chat", "0123456789abcdef"), "socket.io#/chat#0123456789abcdef#");
        assert_eq!(stream_name("socket.io", 1, "/anything"), "socket.io");
        // The npm adapter's hashCode, run in Node.
        assert_eq!(hash_code("/"), 47);
        assert_eq!(hash_code("/admin"), 1438238848);
        assert_eq!(hash_code("/é"), 1690);
        assert_eq!(hash_code("/zzzzzzzzzz"), -138347089);
        assert_eq!(stream_name("socket.io", 3, "/chat"), "socket.io-1");
        // A negative hash gives a negative index in JavaScript too (and -0 is "0").
        assert_eq!(stream_name("s", 3, "/zzzzzzzzzz"), "s--1");
        assert_eq!(stream_name("s", 3, "/negative-ns-zz"), "s-0");
        let id = random_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn offsets_are_stream_ids() {
        let id = StreamId::parse("1709632800123-7").expect("id");
        assert_eq!(id.to_string(), "1709632800123-7");
        assert_eq!(id.next().to_string(), "1709632800123-8");
        assert!(StreamId::parse("1-0") < StreamId::parse("1-1"));
        assert!(StreamId::parse("2-0") > StreamId::parse("1-99"));
        for bad in ["", "1", "-1", "1-", "a-1", "1-1-1", "1 -1", "abc", "ff-0"] {
            assert!(StreamId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_broadcast_entry_is_json_text_without_binary() {
        let packet = EventPacket { event: "ev".into(), payload: Payload::new(vec![json!(1), json!("a")]), id: None };
        let opts = BroadcastOptions {
            rooms: vec!["r".into()],
            except_sids: vec![crate::Sid::parse("AAAAAAAAAAAAAAAAAAAA").expect("sid")],
            ..BroadcastOptions::default()
        };
        let m = Message::new("abc", "/", MessageType::Broadcast, broadcast_data(&packet, &opts, None), Vec::new());
        let fields = m.to_entry();
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["uid", "nsp", "type", "data"]);
        assert_eq!(fields[2].1, b"3");
        assert_eq!(
            String::from_utf8_lossy(&fields[3].1),
            r#"{"packet":{"type":2,"data":["ev",1,"a"]},"opts":{"rooms":["r"],"except":["AAAAAAAAAAAAAAAAAAAA"],"flags":{}}}"#
        );
        let back = Message::from_entry(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())))
            .expect("reads")
            .expect("has a namespace");
        assert_eq!(back, m);
        let (p, o) = broadcast_from(&back).expect("broadcast");
        assert_eq!(p, packet);
        assert_eq!(o.rooms, opts.rooms);
        assert_eq!(o.except, vec!["AAAAAAAAAAAAAAAAAAAA".to_string()]);
        assert!(!is_volatile(&back));
    }

    #[test]
    fn binary_goes_as_base64_msgpack_like_the_npm_adapter() {
        // What the npm adapter writes for io.emit("ev", Buffer.from([1, 2])):
        // base64 of @msgpack/msgpack's encoding of
        // {packet: {type: 2, data: ["ev", <bin 0102>]}, opts: {rooms: [], except: [], flags: {}}}.
        let npm = STANDARD.encode(hex(concat!(
            "82",
            "a67061636b6574",
            "82",
            "a474797065",
            "02",
            "a464617461",
            "92",
            "a26576",
            "c4020102",
            "a46f707473",
            "83",
            "a5726f6f6d73",
            "90",
            "a6657863657074",
            "90",
            "a5666c616773",
            "80",
        )));
        let packet = EventPacket {
            event: "ev".into(),
            payload: Payload::with_binary(vec![placeholder(0)], vec![Bytes::from_static(&[1, 2])]),
            id: None,
        };
        let m = Message::new(
            "u",
            "/",
            MessageType::Broadcast,
            broadcast_data(&packet, &BroadcastOptions::default(), None),
            packet.payload.binary.clone(),
        );
        let fields = m.to_entry();
        assert_eq!(String::from_utf8_lossy(&fields[3].1), npm);
        let entry = [(&b"uid"[..], &b"u"[..]), (b"nsp", b"/"), (b"type", b"3"), (b"data", npm.as_bytes())];
        let back = Message::from_entry(entry).expect("reads").expect("message");
        assert_eq!(broadcast_from(&back).map(|(p, _)| p), Some(packet));
        // Without padding too, as Node reads it.
        let unpadded = npm.trim_end_matches('=');
        let entry = [(&b"uid"[..], &b"u"[..]), (b"nsp", b"/"), (b"type", b"3"), (b"data", unpadded.as_bytes())];
        assert!(Message::from_entry(entry).expect("reads").is_some());
    }

    #[test]
    fn entries_without_namespace_or_with_bad_data() {
        let entry = [(&b"uid"[..], &b"u"[..]), (b"type", b"3")];
        assert_eq!(Message::from_entry(entry).expect("reads"), None);
        let entry = [(&b"nsp"[..], &b"/"[..]), (b"type", b"4"), (b"data", b"{oops")];
        assert!(Message::from_entry(entry).is_err());
        let entry = [(&b"nsp"[..], &b"/"[..]), (b"type", b"4"), (b"data", b"!!!")];
        assert!(Message::from_entry(entry).is_err());
        let entry = [(&b"nsp"[..], &b"/"[..]), (b"type", b"2")];
        let m = Message::from_entry(entry).expect("reads").expect("message");
        assert_eq!((m.kind(), m.data), (Some(MessageType::Heartbeat), Value::Null));
    }

    #[test]
    fn published_messages_are_whole_msgpack_maps() {
        let m = Message::new(
            "0011223344556677",
            "/",
            MessageType::FetchSockets,
            json!({"opts": {"rooms": ["r"], "except": [], "flags": {}}, "requestId": "q"}),
            Vec::new(),
        );
        let bytes = m.to_msgpack();
        // @msgpack/msgpack's bytes for the same object.
        assert_eq!(
            bytes,
            hex(concat!(
                "84a47479706507a46461746182a46f70747383a5726f6f6d7391a172a665786365707490a5666c61677380",
                "a9726571756573744964a171a3756964b030303131323233333434353536363737a36e7370a12f"
            ))
        );
        let back = Message::from_msgpack(&bytes).expect("reads");
        assert_eq!(back, m);
        assert_eq!(back.request_id(), Some("q"));
        assert!(Message::from_msgpack(&[0x01]).is_err());
        assert!(Message::from_msgpack(&[0x85]).is_err());
    }

    #[test]
    fn sessions_round_trip_and_read_node_buffers() {
        let session = SavedSession {
            sid: "AAAAAAAAAAAAAAAAAAAA".into(),
            pid: "BBBBBBBBBBBBBBBBBBBB".into(),
            rooms: vec!["AAAAAAAAAAAAAAAAAAAA".into(), "r".into()],
            data: json!({"name": "ada", "n": 1}),
            start: 0,
        };
        let text = encode_session(&session);
        assert_eq!(decode_session(text.as_bytes()).expect("reads"), session);
        // {sid: "s", pid: "p", rooms: ["s"], data: {b: <bin ff>}}
        let node = STANDARD.encode(hex("84a3736964a173a3706964a170a5726f6f6d7391a173a46461746181a162c401ff"));
        let s = decode_session(node.as_bytes()).expect("reads");
        assert_eq!(s.data, json!({"b": {"type": "Buffer", "data": [255]}}));
        assert_eq!(s.rooms, vec!["s".to_string()]);
        assert!(decode_session(b"!!").is_err());
        assert!(decode_session(STANDARD.encode(hex("80")).as_bytes()).is_err());
    }

    #[test]
    fn volatile_and_reach() {
        let opts = BroadcastOptions {
            rooms: vec!["a".into()],
            except: vec!["x".into()],
            flags: BroadcastFlags { volatile: true, ..BroadcastFlags::default() },
            ..BroadcastOptions::default()
        };
        let packet = EventPacket { event: "e".into(), payload: Payload::empty(), id: None };
        let m = Message::new("u", "/", MessageType::Broadcast, broadcast_data(&packet, &opts, None), Vec::new());
        assert!(is_volatile(&m));
        let (_, o) = broadcast_from(&m).expect("broadcast");
        let rooms = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(reaches(&o, &rooms(&["s", "a"])));
        assert!(!reaches(&o, &rooms(&["s", "a", "x"])));
        assert!(!reaches(&o, &rooms(&["s", "b"])));
        assert!(reaches(&BroadcastOptions::default(), &rooms(&["s"])));
    }
}
