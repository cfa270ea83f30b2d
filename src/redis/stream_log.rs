//! The streams adapter and the stream: one ordered writer of commands, one
//! reader per stream, and the replays of connection state recovery.
//!
//! The stream is the recovery log every node shares. A node reads each
//! stream on a connection of its own (`XREAD COUNT <n> BLOCK <ms>`), from
//! the last entry it read, in order; it delivers the stored packets it
//! reads (its own included) under the stream's delivery lock, and records
//! the last entry read there. A restore reads the stream from the client's
//! offset with `XRANGE` while the reader goes on, so it registers first: from
//! then on the reader also keeps, for the restore, every stored packet of
//! its namespace it delivers. When the socket is accepted, under the
//! delivery lock, the replay is what `XRANGE` found up to the last entry the
//! reader delivered, then what the reader kept after the end of `XRANGE`'s
//! answer: every missed packet once, and none that the reader will still
//! deliver live.
//!
//! What it owns: ordering and replay. What it does not: what the messages
//! mean (`streams_wire`, `streams`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::connection::Link;
use super::streams_wire::{StreamId, reaches};
use crate::protocol::engine::Frame;
use crate::server::{BroadcastOptions, EventPacket, Namespace, SessionReplay};

/// Most commands waiting to be written; beyond it new ones are not sent
/// (and a stored broadcast is delivered locally at once).
const QUEUE: usize = 65_536;
/// Most commands sent in one pipeline.
const BATCH: usize = 512;
/// How long a reader waits before reading again after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// A stream entry: its id and its fields.
pub(crate) type Entry = (StreamId, Vec<(Vec<u8>, Vec<u8>)>);

/// A stored packet kept for a restore: its offset, the packet and its
/// selection.
type Kept = (StreamId, EventPacket, BroadcastOptions);

/// The stored packets the reader delivered for one restore since it
/// registered.
struct RestoreBuffer {
    nsp: String,
    kept: Vec<Kept>,
    bytes: usize,
    max_bytes: usize,
    /// More than `max_bytes` arrived: the replay would be partial.
    overflowed: bool,
}

struct Delivery {
    /// The last entry delivered.
    last: StreamId,
    restores: HashMap<u64, RestoreBuffer>,
    next_token: u64,
}

/// One stream as this node reads it.
pub(crate) struct StreamLog {
    name: String,
    delivery: Mutex<Delivery>,
}

impl std::fmt::Debug for StreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLog").field("name", &self.name).finish()
    }
}

impl StreamLog {
    /// A stream read from after entry `last`.
    pub(crate) fn new(name: &str, last: StreamId) -> Arc<StreamLog> {
        Arc::new(StreamLog {
            name: name.to_owned(),
            delivery: Mutex::new(Delivery { last, restores: HashMap::new(), next_token: 0 }),
        })
    }

    /// The stream's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The last entry delivered.
    pub(crate) fn last(&self) -> StreamId {
        self.delivery.lock().last
    }

    /// Entry `id` was read and needs no delivery of a stored packet.
    pub(crate) fn advance(&self, id: StreamId) {
        self.delivery.lock().last = id;
    }

    /// Delivers the stored packet of entry `id` to `nsp`'s selected sockets
    /// (its id as offset), keeping it for the restores of `nsp` under way.
    /// `size` is about what it costs to keep.
    pub(crate) fn deliver(
        &self,
        id: StreamId,
        nsp: &Namespace,
        packet: &EventPacket,
        opts: &BroadcastOptions,
        size: usize,
    ) {
        let mut delivery = self.delivery.lock();
        nsp.local_broadcast_with_offset(packet, opts, &id.to_string());
        for buffer in delivery.restores.values_mut().filter(|b| b.nsp == nsp.name() && !b.overflowed) {
            buffer.bytes += size;
            if buffer.bytes > buffer.max_bytes {
                buffer.overflowed = true;
                buffer.kept = Vec::new();
            } else {
                buffer.kept.push((id, packet.clone(), opts.clone()));
            }
        }
        delivery.last = id;
    }

