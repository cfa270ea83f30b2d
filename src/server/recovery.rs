//! Connection state recovery: the log of packets emitted to a namespace,
//! and the sessions of sockets that dropped, kept so that a client coming
//! back gets its id, rooms, data and every packet it missed.
//!
//! With recovery on, every stored packet (an event without an ack id, not
//! volatile: broadcasts and direct emits alike) gets an offset, appended to
//! its arguments as a string, which the client remembers. The log is
//! appended to and the packet delivered under one lock, and a recovering
//! socket is replayed to and joins its rooms under the same lock, so a
//! packet reaches it exactly once: either in the replay or live.
//!
//! Beyond what the Socket.IO server does: a socket recovers every time it
//! drops (it keeps its private id), and a client that never received a
//! stored packet (no offset) recovers from the start of its session.
//!
//! Bounds: a packet stays at most `max_disconnection_duration` and the log
//! at most `max_log_bytes` (oldest first). A client whose missed packets
//! were evicted gets an ordinary new session, never a partial replay.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;

use super::adapter::BroadcastOptions;
use crate::protocol::engine::Frame;

/// Connection state recovery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// How long a dropped socket's id, rooms and data are kept, and how long
    /// a packet stays in the log (Socket.IO's default: 2 minutes).
    pub max_disconnection_duration: Duration,
    /// Whether a recovered socket skips the connect handler (the host's
    /// middleware); the connection handler still runs. Default true.
    pub skip_middlewares: bool,
    /// Most bytes of packets the log of one namespace keeps (default
    /// 32 MiB); the oldest are evicted first.
    pub max_log_bytes: usize,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_log_bytes: 32 * 1024 * 1024,
        }
    }
}

/// What is kept of a socket that dropped for a recoverable reason.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSession {
    /// Its socket id.
    pub sid: String,
    /// Its private id (the key to recover it).
    pub pid: String,
    /// Its rooms (its own id room included).
    pub rooms: Vec<String>,
    /// Its application data.
    pub data: Value,
    /// The first offset it could have missed: the log's next offset when
    /// the socket first connected (used when the client sends no offset).
    pub start: u64,
}

/// The recipients of stored packets: shared by consecutive packets sent to
/// the same selection, as a stream to one room is.
#[derive(PartialEq)]
struct Target {
    rooms: Vec<String>,
    except: Vec<String>,
}

impl Target {
    fn bytes(&self) -> usize {
        let list = |l: &[String]| l.iter().map(|r| r.len() + ALLOCATION_BYTES).sum::<usize>();
        std::mem::size_of::<Target>() + list(&self.rooms) + list(&self.except) + 2 * ALLOCATION_BYTES
    }
}

struct StoredPacket {
    offset: u64,
    at: Instant,
    target: Arc<Target>,
    frames: Box<[Frame]>,
    bytes: usize,
}

/// What one heap allocation costs beyond its bytes (allocator header and
/// rounding), as charged against `max_log_bytes`.
const ALLOCATION_BYTES: usize = 16;

/// What a stored packet costs beyond its frames' bytes: its slot in the
/// log (counted twice: a deque has up to as much again unused after it
/// grows), its frame list, and each frame's shared buffer header and text.
const PACKET_BYTES: usize = 2 * std::mem::size_of::<StoredPacket>() + 3 * ALLOCATION_BYTES + 32;

impl StoredPacket {
    /// Whether a socket in `rooms` was a recipient (Socket.IO's rule).
    fn reaches(&self, rooms: &[String]) -> bool {
        let t = &self.target;
        let included = t.rooms.is_empty() || rooms.iter().any(|r| t.rooms.contains(r));
        included && !rooms.iter().any(|r| t.except.contains(r))
    }
}

