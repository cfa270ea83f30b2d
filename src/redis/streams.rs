//! The Redis streams adapter: what a node does for
//! `@socket.io/redis-streams-adapter` 0.3's protocol — write its broadcasts
//! and room operations to the stream and act on the other nodes' entries,
//! send its short-lived requests over pub/sub and answer the others', and
//! keep connection state recovery's sessions in Redis.
//!
//! One [`RedisStreamsAdapterFactory`] per server holds the node's id, the
//! Redis connections (opened when the server starts), the streams it reads
//! and the routing of entries and channels to namespaces; each namespace
//! has its own [`NspAdapter`].
//!
//! Every operation acts on this node at once, through the namespace's
//! `local_*` operations, and goes to the other nodes unless the selection is
//! `local` or Redis is not reachable — except a packet that connection
//! state recovery stores: it reaches this node's clients when the reader
//! reads it back, with its entry id as offset (see `stream_log`).
//!
//! Node counting, as in 0.3: the nodes serving a namespace are the
//! subscribers of its public channel (`PUBSUB NUMSUB`); 0.3 sends no
//! heartbeats, and the heartbeat messages of older adapters are ignored.
//! Requests wait for that many answers, at most their timeout, and complete
//! with what arrived.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::RedisStreamsAdapter;
use super::connection::{Incoming, Link, start_error};
use super::requests::{FetchDone, Gather, Requests, first_argument};
use super::stream_log::{self, Entry, StreamLog, StreamReplay, Write, Writer};
use super::streams_wire::{self as sw, Message, MessageType, StreamId};
use super::wire;
use crate::server::{
    Adapter, AdapterFactory, BroadcastAcks, BroadcastOptions, EventPacket, Namespace, Payload, RestoreDone,
    RestoredSession, SavedSession, ServerSideReply,
};

/// How many entries one `XRANGE` of a restore takes.
const RESTORE_PAGE: usize = 1000;
/// How often an emit with acks is looked at until it completes.
const KEEP_POLL: Duration = Duration::from_millis(100);

/// What a running server has of Redis.
struct Running {
    link: Arc<Link>,
    writer: RwLock<Option<Writer>>,
    /// Told when the writer has written everything queued before it stopped.
    finished: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    streams: HashMap<String, Arc<StreamLog>>,
}

impl Running {
    fn write(&self, write: Write) {
        match self.writer.read().as_ref() {
            Some(writer) => writer.write(write, &self.link),
            None => {
                if let Write::Add { fallback: Some(fallback), .. } = write {
                    fallback();
                }
            }
        }
    }
}

/// A session this node wrote, kept until it expires so that its data can
/// still be replaced (the C ABI sets a dropped socket's data after its
/// disconnect handler ran).
struct Persisted {
    session: SavedSession,
    key: String,
    expires: Instant,
}

/// What every namespace adapter of one server shares.
struct Shared {
    config: RedisStreamsAdapter,
    /// This node's id on the wire.
    uid: String,
    /// Namespace → its adapter, for stream entries.
    namespaces: RwLock<HashMap<String, Weak<NspAdapter>>>,
    /// Subscribed channel → the adapter it serves.
    channels: RwLock<HashMap<String, Weak<NspAdapter>>>,
    running: RwLock<Option<Arc<Running>>>,
    /// Socket id → the session written for it.
    persisted: Mutex<HashMap<String, Persisted>>,
}

impl Shared {
    fn running(&self) -> Option<Arc<Running>> {
        self.running.read().clone()
    }

    /// Hands a published message to the namespace adapter of its channel.
    fn dispatch(&self, message: Incoming) {
        let Incoming::Message { channel, payload } = message else {
            return;
        };
        let adapter = self.channels.read().get(&channel).and_then(Weak::upgrade);
        if let Some(adapter) = adapter {
            adapter.on_published(&payload);
        }
    }

