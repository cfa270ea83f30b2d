//! The `@socket.io/redis-adapter` 8.3 wire format, as pure functions: channel
//! names, message shapes, and the conversion between MessagePack values and
//! iobus's payloads (JSON arguments whose binary values are
//! `{"_placeholder":true,"num":N}` objects, attachments beside them). No I/O.
//!
//! Channels, under a key (default `socket.io`), per namespace `nsp`:
//! - `key#nsp#` — broadcasts to everyone or to several rooms, and
//!   `key#nsp#room#` — broadcasts to exactly one room (nodes subscribe to
//!   the pattern `key#nsp#*` and drop one-room messages for rooms they do
//!   not hold);
//! - `key-request#nsp#` — requests to every node (its `PUBSUB NUMSUB` count
//!   is the number of nodes serving the namespace);
//! - `key-response#nsp#` and `key-response#nsp#<uid>#` — responses, on the
//!   shared channel or on the asking node's own one.
//!
//! A broadcast is the MessagePack array `[uid, packet, {rooms, except,
//! flags}]`, `packet` being socket.io-parser's packet object `{type: 2, data:
//! [event, ...args], nsp}`, binary arguments as MessagePack `bin` values.
//! Requests and responses are JSON objects, except those that carry a packet
//! (a broadcast with acks, an ack reply), which are MessagePack maps;
//! receivers tell them apart by the first byte (`{`). The npm encoder
//! (notepack.io) writes `undefined` as nil and leaves undefined object
//! members out, and writes a `Date` as a timestamp extension, which is read
//! back here as the ISO text `JSON.stringify` would give.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{Map, Value};

use crate::protocol::socketio::is_placeholder;
use crate::server::{BroadcastFlags, BroadcastOptions, EventPacket, Payload, SocketInfo, placeholder};

/// socket.io-parser's EVENT packet type.
const EVENT: u64 = 2;
/// socket.io-parser's BINARY_EVENT packet type.
const BINARY_EVENT: u64 = 5;

/// The kinds of requests between nodes (and of some responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestType {
    /// The ids of the sockets in some rooms (no longer sent by socket.io 4,
    /// still answered).
    Sockets = 0,
    /// Every room with members.
    AllRooms = 1,
    /// Matching sockets join rooms.
    RemoteJoin = 2,
    /// Matching sockets leave rooms.
    RemoteLeave = 3,
    /// Matching sockets disconnect.
    RemoteDisconnect = 4,
    /// The matching sockets, with handshake, rooms and data.
    RemoteFetch = 5,
    /// An event for the other servers' handlers (and its replies).
    ServerSideEmit = 6,
    /// A broadcast whose recipients are asked for acks.
    Broadcast = 7,
    /// A node's number of recipients of a broadcast with acks.
    BroadcastClientCount = 8,
    /// One recipient's ack.
    BroadcastAck = 9,
}

impl RequestType {
    /// The type a message carries.
    pub(crate) fn of(message: &Value) -> Option<RequestType> {
        Some(match message.get("type")?.as_u64()? {
            0 => RequestType::Sockets,
            1 => RequestType::AllRooms,
            2 => RequestType::RemoteJoin,
            3 => RequestType::RemoteLeave,
            4 => RequestType::RemoteDisconnect,
            5 => RequestType::RemoteFetch,
            6 => RequestType::ServerSideEmit,
            7 => RequestType::Broadcast,
            8 => RequestType::BroadcastClientCount,
            9 => RequestType::BroadcastAck,
            _ => return None,
        })
    }
}

/// The channels of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channels {
    /// `key#nsp#`: broadcasts, and the prefix of one-room broadcasts.
    pub(crate) broadcast: String,
    /// `key-request#nsp#`.
    pub(crate) request: String,
    /// `key-response#nsp#`.
    pub(crate) response: String,
    /// `key-response#nsp#<uid>#`: responses meant for this node alone.
    pub(crate) own_response: String,
}

impl Channels {
    pub(crate) fn new(key: &str, nsp: &str, uid: &str) -> Channels {
        let response = format!("{key}-response#{nsp}#");
        Channels {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            own_response: format!("{response}{uid}#"),
            response,
        }
    }

