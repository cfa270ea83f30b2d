//! What reaches a namespace's adapter from the other nodes (and from
//! emitters): their broadcasts, delivered here; their requests, acted on
//! and answered on a response channel; and the answers to this node's own
//! requests, handed to its `Requests` by request id.

use std::sync::Arc;

use serde_json::{Value, json};

use super::NspAdapter;
use crate::redis::connection::Link;
use crate::redis::requests::{Waiting, first_argument};
use crate::redis::wire::{self, RequestType};
use crate::server::{BroadcastAcks, BroadcastOptions, Namespace, Payload, ServerSideReply};

impl NspAdapter {
    /// A broadcast from another node (or an emitter).
    pub(super) fn on_broadcast(&self, channel: &str, payload: &[u8]) {
        let Some(nsp) = self.namespace() else {
            return;
        };
        if !channel.starts_with(self.channels.broadcast.as_str()) {
            return;
        }
        // A one-room broadcast for a room nobody here is in: not even decoded.
        if let Some(room) = self.channels.room_of(channel) {
            if !nsp.room_index().has_room(room) {
                return;
            }
        }
        let broadcast = match wire::decode_broadcast(payload) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(nsp = %self.name, "ignoring a broadcast: {e}");
                return;
            }
        };
        if broadcast.uid == self.uid() || broadcast.nsp != self.name {
            return;
        }
        nsp.local_broadcast(&broadcast.packet, &broadcast.opts);
    }

    /// A request from another node (or an emitter).
    pub(super) fn on_request(&self, payload: &[u8]) {
        let (request, binary) = match wire::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(nsp = %self.name, "ignoring a request: {e}");
                return;
            }
        };
        let uid = wire::str_field(&request, "uid");
        if uid == Some(self.uid()) {
            // This node did its part when it sent the request.
            return;
        }
        let (Some(nsp), Some(link)) = (self.namespace(), self.link()) else {
            return;
        };
        let Some(kind) = RequestType::of(&request) else {
            tracing::debug!(nsp = %self.name, "ignoring a request of unknown type");
            return;
        };
        let request_id = wire::str_field(&request, "requestId");
        let opts = request.get("opts");
        match kind {
            RequestType::Sockets => {
                let Some(id) = request_id else { return };
                let selection =
                    BroadcastOptions { rooms: wire::rooms(request.get("rooms")), ..BroadcastOptions::default() };
                let sockets: Vec<String> =
                    nsp.room_index().recipients(&selection).iter().map(ToString::to_string).collect();
                let answer = json!({ "requestId": id, "sockets": sockets });
                self.respond(&link, uid, answer.to_string().into_bytes());
            }
            RequestType::AllRooms => {
                let Some(id) = request_id else { return };
                let answer = json!({ "requestId": id, "rooms": nsp.rooms() });
                self.respond(&link, uid, answer.to_string().into_bytes());
            }
            RequestType::RemoteJoin | RequestType::RemoteLeave => {
                let join = kind == RequestType::RemoteJoin;
                if opts.is_some() {
                    let selection = wire::opts_from(opts);
                    let rooms = wire::rooms(request.get("rooms"));
                    if join {
                        nsp.local_add_sockets(&selection, &rooms);
                    } else {
                        nsp.local_del_sockets(&selection, &rooms);
                    }
                    return;
                }
                // The older form: one socket, one room, answered.
                let sid = wire::str_field(&request, "sid");
                let room = request.get("room").and_then(|r| wire::rooms(Some(&json!([r]))).pop());
                let (Some(socket), Some(room)) = (sid.and_then(|s| nsp.socket_by_str(s)), room) else {
                    return;
                };
                if join {
                    socket.join(&room);
                } else {
                    socket.leave(&room);
                }
                self.respond(&link, uid, json!({ "requestId": request_id }).to_string().into_bytes());
            }
            RequestType::RemoteDisconnect => {
                let close = request.get("close").and_then(Value::as_bool).unwrap_or(false);
                if opts.is_some() {
                    nsp.local_disconnect_sockets(&wire::opts_from(opts), close);
                    return;
                }
                let Some(socket) = wire::str_field(&request, "sid").and_then(|s| nsp.socket_by_str(s)) else {
                    return;
                };
                socket.disconnect(close);
                self.respond(&link, uid, json!({ "requestId": request_id }).to_string().into_bytes());
            }
            RequestType::RemoteFetch => {
                let Some(id) = request_id else { return };
                let sockets: Vec<Value> =
                    nsp.local_fetch_sockets(&wire::opts_from(opts)).iter().map(wire::socket_to_json).collect();
                let answer = json!({ "requestId": id, "sockets": sockets });
                self.respond(&link, uid, answer.to_string().into_bytes());
            }
            RequestType::ServerSideEmit => self.on_server_side_emit(&nsp, &link, &request),
            RequestType::Broadcast => {
                let Some(id) = request_id else { return };
                let Some((_, mut packet)) = request.get("packet").and_then(|p| wire::packet_from(p, binary)) else {
                    return;
                };
                packet.id = Some(nsp.next_ack_id());
                let to = self.channels.response_to(uid, self.shared.config.specific_response_channel);
                let (counts, replies) = (Arc::downgrade(&link), Arc::downgrade(&link));
                let (count_to, reply_to) = (to.clone(), to);
                let (count_id, reply_id) = (id.to_owned(), id.to_owned());
                let acks = BroadcastAcks::forwarding(
                    wire::timeout_from(opts),
                    Some(link.runtime()),
                    move |n| {
                        if let Some(link) = counts.upgrade() {
                            let count = json!({ "type": RequestType::BroadcastClientCount as u8, "requestId": count_id, "clientCount": n });
                            link.publish(count_to.clone(), count.to_string().into_bytes());
                        }
                    },
                    move |reply| {
                        if let Some(link) = replies.upgrade() {
                            link.publish(reply_to.clone(), wire::encode_broadcast_ack(&reply_id, &reply));
                        }
                    },
                );
                nsp.local_broadcast_with_ack(&packet, &wire::opts_from(opts), &acks);
            }
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {}
        }
    }

    fn on_server_side_emit(&self, nsp: &Namespace, link: &Arc<Link>, request: &Value) {
        let Some((event, data)) = wire::server_side_event(request.get("data")) else {
            return;
        };
        let reply: Option<ServerSideReply> = wire::str_field(request, "requestId").map(|id| {
            let id = id.to_owned();
            let link = Arc::downgrade(link);
            // Replies go to the shared response channel, as npm nodes send them.
            let channel = self.channels.response.clone();
            Box::new(move |payload: Payload| {
                let first = payload.args.first().map_or(Value::Null, |a| wire::json_with_buffers(a, &payload.binary));
                if let Some(link) = link.upgrade() {
                    let answer = json!({ "type": RequestType::ServerSideEmit as u8, "requestId": id, "data": first });
                    link.publish(channel, answer.to_string().into_bytes());
                }
            }) as ServerSideReply
        });
        nsp.handle_server_side_emit(&event, Payload::new(data), reply);
    }

    /// An answer to one of this node's requests.
    pub(super) fn on_response(&self, payload: &[u8]) {
        let Ok((response, binary)) = wire::decode(payload) else {
            tracing::debug!(nsp = %self.name, "ignoring a malformed response");
            return;
        };
        let Some(id) = wire::str_field(&response, "requestId") else {
            return;
        };
        // The answer's kind is the kind of the request waiting for it: only
        // broadcasts with acks get answers of two kinds, told by their type.
        let requests = &self.requests;
        match requests.waiting(id) {
            None => {}
            Some(Waiting::Acks) => match RequestType::of(&response) {
                Some(RequestType::BroadcastClientCount) => {
                    requests.client_count(id, response.get("clientCount").and_then(Value::as_u64).unwrap_or(0));
                }
                Some(RequestType::BroadcastAck) => requests.ack(id, first_argument(response.get("packet"), binary)),
                _ => {}
            },
            Some(Waiting::ServerSide) => requests.server_side_reply(id, first_argument(response.get("data"), binary)),
            Some(Waiting::Fetch) => requests.fetch_answer(id, wire::sockets(response.get("sockets"))),
            Some(Waiting::Rooms) => requests.rooms_answer(id, wire::rooms(response.get("rooms"))),
        }
    }
}