    /// Entries read from a stream, in order.
    fn on_entries(&self, log: &StreamLog, entries: Vec<Entry>) {
        for (id, fields) in entries {
            let size = fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 64;
            let message = match Message::from_entry(fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))) {
                Ok(Some(m)) => m,
                Ok(None) => {
                    log.advance(id);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(stream = log.name(), %id, "ignoring an entry: {e}");
                    log.advance(id);
                    continue;
                }
            };
            let adapter = self.namespaces.read().get(&message.nsp).and_then(Weak::upgrade);
            match adapter {
                Some(adapter) => adapter.on_entry(log, id, message, size),
                None => log.advance(id),
            }
        }
    }

    /// Every channel of every namespace.
    fn subscriptions(&self) -> Vec<String> {
        self.channels.read().keys().cloned().collect()
    }

    /// The streams a node reads: the one, or every name the npm adapter's
    /// `hashCode(nsp) % count` can give (negative ones included).
    fn stream_names(&self) -> Vec<String> {
        let (name, count) = (&self.config.stream_name, self.config.stream_count);
        if count <= 1 {
            return vec![name.clone()];
        }
        let n = i64::from(count);
        (-(n - 1)..n).map(|i| format!("{name}-{i}")).collect()
    }
}

/// The Redis streams adapter of one server: makes the adapter of each
/// namespace, and connects to Redis when the server starts. Made by
/// [`RedisStreamsAdapter::build`].
pub struct RedisStreamsAdapterFactory {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisStreamsAdapterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamsAdapterFactory")
            .field("url", &self.shared.config.url)
            .field("stream", &self.shared.config.stream_name)
            .field("channels", &self.shared.config.channel_prefix)
            .field("uid", &self.shared.uid)
            .finish()
    }
}

impl RedisStreamsAdapterFactory {
    pub(crate) fn new(config: RedisStreamsAdapter) -> RedisStreamsAdapterFactory {
        RedisStreamsAdapterFactory {
            shared: Arc::new(Shared {
                config,
                uid: sw::random_id(),
                namespaces: RwLock::new(HashMap::new()),
                channels: RwLock::new(HashMap::new()),
                running: RwLock::new(None),
                persisted: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This node's id on the wire.
    pub fn uid(&self) -> &str {
        &self.shared.uid
    }

    /// Whether this node is connected to Redis now: its server runs and
    /// Redis answered the last check (every half second).
    pub fn connected(&self) -> bool {
        self.shared.running().is_some_and(|r| r.link.healthy())
    }

    /// The settings.
    pub fn config(&self) -> &RedisStreamsAdapter {
        &self.shared.config
    }
}

impl AdapterFactory for RedisStreamsAdapterFactory {
    fn create(&self, nsp: &str) -> Arc<dyn Adapter> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let stream = sw::stream_name(&config.stream_name, config.stream_count, nsp);
        let public = sw::public_channel(&config.channel_prefix, nsp);
        let private = sw::private_channel(&config.channel_prefix, nsp, &shared.uid);
        Arc::new_cyclic(|me| NspAdapter {
            me: me.clone(),
            name: nsp.to_owned(),
            stream,
            public,
            private,
            namespace: RwLock::new(Weak::new()),
            requests: Requests::new(nsp),
            shared,
        })
    }

    fn start(&self, runtime: &tokio::runtime::Handle) -> io::Result<()> {
        let url = self.shared.config.url.clone();
        if self.shared.running.read().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Redis streams adapter: already serving a running server (each server needs its own adapter)",
            ));
        }
        let (incoming, mut messages) = mpsc::unbounded_channel();
        let (done, result) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        let config = self.shared.config.clone();
        runtime.spawn(async move {
            let connected = async {
                let link = Link::connect(&config.url, config.connect_timeout, incoming).await?;
                link.subscribe(&shared.subscriptions(), &[]).await?;
                // Each stream is read from its newest entry on.
                let mut commands = link.commands();
                let mut streams = HashMap::new();
                for name in shared.stream_names() {
                    let last = stream_log::newest(&mut commands, &name).await?;
                    streams.insert(name.clone(), StreamLog::new(&name, last));
                }
                let mut readers = Vec::new();
                for log in streams.values() {
                    readers.push((log.clone(), link.dedicated(config.block_time + Duration::from_secs(5)).await?));
                }
                Ok::<_, redis::RedisError>((link, streams, readers))
            };
            let _ = done.send(connected.await);
        });
        let wait = self.shared.config.connect_timeout * 3 + Duration::from_secs(1);
        let (link, streams, readers) = match result.recv_timeout(wait) {
            Ok(Ok(connected)) => connected,
            Ok(Err(e)) => return Err(start_error("Redis streams adapter", &url, e)),
            Err(_) => return Err(start_error("Redis streams adapter", &url, "timed out")),
        };
        for (log, con) in readers {
            let shared = Arc::downgrade(&self.shared);
            let on_entries = move |log: &StreamLog, entries: Vec<Entry>| {
                if let Some(shared) = shared.upgrade() {
                    shared.on_entries(log, entries);
                }
            };
            let (count, block) = (self.shared.config.read_count, self.shared.config.block_time);
            let reader = runtime.spawn(stream_log::read_loop(log, con, count, block, on_entries));
            link.adopt(reader.abort_handle());
        }
        let shared = self.shared.clone();
        let dispatcher = runtime.spawn(async move {
            while let Some(message) = messages.recv().await {
                shared.dispatch(message);
            }
        });
        link.adopt(dispatcher.abort_handle());
        let (finished_tx, finished) = std::sync::mpsc::channel();
        let writer = Writer::start(&link, self.shared.config.max_len, finished_tx);
        *self.shared.running.write() = Some(Arc::new(Running {
            link,
            writer: RwLock::new(Some(writer)),
            finished: Mutex::new(Some(finished)),
            streams,
        }));
        tracing::debug!(redis = %url, uid = %self.shared.uid, "Redis streams adapter connected");
        Ok(())
    }

