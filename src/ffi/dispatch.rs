//! Where C callbacks run: network threads only queue jobs; a job runs either
//! on the dispatcher thread the library owns, or on the host's thread inside
//! `iobus_server_poll`, woken through a file descriptor. One queue keeps
//! every socket's events in order, and one runner at a time means callbacks
//! never overlap.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{JoinHandle, ThreadId};

use parking_lot::{Condvar, Mutex};

use super::records;

/// A queued callback invocation.
pub(crate) type Job = Box<dyn records::Job>;

/// How callbacks are run.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum iobus_dispatch {
    /// On a thread the library owns (default).
    IOBUS_DISPATCH_THREAD = 0,
    /// On the host's thread, inside `iobus_server_poll`, when the file
    /// descriptor from `iobus_server_poll_fd` is readable.
    IOBUS_DISPATCH_POLL = 1,
}

thread_local! {
    /// Set while this thread runs callbacks.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is inside an iobus callback.
pub(crate) fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

struct Wake {
    reader: UnixStream,
    writer: UnixStream,
    signaled: AtomicBool,
}

pub(crate) struct Dispatcher {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    wake: Option<Wake>,
    stopping: AtomicBool,
    discarding: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: Mutex<Option<ThreadId>>,
    poll_lock: Mutex<()>,
}

fn run_one(d: &Dispatcher, job: Job) {
    if d.discarding.load(Ordering::Acquire) {
        return;
    }
    IN_CALLBACK.with(|c| c.set(true));
    // A panic in our own glue must not take the dispatcher down.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
    IN_CALLBACK.with(|c| c.set(false));
}

impl Dispatcher {
    pub(crate) fn new(mode: iobus_dispatch, batch_scheduling: bool) -> std::io::Result<Arc<Dispatcher>> {
        let wake = match mode {
            iobus_dispatch::IOBUS_DISPATCH_THREAD => None,
            iobus_dispatch::IOBUS_DISPATCH_POLL => {
                let (reader, writer) = UnixStream::pair()?;
                reader.set_nonblocking(true)?;
                writer.set_nonblocking(true)?;
                Some(Wake { reader, writer, signaled: AtomicBool::new(false) })
            }
        };
        let d = Arc::new(Dispatcher {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            wake,
            stopping: AtomicBool::new(false),
            discarding: AtomicBool::new(false),
            thread: Mutex::new(None),
            thread_id: Mutex::new(None),
            poll_lock: Mutex::new(()),
        });
        if mode == iobus_dispatch::IOBUS_DISPATCH_THREAD {
            let weak = Arc::downgrade(&d);
            let handle = std::thread::Builder::new().name("iobus-dispatch".into()).spawn(move || {
                if batch_scheduling {
                    crate::sched::batch_this_thread();
                }
                run_thread(weak)
            })?;
            *d.thread_id.lock() = Some(handle.thread().id());
            *d.thread.lock() = Some(handle);
        }
        Ok(d)
    }

    /// Queues a job; never blocks on the host. In poll mode, a job queued
    /// on a network thread makes the descriptor readable once that thread
    /// has finished the work in hand (see `sched::wake_later`): the host,
    /// often on the same core, then takes a whole batch per wake-up.
    pub(crate) fn push(self: &Arc<Self>, job: Job) {
        match &self.wake {
            None => {
                self.queue.lock().push_back(job);
                self.ready.notify_one();
            }
            Some(w) => {
                // Signalled under the queue lock, which `rearm` holds too: a
                // byte on the descriptor always stands for a job still queued.
                // A wake-up this thread deferred earlier and that is now
                // late goes out before anything else is deferred.
                crate::sched::wake_deferred_if_late();
                let mut queue = self.queue.lock();
                queue.push_back(job);
                if !w.signaled.swap(true, Ordering::AcqRel) && !crate::sched::wake_later(self.clone()) {
                    let _ = (&w.writer).write(&[1]);
                }
            }
        }
    }

    /// The descriptor that is readable while jobs are pending (poll mode).
    pub(crate) fn fd(&self) -> Option<i32> {
        self.wake.as_ref().map(|w| w.reader.as_raw_fd())
    }

    pub(crate) fn is_poll_mode(&self) -> bool {
        self.wake.is_some()
    }

    /// Runs up to `max` pending jobs on the calling thread (poll mode).
    pub(crate) fn poll(&self, max: usize) -> usize {
        let Some(wake) = &self.wake else { return 0 };
        let _one_at_a_time = self.poll_lock.lock();
        let mut done = 0;
        while done < max {
            let batch: Vec<Job> = {
                let mut q = self.queue.lock();
                let n = q.len().min(max - done);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            for job in batch {
                run_one(self, job);
                done += 1;
            }
        }
        self.rearm(wake);
        done
    }

    /// Poll mode: writes records for pending jobs into `buf`, in order,
    /// until the next one does not fit. `Ok((bytes, records))`, or
    /// `Err(size)` when the first pending record alone needs `size` bytes.
    pub(crate) fn poll_records(&self, buf: &mut [u8]) -> Result<(usize, usize), usize> {
        let Some(wake) = &self.wake else { return Ok((0, 0)) };
        let _one_at_a_time = self.poll_lock.lock();
        let (mut used, mut count) = (0, 0);
        let mut result = Ok(());
        loop {
            let (job, need) = {
                let mut q = self.queue.lock();
                let Some(front) = q.front() else { break };
                let need = front.record_len();
                if need > buf.len() - used {
                    if count == 0 {
                        result = Err(need);
                    }
                    break;
                }
                (q.pop_front(), need)
            };
            let Some(job) = job else { break };
            if self.discarding.load(Ordering::Acquire) {
                continue;
            }
            let out = &mut buf[used..used + need];
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.record(out))).is_ok() {
                used += need;
                count += 1;
            }
        }
        self.rearm(wake);
        result.map(|()| (used, count))
    }

    /// Re-arm: empty the descriptor and leave it signalled only if work
    /// remains. Under the queue lock, so that no producer signals in between:
    /// the descriptor is readable exactly while jobs are queued (give or
    /// take a deferred wake-up still on its way, see `sched::wake_later`).
    fn rearm(&self, wake: &Wake) {
        let queue = self.queue.lock();
        let mut sink = [0u8; 64];
        while let Ok(n) = (&wake.reader).read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        let pending = !queue.is_empty();
        wake.signaled.store(pending, Ordering::Release);
        if pending {
            let _ = (&wake.writer).write(&[1]);
        }
    }

    /// Ends the dispatcher thread after it has run what is queued. When
    /// called from that thread itself, it ends once the current job returns.
    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.ready.notify_all();
        let on_dispatcher = *self.thread_id.lock() == Some(std::thread::current().id());
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            if !on_dispatcher {
                let _ = h.join();
            }
        }
    }

    /// Runs everything still queued on the calling thread (at free, in poll
    /// mode), so that completions promised exactly once still happen.
    pub(crate) fn drain(&self) {
        while self.poll(usize::MAX) > 0 {}
    }

    /// Runs what is still queued on the calling thread, in either mode: at
    /// free, once the dispatcher thread has ended, for the completions that
    /// freeing the server queued.
    pub(crate) fn run_rest(&self) {
        loop {
            let batch: Vec<Job> = self.queue.lock().drain(..).collect();
            if batch.is_empty() {
                return;
            }
            for job in batch {
                run_one(self, job);
            }
        }
    }

    /// Drops what is still queued and skips jobs already taken.
    pub(crate) fn discard(&self) {
        self.discarding.store(true, Ordering::Release);
        let jobs: Vec<Job> = self.queue.lock().drain(..).collect();
        drop(jobs);
    }
}