#[derive(Default)]
pub(crate) struct LogState {
    /// Distinguishes this log's offsets from those of another server run
    /// (or of this server before it was restarted).
    epoch: String,
    packets: VecDeque<StoredPacket>,
    next_offset: u64,
    /// Every offset below this one may have been evicted.
    evicted_below: u64,
    bytes: usize,
    sessions: HashMap<String, (SavedSession, Instant)>,
    /// The pid of each kept session, by socket id.
    pids: HashMap<String, String>,
    /// Pids in the order they expire (a session saved again is found in
    /// `sessions` with a later time and skipped here).
    expiry: VecDeque<(Instant, String)>,
}

impl LogState {
    fn remove_session(&mut self, pid: &str) -> Option<(SavedSession, Instant)> {
        let removed = self.sessions.remove(pid)?;
        if self.pids.get(&removed.0.sid).is_some_and(|p| p == pid) {
            self.pids.remove(&removed.0.sid);
        }
        Some(removed)
    }
}

/// The packet log and saved sessions of one namespace.
pub struct RecoveryLog {
    options: RecoveryOptions,
    state: Mutex<LogState>,
}

impl std::fmt::Debug for RecoveryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryLog").field("options", &self.options).finish()
    }
}

/// A packet being appended: its offset is decided, the caller encodes it
/// and delivers it while the log stays locked.
pub(crate) struct Append<'a> {
    log: &'a RecoveryLog,
    state: MutexGuard<'a, LogState>,
    offset: u64,
}

impl Append<'_> {
    /// The offset as the client sees it (the packet's last argument).
    pub(crate) fn offset_text(&self) -> String {
        format!("{}-{}", self.state.epoch, self.offset)
    }

    /// Stores the packet's frames; the lock is held until `self` drops.
    pub(crate) fn store(&mut self, opts: &BroadcastOptions, frames: &[Frame]) {
        let mut bytes = frames.iter().map(|f| f.len() + ALLOCATION_BYTES).sum::<usize>() + PACKET_BYTES;
        let except = opts.except_rooms_and_sids();
        let shared =
            self.state.packets.back().map(|p| &p.target).filter(|t| t.rooms == opts.rooms && t.except == except);
        let target = match shared {
            Some(t) => Arc::clone(t),
            None => {
                let t = Target { rooms: opts.rooms.clone(), except };
                // Charged once, to the first packet that holds it.
                bytes += t.bytes();
                Arc::new(t)
            }
        };
        let now = Instant::now();
        self.state.packets.push_back(StoredPacket {
            offset: self.offset,
            at: now,
            target,
            frames: frames.into(),
            bytes,
        });
        self.state.bytes += bytes;
        self.log.evict(&mut self.state, now);
    }
}

impl RecoveryLog {
    /// An empty log.
    pub fn new(options: RecoveryOptions) -> RecoveryLog {
        RecoveryLog { options, state: Mutex::new(LogState { epoch: new_epoch(), ..LogState::default() }) }
    }

    /// Forgets every packet and session (the server stopped): offsets given
    /// out before are unknown from now on.
    pub fn clear(&self) {
        *self.state.lock() = LogState { epoch: new_epoch(), ..LogState::default() };
    }

    /// The settings.
    pub fn options(&self) -> &RecoveryOptions {
        &self.options
    }

