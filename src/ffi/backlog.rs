//! The bound on callbacks waiting for the host: what they hold, and which
//! sessions are not read meanwhile.
//!
//! Every queued callback counts the bytes it holds (`Job::held_bytes`) until
//! it has run or its record has been taken. A session that adds a callback
//! while the total is over the limit has its reads paused (its engine
//! [`ReadGate`]): the client's next messages wait in its TCP connection and
//! its own buffers, so the sender is slowed to the host's pace. Nothing is
//! dropped: what a session had already read is queued in full, which is why
//! the total may pass the limit by one read per paused session (a websocket
//! burst, or one polling POST of at most maxHttpBufferSize). When the total
//! falls to the resume mark, half the limit, every paused session reads again;
//! the gap keeps the host busy while the clients refill the queue, instead of
//! pausing and resuming at every callback. Sessions that send the host
//! nothing are never paused.
//!
//! Adding and removing cost one atomic operation each; the list of paused
//! sessions is locked only over the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::engine::ReadGate;

/// The default limit: 4 MiB.
pub(crate) const DEFAULT_LIMIT: usize = 4 << 20;

pub(crate) struct Backlog {
    bytes: AtomicUsize,
    callbacks: AtomicUsize,
    limit: usize,
    resume_at: usize,
    /// The gates this backlog closed. Pausing, listing and resuming happen
    /// under this lock, so a gate is never left closed off the list.
    paused: Mutex<Vec<Arc<ReadGate>>>,
    /// Whether `paused` may be non-empty: lets `remove` skip the lock.
    any_paused: AtomicBool,
}

impl Backlog {
    pub(crate) fn new(limit: usize) -> Backlog {
        Backlog {
            bytes: AtomicUsize::new(0),
            callbacks: AtomicUsize::new(0),
            limit,
            resume_at: limit / 2,
            paused: Mutex::new(Vec::new()),
            any_paused: AtomicBool::new(false),
        }
    }

    /// A callback holding `cost` bytes was queued; `source` is the gate of
    /// the session whose read caused it, if any.
    pub(crate) fn add(&self, cost: usize, source: Option<&Arc<ReadGate>>) {
        self.callbacks.fetch_add(1, Ordering::Relaxed);
        let total = self.bytes.fetch_add(cost, Ordering::SeqCst) + cost;
        if total <= self.limit {
            return;
        }
        let Some(gate) = source else { return };
        {
            let mut paused = self.paused.lock();
            if gate.pause() {
                paused.push(gate.clone());
            }
            self.any_paused.store(true, Ordering::SeqCst);
        }
        // The host may have caught up between the add and the pause, and
        // its `remove` seen nothing to resume (SeqCst: either it sees
        // `any_paused`, or this load sees its decrease).
        if self.bytes.load(Ordering::SeqCst) <= self.resume_at {
            self.resume_all();
        }
    }

    /// A callback holding `cost` bytes has run, been taken or been dropped.
    pub(crate) fn remove(&self, cost: usize) {
        self.callbacks.fetch_sub(1, Ordering::Relaxed);
        let total = self.bytes.fetch_sub(cost, Ordering::SeqCst) - cost;
        if total <= self.resume_at && self.any_paused.load(Ordering::SeqCst) {
            self.resume_all();
        }
    }

    /// Lets every paused session read again.
    pub(crate) fn resume_all(&self) {
        let mut paused = self.paused.lock();
        self.any_paused.store(false, Ordering::SeqCst);
        for gate in paused.drain(..) {
            gate.resume();
        }
    }

    /// The bytes held by pending callbacks.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }

    /// How many callbacks are pending.
    pub(crate) fn callbacks(&self) -> usize {
        self.callbacks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_adding_over_the_limit_pauses_until_the_resume_mark() {
        let backlog = Backlog::new(1000);
        let (a, b) = (Arc::new(ReadGate::default()), Arc::new(ReadGate::default()));
        for _ in 0..10 {
            backlog.add(100, Some(&a));
        }
        assert_eq!((backlog.bytes(), backlog.callbacks()), (1000, 10));
        assert!(!a.is_paused(), "at the limit, not over it");
        backlog.add(100, Some(&a));
        assert!(a.is_paused());
        assert!(!b.is_paused(), "a session that added nothing reads on");
        // Added without a session (a disconnect): counted, pauses nobody.
        backlog.add(100, None);
        assert_eq!(backlog.bytes(), 1200);
        backlog.add(100, Some(&b));
        assert!(b.is_paused());
        // 1300 down to 600: still over the resume mark (500).
        for _ in 0..7 {
            backlog.remove(100);
        }
        assert!(a.is_paused() && b.is_paused());
        backlog.remove(100);
        assert_eq!(backlog.bytes(), 500);
        assert!(!a.is_paused() && !b.is_paused());
        assert_eq!(backlog.callbacks(), 5);
    }

    #[test]
    fn a_gate_is_listed_once_and_a_resume_with_nothing_paused_is_harmless() {
        let backlog = Backlog::new(100);
        let a = Arc::new(ReadGate::default());
        for _ in 0..5 {
            backlog.add(200, Some(&a));
        }
        assert_eq!(backlog.paused.lock().len(), 1);
        for _ in 0..5 {
            backlog.remove(200);
        }
        assert!(!a.is_paused());
        assert!(backlog.paused.lock().is_empty());
        backlog.resume_all();
        assert_eq!((backlog.bytes(), backlog.callbacks()), (0, 0));
    }

    #[test]
    fn concurrent_adds_and_removes_never_leave_a_gate_closed_below_the_mark() {
        // A producer adds over the limit while a consumer drains: whatever
        // the interleaving, once everything is removed no gate is closed.
        for _ in 0..50 {
            let backlog = Arc::new(Backlog::new(1000));
            let gates: Vec<_> = (0..4).map(|_| Arc::new(ReadGate::default())).collect();
            let (tx, rx) = std::sync::mpsc::channel::<usize>();
            let consumer = std::thread::spawn({
                let backlog = backlog.clone();
                move || {
                    for cost in rx {
                        backlog.remove(cost);
                    }
                }
            });
            for i in 0..2000 {
                let cost = 50 + i % 7;
                backlog.add(cost, Some(&gates[i % gates.len()]));
                let _ = tx.send(cost);
            }
            drop(tx);
            let _ = consumer.join();
            assert_eq!(backlog.bytes(), 0);
            assert!(gates.iter().all(|g| !g.is_paused()));
        }
    }
}