    /// The pattern every broadcast channel of the namespace matches.
    pub(crate) fn broadcast_pattern(&self) -> String {
        format!("{}*", self.broadcast)
    }

    /// Where a broadcast to `rooms` is published: its room's own channel
    /// when there is exactly one.
    pub(crate) fn broadcast_to(&self, rooms: &[String]) -> String {
        match rooms {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }

    /// The room a broadcast channel names (`None` for the namespace-wide
    /// channel or a channel of another namespace).
    pub(crate) fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let rest = channel.strip_prefix(self.broadcast.as_str())?;
        rest.strip_suffix('#').filter(|room| !room.is_empty())
    }

    /// Where the answer to a request from node `uid` goes.
    pub(crate) fn response_to(&self, uid: Option<&str>, own_channels: bool) -> String {
        match uid {
            Some(uid) if own_channels => format!("{}{uid}#", self.response),
            _ => self.response.clone(),
        }
    }
}

/// A random id like the npm adapter's (`uid2(6)`): six characters from
/// `[A-Za-z0-9]`.
pub(crate) fn random_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 6];
    rand::fill(&mut raw);
    raw.iter().map(|b| CHARS[usize::from(*b) % CHARS.len()] as char).collect()
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// ---- MessagePack ⇄ JSON with attachments ------------------------------------

/// A JSON value as MessagePack, its placeholders replaced by the
/// attachments they name (as `bin`).
pub(crate) fn to_msgpack(value: &Value, binary: &[Bytes]) -> Mp {
    match value {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else {
                Mp::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(items) => Mp::Array(items.iter().map(|v| to_msgpack(v, binary)).collect()),
        Value::Object(map) => {
            if is_placeholder(value) {
                let num = map.get("num").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
                if let Some(bytes) = num.and_then(|n| binary.get(n)) {
                    return Mp::Binary(bytes.to_vec());
                }
            }
            Mp::Map(map.iter().map(|(k, v)| (Mp::from(k.as_str()), to_msgpack(v, binary))).collect())
        }
    }
}

/// A MessagePack value as JSON; each `bin` becomes a placeholder and its
/// bytes are appended to `binary`. `None` for JavaScript's `undefined`
/// (left out of objects, `null` in arrays, as `JSON.stringify` does).
pub(crate) fn from_msgpack(value: &Mp, binary: &mut Vec<Bytes>) -> Option<Value> {
    Some(match value {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(*b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::Null,
        },
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Mp::String(s) => Value::String(match s.as_str() {
            Some(text) => text.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Mp::Binary(bytes) => {
            binary.push(Bytes::copy_from_slice(bytes));
            placeholder(binary.len() - 1)
        }
        Mp::Array(items) => {
            Value::Array(items.iter().map(|v| from_msgpack(v, binary).unwrap_or(Value::Null)).collect())
        }
        Mp::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let Some(v) = from_msgpack(v, binary) else {
                    continue;
                };
                let key = match k {
                    Mp::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => match from_msgpack(other, &mut Vec::new()) {
                        Some(Value::String(s)) => s,
                        Some(v) => v.to_string(),
                        None => continue,
                    },
                };
                map.insert(key, v);
            }
            Value::Object(map)
        }
        // notepack.io's old encoding of `undefined`.
        Mp::Ext(0, data) if data.as_slice() == [0] => return None,
        Mp::Ext(-1, data) => timestamp(data).map_or(Value::Null, |t| Value::String(iso_time(t))),
        Mp::Ext(..) => Value::Null,
    })
}

/// The MessagePack timestamp extension (32, 64 or 96 bits).
fn timestamp(data: &[u8]) -> Option<SystemTime> {
    let (secs, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (i64::from_be_bytes(data[4..].try_into().ok()?), u32::from_be_bytes(data[..4].try_into().ok()?)),
        _ => return None,
    };
    let since = Duration::new(secs.unsigned_abs(), nanos.min(999_999_999));
    if secs >= 0 { UNIX_EPOCH.checked_add(since) } else { UNIX_EPOCH.checked_sub(since) }
}

/// Days since 1970-01-01 as (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since the epoch, and milliseconds into the day.
fn split_time(t: SystemTime) -> (i64, u64) {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    };
    (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) as u64)
}