    /// Starts appending a packet: locks the log and assigns the next offset.
    pub(crate) fn append(&self) -> Append<'_> {
        let mut state = self.state.lock();
        let offset = state.next_offset;
        state.next_offset += 1;
        Append { log: self, state, offset }
    }

    /// The offset the next stored packet will get: a new socket's start.
    pub(crate) fn next_offset(&self) -> u64 {
        self.state.lock().next_offset
    }

    /// Locks the log, so that no packet is stored or delivered meanwhile.
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock()
    }

    fn evict(&self, state: &mut LogState, now: Instant) {
        let max_age = self.options.max_disconnection_duration;
        while let Some(front) = state.packets.front() {
            let too_old = now.duration_since(front.at) > max_age;
            if !too_old && state.bytes <= self.options.max_log_bytes {
                break;
            }
            let bytes = front.bytes;
            let offset = front.offset;
            state.packets.pop_front();
            state.bytes -= bytes;
            state.evicted_below = offset + 1;
        }
        while let Some((at, _)) = state.expiry.front() {
            if now.duration_since(*at) <= max_age {
                break;
            }
            if let Some((at, pid)) = state.expiry.pop_front() {
                if state.sessions.get(&pid).is_some_and(|(_, saved_at)| *saved_at == at) {
                    state.remove_session(&pid);
                }
            }
        }
    }

    /// Keeps a dropped socket's session for `max_disconnection_duration`.
    pub fn save(&self, session: SavedSession) {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.expiry.push_back((now, session.pid.clone()));
        state.pids.insert(session.sid.clone(), session.pid.clone());
        state.sessions.insert(session.pid.clone(), (session, now));
        self.evict(&mut state, now);
    }

    /// Replaces the data kept for the dropped socket `sid`, if it is kept:
    /// a host whose own copy of the socket's data is only final once its
    /// disconnect handler ran stores it here. Whether it was found.
    pub fn update_data(&self, sid: &str, data: serde_json::Value) -> bool {
        let mut state = self.state.lock();
        let LogState { sessions, pids, .. } = &mut *state;
        match pids.get(sid).and_then(|pid| sessions.get_mut(pid)) {
            Some((session, _)) => {
                session.data = data;
                true
            }
            None => false,
        }
    }

    /// Takes back the session of `pid` if it has not expired and every
    /// packet its client missed after `offset` (none: since the socket
    /// first connected) is still in the log; returns it with the first
    /// offset to replay.
    pub fn take_session(&self, pid: &str, offset: Option<&str>) -> Option<(SavedSession, u64)> {
        let now = Instant::now();
        let mut state = self.state.lock();
        self.evict(&mut state, now);
        let (session, saved_at) = state.remove_session(pid)?;
        if now.duration_since(saved_at) > self.options.max_disconnection_duration {
            return None;
        }
        let from = match offset {
            Some(text) => {
                let (epoch, n) = text.split_once('-')?;
                let n: u64 = n.parse().ok()?;
                if epoch != state.epoch || n >= state.next_offset {
                    return None;
                }
                n + 1
            }
            None => session.start,
        };
        if from < state.evicted_below {
            // Some of what it missed is gone: a partial replay would lie.
            return None;
        }
        Some((session, from))
    }

    /// The frames of the stored packets from offset `from` on that reached
    /// `rooms`, oldest first; `None` when some of them were evicted. With
    /// `state` the log's lock, which the caller holds until the socket is
    /// back in its rooms, so that nothing is missed or delivered twice.
    pub(crate) fn missed_since(&self, state: &LogState, from: u64, rooms: &[String]) -> Option<Vec<Frame>> {
        if from < state.evicted_below {
            return None;
        }
        let mut missed = Vec::new();
        for packet in state.packets.iter().filter(|p| p.offset >= from) {
            if packet.reaches(rooms) {
                missed.extend(packet.frames.iter().cloned());
            }
        }
        Some(missed)
    }

    /// Bytes and packets the log holds now.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.bytes, state.packets.len())
    }
}

