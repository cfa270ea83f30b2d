//! The Redis connections of one running server: a publisher and a
//! subscriber, each reconnecting by itself (the subscriber also
//! resubscribes), an ordered publish queue, and a health watch that logs
//! when Redis goes away and comes back.
//!
//! What it owns: bytes in and out of Redis. What it does not: what the
//! messages mean (`wire`, `streams_wire`) or what a node does with them
//! (`pubsub`, `streams`). The streams adapter also sends its own commands
//! on the publisher connection ([`Link::commands`]) and reads the stream on
//! a connection of its own ([`Link::dedicated`]), since a blocking read
//! holds the connection it runs on.
//!
//! Nothing here blocks a caller: publishes go through a bounded queue to
//! one task that sends whatever has piled up as one pipeline (so messages
//! leave in the order they were published, and a burst costs one round
//! trip); commands that need an answer (`PUBSUB NUMSUB`) are awaited by
//! spawned tasks. While Redis is unreachable, what cannot be sent is
//! dropped and counted — pub/sub keeps no history, so other nodes miss
//! what was published meanwhile, and the gap is logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;

/// Most messages waiting to be published; beyond it (Redis unreachable or
/// too slow) new ones are dropped.
const QUEUE: usize = 65_536;
/// Most messages, and bytes, sent in one pipeline.
const BATCH: usize = 512;
const BATCH_BYTES: usize = 1 << 20;
/// How often the connections are checked (and a lost one retried).
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// A message that arrived on a subscription.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// On a channel subscribed by name.
    Message { channel: String, payload: Vec<u8> },
    /// On a channel that matched a subscribed pattern.
    PatternMessage { pattern: String, channel: String, payload: Vec<u8> },
}

struct Outgoing {
    channel: String,
    payload: Vec<u8>,
}

/// Whether Redis is reachable, and what was lost while it was not.
#[derive(Default)]
struct Health {
    down: AtomicBool,
    since: Mutex<Option<Instant>>,
    dropped: AtomicU64,
}

impl Health {
    fn lost(&self, url: &str, why: &dyn std::fmt::Display) {
        if !self.down.swap(true, Ordering::AcqRel) {
            *self.since.lock() = Some(Instant::now());
            tracing::warn!(
                redis = url,
                "Redis connection lost ({why}): this node serves its own clients only until it is back"
            );
        }
    }

    fn back(&self, url: &str) {
        if self.down.swap(false, Ordering::AcqRel) {
            let gap = self.since.lock().take().map(|t| t.elapsed()).unwrap_or_default();
            let dropped = self.dropped.swap(0, Ordering::AcqRel);
            tracing::warn!(
                redis = url,
                gap_ms = gap.as_millis() as u64,
                dropped,
                "Redis connection back after {gap:?}, subscriptions restored; {dropped} outgoing messages were \
                 dropped and messages other nodes published meanwhile were missed"
            );
        }
    }
}

/// The connections of one running server to one Redis server.
pub(crate) struct Link {
    url: String,
    client: redis::Client,
    publisher: ConnectionManager,
    subscriber: ConnectionManager,
    queue: mpsc::Sender<Outgoing>,
    health: Arc<Health>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Held while subscriptions change, so that changes for one channel
    /// reach Redis in the order they were decided.
    changing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("url", &self.url).finish()
    }
}

