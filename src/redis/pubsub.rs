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
//!
//! Layout: this file holds the factory, each namespace adapter's state and
//! the routing of channels; `incoming`, what the other nodes send;
//! `operations`, the [`Adapter`] operations the server calls. The requests
//! waiting for answers are kept by `super::requests`, as for the streams
//! adapter.

mod incoming;
mod operations;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::mpsc;

use super::RedisAdapter;
use super::connection::{Incoming, Link, start_error};
use super::requests::Requests;
use super::wire::{self, Channels};
use crate::server::{Adapter, AdapterFactory, BroadcastOptions, Namespace};

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
}
