//! Load generator for Socket.IO v5 servers, speaking Engine.IO v4 over
//! websocket directly (no client library in between).
//!
//! Scenarios (the bench contract on namespace `/`: `join` (room, ack),
//! `broadcast` (room, data) → `msg` (data) to the room, `echo` (data, ack)):
//!
//! - `fanout`: N receivers join one room; one sender broadcasts P-byte
//!   payloads to it, closed loop with at most W broadcasts outstanding (a
//!   broadcast is outstanding until every receiver has it). The payload
//!   carries its sequence number and send time, so every delivery gives a
//!   latency sample. With `--addr2` the receivers alternate between two
//!   servers of one cluster (the sender stays on `--addr`): the cluster
//!   fan-out, every broadcast crossing the servers' adapter.
//! - `echo`: K clients, each doing emit-with-ack round trips in a loop.
//! - `idle`: N connections opened with bounded concurrency and held open,
//!   answering pings; server RSS before and after, connections per second.
//! - `jitter`: N receivers in one room get a steady broadcast stream with
//!   sequence numbers while each drops its TCP connection at random and
//!   reconnects, with connection state recovery (`{pid, offset}`) where the
//!   server offers it; delivered share, duplicates, out-of-order deliveries,
//!   replay latency, and the server's memory per packet kept for recovery.
//!
//! The server's CPU time (utime + stime of `/proc/<pid>/stat`) is read at
//! the edges of the measured window, so throughput can be given per server
//! CPU-second. The generator runs on a single-threaded runtime and reports
//! its own CPU use too: near 100 % means it, not the server, was the limit.
//!
//! One JSON object per run is printed on stdout.

// The jitter scenario's result is one large `json!` literal.
#![recursion_limit = "256"]

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws = WebSocketStream<TcpStream>;
type Res<T> = Result<T, String>;

const USAGE: &str = "\
usage: iobus-loadgen <fanout|echo|idle|jitter> [options]
  --addr HOST:PORT     server address (default 127.0.0.1:3100)
  --path PATH          Engine.IO path (default /socket.io/)
  --pid PID            server process, for CPU seconds and RSS (optional)
  --addr2 HOST:PORT    fanout: a second server of the same cluster; receivers alternate
                       between --addr and --addr2, the sender is on --addr
  --pid2 PID           the second server's process: server CPU is the sum of both
  --redis-pid PID      the Redis server's process: its CPU is reported beside (redis_cpu_s)
  --server NAME        label copied into the output
  --warmup SECS        fanout/echo: seconds before measuring (default 1)
  --duration SECS      fanout/echo: measured seconds (default 5)
  --timeout SECS       hard limit for the whole run (default 120)
  --connect-concurrency N  connections opened at once (default 100)
  fanout: --receivers N (1000)  --payload BYTES (64)  --window W (16)  --room NAME (bench)
  echo:   --clients K (100)     --payload BYTES (64)
  idle:   --connections N (8000) --hold SECS (3)
  jitter: --receivers N (300, keep it under ~2000 on two cores)  --rate PER_S (100)
          --duration SECS (40, the stream)  --payload BYTES (64)  --room NAME (bench)
          --drop-every LO,HI (3,8: seconds online between drops)  --offline LO,HI (0.5,2)
          --settle SECS (15, most waited after the stream for reconnections to finish)
          --seed N (1)  --log-packets K (20000, broadcasts to an empty room for the memory probe)
";

#[derive(Debug, Clone)]
struct Args {
    scenario: String,
    addr: SocketAddr,
    addr2: Option<SocketAddr>,
    path: String,
    pid: Option<u32>,
    pid2: Option<u32>,
    redis_pid: Option<u32>,
    server: String,
    warmup: f64,
    duration: f64,
    timeout: f64,
    connect_concurrency: usize,
    receivers: usize,
    payload: usize,
    window: usize,
    room: String,
    clients: usize,
    connections: usize,
    hold: f64,
    receivers_given: bool,
    rate: f64,
    drop_every: (f64, f64),
    offline: (f64, f64),
    settle: f64,
    seed: u64,
    log_packets: usize,
}

