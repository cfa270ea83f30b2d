//! The broadcast operator: who (rooms, exceptions, the sender left out) and
//! how (volatile), then emit — or act on the matching sockets.
//!
//! A broadcast is encoded once; every recipient's queue gets the same bytes.

use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;

use super::adapter::BroadcastOptions;
use super::namespace::Namespace;
use super::payload::Payload;
use super::socket::{EmitError, Socket, check_emit, event_frames};
use crate::Sid;
use crate::engine::burst;
use crate::protocol::engine::Frame;

/// Broadcasts waiting for the end of a burst: the same selection, frames in
/// emit order.
struct Deferred {
    op: BroadcastOperator,
    frames: Vec<Frame>,
}

impl burst::Deferred for Deferred {
    fn run(self: Box<Self>) {
        self.op.deliver(&self.frames);
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Selects sockets of one namespace and emits to them or acts on them.
#[derive(Debug, Clone)]
pub struct BroadcastOperator {
    nsp: Arc<Namespace>,
    opts: BroadcastOptions,
    volatile: bool,
}

impl BroadcastOperator {
    pub(crate) fn new(nsp: Arc<Namespace>) -> BroadcastOperator {
        BroadcastOperator { nsp, opts: BroadcastOptions::default(), volatile: false }
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
        self.opts.except_sid = Some(sid);
        self
    }

    /// Drops the packet for recipients that cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// The selection.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// Emits to every selected socket.
    ///
    /// Called while the server handles a burst of messages from one
    /// connection (a handler of the Rust API), the packet is queued when the
    /// burst ends or before anything else reaches a client, whichever comes
    /// first; consecutive broadcasts to the same selection are then queued
    /// together, walking the rooms once.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        let frames = event_frames(self.nsp.name(), event, &payload, None);
        if self.volatile || !burst::active() {
            self.deliver(&frames);
            return Ok(());
        }
        let frames = Cell::new(Some(frames));
        burst::defer(
            |pending| match pending.downcast_mut::<Deferred>() {
                Some(d) if Arc::ptr_eq(&d.op.nsp, &self.nsp) && d.op.opts == self.opts => {
                    d.frames.extend(frames.take().unwrap_or_default());
                    true
                }
                _ => false,
            },
            || Box::new(Deferred { op: self.clone(), frames: frames.take().unwrap_or_default() }),
        );
        Ok(())
    }

    /// Emits and returns how many sockets the packet was queued for.
    pub fn emit_count(&self, event: &str, payload: impl Into<Payload>) -> Result<usize, EmitError> {
        let payload = payload.into();
        check_emit(event, &payload)?;
        let frames = event_frames(self.nsp.name(), event, &payload, None);
        Ok(self.deliver(&frames))
    }

    /// Queues frames for every selected socket; how many it reached.
    fn deliver(&self, frames: &[Frame]) -> usize {
        let mut reached = 0;
        // Queueing takes only each session's own lock and never closes a
        // session on the spot, so the room can be walked under its locks.
        self.nsp.for_each_recipient(&self.opts, &mut |socket| {
            if !socket.connected() {
                return;
            }
            let sent = if self.volatile {
                socket.client.session.send_volatile(frames)
            } else {
                socket.client.session.send_frames(frames)
            };
            reached += usize::from(sent);
        });
        reached
    }

    /// The selected sockets.
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.nsp.resolve(&self.opts)
    }

    /// Makes the selected sockets join a room.
    pub fn join(&self, room: &str) {
        for s in self.sockets() {
            s.join(room);
        }
    }

    /// Makes the selected sockets leave a room.
    pub fn leave(&self, room: &str) {
        for s in self.sockets() {
            s.leave(room);
        }
    }

    /// Disconnects the selected sockets (with `close`, their whole connections).
    pub fn disconnect(&self, close: bool) {
        for s in self.sockets() {
            s.disconnect(close);
        }
    }
}
