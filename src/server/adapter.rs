//! The adapter: the one seam every broadcast and every "act on the matching
//! sockets" request of a namespace goes through.
//!
//! A selection ([`BroadcastOptions`]: rooms, except rooms, except socket ids,
//! flags) says who; the [`Adapter`] does it. The in-memory adapter acts on
//! this node only, through the namespace's `local_*` operations. An adapter
//! for several nodes does the same locally and forwards the operation to the
//! other nodes (unless the selection is `local`); one that keeps a recovery
//! log stores what it broadcasts. Results come back through callbacks, so a
//! remote implementation can answer later.
//!
//! Room membership itself is the namespace's [`RoomIndex`](super::rooms::RoomIndex):
//! joins and leaves are local in Socket.IO, on every adapter.
//!
//! Connection state recovery goes through the adapter too: it keeps the
//! sessions of dropped sockets and finds what their clients missed. The
//! provided methods use the namespace's in-memory [`RecoveryLog`](super::RecoveryLog);
//! an adapter for several nodes keeps both in a store every node reads, so
//! that a client recovers on any node, and gives stored packets its own
//! offsets (see [`Adapter::keeps_recovery_log`]).

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use super::namespace::Namespace;
use super::payload::Payload;
use super::recovery::SavedSession;
use super::socket::{Socket, event_frames};
use crate::Sid;
use crate::protocol::engine::Frame;

/// How a broadcast is delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Dropped for recipients that cannot take it right now; never stored.
    pub volatile: bool,
    /// This node only: not forwarded to other nodes.
    pub local: bool,
    /// For emits with acks: how long to wait for every reply.
    pub timeout: Option<Duration>,
}

/// Who a broadcast or a bulk operation is for: the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Rooms to reach (their union); empty means every socket.
    pub rooms: Vec<String>,
    /// Rooms whose members are left out.
    pub except: Vec<String>,
    /// Sockets left out (the sender of a socket broadcast).
    pub except_sids: Vec<Sid>,
    /// How.
    pub flags: BroadcastFlags,
}

impl BroadcastOptions {
    /// The excluded rooms with the excluded socket ids (each socket's own
    /// room), as Socket.IO's wire formats carry them.
    pub fn except_rooms_and_sids(&self) -> Vec<String> {
        self.except.iter().cloned().chain(self.except_sids.iter().map(Sid::to_string)).collect()
    }
}

/// An event on its way to the selected clients.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPacket {
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub payload: Payload,
    /// The ack id, for an emit that expects acks.
    pub id: Option<u64>,
}

impl EventPacket {
    /// The packet's frames for namespace `nsp`, encoded once.
    pub fn frames(&self, nsp: &str) -> Vec<Frame> {
        event_frames(nsp, &self.event, &self.payload, self.id)
    }
}

/// A socket as a bulk query reports it (possibly one on another node).
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// The socket id.
    pub id: String,
    /// The handshake, as [`Handshake::to_json`](super::Handshake::to_json) gives it.
    pub handshake: Value,
    /// Its rooms (its own id room included).
    pub rooms: Vec<String>,
    /// Its application data.
    pub data: Value,
}

impl SocketInfo {
    /// The information of a local socket.
    pub fn of(socket: &Socket) -> SocketInfo {
        SocketInfo {
            id: socket.id().to_string(),
            handshake: socket.handshake().to_json(),
            rooms: socket.rooms(),
            data: socket.data().clone(),
        }
    }
}

/// How an emit that expects acks from several clients (or servers) ended.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastAckResult {
    /// Every reply received, in arrival order.
    pub replies: Vec<Payload>,
    /// How many replies were expected (clients reached, or servers asked).
    pub expected: usize,
    /// Whether the timeout passed before every reply arrived.
    pub timed_out: bool,
}

type AckDone = Box<dyn FnOnce(BroadcastAckResult) + Send>;

/// Where a forwarding collector sends what it learns.
struct AckForward {
    clients: Box<dyn Fn(usize) + Send + Sync>,
    reply: Box<dyn Fn(Payload) + Send + Sync>,
}

