//! Pausing what a session reads: the gate a consumer closes when it cannot
//! keep up with the session's messages (the C API's host queue), and that
//! the transports wait on before they read more.
//!
//! Closing the gate drops nothing and stops nothing but reading: a websocket
//! stops taking frames off its connection and a long-polling POST is
//! answered only once the gate opens again, so the client's sends wait in
//! its own buffers and TCP slows it down. Writing to the client (answers,
//! pings, broadcasts) goes on meanwhile.
//!
//! The heartbeat does not count a missing pong against the client while the
//! pong may be sitting unread behind messages held back by the gate: when the
//! gate closed since the ping, or when it closed since the client last
//! answered every ping and messages are still coming in (the client is
//! alive, and its answers are behind what it sent while the gate was
//! closed). A client that goes quiet once the gate is open is timed out as
//! usual.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::Session;

/// Whether a session may read. Open when created.
#[derive(Debug, Default)]
pub struct ReadGate {
    paused: AtomicBool,
    /// How many times the gate has closed, so that a waiter can tell it
    /// closed and opened again while it was not looking.
    pauses: AtomicU64,
    /// How many reads went through the gate (websocket reads, POSTs).
    reads: AtomicU64,
    /// How many pongs the session received.
    pongs: AtomicU64,
    opened: Notify,
}

/// Where a gate was at one moment (see `ReadGate::excuses_silence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadMark {
    pauses: u64,
    reads: u64,
}

impl ReadGate {
    /// Stops reads. True if the gate was open.
    pub fn pause(&self) -> bool {
        let was_open = !self.paused.swap(true, Ordering::SeqCst);
        if was_open {
            self.pauses.fetch_add(1, Ordering::SeqCst);
        }
        was_open
    }

    /// Lets reads go on. True if the gate was closed.
    pub fn resume(&self) -> bool {
        let was_paused = self.paused.swap(false, Ordering::SeqCst);
        if was_paused {
            self.opened.notify_waiters();
        }
        was_paused
    }

    /// Whether reads are stopped.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Resolves once the gate is open.
    pub async fn open(&self) {
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            // Registered before the check, so a resume in between is not missed.
            opened.as_mut().enable();
            if !self.is_paused() {
                return;
            }
            opened.await;
        }
    }

    fn counted_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn pong_received(&self) {
        self.pongs.fetch_add(1, Ordering::Relaxed);
    }

    /// How many pongs the session received.
    pub(super) fn pongs(&self) -> u64 {
        self.pongs.load(Ordering::Relaxed)
    }

    /// Where the gate is now.
    pub(super) fn mark(&self) -> ReadMark {
        ReadMark { pauses: self.pauses.load(Ordering::SeqCst), reads: self.reads.load(Ordering::Relaxed) }
    }

    /// Whether a pong missing since the ping at `pinged` may be held back
    /// by this gate rather than never sent, the client having last answered
    /// every ping at `answered`: the gate is closed, or closed since the
    /// ping, or closed since `answered` while reads go on.
    pub(super) fn excuses_silence(&self, answered: ReadMark, pinged: ReadMark) -> bool {
        let now = self.mark();
        self.is_paused() || now.pauses != pinged.pauses || (now.pauses != answered.pauses && now.reads != pinged.reads)
    }
}

impl Session {
    /// The gate of this session's reads.
    pub fn read_gate(&self) -> &Arc<ReadGate> {
        &self.read_gate
    }

    /// Runs `read` once the gate is open (cancel-safe if `read` is).
    pub(super) async fn gated<F: Future>(&self, read: F) -> F::Output {
        self.read_gate.open().await;
        let out = read.await;
        self.read_gate.counted_read();
        out
    }

    /// Resolves once the session may read again, or has ended (after a
    /// polling POST was read).
    pub(super) async fn readable(&self) {
        self.read_gate.counted_read();
        tokio::select! {
            _ = self.read_gate.open() => {}
            _ = self.closed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn pause_and_resume_report_changes_once() {
        let gate = ReadGate::default();
        assert!(!gate.is_paused());
        assert!(gate.pause());
        assert!(!gate.pause());
        assert!(gate.is_paused());
        assert!(gate.resume());
        assert!(!gate.resume());
        assert!(!gate.is_paused());
    }

    #[test]
    fn a_missing_pong_is_excused_only_behind_paused_reads() {
        let gate = ReadGate::default();
        let answered = gate.mark();
        let pinged = gate.mark();
        // Never paused: no excuse, reads or not.
        assert!(!gate.excuses_silence(answered, pinged));
        gate.counted_read();
        assert!(!gate.excuses_silence(answered, pinged));
        // Paused now, or paused and resumed since the ping.
        gate.pause();
        assert!(gate.excuses_silence(answered, pinged));
        gate.resume();
        assert!(gate.excuses_silence(answered, pinged));
        // The next ping, with the gate open since: excused while messages
        // still come in (the pong is behind them), not once they stop.
        let pinged = gate.mark();
        assert!(!gate.excuses_silence(answered, pinged));
        gate.counted_read();
        assert!(gate.excuses_silence(answered, pinged));
        // Once a pong came after the pause, reads excuse nothing.
        let answered = gate.mark();
        let pinged = gate.mark();
        gate.counted_read();
        assert!(!gate.excuses_silence(answered, pinged));
    }

    #[tokio::test]
    async fn open_waits_for_a_resume_from_another_thread() {
        let gate = Arc::new(ReadGate::default());
        gate.open().await; // open: no wait
        gate.pause();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.open().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let resumer = std::thread::spawn({
            let gate = gate.clone();
            move || gate.resume()
        });
        assert!(resumer.join().unwrap_or(false));
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("open after resume").expect("task");
    }
}
