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
//!
//! Layout: this file holds the factory, each namespace adapter's state and
//! the routing of entries and channels; `incoming`, what the other nodes
//! write and publish; `operations`, the [`Adapter`] operations the server
//! calls, sessions included. The requests waiting for answers are kept by
//! `super::requests`, as for the pub/sub adapter.

mod incoming;
mod operations;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::mpsc;

use super::RedisStreamsAdapter;
use super::connection::{Incoming, Link, start_error};
use super::requests::Requests;
use super::stream_log::{self, Entry, StreamLog, Write, Writer};
use super::streams_wire::{self as sw, Message, MessageType};
use crate::server::{Adapter, AdapterFactory, Namespace, SavedSession};

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
        link.node_count(&self.public, &self.name).await
    }
}