#[derive(Default)]
struct AckState {
    replies: Vec<Payload>,
    /// Recipients that left without answering.
    gone: usize,
    expected: usize,
    expected_servers: Option<usize>,
    servers_reported: usize,
    done: Option<AckDone>,
    timer: Option<tokio::task::AbortHandle>,
    /// Local sockets still holding an ack entry, to clear on timeout.
    waiting: Vec<(Weak<Socket>, u64)>,
    /// Set for a collector that passes counts and replies on (to another node).
    forward: Option<Arc<AckForward>>,
}

/// Collects the replies of an emit with acks sent to many clients, possibly
/// across nodes: adapters report how many servers will answer and how many
/// clients each reached; replies arrive one by one. The completion runs
/// once: when every expected reply arrived (or its recipient left), or when
/// the timeout passes, with what arrived.
pub struct BroadcastAcks {
    state: Mutex<AckState>,
}

impl fmt::Debug for BroadcastAcks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("BroadcastAcks").field("replies", &s.replies.len()).field("expected", &s.expected).finish()
    }
}

impl BroadcastAcks {
    /// A collector that calls `done` once; with a timeout it also starts the
    /// timer on `runtime` (without a runtime, it waits for every reply).
    pub fn new(
        timeout: Option<Duration>,
        runtime: Option<&tokio::runtime::Handle>,
        done: impl FnOnce(BroadcastAckResult) + Send + 'static,
    ) -> Arc<BroadcastAcks> {
        let acks = Arc::new(BroadcastAcks {
            state: Mutex::new(AckState { done: Some(Box::new(done)), ..AckState::default() }),
        });
        if let (Some(timeout), Some(runtime)) = (timeout, runtime) {
            let weak = Arc::downgrade(&acks);
            let timer = runtime.spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(acks) = weak.upgrade() {
                    acks.time_out();
                }
            });
            let mut state = acks.state.lock();
            if state.done.is_some() {
                state.timer = Some(timer.abort_handle());
            } else {
                timer.abort();
            }
        }
        acks
    }

    /// A collector for this node's part of a broadcast with acks that
    /// another node asked for: it collects nothing, but passes on this
    /// node's client count and each reply as they come, so that the asking
    /// node counts them. With a timeout, the recipients' ack entries are
    /// cleared when it passes.
    pub fn forwarding(
        timeout: Option<Duration>,
        runtime: Option<&tokio::runtime::Handle>,
        clients: impl Fn(usize) + Send + Sync + 'static,
        reply: impl Fn(Payload) + Send + Sync + 'static,
    ) -> Arc<BroadcastAcks> {
        let acks = BroadcastAcks::new(timeout, runtime, |_| {});
        acks.state.lock().forward = Some(Arc::new(AckForward { clients: Box::new(clients), reply: Box::new(reply) }));
        acks
    }

    /// How many servers will report (`add_clients`) — the in-memory adapter
    /// says 1; an adapter for several nodes says how many nodes it asked.
    pub fn expect_servers(&self, n: usize) {
        let mut state = self.state.lock();
        state.expected_servers = Some(n);
        self.check(state);
    }

    /// One server reports how many replies to expect from it.
    pub fn add_clients(&self, n: usize) {
        let mut state = self.state.lock();
        if let Some(forward) = state.forward.clone() {
            drop(state);
            (forward.clients)(n);
            return;
        }
        state.servers_reported += 1;
        state.expected += n;
        self.check(state);
    }

    /// A reply arrived.
    pub fn reply(&self, payload: Payload) {
        let mut state = self.state.lock();
        if let Some(forward) = state.forward.clone() {
            drop(state);
            (forward.reply)(payload);
            return;
        }
        if state.done.is_none() {
            return;
        }
        state.replies.push(payload);
        self.check(state);
    }

    /// A recipient left without replying: nothing more to wait for from it.
    pub fn gone(&self) {
        let mut state = self.state.lock();
        state.gone += 1;
        self.check(state);
    }

    /// Remembers a local socket's ack entry so that a timeout can clear it.
    pub(crate) fn track(&self, socket: &Arc<Socket>, id: u64) {
        let mut state = self.state.lock();
        if state.timer.is_some() {
            state.waiting.push((Arc::downgrade(socket), id));
        }
    }

    /// Whether the completion already ran.
    pub fn is_done(&self) -> bool {
        self.state.lock().done.is_none()
    }

    fn check(&self, mut state: parking_lot::MutexGuard<'_, AckState>) {
        let complete = state.expected_servers.is_some_and(|n| state.servers_reported >= n)
            && state.replies.len() + state.gone >= state.expected;
        if !complete {
            return;
        }
        let Some(done) = state.done.take() else {
            return;
        };
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.waiting.clear();
        let result = BroadcastAckResult {
            replies: std::mem::take(&mut state.replies),
            expected: state.expected,
            timed_out: false,
        };
        drop(state);
        done(result);
    }

    fn time_out(&self) {
        let mut state = self.state.lock();
        let Some(done) = state.done.take() else {
            return;
        };
        state.timer = None;
        let waiting = std::mem::take(&mut state.waiting);
        let result = BroadcastAckResult {
            replies: std::mem::take(&mut state.replies),
            expected: state.expected,
            timed_out: true,
        };
        drop(state);
        for (socket, id) in waiting {
            if let Some(socket) = socket.upgrade() {
                socket.forget_ack(id);
            }
        }
        done(result);
    }
}

