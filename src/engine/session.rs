//! One Engine.IO session: its outgoing queue, its heartbeat, its end, and
//! every transition of its state (which transport, a poll or a post under
//! way, a probe or an upgrade in progress). The transports change that state
//! only through the methods here. Its reads may be paused by a slow consumer
//! (`read_gate`), which the heartbeat allows for.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::burst;
use super::read_gate::ReadGate;
use super::routing::Engine;
use super::websocket::ConnectionSocket;
use super::{CloseReason, Message, RequestInfo, SessionHandler, Sid, TransportKind};
use crate::protocol::engine::{Frame, Packet};

struct SessionState {
    transport: TransportKind,
    /// The probe has been answered (`3probe` sent); waiting for `5`.
    upgrading: bool,
    /// A websocket for this session is open and waiting for its probe.
    probing: bool,
    /// While upgrading: the websocket's socket, to tell whether the client
    /// has sent something there (its `5`?) that is not read yet.
    upgrade_socket: Option<ConnectionSocket>,
    queue: VecDeque<Frame>,
    /// Bytes of the frames in `queue`.
    queued_bytes: usize,
    /// Bytes the transport has taken from the queue and not yet delivered:
    /// the websocket writer's buffer while it writes, or the last polling
    /// response until the client comes back for more. Counted with
    /// `queued_bytes` against the bound.
    in_flight: usize,
    /// The bound was crossed: the session is being closed, sends fail.
    overflowed: bool,
    closed: Option<CloseReason>,
    /// A long-polling GET is waiting for packets.
    get_active: bool,
    /// A long-polling POST is being read.
    post_active: bool,
    /// A ping is out and its pong has not come back.
    awaiting_pong: bool,
}

/// How a long-polling GET may go on (see [`Session::begin_get`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GetStart {
    /// It is now the session's pending GET.
    Started,
    /// The session is not on polling (any more).
    WrongTransport,
    /// Another GET is pending: the protocol says the session closes.
    Overlap,
}

/// What a pending GET sees when it looks at the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PollView {
    /// Why the session ended, if it has.
    pub(super) closed: Option<CloseReason>,
    /// The probe has been answered or the upgrade is done: polling ends.
    pub(super) upgraded: bool,
}

/// One Engine.IO session.
pub struct Session {
    pub(super) sid: Sid,
    /// The engine's max_buffered_bytes, kept here for the hot path.
    max_buffered: usize,
    pub(super) engine: Weak<Engine>,
    request: RequestInfo,
    state: Mutex<SessionState>,
    /// Wakes the queue's consumer: data queued, upgrade done, or closed.
    pub(super) wake: Notify,
    /// Wakes everyone waiting for the end of the session.
    closed_signal: Notify,
    /// Wakes the heartbeat: a pong arrived, or the session ended.
    pong: Notify,
    handler: Mutex<Option<Arc<dyn SessionHandler>>>,
    /// Closed while the session's consumer is behind (see `read_gate`).
    pub(super) read_gate: Arc<ReadGate>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("sid", &self.sid).finish()
    }
}

impl Session {
    /// A session whose queue holds its open packet.
    pub(super) fn new(
        sid: Sid,
        engine: Weak<Engine>,
        request: RequestInfo,
        transport: TransportKind,
        open: Frame,
        max_buffered: usize,
    ) -> Session {
        Session {
            sid,
            max_buffered,
            engine,
            request,
            state: Mutex::new(SessionState {
                transport,
                upgrading: false,
                probing: false,
                upgrade_socket: None,
                queued_bytes: open.len(),
                queue: VecDeque::from([open]),
                in_flight: 0,
                overflowed: false,
                closed: None,
                get_active: false,
                post_active: false,
                awaiting_pong: false,
            }),
            wake: Notify::new(),
            closed_signal: Notify::new(),
            pong: Notify::new(),
            handler: Mutex::new(None),
            read_gate: Arc::default(),
        }
    }

