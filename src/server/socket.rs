//! A socket: one client's membership in one namespace, with its own id,
//! its acks in both directions, and its rooms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde_json::Value;

use super::adapter::{BroadcastOptions, EventPacket, RestoredSession};
use super::broadcast::BroadcastOperator;
use super::client::Client;
use super::namespace::Namespace;
use super::payload::Payload;
use super::recovery::SavedSession;
use crate::Sid;
use crate::engine::{CloseReason, burst};
use crate::protocol::engine::Frame;
use crate::protocol::socketio::{self, RESERVED_EVENTS};

/// Why a socket left its namespace. The strings are Socket.IO's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the connection.
    TransportClose,
    /// The connection failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent something unreadable.
    ParseError,
    /// The server closed the connection.
    ForcedClose,
    /// The server is stopping.
    ServerShuttingDown,
    /// The server closed the whole connection of this socket.
    ForcedServerClose,
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The server removed the socket from the namespace.
    ServerNamespaceDisconnect,
}

impl DisconnectReason {
    /// The reason as Socket.IO spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
        }
    }
}

impl DisconnectReason {
    /// Whether a client may recover its socket after this (connection
    /// state recovery): the connection was lost or closed by the server,
    /// not left on purpose.
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportError
                | DisconnectReason::TransportClose
                | DisconnectReason::ForcedClose
                | DisconnectReason::PingTimeout
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::ForcedServerClose
        )
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(r: CloseReason) -> Self {
        match r {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError => DisconnectReason::TransportError,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            CloseReason::ServerShuttingDown => DisconnectReason::ServerShuttingDown,
            CloseReason::ForcedServerClose => DisconnectReason::ForcedServerClose,
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an emit did not go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitError {
    /// The socket is no longer connected.
    Disconnected,
    /// The event name is one of Socket.IO's own.
    ReservedEvent,
    /// Placeholders and binary attachments do not agree.
    InvalidBinary,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EmitError::Disconnected => "socket is not connected",
            EmitError::ReservedEvent => "reserved event name",
            EmitError::InvalidBinary => "binary placeholders do not match the attachments",
        })
    }
}

impl std::error::Error for EmitError {}

/// How an emit-with-ack ended without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// No reply within the timeout.
    Timeout,
    /// The socket disconnected first.
    Disconnected,
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AckError::Timeout => "operation has timed out",
            AckError::Disconnected => "socket has been disconnected",
        })
    }
}

impl std::error::Error for AckError {}

/// Completion of an emit-with-ack; called exactly once.
pub type AckCallback = Box<dyn FnOnce(Result<Payload, AckError>) + Send>;

/// An emit-with-ack waiting for its reply, and its timeout timer (cancelled
/// as soon as the ack completes another way).
struct PendingAck {
    callback: AckCallback,
    timer: Option<tokio::task::AbortHandle>,
}

impl PendingAck {
    fn complete(self, result: Result<Payload, AckError>) {
        if let Some(timer) = self.timer {
            timer.abort();
        }
        (self.callback)(result);
    }
}

pub(crate) fn check_emit(event: &str, payload: &Payload) -> Result<(), EmitError> {
    if RESERVED_EVENTS.contains(&event) {
        return Err(EmitError::ReservedEvent);
    }
    if !payload.is_consistent() {
        return Err(EmitError::InvalidBinary);
    }
    Ok(())
}

/// Encodes an event with its attachments into frames, once.
pub(crate) fn event_frames(nsp: &str, event: &str, payload: &Payload, id: Option<u64>) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(1 + payload.binary.len());
    frames.push(socketio::encode_event(nsp, event, &payload.args, payload.binary.len(), id));
    frames.extend(payload.binary.iter().cloned().map(Frame::binary));
    frames
}

const PENDING: u8 = 0;
const CONNECTED: u8 = 1;
const DISCONNECTED: u8 = 2;

/// What the client sent when it connected.
#[derive(Debug, Clone)]
pub struct Handshake<'a> {
    socket: &'a Socket,
}