/// `Date.prototype.toISOString`: `2024-03-05T10:00:00.000Z`.
pub(crate) fn iso_time(t: SystemTime) -> String {
    let (days, ms) = split_time(t);
    let (y, m, d) = civil(days);
    let (h, min, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// `Date.prototype.toString` in UTC, as socket.io's handshake `time` gives
/// it on a server whose zone is UTC: `Tue Mar 05 2024 10:00:00 GMT+0000
/// (Coordinated Universal Time)`.
pub(crate) fn js_date_string(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (days, ms) = split_time(t);
    let (y, m, d) = civil(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    let (h, min, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    format!("{weekday} {month} {d:02} {y:04} {h:02}:{min:02}:{s:02} GMT+0000 (Coordinated Universal Time)")
}

// ---- messages ---------------------------------------------------------------

/// Reads a message: JSON when it starts with `{`, MessagePack otherwise.
/// Binary values become placeholders numbered in the order they appear.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Value, Vec<Bytes>), WireError> {
    if bytes.first() == Some(&b'{') {
        let value = serde_json::from_slice(bytes).map_err(|e| WireError(format!("invalid JSON: {e}")))?;
        return Ok((value, Vec::new()));
    }
    let mut input = bytes;
    let value = rmpv::decode::read_value(&mut input).map_err(|e| WireError(format!("invalid MessagePack: {e}")))?;
    let mut binary = Vec::new();
    let value = from_msgpack(&value, &mut binary).unwrap_or(Value::Null);
    Ok((value, binary))
}

/// Writes a MessagePack value.
pub(crate) fn encode(value: &Mp) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

fn map(entries: Vec<(&str, Mp)>) -> Mp {
    Mp::Map(entries.into_iter().map(|(k, v)| (Mp::from(k), v)).collect())
}

fn strings(items: &[String]) -> Mp {
    Mp::Array(items.iter().map(|s| Mp::from(s.as_str())).collect())
}

/// socket.io-parser's packet object for an event: `{type: 2, data: [event,
/// ...args], nsp}` (binary arguments as `bin`; the npm encoder finds them
/// itself and makes the packet a BINARY_EVENT when it sends it).
pub(crate) fn packet_to_msgpack(nsp: &str, packet: &EventPacket) -> Mp {
    let mut data = Vec::with_capacity(1 + packet.payload.args.len());
    data.push(Mp::from(packet.event.as_str()));
    data.extend(packet.payload.args.iter().map(|a| to_msgpack(a, &packet.payload.binary)));
    map(vec![("type", Mp::from(EVENT)), ("data", Mp::Array(data)), ("nsp", Mp::from(nsp))])
}

/// The selection as the wire carries it: `{rooms, except, flags}`, the
/// excluded socket ids among the excluded rooms (each socket's own room).
pub(crate) fn opts_to_msgpack(opts: &BroadcastOptions) -> Mp {
    let mut flags = Vec::new();
    if opts.flags.volatile {
        flags.push(("volatile", Mp::Boolean(true)));
    }
    if let Some(timeout) = opts.flags.timeout {
        flags.push(("timeout", Mp::from(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))));
    }
    let mut except = opts.except_rooms_and_sids();
    dedup(&mut except);
    map(vec![("rooms", strings(&opts.rooms)), ("except", strings(&except)), ("flags", map(flags))])
}

/// The selection of a request: `{rooms, except}`.
pub(crate) fn opts_to_json(opts: &BroadcastOptions) -> Value {
    let mut except = opts.except_rooms_and_sids();
    dedup(&mut except);
    serde_json::json!({ "rooms": opts.rooms, "except": except })
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = HashSet::new();
    items.retain(|s| seen.insert(s.clone()));
}

/// A room as JavaScript may send it (a number is a room too).
fn room_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A list of rooms (anything that is not a list is no rooms).
pub(crate) fn rooms(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(room_name).collect()).unwrap_or_default()
}

/// A selection read from the wire: rooms, except (rooms and socket ids
/// alike), and the volatile flag; `local` and `timeout` are the sender's.
pub(crate) fn opts_from(v: Option<&Value>) -> BroadcastOptions {
    let volatile =
        v.and_then(|o| o.get("flags")).and_then(|f| f.get("volatile")).and_then(Value::as_bool).unwrap_or(false);
    BroadcastOptions {
        rooms: rooms(v.and_then(|o| o.get("rooms"))),
        except: rooms(v.and_then(|o| o.get("except"))),
        except_sids: Vec::new(),
        flags: BroadcastFlags { volatile, ..BroadcastFlags::default() },
    }
}

/// The timeout (ms) a broadcast with acks was sent with.
pub(crate) fn timeout_from(opts: Option<&Value>) -> Option<Duration> {
    opts.and_then(|o| o.get("flags")).and_then(|f| f.get("timeout")).and_then(Value::as_u64).map(Duration::from_millis)
}

/// An event packet read from the wire, with its namespace (`/` when
/// absent). `None` for anything but an event with a name.
pub(crate) fn packet_from(v: &Value, binary: Vec<Bytes>) -> Option<(String, EventPacket)> {
    let kind = v.get("type").and_then(Value::as_u64)?;
    if kind != EVENT && kind != BINARY_EVENT {
        return None;
    }
    let nsp = v.get("nsp").and_then(Value::as_str).unwrap_or("/").to_owned();
    let mut data = v.get("data")?.as_array()?.clone();
    if data.is_empty() {
        return None;
    }
    let event = match data.remove(0) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let payload = Payload::with_binary(data, binary);
    if !payload.is_consistent() {
        return None;
    }
    Some((nsp, EventPacket { event, payload, id: None }))
}

/// A broadcast: `[uid, packet, {rooms, except, flags}]`.
pub(crate) fn encode_broadcast(uid: &str, nsp: &str, packet: &EventPacket, opts: &BroadcastOptions) -> Vec<u8> {
    encode(&Mp::Array(vec![Mp::from(uid), packet_to_msgpack(nsp, packet), opts_to_msgpack(opts)]))
}

/// A broadcast read from the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Broadcast {
    pub(crate) uid: String,
    pub(crate) nsp: String,
    pub(crate) packet: EventPacket,
    pub(crate) opts: BroadcastOptions,
}

