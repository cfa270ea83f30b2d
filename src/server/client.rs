//! One Engine.IO session seen from Socket.IO: decodes its packets (joining
//! binary attachments to their packet), routes them to the namespace
//! sockets it multiplexes, and closes it on protocol violations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;

use super::ServerInner;
use super::adapter::RestoredSession;
use super::namespace::Namespace;
use super::payload::Payload;
use super::socket::{AckSender, ConnectRequest, DisconnectReason, Socket};
use crate::engine::{CloseReason, EngineHandler, Message, Session, SessionHandler};
use crate::protocol::socketio::{self, Packet, PacketKind};

struct PartialPacket {
    packet: Packet,
    binary: Vec<Bytes>,
}

/// The Socket.IO side of one connection.
pub(crate) struct Client {
    server: Arc<ServerInner>,
    pub(crate) session: Arc<Session>,
    pub(crate) runtime: tokio::runtime::Handle,
    sockets: Mutex<HashMap<String, Arc<Socket>>>,
    /// Namespaces whose CONNECT waits for the adapter to restore a session.
    restoring: Mutex<HashSet<String>>,
    partial: Mutex<Option<PartialPacket>>,
    joined: AtomicBool,
}

impl Client {
    fn on_text(self: &Arc<Self>, text: &str) {
        if self.partial.lock().is_some() {
            // A text packet while attachments are still expected.
            self.session.close(CloseReason::ForcedClose);
            return;
        }
        match socketio::decode(text, self.server.options.max_attachments) {
            Ok(packet) if packet.attachments > 0 => {
                // Grown as attachments arrive: the count is only the client's word.
                *self.partial.lock() = Some(PartialPacket { binary: Vec::new(), packet });
            }
            Ok(packet) => self.dispatch(packet, Vec::new()),
            Err(e) => {
                tracing::debug!(sid = %self.session.sid(), "invalid packet: {e}");
                self.session.close(CloseReason::ForcedClose);
            }
        }
    }

    fn on_binary(self: &Arc<Self>, data: Bytes) {
        let complete = {
            let mut partial = self.partial.lock();
            match partial.as_mut() {
                None => None,
                Some(p) => {
                    p.binary.push(data);
                    if p.binary.len() == p.packet.attachments {
                        partial.take()
                    } else {
                        return;
                    }
                }
            }
        };
        match complete {
            Some(mut p) => {
                // Handlers get placeholders and attachments paired one to one.
                let bound = match p.packet.data.as_mut() {
                    Some(Value::Array(args)) => socketio::bind_attachments(args, p.binary),
                    _ => None,
                };
                match bound {
                    Some(binary) => self.dispatch(p.packet, binary),
                    None => self.session.close(CloseReason::ForcedClose),
                }
            }
            // Binary data nobody announced.
            None => self.session.close(CloseReason::ForcedClose),
        }
    }

    fn dispatch(self: &Arc<Self>, packet: Packet, binary: Vec<Bytes>) {
        if packet.kind == PacketKind::Connect {
            self.connect(packet);
            return;
        }
        let socket = self.sockets.lock().get(&packet.nsp).cloned();
        let Some(socket) = socket else {
            // Only CONNECT may open a namespace.
            self.session.close(CloseReason::ForcedClose);
            return;
        };
        if socket.is_pending() {
            return;
        }
        match packet.kind {
            PacketKind::Event | PacketKind::BinaryEvent => {
                let Some(Value::Array(mut data)) = packet.data else {
                    return;
                };
                if data.is_empty() {
                    return;
                }
                let name = match data.remove(0) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let ack = packet.id.map(|id| AckSender::new(socket.clone(), id));
                let payload = Payload { args: data, binary };
                socket.nsp.handlers.event(&socket, &name, payload, ack);
            }
            PacketKind::Ack | PacketKind::BinaryAck => {
                let (Some(id), Some(Value::Array(args))) = (packet.id, packet.data) else {
                    return;
                };
                socket.on_ack(id, Payload { args, binary });
            }
            PacketKind::Disconnect => socket.on_close(DisconnectReason::ClientNamespaceDisconnect),
            PacketKind::Connect | PacketKind::ConnectError => self.session.close(CloseReason::ForcedClose),
        }
    }

