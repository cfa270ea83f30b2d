//! The Redis pub/sub adapter: what a node does for `@socket.io/redis-adapter`
//! 8.3's protocol — publish its broadcasts and requests, act on those of
//! the other nodes, and gather their answers.
//!
//! One [`RedisAdapterFactory`] per server holds the node's id, the Redis
//! connections (opened when the server starts) and the routing of incoming
//! channels to namespaces; each namespace has its own [`NspAdapter`].
//!
//! Every operation acts on this node at once, through the namespace's
//! `local_*` operations, and is forwarded to the other nodes unless the
//! selection is `local` or Redis is not connected. Incoming broadcasts go
//! through `local_broadcast` too, so with connection state recovery on they
//! get offsets and are stored like this node's own.
//!
//! Requests that wait for answers (fetching sockets, all rooms, server-side
//! emits with acks, broadcasts with acks) first ask Redis how many nodes
//! listen on the namespace's request channel (`PUBSUB NUMSUB`), then wait
//! for that many answers, at most the requests timeout (or the emit's own
//! timeout), and complete with what arrived.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::RedisAdapter;
use super::connection::{Incoming, Link, start_error};
use super::requests::{FetchDone, Gather, Requests, RoomsDone, Waiting, first_argument};
use super::wire::{self, Channels, RequestType};
use crate::server::{
    Adapter, AdapterFactory, BroadcastAcks, BroadcastOptions, EventPacket, Namespace, Payload, ServerSideReply,
};

/// What a subscribed channel is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A broadcast pattern (`key#nsp#*`).
    Broadcast,
    /// The request channel.
    Request,
    /// A response channel (shared or this node's own).
    Response,
}

struct Route {
    kind: Kind,
    adapter: Weak<NspAdapter>,
}

/// What every namespace adapter of one server shares.
struct Shared {
    config: RedisAdapter,
    /// This node's id on the wire.
    uid: String,
    /// Subscribed channel or pattern → the namespace adapter it serves.
    routes: RwLock<HashMap<String, Route>>,
    /// The Redis connections, while the server runs.
    link: RwLock<Option<Arc<Link>>>,
}

impl Shared {
    fn link(&self) -> Option<Arc<Link>> {
        self.link.read().clone()
    }

    /// Hands an incoming message to the namespace adapter its channel
    /// belongs to.
    fn dispatch(&self, message: Incoming) {
        let (key, channel, payload) = match &message {
            Incoming::Message { channel, payload } => (channel, channel, payload),
            Incoming::PatternMessage { pattern, channel, payload } => (pattern, channel, payload),
        };
        let (kind, adapter) = {
            let routes = self.routes.read();
            let Some(route) = routes.get(key.as_str()) else {
                return;
            };
            (route.kind, route.adapter.upgrade())
        };
        let Some(adapter) = adapter else {
            return;
        };
        match kind {
            Kind::Broadcast => adapter.on_broadcast(channel, payload),
            Kind::Request => adapter.on_request(payload),
            Kind::Response => adapter.on_response(payload),
        }
    }

    /// Every subscription of every namespace: (channels, patterns).
    fn subscriptions(&self) -> (Vec<String>, Vec<String>) {
        let routes = self.routes.read();
        let mut channels = Vec::new();
        let mut patterns = Vec::new();
        for (name, route) in routes.iter() {
            match route.kind {
                Kind::Broadcast => patterns.push(name.clone()),
                _ => channels.push(name.clone()),
            }
        }
        (channels, patterns)
    }
}

/// The Redis pub/sub adapter of one server: makes the adapter of each
/// namespace, and connects to Redis when the server starts. Made by
/// [`RedisAdapter::build`].
pub struct RedisAdapterFactory {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisAdapterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapterFactory")
            .field("url", &self.shared.config.url)
            .field("key", &self.shared.config.key)
            .field("uid", &self.shared.uid)
            .finish()
    }
}

impl RedisAdapterFactory {
    pub(crate) fn new(config: RedisAdapter) -> RedisAdapterFactory {
        RedisAdapterFactory {
            shared: Arc::new(Shared {
                config,
                uid: wire::random_id(),
                routes: RwLock::new(HashMap::new()),
                link: RwLock::new(None),
            }),
        }
    }

