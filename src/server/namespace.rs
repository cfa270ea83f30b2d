//! Namespaces: the handlers registered for one, its sockets, its rooms.
//!
//! A namespace created by a dynamic matcher shares the handlers of the
//! matcher's template, so handlers registered once serve every namespace the
//! matcher accepts.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use super::Shared;
use super::adapter::{
    Adapter, BroadcastAckResult, BroadcastAcks, BroadcastOptions, EventPacket, ServerSideReply, SocketInfo,
};
use super::broadcast::BroadcastOperator;
use super::payload::Payload;
use super::recovery::RecoveryLog;
use super::rooms::RoomIndex;
use super::socket::{AckSender, ConnectRequest, DisconnectReason, EmitError, Socket, check_emit};
use crate::Sid;
use crate::engine::burst;
use crate::protocol::engine::Frame;

/// Decides on a new connection (accept, refuse, or keep the request to
/// decide later).
pub type ConnectHandler = dyn Fn(ConnectRequest) + Send + Sync;
/// Runs once a connection is accepted.
pub type ConnectionHandler = dyn Fn(&Arc<Socket>) + Send + Sync;
/// Receives one event: the socket, the arguments, and the ack to answer if
/// the client asked for one.
pub type EventHandler = dyn Fn(&Arc<Socket>, Payload, Option<AckSender>) + Send + Sync;
/// Receives every event that has no handler of its own, with its name.
pub type AnyEventHandler = dyn Fn(&Arc<Socket>, &str, Payload, Option<AckSender>) + Send + Sync;
/// Receives a disconnect and its reason.
pub type DisconnectHandler = dyn Fn(&Arc<Socket>, DisconnectReason) + Send + Sync;
/// Receives an event another server emitted to this namespace's servers
/// (`server_side_emit`): the namespace (a dynamic namespace's handlers serve
/// many), the event, its arguments, and the reply to send if that server
/// asked for one.
pub type ServerSideHandler = dyn Fn(&Namespace, &str, Payload, Option<ServerSideReply>) + Send + Sync;

/// The handlers of a namespace (or of a dynamic namespace template).
#[derive(Default)]
pub struct Handlers {
    connect: RwLock<Option<Arc<ConnectHandler>>>,
    connection: RwLock<Option<Arc<ConnectionHandler>>>,
    events: RwLock<HashMap<String, Arc<EventHandler>>>,
    any: RwLock<Option<Arc<AnyEventHandler>>>,
    disconnecting: RwLock<Option<Arc<DisconnectHandler>>>,
    disconnect: RwLock<Option<Arc<DisconnectHandler>>>,
    server_side: RwLock<Option<Arc<ServerSideHandler>>>,
}

impl Handlers {
    pub(crate) fn connect(&self, request: ConnectRequest) {
        let handler = self.connect.read().clone();
        match handler {
            Some(h) => h(request),
            None => drop(request), // accepts
        }
    }

    pub(crate) fn connection(&self, socket: &Arc<Socket>) {
        let handler = self.connection.read().clone();
        if let Some(h) = handler {
            h(socket);
        }
    }

    pub(crate) fn event(&self, socket: &Arc<Socket>, event: &str, payload: Payload, ack: Option<AckSender>) {
        let handler = self.events.read().get(event).cloned();
        if let Some(h) = handler {
            h(socket, payload, ack);
            return;
        }
        let any = self.any.read().clone();
        if let Some(h) = any {
            h(socket, event, payload, ack);
        }
    }

    pub(crate) fn disconnecting(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        let handler = self.disconnecting.read().clone();
        if let Some(h) = handler {
            h(socket, reason);
        }
    }

    pub(crate) fn disconnect(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        let handler = self.disconnect.read().clone();
        if let Some(h) = handler {
            h(socket, reason);
        }
    }

    pub(crate) fn server_side(&self, nsp: &Namespace, event: &str, payload: Payload, reply: Option<ServerSideReply>) {
        let handler = self.server_side.read().clone();
        if let Some(h) = handler {
            h(nsp, event, payload, reply);
        }
    }
}

/// Broadcasts waiting for the end of a burst: the same selection, frames in
/// emit order.
struct Deferred {
    nsp: Arc<Namespace>,
    opts: BroadcastOptions,
    frames: Vec<Frame>,
}