    /// Gives the session what receives its messages.
    pub(super) fn set_handler(&self, handler: Arc<dyn SessionHandler>) {
        *self.handler.lock() = Some(handler);
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The request that opened the session.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        self.state.lock().transport
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Queues frames for the client, in order. Returns false when the
    /// session is closed.
    ///
    /// What is held for one client (queued, plus what its transport has
    /// taken and not delivered yet) is bounded by the engine's
    /// `max_buffered_bytes`: a send that would cross it closes the session
    /// (`transport error`), and what was held is dropped. A single send may
    /// exceed the bound only when nothing else is held (a large message to
    /// a client that keeps up).
    pub fn send_frames<'a>(self: &Arc<Self>, frames: impl IntoIterator<Item = &'a Frame>) -> bool {
        burst::flush();
        let limit = self.max_buffered;
        let was_empty;
        let overflow;
        {
            let mut st = self.state.lock();
            if st.closed.is_some() || st.overflowed {
                return false;
            }
            was_empty = st.queue.is_empty();
            let held_before = st.queued_bytes + st.in_flight;
            let mut held = held_before;
            for f in frames {
                held += f.len();
                st.queue.push_back(f.clone());
            }
            overflow = held > limit && held_before > 0;
            if overflow {
                // Nothing of it will be delivered: let it go now, not when
                // the close comes round.
                st.overflowed = true;
                drop_held(&mut st);
            } else {
                st.queued_bytes = held - st.in_flight;
            }
        }
        if overflow {
            tracing::debug!(sid = %self.sid, "closing a session that does not read what it is sent");
            // Closed from a task of its own: the sender may hold locks (a
            // broadcast walks the room under them) that closing needs.
            if let Some(engine) = self.engine.upgrade() {
                let session = self.clone();
                engine.runtime.spawn(async move { session.close(CloseReason::TransportError) });
            }
            return false;
        }
        // Whoever drains the queue (the websocket writer, a pending GET)
        // looks at it before waiting and waits only when it is empty, so
        // only the push that makes it non-empty needs to wake them: under
        // load (a burst of broadcasts) the other pushes skip the wake-up.
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Queues one frame.
    pub fn send(self: &Arc<Self>, frame: Frame) -> bool {
        self.send_frames(std::iter::once(&frame))
    }

    /// Queues frames only if the transport can take them right now (nothing
    /// queued or being written, and for polling a request open); otherwise
    /// drops them. A client that falls behind loses its volatile packets
    /// first, long before the bound on what it holds closes it.
    pub fn send_volatile<'a>(&self, frames: impl IntoIterator<Item = &'a Frame>) -> bool {
        burst::flush();
        {
            let mut st = self.state.lock();
            let writable = st.closed.is_none()
                && st.queue.is_empty()
                && st.in_flight == 0
                && !st.upgrading
                && (st.transport == TransportKind::Websocket || st.get_active);
            if !writable {
                return false;
            }
            for f in frames {
                st.queued_bytes += f.len();
                st.queue.push_back(f.clone());
            }
        }
        self.wake.notify_one();
        true
    }