impl Handshake<'_> {
    /// The auth object of the CONNECT packet (`{}` when none was sent).
    pub fn auth(&self) -> &Value {
        &self.socket.auth
    }
    /// Headers of the request that opened the connection.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.socket.client.session.request().headers
    }
    /// Query parameters of that request.
    pub fn query(&self) -> &[(String, String)] {
        &self.socket.client.session.request().query
    }
    /// The peer address.
    pub fn address(&self) -> SocketAddr {
        self.socket.client.session.request().remote
    }
    /// The request URI.
    pub fn url(&self) -> &str {
        &self.socket.client.session.request().uri
    }
    /// When the connection opened.
    pub fn time(&self) -> SystemTime {
        self.socket.client.session.request().time
    }

    /// The handshake as one JSON object: `auth`, `query`, `headers`,
    /// `address`, `port`, `url`, `issued` (milliseconds since the epoch).
    pub fn to_json(&self) -> Value {
        let query: serde_json::Map<String, Value> =
            self.query().iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let mut headers = serde_json::Map::new();
        for (name, value) in self.headers() {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers.insert(name.as_str().to_owned(), Value::String(v));
        }
        let issued = self.time().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        serde_json::json!({
            "auth": self.auth(),
            "query": query,
            "headers": headers,
            "address": self.address().ip().to_string(),
            "port": self.address().port(),
            "url": self.url(),
            "issued": issued,
        })
    }
}

/// One client in one namespace.
pub struct Socket {
    id: Sid,
    pub(crate) nsp: Arc<Namespace>,
    pub(crate) client: Arc<Client>,
    auth: Value,
    state: AtomicU8,
    acks: Mutex<HashMap<u64, PendingAck>>,
    /// Frames emitted before the connection was accepted.
    early: Mutex<Vec<Frame>>,
    data: Mutex<Value>,
    /// The private id a client recovers this socket with (recovery on).
    pid: Option<String>,
    /// The log offset the socket's session started at (recovery on).
    start: u64,
    /// A saved session to bring back on accept, with the replay of what
    /// the client missed (boxed: most sockets never have one).
    restore: Mutex<Option<Box<RestoredSession>>>,
    recovered: AtomicBool,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("id", &self.id).field("nsp", &self.nsp.name()).finish()
    }
}

impl Socket {
    pub(crate) fn new(
        nsp: Arc<Namespace>,
        client: Arc<Client>,
        auth: Value,
        restore: Option<RestoredSession>,
    ) -> Arc<Socket> {
        let restored = restore.as_ref().map(|r| &r.session);
        let id = restored.and_then(|s| Sid::parse(&s.sid)).unwrap_or_default();
        let log = nsp.recovery();
        let pid = match restored {
            Some(s) => Some(s.pid.clone()),
            None => log.map(|_| Sid::new().to_string()),
        };
        let start = match restored {
            Some(s) => s.start,
            None => log.map_or(0, |l| l.next_offset()),
        };
        let data = restored.map_or(Value::Null, |s| s.data.clone());
        Arc::new(Socket {
            id,
            pid,
            start,
            restore: Mutex::new(restore.map(Box::new)),
            recovered: AtomicBool::new(false),
            nsp,
            client,
            auth,
            state: AtomicU8::new(PENDING),
            acks: Mutex::new(HashMap::new()),
            early: Mutex::new(Vec::new()),
            data: Mutex::new(data),
        })
    }

    /// The socket id (not the Engine.IO session id).
    pub fn id(&self) -> Sid {
        self.id
    }

