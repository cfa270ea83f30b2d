//! Namespaces: the handlers registered for one, its sockets, its rooms.
//!
//! A namespace created by a dynamic matcher shares the handlers of the
//! matcher's template, so handlers registered once serve every namespace the
//! matcher accepts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use parking_lot::RwLock;

use super::adapter::{Adapter, BroadcastOptions, MemoryAdapter};
use super::broadcast::BroadcastOperator;
use super::payload::Payload;
use super::socket::{AckSender, ConnectRequest, DisconnectReason, EmitError, Socket};
use crate::Sid;

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

/// The handlers of a namespace (or of a dynamic namespace template).
#[derive(Default)]
pub struct Handlers {
    connect: RwLock<Option<Arc<ConnectHandler>>>,
    connection: RwLock<Option<Arc<ConnectionHandler>>>,
    events: RwLock<HashMap<String, Arc<EventHandler>>>,
    any: RwLock<Option<Arc<AnyEventHandler>>>,
    disconnecting: RwLock<Option<Arc<DisconnectHandler>>>,
    disconnect: RwLock<Option<Arc<DisconnectHandler>>>,
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
    adapter: Box<dyn Adapter>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).finish()
    }
}

impl Namespace {
    pub(crate) fn new(name: &str, handlers: Arc<Handlers>) -> Arc<Namespace> {
        Arc::new(Namespace {
            name: name.to_owned(),
            dynamic: false,
            live: AtomicUsize::new(0),
            handlers,
            sockets: RwLock::new(HashMap::default()),
            adapter: Box::new(MemoryAdapter::new()),
        })
    }

    pub(crate) fn new_dynamic(name: &str, handlers: Arc<Handlers>) -> Arc<Namespace> {
        Arc::new(Namespace {
            name: name.to_owned(),
            dynamic: true,
            live: AtomicUsize::new(0),
            handlers,
            sockets: RwLock::new(HashMap::default()),
            adapter: Box::new(MemoryAdapter::new()),
        })
    }

    /// Whether a dynamic matcher created this namespace.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// A namespace attached to no server: empty, for queries about a name
    /// that does not exist.
    pub(crate) fn detached(name: &str) -> Arc<Namespace> {
        Namespace::new(name, Arc::new(Handlers::default()))
    }

    /// The namespace name (`/`, `/admin`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room membership of this namespace.
    pub fn adapter(&self) -> &dyn Adapter {
        &*self.adapter
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

    /// Calls `f` for each connected socket a broadcast reaches, under the
    /// namespace's locks (read): `f` must not join, leave or disconnect.
    pub(crate) fn for_each_recipient(&self, opts: &BroadcastOptions, f: &mut dyn FnMut(&Arc<Socket>)) {
        let sockets = self.sockets.read();
        self.adapter.for_each_recipient(opts, &mut |sid| {
            if let Some(s) = sockets.get(&sid) {
                f(s);
            }
        });
    }

    pub(crate) fn resolve(&self, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        let sids = self.adapter.recipients(opts);
        let sockets = self.sockets.read();
        sids.iter().filter_map(|sid| sockets.get(sid).cloned()).collect()
    }

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

    /// Emits to every socket in the namespace.
    pub fn emit(self: &Arc<Self>, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        self.broadcast().emit(event, payload)
    }

    /// The sockets in a room.
    pub fn room_sockets(&self, room: &str) -> Vec<Arc<Socket>> {
        self.resolve(&BroadcastOptions { rooms: vec![room.to_owned()], ..BroadcastOptions::default() })
    }

    /// Every room with members.
    pub fn rooms(&self) -> Vec<String> {
        self.adapter.rooms()
    }
}
