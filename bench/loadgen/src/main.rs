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
//!   latency sample.
//! - `echo`: K clients, each doing emit-with-ack round trips in a loop.
//! - `idle`: N connections opened with bounded concurrency and held open,
//!   answering pings; server RSS before and after, connections per second.
//!
//! The server's CPU time (utime + stime of `/proc/<pid>/stat`) is read at
//! the edges of the measured window, so throughput can be given per server
//! CPU-second. The generator runs on a single-threaded runtime and reports
//! its own CPU use too: near 100 % means it, not the server, was the limit.
//!
//! One JSON object per run is printed on stdout.

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
usage: iobus-loadgen <fanout|echo|idle> [options]
  --addr HOST:PORT     server address (default 127.0.0.1:3100)
  --path PATH          Engine.IO path (default /socket.io/)
  --pid PID            server process, for CPU seconds and RSS (optional)
  --server NAME        label copied into the output
  --warmup SECS        fanout/echo: seconds before measuring (default 1)
  --duration SECS      fanout/echo: measured seconds (default 5)
  --timeout SECS       hard limit for the whole run (default 120)
  --connect-concurrency N  connections opened at once (default 100)
  fanout: --receivers N (1000)  --payload BYTES (64)  --window W (16)  --room NAME (bench)
  echo:   --clients K (100)     --payload BYTES (64)
  idle:   --connections N (8000) --hold SECS (3)
";

#[derive(Debug, Clone)]
struct Args {
    scenario: String,
    addr: SocketAddr,
    path: String,
    pid: Option<u32>,
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
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        scenario: String::new(),
        addr: "127.0.0.1:3100".parse().unwrap(),
        path: "/socket.io/".into(),
        pid: None,
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
    };
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
            "--path" => a.path = v,
            "--pid" => a.pid = Some(int(&v)? as u32),
            "--server" => a.server = v,
            "--warmup" => a.warmup = num(&v)?,
            "--duration" => a.duration = num(&v)?,
            "--timeout" => a.timeout = num(&v)?,
            "--connect-concurrency" => a.connect_concurrency = int(&v)?.max(1),
            "--receivers" => a.receivers = int(&v)?.max(1),
            "--payload" => a.payload = int(&v)?,
            "--window" => a.window = int(&v)?.max(1),
            "--room" => a.room = v,
            "--clients" => a.clients = int(&v)?.max(1),
            "--connections" => a.connections = int(&v)?.max(1),
            "--hold" => a.hold = num(&v)?,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    if !matches!(a.scenario.as_str(), "fanout" | "echo" | "idle") {
        return Err("scenario must be fanout, echo or idle".into());
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
    me: f64,
    cores: Vec<(u64, u64)>,
}

fn cpu_mark(pid: Option<u32>) -> CpuMark {
    CpuMark {
        at: Instant::now(),
        server: pid.and_then(|p| cpu_seconds(&p.to_string())),
        me: cpu_seconds("self").unwrap_or(0.0),
        cores: core_times(),
    }
}

struct CpuSpan {
    wall: f64,
    server: Option<f64>,
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

/// Opens a websocket session and joins namespace `/`.
async fn connect(addr: SocketAddr, path: &str) -> Res<Ws> {
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
    let receivers =
        open_many(a.receivers, a.connect_concurrency, || connect_and_join(a.addr, &a.path, &a.room)).await?;
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
                        start = Some(cpu_mark(a.pid));
                        st.measuring.set(true);
                        phase_end = now + Duration::from_secs_f64(a.duration);
                    }
                    Some(s) => {
                        st.measuring.set(false);
                        let end = cpu_mark(a.pid);
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
        "deliveries": st.deliveries.get(),
        "deliveries_per_s": round(deliveries / span.wall),
        "server_cpu_s": span.server.map(round),
        "server_cpu_util": span.server.map(|c| round(c / span.wall)),
        "deliveries_per_cpu_s": per_cpu(deliveries, span.server),
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
    let start = cpu_mark(a.pid);
    st.measuring.set(true);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    st.measuring.set(false);
    let span = cpu_span(start, cpu_mark(a.pid));
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
    let start = cpu_mark(a.pid);
    let conns = open_many(a.connections, a.connect_concurrency, || connect(a.addr, &a.path)).await?;
    let ramp = cpu_span(start, cpu_mark(a.pid));
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
    fn percentile_picks() {
        let mut v: Vec<u32> = (1..=100).collect();
        let p = percentiles(&mut v);
        assert_eq!(p["p50"], 50);
        assert_eq!(p["p99"], 99);
        assert_eq!(p["max"], 100);
    }
}