    /// The namespace.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.nsp
    }

    /// What the client sent when it connected.
    pub fn handshake(&self) -> Handshake<'_> {
        Handshake { socket: self }
    }

    /// The Engine.IO session id of the underlying connection.
    pub fn engine_sid(&self) -> Sid {
        self.client.session.sid()
    }

    /// Application data kept with the socket for its lifetime (`null` at
    /// first), like Socket.IO's `socket.data`.
    pub fn data(&self) -> parking_lot::MutexGuard<'_, Value> {
        self.data.lock()
    }

    /// Replaces the socket's data. A socket that is leaving (its disconnect
    /// handlers may still be running) also hands it to the session kept for
    /// its recovery, so that a host whose copy is final only then loses
    /// nothing, whether it comes before or after the session is saved.
    pub fn set_data(&self, value: Value) {
        let mut data = self.data.lock();
        *data = value;
        if self.state.load(Ordering::Acquire) == DISCONNECTED && self.nsp.recovery().is_some() {
            self.nsp.adapter().update_session_data(&self.nsp, &self.id.to_string(), data.clone());
        }
    }

    /// Whether this socket was recovered: the client came back after a
    /// drop and got its id, rooms, data and missed packets back.
    pub fn recovered(&self) -> bool {
        self.recovered.load(Ordering::Acquire)
    }

    /// Whether this socket is a recovery waiting for the connect decision
    /// (connection state recovery without `skip_middlewares`): accepting it
    /// brings back the dropped socket's rooms, data and missed packets.
    pub fn recovering(&self) -> bool {
        self.restore.lock().is_some()
    }

    /// Whether the socket is connected.
    pub fn connected(&self) -> bool {
        self.state.load(Ordering::Acquire) == CONNECTED
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }

    /// Sends frames to this client; frames sent before the connection is
    /// accepted wait until it is.
    pub(crate) fn send_frames(&self, frames: &[Frame]) -> Result<(), EmitError> {
        match self.state.load(Ordering::Acquire) {
            CONNECTED => {
                if self.client.session.send_frames(frames) {
                    Ok(())
                } else {
                    Err(EmitError::Disconnected)
                }
            }
            PENDING => {
                let mut early = self.early.lock();
                // Re-check under the lock: `accept` drains it after the switch.
                if self.state.load(Ordering::Acquire) == PENDING {
                    early.extend_from_slice(frames);
                    Ok(())
                } else {
                    drop(early);
                    self.send_frames(frames)
                }
            }
            _ => Err(EmitError::Disconnected),
        }
    }

    /// Emits an event to this client.
    ///
    /// With connection state recovery on, the packet goes through the
    /// adapter to the socket's own room, so that it is stored with an
    /// offset like a broadcast.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        if self.nsp.recovery().is_some() && self.connected() {
            let packet = EventPacket { event: event.to_owned(), payload, id: None };
            let opts = BroadcastOptions { rooms: vec![self.id.to_string()], ..BroadcastOptions::default() };
            self.nsp.adapter().broadcast(&self.nsp, &packet, &opts);
            return Ok(());
        }
        self.send_frames(&event_frames(self.nsp.name(), event, &payload, None))
    }

    /// Emits an event that is dropped if the connection cannot take it now.
    pub fn emit_volatile(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        let frames = event_frames(self.nsp.name(), event, &payload, None);
        self.client.session.send_volatile(&frames);
        Ok(())
    }

    /// Emits an event and asks for an ack; `callback` runs exactly once, with
    /// the reply, a timeout, or a disconnect. `Duration::MAX` waits without a
    /// timeout (until the reply or the disconnect).
    pub fn emit_with_ack(
        self: &Arc<Self>,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
        callback: impl FnOnce(Result<Payload, AckError>) + Send + 'static,
    ) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        if self.state.load(Ordering::Acquire) == DISCONNECTED {
            return Err(EmitError::Disconnected);
        }
        let id = self.nsp.next_ack_id();
        self.register_ack(id, Box::new(callback));
        let frames = event_frames(self.nsp.name(), event, &payload, Some(id));
        if let Err(e) = self.send_frames(&frames) {
            self.acks.lock().remove(&id);
            return Err(e);
        }
        if timeout != Duration::MAX {
            let weak = Arc::downgrade(self);
            let timer = self.client.runtime.spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(socket) = weak.upgrade() {
                    let pending = socket.acks.lock().remove(&id);
                    if let Some(p) = pending {
                        // Its own timer: nothing to cancel.
                        (p.callback)(Err(AckError::Timeout));
                    }
                }
            });
            match self.acks.lock().get_mut(&id) {
                Some(p) => p.timer = Some(timer.abort_handle()),
                // Already answered: the timer has nothing left to do.
                None => timer.abort(),
            }
        }
        // A disconnect that raced with the insert must still answer.
        if self.state.load(Ordering::Acquire) == DISCONNECTED {
            self.fail_acks();
        }
        Ok(())
    }

    /// Emits an event and waits for the ack.
    pub async fn emit_with_ack_async(
        self: &Arc<Self>,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Payload, AckError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.emit_with_ack(event, payload, timeout, move |r| {
            let _ = tx.send(r);
        })
        .map_err(|_| AckError::Disconnected)?;
        rx.await.unwrap_or(Err(AckError::Disconnected))
    }

    /// Waits for the ack `id` of this client (no timer: the caller has one).
    pub(crate) fn register_ack(&self, id: u64, callback: AckCallback) {
        self.acks.lock().insert(id, PendingAck { callback, timer: None });
    }

    /// Stops waiting for the ack `id`, without calling its callback.
    pub(crate) fn forget_ack(&self, id: u64) {
        self.acks.lock().remove(&id);
    }

    pub(crate) fn on_ack(&self, id: u64, payload: Payload) {
        let pending = self.acks.lock().remove(&id);
        if let Some(p) = pending {
            p.complete(Ok(payload));
        }
    }

    fn fail_acks(&self) {
        let pending: Vec<PendingAck> = self.acks.lock().drain().map(|(_, p)| p).collect();
        for p in pending {
            p.complete(Err(AckError::Disconnected));
        }
    }

    /// Joins a room.
    pub fn join(&self, room: &str) {
        self.nsp.room_index().add_all(self.id, &[room]);
    }

    /// Joins several rooms.
    pub fn join_many(&self, rooms: &[&str]) {
        self.nsp.room_index().add_all(self.id, rooms);
    }

    /// Leaves a room.
    pub fn leave(&self, room: &str) {
        self.nsp.room_index().del(self.id, room);
    }

    /// The rooms this socket is in (its own id room included).
    pub fn rooms(&self) -> Vec<String> {
        self.nsp.room_index().socket_rooms(self.id)
    }

    /// A broadcast to a room that leaves this socket out (as in Socket.IO);
    /// use `socket.namespace().to(room)` to include the sender.
    pub fn to(&self, room: &str) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// A broadcast to the whole namespace except rooms, leaving this socket out.
    pub fn except(&self, room: &str) -> BroadcastOperator {
        self.broadcast().except(room)
    }

    /// A broadcast to everyone in the namespace but this socket.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.nsp.clone()).except_socket(self.id)
    }

    /// Removes the socket from its namespace (the client sees
    /// `io server disconnect`); with `close`, closes the whole connection.
    pub fn disconnect(self: &Arc<Self>, close: bool) {
        if close {
            self.client.disconnect_all();
            return;
        }
        if !self.connected() {
            return;
        }
        // Leave first, so that the reason stays this one even if the client
        // closes its connection as soon as it reads the packet.
        self.on_close(DisconnectReason::ServerNamespaceDisconnect);
        let _ = self.client.session.send(socketio::encode_disconnect(self.nsp.name()));
    }

    /// Closes the socket's whole connection at the transport level, without
    /// a DISCONNECT packet: to the client it looks like a lost connection
    /// (it reconnects, and may recover with connection state recovery);
    /// server handlers see `forced close`.
    pub fn close_connection(&self) {
        self.client.session.close(CloseReason::ForcedClose);
    }

    /// Accepts a pending connection: registers the socket, answers CONNECT,
    /// sends what was emitted meanwhile.
    pub(crate) fn accept(self: &Arc<Self>) -> bool {
        // Broadcasts emitted before this socket connected are not for it.
        burst::flush();
        if self.client.session.is_closed() {
            return false;
        }
        // A recovering socket is replayed to and rejoins its rooms inside
        // the adapter's replay, which holds back the delivery of packets
        // meanwhile, so each one reaches it once, in the replay or live.
        let Some(restored) = self.restore.lock().take() else {
            return self.enter(None, &[]);
        };
        let rooms = restored.session.rooms.clone();
        let mut entered = false;
        restored.replay(&self.nsp, &mut |missed| entered = self.enter(missed, &rooms));
        entered
    }

    /// The rest of `accept`: registers the socket, puts it in its own room
    /// (and, when `missed` is known, back in the `rooms` of its restored
    /// session), and sends the missed frames, the CONNECT reply and what
    /// was emitted meanwhile.
    fn enter(self: &Arc<Self>, missed: Option<Vec<Frame>>, rooms: &[String]) -> bool {
        self.nsp.insert(self.clone());
        let mut join: Vec<&str> = vec![self.id.as_str()];
        if missed.is_some() {
            join.extend(rooms.iter().map(String::as_str));
        }
        self.nsp.room_index().add_all(self.id, &join);
        let mut early = self.early.lock();
        if self.state.compare_exchange(PENDING, CONNECTED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            drop(early);
            self.nsp.remove(self.id);
            self.nsp.room_index().del_all(self.id);
            return false;
        }
        self.client.mark_connected();
        if missed.is_some() {
            self.recovered.store(true, Ordering::Release);
        }
        let mut frames = missed.unwrap_or_default();
        frames.push(match &self.pid {
            Some(pid) => socketio::encode_connect_with_pid(self.nsp.name(), self.id.as_str(), pid),
            None => socketio::encode_connect(self.nsp.name(), self.id.as_str()),
        });
        frames.append(&mut early);
        drop(early);
        self.client.session.send_frames(&frames);
        true
    }

    /// Refuses a pending connection with CONNECT_ERROR.
    pub(crate) fn refuse(self: &Arc<Self>, message: &str, data: Option<&Value>) {
        burst::flush();
        if self.state.compare_exchange(PENDING, DISCONNECTED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        self.early.lock().clear();
        // Rooms joined while waiting for the answer go with it.
        self.nsp.room_index().del_all(self.id);
        self.client.forget(self);
        self.client.socket_left(self);
        self.client.session.send(socketio::encode_connect_error(self.nsp.name(), message, data));
    }

    /// The socket leaves its namespace for `reason`: handlers are told, rooms
    /// and pending acks are cleaned up. Runs once.
    pub(crate) fn on_close(self: &Arc<Self>, reason: DisconnectReason) {
        // Broadcasts emitted before it left still reach it.
        burst::flush();
        let previous = self.state.swap(DISCONNECTED, Ordering::AcqRel);
        if previous == DISCONNECTED {
            return;
        }
        self.client.forget(self);
        if previous == CONNECTED {
            self.nsp.handlers.disconnecting(self, reason);
            self.save_session(reason);
        }
        self.nsp.room_index().del_all(self.id);
        self.nsp.remove(self.id);
        self.client.socket_left(self);
        self.fail_acks();
        if previous == CONNECTED {
            self.nsp.handlers.disconnect(self, reason);
        }
    }
}