fn new_epoch() -> String {
    let mut raw = [0u8; 4];
    rand::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|s| s.to_string()).collect(),
            except: except.iter().map(|s| s.to_string()).collect(),
            ..BroadcastOptions::default()
        }
    }

    fn store(log: &RecoveryLog, o: &BroadcastOptions, text: &str) -> String {
        let mut a = log.append();
        let off = a.offset_text();
        a.store(o, &[Frame::text(format!("{text}|{off}"))]);
        off
    }

    fn session(log: &RecoveryLog, pid: &str, rooms: &[&str], start: u64) {
        log.save(SavedSession {
            sid: "s".into(),
            pid: pid.into(),
            rooms: rooms.iter().map(|s| s.to_string()).collect(),
            data: Value::Null,
            start,
        });
    }

    fn restore(log: &RecoveryLog, pid: &str, offset: Option<&str>) -> Option<Vec<String>> {
        let (session, from) = log.take_session(pid, offset)?;
        let state = log.lock();
        let missed = log.missed_since(&state, from, &session.rooms)?;
        Some(
            missed
                .iter()
                .map(|f| String::from_utf8_lossy(f.bytes()).split('|').next().unwrap_or("").to_owned())
                .collect(),
        )
    }

    #[test]
    fn updates_the_data_of_a_kept_session_by_socket_id() {
        let log = RecoveryLog::new(RecoveryOptions::default());
        let start = log.next_offset();
        assert!(!log.update_data("s", Value::from(1)), "nothing kept yet");
        session(&log, "p", &[], start);
        assert!(log.update_data("s", Value::from(2)));
        let (kept, _) = log.take_session("p", None).expect("restored");
        assert_eq!(kept.data, Value::from(2));
        assert!(!log.update_data("s", Value::from(3)), "a taken session is no longer kept");
    }

    #[test]
    fn replays_what_the_rooms_reached_after_the_offset() {
        let log = RecoveryLog::new(RecoveryOptions::default());
        let start = log.next_offset();
        let o1 = store(&log, &opts(&[], &[]), "all");
        store(&log, &opts(&["a"], &[]), "a");
        store(&log, &opts(&["b"], &[]), "b");
        store(&log, &opts(&[], &["a"]), "not-a");
        session(&log, "p", &["s", "a"], start);
        let missed = restore(&log, "p", Some(&o1)).expect("restored");
        assert_eq!(missed, vec!["a"]);
        assert!(restore(&log, "p", Some(&o1)).is_none(), "a session is taken once");
        // No offset: from the start of the session.
        session(&log, "q", &["s", "b"], start);
        let missed = restore(&log, "q", None).expect("restored");
        assert_eq!(missed, vec!["all", "b", "not-a"]);
    }

    #[test]
    fn unknown_or_foreign_offsets_and_evicted_packets_give_nothing() {
        let log = RecoveryLog::new(RecoveryOptions { max_log_bytes: 200, ..RecoveryOptions::default() });
        let start = log.next_offset();
        let first = store(&log, &opts(&[], &[]), "x");
        session(&log, "p", &["s"], start);
        assert!(restore(&log, "p", Some("zz-0")).is_none(), "another run's offset");
        session(&log, "p", &["s"], start);
        assert!(restore(&log, "p", Some("nonsense")).is_none());
        session(&log, "p", &["s"], start);
        assert!(restore(&log, "nobody", None).is_none());
        for i in 0..10 {
            store(&log, &opts(&[], &[]), &format!("filler{i}-{}", "y".repeat(50)));
        }
        assert!(log.usage().0 <= 200);
        assert!(restore(&log, "p", Some(&first)).is_none(), "evicted: no partial replay");
    }

    #[test]
    fn data_of_a_dropped_socket_can_be_replaced() {
        let log = RecoveryLog::new(RecoveryOptions::default());
        session(&log, "p", &["s"], 0);
        assert!(log.update_data("s", serde_json::json!({"name": "ada"})));
        assert!(!log.update_data("nobody", Value::Null));
        let (saved, _) = log.take_session("p", None).expect("kept");
        assert_eq!(saved.data, serde_json::json!({"name": "ada"}));
    }

    #[test]
    fn sessions_expire() {
        let log = RecoveryLog::new(RecoveryOptions {
            max_disconnection_duration: Duration::from_millis(30),
            ..RecoveryOptions::default()
        });
        session(&log, "p", &["s"], 0);
        std::thread::sleep(Duration::from_millis(60));
        assert!(restore(&log, "p", None).is_none());
    }
}
