//! Completions the host is owed exactly once: the end of an emit-with-ack,
//! of an emit to many with acks, of a query answered through a callback.
//!
//! The core takes a closure and calls it once, possibly later (a cluster
//! adapter answers when the other servers do). An [`Owed`] inside that
//! closure queues the host's completion when it is called — and, should the
//! core drop the closure without calling it (a server freed while the
//! operation was still held), queues the completion's "nothing came" form
//! instead, so the promise of the header holds either way.
//!
//! One exception: when the call that hands the closure to the core fails,
//! the header promises that the completion is never called. The core may
//! drop the closure before the call returns its error, so an `Owed` waits
//! for its [`Issue`] to say how the call ended before it queues anything
//! from a drop.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;

use super::dispatch::{Dispatcher, Job};
use crate::Payload;
use crate::engine::ReadGate;
use crate::protocol::socketio::is_placeholder;

/// Makes the host's job from the result, or from `None` when the core
/// dropped the operation unanswered.
type MakeJob<T> = Box<dyn FnOnce(Option<T>) -> Job + Send>;

enum Phase<T> {
    /// The call that hands the operation to the core has not returned.
    Issuing,
    /// It returned success: a drop now owes the "nothing came" job.
    Issued,
    /// Dropped before the call returned: owed only if it succeeds.
    DroppedWhileIssuing(MakeJob<T>),
    /// The call failed: nothing is owed.
    Refused,
}

/// A completion owed to the host; see the module doc.
pub(crate) struct Owed<T> {
    make: Option<MakeJob<T>>,
    dispatch: Arc<Dispatcher>,
    phase: Arc<Mutex<Phase<T>>>,
}

/// How the call that issued an [`Owed`] ended; dropped unsettled, it counts
/// as failed.
pub(crate) struct Issue<T> {
    dispatch: Arc<Dispatcher>,
    phase: Option<Arc<Mutex<Phase<T>>>>,
}

impl<T: 'static> Owed<T> {
    /// A completion queued on `dispatch`, and the handle that settles how
    /// its issuing call ended.
    pub(crate) fn new(
        dispatch: &Arc<Dispatcher>,
        make: impl FnOnce(Option<T>) -> Job + Send + 'static,
    ) -> (Owed<T>, Issue<T>) {
        let phase = Arc::new(Mutex::new(Phase::Issuing));
        let owed = Owed { make: Some(Box::new(make)), dispatch: dispatch.clone(), phase: phase.clone() };
        (owed, Issue { dispatch: dispatch.clone(), phase: Some(phase) })
    }

    /// The operation ended with `value`.
    pub(crate) fn complete(self, value: T) {
        self.complete_from(value, None);
    }

    /// The operation ended with `value`, which a client sent: `source` is
    /// the read gate of its session, paused while the host is behind (see
    /// `Dispatcher::push`).
    pub(crate) fn complete_from(mut self, value: T, source: Option<&Arc<ReadGate>>) {
        if let Some(make) = self.make.take() {
            self.dispatch.push(make(Some(value)), source);
        }
    }
}

impl<T> Drop for Owed<T> {
    fn drop(&mut self) {
        let Some(make) = self.make.take() else { return };
        let mut phase = self.phase.lock();
        match *phase {
            Phase::Issued => {
                drop(phase);
                self.dispatch.push(make(None), None);
            }
            Phase::Issuing => *phase = Phase::DroppedWhileIssuing(make),
            Phase::DroppedWhileIssuing(_) | Phase::Refused => {}
        }
    }
}

impl<T> Issue<T> {
    /// Records how the issuing call ended (`ok`: it returned success).
    pub(crate) fn settle(mut self, ok: bool) {
        self.finish(ok);
    }

    fn finish(&mut self, ok: bool) {
        let Some(phase) = self.phase.take() else { return };
        let previous = std::mem::replace(&mut *phase.lock(), if ok { Phase::Issued } else { Phase::Refused });
        if let (true, Phase::DroppedWhileIssuing(make)) = (ok, previous) {
            self.dispatch.push(make(None), None);
        }
    }
}

impl<T> Drop for Issue<T> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// Every reply of an emit to many, as the host receives them: the JSON
/// array of the replies' argument arrays, and all their attachments in one
/// list, each reply's placeholders renumbered past the attachments of the
/// replies before it.
pub(crate) fn merge_replies(replies: Vec<Payload>) -> (String, Vec<Bytes>) {
    fn renumber(v: &mut Value, offset: u64) {
        if is_placeholder(v) {
            if let Some(num) = v.get_mut("num") {
                if let Some(n) = num.as_u64() {
                    *num = Value::from(n + offset);
                }
            }
            return;
        }
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| renumber(x, offset)),
            Value::Object(m) => m.values_mut().for_each(|x| renumber(x, offset)),
            _ => {}
        }
    }
    let mut binary = Vec::new();
    let mut all = Vec::with_capacity(replies.len());
    for reply in replies {
        let mut args = Value::Array(reply.args);
        if !reply.binary.is_empty() {
            renumber(&mut args, binary.len() as u64);
            binary.extend(reply.binary);
        }
        all.push(args);
    }
    let json = serde_json::to_string(&all).unwrap_or_else(|_| "[]".into());
    (json, binary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_keep_every_attachment_with_placeholders_renumbered() {
        let p = crate::server::placeholder;
        let replies = vec![
            Payload::with_binary(
                vec![json!("a"), p(0), json!({"x": p(1)})],
                vec![Bytes::from("A0"), Bytes::from("A1")],
            ),
            Payload::new(vec![json!(2)]),
            Payload::with_binary(vec![json!([p(0)])], vec![Bytes::from("C0")]),
        ];
        let (text, binary) = merge_replies(replies);
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v, json!([["a", p(0), {"x": p(1)}], [2], [[p(2)]]]));
        assert_eq!(binary, vec![Bytes::from("A0"), Bytes::from("A1"), Bytes::from("C0")]);
        assert_eq!(merge_replies(Vec::new()).0, "[]");
    }
}