    /// This node's id on the wire.
    pub fn uid(&self) -> &str {
        &self.shared.uid
    }

    /// Whether this node is connected to Redis now: its server runs and
    /// Redis answered the last check (every half second). While it is not,
    /// the node serves its own clients only.
    pub fn connected(&self) -> bool {
        self.shared.link().is_some_and(|link| link.healthy())
    }

    /// The settings.
    pub fn config(&self) -> &RedisAdapter {
        &self.shared.config
    }
}

impl AdapterFactory for RedisAdapterFactory {
    fn create(&self, nsp: &str) -> Arc<dyn Adapter> {
        let shared = self.shared.clone();
        Arc::new_cyclic(|me| NspAdapter {
            me: me.clone(),
            channels: Channels::new(&shared.config.key, nsp, &shared.uid),
            name: nsp.to_owned(),
            namespace: RwLock::new(Weak::new()),
            requests: Requests::new(nsp),
            shared,
        })
    }

    fn start(&self, runtime: &tokio::runtime::Handle) -> io::Result<()> {
        let url = self.shared.config.url.clone();
        if self.shared.link.read().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Redis adapter: already serving a running server (each server needs its own adapter)",
            ));
        }
        let (incoming, mut messages) = mpsc::unbounded_channel();
        let (done, result) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        let connect_timeout = self.shared.config.connect_timeout;
        runtime.spawn(async move {
            let connected = async {
                let link = Link::connect(&shared.config.url, connect_timeout, incoming).await?;
                let (channels, patterns) = shared.subscriptions();
                link.subscribe(&channels, &patterns).await?;
                Ok::<_, redis::RedisError>(link)
            };
            let _ = done.send(connected.await);
        });
        // Waits on the starting thread (a host thread, not a network one).
        let link = match result.recv_timeout(connect_timeout * 3 + Duration::from_secs(1)) {
            Ok(Ok(link)) => link,
            Ok(Err(e)) => return Err(start_error("Redis adapter", &url, e)),
            Err(_) => return Err(start_error("Redis adapter", &url, "timed out")),
        };
        let shared = self.shared.clone();
        let dispatcher = runtime.spawn(async move {
            while let Some(message) = messages.recv().await {
                shared.dispatch(message);
            }
        });
        link.adopt(dispatcher.abort_handle());
        *self.shared.link.write() = Some(link);
        tracing::debug!(redis = %url, uid = %self.shared.uid, "Redis adapter connected");
        Ok(())
    }

    fn stop(&self) {
        if let Some(link) = self.shared.link.write().take() {
            link.close();
        }
    }
}

/// The adapter of one namespace.
pub(crate) struct NspAdapter {
    me: Weak<NspAdapter>,
    shared: Arc<Shared>,
    name: String,
    channels: Channels,
    namespace: RwLock<Weak<Namespace>>,
    requests: Arc<Requests>,
}

impl NspAdapter {
    fn link(&self) -> Option<Arc<Link>> {
        self.shared.link()
    }

    fn namespace(&self) -> Option<Arc<Namespace>> {
        self.namespace.read().upgrade()
    }

    fn uid(&self) -> &str {
        &self.shared.uid
    }

    fn routes(&self) -> [(String, Kind); 4] {
        [
            (self.channels.broadcast_pattern(), Kind::Broadcast),
            (self.channels.request.clone(), Kind::Request),
            (self.channels.response.clone(), Kind::Response),
            (self.channels.own_response.clone(), Kind::Response),
        ]
    }

    /// This namespace's subscriptions: (channels, patterns).
    fn subscriptions(&self) -> (Vec<String>, Vec<String>) {
        let mut channels = Vec::new();
        let mut patterns = Vec::new();
        for (name, kind) in self.routes() {
            if kind == Kind::Broadcast { patterns.push(name) } else { channels.push(name) }
        }
        (channels, patterns)
    }

    /// Sends a JSON message.
    fn publish_json(&self, link: &Link, channel: String, message: &Value) {
        link.publish(channel, message.to_string().into_bytes());
    }

    /// Answers a request from node `uid` (npm `publishResponse`).
    fn respond(&self, link: &Link, uid: Option<&str>, message: Vec<u8>) {
        link.publish(self.channels.response_to(uid, self.shared.config.specific_response_channel), message);
    }

