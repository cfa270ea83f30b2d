//! Scale-out over Redis: adapters that join iobus nodes — and npm
//! `socket.io` nodes — into one cluster. Broadcasts, room operations,
//! fetches of sockets, server-side emits and broadcasts with acks reach the
//! sockets and handlers of every node. Two adapters, as in Node:
//!
//! - [`RedisAdapter::pubsub`]: Redis pub/sub, wire-compatible with
//!   `@socket.io/redis-adapter` 8.3 (and `@socket.io/redis-emitter`);
//! - [`RedisAdapter::streams`]: a Redis stream, wire-compatible with
//!   `@socket.io/redis-streams-adapter` 0.3. Messages survive a short loss
//!   of the connection, and connection state recovery works across nodes:
//!   a client that drops from one node and reconnects to another gets its
//!   id, rooms, data and every packet it missed.
//!
//! ```no_run
//! use iobus::redis::RedisAdapter;
//! use iobus::{Server, ServerOptions};
//! use std::time::Duration;
//!
//! let adapter = RedisAdapter::pubsub("redis://127.0.0.1:6379")
//!     .key("socket.io")
//!     .requests_timeout(Duration::from_secs(5))
//!     .build();
//! let server = Server::new(ServerOptions { adapter, ..ServerOptions::default() });
//! // Fails if Redis cannot be reached.
//! server.start("0.0.0.0:3000").expect("started");
//! ```
//!
//! Faults: Redis unreachable when the server starts fails
//! [`Server::start`](crate::Server::start) with the reason. Redis lost while
//! serving: every node keeps serving its own clients; the connections are
//! retried every half second, the subscriptions restored, cross-node
//! delivery resumes, and the gap is logged (`tracing`, warn level) with the
//! number of messages dropped meanwhile. A node that dies: requests from
//! the others (fetching sockets, all rooms) complete after the requests
//! timeout with the answers that arrived; emits with acks complete at their
//! own timeout.
//!
//! One adapter (the value [`RedisAdapter::build`] returns) serves one
//! server: each node has its own id on the wire.
//!
//! Layout: `wire` and `streams_wire` (the message formats, pure),
//! `connection` (the Redis connections), `pubsub` and `streams` (the
//! adapters), `requests` (the requests of a node waiting for the others'
//! answers, for both adapters), `stream_log` (the streams adapter's reading
//! of the stream and its replays for recovery).

mod connection;
mod pubsub;
mod requests;
mod stream_log;
mod streams;
mod streams_wire;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use pubsub::RedisAdapterFactory;
pub use streams::RedisStreamsAdapterFactory;

use crate::server::AdapterFactory;

/// Settings of the Redis pub/sub adapter; [`build`](Self::build) makes the
/// adapter to put in [`ServerOptions::adapter`](crate::ServerOptions::adapter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAdapter {
    pub(crate) url: String,
    pub(crate) key: String,
    pub(crate) requests_timeout: Duration,
    pub(crate) specific_response_channel: bool,
    pub(crate) connect_timeout: Duration,
}

