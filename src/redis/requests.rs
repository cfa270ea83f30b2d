//! This node's requests that wait for answers from the other nodes, as
//! both Redis adapters keep them: fetching sockets, listing rooms,
//! broadcasts with acks and server-side emits with acks.
//!
//! What it owns: each request from when it is sent until it completes —
//! the answers gathered so far, the count of nodes still to answer, the
//! expiry that completes a request with what arrived, and the collectors
//! ([`BroadcastAcks`]) that client counts and acks go to. What it does not:
//! the wire. Each adapter decodes its own messages and hands the answers
//! here by request id; an answer for a request that is no longer waiting,
//! or that waits for something else, is dropped.
//!
//! Every request is registered before it is sent, so that no answer comes
//! too early.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;

use crate::server::{BroadcastAcks, Payload, SocketInfo};

pub(super) type FetchDone = Box<dyn FnOnce(Vec<SocketInfo>) + Send>;
pub(super) type RoomsDone = Box<dyn FnOnce(Vec<String>) + Send>;

/// What a request that gathers answers starts with: this node's part, and
/// what to call with the whole.
pub(super) enum Gather {
    Sockets(Vec<SocketInfo>, FetchDone),
    Rooms(Vec<String>, RoomsDone),
}

impl Gather {
    /// Completes with this node's part alone (no other node is asked).
    pub(super) fn complete(self) {
        match self {
            Gather::Sockets(sockets, done) => done(sockets),
            Gather::Rooms(rooms, done) => done(rooms),
        }
    }
}

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// The sockets of the other nodes.
    Fetch,
    /// The rooms of the other nodes.
    Rooms,
    /// Client counts and acks of a broadcast.
    Acks,
    /// The other nodes' replies to a server-side emit.
    ServerSide,
}

/// A request of this node waiting for answers.
enum Pending {
    /// Fetching sockets: what arrived, from how many other nodes, out of
    /// how many.
    Fetch { sockets: Vec<SocketInfo>, answers: usize, expected: usize, done: FetchDone },
    /// Listing rooms: likewise, each room once.
    Rooms { rooms: Vec<String>, seen: HashSet<String>, answers: usize, expected: usize, done: RoomsDone },
    /// A broadcast with acks: client counts and acks go to the collector.
    Acks(Arc<BroadcastAcks>),
    /// A server-side emit with acks: each node's reply goes to the collector.
    ServerSide(Arc<BroadcastAcks>),
}

impl Pending {
    fn waiting(&self) -> Waiting {
        match self {
            Pending::Fetch { .. } => Waiting::Fetch,
            Pending::Rooms { .. } => Waiting::Rooms,
            Pending::Acks(_) => Waiting::Acks,
            Pending::ServerSide(_) => Waiting::ServerSide,
        }
    }

    /// Completes a fetch or a listing with what arrived; a collector
    /// completes at its own timeout.
    fn complete(self) {
        match self {
            Pending::Fetch { sockets, done, .. } => done(sockets),
            Pending::Rooms { rooms, done, .. } => done(rooms),
            Pending::Acks(_) | Pending::ServerSide(_) => {}
        }
    }

    /// The time is up: completes with what arrived.
    fn expire(self, nsp: &str) {
        match &self {
            Pending::Fetch { answers, expected, .. } => {
                tracing::warn!(nsp, answers, expected, "fetch sockets: not every node answered in time");
            }
            Pending::Rooms { answers, expected, .. } => {
                tracing::warn!(nsp, answers, expected, "all rooms: not every node answered in time");
            }
            Pending::Acks(_) | Pending::ServerSide(_) => {}
        }
        self.complete();
    }
}