    fn stop(&self) {
        let Some(running) = self.shared.running.write().take() else {
            return;
        };
        // What was queued (the sessions of the sockets the server just
        // closed, last broadcasts) is written first, briefly.
        drop(running.writer.write().take());
        let finished = running.finished.lock().take();
        if let Some(finished) = finished {
            if tokio::runtime::Handle::try_current().is_err() && running.link.healthy() {
                let _ = finished.recv_timeout(Duration::from_secs(1));
            }
        }
        running.link.close();
        self.shared.persisted.lock().clear();
    }
}

/// The adapter of one namespace.
pub(crate) struct NspAdapter {
    me: Weak<NspAdapter>,
    shared: Arc<Shared>,
    name: String,
    /// The stream of this namespace's entries.
    stream: String,
    /// `<prefix>#<nsp>#`: requests to every node.
    public: String,
    /// `<prefix>#<nsp>#<uid>#`: answers for this node.
    private: String,
    namespace: RwLock<Weak<Namespace>>,
    requests: Arc<Requests>,
}

impl NspAdapter {
    fn namespace(&self) -> Option<Arc<Namespace>> {
        self.namespace.read().upgrade()
    }

    fn uid(&self) -> &str {
        &self.shared.uid
    }

    /// The connections, while the server runs and Redis answers.
    fn reachable(&self) -> Option<Arc<Running>> {
        self.shared.running().filter(|r| r.link.healthy())
    }

    fn message(&self, kind: MessageType, data: Value, binary: Vec<bytes::Bytes>) -> Message {
        Message::new(self.uid(), &self.name, kind, data, binary)
    }

    /// Writes a message to the namespace's stream.
    fn append(&self, running: &Running, message: &Message, fallback: Option<stream_log::Fallback>) {
        running.write(Write::Add { stream: self.stream.clone(), fields: message.to_entry(), fallback });
    }

    /// Publishes a request to every node of the namespace.
    fn publish(&self, running: &Running, message: &Message) {
        running.link.publish(self.public.clone(), message.to_msgpack());
    }

    /// Answers node `uid`'s request on its own channel.
    fn respond(&self, link: &Link, uid: &str, message: &Message) {
        let channel = sw::private_channel(&self.shared.config.channel_prefix, &self.name, uid);
        link.publish(channel, message.to_msgpack());
    }

    /// How many nodes serve this namespace, this one included.
    async fn server_count(&self, link: &Link) -> usize {
        match link.numsub(&self.public).await {
            Ok(n) => n.max(1),
            Err(e) => {
                tracing::warn!(nsp = %self.name, "cannot count the nodes, answering for this one only: {e}");
                1
            }
        }
    }

