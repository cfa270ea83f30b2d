//! What a namespace's server asks of its adapter (the [`Adapter`]
//! operations): each acts on this node's sockets through the namespace's
//! `local_*` operations and is written to the stream or published to the
//! other nodes; a request that waits for their answers is registered with
//! the adapter's `Requests` before it is sent. Also the sessions of
//! connection state recovery, kept in Redis.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{NspAdapter, Persisted};
use crate::redis::connection::Link;
use crate::redis::requests::{FetchDone, Gather, Requests};
use crate::redis::stream_log::{self, StreamReplay, Write};
use crate::redis::streams_wire::{self as sw, Message, MessageType, StreamId};
use crate::server::{
    Adapter, BroadcastAcks, BroadcastOptions, EventPacket, Namespace, RestoreDone, RestoredSession, SavedSession,
};

/// How many entries one `XRANGE` of a restore takes.
const RESTORE_PAGE: usize = 1000;
/// How often an emit with acks is looked at until it completes.
const KEEP_POLL: Duration = Duration::from_millis(100);

impl NspAdapter {
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
