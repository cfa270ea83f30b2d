//! Sends deferred to the end of a burst of client messages.
//!
//! A connection task handles everything that has arrived on its socket in
//! one go (a [`Burst`]). While it does, one piece of work may be deferred on
//! its thread (the Socket.IO layer defers a broadcast, so that consecutive
//! broadcasts to the same rooms walk the rooms once and queue their frames
//! together). Whatever else would reach a client first — any queued frame,
//! a session closing, a socket joining, leaving or connecting — sends the
//! deferred work before it acts ([`flush`]), so every client still sees
//! packets in the order they were emitted. The burst sends it when it ends.
//!
//! A burst never spans an `.await` (its guard is not `Send`), so deferred
//! work never waits on a thread that moved on to another task.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

/// Work deferred to the end of the burst.
pub(crate) trait Deferred {
    /// Does it now.
    fn run(self: Box<Self>);
    /// For merging more of the same into it.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static PENDING: RefCell<Option<Box<dyn Deferred>>> = const { RefCell::new(None) };
}

/// A burst under way on this thread; ending it runs what was deferred.
pub(crate) struct Burst {
    _on_this_thread: PhantomData<*const ()>,
}

impl Burst {
    pub(crate) fn begin() -> Burst {
        DEPTH.with(|d| d.set(d.get() + 1));
        Burst { _on_this_thread: PhantomData }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        flush();
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        crate::sched::wake_deferred_if_late();
    }
}

/// Whether work may be deferred on this thread now.
pub(crate) fn active() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// Runs the deferred work, if any, now.
#[inline]
pub(crate) fn flush() {
    let pending = PENDING.with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.take()));
    if let Some(work) = pending {
        work.run();
    }
}

/// Defers work: `merge` may fold it into the work already deferred (it
/// returns true when it did); otherwise that work runs first and `make()`
/// becomes the deferred work. Outside a burst, `make()` runs at once.
pub(crate) fn defer(merge: impl FnOnce(&mut dyn Any) -> bool, make: impl FnOnce() -> Box<dyn Deferred>) {
    if !active() {
        make().run();
        return;
    }
    let merged = PENDING.with(|p| match p.try_borrow_mut() {
        Ok(mut p) => p.as_mut().is_some_and(|work| merge(work.as_any_mut())),
        Err(_) => false,
    });
    if merged {
        return;
    }
    flush();
    let work = make();
    let refused = PENDING.with(|p| match p.try_borrow_mut() {
        Ok(mut p) => {
            *p = Some(work);
            None
        }
        Err(_) => Some(work),
    });
    // Only reachable if deferring re-entered itself: then do it now.
    if let Some(work) = refused {
        work.run();
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    struct Log {
        items: Vec<u32>,
        out: Rc<RefCell<Vec<Vec<u32>>>>,
    }

    impl Deferred for Log {
        fn run(self: Box<Self>) {
            self.out.borrow_mut().push(self.items);
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    fn push(out: &Rc<RefCell<Vec<Vec<u32>>>>, item: u32, mergeable: bool) {
        defer(
            |any| match any.downcast_mut::<Log>() {
                Some(log) if mergeable => {
                    log.items.push(item);
                    true
                }
                _ => false,
            },
            || Box::new(Log { items: vec![item], out: out.clone() }),
        );
    }

    #[test]
    fn merges_within_a_burst_and_runs_at_its_end() {
        let out = Rc::new(RefCell::new(Vec::new()));
        push(&out, 1, true);
        assert_eq!(*out.borrow(), vec![vec![1]], "outside a burst: at once");
        {
            let _burst = Burst::begin();
            push(&out, 2, true);
            push(&out, 3, true);
            assert_eq!(out.borrow().len(), 1, "deferred");
            push(&out, 4, false);
            assert_eq!(*out.borrow(), vec![vec![1], vec![2, 3]], "what cannot merge runs what came before");
            flush();
            assert_eq!(out.borrow().len(), 3);
            push(&out, 5, true);
        }
        assert_eq!(*out.borrow(), vec![vec![1], vec![2, 3], vec![4], vec![5]]);
        assert!(!active());
    }
}