    // ---- incoming -----------------------------------------------------------

    /// An entry of the stream, in order.
    fn on_entry(&self, log: &StreamLog, id: StreamId, message: Message, size: usize) {
        let Some(nsp) = self.namespace() else {
            log.advance(id);
            return;
        };
        let own = message.uid == self.uid();
        if message.kind() == Some(MessageType::Broadcast) && message.request_id().is_none() {
            let Some((packet, opts)) = sw::broadcast_from(&message) else {
                log.advance(id);
                return;
            };
            // A packet recovery stores reaches every node's clients, this
            // one's included, in the stream's order.
            if nsp.recovery().is_some() && !sw::is_volatile(&message) {
                log.deliver(id, &nsp, &packet, &opts, size);
                return;
            }
            log.advance(id);
            if !own {
                nsp.local_broadcast(&packet, &opts);
            }
            return;
        }
        log.advance(id);
        if !own {
            self.on_message(&nsp, message);
        }
    }

    /// A message published on one of this namespace's channels.
    fn on_published(&self, payload: &[u8]) {
        let message = match Message::from_msgpack(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(nsp = %self.name, "ignoring a message: {e}");
                return;
            }
        };
        if message.uid == self.uid() {
            return;
        }
        if let Some(nsp) = self.namespace() {
            self.on_message(&nsp, message);
        }
    }

    /// A message of another node (`ClusterAdapter.onMessage`).
    fn on_message(&self, nsp: &Arc<Namespace>, message: Message) {
        if message.nsp != self.name {
            return;
        }
        let Some(kind) = message.kind() else {
            tracing::debug!(nsp = %self.name, kind = message.kind, "ignoring a message of unknown type");
            return;
        };
        let opts = || wire::opts_from(message.data.get("opts"));
        match kind {
            MessageType::Broadcast => match message.request_id() {
                Some(_) => self.on_broadcast_with_ack(nsp, &message),
                None => {
                    if let Some((packet, opts)) = sw::broadcast_from(&message) {
                        nsp.local_broadcast(&packet, &opts);
                    }
                }
            },
            MessageType::SocketsJoin => nsp.local_add_sockets(&opts(), &wire::rooms(message.data.get("rooms"))),
            MessageType::SocketsLeave => nsp.local_del_sockets(&opts(), &wire::rooms(message.data.get("rooms"))),
            MessageType::DisconnectSockets => {
                let close = message.data.get("close").and_then(Value::as_bool).unwrap_or(false);
                nsp.local_disconnect_sockets(&opts(), close);
            }
            MessageType::FetchSockets => {
                let (Some(id), Some(running)) = (message.request_id(), self.shared.running()) else {
                    return;
                };
                let sockets: Vec<Value> = nsp.local_fetch_sockets(&opts()).iter().map(wire::socket_to_json).collect();
                let answer = json!({ "requestId": id, "sockets": sockets });
                let answer = self.message(MessageType::FetchSocketsResponse, answer, Vec::new());
                self.respond(&running.link, &message.uid, &answer);
            }
            MessageType::ServerSideEmit => self.on_server_side_emit(nsp, message),
            MessageType::FetchSocketsResponse
            | MessageType::ServerSideEmitResponse
            | MessageType::BroadcastClientCount
            | MessageType::BroadcastAck => self.on_response(message),
            // Heartbeats of the adapters before 0.3: nodes are counted by
            // their subscriptions here.
            MessageType::InitialHeartbeat | MessageType::Heartbeat | MessageType::AdapterClose => {}
        }
    }

    /// Another node's broadcast with acks: this node's recipients are
    /// counted and their acks passed on to that node.
    fn on_broadcast_with_ack(&self, nsp: &Arc<Namespace>, message: &Message) {
        let (Some(id), Some(running)) = (message.request_id(), self.shared.running()) else {
            return;
        };
        let Some((mut packet, opts)) = sw::broadcast_from(message) else {
            return;
        };
        packet.id = Some(nsp.next_ack_id());
        let me = (self.me.clone(), self.me.clone());
        let link = (Arc::downgrade(&running.link), Arc::downgrade(&running.link));
        let asker = (message.uid.clone(), message.uid.clone());
        let request = (id.to_owned(), id.to_owned());
        let acks = BroadcastAcks::forwarding(
            wire::timeout_from(message.data.get("opts")),
            Some(running.link.runtime()),
            move |n| {
                if let (Some(me), Some(link)) = (me.0.upgrade(), link.0.upgrade()) {
                    let count = json!({ "requestId": request.0, "clientCount": n });
                    me.respond(&link, &asker.0, &me.message(MessageType::BroadcastClientCount, count, Vec::new()));
                }
            },
            move |reply| {
                if let (Some(me), Some(link)) = (me.1.upgrade(), link.1.upgrade()) {
                    let first = reply.args.first().cloned().unwrap_or(Value::Null);
                    let ack = json!({ "requestId": request.1, "packet": first });
                    me.respond(&link, &asker.1, &me.message(MessageType::BroadcastAck, ack, reply.binary));
                }
            },
        );
        nsp.local_broadcast_with_ack(&packet, &opts, &acks);
    }

    fn on_server_side_emit(&self, nsp: &Arc<Namespace>, message: Message) {
        let Some(mut data) = message.data.get("packet").and_then(Value::as_array).cloned() else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let event = match data.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let payload = Payload::with_binary(data, message.binary.clone());
        if !payload.is_consistent() {
            return;
        }
        let reply: Option<ServerSideReply> = match (message.request_id(), self.shared.running()) {
            (Some(id), Some(running)) => {
                let (me, link) = (self.me.clone(), Arc::downgrade(&running.link));
                let (id, asker) = (id.to_owned(), message.uid.clone());
                Some(Box::new(move |reply: Payload| {
                    if let (Some(me), Some(link)) = (me.upgrade(), link.upgrade()) {
                        let first = reply.args.first().cloned().unwrap_or(Value::Null);
                        let answer = json!({ "requestId": id, "packet": first });
                        me.respond(
                            &link,
                            &asker,
                            &me.message(MessageType::ServerSideEmitResponse, answer, reply.binary),
                        );
                    }
                }))
            }
            _ => None,
        };
        nsp.handle_server_side_emit(&event, payload, reply);
    }

    /// An answer to one of this node's requests.
    fn on_response(&self, mut response: Message) {
        let binary = std::mem::take(&mut response.binary);
        let Some(id) = response.request_id() else {
            return;
        };
        let (data, requests) = (&response.data, &self.requests);
        match response.kind() {
            Some(MessageType::BroadcastClientCount) => {
                requests.client_count(id, data.get("clientCount").and_then(Value::as_u64).unwrap_or(0));
            }
            Some(MessageType::BroadcastAck) => requests.ack(id, first_argument(data.get("packet"), binary)),
            Some(MessageType::ServerSideEmitResponse) => {
                requests.server_side_reply(id, first_argument(data.get("packet"), binary));
            }
            Some(MessageType::FetchSocketsResponse) => requests.fetch_answer(id, wire::sockets(data.get("sockets"))),
            _ => {}
        }
    }

    /// Makes Redis's subscriptions for this namespace's channels follow the
    /// routes (subscribed while some adapter of this name is started).
    fn sync_subscriptions(&self) {
        let Some(running) = self.shared.running() else {
            return;
        };
        let channels = vec![self.public.clone(), self.private.clone()];
        let shared = self.shared.clone();
        let nsp = self.name.clone();
        let link = running.link.clone();
        running.link.runtime().spawn(async move {
            let wanted = || channels.first().is_some_and(|c| shared.channels.read().contains_key(c));
            if let Err(e) = link.resubscribe(&channels, &[], wanted).await {
                tracing::warn!(nsp, "Redis streams adapter: cannot change subscriptions: {e}");
            }
        });
    }

    /// Writes a room operation of the selected sockets for the other nodes.
    fn forward(&self, kind: MessageType, opts: &BroadcastOptions, data: Value) {
        if opts.flags.local {
            return;
        }
        if let Some(running) = self.reachable() {
            self.append(&running, &self.message(kind, data, Vec::new()), None);
        }
    }

    /// Reads back a session for `pid` and what its client missed after
    /// `offset`: `None` when the session or the offset is not in Redis.
    async fn fetch_session(
        link: &Link,
        key: &str,
        stream: &str,
        nsp: &str,
        offset: StreamId,
    ) -> redis::RedisResult<Option<(SavedSession, Vec<(StreamId, EventPacket)>, StreamId)>> {
        let mut con = link.commands();
        // GET and DEL in one transaction, as the npm adapter does (GETDEL
        // needs Redis 6.2).
        let (raw, _): (Option<Vec<u8>>, i64) =
            redis::pipe().atomic().cmd("GET").arg(key).cmd("DEL").arg(key).query_async(&mut con).await?;
        let offset_text = offset.to_string();
        let here: redis::Value =
            redis::cmd("XRANGE").arg(stream).arg(&offset_text).arg(&offset_text).query_async(&mut con).await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        if stream_log::range_entries(&here).is_empty() {
            return Ok(None);
        }
        let session = match sw::decode_session(&raw) {
            Ok(s) if crate::Sid::parse(&s.sid).is_some() => s,
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::debug!(nsp, "ignoring a stored session: {e}");
                return Ok(None);
            }
        };
        let mut found = Vec::new();
        let mut upto = offset;
        loop {
            let page: redis::Value = redis::cmd("XRANGE")
                .arg(stream)
                .arg(upto.next().to_string())
                .arg("+")
                .arg("COUNT")
                .arg(RESTORE_PAGE)
                .query_async(&mut con)
                .await?;
            let entries = stream_log::range_entries(&page);
            let complete = entries.len() < RESTORE_PAGE;
            for (id, fields) in entries {
                upto = id;
                let Ok(Some(message)) = Message::from_entry(fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
                else {
                    continue;
                };
                if message.nsp != nsp
                    || message.kind() != Some(MessageType::Broadcast)
                    || message.request_id().is_some()
                    || sw::is_volatile(&message)
                {
                    continue;
                }
                if let Some((packet, opts)) = sw::broadcast_from(&message) {
                    if sw::reaches(&opts, &session.rooms) {
                        found.push((id, packet));
                    }
                }
            }
            if complete {
                break;
            }
        }
        Ok(Some((session, found, upto)))
    }
}