impl burst::Deferred for Deferred {
    fn run(self: Box<Self>) {
        self.nsp.deliver(&self.frames, &self.opts);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A Socket.IO namespace.
pub struct Namespace {
    name: String,
    /// Created by a dynamic matcher (and forgotten again once empty).
    dynamic: bool,
    /// Sockets of this namespace that are pending or connected.
    pub(crate) live: AtomicUsize,
    pub(crate) handlers: Arc<Handlers>,
    sockets: RwLock<HashMap<Sid, Arc<Socket>, crate::sid::SidHasher>>,
    rooms: RoomIndex,
    adapter: Arc<dyn Adapter>,
    /// Ack ids of emits to this namespace's sockets: one counter, so that a
    /// broadcast with acks uses one id for every recipient.
    next_ack: AtomicU64,
    recovery: Option<RecoveryLog>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).finish()
    }
}

impl Namespace {
    pub(crate) fn new(name: &str, handlers: Arc<Handlers>, dynamic: bool, shared: Arc<Shared>) -> Arc<Namespace> {
        let nsp = Arc::new(Namespace {
            name: name.to_owned(),
            dynamic,
            live: AtomicUsize::new(0),
            handlers,
            sockets: RwLock::new(HashMap::default()),
            rooms: RoomIndex::new(),
            adapter: shared.adapter.create(name),
            next_ack: AtomicU64::new(0),
            recovery: shared.recovery.clone().map(RecoveryLog::new),
            shared,
        });
        if let Some(runtime) = nsp.runtime() {
            nsp.adapter.start(&nsp, &runtime);
        }
        nsp
    }

    /// Whether a dynamic matcher created this namespace.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// A namespace attached to no server: empty, for queries about a name
    /// that does not exist.
    pub(crate) fn detached(name: &str) -> Arc<Namespace> {
        Namespace::new(name, Arc::new(Handlers::default()), false, Arc::new(Shared::default()))
    }

    /// The namespace name (`/`, `/admin`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The adapter every broadcast and bulk operation goes through.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// Room membership on this node.
    pub fn room_index(&self) -> &RoomIndex {
        &self.rooms
    }

