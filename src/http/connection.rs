//! What one HTTP connection may cost the server, and for how long: the
//! limits of the listener ([`HttpOptions`]), the registry of open
//! connections that enforces them, and the I/O wrapper under every
//! connection (HTTP requests and the websockets upgraded from them).
//!
//! A connection is in one of a few phases. Idle (opened, or its last
//! response sent) it must start a request within the keep-alive timeout;
//! once the first byte of a request has come, the whole head must follow
//! within the header timeout. While a request is being served (a long poll
//! may wait for a whole ping interval) or after a websocket upgrade, no read
//! deadline applies: the Engine.IO heartbeat watches those. Every write,
//! in every phase, must make progress within the write timeout.
//!
//! Over the connection cap, or when the process runs out of descriptors,
//! the connection that has been idle (or sending its head) the longest is
//! closed to make room, so that idle or slow connections can never lock new
//! clients out; a new connection is refused with 503 only when every open
//! one is serving a request or a websocket.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Limits of the HTTP listener, shared by every Engine.IO endpoint on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// How long a request head (request line and headers) may take from its
    /// first byte to its end, and a long-polling POST's body from the end of
    /// its head. Default 10 s. A client sending one byte at a time
    /// (slowloris) is closed after this.
    pub header_timeout: Duration,
    /// How long a connection may stay open without starting a request: after
    /// it is opened, and after each response (HTTP keep-alive). Default 5 s,
    /// as Node's HTTP server.
    pub keep_alive_timeout: Duration,
    /// How long any write to a client (an HTTP response, websocket frames)
    /// may make no progress before the connection is closed: the client is
    /// not reading. Default 20 s.
    pub write_timeout: Duration,
    /// Largest request head accepted, in bytes; a larger one is answered
    /// with 431 and the connection closed. Default 16 KiB, as Node's. Keep
    /// it at 1 KiB or more: a request line alone can take a few hundred.
    pub max_header_bytes: usize,
    /// Most connections open at once (HTTP and websocket), or `None` (the
    /// default) for no cap other than the process's descriptor limit. Over
    /// the cap the longest-idle connection is closed to make room; if none
    /// is idle, the new connection is answered with 503.
    pub max_connections: Option<usize>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(20),
            max_header_bytes: 16 * 1024,
            max_connections: None,
        }
    }
}

// Phases of a connection (see the module doc).
const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;
const UPGRADED: u8 = 3;
const EVICTED: u8 = 4;

/// One open connection, as its watchdog, its I/O and the registry see it.
pub(crate) struct Conn {
    id: u64,
    phase: AtomicU8,
    /// When the current phase began (for IDLE also: the last write), in
    /// nanoseconds since the registry's `epoch`.
    since: AtomicU64,
    /// A write is waiting for the client to read: no keep-alive deadline
    /// then (the write timeout is in charge).
    write_blocked: AtomicBool,
    /// Wakes the watchdog: the phase changed, or the connection was evicted.
    changed: Notify,
}