    fn connect(self: &Arc<Self>, packet: Packet) {
        if self.sockets.lock().contains_key(&packet.nsp) || self.restoring.lock().contains(&packet.nsp) {
            // A second CONNECT to a namespace already joined (or joining).
            self.session.close(CloseReason::ForcedClose);
            return;
        }
        let Some(nsp) = self.server.namespace_for_socket(&packet.nsp) else {
            self.session.send(socketio::encode_connect_error(&packet.nsp, "Invalid namespace", None));
            return;
        };
        let auth = packet.data.unwrap_or_else(|| Value::Object(Default::default()));
        // A client coming back with the private id of a dropped socket: the
        // adapter takes its session back, perhaps later (from a store other
        // nodes share), and the CONNECT is answered then.
        let pid = nsp.recovery().and(auth.get("pid").and_then(Value::as_str)).map(str::to_owned);
        let Some(pid) = pid else {
            self.open(nsp, packet.nsp, auth, None);
            return;
        };
        let offset = auth.get("offset").and_then(Value::as_str).map(str::to_owned);
        self.restoring.lock().insert(packet.nsp.clone());
        let adapter = nsp.adapter().clone();
        let (client, target, name) = (self.clone(), nsp.clone(), packet.nsp);
        let open = Box::new(move |restored| client.open(target, name, auth, restored));
        adapter.restore_session(&nsp, &pid, offset.as_deref(), open);
    }

    /// Opens the socket of namespace `name` for this connection, restored
    /// or new, and asks the connect handler (unless a restored socket skips
    /// it).
    fn open(self: &Arc<Self>, nsp: Arc<Namespace>, name: String, auth: Value, restore: Option<RestoredSession>) {
        let skip_middlewares = restore.is_some() && nsp.recovery().is_some_and(|log| log.options().skip_middlewares);
        let socket = Socket::new(nsp.clone(), self.clone(), auth, restore);
        {
            let mut sockets = self.sockets.lock();
            self.restoring.lock().remove(&name);
            // Closed while the session was being restored: `on_close` has
            // drained the table already (the closed mark is set first).
            if self.session.is_closed() {
                drop(sockets);
                self.server.socket_left(&nsp);
                return;
            }
            sockets.insert(name, socket.clone());
        }
        if skip_middlewares {
            if socket.accept() {
                nsp.handlers.connection(&socket);
            }
            return;
        }
        nsp.handlers.connect(ConnectRequest::new(socket));
    }

    /// A socket of this connection is gone for good.
    pub(crate) fn socket_left(&self, socket: &Socket) {
        self.server.socket_left(socket.namespace());
    }

    /// Removes a socket from this connection's table.
    pub(crate) fn forget(&self, socket: &Arc<Socket>) {
        let mut sockets = self.sockets.lock();
        if let Some(s) = sockets.get(socket.namespace().name()) {
            if Arc::ptr_eq(s, socket) {
                sockets.remove(socket.namespace().name());
            }
        }
    }

    /// Disconnects every socket of the connection, then closes it.
    pub(crate) fn disconnect_all(self: &Arc<Self>) {
        let sockets: Vec<Arc<Socket>> = self.sockets.lock().values().cloned().collect();
        for s in sockets {
            s.disconnect(false);
        }
        self.session.close(CloseReason::ForcedServerClose);
    }

    fn on_close(&self, reason: CloseReason) {
        *self.partial.lock() = None;
        let sockets: Vec<Arc<Socket>> = self.sockets.lock().drain().map(|(_, s)| s).collect();
        for s in sockets {
            s.on_close(reason.into());
        }
    }

    /// Records that a namespace was joined, which ends the connect timeout.
    pub(crate) fn mark_connected(&self) {
        self.joined.store(true, Ordering::Release);
    }
}

/// The engine's view of a [`Client`].
struct ClientHandle(Arc<Client>);

impl SessionHandler for ClientHandle {
    fn on_message(&self, _session: &Arc<Session>, message: Message) {
        match message {
            Message::Text(t) => self.0.on_text(&t),
            Message::Binary(b) => self.0.on_binary(b),
        }
    }

    fn on_close(&self, _session: &Arc<Session>, reason: CloseReason) {
        self.0.on_close(reason);
    }
}

/// Turns new Engine.IO sessions into Socket.IO clients.
pub(crate) struct SocketIoHandler {
    pub(crate) server: Arc<ServerInner>,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl EngineHandler for SocketIoHandler {
    fn on_open(&self, session: &Arc<Session>) -> Arc<dyn SessionHandler> {
        let client = Arc::new(Client {
            server: self.server.clone(),
            session: session.clone(),
            runtime: self.runtime.clone(),
            sockets: Mutex::new(HashMap::new()),
            restoring: Mutex::new(HashSet::new()),
            partial: Mutex::new(None),
            joined: AtomicBool::new(false),
        });
        // Close connections that join no namespace in time.
        let weak = Arc::downgrade(&client);
        let timeout = self.server.options.connect_timeout;
        self.runtime.spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(client) = weak.upgrade() {
                if !client.joined.load(Ordering::Acquire) {
                    client.session.close(CloseReason::ForcedClose);
                }
            }
        });
        Arc::new(ClientHandle(client))
    }
}