    /// The runtime of the running server.
    pub fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.shared.runtime.read().clone()
    }

    /// The connection state recovery log, when recovery is on.
    pub fn recovery(&self) -> Option<&RecoveryLog> {
        self.recovery.as_ref()
    }

    /// A fresh ack id for an emit to this namespace.
    pub(crate) fn next_ack_id(&self) -> u64 {
        self.next_ack.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets the handler that decides on new connections. Without one, every
    /// connection is accepted.
    pub fn on_connect(&self, handler: impl Fn(ConnectRequest) + Send + Sync + 'static) {
        *self.handlers.connect.write() = Some(Arc::new(handler));
    }

    /// Sets the handler run after a connection is accepted.
    pub fn on_connection(&self, handler: impl Fn(&Arc<Socket>) + Send + Sync + 'static) {
        *self.handlers.connection.write() = Some(Arc::new(handler));
    }

    /// Sets the handler of one event name.
    pub fn on(&self, event: &str, handler: impl Fn(&Arc<Socket>, Payload, Option<AckSender>) + Send + Sync + 'static) {
        self.handlers.events.write().insert(event.to_owned(), Arc::new(handler));
    }

    /// Removes the handler of one event name.
    pub fn off(&self, event: &str) {
        self.handlers.events.write().remove(event);
    }

    /// Sets the handler of every event without a handler of its own.
    pub fn on_any(&self, handler: impl Fn(&Arc<Socket>, &str, Payload, Option<AckSender>) + Send + Sync + 'static) {
        *self.handlers.any.write() = Some(Arc::new(handler));
    }

    /// Sets the handler run just before a socket leaves (its rooms still known).
    pub fn on_disconnecting(&self, handler: impl Fn(&Arc<Socket>, DisconnectReason) + Send + Sync + 'static) {
        *self.handlers.disconnecting.write() = Some(Arc::new(handler));
    }

    /// Sets the handler run after a socket left.
    pub fn on_disconnect(&self, handler: impl Fn(&Arc<Socket>, DisconnectReason) + Send + Sync + 'static) {
        *self.handlers.disconnect.write() = Some(Arc::new(handler));
    }

    /// Sets the handler of events other servers emit to this namespace
    /// (`server_side_emit` on another node).
    pub fn on_server_side_emit(
        &self,
        handler: impl Fn(&Namespace, &str, Payload, Option<ServerSideReply>) + Send + Sync + 'static,
    ) {
        *self.handlers.server_side.write() = Some(Arc::new(handler));
    }

    /// Removes the server-side emit handler.
    pub fn off_server_side_emit(&self) {
        *self.handlers.server_side.write() = None;
    }

    /// For adapters: runs this node's server-side emit handler.
    pub fn handle_server_side_emit(&self, event: &str, payload: Payload, reply: Option<ServerSideReply>) {
        self.handlers.server_side(self, event, payload, reply);
    }

    pub(crate) fn insert(&self, socket: Arc<Socket>) {
        self.sockets.write().insert(socket.id(), socket);
    }

    pub(crate) fn remove(&self, sid: Sid) {
        self.sockets.write().remove(&sid);
    }

    /// A connected socket by id.
    pub fn socket(&self, sid: Sid) -> Option<Arc<Socket>> {
        self.sockets.read().get(&sid).cloned()
    }

    /// A connected socket by id given as text.
    pub fn socket_by_str(&self, sid: &str) -> Option<Arc<Socket>> {
        Sid::parse(sid).and_then(|s| self.socket(s))
    }

    /// Every connected socket.
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.sockets.read().values().cloned().collect()
    }

    /// How many sockets are connected.
    pub fn socket_count(&self) -> usize {
        self.sockets.read().len()
    }

    /// Calls `f` for each connected socket a selection reaches, under the
    /// namespace's locks (read): `f` must not join, leave or disconnect.
    pub(crate) fn for_each_recipient(&self, opts: &BroadcastOptions, f: &mut dyn FnMut(&Arc<Socket>)) {
        let sockets = self.sockets.read();
        self.rooms.for_each_recipient(opts, &mut |sid| {
            if let Some(s) = sockets.get(&sid) {
                f(s);
            }
        });
    }

    /// The local sockets a selection reaches.
    pub(crate) fn resolve(&self, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        let sids = self.rooms.recipients(opts);
        let sockets = self.sockets.read();
        sids.iter().filter_map(|sid| sockets.get(sid).cloned()).collect()
    }

    /// Queues frames for every selected local socket; how many it reached.
    fn deliver(&self, frames: &[Frame], opts: &BroadcastOptions) -> usize {
        // What was deferred goes first (and not under these locks).
        burst::flush();
        let mut reached = 0;
        // Queueing takes only each session's own lock and never closes a
        // session on the spot, so the room can be walked under its locks.
        self.for_each_recipient(opts, &mut |socket| {
            if !socket.connected() {
                return;
            }
            let sent = if opts.flags.volatile {
                socket.client.session.send_volatile(frames)
            } else {
                socket.client.session.send_frames(frames)
            };
            reached += usize::from(sent);
        });
        reached
    }

    // ---- this node's side of the adapter's operations ----------------------

    /// Emits `packet` to the selected sockets of this node.
    ///
    /// Called while the server handles a burst of messages from one
    /// connection (a handler of the Rust API), the packet is queued when the
    /// burst ends or before anything else reaches a client, whichever comes
    /// first; consecutive broadcasts to the same selection are then queued
    /// together, walking the rooms once.
    ///
    /// With connection state recovery on, a packet without an ack id that
    /// is not volatile gets an offset as its last argument and is stored;
    /// it is delivered at once, under the log's lock, so that a recovering
    /// socket gets it exactly once (in its replay, or live). Not so when the
    /// adapter keeps the recovery log itself: it stores the packets it means
    /// to and delivers them with [`local_broadcast_with_offset`](Self::local_broadcast_with_offset).
    pub fn local_broadcast(self: &Arc<Self>, packet: &EventPacket, opts: &BroadcastOptions) {
        if let Some(log) = &self.recovery {
            if packet.id.is_none() && !opts.flags.volatile && !self.adapter.keeps_recovery_log() {
                let mut append = log.append();
                let mut stored = packet.clone();
                stored.payload.args.push(serde_json::Value::String(append.offset_text()));
                let frames = stored.frames(&self.name);
                append.store(opts, &frames);
                self.deliver(&frames, opts);
                return;
            }
        }
        let frames = packet.frames(&self.name);
        if opts.flags.volatile || !burst::active() {
            self.deliver(&frames, opts);
            return;
        }
        let frames = std::cell::Cell::new(Some(frames));
        burst::defer(
            |pending| match pending.downcast_mut::<Deferred>() {
                Some(d) if Arc::ptr_eq(&d.nsp, self) && d.opts == *opts => {
                    d.frames.extend(frames.take().unwrap_or_default());
                    true
                }
                _ => false,
            },
            || Box::new(Deferred { nsp: self.clone(), opts: opts.clone(), frames: frames.take().unwrap_or_default() }),
        );
    }

    /// For an adapter that keeps the recovery log itself: emits `packet`,
    /// stored under `offset`, to the selected sockets of this node at once,
    /// the offset appended to its arguments (the client sends back the last
    /// one it saw when it recovers).
    pub fn local_broadcast_with_offset(&self, packet: &EventPacket, opts: &BroadcastOptions, offset: &str) {
        let mut stored = packet.clone();
        stored.payload.args.push(serde_json::Value::String(offset.to_owned()));
        self.deliver(&stored.frames(&self.name), opts);
    }

    /// Emits `packet` (with its ack id) to the selected sockets of this
    /// node, registering each recipient's ack with `acks`, then reports how
    /// many it reached.
    pub fn local_broadcast_with_ack(&self, packet: &EventPacket, opts: &BroadcastOptions, acks: &Arc<BroadcastAcks>) {
        let Some(id) = packet.id else {
            acks.add_clients(0);
            return;
        };
        let frames = packet.frames(&self.name);
        burst::flush();
        let mut reached = 0;
        self.for_each_recipient(opts, &mut |socket| {
            if !socket.connected() {
                return;
            }
            let collector = acks.clone();
            socket.register_ack(
                id,
                Box::new(move |result| match result {
                    Ok(payload) => collector.reply(payload),
                    Err(_) => collector.gone(),
                }),
            );
            acks.track(socket, id);
            if socket.client.session.send_frames(&frames) {
                reached += 1;
            } else {
                socket.forget_ack(id);
            }
        });
        acks.add_clients(reached);
    }

    /// The selected sockets of this node, as bulk queries report them.
    pub fn local_fetch_sockets(&self, opts: &BroadcastOptions) -> Vec<SocketInfo> {
        self.resolve(opts).iter().map(|s| SocketInfo::of(s)).collect()
    }

    /// Makes the selected sockets of this node join `rooms`.
    pub fn local_add_sockets(&self, opts: &BroadcastOptions, rooms: &[String]) {
        let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
        for s in self.resolve(opts) {
            s.join_many(&rooms);
        }
    }

    /// Makes the selected sockets of this node leave `rooms`.
    pub fn local_del_sockets(&self, opts: &BroadcastOptions, rooms: &[String]) {
        for s in self.resolve(opts) {
            for room in rooms {
                s.leave(room);
            }
        }
    }

    /// Disconnects the selected sockets of this node.
    pub fn local_disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        for s in self.resolve(opts) {
            s.disconnect(close);
        }
    }

    // ---- the namespace's API -----------------------------------------------

    /// A broadcast to one room.
    pub fn to(self: &Arc<Self>, room: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).to(room)
    }

    /// A broadcast to everyone except a room.
    pub fn except(self: &Arc<Self>, room: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).except(room)
    }

    /// A broadcast to everyone in the namespace.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone())
    }

    /// A selection given whole.
    pub fn select(self: &Arc<Self>, opts: BroadcastOptions) -> BroadcastOperator {
        BroadcastOperator::with_options(self.clone(), opts)
    }

    /// Emits to every socket in the namespace.
    pub fn emit(self: &Arc<Self>, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        self.broadcast().emit(event, payload)
    }

    /// The sockets of this node in a room.
    pub fn room_sockets(&self, room: &str) -> Vec<Arc<Socket>> {
        self.resolve(&BroadcastOptions { rooms: vec![room.to_owned()], ..BroadcastOptions::default() })
    }

    /// Every room with members on this node.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.rooms()
    }

    /// Every room with members on every node (through the adapter).
    pub fn all_rooms(self: &Arc<Self>, done: impl FnOnce(Vec<String>) + Send + 'static) {
        self.adapter.all_rooms(self, Box::new(done));
    }

    /// Emits an event to the handlers of this namespace on the other
    /// servers (see [`on_server_side_emit`](Self::on_server_side_emit)).
    pub fn server_side_emit(self: &Arc<Self>, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        let packet = EventPacket { event: event.to_owned(), payload, id: None };
        self.adapter.server_side_emit(self, &packet, None);
        Ok(())
    }

    /// Like [`server_side_emit`](Self::server_side_emit), and collects every
    /// server's reply within `timeout`; `done` runs once.
    pub fn server_side_emit_with_ack(
        self: &Arc<Self>,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
        done: impl FnOnce(BroadcastAckResult) + Send + 'static,
    ) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        let packet = EventPacket { event: event.to_owned(), payload, id: Some(self.next_ack_id()) };
        let acks = BroadcastAcks::new(Some(timeout), self.runtime().as_ref(), done);
        self.adapter.server_side_emit(self, &packet, Some(&acks));
        Ok(())
    }
}