    /// Ends the session. On a server-side close (see
    /// [`CloseReason::drops_queue`]) frames already queued are still
    /// delivered before the transport closes; otherwise the client is gone
    /// or misbehaving and they are dropped at once, with the transport's
    /// pending write. Idempotent.
    pub fn close(self: &Arc<Self>, reason: CloseReason) {
        burst::flush();
        let keep_for_poll;
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
            if reason.drops_queue() {
                drop_held(&mut st);
            }
            // A polling client learns of a server-side close on its next GET
            // (after the packets queued before it), so the session stays
            // findable a while. So does a session the client closed with a
            // POST while no GET was pending: a GET racing with that POST still
            // gets its noop.
            let server_side = matches!(
                reason,
                CloseReason::ForcedClose | CloseReason::ServerShuttingDown | CloseReason::ForcedServerClose
            );
            let client_side = reason == CloseReason::TransportClose && !st.get_active;
            keep_for_poll = st.transport == TransportKind::Polling && (server_side || client_side);
        }
        self.wake.notify_waiters();
        self.wake.notify_one();
        self.closed_signal.notify_waiters();
        // The heartbeat waits on this signal too (see `heartbeat`).
        self.pong.notify_waiters();
        if let Some(engine) = self.engine.upgrade() {
            if keep_for_poll {
                let weak = Arc::downgrade(&engine);
                let sid = self.sid;
                let linger = engine.config.ping_interval + engine.config.ping_timeout;
                engine.runtime.spawn(async move {
                    tokio::time::sleep(linger).await;
                    if let Some(engine) = weak.upgrade() {
                        engine.remove(sid);
                    }
                });
            } else {
                engine.remove(self.sid);
            }
        }
        let handler = self.handler.lock().take();
        if let Some(h) = handler {
            h.on_close(self, reason);
        }
    }

    /// Why the session ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }

    /// Resolves once the session has ended in a way that drops what is
    /// queued for the client (a transport's pending write is then abandoned).
    pub(super) async fn dropped(&self) {
        self.closed().await;
        if !self.close_reason().is_some_and(CloseReason::drops_queue) {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once the session has ended.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed_signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn handler(&self) -> Option<Arc<dyn SessionHandler>> {
        self.handler.lock().clone()
    }

    /// Handles a packet from either transport.
    pub(super) fn on_packet(self: &Arc<Self>, packet: Packet) {
        match packet {
            Packet::Message(text) => {
                if let Some(h) = self.handler() {
                    h.on_message(self, Message::Text(text));
                }
            }
            Packet::Binary(data) => {
                if let Some(h) = self.handler() {
                    h.on_message(self, Message::Binary(data));
                }
            }
            Packet::Pong(_) => {
                self.read_gate.pong_received();
                let was_waiting = std::mem::replace(&mut self.state.lock().awaiting_pong, false);
                if was_waiting {
                    self.pong.notify_one();
                }
            }
            Packet::Close => self.close(CloseReason::TransportClose),
            // The heartbeat goes from server to client in v4; a client ping
            // (other than an upgrade probe, handled by the websocket task)
            // breaks the protocol.
            Packet::Ping(_) => self.close(CloseReason::TransportError),
            Packet::Open => self.close(CloseReason::ParseError),
            Packet::Upgrade | Packet::Noop => {}
        }
    }

    /// Takes every queued frame, handing each to `f` under the session's
    /// lock (no intermediate list): `f` must not call back into the session.
    /// Their bytes count as in flight until [`Session::written`].
    pub(super) fn drain_frames(&self, mut f: impl FnMut(Frame)) -> usize {
        let mut st = self.state.lock();
        st.in_flight += st.queued_bytes;
        st.queued_bytes = 0;
        let n = st.queue.len();
        for frame in st.queue.drain(..) {
            f(frame);
        }
        n
    }

    /// Takes queued frames, in order, up to about `max_bytes` (always at
    /// least one if any is queued); `polling` counts their long-polling size.
    pub(super) fn take_frames(&self, max_bytes: usize, polling: bool) -> Vec<Frame> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(st.queue.len().min(256));
        let mut size = 0;
        while let Some(front) = st.queue.front() {
            let len = if polling { front.polling_len() + 1 } else { front.len() };
            if !out.is_empty() && size + len > max_bytes {
                break;
            }
            size += len;
            if let Some(f) = st.queue.pop_front() {
                st.queued_bytes -= f.len();
                st.in_flight += len;
                out.push(f);
            }
        }
        out
    }

    /// The websocket writer is writing `bytes` (the frames it drained, with
    /// their headers).
    pub(super) fn writing(&self, bytes: usize) {
        self.state.lock().in_flight = bytes;
    }

    /// The websocket writer's write is done (or abandoned).
    pub(super) fn written(&self) {
        self.state.lock().in_flight = 0;
    }

    /// A long-polling GET arrives: it becomes the pending one, unless the
    /// session is not on polling or another GET is pending. The client has
    /// read the previous response, so it no longer counts as held.
    pub(super) fn begin_get(&self) -> GetStart {
        let mut st = self.state.lock();
        if st.transport != TransportKind::Polling {
            return GetStart::WrongTransport;
        }
        if st.get_active {
            return GetStart::Overlap;
        }
        st.get_active = true;
        st.in_flight = 0;
        GetStart::Started
    }

    /// The pending GET has ended (answered or abandoned).
    pub(super) fn end_get(&self) {
        self.state.lock().get_active = false;
    }

    /// A long-polling POST arrives: false if another one is being read.
    pub(super) fn begin_post(&self) -> bool {
        let mut st = self.state.lock();
        !std::mem::replace(&mut st.post_active, true)
    }

    /// The POST's body has been read (or given up on).
    pub(super) fn end_post(&self) {
        self.state.lock().post_active = false;
    }

    /// What a pending GET needs to know to answer.
    pub(super) fn poll_view(&self) -> PollView {
        let st = self.state.lock();
        PollView { closed: st.closed, upgraded: st.upgrading || st.transport != TransportKind::Polling }
    }

    /// Whether the client may have its `5` in flight: the probe has been
    /// answered and the client has sent bytes on the websocket that are
    /// not read yet.
    pub(super) fn upgrade_in_flight(&self) -> bool {
        let st = self.state.lock();
        // Asked under the lock: the websocket task forgets the socket (under
        // it) before it closes the connection.
        st.upgrading && st.upgrade_socket.is_some_and(|s| s.unread_bytes() > 0)
    }

    /// A websocket asks to take this polling session over. True (and the
    /// session now waits for that websocket's probe) when nothing else is
    /// probing or upgrading it; with `claim` false only the answer is given.
    pub(super) fn claim_probe(&self, claim: bool) -> bool {
        let mut st = self.state.lock();
        let free = st.transport == TransportKind::Polling && !st.upgrading && !st.probing && st.closed.is_none();
        if free && claim {
            st.probing = true;
        }
        free
    }

    /// The probe came: from now on the pending poll ends at once. False if
    /// the session closed or left polling meanwhile.
    pub(super) fn begin_upgrade(&self, socket: Option<ConnectionSocket>) -> bool {
        let mut st = self.state.lock();
        if st.closed.is_some() || st.transport != TransportKind::Polling {
            return false;
        }
        st.upgrading = true;
        st.upgrade_socket = socket;
        true
    }

    /// The upgrade is over: with `switched` (the client sent `5`) the
    /// session moves to websocket, unless it has closed meanwhile. Wakes the
    /// polls that wait for the outcome.
    pub(super) fn end_upgrade(&self, switched: bool) {
        {
            let mut st = self.state.lock();
            st.probing = false;
            st.upgrading = false;
            st.upgrade_socket = None;
            if switched && st.closed.is_none() {
                st.transport = TransportKind::Websocket;
                // The last poll (a noop) was answered before the `5`.
                st.in_flight = 0;
            }
        }
        self.wake.notify_waiters();
    }

    pub(super) async fn heartbeat(self: Arc<Self>, interval: Duration, timeout: Duration) {
        // Deadlines are planned from the previous one, so timer lateness
        // does not add up: the session ends interval + timeout after the
        // last pong, not a few milliseconds later.
        let mut next_ping = tokio::time::Instant::now() + interval;
        // Pings sent, and where the gate was when the client had answered them all.
        let (mut pings, mut answered) = (0, self.read_gate.mark());
        // The task lives as long as its session, one per connection: it
        // waits on the pong signal alone, which `close` also gives, so that
        // its future stays small.
        loop {
            loop {
                let woken = self.pong.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if self.is_closed() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(next_ping) => break,
                    _ = woken => {}
                }
            }
            crate::sched::wake_deferred_if_late();
            self.state.lock().awaiting_pong = true;
            pings += 1;
            let pinged = self.read_gate.mark();
            if !self.send(Frame::ping()) {
                return;
            }
            let deadline = next_ping + timeout;
            let woken = self.pong.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.is_closed() {
                return;
            }
            tokio::select! {
                _ = woken => {
                    if self.is_closed() {
                        return;
                    }
                    next_ping = tokio::time::Instant::now() + interval;
                    if self.read_gate.pongs() >= pings {
                        answered = self.read_gate.mark();
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.state.lock().awaiting_pong {
                        if !self.read_gate.excuses_silence(answered, pinged) {
                            self.close(CloseReason::PingTimeout);
                            return;
                        }
                        // The pong may be unread behind paused reads: ping
                        // again now (the client wants one within interval +
                        // timeout of the last).
                        next_ping = tokio::time::Instant::now();
                    }
                }
            }
        }
    }
}

/// Drops everything held for the client (nothing of it will be delivered).
fn drop_held(st: &mut SessionState) {
    st.queue = VecDeque::new();
    st.queued_bytes = 0;
}