impl Socket {
    /// Keeps what a client needs to recover this socket, when recovery is on
    /// and the reason is one a client recovers from.
    fn save_session(&self, reason: DisconnectReason) {
        let Some(pid) = self.pid.as_ref().filter(|_| self.nsp.recovery().is_some()) else {
            return;
        };
        if !reason.is_recoverable() {
            return;
        }
        let rooms = self.rooms();
        // Held until the session is kept: data set meanwhile (`set_data`)
        // waits, then finds the kept session.
        let data = self.data.lock();
        self.nsp.adapter().persist_session(
            &self.nsp,
            SavedSession { sid: self.id.to_string(), pid: pid.clone(), rooms, data: data.clone(), start: self.start },
        );
        drop(data);
    }
}

/// The answer to an incoming event that asked for an ack. Answer once, from
/// any thread, at any time; dropping it sends nothing.
#[derive(Debug)]
pub struct AckSender {
    socket: Arc<Socket>,
    id: u64,
}

impl AckSender {
    pub(crate) fn new(socket: Arc<Socket>, id: u64) -> AckSender {
        AckSender { socket, id }
    }

    /// The socket that asked.
    pub fn socket(&self) -> &Arc<Socket> {
        &self.socket
    }

    /// Sends the ack with these arguments.
    pub fn send(self, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let payload = payload.into();
        if !payload.is_consistent() {
            return Err(EmitError::InvalidBinary);
        }
        if !self.socket.connected() {
            return Err(EmitError::Disconnected);
        }
        let mut frames = Vec::with_capacity(1 + payload.binary.len());
        frames.push(socketio::encode_ack(self.socket.nsp.name(), self.id, &payload.args, payload.binary.len()));
        frames.extend(payload.binary.iter().cloned().map(Frame::binary));
        self.socket.send_frames(&frames)
    }
}