pub(crate) fn decode_broadcast(bytes: &[u8]) -> Result<Broadcast, WireError> {
    let (value, binary) = decode(bytes)?;
    let Value::Array(mut parts) = value else {
        return Err(WireError("a broadcast is an array".into()));
    };
    if parts.len() < 3 {
        return Err(WireError("a broadcast has three parts".into()));
    }
    let opts = opts_from(Some(&parts[2]));
    let uid = match parts.swap_remove(0) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let (nsp, packet) = packet_from(&parts[1], binary).ok_or_else(|| WireError("not an event packet".into()))?;
    Ok(Broadcast { uid, nsp, packet, opts })
}

/// A broadcast with acks (a request, MessagePack): `{uid, requestId, type:
/// 7, packet, opts}`.
pub(crate) fn encode_broadcast_request(
    uid: &str,
    request_id: &str,
    nsp: &str,
    packet: &EventPacket,
    opts: &BroadcastOptions,
) -> Vec<u8> {
    encode(&map(vec![
        ("uid", Mp::from(uid)),
        ("requestId", Mp::from(request_id)),
        ("type", Mp::from(RequestType::Broadcast as u64)),
        ("packet", packet_to_msgpack(nsp, packet)),
        ("opts", opts_to_msgpack(opts)),
    ]))
}

/// One recipient's ack (a response, MessagePack): `{type: 9, requestId,
/// packet}`, `packet` being the ack's first argument (what the npm server
/// passes on).
pub(crate) fn encode_broadcast_ack(request_id: &str, reply: &Payload) -> Vec<u8> {
    let first = reply.args.first().map_or(Mp::Nil, |a| to_msgpack(a, &reply.binary));
    encode(&map(vec![
        ("type", Mp::from(RequestType::BroadcastAck as u64)),
        ("requestId", Mp::from(request_id)),
        ("packet", first),
    ]))
}