/// The answer to a server-side emit that asked for one; dropping it
/// answers nothing (the asking server's timeout covers it).
pub type ServerSideReply = Box<dyn FnOnce(Payload) + Send>;

/// Brings a restored socket up to date: called once, when the socket is
/// accepted, with `enter`, which puts the socket in its rooms and sends it
/// the frames it missed (`None`: they are not all known any more, so the
/// socket starts afresh) before the CONNECT reply.
///
/// An implementation calls `enter` exactly once, while no packet that the
/// session's rooms could receive is being delivered on this node: then each
/// packet reaches the socket once, in the replay or live.
pub trait SessionReplay: Send + 'static {
    /// Runs `enter` with the missed frames of `nsp`'s socket.
    fn replay(self: Box<Self>, nsp: &Arc<Namespace>, enter: &mut dyn FnMut(Option<Vec<Frame>>));
}

/// A dropped socket's session, found again by the adapter for a client that
/// came back with its private id, and how to replay what it missed.
pub struct RestoredSession {
    /// Its id, private id, rooms and data.
    pub session: SavedSession,
    replay: Box<dyn SessionReplay>,
}

impl fmt::Debug for RestoredSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoredSession").field("session", &self.session).finish()
    }
}

impl RestoredSession {
    /// A session and its replay.
    pub fn new(session: SavedSession, replay: impl SessionReplay) -> RestoredSession {
        RestoredSession { session, replay: Box::new(replay) }
    }

    /// Runs the replay (see [`SessionReplay`]).
    pub(crate) fn replay(self, nsp: &Arc<Namespace>, enter: &mut dyn FnMut(Option<Vec<Frame>>)) {
        self.replay.replay(nsp, enter);
    }
}

/// The answer of [`Adapter::restore_session`].
pub type RestoreDone = Box<dyn FnOnce(Option<RestoredSession>) + Send>;

/// The in-memory log's replay: the stored packets from offset `from` on
/// that reached the session's rooms, read under the log's lock.
struct LogReplay {
    from: u64,
    rooms: Vec<String>,
}

impl SessionReplay for LogReplay {
    fn replay(self: Box<Self>, nsp: &Arc<Namespace>, enter: &mut dyn FnMut(Option<Vec<Frame>>)) {
        match nsp.recovery() {
            Some(log) => {
                // Held until the socket is in its rooms: nothing is stored
                // or delivered meanwhile.
                let state = log.lock();
                enter(log.missed_since(&state, self.from, &self.rooms));
            }
            None => enter(None),
        }
    }
}