fn manager_config(connect_timeout: Duration) -> ConnectionManagerConfig {
    // One quick retry per attempt: the health watch tries again every
    // HEALTH_INTERVAL, so a long outage is retried without a growing delay.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

impl Link {
    /// Connects both connections; every message that arrives on a
    /// subscription goes to `incoming`, in order. Fails when Redis cannot
    /// be reached.
    pub(crate) async fn connect(
        url: &str,
        connect_timeout: Duration,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> RedisResult<Arc<Link>> {
        let info = url.into_connection_info()?;
        // RESP3: messages arrive as pushes, and a dropped connection is
        // noticed (and replaced) even while nothing is being sent.
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let health = Arc::new(Health::default());
        let push_health = health.clone();
        let push_url = url.to_owned();
        let on_push = move |push: PushInfo| -> Result<(), ()> {
            let mut data = push.data.into_iter();
            let message = match push.kind {
                PushKind::Message => match (data.next(), data.next()) {
                    (Some(channel), Some(payload)) => {
                        Incoming::Message { channel: text(channel), payload: bytes(payload) }
                    }
                    _ => return Ok(()),
                },
                PushKind::PMessage => match (data.next(), data.next(), data.next()) {
                    (Some(pattern), Some(channel), Some(payload)) => Incoming::PatternMessage {
                        pattern: text(pattern),
                        channel: text(channel),
                        payload: bytes(payload),
                    },
                    _ => return Ok(()),
                },
                PushKind::Disconnection => {
                    push_health.lost(&push_url, &"disconnected");
                    return Ok(());
                }
                _ => return Ok(()),
            };
            incoming.send(message).map_err(|_| ())
        };
        let subscriber_config = manager_config(connect_timeout).set_push_sender(on_push).set_automatic_resubscription();
        let subscriber = ConnectionManager::new_with_config(client.clone(), subscriber_config).await?;
        let publisher = ConnectionManager::new_with_config(client.clone(), manager_config(connect_timeout)).await?;

        let (queue, outgoing) = mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Handle::current();
        let link = Arc::new(Link {
            url: url.to_owned(),
            client,
            publisher: publisher.clone(),
            subscriber: subscriber.clone(),
            queue,
            health: health.clone(),
            runtime: runtime.clone(),
            tasks: Mutex::new(Vec::new()),
            changing: tokio::sync::Mutex::new(()),
        });
        let publish = runtime.spawn(publish_loop(publisher.clone(), outgoing, health.clone(), url.to_owned()));
        let watch = runtime.spawn(health_loop(publisher, subscriber, health, url.to_owned()));
        link.tasks.lock().extend([publish.abort_handle(), watch.abort_handle()]);
        Ok(link)
    }

    /// Whether Redis answered the last check (and nothing failed since).
    pub(crate) fn healthy(&self) -> bool {
        !self.health.down.load(Ordering::Acquire)
    }

    /// The runtime the connections live on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The publisher connection, for commands that need their answer
    /// (pipelined with the publishes; it reconnects by itself).
    pub(crate) fn commands(&self) -> ConnectionManager {
        self.publisher.clone()
    }

    /// A connection of its own, for a command that blocks (`XREAD BLOCK`):
    /// answers may take up to `response_timeout`. It reconnects by itself.
    pub(crate) async fn dedicated(&self, response_timeout: Duration) -> RedisResult<ConnectionManager> {
        let config = manager_config(Duration::from_secs(2)).set_response_timeout(Some(response_timeout));
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    /// Records that a command failed because Redis is unreachable (logged
    /// once per outage); `dropped` messages for other nodes were lost.
    pub(crate) fn report_lost(&self, why: &dyn std::fmt::Display, dropped: u64) {
        self.health.dropped.fetch_add(dropped, Ordering::AcqRel);
        self.health.lost(&self.url, why);
    }

    /// Queues a message for `channel`; never waits. Dropped (and counted)
    /// when the queue is full.
    pub(crate) fn publish(&self, channel: String, payload: Vec<u8>) {
        if self.queue.try_send(Outgoing { channel, payload }).is_err() {
            let dropped = self.health.dropped.fetch_add(1, Ordering::AcqRel);
            if dropped == 0 {
                tracing::warn!(redis = %self.url, "Redis publish queue full: dropping messages for other nodes");
            }
        }
    }

    /// Counts a message for other nodes dropped because `queue` is full
    /// (logged once, until the count is reported).
    pub(crate) fn queue_full(&self, queue: &str) {
        let dropped = self.health.dropped.fetch_add(1, Ordering::AcqRel);
        if dropped == 0 {
            tracing::warn!(redis = %self.url, "Redis {queue} queue full: dropping messages for other nodes");
        }
    }

    /// How many clients (nodes) are subscribed to `channel`.
    pub(crate) async fn numsub(&self, channel: &str) -> RedisResult<usize> {
        let mut con = self.publisher.clone();
        let reply: Value = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut con).await?;
        Ok(numsub_count(&reply))
    }

    /// How many nodes serve namespace `nsp`, this one included: the
    /// subscribers of its `channel`, and 1 when Redis cannot tell (a request
    /// is then this node's alone).
    pub(crate) async fn node_count(&self, channel: &str, nsp: &str) -> usize {
        match self.numsub(channel).await {
            Ok(n) => n.max(1),
            Err(e) => {
                tracing::warn!(nsp, "cannot count the nodes, answering for this one only: {e}");
                1
            }
        }
    }

    /// Subscribes to (or unsubscribes from) channels and patterns, as
    /// `wanted` says when the change's turn comes: one namespace stopping
    /// while another of the same name starts ends subscribed.
    pub(crate) async fn resubscribe(
        &self,
        channels: &[String],
        patterns: &[String],
        wanted: impl FnOnce() -> bool,
    ) -> RedisResult<()> {
        let _turn = self.changing.lock().await;
        if wanted() { self.subscribe(channels, patterns).await } else { self.unsubscribe(channels, patterns).await }
    }

    /// Subscribes to channels by name and by pattern; kept across
    /// reconnections.
    pub(crate) async fn subscribe(&self, channels: &[String], patterns: &[String]) -> RedisResult<()> {
        let mut con = self.subscriber.clone();
        if !patterns.is_empty() {
            con.psubscribe(patterns).await?;
        }
        if !channels.is_empty() {
            con.subscribe(channels).await?;
        }
        Ok(())
    }

    /// Drops subscriptions.
    pub(crate) async fn unsubscribe(&self, channels: &[String], patterns: &[String]) -> RedisResult<()> {
        let mut con = self.subscriber.clone();
        if !patterns.is_empty() {
            con.punsubscribe(patterns).await?;
        }
        if !channels.is_empty() {
            con.unsubscribe(channels).await?;
        }
        Ok(())
    }

    /// Ties a task to the link: it ends when the link closes.
    pub(crate) fn adopt(&self, task: tokio::task::AbortHandle) {
        self.tasks.lock().push(task);
    }

    /// Stops the link's tasks; the connections close when the last clone
    /// of them goes.
    pub(crate) fn close(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
    }
}

/// Why an adapter (`adapter`, its name in the message) cannot start with
/// the Redis server at `url`.
pub(crate) fn start_error(adapter: &str, url: &str, why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, format!("{adapter}: cannot use Redis at {url}: {why}"))
}

/// The count in a `PUBSUB NUMSUB <channel>` reply: `[channel, n]` (a map
/// under some protocol versions).
pub(crate) fn numsub_count(reply: &Value) -> usize {
    let n = match reply {
        Value::Array(items) => items.get(1),
        Value::Map(pairs) => pairs.first().map(|(_, n)| n),
        _ => None,
    };
    match n {
        Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::VerbatimString { text, .. } => text.into_bytes(),
        _ => Vec::new(),
    }
}

fn text(v: Value) -> String {
    String::from_utf8(bytes(v)).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Sends queued messages in order, whatever has piled up as one pipeline.
async fn publish_loop(
    mut con: ConnectionManager,
    mut outgoing: mpsc::Receiver<Outgoing>,
    health: Arc<Health>,
    url: String,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = outgoing.recv().await {
        let mut bytes = first.payload.len();
        batch.push(first);
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            let Ok(next) = outgoing.try_recv() else { break };
            bytes += next.payload.len();
            batch.push(next);
        }
        let mut pipe = redis::pipe();
        for m in &batch {
            pipe.cmd("PUBLISH").arg(&m.channel).arg(&m.payload).ignore();
        }
        if let Err(e) = pipe.exec_async(&mut con).await {
            health.dropped.fetch_add(batch.len() as u64, Ordering::AcqRel);
            health.lost(&url, &e);
        }
        batch.clear();
    }
}

/// Pings both connections: a failed ping makes the connection manager
/// reconnect (the subscriber resubscribes before it answers again), and
/// the first successful one after a failure logs the gap.
async fn health_loop(
    mut publisher: ConnectionManager,
    mut subscriber: ConnectionManager,
    health: Arc<Health>,
    url: String,
) {
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sub: RedisResult<Value> = redis::cmd("PING").query_async(&mut subscriber).await;
        let publ: RedisResult<Value> = redis::cmd("PING").query_async(&mut publisher).await;
        match (sub, publ) {
            (Ok(_), Ok(_)) => health.back(&url),
            (Err(e), _) | (_, Err(e)) => health.lost(&url, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_replies_in_either_shape() {
        let ch = Value::BulkString(b"socket.io-request#/#".to_vec());
        assert_eq!(numsub_count(&Value::Array(vec![ch.clone(), Value::Int(3)])), 3);
        assert_eq!(numsub_count(&Value::Map(vec![(ch.clone(), Value::Int(2))])), 2);
        assert_eq!(numsub_count(&Value::Array(vec![ch])), 0);
        assert_eq!(numsub_count(&Value::Nil), 0);
    }
}