/// A value as JSON for a JSON message: binary values the way Node's
/// `JSON.stringify` writes a Buffer, `{"type":"Buffer","data":[...]}`.
pub(crate) fn json_with_buffers(value: &Value, binary: &[Bytes]) -> Value {
    match value {
        Value::Object(m) if is_placeholder(value) => {
            let num = m.get("num").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
            match num.and_then(|n| binary.get(n)) {
                Some(bytes) => serde_json::json!({ "type": "Buffer", "data": bytes.as_ref() }),
                None => value.clone(),
            }
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), json_with_buffers(v, binary))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|v| json_with_buffers(v, binary)).collect()),
        other => other.clone(),
    }
}

/// A server-side emit's `data`: `[event, ...args]`.
pub(crate) fn server_side_data(packet: &EventPacket) -> Value {
    let mut data = Vec::with_capacity(1 + packet.payload.args.len());
    data.push(Value::String(packet.event.clone()));
    data.extend(packet.payload.args.iter().map(|a| json_with_buffers(a, &packet.payload.binary)));
    Value::Array(data)
}

/// The event and arguments of a server-side emit's `[event, ...args]`
/// (an event that is not a string is named by its JSON text).
pub(crate) fn server_side_event(data: Option<&Value>) -> Option<(String, Vec<Value>)> {
    let mut data = data.and_then(Value::as_array).filter(|d| !d.is_empty())?.clone();
    let event = match data.remove(0) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some((event, data))
}

/// A socket as a REMOTE_FETCH response carries it: `{id, handshake, rooms,
/// data}`, the handshake with the fields a socket.io handshake has
/// (`time`, `xdomain`, `secure` added to iobus's).
pub(crate) fn socket_to_json(info: &SocketInfo) -> Value {
    let mut handshake = match &info.handshake {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if !handshake.contains_key("time") {
        let issued = handshake.get("issued").and_then(Value::as_u64).unwrap_or(0);
        let time = UNIX_EPOCH + Duration::from_millis(issued);
        handshake.insert("time".into(), Value::String(js_date_string(time)));
    }
    if !handshake.contains_key("xdomain") {
        let origin = handshake.get("headers").and_then(|h| h.get("origin")).is_some();
        handshake.insert("xdomain".into(), Value::Bool(origin));
    }
    handshake.entry("secure").or_insert(Value::Bool(false));
    serde_json::json!({
        "id": info.id,
        "handshake": Value::Object(handshake),
        "rooms": info.rooms,
        "data": info.data,
    })
}

/// A socket of another node, from a REMOTE_FETCH response.
pub(crate) fn socket_from_json(v: &Value) -> Option<SocketInfo> {
    Some(SocketInfo {
        id: v.get("id")?.as_str()?.to_owned(),
        handshake: v.get("handshake").cloned().unwrap_or(Value::Null),
        rooms: rooms(v.get("rooms")),
        data: v.get("data").cloned().unwrap_or(Value::Null),
    })
}

/// The sockets of a REMOTE_FETCH response (anything that is not a list is
/// no sockets).
pub(crate) fn sockets(v: Option<&Value>) -> Vec<SocketInfo> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(socket_from_json).collect()).unwrap_or_default()
}