/// `LO,HI` seconds.
fn range(arg: &str, v: &str) -> Res<(f64, f64)> {
    let (lo, hi) = v.split_once(',').ok_or_else(|| format!("{arg}: expected LO,HI, got {v}"))?;
    let lo: f64 = lo.trim().parse().map_err(|_| format!("{arg}: not a number: {lo}"))?;
    let hi: f64 = hi.trim().parse().map_err(|_| format!("{arg}: not a number: {hi}"))?;
    if !(0.0..=hi).contains(&lo) {
        return Err(format!("{arg}: need 0 <= LO <= HI, got {v}"));
    }
    Ok((lo, hi))
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        scenario: String::new(),
        addr: "127.0.0.1:3100".parse().unwrap(),
        addr2: None,
        path: "/socket.io/".into(),
        pid: None,
        pid2: None,
        redis_pid: None,
        server: String::new(),
        warmup: 1.0,
        duration: 5.0,
        timeout: 120.0,
        connect_concurrency: 100,
        receivers: 1000,
        payload: 64,
        window: 16,
        room: "bench".into(),
        clients: 100,
        connections: 8000,
        hold: 3.0,
        receivers_given: false,
        rate: 100.0,
        drop_every: (3.0, 8.0),
        offline: (0.5, 2.0),
        settle: 15.0,
        seed: 1,
        log_packets: 20000,
    };
    let mut duration_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            if !a.scenario.is_empty() {
                return Err(format!("unexpected argument {arg}"));
            }
            a.scenario = arg;
            continue;
        }
        if arg == "--help" {
            return Err(String::new());
        }
        let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{arg}: not a number: {v}"));
        let int = |v: &str| v.parse::<usize>().map_err(|_| format!("{arg}: not an integer: {v}"));
        match arg.as_str() {
            "--addr" => {
                a.addr = v
                    .to_socket_addrs()
                    .map_err(|e| format!("--addr {v}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--addr {v}: no address"))?
            }
            "--addr2" => {
                a.addr2 = Some(
                    v.to_socket_addrs()
                        .map_err(|e| format!("--addr2 {v}: {e}"))?
                        .next()
                        .ok_or_else(|| format!("--addr2 {v}: no address"))?,
                )
            }
            "--path" => a.path = v,
            "--pid" => a.pid = Some(int(&v)? as u32),
            "--pid2" => a.pid2 = Some(int(&v)? as u32),
            "--redis-pid" => a.redis_pid = Some(int(&v)? as u32),
            "--server" => a.server = v,
            "--warmup" => a.warmup = num(&v)?,
            "--duration" => {
                a.duration = num(&v)?;
                duration_given = true;
            }
            "--timeout" => a.timeout = num(&v)?,
            "--connect-concurrency" => a.connect_concurrency = int(&v)?.max(1),
            "--receivers" => {
                a.receivers = int(&v)?.max(1);
                a.receivers_given = true;
            }
            "--payload" => a.payload = int(&v)?,
            "--window" => a.window = int(&v)?.max(1),
            "--room" => a.room = v,
            "--clients" => a.clients = int(&v)?.max(1),
            "--connections" => a.connections = int(&v)?.max(1),
            "--hold" => a.hold = num(&v)?,
            "--rate" => a.rate = num(&v)?,
            "--drop-every" => a.drop_every = range(&arg, &v)?,
            "--offline" => a.offline = range(&arg, &v)?,
            "--settle" => a.settle = num(&v)?,
            "--seed" => a.seed = int(&v)? as u64,
            "--log-packets" => a.log_packets = int(&v)?,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    if !matches!(a.scenario.as_str(), "fanout" | "echo" | "idle" | "jitter") {
        return Err("scenario must be fanout, echo, idle or jitter".into());
    }
    if a.scenario == "jitter" {
        if !a.receivers_given {
            a.receivers = 300;
        }
        if !duration_given {
            a.duration = 40.0;
        }
        if !(a.rate > 0.0 && a.rate <= 10_000.0) {
            return Err("--rate must be in (0, 10000]".into());
        }
        if a.drop_every.1 <= 0.0 {
            return Err("--drop-every: HI must be above 0".into());
        }
    }
    if a.addr2.is_some() && a.scenario != "fanout" {
        return Err("--addr2 is for the fanout scenario".into());
    }
    if a.payload < STAMP_LEN {
        return Err(format!("--payload must be at least {STAMP_LEN} bytes"));
    }
    Ok(a)
}

// ---------------------------------------------------------------- clocks

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process started (monotonic, shared by all tasks).
fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process (all its threads), in seconds.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (busy, total) jiffies of every core, from `/proc/stat`.
fn core_times() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
            (busy, busy + get(3) + get(4))
        })
        .collect()
}

/// CPU seconds of the server and of this process, and the cores' busy
/// time, read together.
#[derive(Clone)]
struct CpuMark {
    at: Instant,
    server: Option<f64>,
    redis: Option<f64>,
    me: f64,
    cores: Vec<(u64, u64)>,
}

/// The servers' CPU time: `--pid`'s, plus `--pid2`'s when given.
fn cpu_mark(a: &Args) -> CpuMark {
    let one = |pid: Option<u32>| pid.and_then(|p| cpu_seconds(&p.to_string()));
    let server = match a.pid2 {
        Some(_) => one(a.pid).zip(one(a.pid2)).map(|(x, y)| x + y),
        None => one(a.pid),
    };
    CpuMark {
        at: Instant::now(),
        server,
        redis: one(a.redis_pid),
        me: cpu_seconds("self").unwrap_or(0.0),
        cores: core_times(),
    }
}

struct CpuSpan {
    wall: f64,
    server: Option<f64>,
    redis: Option<f64>,
    me: f64,
    /// Busy fraction of each core over the span (whoever used it).
    cores: Vec<f64>,
}

fn cpu_span(a: CpuMark, b: CpuMark) -> CpuSpan {
    CpuSpan {
        wall: (b.at - a.at).as_secs_f64(),
        server: match (a.server, b.server) {
            (Some(x), Some(y)) => Some(y - x),
            _ => None,
        },
        redis: a.redis.zip(b.redis).map(|(x, y)| y - x),
        me: b.me - a.me,
        cores: a
            .cores
            .iter()
            .zip(&b.cores)
            .map(|(x, y)| {
                let total = y.1.saturating_sub(x.1);
                if total == 0 { 0.0 } else { round(y.0.saturating_sub(x.0) as f64 / total as f64) }
            })
            .collect(),
    }
}

fn per_cpu(count: f64, cpu: Option<f64>) -> Value {
    match cpu {
        Some(c) if c > 0.0 => json!(round(count / c)),
        _ => Value::Null,
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// p50/p90/p99/max of microsecond samples.
fn percentiles(samples: &mut [u32]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    samples.sort_unstable();
    let at = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    json!({ "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": samples[samples.len() - 1] })
}

// ---------------------------------------------------------------- protocol

fn ws_config() -> WebSocketConfig {
    // Small buffers: thousands of connections live in this one process.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// The next text message; websocket-level ping/pong are skipped (tungstenite
/// answers pings itself).
async fn next_text(ws: &mut Ws) -> Res<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => return Err("unexpected binary message".into()),
            Some(Ok(Message::Close(c))) => return Err(format!("closed by server: {c:?}")),
            Some(Err(e)) => return Err(format!("websocket error: {e}")),
            None => return Err("connection ended".into()),
        }
    }
}

/// Opens a websocket Engine.IO session (up to the open packet).
async fn engine_open(addr: SocketAddr, path: &str) -> Res<Ws> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let url = format!("ws://{addr}{path}?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(format!("expected an Engine.IO open packet, got {open:?}"));
    }
    Ok(ws)
}

/// Opens a websocket session and joins namespace `/`.
async fn connect(addr: SocketAddr, path: &str) -> Res<Ws> {
    let mut ws = engine_open(addr, path).await?;
    ws.send(Message::text("40")).await.map_err(|e| e.to_string())?;
    loop {
        let t = next_text(&mut ws).await?;
        if t.starts_with("40") {
            return Ok(ws);
        } else if t == "2" {
            ws.send(Message::text("3")).await.map_err(|e| e.to_string())?;
        } else if t.starts_with("44") {
            return Err(format!("connect refused: {t}"));
        }
    }
}