/// The requests of one namespace's adapter waiting for answers, by id.
pub(super) struct Requests {
    /// The namespace, for the logs.
    nsp: String,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Requests {
    pub(super) fn new(nsp: &str) -> Arc<Requests> {
        Arc::new(Requests { nsp: nsp.to_owned(), pending: Mutex::new(HashMap::new()) })
    }

    /// Gathers the answers of `others` other nodes to request `id`: it
    /// completes with this node's part and theirs once every one answered,
    /// or after `timeout` with what arrived.
    pub(super) fn wait(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        id: &str,
        others: usize,
        timeout: Duration,
        gather: Gather,
    ) {
        let request = match gather {
            Gather::Sockets(local, done) => Pending::Fetch { sockets: local, answers: 0, expected: others, done },
            Gather::Rooms(local, done) => {
                let seen = local.iter().cloned().collect();
                Pending::Rooms { rooms: local, seen, answers: 0, expected: others, done }
            }
        };
        self.pending.lock().insert(id.to_owned(), request);
        let (me, id) = (Arc::downgrade(self), id.to_owned());
        runtime.spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(me) = me.upgrade() {
                let expired = me.pending.lock().remove(&id);
                if let Some(request) = expired {
                    request.expire(&me.nsp);
                }
            }
        });
    }

    /// A broadcast with acks: the client counts and acks of the other
    /// nodes go to `acks`. The entry stays until
    /// [`keep_until_done`](Self::keep_until_done) removes it.
    pub(super) fn acks(&self, id: &str, acks: &Arc<BroadcastAcks>) {
        self.pending.lock().insert(id.to_owned(), Pending::Acks(acks.clone()));
    }

    /// A server-side emit with acks: the other nodes' replies go to `acks`.
    /// The entry stays until [`keep_until_done`](Self::keep_until_done)
    /// removes it.
    pub(super) fn server_side(&self, id: &str, acks: &Arc<BroadcastAcks>) {
        self.pending.lock().insert(id.to_owned(), Pending::ServerSide(acks.clone()));
    }

    /// What request `id` waits for, while it waits.
    pub(super) fn waiting(&self, id: &str) -> Option<Waiting> {
        self.pending.lock().get(id).map(Pending::waiting)
    }

    /// One node's sockets for fetch `id`: the fetch completes when it was
    /// the last node to answer.
    pub(super) fn fetch_answer(&self, id: &str, sockets: Vec<SocketInfo>) {
        let mut pending = self.pending.lock();
        let Some(Pending::Fetch { sockets: gathered, answers, expected, .. }) = pending.get_mut(id) else {
            return;
        };
        *answers += 1;
        gathered.extend(sockets);
        if *answers >= *expected {
            if let Some(request) = pending.remove(id) {
                drop(pending);
                request.complete();
            }
        }
    }

    /// One node's rooms for listing `id`: the listing completes when it
    /// was the last node to answer.
    pub(super) fn rooms_answer(&self, id: &str, rooms: Vec<String>) {
        let mut pending = self.pending.lock();
        let Some(Pending::Rooms { rooms: gathered, seen, answers, expected, .. }) = pending.get_mut(id) else {
            return;
        };
        *answers += 1;
        for room in rooms {
            if seen.insert(room.clone()) {
                gathered.push(room);
            }
        }
        if *answers >= *expected {
            if let Some(request) = pending.remove(id) {
                drop(pending);
                request.complete();
            }
        }
    }

    /// How many of a node's clients a broadcast with acks `id` reached.
    pub(super) fn client_count(&self, id: &str, n: u64) {
        if let Some(acks) = self.collector(id, Waiting::Acks) {
            acks.add_clients(usize::try_from(n).unwrap_or(0));
        }
    }

    /// A client's ack to broadcast `id`.
    pub(super) fn ack(&self, id: &str, reply: Payload) {
        if let Some(acks) = self.collector(id, Waiting::Acks) {
            acks.reply(reply);
        }
    }

    /// A node's reply to server-side emit `id`.
    pub(super) fn server_side_reply(&self, id: &str, reply: Payload) {
        if let Some(acks) = self.collector(id, Waiting::ServerSide) {
            acks.reply(reply);
        }
    }

    /// The collector of request `id`, if it waits for `what`; it is used
    /// outside the lock, since it may complete and call back.
    fn collector(&self, id: &str, what: Waiting) -> Option<Arc<BroadcastAcks>> {
        match self.pending.lock().get(id)? {
            Pending::Acks(acks) if what == Waiting::Acks => Some(acks.clone()),
            Pending::ServerSide(acks) if what == Waiting::ServerSide => Some(acks.clone()),
            _ => None,
        }
    }

    /// The namespace stops: fetches and listings complete with what
    /// arrived, and no answer is taken any more.
    pub(super) fn stop(&self) {
        let pending: Vec<Pending> = self.pending.lock().drain().map(|(_, p)| p).collect();
        for request in pending {
            request.complete();
        }
    }

    /// Keeps an emit with acks (and its entry, for the answers) until it
    /// completes: by every answer, or at its own timeout, looking every
    /// `poll`. Nothing else may hold the collector (the other nodes'
    /// clients are not this node's sockets), and one dropped undone would
    /// never call its completion.
    pub(super) async fn keep_until_done(me: Weak<Requests>, id: String, acks: Arc<BroadcastAcks>, poll: Duration) {
        while !acks.is_done() {
            tokio::time::sleep(poll).await;
        }
        if let Some(me) = me.upgrade() {
            me.pending.lock().remove(&id);
        }
    }
}