impl RedisAdapter {
    /// The pub/sub adapter (`@socket.io/redis-adapter`) on the Redis server
    /// at `url` (`redis://[user:password@]host:port[/db]`, `rediss://` not
    /// included), with the npm adapter's defaults: key `socket.io`, requests
    /// timeout 5 s, responses on the shared response channel.
    pub fn pubsub(url: &str) -> RedisAdapter {
        RedisAdapter {
            url: url.to_owned(),
            key: "socket.io".to_owned(),
            requests_timeout: Duration::from_millis(5000),
            specific_response_channel: false,
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// The streams adapter (`@socket.io/redis-streams-adapter` 0.3) on the
    /// Redis server at `url`, with the npm adapter's defaults: see
    /// [`RedisStreamsAdapter`].
    pub fn streams(url: &str) -> RedisStreamsAdapter {
        RedisStreamsAdapter {
            url: url.to_owned(),
            stream_name: "socket.io".to_owned(),
            stream_count: 1,
            channel_prefix: "socket.io".to_owned(),
            max_len: 10_000,
            read_count: 100,
            block_time: Duration::from_millis(5000),
            session_key_prefix: "sio:session:".to_owned(),
            requests_timeout: Duration::from_millis(5000),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// The prefix of every channel name (the npm adapter's `key`).
    pub fn key(mut self, key: &str) -> Self {
        key.clone_into(&mut self.key);
        self
    }

    /// How long a request to the other nodes (fetching sockets, listing
    /// rooms, server-side emits with acks) waits for their answers
    /// (`requestsTimeout`).
    pub fn requests_timeout(mut self, timeout: Duration) -> Self {
        self.requests_timeout = timeout;
        self
    }

    /// Whether this node answers a request on the asking node's own
    /// response channel rather than the shared one
    /// (`publishOnSpecificResponseChannel`). Either way it listens on both.
    pub fn publish_on_specific_response_channel(mut self, on: bool) -> Self {
        self.specific_response_channel = on;
        self
    }

    /// How long connecting to Redis may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The adapter, for [`ServerOptions::adapter`](crate::ServerOptions::adapter).
    pub fn build(self) -> Arc<dyn AdapterFactory> {
        self.factory()
    }

    /// The adapter as its own type, which also tells whether the node is
    /// connected ([`RedisAdapterFactory::connected`]); it converts to the
    /// `Arc<dyn AdapterFactory>` the options take.
    pub fn factory(self) -> Arc<RedisAdapterFactory> {
        Arc::new(RedisAdapterFactory::new(self))
    }
}

/// Settings of the Redis streams adapter (made by [`RedisAdapter::streams`]);
/// [`build`](Self::build) makes the adapter to put in
/// [`ServerOptions::adapter`](crate::ServerOptions::adapter).
///
/// ```no_run
/// use iobus::redis::RedisAdapter;
/// use iobus::server::RecoveryOptions;
/// use iobus::{Server, ServerOptions};
///
/// let adapter = RedisAdapter::streams("redis://127.0.0.1:6379").build();
/// let server = Server::new(ServerOptions {
///     adapter,
///     // Sessions and missed packets are kept in Redis: a client recovers on any node.
///     connection_state_recovery: Some(RecoveryOptions::default()),
///     ..ServerOptions::default()
/// });
/// server.start("0.0.0.0:3000").expect("started");
/// ```
///
/// Every node reads the stream from where it stood when it started. With
/// connection state recovery on, the packets a node stores (broadcasts and
/// direct emits without acks that are not volatile) reach its own clients
/// when it reads them back from the stream, so that every node delivers
/// them in the stream's order, with their entry id as offset. A client
/// recovers with the offset of the last packet it received, as with the
/// npm adapter (one that never received a stored packet starts afresh),
/// as many times as it drops, on any node, each missed packet once.
///
/// Faults: Redis unreachable when the server starts fails
/// [`Server::start`](crate::Server::start). Redis lost while serving: every
/// node serves its own clients (their packets without offsets, and the
/// sessions of sockets that drop meanwhile are not kept); the connections
/// are retried every half second, each node reads on from where it
/// stopped, and the gap is logged. What the other nodes wrote while this
/// one was away is read then, unless Redis itself lost it (a restart
/// without persistence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamsAdapter {
    pub(crate) url: String,
    pub(crate) stream_name: String,
    pub(crate) stream_count: u32,
    pub(crate) channel_prefix: String,
    pub(crate) max_len: u64,
    pub(crate) read_count: u32,
    pub(crate) block_time: Duration,
    pub(crate) session_key_prefix: String,
    pub(crate) requests_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl RedisStreamsAdapter {
    /// The stream's name and the channels' prefix together (both default
    /// to `socket.io`).
    pub fn key(self, key: &str) -> Self {
        self.stream_name(key).channel_prefix(key)
    }

    /// The stream's name, or the prefix of the streams' names with several
    /// (`streamName`).
    pub fn stream_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.stream_name);
        self
    }

    /// How many streams the namespaces are spread over (`streamCount`,
    /// default 1); each namespace always uses the same one.
    pub fn stream_count(mut self, count: u32) -> Self {
        self.stream_count = count.max(1);
        self
    }

    /// The prefix of the pub/sub channels of requests and answers
    /// (`channelPrefix`).
    pub fn channel_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.channel_prefix);
        self
    }

    /// About how many entries the stream keeps (`maxLen`, default 10 000,
    /// trimmed with `MAXLEN ~`): the oldest packets a client can recover.
    pub fn max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// How many entries one read takes (`readCount`, default 100).
    pub fn read_count(mut self, count: u32) -> Self {
        self.read_count = count.max(1);
        self
    }

    /// How long one read waits for new entries (`blockTimeInMs`, default 5 s).
    pub fn block_time(mut self, time: Duration) -> Self {
        self.block_time = time.max(Duration::from_millis(1));
        self
    }

    /// The prefix of the keys sessions are kept under (`sessionKeyPrefix`,
    /// default `sio:session:`).
    pub fn session_key_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.session_key_prefix);
        self
    }

    /// How long fetching sockets (without a timeout of its own) and
    /// server-side emits with acks wait for the other nodes (default 5 s).
    pub fn requests_timeout(mut self, timeout: Duration) -> Self {
        self.requests_timeout = timeout;
        self
    }

    /// How long connecting to Redis may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The adapter, for [`ServerOptions::adapter`](crate::ServerOptions::adapter).
    pub fn build(self) -> Arc<dyn AdapterFactory> {
        self.factory()
    }

    /// The adapter as its own type, which also tells whether the node is
    /// connected ([`RedisStreamsAdapterFactory::connected`]).
    pub fn factory(self) -> Arc<RedisStreamsAdapterFactory> {
        Arc::new(RedisStreamsAdapterFactory::new(self))
    }
}