/// Connects and joins `room` (emit with ack, waits for the ack).
async fn connect_and_join(addr: SocketAddr, path: &str, room: &str) -> Res<Ws> {
    let mut ws = connect(addr, path).await?;
    let room_json = serde_json::to_string(room).unwrap();
    ws.send(Message::text(format!("420[\"join\",{room_json}]"))).await.map_err(|e| e.to_string())?;
    loop {
        let t = next_text(&mut ws).await?;
        if t.starts_with("430") {
            return Ok(ws);
        } else if t == "2" {
            ws.send(Message::text("3")).await.map_err(|e| e.to_string())?;
        }
    }
}

/// Opens `n` connections, `concurrency` at a time, each made by `open`.
async fn open_many<F, Fut>(n: usize, concurrency: usize, open: F) -> Res<Vec<Ws>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Res<Ws>>,
{
    let results: Vec<Res<Ws>> =
        futures_util::stream::iter(0..n).map(|_| open()).buffer_unordered(concurrency).collect().await;
    results.into_iter().collect()
}

/// Answers Engine.IO pings until the connection ends.
async fn hold_open(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg
            && t.as_str() == "2"
            && ws.send(Message::text("3")).await.is_err()
        {
            break;
        }
    }
}

// ---------------------------------------------------------------- fan-out

/// Length of the stamp at the start of every fan-out payload:
/// `@` + 10-digit sequence + `:` + 16-digit send time in µs + `:`.
const STAMP_LEN: usize = 29;

fn stamp_payload(seq: u64, ts: u64, len: usize) -> String {
    let mut s = format!("@{seq:010}:{ts:016}:");
    s.extend(std::iter::repeat_n('x', len - STAMP_LEN));
    s
}