    /// Whether a broadcast is a direct emit to one socket of this node (its
    /// own room, as connection state recovery sends them): nobody else
    /// holds that room, so it is not published.
    fn is_local_socket_room(nsp: &Namespace, opts: &BroadcastOptions) -> bool {
        match opts.rooms.as_slice() {
            [room] => nsp.socket_by_str(room).is_some(),
            _ => false,
        }
    }

    // ---- incoming -----------------------------------------------------------

    /// A broadcast from another node (or an emitter).
    fn on_broadcast(&self, channel: &str, payload: &[u8]) {
        let Some(nsp) = self.namespace() else {
            return;
        };
        if !channel.starts_with(self.channels.broadcast.as_str()) {
            return;
        }
        // A one-room broadcast for a room nobody here is in: not even decoded.
        if let Some(room) = self.channels.room_of(channel) {
            if !nsp.room_index().has_room(room) {
                return;
            }
        }
        let broadcast = match wire::decode_broadcast(payload) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(nsp = %self.name, "ignoring a broadcast: {e}");
                return;
            }
        };
        if broadcast.uid == self.uid() || broadcast.nsp != self.name {
            return;
        }
        nsp.local_broadcast(&broadcast.packet, &broadcast.opts);
    }

    /// A request from another node (or an emitter).
    fn on_request(&self, payload: &[u8]) {
        let (request, binary) = match wire::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(nsp = %self.name, "ignoring a request: {e}");
                return;
            }
        };
        let uid = wire::str_field(&request, "uid");
        if uid == Some(self.uid()) {
            // This node did its part when it sent the request.
            return;
        }
        let (Some(nsp), Some(link)) = (self.namespace(), self.link()) else {
            return;
        };
        let Some(kind) = RequestType::of(&request) else {
            tracing::debug!(nsp = %self.name, "ignoring a request of unknown type");
            return;
        };
        let request_id = wire::str_field(&request, "requestId");
        let opts = request.get("opts");
        match kind {
            RequestType::Sockets => {
                let Some(id) = request_id else { return };
                let selection =
                    BroadcastOptions { rooms: wire::rooms(request.get("rooms")), ..BroadcastOptions::default() };
                let sockets: Vec<String> =
                    nsp.room_index().recipients(&selection).iter().map(ToString::to_string).collect();
                let answer = json!({ "requestId": id, "sockets": sockets });
                self.respond(&link, uid, answer.to_string().into_bytes());
            }
            RequestType::AllRooms => {
                let Some(id) = request_id else { return };
                let answer = json!({ "requestId": id, "rooms": nsp.rooms() });
                self.respond(&link, uid, answer.to_string().into_bytes());
            }
            RequestType::RemoteJoin | RequestType::RemoteLeave => {
                let join = kind == RequestType::RemoteJoin;
                if opts.is_some() {
                    let selection = wire::opts_from(opts);
                    let rooms = wire::rooms(request.get("rooms"));
                    if join {
                        nsp.local_add_sockets(&selection, &rooms);
                    } else {
                        nsp.local_del_sockets(&selection, &rooms);
                    }
                    return;
                }
                // The older form: one socket, one room, answered.
                let sid = wire::str_field(&request, "sid");
                let room = request.get("room").and_then(|r| wire::rooms(Some(&json!([r]))).pop());
                let (Some(socket), Some(room)) = (sid.and_then(|s| nsp.socket_by_str(s)), room) else {
                    return;
                };
                if join {
                    socket.join(&room);
                } else {
                    socket.leave(&room);
                }
                self.respond(&link, uid, json!({ "requestId": request_id }).to_string().into_bytes());
            }
            RequestType::RemoteDisconnect => {
                let close = request.get("close").and_then(Value::as_bool).unwrap_or(false);
                if opts.is_some() {
                    nsp.local_disconnect_sockets(&wire::opts_from(opts), close);
                    return;
                }
                let Some(socket) = wire::str_field(&request, "sid").and_then(|s| nsp.socket_by_str(s)) else {
                    return;
                };
                socket.disconnect(close);
                self.respond(&link, uid, json!({ "requestId": request_id }).to_string().into_bytes());
            }
            RequestType::RemoteFetch => {
                let Some(id) = request_id else { return };
                let sockets: Vec<Value> =
                    nsp.local_fetch_sockets(&wire::opts_from(opts)).iter().map(wire::socket_to_json).collect();
                let answer = json!({ "requestId": id, "sockets": sockets });
                self.respond(&link, uid, answer.to_string().into_bytes());
            }
            RequestType::ServerSideEmit => self.on_server_side_emit(&nsp, &link, &request),
            RequestType::Broadcast => {
                let Some(id) = request_id else { return };
                let Some((_, mut packet)) = request.get("packet").and_then(|p| wire::packet_from(p, binary)) else {
                    return;
                };
                packet.id = Some(nsp.next_ack_id());
                let to = self.channels.response_to(uid, self.shared.config.specific_response_channel);
                let (counts, replies) = (Arc::downgrade(&link), Arc::downgrade(&link));
                let (count_to, reply_to) = (to.clone(), to);
                let (count_id, reply_id) = (id.to_owned(), id.to_owned());
                let acks = BroadcastAcks::forwarding(
                    wire::timeout_from(opts),
                    Some(link.runtime()),
                    move |n| {
                        if let Some(link) = counts.upgrade() {
                            let count = json!({ "type": RequestType::BroadcastClientCount as u8, "requestId": count_id, "clientCount": n });
                            link.publish(count_to.clone(), count.to_string().into_bytes());
                        }
                    },
                    move |reply| {
                        if let Some(link) = replies.upgrade() {
                            link.publish(reply_to.clone(), wire::encode_broadcast_ack(&reply_id, &reply));
                        }
                    },
                );
                nsp.local_broadcast_with_ack(&packet, &wire::opts_from(opts), &acks);
            }
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {}
        }
    }

    fn on_server_side_emit(&self, nsp: &Namespace, link: &Arc<Link>, request: &Value) {
        let Some(mut data) = request.get("data").and_then(Value::as_array).cloned() else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let event = match data.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let reply: Option<ServerSideReply> = wire::str_field(request, "requestId").map(|id| {
            let id = id.to_owned();
            let link = Arc::downgrade(link);
            // Replies go to the shared response channel, as npm nodes send them.
            let channel = self.channels.response.clone();
            Box::new(move |payload: Payload| {
                let first = payload.args.first().map_or(Value::Null, |a| wire::json_with_buffers(a, &payload.binary));
                if let Some(link) = link.upgrade() {
                    let answer = json!({ "type": RequestType::ServerSideEmit as u8, "requestId": id, "data": first });
                    link.publish(channel, answer.to_string().into_bytes());
                }
            }) as ServerSideReply
        });
        nsp.handle_server_side_emit(&event, Payload::new(data), reply);
    }

    /// An answer to one of this node's requests.
    fn on_response(&self, payload: &[u8]) {
        let Ok((response, binary)) = wire::decode(payload) else {
            tracing::debug!(nsp = %self.name, "ignoring a malformed response");
            return;
        };
        let Some(id) = wire::str_field(&response, "requestId") else {
            return;
        };
        // The answer's kind is the kind of the request waiting for it: only
        // broadcasts with acks get answers of two kinds, told by their type.
        let requests = &self.requests;
        match requests.waiting(id) {
            None => {}
            Some(Waiting::Acks) => match RequestType::of(&response) {
                Some(RequestType::BroadcastClientCount) => {
                    requests.client_count(id, response.get("clientCount").and_then(Value::as_u64).unwrap_or(0));
                }
                Some(RequestType::BroadcastAck) => requests.ack(id, first_argument(response.get("packet"), binary)),
                _ => {}
            },
            Some(Waiting::ServerSide) => requests.server_side_reply(id, first_argument(response.get("data"), binary)),
            Some(Waiting::Fetch) => requests.fetch_answer(id, wire::sockets(response.get("sockets"))),
            Some(Waiting::Rooms) => requests.rooms_answer(id, wire::rooms(response.get("rooms"))),
        }
    }
}

