//! What reaches a namespace's adapter from the other nodes: the entries of
//! the stream, in order (a broadcast that connection state recovery stores
//! goes through `stream_log`, this node's own included), and the messages
//! published on its channels — requests, acted on and answered on the
//! asking node's channel, and the answers to this node's own requests,
//! handed to its `Requests` by request id.

use std::sync::Arc;

use serde_json::{Value, json};

use super::NspAdapter;
use crate::redis::requests::first_argument;
use crate::redis::stream_log::StreamLog;
use crate::redis::streams_wire::{self as sw, Message, MessageType, StreamId};
use crate::redis::wire;
use crate::server::{BroadcastAcks, Namespace, Payload, ServerSideReply};

impl NspAdapter {
    /// An entry of the stream, in order.
    pub(super) fn on_entry(&self, log: &StreamLog, id: StreamId, message: Message, size: usize) {
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
    pub(super) fn on_published(&self, payload: &[u8]) {
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
        let Some((event, data)) = wire::server_side_event(message.data.get("packet")) else {
            return;
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
}