impl Adapter for NspAdapter {
    fn start(&self, nsp: &Arc<Namespace>, _runtime: &tokio::runtime::Handle) {
        *self.namespace.write() = Arc::downgrade(nsp);
        self.shared.namespaces.write().insert(self.name.clone(), self.me.clone());
        {
            let mut channels = self.shared.channels.write();
            channels.insert(self.public.clone(), self.me.clone());
            channels.insert(self.private.clone(), self.me.clone());
        }
        // A namespace made while the server runs subscribes now; the others
        // subscribe when the connections open.
        self.sync_subscriptions();
    }

    fn stop(&self) {
        {
            let mut namespaces = self.shared.namespaces.write();
            if namespaces.get(&self.name).is_some_and(|a| Weak::ptr_eq(a, &self.me)) {
                namespaces.remove(&self.name);
            }
        }
        {
            let mut channels = self.shared.channels.write();
            for name in [&self.public, &self.private] {
                if channels.get(name).is_some_and(|a| Weak::ptr_eq(a, &self.me)) {
                    channels.remove(name);
                }
            }
        }
        self.requests.stop();
        self.sync_subscriptions();
    }

    fn broadcast(&self, nsp: &Arc<Namespace>, packet: &EventPacket, opts: &BroadcastOptions) {
        let running = if opts.flags.local { None } else { self.reachable() };
        let Some(running) = running else {
            nsp.local_broadcast(packet, opts);
            return;
        };
        let data = sw::broadcast_data(packet, opts, None);
        let message = self.message(MessageType::Broadcast, data, packet.payload.binary.clone());
        let stored = nsp.recovery().is_some() && packet.id.is_none() && !opts.flags.volatile;
        if !stored {
            nsp.local_broadcast(packet, opts);
            self.append(&running, &message, None);
            return;
        }
        // Delivered here when read back from the stream, with its offset;
        // at once, without one, if Redis does not take it.
        let (target, packet, opts) = (Arc::downgrade(nsp), packet.clone(), opts.clone());
        let fallback = Box::new(move || {
            if let Some(nsp) = target.upgrade() {
                nsp.local_broadcast(&packet, &opts);
            }
        });
        self.append(&running, &message, Some(fallback));
    }