    /// Starts keeping what the reader delivers to `nsp` for a restore (at
    /// most `max_bytes` of it); it stops when the registration is used or
    /// dropped.
    pub(crate) fn register(self: &Arc<Self>, nsp: &str, max_bytes: usize) -> Registration {
        let mut delivery = self.delivery.lock();
        let token = delivery.next_token;
        delivery.next_token += 1;
        let buffer = RestoreBuffer { nsp: nsp.to_owned(), kept: Vec::new(), bytes: 0, max_bytes, overflowed: false };
        delivery.restores.insert(token, buffer);
        Registration { log: self.clone(), token }
    }
}

/// A restore under way; dropping it stops the keeping.
pub(crate) struct Registration {
    log: Arc<StreamLog>,
    token: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.log.delivery.lock().restores.remove(&self.token);
    }
}

/// The replay of a session restored from the stream: the packets `XRANGE`
/// found after the client's offset (up to `upto`), and what the reader
/// keeps meanwhile.
pub(crate) struct StreamReplay {
    pub(crate) registration: Registration,
    pub(crate) rooms: Vec<String>,
    /// The stored packets after the offset that reached `rooms`, in order.
    pub(crate) found: Vec<(StreamId, EventPacket)>,
    /// The last entry `XRANGE` answered with (the offset when none).
    pub(crate) upto: StreamId,
}

impl SessionReplay for StreamReplay {
    fn replay(self: Box<Self>, nsp: &Arc<Namespace>, enter: &mut dyn FnMut(Option<Vec<Frame>>)) {
        let StreamReplay { registration, rooms, found, upto } = *self;
        let mut delivery = registration.log.delivery.lock();
        let last = delivery.last;
        let Some(buffer) = delivery.restores.remove(&registration.token) else {
            enter(None);
            return;
        };
        if buffer.overflowed {
            enter(None);
            return;
        }
        // Found and already delivered here, then delivered here after what
        // was found; the rest is still to be read, and comes live.
        let found = found.into_iter().filter(|(id, _)| *id <= last);
        let kept = buffer
            .kept
            .into_iter()
            .filter(|(id, _, opts)| *id > upto && reaches(opts, &rooms))
            .map(|(id, p, _)| (id, p));
        let mut frames = Vec::new();
        for (id, mut packet) in found.chain(kept) {
            packet.payload.args.push(serde_json::Value::String(id.to_string()));
            frames.extend(packet.frames(nsp.name()));
        }
        // Still under the lock: the socket is in its rooms before the
        // reader delivers anything more.
        enter(Some(frames));
        drop(delivery);
    }
}

// ---- replies -------------------------------------------------------------------

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes().to_vec()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

fn entry(v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let id = StreamId::parse(std::str::from_utf8(&bytes(parts.first()?)?).ok()?)?;
    let fields = match parts.get(1) {
        Some(Value::Array(items)) => {
            items.chunks_exact(2).filter_map(|pair| Some((bytes(&pair[0])?, bytes(&pair[1])?))).collect()
        }
        Some(Value::Map(pairs)) => pairs.iter().filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?))).collect(),
        _ => Vec::new(),
    };
    Some((id, fields))
}

/// The entries of an `XRANGE` (or `XREVRANGE`) answer.
pub(crate) fn range_entries(reply: &Value) -> Vec<Entry> {
    match reply {
        Value::Array(items) => items.iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// The entries of an `XREAD` answer for one stream: `[[name, entries]]`
/// (RESP2) or `{name: entries}` (RESP3); nothing when it timed out.
pub(crate) fn read_entries(reply: &Value) -> Vec<Entry> {
    match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(parts) => parts.get(1).map(range_entries),
                _ => None,
            })
            .flatten()
            .collect(),
        Value::Map(pairs) => pairs.iter().flat_map(|(_, entries)| range_entries(entries)).collect(),
        _ => Vec::new(),
    }
}

/// The id of the newest entry of stream `name` (`0-0` when it is empty).
pub(crate) async fn newest(con: &mut ConnectionManager, name: &str) -> redis::RedisResult<StreamId> {
    let reply: Value = redis::cmd("XREVRANGE").arg(name).arg("+").arg("-").arg("COUNT").arg(1).query_async(con).await?;
    Ok(range_entries(&reply).first().map(|(id, _)| *id).unwrap_or_default())
}

// ---- the reader ----------------------------------------------------------------

