//! How the library's own threads are scheduled, and when they wake others.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Puts the calling thread in the batch scheduling class (Linux
/// `SCHED_BATCH`): it gets the same share of the CPU, but a wake-up does not
/// preempt the thread that is running. When the network threads, the
/// dispatcher and the host share a core, each then finishes the batch of
/// work in hand before the next one runs, instead of switching at every
/// event. Elsewhere, and if the system refuses, nothing changes.
pub(crate) fn batch_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid value.
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    }
}

/// Something a network thread wakes once it has finished the work in hand.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

thread_local! {
    static NETWORK: Cell<bool> = const { Cell::new(false) };
    static WAKES: RefCell<Vec<Arc<dyn Wake>>> = const { RefCell::new(Vec::new()) };
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How long a wake-up may wait for a network thread that stays busy.
const WAKE_DELAY: Duration = Duration::from_micros(200);

/// A network thread is about to sleep: it has no more work in hand.
pub(crate) fn network_thread_parks() {
    NETWORK.with(|n| n.set(true));
    wake_deferred();
}

/// On a network thread, defers waking `w` until the thread has no more work
/// in hand (it is about to sleep) or a short while has passed, so that a
/// consumer on the same core is woken once for a batch of work rather than
/// at its first item; returns false elsewhere (wake it now).
pub(crate) fn wake_later(w: Arc<dyn Wake>) -> bool {
    if !NETWORK.with(Cell::get) {
        return false;
    }
    WAKES.with(|list| {
        let mut list = list.borrow_mut();
        if list.is_empty() {
            SINCE.with(|s| s.set(Some(Instant::now())));
        }
        if !list.iter().any(|x| Arc::ptr_eq(x, &w)) {
            list.push(w);
        }
    });
    true
}

/// Wakes what this thread deferred (it has no more work in hand).
pub(crate) fn wake_deferred() {
    let list = WAKES.with(|list| std::mem::take(&mut *list.borrow_mut()));
    SINCE.with(|s| s.set(None));
    for w in list {
        w.wake();
    }
}

/// Wakes what this thread deferred if it has waited long enough (called
/// between pieces of work, for a thread that stays busy).
pub(crate) fn wake_deferred_if_late() {
    if SINCE.with(Cell::get).is_some_and(|t| t.elapsed() >= WAKE_DELAY) {
        wake_deferred();
    }
}
