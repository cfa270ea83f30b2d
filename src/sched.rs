//! How the library's own threads are scheduled.

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