/// Every open connection of one listener.
pub(crate) struct Connections {
    options: HttpOptions,
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

/// What to do with a connection just accepted.
pub(crate) enum Admission {
    /// Serve it through this I/O.
    Serve(GuardedIo, Arc<Conn>),
    /// Over the cap with nothing to evict: answer 503 and close.
    Refuse(TcpStream),
}

impl Connections {
    pub(crate) fn new(options: HttpOptions) -> Arc<Connections> {
        Arc::new(Connections {
            options,
            epoch: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    pub(crate) fn options(&self) -> &HttpOptions {
        &self.options
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Registers a connection just accepted (making room over the cap).
    pub(crate) fn admit(self: &Arc<Self>, stream: TcpStream) -> Admission {
        if let Some(max) = self.options.max_connections {
            let open = self.open.lock().len();
            if open >= max && !self.evict_idlest() {
                return Admission::Refuse(stream);
            }
        }
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(IDLE),
            since: AtomicU64::new(self.now()),
            write_blocked: AtomicBool::new(false),
            changed: Notify::new(),
        });
        self.open.lock().insert(conn.id, conn.clone());
        let io = GuardedIo {
            inner: stream,
            conn: conn.clone(),
            registry: self.clone(),
            write_deadline: None,
            write_armed: false,
        };
        Admission::Serve(io, conn)
    }

    /// Closes the connection that has been idle (or sending its head) the
    /// longest. False if every connection is serving something.
    pub(crate) fn evict_idlest(&self) -> bool {
        let open = self.open.lock();
        // A request may start on the chosen one meanwhile: then try the next.
        for _ in 0..8 {
            let idlest = open
                .values()
                .filter(|c| matches!(c.phase.load(Ordering::Acquire), IDLE | HEAD))
                .min_by_key(|c| c.since.load(Ordering::Relaxed));
            let Some(conn) = idlest else {
                return false;
            };
            for from in [IDLE, HEAD] {
                if conn.phase.compare_exchange(from, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    conn.changed.notify_one();
                    return true;
                }
            }
        }
        false
    }

    /// When the connection must have moved on, if a deadline applies now.
    fn deadline(&self, conn: &Conn) -> Option<Instant> {
        if conn.write_blocked.load(Ordering::Acquire) {
            return None;
        }
        let since = self.instant(conn.since.load(Ordering::Acquire));
        match conn.phase.load(Ordering::Acquire) {
            IDLE => Some(since + self.options.keep_alive_timeout),
            HEAD => Some(since + self.options.header_timeout),
            _ => None,
        }
    }

    /// Runs an HTTP connection until it ends, closing it when it stays idle
    /// or sends its head for too long, or when it is evicted.
    pub(crate) async fn watch<F: Future>(&self, conn: &Conn, http: F) {
        tokio::pin!(http);
        loop {
            let changed = conn.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if conn.phase.load(Ordering::Acquire) == EVICTED {
                tracing::debug!("closing the longest-idle connection to make room");
                return;
            }
            let deadline = self.deadline(conn);
            tokio::select! {
                _ = &mut http => return,
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    // Phases move on without waking the watchdog (a write
                    // pushes the idle time forward): look again.
                    if self.deadline(conn).is_some_and(|d| d <= Instant::now()) {
                        tracing::debug!("closing a connection that sent no complete request in time");
                        return;
                    }
                }
            }
        }
    }

    fn remove(&self, id: u64) {
        self.open.lock().remove(&id);
    }
}

impl Conn {
    /// A request head has been read: no read deadline while it is served.
    pub(crate) fn request_started(&self) {
        let phase = self.phase.load(Ordering::Acquire);
        if phase == IDLE || phase == HEAD {
            let _ = self.phase.compare_exchange(phase, BUSY, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The request has been answered; `upgraded` when the answer was 101.
    pub(crate) fn request_done(&self, registry: &Connections, upgraded: bool) {
        self.since.store(registry.now(), Ordering::Release);
        let next = if upgraded { UPGRADED } else { IDLE };
        if self.phase.compare_exchange(BUSY, next, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.changed.notify_one();
        }
    }
}

/// A 503 for a connection over the cap, then the connection closed.
pub(crate) async fn refuse(mut stream: TcpStream) {
    const BUSY_RESPONSE: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n";
    let answer = async {
        stream.write_all(BUSY_RESPONSE).await?;
        stream.shutdown().await?;
        // Read what the client sent before closing: closing with unread
        // bytes resets the connection, and a reset can destroy the answer
        // before the client reads it.
        let mut sink = [0u8; 4096];
        for _ in 0..4 {
            if stream.read(&mut sink).await? == 0 {
                break;
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), answer).await;
}

/// The connection's socket with its limits applied: reads move the phase
/// on, every write has a deadline, and dropping it (when hyper or the
/// websocket task is done with the connection) unregisters the connection.
pub(crate) struct GuardedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Connections>,
    /// Made when a write first waits, then reused for every stalled write
    /// (most connections never need one).
    write_deadline: Option<Pin<Box<Sleep>>>,
    write_armed: bool,
}

impl GuardedIo {
    /// A write returned `Pending`: start (or keep) the no-progress clock.
    fn write_waits(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let timeout = self.registry.options.write_timeout;
        if !self.write_armed {
            self.write_armed = true;
            self.conn.write_blocked.store(true, Ordering::Release);
            if let Some(timer) = self.write_deadline.as_mut() {
                timer.as_mut().reset(Instant::now() + timeout);
            }
        }
        let timer = self.write_deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        tracing::debug!("closing a connection whose client does not read");
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "write made no progress")))
    }

    /// A write went through.
    fn write_done(&mut self, written: usize) {
        if self.write_armed {
            self.write_armed = false;
            self.conn.write_blocked.store(false, Ordering::Release);
            // The keep-alive clock (paused while blocked) runs again.
            self.conn.changed.notify_one();
        }
        if written > 0 && self.conn.phase.load(Ordering::Relaxed) == IDLE {
            self.conn.since.store(self.registry.now(), Ordering::Release);
        }
    }

    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
        n: impl Fn(&T) -> usize,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(Ok(v)) => {
                self.write_done(n(&v));
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.write_waits(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
        }
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        self.registry.remove(self.conn.id);
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && this.conn.phase.load(Ordering::Relaxed) == IDLE
            && this.conn.phase.compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            // The first byte of a request: the head's clock starts.
            this.conn.since.store(this.registry.now(), Ordering::Release);
            this.conn.changed.notify_one();
        }
        r
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, r, |n| *n)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, r, |n| *n)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(cx, r, |_| 0)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after_write(cx, r, |_| 0)
    }
}