/// Every broadcast and bulk operation of one namespace.
///
/// The provided methods act on this node only; that is the in-memory
/// adapter. An adapter for several nodes overrides them: it calls the same
/// local operation (the namespace's `local_*` methods) and forwards the
/// request to the other nodes unless `opts.flags.local` is set. Methods may
/// be called from any thread, network threads included; they must not block.
pub trait Adapter: Send + Sync + 'static {
    /// The namespace's server is starting (or the namespace was created on a
    /// running server): the adapter may connect and subscribe now.
    fn start(&self, _nsp: &Arc<Namespace>, _runtime: &tokio::runtime::Handle) {}

    /// The server is stopping: release connections and tasks.
    fn stop(&self) {}

    /// Emits `packet` to the selected sockets (encoded once).
    fn broadcast(&self, nsp: &Arc<Namespace>, packet: &EventPacket, opts: &BroadcastOptions) {
        nsp.local_broadcast(packet, opts);
    }

    /// Emits `packet` (its `id` set) to the selected sockets and reports to
    /// `acks` how many servers and clients will answer, then every reply.
    fn broadcast_with_ack(
        &self,
        nsp: &Arc<Namespace>,
        packet: &EventPacket,
        opts: &BroadcastOptions,
        acks: &Arc<BroadcastAcks>,
    ) {
        acks.expect_servers(1);
        nsp.local_broadcast_with_ack(packet, opts, acks);
    }

    /// The selected sockets, with their rooms, data and handshake.
    fn fetch_sockets(
        &self,
        nsp: &Arc<Namespace>,
        opts: &BroadcastOptions,
        done: Box<dyn FnOnce(Vec<SocketInfo>) + Send>,
    ) {
        done(nsp.local_fetch_sockets(opts));
    }

    /// Makes the selected sockets join `rooms`.
    fn add_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[String]) {
        nsp.local_add_sockets(opts, rooms);
    }

    /// Makes the selected sockets leave `rooms`.
    fn del_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[String]) {
        nsp.local_del_sockets(opts, rooms);
    }

    /// Disconnects the selected sockets (with `close`, their connections).
    fn disconnect_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, close: bool) {
        nsp.local_disconnect_sockets(opts, close);
    }

    /// Every room with members, on every node.
    fn all_rooms(&self, nsp: &Arc<Namespace>, done: Box<dyn FnOnce(Vec<String>) + Send>) {
        done(nsp.rooms());
    }

    /// Emits an event to the other servers' handlers of this namespace
    /// (never to clients). One node has no other servers: with `acks`, it
    /// completes at once with no replies.
    fn server_side_emit(&self, _nsp: &Arc<Namespace>, _packet: &EventPacket, acks: Option<&Arc<BroadcastAcks>>) {
        if let Some(acks) = acks {
            acks.expect_servers(0);
        }
    }

    // ---- connection state recovery (only called when it is on) -------------

    /// Whether this adapter stores recovery's packets and sessions itself,
    /// in a store every node shares. The namespace's in-memory log then
    /// stays unused: [`Namespace::local_broadcast`] gives no offsets, and
    /// the adapter delivers each packet it stores with
    /// [`Namespace::local_broadcast_with_offset`].
    fn keeps_recovery_log(&self) -> bool {
        false
    }

    /// Keeps the session of a socket that dropped for a recoverable reason.
    fn persist_session(&self, nsp: &Arc<Namespace>, session: SavedSession) {
        if let Some(log) = nsp.recovery() {
            log.save(session);
        }
    }

    /// Takes back the session of private id `pid` for a client that missed
    /// what came after `offset` (none: it never received a stored packet),
    /// and answers through `done` — now or later, on any thread — with the
    /// session and its replay, or `None` (unknown or expired session, or
    /// some missed packet no longer known): the client then gets a new
    /// session.
    fn restore_session(&self, nsp: &Arc<Namespace>, pid: &str, offset: Option<&str>, done: RestoreDone) {
        let restored = nsp.recovery().and_then(|log| log.take_session(pid, offset)).map(|(session, from)| {
            let rooms = session.rooms.clone();
            RestoredSession::new(session, LogReplay { from, rooms })
        });
        done(restored);
    }

    /// Replaces the data kept for the dropped socket `sid`, if its session
    /// is kept (see [`Server::set_dropped_socket_data`](super::Server::set_dropped_socket_data));
    /// whether it was.
    fn update_session_data(&self, nsp: &Arc<Namespace>, sid: &str, data: Value) -> bool {
        nsp.recovery().is_some_and(|log| log.update_data(sid, data))
    }
}