/// A reply as iobus reports it: the one value another node passes on (an
/// absent one — JavaScript's `undefined` — is no argument).
pub(super) fn first_argument(value: Option<&Value>, binary: Vec<Bytes>) -> Payload {
    match value {
        Some(v) => Payload::with_binary(vec![v.clone()], binary),
        None => Payload::empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::BroadcastAckResult;
    use serde_json::json;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    fn socket(id: &str) -> SocketInfo {
        SocketInfo { id: id.to_owned(), handshake: Value::Null, rooms: Vec::new(), data: Value::Null }
    }

    fn ids(sockets: &[SocketInfo]) -> Vec<&str> {
        sockets.iter().map(|s| s.id.as_str()).collect()
    }

    type Fetched = Arc<Mutex<Option<Vec<SocketInfo>>>>;

    /// A fetch `f1` of `others` other nodes, this node having socket `here`.
    fn fetching(others: usize) -> (tokio::runtime::Runtime, Arc<Requests>, Fetched) {
        let (rt, requests) = (runtime(), Requests::new("/"));
        let out: Fetched = Arc::new(Mutex::new(None));
        let sink = out.clone();
        let gather = Gather::Sockets(vec![socket("here")], Box::new(move |s| *sink.lock() = Some(s)));
        requests.wait(rt.handle(), "f1", others, Duration::from_secs(60), gather);
        (rt, requests, out)
    }

    #[test]
    fn a_fetch_completes_with_every_node_once_the_last_answered() {
        let (_rt, requests, out) = fetching(2);
        assert_eq!(requests.waiting("f1"), Some(Waiting::Fetch));
        requests.fetch_answer("f1", vec![socket("a")]);
        assert!(out.lock().is_none(), "one node has not answered");
        // Answers of another kind, or for another request, change nothing.
        requests.rooms_answer("f1", vec!["r".to_owned()]);
        requests.ack("f1", Payload::empty());
        requests.fetch_answer("f2", vec![socket("x")]);
        assert!(out.lock().is_none());
        requests.fetch_answer("f1", vec![socket("b")]);
        let sockets = out.lock().take().expect("complete");
        assert_eq!(ids(&sockets), ["here", "a", "b"]);
        assert_eq!(requests.waiting("f1"), None, "forgotten once complete");
        requests.fetch_answer("f1", vec![socket("late")]);
        assert!(out.lock().is_none());
    }

    #[test]
    fn a_listing_has_each_room_once_and_expires_with_what_arrived() {
        let rt = runtime();
        let requests = Requests::new("/");
        let out = Arc::new(Mutex::new(None));
        let sink = out.clone();
        let gather = Gather::Rooms(vec!["a".to_owned()], Box::new(move |r| *sink.lock() = Some(r)));
        requests.wait(rt.handle(), "r1", 3, Duration::from_millis(20), gather);
        requests.rooms_answer("r1", vec!["b".to_owned(), "a".to_owned()]);
        requests.rooms_answer("r1", vec!["c".to_owned(), "b".to_owned()]);
        assert!(out.lock().is_none(), "a third node has not answered");
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(60)).await });
        assert_eq!(out.lock().take(), Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]));
        assert_eq!(requests.waiting("r1"), None);
    }

    #[test]
    fn stopping_completes_what_waits() {
        let (_rt, requests, out) = fetching(1);
        requests.stop();
        assert_eq!(out.lock().take().map(|s| ids(&s).len()), Some(1));
        assert_eq!(requests.waiting("f1"), None);
    }

    #[test]
    fn counts_and_acks_reach_the_collector_it_waits_for() {
        let rt = runtime();
        let requests = Requests::new("/");
        let out: Arc<Mutex<Option<BroadcastAckResult>>> = Arc::new(Mutex::new(None));
        let sink = out.clone();
        let acks = BroadcastAcks::new(None, None, move |r| *sink.lock() = Some(r));
        requests.acks("b1", &acks);
        acks.expect_servers(1);
        // A server-side reply is not an ack of a broadcast.
        requests.server_side_reply("b1", Payload::one(json!("no")));
        requests.client_count("b1", 1);
        assert!(out.lock().is_none());
        requests.ack("b1", first_argument(Some(&json!("yes")), Vec::new()));
        let result = out.lock().take().expect("complete");
        assert_eq!(result.replies, vec![Payload::one(json!("yes"))]);
        // The entry stays until the keeper sees the collector done.
        assert_eq!(requests.waiting("b1"), Some(Waiting::Acks));
        let keeper =
            Requests::keep_until_done(Arc::downgrade(&requests), "b1".to_owned(), acks, Duration::from_millis(5));
        rt.block_on(keeper);
        assert_eq!(requests.waiting("b1"), None);
    }

    #[test]
    fn an_absent_reply_is_no_argument() {
        assert_eq!(first_argument(None, Vec::new()), Payload::empty());
        assert_eq!(first_argument(Some(&Value::Null), Vec::new()), Payload::one(Value::Null));
    }
}