/// A connection waiting for the host's decision. Accept or refuse it once,
/// now or later, from any thread; dropping it undecided accepts it.
#[derive(Debug)]
pub struct ConnectRequest {
    socket: Option<Arc<Socket>>,
}

impl ConnectRequest {
    pub(crate) fn new(socket: Arc<Socket>) -> ConnectRequest {
        ConnectRequest { socket: Some(socket) }
    }

    /// The socket to be (its id is final; emits made now are sent after the
    /// CONNECT answer).
    pub fn socket(&self) -> Option<&Arc<Socket>> {
        self.socket.as_ref()
    }

    /// Accepts the connection; returns the socket when the client is still there.
    pub fn accept(mut self) -> Option<Arc<Socket>> {
        let socket = self.socket.take()?;
        if socket.accept() {
            socket.nsp.handlers.connection(&socket);
            Some(socket)
        } else {
            None
        }
    }

    /// Refuses the connection; the client's `connect_error` gets `message`
    /// and `data`.
    pub fn reject(mut self, message: &str, data: Option<Value>) {
        if let Some(socket) = self.socket.take() {
            socket.refuse(message, data.as_ref());
        }
    }
}

impl Drop for ConnectRequest {
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take() {
            if socket.accept() {
                socket.nsp.handlers.connection(&socket);
            }
        }
    }
}