/// The text of a string field.
pub(crate) fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn channel_names_follow_the_npm_adapter() {
        let c = Channels::new("socket.io", "/admin", "abc123");
        assert_eq!(c.broadcast, "socket.io#/admin#");
        assert_eq!(c.broadcast_pattern(), "socket.io#/admin#*");
        assert_eq!(c.request, "socket.io-request#/admin#");
        assert_eq!(c.response, "socket.io-response#/admin#");
        assert_eq!(c.own_response, "socket.io-response#/admin#abc123#");
        assert_eq!(c.broadcast_to(&[]), "socket.io#/admin#");
        assert_eq!(c.broadcast_to(&["r1".into()]), "socket.io#/admin#r1#");
        assert_eq!(c.broadcast_to(&["r1".into(), "r2".into()]), "socket.io#/admin#");
        assert_eq!(c.room_of("socket.io#/admin#r1#"), Some("r1"));
        assert_eq!(c.room_of("socket.io#/admin#a#b#"), Some("a#b"));
        assert_eq!(c.room_of("socket.io#/admin#"), None);
        assert_eq!(c.response_to(Some("xyz"), true), "socket.io-response#/admin#xyz#");
        assert_eq!(c.response_to(Some("xyz"), false), "socket.io-response#/admin#");
        assert_eq!(c.response_to(None, true), "socket.io-response#/admin#");
        let id = random_id();
        assert_eq!(id.len(), 6);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn broadcast_bytes_match_notepack() {
        // notepack.io's encoding of
        // ["abc", {type: 2, data: ["ev", 1, Buffer.from([1, 2])], nsp: "/"},
        //  {rooms: ["r"], except: [], flags: {}}]
        let expected = hex(concat!(
            "93",
            "a3616263",
            "83",
            "a474797065",
            "02",
            "a464617461",
            "93",
            "a26576",
            "01",
            "c4020102",
            "a36e7370",
            "a12f",
            "83",
            "a5726f6f6d73",
            "91",
            "a172",
            "a6657863657074",
            "90",
            "a5666c616773",
            "80",
        ));
        let packet = EventPacket {
            event: "ev".into(),
            payload: Payload::with_binary(vec![json!(1), placeholder(0)], vec![Bytes::from_static(&[1, 2])]),
            id: None,
        };
        let opts = BroadcastOptions { rooms: vec!["r".into()], ..BroadcastOptions::default() };
        assert_eq!(encode_broadcast("abc", "/", &packet, &opts), expected);
        let back = decode_broadcast(&expected).expect("decodes");
        assert_eq!(back.uid, "abc");
        assert_eq!(back.nsp, "/");
        assert_eq!(back.packet, packet);
        assert_eq!(back.opts, opts);
    }

    #[test]
    fn except_carries_rooms_and_socket_ids_and_flags() {
        let sid = crate::Sid::new();
        let opts = BroadcastOptions {
            rooms: vec!["a".into(), "b".into()],
            except: vec!["c".into()],
            except_sids: vec![sid],
            flags: BroadcastFlags { volatile: true, local: false, timeout: Some(Duration::from_millis(1500)) },
        };
        let mut binary = Vec::new();
        let v = from_msgpack(&opts_to_msgpack(&opts), &mut binary).expect("value");
        assert_eq!(
            v,
            json!({"rooms": ["a", "b"], "except": ["c", sid.to_string()], "flags": {"volatile": true, "timeout": 1500}})
        );
        let back = opts_from(Some(&v));
        assert_eq!(back.rooms, opts.rooms);
        assert_eq!(back.except, vec!["c".to_string(), sid.to_string()]);
        assert!(back.flags.volatile);
        assert_eq!(timeout_from(Some(&v)), Some(Duration::from_millis(1500)));
        // Numeric rooms (JavaScript) are rooms too.
        assert_eq!(rooms(Some(&json!([1, "x", null]))), vec!["1".to_string(), "x".to_string()]);
    }

    #[test]
    fn msgpack_values_become_json_like_json_stringify() {
        let mut binary = Vec::new();
        let v = Mp::Map(vec![
            (Mp::from("n"), Mp::Nil),
            (Mp::from("gone"), Mp::Ext(0, vec![0])),
            (Mp::from("f"), Mp::F64(1.5)),
            (Mp::from("nan"), Mp::F64(f64::NAN)),
            (Mp::from("neg"), Mp::from(-3i64)),
            (Mp::from("big"), Mp::from(u64::MAX)),
            (Mp::from(7u64), Mp::Boolean(true)),
            (Mp::from("list"), Mp::Array(vec![Mp::Ext(0, vec![0]), Mp::Binary(vec![9]), Mp::Binary(vec![8, 7])])),
            (Mp::from("date"), Mp::Ext(-1, 1_709_632_800u32.to_be_bytes().to_vec())),
        ]);
        let json = from_msgpack(&v, &mut binary).expect("value");
        assert_eq!(
            json,
            json!({
                "n": null, "f": 1.5, "nan": null, "neg": -3, "big": u64::MAX, "7": true,
                "list": [null, placeholder(0), placeholder(1)],
                "date": "2024-03-05T10:00:00.000Z",
            })
        );
        assert_eq!(binary, vec![Bytes::from_static(&[9]), Bytes::from_static(&[8, 7])]);
        // And back: placeholders become bin again.
        let mp = to_msgpack(&json["list"], &binary);
        assert_eq!(mp, Mp::Array(vec![Mp::Nil, Mp::Binary(vec![9]), Mp::Binary(vec![8, 7])]));
    }

    #[test]
    fn requests_are_json_or_msgpack_by_first_byte() {
        let (v, bin) = decode(br#"{"uid":"x","requestId":"r","type":1}"#).expect("json");
        assert_eq!(RequestType::of(&v), Some(RequestType::AllRooms));
        assert!(bin.is_empty());
        let packet = EventPacket {
            event: "e".into(),
            payload: Payload::with_binary(vec![placeholder(0)], vec![Bytes::from_static(b"hi")]),
            id: None,
        };
        let opts = BroadcastOptions {
            flags: BroadcastFlags { timeout: Some(Duration::from_secs(2)), ..BroadcastFlags::default() },
            ..BroadcastOptions::default()
        };
        let bytes = encode_broadcast_request("u", "req", "/", &packet, &opts);
        let (v, bin) = decode(&bytes).expect("msgpack");
        assert_eq!(RequestType::of(&v), Some(RequestType::Broadcast));
        assert_eq!(str_field(&v, "requestId"), Some("req"));
        assert_eq!(timeout_from(v.get("opts")), Some(Duration::from_secs(2)));
        let (nsp, back) = packet_from(&v["packet"], bin).expect("packet");
        assert_eq!((nsp.as_str(), back), ("/", packet));
        let ack = encode_broadcast_ack(
            "req",
            &Payload::with_binary(vec![placeholder(0), json!(2)], vec![Bytes::from_static(b"z")]),
        );
        let (v, bin) = decode(&ack).expect("msgpack");
        assert_eq!(v, json!({"type": 9, "requestId": "req", "packet": placeholder(0)}));
        assert_eq!(bin, vec![Bytes::from_static(b"z")]);
        assert!(decode(b"{not json").is_err());
        assert!(decode(&[0x92, 0x01]).is_err(), "truncated");
        assert!(decode_broadcast(&encode(&Mp::from(1u64))).is_err());
    }

    #[test]
    fn packets_other_than_events_are_refused() {
        assert!(packet_from(&json!({"type": 3, "data": [1], "nsp": "/"}), Vec::new()).is_none());
        assert!(packet_from(&json!({"type": 2, "data": [], "nsp": "/"}), Vec::new()).is_none());
        // Placeholders that name missing attachments.
        let one = vec![Bytes::from_static(b"x")];
        assert!(packet_from(&json!({"type": 2, "data": ["e", placeholder(0), placeholder(1)]}), one).is_none());
        // Without attachments, a placeholder-shaped object is plain data (the payload rule).
        assert!(packet_from(&json!({"type": 2, "data": ["e", placeholder(0)]}), Vec::new()).is_some());
        let (nsp, p) = packet_from(&json!({"type": 2, "data": ["e", 1]}), Vec::new()).expect("event");
        assert_eq!(nsp, "/");
        assert_eq!(p.payload.args, vec![json!(1)]);
    }

    #[test]
    fn server_side_data_writes_buffers_as_node_does() {
        let packet = EventPacket {
            event: "hello".into(),
            payload: Payload::with_binary(vec![json!({"b": placeholder(0)})], vec![Bytes::from_static(&[1, 255])]),
            id: None,
        };
        assert_eq!(server_side_data(&packet), json!(["hello", {"b": {"type": "Buffer", "data": [1, 255]}}]));
    }

    #[test]
    fn fetched_sockets_carry_a_socket_io_handshake() {
        let info = SocketInfo {
            id: "abc".into(),
            handshake: json!({"auth": {}, "headers": {"origin": "x"}, "issued": 1_709_632_800_123u64}),
            rooms: vec!["abc".into(), "r".into()],
            data: json!({"k": 1}),
        };
        let v = socket_to_json(&info);
        assert_eq!(v["handshake"]["time"], "Tue Mar 05 2024 10:00:00 GMT+0000 (Coordinated Universal Time)");
        assert_eq!(v["handshake"]["xdomain"], true);
        assert_eq!(v["handshake"]["secure"], false);
        let back = socket_from_json(&v).expect("socket");
        assert_eq!((back.id.as_str(), back.rooms, back.data), ("abc", info.rooms, info.data));
        assert_eq!(iso_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(js_date_string(UNIX_EPOCH), "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)");
    }
}
