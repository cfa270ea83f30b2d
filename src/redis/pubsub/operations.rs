//! What a namespace's server asks of its adapter (the [`Adapter`]
//! operations): each acts on this node's sockets through the namespace's
//! `local_*` operations and is published to the other nodes; a request that
//! waits for their answers is registered with the adapter's `Requests`
//! before it is sent.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};

use super::{NspAdapter, Route};
use crate::redis::connection::Link;
use crate::redis::requests::{FetchDone, Gather, Requests, RoomsDone};
use crate::redis::wire::{self, RequestType};
use crate::server::{Adapter, BroadcastAcks, BroadcastOptions, EventPacket, Namespace};

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
        let (requests, acks) = (Arc::downgrade(&self.requests), acks.clone());
        let poll = opts.flags.timeout.unwrap_or(self.shared.config.requests_timeout).min(Duration::from_millis(500));
        let (request_channel, name) = (self.channels.request.clone(), self.name.clone());
        let asker = link.clone();
        link.runtime().spawn(async move {
            acks.expect_servers(asker.node_count(&request_channel, &name).await);
            drop(asker);
            Requests::keep_until_done(requests, id, acks, poll).await;
        });
    }

    fn fetch_sockets(&self, nsp: &Arc<Namespace>, opts: &BroadcastOptions, done: FetchDone) {
        let gather = Gather::Sockets(nsp.local_fetch_sockets(opts), done);
        let link = if opts.flags.local { None } else { self.link() };
        let selection = wire::opts_to_json(opts);
        self.gather(link, gather, move |uid, id| {
            json!({ "uid": uid, "requestId": id, "type": RequestType::RemoteFetch as u8, "opts": selection })
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
        self.gather(
            self.link(),
            Gather::Rooms(nsp.rooms(), done),
            |uid, id| json!({ "uid": uid, "requestId": id, "type": RequestType::AllRooms as u8 }),
        );
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
            let others = asker.node_count(&me.channels.request, &me.name).await - 1;
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
    /// Sends a request whose answers are gathered (`request` makes it from
    /// this node's id and the request's), and waits for every other node's
    /// answer, at most the requests timeout. With no other node, or no
    /// Redis (`link`), `gather` completes with this node's part at once.
    fn gather(
        &self,
        link: Option<Arc<Link>>,
        gather: Gather,
        request: impl FnOnce(&str, &str) -> Value + Send + 'static,
    ) {
        let Some(link) = link else {
            gather.complete();
            return;
        };
        let me = self.me.clone();
        let asker = link.clone();
        link.runtime().spawn(async move {
            let Some(me) = me.upgrade() else {
                gather.complete();
                return;
            };
            let others = asker.node_count(&me.channels.request, &me.name).await - 1;
            if others == 0 {
                gather.complete();
                return;
            }
            let id = wire::random_id();
            let request = request(me.uid(), &id);
            me.requests.wait(asker.runtime(), &id, others, me.shared.config.requests_timeout, gather);
            me.publish_json(&asker, me.channels.request.clone(), &request);
        });
    }

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