/// Reads stream `log` from its last entry on, for ever, handing each batch
/// to `on_entries` in order. A failure (Redis away) is retried after a
/// pause; the connection reconnects by itself.
pub(crate) async fn read_loop(
    log: Arc<StreamLog>,
    mut con: ConnectionManager,
    count: u32,
    block: Duration,
    on_entries: impl Fn(&StreamLog, Vec<Entry>) + Send + 'static,
) {
    let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX);
    let mut failing = false;
    loop {
        let from = log.last();
        let reply: redis::RedisResult<Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&log.name)
            .arg(from.to_string())
            .query_async(&mut con)
            .await;
        match reply {
            Ok(reply) => {
                if failing {
                    tracing::debug!(stream = %log.name, "reading the stream again from {from}");
                    failing = false;
                }
                let entries = read_entries(&reply);
                if !entries.is_empty() {
                    on_entries(&log, entries);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::debug!(stream = %log.name, "cannot read the stream: {e}");
                    failing = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

// ---- the writer ----------------------------------------------------------------

/// Runs when a stored broadcast could not be written: delivers it locally.
pub(crate) type Fallback = Box<dyn FnOnce() + Send>;

/// A command for the writer.
pub(crate) enum Write {
    /// `XADD <stream> MAXLEN ~ <max> * <fields>`; `fallback` runs if it fails.
    Add { stream: String, fields: Vec<(&'static str, Vec<u8>)>, fallback: Option<Fallback> },
    /// `SET <key> <value> PX <ms> [XX]`.
    Set { key: String, value: String, px: u64, only_if_exists: bool },
}

/// The queue of commands, written in order by one task.
pub(crate) struct Writer {
    queue: mpsc::Sender<Write>,
}

impl Writer {
    /// A writer on `link`'s command connection; `finished` gets a message
    /// when the queue is closed and drained.
    pub(crate) fn start(link: &Arc<Link>, max_len: u64, finished: std::sync::mpsc::Sender<()>) -> Writer {
        let (queue, commands) = mpsc::channel(QUEUE);
        let task = link.runtime().spawn(write_loop(link.commands(), commands, max_len, Arc::downgrade(link), finished));
        link.adopt(task.abort_handle());
        Writer { queue }
    }

    /// Queues a command; never waits. A command that does not fit is not
    /// sent (its fallback runs now).
    pub(crate) fn write(&self, write: Write, link: &Link) {
        if let Err(e) = self.queue.try_send(write) {
            let write = match e {
                mpsc::error::TrySendError::Full(w) | mpsc::error::TrySendError::Closed(w) => w,
            };
            link.queue_full("command");
            if let Write::Add { fallback: Some(fallback), .. } = write {
                fallback();
            }
        }
    }
}

async fn write_loop(
    mut con: ConnectionManager,
    mut commands: mpsc::Receiver<Write>,
    max_len: u64,
    link: Weak<Link>,
    finished: std::sync::mpsc::Sender<()>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = commands.recv().await {
        batch.push(first);
        while batch.len() < BATCH {
            let Ok(next) = commands.try_recv() else { break };
            batch.push(next);
        }
        let mut pipe = redis::pipe();
        for write in &batch {
            match write {
                Write::Add { stream, fields, .. } => {
                    let cmd = pipe.cmd("XADD").arg(stream).arg("MAXLEN").arg("~").arg(max_len).arg("*");
                    for (name, value) in fields {
                        cmd.arg(*name).arg(value.as_slice());
                    }
                    cmd.ignore();
                }
                Write::Set { key, value, px, only_if_exists } => {
                    let cmd = pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(*px);
                    if *only_if_exists {
                        cmd.arg("XX");
                    }
                    cmd.ignore();
                }
            }
        }
        if let Err(e) = pipe.exec_async(&mut con).await {
            let lost = batch.len() as u64;
            match link.upgrade() {
                Some(link) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                    link.report_lost(&e, lost);
                }
                _ => tracing::warn!("Redis streams adapter: {lost} commands failed: {e}"),
            }
            // What was not written reaches this node's clients at least.
            for write in batch.drain(..) {
                if let Write::Add { fallback: Some(fallback), .. } = write {
                    fallback();
                }
            }
        }
        batch.clear();
    }
    let _ = finished.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_in_either_protocol() {
        let entry = |id: &str| Value::Array(vec![bulk(id), Value::Array(vec![bulk("nsp"), bulk("/")])]);
        let entries = Value::Array(vec![entry("1-0"), entry("1-1"), bulk("junk")]);
        let ids = |v: Vec<Entry>| v.into_iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(range_entries(&entries)), ["1-0", "1-1"]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("socket.io"), entries.clone()])]);
        assert_eq!(ids(read_entries(&resp2)), ["1-0", "1-1"]);
        let resp3 = Value::Map(vec![(bulk("socket.io"), entries)]);
        assert_eq!(ids(read_entries(&resp3)), ["1-0", "1-1"]);
        assert!(read_entries(&Value::Nil).is_empty());
        let (_, fields) = &range_entries(&Value::Array(vec![entry("2-0")]))[0];
        assert_eq!(fields, &vec![(b"nsp".to_vec(), b"/".to_vec())]);
    }

    fn id(text: &str) -> StreamId {
        StreamId::parse(text).expect("id")
    }

    fn packet(n: u64) -> EventPacket {
        EventPacket { event: "n".into(), payload: crate::server::Payload::new(vec![serde_json::json!(n)]), id: None }
    }

    fn to(room: &str) -> BroadcastOptions {
        BroadcastOptions { rooms: vec![room.to_owned()], ..BroadcastOptions::default() }
    }

    /// The replay of `found` (XRANGE up to `upto`) after the reader went as
    /// far as it did: the frames' texts.
    fn replay(log: &Arc<StreamLog>, registration: Registration, found: &[u64], upto: &str) -> Option<Vec<String>> {
        let nsp = Namespace::detached("/");
        let found = found.iter().map(|n| (id(&format!("{n}-0")), packet(*n))).collect();
        let replay = Box::new(StreamReplay { registration, rooms: vec!["r".into()], found, upto: id(upto) });
        let mut out = None;
        replay.replay(&nsp, &mut |frames| {
            out = frames.map(|f| f.iter().map(|f| String::from_utf8_lossy(f.bytes()).into_owned()).collect());
        });
        assert!(log.delivery.lock().restores.is_empty(), "the registration ends with the replay");
        out
    }

    #[test]
    fn a_replay_is_what_was_delivered_before_the_socket_came_back() {
        let nsp = Namespace::detached("/");
        let log = StreamLog::new("s", id("10-0"));
        // XRANGE found 11 and 12; the reader has delivered 11 only: 12 comes live.
        let registration = log.register("/", 1 << 20);
        log.deliver(id("11-0"), &nsp, &packet(11), &to("r"), 10);
        let frames = replay(&log, registration, &[11, 12], "12-0").expect("replayed");
        assert_eq!(frames, [r#"42["n",11,"11-0"]"#]);

        // The reader went past what XRANGE found: what it kept after 12
        // (for the session's rooms) is replayed too, once.
        let registration = log.register("/", 1 << 20);
        for (n, room) in [(12, "r"), (13, "r"), (14, "other"), (15, "r")] {
            log.deliver(id(&format!("{n}-0")), &nsp, &packet(n), &to(room), 10);
        }
        log.deliver(id("16-0"), &Namespace::detached("/elsewhere"), &packet(16), &to("r"), 10);
        let frames = replay(&log, registration, &[11, 12], "12-0").expect("replayed");
        assert_eq!(
            frames,
            [r#"42["n",11,"11-0"]"#, r#"42["n",12,"12-0"]"#, r#"42["n",13,"13-0"]"#, r#"42["n",15,"15-0"]"#]
        );

        // More kept than allowed: no partial replay.
        let registration = log.register("/", 15);
        log.deliver(id("17-0"), &nsp, &packet(17), &to("r"), 10);
        log.deliver(id("18-0"), &nsp, &packet(18), &to("r"), 10);
        assert_eq!(replay(&log, registration, &[], "16-0"), None);
    }

    #[test]
    fn registrations_keep_until_dropped() {
        let log = StreamLog::new("s", StreamId::default());
        let a = log.register("/", 1000);
        let b = log.register("/", 1000);
        assert_eq!(log.delivery.lock().restores.len(), 2);
        drop(a);
        assert_eq!(log.delivery.lock().restores.len(), 1);
        drop(b);
        assert!(log.delivery.lock().restores.is_empty());
        log.advance(StreamId::parse("5-1").expect("id"));
        assert_eq!(log.last().to_string(), "5-1");
    }
}