impl crate::sched::Wake for Dispatcher {
    /// The deferred write of a `push`. If the host has polled since (the
    /// signal is clear), the job it announced is taken and any later job
    /// signals for itself: writing now would only make the descriptor
    /// readable with nothing pending. Under the queue lock, as in `push`.
    fn wake(&self) {
        if let Some(w) = &self.wake {
            let _queue = self.queue.lock();
            if w.signaled.load(Ordering::Acquire) {
                let _ = (&w.writer).write(&[1]);
            }
        }
    }
}

/// How many times the idle dispatcher yields before it sleeps, after a
/// spin that found work ...
const SPIN_YIELDS: usize = 64;
/// ... and after one that found none.
const SPIN_MIN_YIELDS: usize = 4;

fn run_thread(weak: Weak<Dispatcher>) {
    let mut spin = SPIN_YIELDS;
    loop {
        let Some(d) = weak.upgrade() else { return };
        // Under load the next event is usually a moment away: yield a few
        // times before sleeping, so that the network thread's pushes need
        // no wake-up (and no context switch ping-pong with it). The spin
        // shrinks while it finds nothing, so sparse events cost little.
        let mut found = false;
        for _ in 0..spin {
            if !d.queue.lock().is_empty() || d.stopping.load(Ordering::Acquire) {
                found = true;
                break;
            }
            std::thread::yield_now();
        }
        spin = if found { SPIN_YIELDS } else { SPIN_MIN_YIELDS };
        let batch: Vec<Job> = {
            let mut q = d.queue.lock();
            while q.is_empty() && !d.stopping.load(Ordering::Acquire) {
                // Wake now and then so that a dropped dispatcher is noticed.
                d.ready.wait_for(&mut q, std::time::Duration::from_millis(500));
            }
            if q.is_empty() {
                return;
            }
            q.drain(..).collect()
        };
        for job in batch {
            run_one(&d, job);
        }
        drop(d);
    }
}
