//! Scale-out over Redis: an adapter that joins iobus nodes — and npm
//! `socket.io` nodes using `@socket.io/redis-adapter` 8.3, and processes
//! using `@socket.io/redis-emitter` — into one cluster through Redis
//! pub/sub. Broadcasts, room operations, fetches of sockets, server-side
//! emits and broadcasts with acks reach the sockets and handlers of every
//! node.
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
//! Layout: `wire` (the message formats, pure), `connection` (the Redis
//! connections), `pubsub` (the adapter itself).

mod connection;
mod pubsub;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use pubsub::RedisAdapterFactory;

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