fn digits(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

/// (sequence, send time) from a received `msg` event, whatever the server's
/// JSON spacing.
fn parse_stamp(text: &str) -> Option<(u64, u64)> {
    let b = text.as_bytes();
    let at = b.iter().position(|&c| c == b'@')?;
    let s = b.get(at + 1..at + STAMP_LEN)?;
    Some((digits(&s[..10])?, digits(&s[11..27])?))
}

struct Fanout {
    receivers: u32,
    window: usize,
    /// Deliveries so far of each outstanding broadcast, by sequence % window.
    counts: RefCell<Vec<u32>>,
    in_flight: Cell<usize>,
    completed: Cell<u64>,
    measuring: Cell<bool>,
    stop: Cell<bool>,
    wake: Notify,
    deliveries: Cell<u64>,
    broadcasts: Cell<u64>,
    /// Broadcasts sent in all, warm-up and tail included.
    sent: Cell<u64>,
    latencies: RefCell<Vec<u32>>,
    failures: Cell<u64>,
}

impl Fanout {
    fn deliver(&self, seq: u64, latency: u64) {
        if self.measuring.get() {
            self.deliveries.set(self.deliveries.get() + 1);
            self.latencies.borrow_mut().push(latency.min(u64::from(u32::MAX)) as u32);
        }
        let slot = (seq % self.window as u64) as usize;
        let mut counts = self.counts.borrow_mut();
        counts[slot] += 1;
        if counts[slot] == self.receivers {
            counts[slot] = 0;
            self.in_flight.set(self.in_flight.get() - 1);
            self.completed.set(self.completed.get() + 1);
            if self.measuring.get() {
                self.broadcasts.set(self.broadcasts.get() + 1);
            }
            self.wake.notify_one();
        }
    }
}

async fn fanout_receiver(mut ws: Ws, st: Rc<Fanout>) {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                let s = t.as_str();
                if s.starts_with("42") {
                    match parse_stamp(s) {
                        Some((seq, ts)) => st.deliver(seq, now_us().saturating_sub(ts)),
                        None => st.failures.set(st.failures.get() + 1),
                    }
                } else if s == "2" && ws.send(Message::text("3")).await.is_err() {
                    break;
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if !st.stop.get() {
        st.failures.set(st.failures.get() + 1);
    }
}

async fn fanout_sender(mut ws: Ws, st: Rc<Fanout>, room: String, payload: usize) -> Res<()> {
    let room_json = serde_json::to_string(&room).unwrap();
    let mut seq = 0u64;
    loop {
        if st.stop.get() {
            return Ok(());
        }
        let mut fed = false;
        while st.in_flight.get() < st.window {
            let data = stamp_payload(seq, now_us(), payload);
            let text = format!("42[\"broadcast\",{room_json},\"{data}\"]");
            ws.feed(Message::text(text)).await.map_err(|e| format!("send: {e}"))?;
            st.in_flight.set(st.in_flight.get() + 1);
            st.sent.set(st.sent.get() + 1);
            seq += 1;
            fed = true;
        }
        if fed {
            ws.flush().await.map_err(|e| format!("send: {e}"))?;
        }
        tokio::select! {
            _ = st.wake.notified() => {}
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    ws.send(Message::text("3")).await.map_err(|e| format!("send: {e}"))?;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err("sender connection ended".into()),
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn run_fanout(a: &Args) -> Res<Value> {
    let t0 = Instant::now();
    // With a second server, receivers alternate between the two.
    let next = Cell::new(0usize);
    let receivers = open_many(a.receivers, a.connect_concurrency, || {
        let i = next.get();
        next.set(i + 1);
        let addr = match a.addr2 {
            Some(addr2) if i % 2 == 1 => addr2,
            _ => a.addr,
        };
        connect_and_join(addr, &a.path, &a.room)
    })
    .await?;
    let sender = connect(a.addr, &a.path).await?;
    let setup_s = t0.elapsed().as_secs_f64();

    let st = Rc::new(Fanout {
        receivers: a.receivers as u32,
        window: a.window,
        counts: RefCell::new(vec![0; a.window]),
        in_flight: Cell::new(0),
        completed: Cell::new(0),
        measuring: Cell::new(false),
        stop: Cell::new(false),
        wake: Notify::new(),
        deliveries: Cell::new(0),
        broadcasts: Cell::new(0),
        sent: Cell::new(0),
        latencies: RefCell::new(Vec::with_capacity(1 << 20)),
        failures: Cell::new(0),
    });
    for ws in receivers {
        tokio::task::spawn_local(fanout_receiver(ws, st.clone()));
    }
    let send_task = tokio::task::spawn_local(fanout_sender(sender, st.clone(), a.room.clone(), a.payload));

    let watch = async {
        // Warm up, then measure; give up when nothing completes for 10 s.
        let mut last = (st.completed.get(), Instant::now());
        let mut phase_end = Instant::now() + Duration::from_secs_f64(a.warmup);
        let mut start: Option<CpuMark> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = Instant::now();
            if st.completed.get() != last.0 {
                last = (st.completed.get(), now);
            } else if now - last.1 > Duration::from_secs(10) {
                return Err(format!(
                    "fan-out stalled: no broadcast completed for 10 s ({} in flight, {} failures)",
                    st.in_flight.get(),
                    st.failures.get()
                ));
            }
            if now >= phase_end {
                match start {
                    None => {
                        start = Some(cpu_mark(a));
                        st.measuring.set(true);
                        phase_end = now + Duration::from_secs_f64(a.duration);
                    }
                    Some(s) => {
                        st.measuring.set(false);
                        let end = cpu_mark(a);
                        st.stop.set(true);
                        return Ok(cpu_span(s.clone(), end));
                    }
                }
            }
        }
    };
    let span = tokio::select! {
        r = watch => r?,
        r = send_task => { r.map_err(|e| e.to_string())??; return Err("sender stopped early".into()) }
    };
    let deliveries = st.deliveries.get() as f64;
    let mut lat = st.latencies.take();
    Ok(json!({
        "scenario": "fanout",
        "server": a.server,
        "receivers": a.receivers,
        "payload": a.payload,
        "window": a.window,
        "setup_s": round(setup_s),
        "duration_s": round(span.wall),
        "broadcasts": st.broadcasts.get(),
        "sent_total": st.sent.get(),
        "servers": if a.addr2.is_some() { 2 } else { 1 },
        "deliveries": st.deliveries.get(),
        "deliveries_per_s": round(deliveries / span.wall),
        "server_cpu_s": span.server.map(round),
        "server_cpu_util": span.server.map(|c| round(c / span.wall)),
        "deliveries_per_cpu_s": per_cpu(deliveries, span.server),
        "redis_cpu_s": span.redis.map(round),
        "redis_cpu_util": span.redis.map(|c| round(c / span.wall)),
        "latency_us": percentiles(&mut lat),
        "loadgen_cpu_util": round(span.me / span.wall),
        "core_busy": span.cores,
        "failures": st.failures.get(),
    }))
}

// ---------------------------------------------------------------- echo

struct Echo {
    measuring: Cell<bool>,
    stop: Cell<bool>,
    acks: Cell<u64>,
    rtts: RefCell<Vec<u32>>,
    total: Cell<u64>,
    failures: Cell<u64>,
}

/// The ack id of an ACK packet (`43<id>[...]`).
fn ack_id(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("43")?;
    let end = rest.find('[')?;
    digits(&rest.as_bytes()[..end])
}

async fn echo_client(mut ws: Ws, st: Rc<Echo>, data_json: Rc<str>) {
    let mut id: u64 = 1;
    'outer: while !st.stop.get() {
        let t0 = Instant::now();
        if ws.send(Message::text(format!("42{id}[\"echo\",{data_json}]"))).await.is_err() {
            break;
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let s = t.as_str();
                    if ack_id(s) == Some(id) {
                        break;
                    } else if s == "2" && ws.send(Message::text("3")).await.is_err() {
                        break 'outer;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'outer,
                Some(Ok(_)) => {}
            }
        }
        let rtt = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        st.total.set(st.total.get() + 1);
        if st.measuring.get() {
            st.acks.set(st.acks.get() + 1);
            st.rtts.borrow_mut().push(rtt);
        }
        id += 1;
    }
    if !st.stop.get() {
        st.failures.set(st.failures.get() + 1);
    }
}

async fn run_echo(a: &Args) -> Res<Value> {
    let t0 = Instant::now();
    let clients = open_many(a.clients, a.connect_concurrency, || connect(a.addr, &a.path)).await?;
    let setup_s = t0.elapsed().as_secs_f64();
    let st = Rc::new(Echo {
        measuring: Cell::new(false),
        stop: Cell::new(false),
        acks: Cell::new(0),
        rtts: RefCell::new(Vec::with_capacity(1 << 20)),
        total: Cell::new(0),
        failures: Cell::new(0),
    });
    let data: String = std::iter::repeat_n('x', a.payload).collect();
    let data_json: Rc<str> = serde_json::to_string(&data).unwrap().into();
    for ws in clients {
        tokio::task::spawn_local(echo_client(ws, st.clone(), data_json.clone()));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    if st.total.get() == 0 {
        return Err("echo: no ack during warm-up".into());
    }
    let start = cpu_mark(a);
    st.measuring.set(true);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    st.measuring.set(false);
    let span = cpu_span(start, cpu_mark(a));
    st.stop.set(true);
    let acks = st.acks.get() as f64;
    let mut rtts = st.rtts.take();
    Ok(json!({
        "scenario": "echo",
        "server": a.server,
        "clients": a.clients,
        "payload": a.payload,
        "setup_s": round(setup_s),
        "duration_s": round(span.wall),
        "acks": st.acks.get(),
        "acks_per_s": round(acks / span.wall),
        "server_cpu_s": span.server.map(round),
        "server_cpu_util": span.server.map(|c| round(c / span.wall)),
        "acks_per_cpu_s": per_cpu(acks, span.server),
        "rtt_us": percentiles(&mut rtts),
        "loadgen_cpu_util": round(span.me / span.wall),
        "core_busy": span.cores,
        "failures": st.failures.get(),
    }))
}

// ---------------------------------------------------------------- idle

async fn run_idle(a: &Args) -> Res<Value> {
    let rss_before = a.pid.and_then(rss_kib);
    let start = cpu_mark(a);
    let conns = open_many(a.connections, a.connect_concurrency, || connect(a.addr, &a.path)).await?;
    let ramp = cpu_span(start, cpu_mark(a));
    let n = conns.len();
    for ws in conns {
        tokio::task::spawn_local(hold_open(ws));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let rss_after = a.pid.and_then(rss_kib);
    let rss_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(x)) => json!(round((x as f64 - b as f64) * 1024.0 / n as f64)),
        _ => Value::Null,
    };
    Ok(json!({
        "scenario": "idle",
        "server": a.server,
        "connections": n,
        "concurrency": a.connect_concurrency,
        "ramp_s": round(ramp.wall),
        "conn_per_s": round(n as f64 / ramp.wall),
        "ramp_server_cpu_s": ramp.server.map(round),
        "conn_per_cpu_s": per_cpu(n as f64, ramp.server),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_conn_bytes": rss_per_conn,
        "loadgen_cpu_util": round(ramp.me / ramp.wall),
        "core_busy": ramp.cores,
        "hold_s": a.hold,
    }))
}

// ---------------------------------------------------------------- reconnect jitter

/// SplitMix64: a small seeded generator, so that every server sees the same
/// drop pattern for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi] seconds.
    fn secs(&mut self, (lo, hi): (f64, f64)) -> Duration {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(lo + (hi - lo) * u)
    }
}

fn micros_u32(us: u64) -> u32 {
    us.min(u64::from(u32::MAX)) as u32
}

/// A reconnection waiting for what its client missed. It completes once the
/// client is back in the room (the CONNECT reply of a recovered session, the
/// join ack of a new one) and holds every sequence number in
/// (`after`, `upto`]: `after` the highest it had when the reconnection
/// started, `upto` the highest the sender had emitted by then.
struct CatchUp {
    started_us: u64,
    after: i64,
    upto: i64,
    missing: u64,
    back: bool,
}

/// What one receiver got.
struct Received {
    /// Bitset of the sequence numbers received.
    seen: Vec<u64>,
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
    highest: i64,
    catch_up: Option<CatchUp>,
    online: bool,
    last_delivery_us: u64,
}

impl Received {
    fn new() -> Received {
        Received {
            seen: Vec::new(),
            distinct: 0,
            duplicates: 0,
            out_of_order: 0,
            highest: -1,
            catch_up: None,
            online: false,
            last_delivery_us: 0,
        }
    }

    /// Records a delivery; returns the replay latency if it completes a
    /// catch-up.
    fn deliver(&mut self, seq: u64, now: u64) -> Option<u64> {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        self.last_delivery_us = now;
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return None;
        }
        self.seen[word] |= bit;
        self.distinct += 1;
        let seq = seq as i64;
        if seq < self.highest {
            self.out_of_order += 1;
        } else {
            self.highest = seq;
        }
        if let Some(c) = &mut self.catch_up
            && seq > c.after
            && seq <= c.upto
        {
            // Nothing above `after` had arrived when the catch-up began.
            c.missing -= 1;
        }
        self.caught_up(now)
    }

    fn caught_up(&mut self, now: u64) -> Option<u64> {
        let c = self.catch_up.as_ref()?;
        if !c.back || c.missing > 0 {
            return None;
        }
        let started = c.started_us;
        self.catch_up = None;
        Some(now.saturating_sub(started))
    }
}

struct Jitter {
    args: Args,
    room_json: String,
    /// Sequence numbers the sender has emitted so far (0 .. sent).
    sent: Cell<u64>,
    /// Receivers drop their connections only while the stream runs.
    streaming: Cell<bool>,
    /// Deliveries are recorded until the results are read.
    counting: Cell<bool>,
    receivers: Vec<RefCell<Received>>,
    replay_us: RefCell<Vec<u32>>,
    connect_us: RefCell<Vec<u32>>,
    /// TCP connect to Engine.IO open packet, every attempt.
    open_us: RefCell<Vec<u32>>,
    reconnects: Cell<u64>,
    recovered: Cell<u64>,
    new_sessions: Cell<u64>,
    connect_failures: Cell<u64>,
    lost_by_server: Cell<u64>,
    cut_short: Cell<u64>,
    offered_recovery: Cell<bool>,
    bad_packets: Cell<u64>,
}

impl Jitter {
    /// Records an event packet received by receiver `idx`, and remembers its
    /// offset: with recovery on, the server appends it as the last argument
    /// (a string), after the event name and the data.
    fn on_event(&self, idx: usize, text: &str, offset: &mut Option<String>) {
        let now = now_us();
        let Ok(Value::Array(args)) = serde_json::from_str::<Value>(&text[2..]) else {
            self.bad_packets.set(self.bad_packets.get() + 1);
            return;
        };
        if args.len() >= 3
            && let Some(Value::String(o)) = args.last()
        {
            *offset = Some(o.clone());
        }
        let Some((seq, _)) = args.get(1).and_then(Value::as_str).and_then(parse_stamp) else {
            self.bad_packets.set(self.bad_packets.get() + 1);
            return;
        };
        if !self.counting.get() {
            return;
        }
        if let Some(lat) = self.receivers[idx].borrow_mut().deliver(seq, now) {
            self.replay_us.borrow_mut().push(micros_u32(lat));
        }
    }

    fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}

/// The next packet that is neither an event nor a ping: events are
/// recorded, pings answered.
async fn jitter_next(ws: &mut Ws, st: &Jitter, idx: usize, offset: &mut Option<String>) -> Res<String> {
    loop {
        let t = next_text(ws).await?;
        if t.starts_with("42") {
            st.on_event(idx, &t, offset);
        } else if t == "2" {
            ws.send(Message::text("3")).await.map_err(|e| e.to_string())?;
        } else {
            return Ok(t);
        }
    }
}

/// A Socket.IO session on `/` as the CONNECT reply gave it.
struct Session {
    sid: String,
    pid: Option<String>,
}

/// Opens a websocket session and connects to `/` with `auth` (empty: none);
/// events that arrive before the CONNECT reply (a replay) are recorded.
async fn jitter_connect(st: &Jitter, idx: usize, auth: &str, offset: &mut Option<String>) -> Res<(Ws, Session)> {
    let t0 = now_us();
    let mut ws = engine_open(st.args.addr, &st.args.path).await?;
    st.open_us.borrow_mut().push(micros_u32(now_us().saturating_sub(t0)));
    ws.send(Message::text(format!("40{auth}"))).await.map_err(|e| e.to_string())?;
    loop {
        let t = jitter_next(&mut ws, st, idx, offset).await?;
        if let Some(body) = t.strip_prefix("40") {
            let v: Value = serde_json::from_str(body).map_err(|e| format!("CONNECT reply {t:?}: {e}"))?;
            let sid = v.get("sid").and_then(Value::as_str).ok_or_else(|| format!("CONNECT reply without sid: {t}"))?;
            let pid = v.get("pid").and_then(Value::as_str).map(str::to_owned);
            return Ok((ws, Session { sid: sid.to_owned(), pid }));
        }
        if t.starts_with("44") {
            return Err(format!("connect refused: {t}"));
        }
    }
}

/// Joins the room (emit with ack), recording events that arrive meanwhile.
async fn jitter_join(ws: &mut Ws, st: &Jitter, idx: usize, offset: &mut Option<String>) -> Res<()> {
    ws.send(Message::text(format!("420[\"join\",{}]", st.room_json))).await.map_err(|e| e.to_string())?;
    loop {
        let t = jitter_next(ws, st, idx, offset).await?;
        if t.starts_with("430") {
            return Ok(());
        }
        if t.starts_with("41") || t.starts_with('1') {
            return Err(format!("closed while joining: {t}"));
        }
    }
}

/// The auth of a reconnection: `{pid, offset}` when the server offered
/// recovery (offset left out when nothing was received), as
/// `socket.io-client` sends it.
fn recovery_auth(pid: Option<&str>, offset: Option<&str>) -> String {
    match (pid, offset) {
        (Some(pid), Some(offset)) => json!({ "pid": pid, "offset": offset }).to_string(),
        (Some(pid), None) => json!({ "pid": pid }).to_string(),
        _ => String::new(),
    }
}

/// One receiver: online for a random while, drops its TCP connection (only
/// while the stream runs), stays offline for a random while, reconnects
/// with recovery, and again. Runs until the process ends.
async fn jitter_receiver(idx: usize, st: Rc<Jitter>, mut ws: Ws, mut session: Session) {
    let a = &st.args;
    let mut rng = Rng(a.seed.wrapping_mul(0x100_0000_01B3) ^ (idx as u64).wrapping_mul(0x9E37_79B9));
    let mut offset: Option<String> = None;
    st.receivers[idx].borrow_mut().online = true;
    loop {
        // Online until the next drop.
        let mut drop_at = tokio::time::Instant::now() + rng.secs(a.drop_every);
        let lost = loop {
            tokio::select! {
                r = jitter_next(&mut ws, &st, idx, &mut offset) => match r {
                    Ok(t) if t.starts_with("41") || t.starts_with('1') => break true,
                    Ok(_) => {}
                    Err(_) => break true,
                },
                _ = tokio::time::sleep_until(drop_at) => {
                    if st.streaming.get() {
                        break false;
                    }
                    drop_at = tokio::time::Instant::now() + Duration::from_secs(3600);
                }
            }
        };
        // The drop: the TCP connection goes away without a Socket.IO or
        // websocket goodbye, as when a network blips.
        drop(ws);
        st.receivers[idx].borrow_mut().online = false;
        if lost {
            Jitter::bump(&st.lost_by_server);
        } else {
            tokio::time::sleep(rng.secs(a.offline)).await;
        }
        let started_us = now_us();
        Jitter::bump(&st.reconnects);
        {
            let mut r = st.receivers[idx].borrow_mut();
            if r.catch_up.is_some() {
                Jitter::bump(&st.cut_short);
            }
            let after = r.highest;
            let upto = st.sent.get() as i64 - 1;
            r.catch_up = Some(CatchUp { started_us, after, upto, missing: (upto - after).max(0) as u64, back: false });
        }
        // Reconnect (again after a short pause if it fails: the run's
        // timeout bounds the whole).
        loop {
            let auth = recovery_auth(session.pid.as_deref(), offset.as_deref());
            let (mut new_ws, new_session) = match jitter_connect(&st, idx, &auth, &mut offset).await {
                Ok(x) => x,
                Err(_) => {
                    Jitter::bump(&st.connect_failures);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            st.connect_us.borrow_mut().push(micros_u32(now_us().saturating_sub(started_us)));
            let recovered = session.pid.is_some() && new_session.sid == session.sid;
            if new_session.pid.is_some() {
                st.offered_recovery.set(true);
            }
            if recovered {
                Jitter::bump(&st.recovered);
            } else {
                Jitter::bump(&st.new_sessions);
                if jitter_join(&mut new_ws, &st, idx, &mut offset).await.is_err() {
                    Jitter::bump(&st.connect_failures);
                    session = new_session;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            session = new_session;
            ws = new_ws;
            break;
        }
        let mut r = st.receivers[idx].borrow_mut();
        r.online = true;
        if let Some(c) = &mut r.catch_up {
            c.back = true;
        }
        if let Some(lat) = r.caught_up(now_us()) {
            st.replay_us.borrow_mut().push(micros_u32(lat));
        }
    }
}

/// The sender's stream: `broadcast` to the room at a steady rate for the
/// run's duration, each payload stamped with its sequence number.
async fn jitter_stream(ws: &mut Ws, st: &Jitter) -> Res<()> {
    let a = &st.args;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate));
    // A late tick is made up at once: the count, not the spacing, matters.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(a.duration);
    loop {
        tokio::select! {
            t = tick.tick() => {
                if t >= end {
                    return Ok(());
                }
                let seq = st.sent.get();
                let text = format!("42[\"broadcast\",{},\"{}\"]", st.room_json, stamp_payload(seq, now_us(), a.payload));
                ws.send(Message::text(text)).await.map_err(|e| format!("sender: {e}"))?;
                st.sent.set(seq + 1);
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    ws.send(Message::text("3")).await.map_err(|e| format!("sender: {e}"))?;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err("sender connection ended".into()),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Emits `args` (the event name first, JSON) with ack id `id` and waits for
/// the ack, answering pings; returns the ack's arguments.
async fn request(ws: &mut Ws, id: u64, args: &str) -> Res<Value> {
    ws.send(Message::text(format!("42{id}[{args}]"))).await.map_err(|e| e.to_string())?;
    loop {
        let t = next_text(ws).await?;
        if ack_id(&t) == Some(id) {
            let body = &t[t.find('[').unwrap_or(t.len())..];
            return serde_json::from_str(body).map_err(|e| format!("ack {t:?}: {e}"));
        } else if t == "2" {
            ws.send(Message::text("3")).await.map_err(|e| e.to_string())?;
        }
    }
}

/// The server's recovery log as its `stats` ack tells it:
/// `(packets, bytes, heap)`, each null where the server does not know
/// (`heap`: a garbage-collected server's heap in use after a collection).
async fn log_stats(ws: &mut Ws, id: u64) -> Res<(Value, Value, Value)> {
    let v = request(ws, id, "\"stats\"").await?;
    let o = v.get(0).cloned().unwrap_or(Value::Null);
    let field = |k: &str| o.get(k).cloned().unwrap_or(Value::Null);
    Ok((field("log_packets"), field("log_bytes"), field("heap_bytes")))
}

fn diff(a: &Value, b: &Value) -> Option<f64> {
    Some(b.as_f64()? - a.as_f64()?)
}

async fn run_jitter(a: &Args) -> Res<Value> {
    let t0 = Instant::now();
    let room_json = serde_json::to_string(&a.room).map_err(|e| e.to_string())?;
    let st = Rc::new(Jitter {
        args: a.clone(),
        room_json,
        sent: Cell::new(0),
        streaming: Cell::new(false),
        counting: Cell::new(true),
        receivers: (0..a.receivers).map(|_| RefCell::new(Received::new())).collect(),
        replay_us: RefCell::new(Vec::new()),
        connect_us: RefCell::new(Vec::new()),
        open_us: RefCell::new(Vec::new()),
        reconnects: Cell::new(0),
        recovered: Cell::new(0),
        new_sessions: Cell::new(0),
        connect_failures: Cell::new(0),
        lost_by_server: Cell::new(0),
        cut_short: Cell::new(0),
        offered_recovery: Cell::new(false),
        bad_packets: Cell::new(0),
    });
    // Every receiver is in the room before the first broadcast, so each
    // expects every sequence number.
    let opened: Vec<Res<(usize, Ws, Session)>> = futures_util::stream::iter(0..a.receivers)
        .map(|idx| {
            let st = st.clone();
            async move {
                let mut offset = None;
                let (mut ws, session) = jitter_connect(&st, idx, "", &mut offset).await?;
                jitter_join(&mut ws, &st, idx, &mut offset).await?;
                Ok((idx, ws, session))
            }
        })
        .buffer_unordered(a.connect_concurrency)
        .collect()
        .await;
    let mut sender = connect(a.addr, &a.path).await?;
    let setup_s = t0.elapsed().as_secs_f64();
    st.streaming.set(true);
    for r in opened {
        let (idx, ws, session) = r?;
        if session.pid.is_some() {
            st.offered_recovery.set(true);
        }
        tokio::task::spawn_local(jitter_receiver(idx, st.clone(), ws, session));
    }

    let rss_start = a.pid.and_then(rss_kib);
    let start = cpu_mark(a);
    jitter_stream(&mut sender, &st).await?;
    st.streaming.set(false);
    // Every broadcast asked for has been handled once this ack is back.
    request(&mut sender, 1, "\"echo\",\"barrier\"").await?;
    let span = cpu_span(start, cpu_mark(a));
    let rss_end = a.pid.and_then(rss_kib);
    let expected = st.sent.get();

    // Let the last reconnections finish: until every receiver is back and
    // has everything or has had nothing for 2 s, at most `settle` seconds.
    let settle_start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = now_us();
        let done = st.receivers.iter().all(|r| {
            let r = r.borrow();
            r.online && (r.distinct >= expected || now.saturating_sub(r.last_delivery_us) > 2_000_000)
        });
        if done || settle_start.elapsed().as_secs_f64() >= a.settle {
            break;
        }
    }
    let settle_s = settle_start.elapsed().as_secs_f64();
    st.counting.set(false);

    let (mut delivered, mut duplicates, mut out_of_order, mut offline_at_end, mut not_caught_up) = (0, 0, 0, 0, 0);
    let mut worst = f64::INFINITY;
    for r in &st.receivers {
        let r = r.borrow();
        delivered += r.distinct;
        duplicates += r.duplicates;
        out_of_order += r.out_of_order;
        offline_at_end += u64::from(!r.online);
        not_caught_up += u64::from(r.catch_up.is_some());
        if expected > 0 {
            worst = worst.min(r.distinct as f64 / expected as f64);
        }
    }
    let total = expected * a.receivers as u64;
    let mut replay = st.replay_us.take();
    let mut connect_lat = st.connect_us.take();
    // The first `receivers` samples are the initial connections.
    let mut open_lat = st.open_us.take();
    let mut open_lat = open_lat.split_off(a.receivers.min(open_lat.len()));

    // The memory a stored packet costs: `log_packets` broadcasts to a room
    // nobody is in, so that they are stored and delivered to no one.
    let (packets_stream, bytes_stream, heap_before) = log_stats(&mut sender, 2).await?;
    let rss_before = a.pid.and_then(rss_kib);
    let void_json = serde_json::to_string(&format!("{}-void", a.room)).map_err(|e| e.to_string())?;
    for i in 0..a.log_packets {
        let text = format!("42[\"broadcast\",{void_json},\"{}\"]", stamp_payload(i as u64, now_us(), a.payload));
        sender.feed(Message::text(text)).await.map_err(|e| format!("sender: {e}"))?;
    }
    sender.flush().await.map_err(|e| format!("sender: {e}"))?;
    request(&mut sender, 3, "\"echo\",\"barrier\"").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = a.pid.and_then(rss_kib);
    let (packets_after, bytes_after, heap_after) = log_stats(&mut sender, 4).await?;
    let rss_per_packet = match (rss_before, rss_after) {
        (Some(b), Some(x)) if a.log_packets > 0 => json!(round((x as f64 - b as f64) * 1024.0 / a.log_packets as f64)),
        _ => Value::Null,
    };
    let heap_per_packet = match diff(&heap_before, &heap_after) {
        Some(h) if a.log_packets > 0 => json!(round(h / a.log_packets as f64)),
        _ => Value::Null,
    };
    let log_bytes_per_packet = match (diff(&packets_stream, &packets_after), diff(&bytes_stream, &bytes_after)) {
        (Some(p), Some(b)) if p > 0.0 => json!(round(b / p)),
        _ => Value::Null,
    };

    Ok(json!({
        "scenario": "jitter",
        "server": a.server,
        "receivers": a.receivers,
        "rate": a.rate,
        "payload": a.payload,
        "drop_every_s": [a.drop_every.0, a.drop_every.1],
        "offline_s": [a.offline.0, a.offline.1],
        "seed": a.seed,
        "setup_s": round(setup_s),
        "duration_s": round(span.wall),
        "settle_s": round(settle_s),
        "broadcasts": expected,
        "expected": total,
        "delivered": delivered,
        "delivered_pct": if total > 0 { json!((delivered as f64 * 100.0 / total as f64 * 1e4).round() / 1e4) } else { Value::Null },
        "worst_receiver_pct": if worst.is_finite() { json!((worst * 100.0 * 1e4).round() / 1e4) } else { Value::Null },
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "recovery_offered": st.offered_recovery.get(),
        "reconnects": st.reconnects.get(),
        "recovered": st.recovered.get(),
        "new_sessions": st.new_sessions.get(),
        "connect_failures": st.connect_failures.get(),
        "lost_by_server": st.lost_by_server.get(),
        "replays": replay.len(),
        "not_caught_up": not_caught_up + st.cut_short.get(),
        "offline_at_end": offline_at_end,
        "replay_us": percentiles(&mut replay),
        "connect_us": percentiles(&mut connect_lat),
        "open_us": percentiles(&mut open_lat),
        "server_cpu_s": span.server.map(round),
        "server_cpu_util": span.server.map(|c| round(c / span.wall)),
        "loadgen_cpu_util": round(span.me / span.wall),
        "core_busy": span.cores,
        "rss_stream_start_kib": rss_start,
        "rss_stream_end_kib": rss_end,
        "log_packets_after_stream": packets_stream,
        "log_bytes_after_stream": bytes_stream,
        "log_probe_packets": a.log_packets,
        "log_probe_rss_before_kib": rss_before,
        "log_probe_rss_after_kib": rss_after,
        "log_probe_packets_stored": diff(&packets_stream, &packets_after),
        "log_rss_per_packet_bytes": rss_per_packet,
        "log_bytes_per_packet": log_bytes_per_packet,
        "log_heap_per_packet_bytes": heap_per_packet,
        "bad_packets": st.bad_packets.get(),
    }))
}

// ---------------------------------------------------------------- main

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("iobus-loadgen: {e}");
            }
            eprint!("{USAGE}");
            std::process::exit(2);
        }
    };
    now_us();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("iobus-loadgen: runtime: {e}");
            std::process::exit(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    let limit = Duration::from_secs_f64(args.timeout);
    let result = local.block_on(&rt, async {
        let run = async {
            match args.scenario.as_str() {
                "fanout" => run_fanout(&args).await,
                "echo" => run_echo(&args).await,
                "jitter" => run_jitter(&args).await,
                _ => run_idle(&args).await,
            }
        };
        match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {} s", args.timeout)),
        }
    });
    let code = match result {
        Ok(v) => {
            println!("{v}");
            0
        }
        Err(e) => {
            eprintln!("iobus-loadgen: {} {}: {e}", args.scenario, args.server);
            println!("{}", json!({ "scenario": args.scenario, "server": args.server, "error": e }));
            1
        }
    };
    // Leave without tearing down thousands of connections one by one.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip() {
        let p = stamp_payload(42, 1_234_567, 64);
        assert_eq!(p.len(), 64);
        let text = format!("42[\"msg\",\"{p}\"]");
        assert_eq!(parse_stamp(&text), Some((42, 1_234_567)));
        let spaced = format!("42[\"msg\", \"{p}\"]");
        assert_eq!(parse_stamp(&spaced), Some((42, 1_234_567)));
    }

    #[test]
    fn ack_ids() {
        assert_eq!(ack_id("4317[\"x\"]"), Some(17));
        assert_eq!(ack_id("430[]"), Some(0));
        assert_eq!(ack_id("42[\"x\"]"), None);
    }

    #[test]
    fn received_counts_duplicates_order_and_catch_up() {
        let mut r = Received::new();
        for seq in 0..5 {
            assert_eq!(r.deliver(seq, 10), None);
        }
        // Dropped after 4; reconnecting at t=100 while the sender is at 9.
        r.catch_up = Some(CatchUp { started_us: 100, after: 4, upto: 9, missing: 5, back: false });
        for seq in 5..10 {
            assert_eq!(r.deliver(seq, 150), None, "not back in the room yet");
        }
        r.catch_up.as_mut().unwrap().back = true;
        assert_eq!(r.caught_up(180), Some(80));
        assert_eq!(r.deliver(7, 200), None);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.deliver(12, 210), None);
        assert_eq!(r.deliver(11, 220), None);
        assert_eq!(r.out_of_order, 1);
        assert_eq!(r.distinct, 12);
        // A hole below `after` does not hold a later catch-up back.
        r.catch_up = Some(CatchUp { started_us: 300, after: 12, upto: 13, missing: 1, back: true });
        assert_eq!(r.deliver(13, 350), Some(50));
    }

    #[test]
    fn recovery_auth_is_what_the_client_sends() {
        assert_eq!(recovery_auth(None, Some("x")), "");
        assert_eq!(recovery_auth(Some("p"), None), r#"{"pid":"p"}"#);
        assert_eq!(recovery_auth(Some("p"), Some("ab-3")), r#"{"offset":"ab-3","pid":"p"}"#);
    }

    #[test]
    fn seeded_ranges() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        for _ in 0..1000 {
            let x = a.secs((3.0, 8.0));
            assert_eq!(x, b.secs((3.0, 8.0)));
            assert!(x >= Duration::from_secs(3) && x <= Duration::from_secs(8));
        }
    }

    #[test]
    fn percentile_picks() {
        let mut v: Vec<u32> = (1..=100).collect();
        let p = percentiles(&mut v);
        assert_eq!(p["p50"], 50);
        assert_eq!(p["p99"], 99);
        assert_eq!(p["max"], 100);
    }
}