impl Adapter for NspAdapter {
    fn start(&self, nsp: &Arc<Namespace>, _runtime: &tokio::runtime::Handle) {
        *self.namespace.write() = Arc::downgrade(nsp);
        {
            let mut routes = self.shared.routes.write();
            for (name, kind) in self.routes() {
                routes.insert(name, Route { kind, adapter: self.me.clone() });
            }
        }
        // A namespace made while the server runs subscribes now; the others
        // subscribe when the connections open.
        self.sync_subscriptions();
    }

    fn stop(&self) {
        {
            let mut routes = self.shared.routes.write();
            for (name, _) in self.routes() {
                if routes.get(&name).is_some_and(|r| Weak::ptr_eq(&r.adapter, &self.me)) {
                    routes.remove(&name);
                }
            }
        }
        self.requests.stop();
        self.sync_subscriptions();
    }

    fn broadcast(&self, nsp: &Arc<Namespace>, packet: &EventPacket, opts: &BroadcastOptions) {
        nsp.local_broadcast(packet, opts);
        if opts.flags.local || Self::is_local_socket_room(nsp, opts) {
            return;
        }
        if let Some(link) = self.link() {
            let message = wire::encode_broadcast(self.uid(), &self.name, packet, opts);
            link.publish(self.channels.broadcast_to(&opts.rooms), message);
        }
    }