    fn broadcast_with_ack(
        &self,
        nsp: &Arc<Namespace>,
        packet: &EventPacket,
        opts: &BroadcastOptions,
        acks: &Arc<BroadcastAcks>,
    ) {
        let running = if opts.flags.local { None } else { self.reachable() };
        let Some(running) = running else {
            acks.expect_servers(1);
            nsp.local_broadcast_with_ack(packet, opts, acks);
            return;
        };
        let id = sw::random_id();
        // Registered before anything is sent, so no answer comes too early.
        self.requests.acks(&id, acks);
        let data = sw::broadcast_data(packet, opts, Some(&id));
        self.publish(&running, &self.message(MessageType::Broadcast, data, packet.payload.binary.clone()));
        nsp.local_broadcast_with_ack(packet, opts, acks);
        let (me, acks, link) = (self.me.clone(), acks.clone(), running.link.clone());
        let requests = Arc::downgrade(&self.requests);
        running.link.runtime().spawn(async move {
            let servers = match me.upgrade() {
                Some(adapter) => adapter.server_count(&link).await,
                None => 1,
            };
            acks.expect_servers(servers);
            Requests::keep_until_done(requests, id, acks, KEEP_POLL).await;
        });
    }

    fn fetch_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, done: FetchDone) {
        let local = nsp.local_fetch_sockets(opts);
        let running = if opts.flags.local { None } else { self.reachable() };
        let Some(running) = running else {
            done(local);
            return;
        };
        let (me, selection) = (self.me.clone(), sw::opts_json(opts));
        let timeout = opts.flags.timeout.unwrap_or(self.shared.config.requests_timeout);
        let link = running.link.clone();
        link.runtime().clone().spawn(async move {
            let Some(me) = me.upgrade() else {
                done(local);
                return;
            };
            let expected = me.server_count(&link).await - 1;
            if expected == 0 {
                done(local);
                return;
            }
            let id = sw::random_id();
            let request =
                me.message(MessageType::FetchSockets, json!({ "opts": selection, "requestId": id }), Vec::new());
            me.requests.wait(link.runtime(), &id, expected, timeout, Gather::Sockets(local, done));
            link.publish(me.public.clone(), request.to_msgpack());
        });
    }

    fn add_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[String]) {
        nsp.local_add_sockets(opts, rooms);
        self.forward(MessageType::SocketsJoin, opts, json!({ "opts": sw::opts_json(opts), "rooms": rooms }));
    }

    fn del_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[String]) {
        nsp.local_del_sockets(opts, rooms);
        self.forward(MessageType::SocketsLeave, opts, json!({ "opts": sw::opts_json(opts), "rooms": rooms }));
    }

    fn disconnect_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, close: bool) {
        nsp.local_disconnect_sockets(opts, close);
        self.forward(MessageType::DisconnectSockets, opts, json!({ "opts": sw::opts_json(opts), "close": close }));
    }

    /// The streams protocol has no request for rooms: they are the rooms of
    /// every node's sockets.
    fn all_rooms(&self, nsp: &Arc<Namespace>, done: Box<dyn FnOnce(Vec<String>) + Send>) {
        self.fetch_sockets(
            nsp,
            &BroadcastOptions::default(),
            Box::new(move |sockets| {
                let rooms: BTreeSet<String> = sockets.into_iter().flat_map(|s| s.rooms).collect();
                done(rooms.into_iter().collect());
            }),
        );
    }

    fn server_side_emit(&self, _nsp: &Arc<Namespace>, packet: &EventPacket, acks: Option<&Arc<BroadcastAcks>>) {
        let Some(running) = self.reachable() else {
            if let Some(acks) = acks {
                acks.expect_servers(0);
            }
            return;
        };
        let data = sw::server_side_packet(packet);
        let binary = packet.payload.binary.clone();
        let Some(acks) = acks else {
            self.publish(&running, &self.message(MessageType::ServerSideEmit, json!({ "packet": data }), binary));
            return;
        };
        let (me, acks, link) = (self.me.clone(), acks.clone(), running.link.clone());
        running.link.runtime().spawn(async move {
            let Some(adapter) = me.upgrade() else {
                acks.expect_servers(0);
                return;
            };
            // Every node but this one answers.
            let others = adapter.server_count(&link).await - 1;
            if others == 0 {
                acks.expect_servers(0);
                return;
            }
            let id = sw::random_id();
            let request = json!({ "requestId": id, "packet": data });
            // One "server" (the cluster) reporting one reply per other node.
            acks.expect_servers(1);
            acks.add_clients(others);
            adapter.requests.server_side(&id, &acks);
            link.publish(
                adapter.public.clone(),
                adapter.message(MessageType::ServerSideEmit, request, binary).to_msgpack(),
            );
            let requests = Arc::downgrade(&adapter.requests);
            drop(adapter);
            Requests::keep_until_done(requests, id, acks, KEEP_POLL).await;
        });
    }

    fn keeps_recovery_log(&self) -> bool {
        true
    }

    fn persist_session(&self, nsp: &Arc<Namespace>, session: SavedSession) {
        let (Some(running), Some(log)) = (self.reachable(), nsp.recovery()) else {
            tracing::debug!(nsp = %self.name, sid = %session.sid, "Redis unreachable: the session is not kept");
            return;
        };
        let duration = log.options().max_disconnection_duration;
        let key = format!("{}{}", self.shared.config.session_key_prefix, session.pid);
        let px = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1);
        running.write(Write::Set { key: key.clone(), value: sw::encode_session(&session), px, only_if_exists: false });
        let now = Instant::now();
        let mut persisted = self.shared.persisted.lock();
        persisted.retain(|_, p| p.expires > now);
        persisted.insert(session.sid.clone(), Persisted { session, key, expires: now + duration });
    }

    fn restore_session(&self, nsp: &Arc<Namespace>, pid: &str, offset: Option<&str>, done: RestoreDone) {
        // Like the npm adapter, a client needs an offset (a stream id) to
        // recover; one that never received a stored packet starts afresh.
        let offset = offset.and_then(StreamId::parse);
        let running = self.reachable();
        let log = running.as_ref().and_then(|r| r.streams.get(&self.stream).cloned());
        let (Some(offset), Some(running), Some(log), Some(recovery)) = (offset, running, log, nsp.recovery()) else {
            done(None);
            return;
        };
        // From now on the reader keeps what it delivers to this namespace,
        // so that the replay misses nothing read while Redis answers.
        let registration = log.register(&self.name, recovery.options().max_log_bytes);
        let key = format!("{}{pid}", self.shared.config.session_key_prefix);
        let (stream, name, link) = (self.stream.clone(), self.name.clone(), running.link.clone());
        running.link.runtime().spawn(async move {
            match NspAdapter::fetch_session(&link, &key, &stream, &name, offset).await {
                Ok(Some((session, found, upto))) => {
                    let rooms = session.rooms.clone();
                    let replay = StreamReplay { registration, rooms, found, upto };
                    done(Some(RestoredSession::new(session, replay)));
                }
                Ok(None) => done(None),
                Err(e) => {
                    tracing::warn!(nsp = %name, "cannot restore a session: {e}");
                    done(None);
                }
            }
        });
    }

    fn update_session_data(&self, _nsp: &Arc<Namespace>, sid: &str, data: Value) -> bool {
        let Some(running) = self.reachable() else {
            return false;
        };
        let now = Instant::now();
        let mut persisted = self.shared.persisted.lock();
        let Some(p) = persisted.get_mut(sid).filter(|p| p.expires > now) else {
            return false;
        };
        p.session.data = data;
        let px = u64::try_from((p.expires - now).as_millis()).unwrap_or(u64::MAX).max(1);
        // Only while it is still there: a client that recovered meanwhile
        // took it.
        let write = Write::Set { key: p.key.clone(), value: sw::encode_session(&p.session), px, only_if_exists: true };
        drop(persisted);
        running.write(write);
        true
    }
}
