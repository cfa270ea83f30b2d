//! The broadcast operator: a selection of a namespace's sockets (rooms,
//! exceptions, flags), then what to do with it — emit, emit with acks,
//! fetch, join, leave, disconnect. Every operation goes through the
//! namespace's adapter, so it reaches the sockets of other nodes too when
//! the adapter connects several.

use std::sync::Arc;
use std::time::Duration;

use super::adapter::{BroadcastAckResult, BroadcastAcks, BroadcastOptions, EventPacket, SocketInfo};
use super::namespace::Namespace;
use super::payload::Payload;
use super::socket::{EmitError, Socket, check_emit};
use crate::Sid;

/// Selects sockets of one namespace and emits to them or acts on them.
#[derive(Debug, Clone)]
pub struct BroadcastOperator {
    nsp: Arc<Namespace>,
    opts: BroadcastOptions,
}

impl BroadcastOperator {
    pub(crate) fn new(nsp: Arc<Namespace>) -> BroadcastOperator {
        BroadcastOperator { nsp, opts: BroadcastOptions::default() }
    }

    pub(crate) fn with_options(nsp: Arc<Namespace>, opts: BroadcastOptions) -> BroadcastOperator {
        BroadcastOperator { nsp, opts }
    }

    /// Adds a room to reach (rooms add up; each socket receives once).
    pub fn to(mut self, room: &str) -> Self {
        if !self.opts.rooms.iter().any(|r| r == room) {
            self.opts.rooms.push(room.to_owned());
        }
        self
    }

    /// Same as [`to`](Self::to).
    pub fn in_room(self, room: &str) -> Self {
        self.to(room)
    }

    /// Leaves out the members of a room.
    pub fn except(mut self, room: &str) -> Self {
        if !self.opts.except.iter().any(|r| r == room) {
            self.opts.except.push(room.to_owned());
        }
        self
    }

    /// Leaves out one socket.
    pub fn except_socket(mut self, sid: Sid) -> Self {
        if !self.opts.except_sids.contains(&sid) {
            self.opts.except_sids.push(sid);
        }
        self
    }

    /// Drops the packet for recipients that cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.opts.flags.volatile = true;
        self
    }

    /// This node only: the adapter does not forward the operation.
    pub fn local(mut self) -> Self {
        self.opts.flags.local = true;
        self
    }

    /// How long [`emit_with_ack`](Self::emit_with_ack) waits for replies.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.flags.timeout = Some(timeout);
        self
    }

    /// The selection.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// The namespace.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.nsp
    }

    /// Emits to every selected socket; the packet is encoded once.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        let packet = EventPacket { event: event.to_owned(), payload, id: None };
        self.nsp.adapter().broadcast(&self.nsp, &packet, &self.opts);
        Ok(())
    }

    /// Emits to every selected socket and asks each for an ack. `done` runs
    /// once with every reply, the number of clients the packet reached, and
    /// whether the timeout (see [`timeout`](Self::timeout); none: wait for
    /// every reply or disconnect) passed first. A recipient that disconnects
    /// without replying is no longer waited for.
    pub fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        done: impl FnOnce(BroadcastAckResult) + Send + 'static,
    ) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        let packet = EventPacket { event: event.to_owned(), payload, id: Some(self.nsp.next_ack_id()) };
        let acks = BroadcastAcks::new(self.opts.flags.timeout, self.nsp.runtime().as_ref(), done);
        self.nsp.adapter().broadcast_with_ack(&self.nsp, &packet, &self.opts, &acks);
        Ok(())
    }

    /// [`emit_with_ack`](Self::emit_with_ack), awaited.
    pub async fn emit_with_ack_async(
        &self,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<BroadcastAckResult, EmitError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.emit_with_ack(event, payload, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| EmitError::Disconnected)
    }

    /// The selected sockets (on every node, through the adapter).
    pub fn fetch_sockets(&self, done: impl FnOnce(Vec<SocketInfo>) + Send + 'static) {
        self.nsp.adapter().fetch_sockets(&self.nsp, &self.opts, Box::new(done));
    }

    /// [`fetch_sockets`](Self::fetch_sockets), awaited.
    pub async fn fetch_sockets_async(&self) -> Vec<SocketInfo> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.fetch_sockets(move |s| {
            let _ = tx.send(s);
        });
        rx.await.unwrap_or_default()
    }

    /// The selected sockets of this node.
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.nsp.resolve(&self.opts)
    }

    /// Makes the selected sockets join a room.
    pub fn join(&self, room: &str) {
        self.join_many(&[room]);
    }

    /// Makes the selected sockets join rooms.
    pub fn join_many(&self, rooms: &[&str]) {
        let rooms: Vec<String> = rooms.iter().map(|r| (*r).to_owned()).collect();
        self.nsp.adapter().add_sockets(&self.nsp, &self.opts, &rooms);
    }

    /// Makes the selected sockets leave a room.
    pub fn leave(&self, room: &str) {
        self.leave_many(&[room]);
    }

    /// Makes the selected sockets leave rooms.
    pub fn leave_many(&self, rooms: &[&str]) {
        let rooms: Vec<String> = rooms.iter().map(|r| (*r).to_owned()).collect();
        self.nsp.adapter().del_sockets(&self.nsp, &self.opts, &rooms);
    }

    /// Disconnects the selected sockets (with `close`, their whole connections).
    pub fn disconnect(&self, close: bool) {
        self.nsp.adapter().disconnect_sockets(&self.nsp, &self.opts, close);
    }
}