    fn broadcast_with_ack(
        &self,
        nsp: &Arc<Namespace>,
        packet: &EventPacket,
        opts: &BroadcastOptions,
        acks: &Arc<BroadcastAcks>,
    ) {
        let link = if opts.flags.local { None } else { self.link() };
        let Some(link) = link else {
            acks.expect_servers(1);
            nsp.local_broadcast_with_ack(packet, opts, acks);
            return;
        };
        let id = wire::random_id();
        // Registered before anything is sent, so no answer comes too early;
        // forgotten once complete, or when its timeout has passed.
        self.requests.acks(&id, acks);
        link.publish(
            self.channels.request.clone(),
            wire::encode_broadcast_request(self.uid(), &id, &self.name, packet, opts),
        );
        nsp.local_broadcast_with_ack(packet, opts, acks);
        let requests = Arc::downgrade(&self.requests);
        let acks = acks.clone();
        let timeout = opts.flags.timeout;
        let every = self.shared.config.requests_timeout;
        let request_channel = self.channels.request.clone();
        let asker = link.clone();
        link.runtime().spawn(async move {
            let servers = match asker.numsub(&request_channel).await {
                Ok(n) => n.max(1),
                Err(e) => {
                    tracing::debug!("broadcast with acks: cannot count the nodes: {e}");
                    1
                }
            };
            acks.expect_servers(servers);
            drop(asker);
            let poll = timeout.unwrap_or(every).min(Duration::from_millis(500));
            Requests::keep_until_done(requests, id, acks, poll).await;
        });
    }