/// The in-memory adapter: every operation on this node only.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryAdapter;

impl Adapter for MemoryAdapter {}

/// Makes the adapter of each namespace (one per namespace, as in Socket.IO).
pub trait AdapterFactory: Send + Sync + fmt::Debug + 'static {
    /// The adapter of namespace `nsp`.
    fn create(&self, nsp: &str) -> Arc<dyn Adapter>;

    /// The server is starting, after the adapters of its namespaces started:
    /// connections the adapters share are opened here. An error fails
    /// [`Server::start`](super::Server::start) with it. Called from the
    /// thread that starts the server, never from a network thread, so it may
    /// wait (briefly) for a connection.
    fn start(&self, _runtime: &tokio::runtime::Handle) -> std::io::Result<()> {
        Ok(())
    }

    /// The server stopped, after the adapters of its namespaces stopped.
    fn stop(&self) {}
}

/// Makes [`MemoryAdapter`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryAdapterFactory;

impl AdapterFactory for MemoryAdapterFactory {
    fn create(&self, _nsp: &str) -> Arc<dyn Adapter> {
        Arc::new(MemoryAdapter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collector() -> (Arc<BroadcastAcks>, Arc<Mutex<Option<BroadcastAckResult>>>) {
        let out = Arc::new(Mutex::new(None));
        let sink = out.clone();
        let acks = BroadcastAcks::new(None, None, move |r| *sink.lock() = Some(r));
        (acks, out)
    }

    #[test]
    fn completes_when_every_server_and_client_answered() {
        let (acks, out) = collector();
        acks.add_clients(2);
        acks.reply(Payload::one(json!(1)));
        acks.reply(Payload::one(json!(2)));
        assert!(out.lock().is_none(), "the number of servers is not known yet");
        acks.expect_servers(2);
        assert!(out.lock().is_none(), "one server has not reported");
        acks.add_clients(1);
        assert!(out.lock().is_none());
        acks.gone();
        let r = out.lock().take().expect("complete");
        assert_eq!(r.expected, 3);
        assert_eq!(r.replies.len(), 2);
        assert!(!r.timed_out);
        // Late replies change nothing.
        acks.reply(Payload::one(json!(3)));
        assert!(out.lock().is_none());
    }

    #[test]
    fn nobody_to_ask_completes_at_once() {
        let (acks, out) = collector();
        acks.expect_servers(1);
        acks.add_clients(0);
        assert_eq!(out.lock().take().map(|r| r.expected), Some(0));
        let (acks, out) = collector();
        acks.expect_servers(0);
        assert!(out.lock().is_some());
    }

    #[test]
    fn a_forwarding_collector_passes_counts_and_replies_on() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (counts, replies) = (seen.clone(), seen.clone());
        let acks = BroadcastAcks::forwarding(
            None,
            None,
            move |n| counts.lock().push(json!({ "clients": n })),
            move |p| replies.lock().push(json!({ "reply": p.args })),
        );
        acks.add_clients(2);
        acks.reply(Payload::one(json!("a")));
        acks.reply(Payload::one(json!("b")));
        assert_eq!(*seen.lock(), vec![json!({"clients": 2}), json!({"reply": ["a"]}), json!({"reply": ["b"]})]);
        assert!(!acks.is_done(), "it collects nothing and completes nothing");
    }

    #[test]
    fn timeout_reports_what_arrived() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let out = Arc::new(Mutex::new(None));
        let sink = out.clone();
        let acks =
            BroadcastAcks::new(Some(Duration::from_millis(20)), Some(rt.handle()), move |r| *sink.lock() = Some(r));
        acks.expect_servers(1);
        acks.add_clients(2);
        acks.reply(Payload::one(json!("a")));
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(60)).await });
        let r = out.lock().take().expect("timed out");
        assert!(r.timed_out);
        assert_eq!(r.replies, vec![Payload::one(json!("a"))]);
        assert_eq!(r.expected, 2);
    }
}