    fn fetch_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, done: FetchDone) {
        let local = nsp.local_fetch_sockets(opts);
        let link = if opts.flags.local { None } else { self.link() };
        let Some(link) = link else {
            done(local);
            return;
        };
        let me = self.me.clone();
        let selection = wire::opts_to_json(opts);
        let asker = link.clone();
        link.runtime().spawn(async move {
            let Some(me) = me.upgrade() else {
                done(local);
                return;
            };
            let expected = match asker.numsub(&me.channels.request).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(nsp = %me.name, "fetch sockets: this node only, Redis unavailable: {e}");
                    1
                }
            };
            if expected <= 1 {
                done(local);
                return;
            }
            let id = wire::random_id();
            let request = json!({
                "uid": me.uid(),
                "requestId": id,
                "type": RequestType::RemoteFetch as u8,
                "opts": selection,
            });
            let gather = Gather::Sockets(local, done);
            me.requests.wait(asker.runtime(), &id, expected - 1, me.shared.config.requests_timeout, gather);
            me.publish_json(&asker, me.channels.request.clone(), &request);
        });
    }

    fn add_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[String]) {
        nsp.local_add_sockets(opts, rooms);
        self.forward_rooms(RequestType::RemoteJoin, opts, rooms);
    }

    fn del_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[String]) {
        nsp.local_del_sockets(opts, rooms);
        self.forward_rooms(RequestType::RemoteLeave, opts, rooms);
    }

    fn disconnect_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, close: bool) {
        nsp.local_disconnect_sockets(opts, close);
        if opts.flags.local {
            return;
        }
        if let Some(link) = self.link() {
            let request = json!({
                "uid": self.uid(),
                "type": RequestType::RemoteDisconnect as u8,
                "opts": wire::opts_to_json(opts),
                "close": close,
            });
            self.publish_json(&link, self.channels.request.clone(), &request);
        }
    }

    fn all_rooms(&self, nsp: &Arc<Namespace>, done: RoomsDone) {
        let local = nsp.rooms();
        let Some(link) = self.link() else {
            done(local);
            return;
        };
        let me = self.me.clone();
        let asker = link.clone();
        link.runtime().spawn(async move {
            let Some(me) = me.upgrade() else {
                done(local);
                return;
            };
            let expected = match asker.numsub(&me.channels.request).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(nsp = %me.name, "all rooms: this node only, Redis unavailable: {e}");
                    1
                }
            };
            if expected <= 1 {
                done(local);
                return;
            }
            let id = wire::random_id();
            let request = json!({ "uid": me.uid(), "requestId": id, "type": RequestType::AllRooms as u8 });
            let gather = Gather::Rooms(local, done);
            me.requests.wait(asker.runtime(), &id, expected - 1, me.shared.config.requests_timeout, gather);
            me.publish_json(&asker, me.channels.request.clone(), &request);
        });
    }

    fn server_side_emit(&self, _nsp: &Arc<Namespace>, packet: &EventPacket, acks: Option<&Arc<BroadcastAcks>>) {
        let Some(link) = self.link() else {
            if let Some(acks) = acks {
                acks.expect_servers(0);
            }
            return;
        };
        let data = wire::server_side_data(packet);
        let Some(acks) = acks else {
            let request = json!({ "uid": self.uid(), "type": RequestType::ServerSideEmit as u8, "data": data });
            self.publish_json(&link, self.channels.request.clone(), &request);
            return;
        };
        let this = self.me.clone();
        let acks = acks.clone();
        let asker = link.clone();
        link.runtime().spawn(async move {
            let Some(me) = this.upgrade() else {
                acks.expect_servers(0);
                return;
            };
            // Every node but this one answers.
            let others = match asker.numsub(&me.channels.request).await {
                Ok(n) => n.saturating_sub(1),
                Err(e) => {
                    tracing::warn!(nsp = %me.name, "server-side emit: Redis unavailable: {e}");
                    0
                }
            };
            if others == 0 {
                acks.expect_servers(0);
                return;
            }
            let id = wire::random_id();
            let request = json!({
                "uid": me.uid(),
                "requestId": id,
                "type": RequestType::ServerSideEmit as u8,
                "data": data,
            });
            // One "server" (the cluster) reporting one reply per other node.
            acks.expect_servers(1);
            acks.add_clients(others);
            me.requests.server_side(&id, &acks);
            me.publish_json(&asker, me.channels.request.clone(), &request);
            let poll = me.shared.config.requests_timeout.min(Duration::from_millis(500));
            let requests = Arc::downgrade(&me.requests);
            drop((me, asker));
            Requests::keep_until_done(requests, id, acks, poll).await;
        });
    }
}

impl NspAdapter {
    /// Makes Redis's subscriptions for this namespace's channels follow the
    /// routes (subscribed while some adapter of this name is started),
    /// whenever the change gets its turn.
    fn sync_subscriptions(&self) {
        let Some(link) = self.link() else {
            return;
        };
        let (channels, patterns) = self.subscriptions();
        let shared = self.shared.clone();
        let nsp = self.name.clone();
        let subscriber = link.clone();
        link.runtime().spawn(async move {
            let wanted = || patterns.first().is_some_and(|p| shared.routes.read().contains_key(p));
            if let Err(e) = subscriber.resubscribe(&channels, &patterns, wanted).await {
                tracing::warn!(nsp, "Redis adapter: cannot change subscriptions: {e}");
            }
        });
    }

    /// Sends a join or leave of the selected sockets to the other nodes.
    fn forward_rooms(&self, kind: RequestType, opts: &BroadcastOptions, rooms: &[String]) {
        if opts.flags.local {
            return;
        }
        if let Some(link) = self.link() {
            let request = json!({
                "uid": self.uid(),
                "type": kind as u8,
                "opts": wire::opts_to_json(opts),
                "rooms": rooms,
            });
            self.publish_json(&link, self.channels.request.clone(), &request);
        }
    }
}
