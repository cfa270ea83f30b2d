#!/usr/bin/env python3
"""Side-by-side Socket.IO server benchmarks: iobus against its peers.

    python3 bench/run.py [run] [options]     build, run every scenario, write BENCHMARKS.md
    python3 bench/run.py serve NAME [--port P]   one server in the foreground
    python3 bench/run.py list                the servers of bench/servers.toml
    python3 bench/run.py report              BENCHMARKS.md again from saved results

Each server is started pinned to CPU 0, the load generator (bench/loadgen)
pinned to CPU 1; each (server, scenario, repetition) gets a fresh server
process on a fresh port. Everything is on 127.0.0.1, every step has a time
limit, and servers are stopped on exit. See bench/README.md.

The `cluster` scenario runs two processes of a server on one Redis
(Debian's redis-server, started on a free port in a temporary directory
and stopped after), both pinned to CPU 0 with Redis.

A run of some scenarios or servers only (`--scenarios jitter`) replaces
those rows of bench/results/latest.jsonl and keeps the others, so
BENCHMARKS.md still shows every table.
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import re
import resource
import shlex
import signal
import socket
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
LOADGEN_DIR = os.path.join(BENCH, "loadgen")
LOADGEN = os.path.join(LOADGEN_DIR, "target", "release", "iobus-loadgen")
WORK = os.path.join(BENCH, ".work")
RESULTS = os.path.join(BENCH, "results", "latest.jsonl")
REGISTRY = os.path.join(BENCH, "servers.toml")
ANALYSIS = os.path.join(BENCH, "analysis.md")
SCENARIOS = ("fanout", "echo", "idle", "jitter", "cluster")
# What a server runs unless its registry entry lists its own `scenarios`.
DEFAULT_SCENARIOS = ["fanout", "echo", "idle"]
SERVER_CPU, LOADGEN_CPU = 0, 1

_running = []  # server processes to stop on exit


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ registry


def load_registry(path=REGISTRY):
    with open(path, "rb") as f:
        reg = tomllib.load(f)
    for name, e in reg.items():
        e.setdefault("label", name)
        e.setdefault("group", "peer")
        e.setdefault("cwd", ".")
        e.setdefault("setup", [])
        e.setdefault("build", [])
        e.setdefault("enabled", True)
        e.setdefault("targets", {})
        e.setdefault("env", {})
        e.setdefault("scenarios", list(DEFAULT_SCENARIOS))
        for s in e["scenarios"]:
            if s not in SCENARIOS:
                raise SystemExit(f"{path}: server {name} lists unknown scenario {s}")
        if "cmd" not in e:
            raise SystemExit(f"{path}: server {name} has no cmd")
    return reg


def subst(text, port=None):
    out = text.replace("{root}", ROOT).replace("{python}", sys.executable)
    if port is not None:
        out = out.replace("{port}", str(port))
    return out


def entry_cwd(e):
    return os.path.normpath(os.path.join(ROOT, e["cwd"]))


def entry_env(e, extra=None):
    env = dict(os.environ)
    env.update({k: subst(str(v)) for k, v in e.get("env", {}).items()})
    env.update(extra or {})
    return env


def scenario_env(scenario):
    """The environment a scenario gives the server: the jitter scenario turns
    connection state recovery on where the server has it (bench/README.md)."""
    return {"BENCH_RECOVERY": "1"} if scenario == "jitter" else {}


def shell(cmd, cwd, timeout=1800, quiet=False, env=None):
    """Runs a shell command; returns (ok, output)."""
    try:
        p = subprocess.run(cmd, shell=True, cwd=cwd, timeout=timeout, text=True, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s"
    if p.returncode != 0 and not quiet:
        log(f"failed ({p.returncode}): {cmd}\n{p.stdout[-3000:]}")
    return p.returncode == 0, p.stdout


def prepare(names, reg, do_setup=True):
    """Installs and builds the load generator and the servers; returns the
    names that are ready and the notes about the others."""
    notes = []
    log("building the load generator")
    ok, _ = shell("cargo build --release", LOADGEN_DIR)
    if not ok:
        raise SystemExit("the load generator does not build")
    ready = []
    for name in names:
        e = reg[name]
        steps = (e["setup"] if do_setup else []) + e["build"]
        good = True
        for step in steps:
            log(f"{name}: {subst(step)}")
            ok, out = shell(subst(step), entry_cwd(e), env=entry_env(e))
            if not ok:
                notes.append(f"{name} left out: `{step}` failed: {out.strip().splitlines()[-1:] or ''}")
                good = False
                break
        if good:
            ready.append(name)
    return ready, notes


def version_of(e):
    if "version" not in e:
        return ""
    ok, out = shell(subst(e["version"]), entry_cwd(e), timeout=60, quiet=True, env=entry_env(e))
    return out.strip().splitlines()[-1] if ok and out.strip() else ""


# ------------------------------------------------------------------ processes


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PortPool:
    def __init__(self, start):
        self.next = start

    def take(self):
        while not port_free(self.next):
            self.next += 1
        port = self.next
        self.next += 1
        return port


def start_server(name, e, port, pin=True, timeout=30, extra_env=None):
    os.makedirs(os.path.join(WORK, "logs"), exist_ok=True)
    logpath = os.path.join(WORK, "logs", f"{name}-{port}.log")
    argv = shlex.split(subst(e["cmd"], port))
    if pin:
        argv = ["taskset", "-c", str(SERVER_CPU)] + argv
    logf = open(logpath, "w")
    proc = subprocess.Popen(argv, cwd=entry_cwd(e), env=entry_env(e, extra_env), stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    logf.close()
    _running.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with open(logpath, errors="replace") as f:
            text = f.read()
        if "ready" in text and port_open(port):
            return proc, logpath
        time.sleep(0.05)
    stop_server(proc)
    with open(logpath, errors="replace") as f:
        tail = f.read()[-2000:]
    raise RuntimeError(f"{name} did not get ready on port {port}:\n{tail}")


def stop_server(proc):
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    if proc in _running:
        _running.remove(proc)


def stop_all():
    for proc in list(_running):
        try:
            stop_server(proc)
        except Exception:  # noqa: BLE001 - best effort on the way out
            try:
                proc.kill()
            except Exception:  # noqa: BLE001
                pass


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def core_busy(seconds):
    """Busy fraction of each core over `seconds`."""
    def snap():
        out = []
        with open("/proc/stat") as f:
            for line in f:
                if re.match(r"cpu\d", line):
                    v = [int(x) for x in line.split()[1:]]
                    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                    out.append((busy, busy + v[3] + v[4]))
        return out
    a = snap()
    time.sleep(seconds)
    b = snap()
    return [(y[0] - x[0]) / max(1, y[1] - x[1]) for x, y in zip(a, b)]


def wait_quiet(max_wait, threshold=0.15):
    """Waits (up to max_wait s) until the two benchmark cores are idle."""
    deadline = time.monotonic() + max_wait
    warned = False
    while True:
        busy = core_busy(0.5)
        used = [busy[i] for i in (SERVER_CPU, LOADGEN_CPU) if i < len(busy)]
        if max(used, default=0) <= threshold:
            return True
        if time.monotonic() >= deadline:
            log(f"cores still busy ({', '.join(f'{b:.0%}' for b in used)}); measuring anyway")
            return False
        if not warned:
            log(f"waiting for the cores to be idle (busy {', '.join(f'{b:.0%}' for b in used)})")
            warned = True


# ------------------------------------------------------------------ running


def loadgen_args(scenario, p):
    if scenario == "fanout":
        return ["--receivers", p.fanout_receivers, "--payload", p.fanout_payload, "--window", p.fanout_window,
                "--warmup", p.warmup, "--duration", p.duration]
    if scenario == "cluster":
        return ["--receivers", 2 * p.cluster_receivers, "--payload", p.cluster_payload, "--window", p.cluster_window,
                "--warmup", p.warmup, "--duration", p.duration]
    if scenario == "echo":
        return ["--clients", p.echo_clients, "--payload", p.echo_payload,
                "--warmup", p.warmup, "--duration", p.duration]
    if scenario == "jitter":
        return ["--receivers", p.jitter_receivers, "--rate", p.jitter_rate, "--duration", p.jitter_duration,
                "--payload", p.jitter_payload, "--drop-every", p.jitter_drop_every, "--offline", p.jitter_offline,
                "--settle", p.jitter_settle, "--seed", p.jitter_seed, "--log-packets", p.jitter_log_packets]
    return ["--connections", p.idle_connections, "--connect-concurrency", p.idle_concurrency,
            "--hold", p.idle_hold]


def run_limit(scenario, p):
    """Time limit of one load generator run (s)."""
    if scenario == "jitter":
        return max(p.run_timeout, p.jitter_duration + p.jitter_settle + 60)
    return p.run_timeout


def foreign_load(r):
    """CPU used on the benchmark cores by other processes during the run."""
    busy = r.get("core_busy") or []
    out = {}
    util = r.get("server_cpu_util")
    if util is None and r.get("ramp_server_cpu_s") is not None and r.get("ramp_s"):
        util = r["ramp_server_cpu_s"] / r["ramp_s"]
    if len(busy) > SERVER_CPU and util is not None:
        # Redis shares the servers' core in the cluster scenario.
        out["server_core"] = round(busy[SERVER_CPU] - util - (r.get("redis_cpu_util") or 0), 3)
    if len(busy) > LOADGEN_CPU and r.get("loadgen_cpu_util") is not None:
        out["loadgen_core"] = round(busy[LOADGEN_CPU] - r["loadgen_cpu_util"], 3)
    return out


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    return out.stdout


def start_redis(port, timeout=10):
    """Debian's redis-server on 127.0.0.1:port in a fresh temporary directory,
    pinned to the servers' core, nothing saved; returns (process, directory)."""
    exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError("redis-server not found (make setup-redis)")
    tmp = tempfile.mkdtemp(prefix="iobus-bench-redis-")
    logf = open(os.path.join(tmp, "redis.log"), "w")
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), exe, "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", tmp, "--save", "", "--appendonly", "no", "--daemonize", "no"],
                            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    logf.close()
    _running.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if port_open(port) and "PONG" in redis_cli(port, "PING"):
            return proc, tmp
        time.sleep(0.05)
    stop_server(proc)
    shutil.rmtree(tmp, ignore_errors=True)
    raise RuntimeError(f"redis-server did not start on port {port}")


def commandstat(port, command):
    """`calls` of one command in Redis's INFO commandstats (0 if never called)."""
    m = re.search(rf"^cmdstat_{command}:calls=(\d+)", redis_cli(port, "INFO", "commandstats"), re.M)
    return int(m.group(1)) if m else 0


def run_loadgen(name, scenario, port, pid, limit, p, extra=()):
    argv = ["taskset", "-c", str(LOADGEN_CPU), LOADGEN, scenario if scenario != "cluster" else "fanout",
            "--addr", f"127.0.0.1:{port}", "--pid", str(pid), "--server", name, "--timeout", str(limit)]
    argv += [str(x) for x in list(loadgen_args(scenario, p)) + list(extra)]
    try:
        out = subprocess.run(argv, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=limit + 30)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        r = json.loads(lines[-1]) if lines else {"error": out.stderr.strip()[-500:] or "no output"}
        if out.returncode != 0 and "error" not in r:
            r["error"] = out.stderr.strip()[-500:]
    except subprocess.TimeoutExpired:
        r = {"error": "load generator timed out"}
    return r


def run_cluster(name, e, rep, p, ports):
    """Two processes of one server on one Redis: half the receivers on each,
    the sender on the first; CPU of both servers together, Redis beside."""
    rport, port1, port2 = ports.take(), ports.take(), ports.take()
    redis, tmp = start_redis(rport)
    procs = []
    try:
        env = {"BENCH_REDIS": f"redis://127.0.0.1:{rport}"}
        for port in (port1, port2):
            procs.append(start_server(name, e, port, extra_env=env))
        time.sleep(0.3)
        publish_before = commandstat(rport, "publish")
        (proc1, log1), (proc2, log2) = procs
        r = run_loadgen(name, "cluster", port1, proc1.pid, p.run_timeout, p,
                        ["--addr2", f"127.0.0.1:{port2}", "--pid2", proc2.pid, "--redis-pid", redis.pid])
        for proc, logpath in procs:
            if proc.poll() is not None:
                r.setdefault("error", f"server exited with {proc.returncode} (log: {logpath})")
        # Every broadcast the servers handled is in by the time they stop.
        for proc, _ in procs:
            stop_server(proc)
        r["redis_publish"] = commandstat(rport, "publish") - publish_before
        if r.get("sent_total"):
            r["publish_per_broadcast"] = round(r["redis_publish"] / r["sent_total"], 4)
    finally:
        for proc, _ in procs:
            stop_server(proc)
        stop_server(redis)
        shutil.rmtree(tmp, ignore_errors=True)
    r.update({"server": name, "scenario": "cluster", "rep": rep, "port": port1, "redis_port": rport})
    r["foreign_load"] = foreign_load(r)
    return r


def run_one(name, e, scenario, rep, p, ports):
    if scenario == "cluster":
        return run_cluster(name, e, rep, p, ports)
    port = ports.take()
    proc, logpath = start_server(name, e, port, extra_env=scenario_env(scenario))
    limit = run_limit(scenario, p)
    try:
        time.sleep(0.3)  # let the runtime settle before reading its baseline
        r = run_loadgen(name, scenario, port, proc.pid, limit, p)
        if proc.poll() is not None:
            r.setdefault("error", f"server exited with {proc.returncode} (log: {logpath})")
    finally:
        stop_server(proc)
    r.update({"server": name, "scenario": scenario, "rep": rep, "port": port})
    r["foreign_load"] = foreign_load(r)
    return r


def noisy(r, limit):
    """Whether other processes took more than `limit` of the server's core
    (or more than twice that of the load generator's core) during the run."""
    fl = r.get("foreign_load", {})
    return fl.get("server_core", 0) > limit or fl.get("loadgen_core", 0) > 2 * limit


def summary(r):
    if "error" in r:
        return f"ERROR {r['error']}"
    s = r["scenario"]
    if s == "cluster":
        return (f"{r['deliveries_per_s']:,.0f} deliveries/s, {r['deliveries_per_cpu_s'] or 0:,.0f}/CPU-s of both servers, "
                f"servers {r['server_cpu_util']:.0%}, redis {r.get('redis_cpu_util') or 0:.0%}, "
                f"loadgen {r['loadgen_cpu_util']:.0%}, {r.get('redis_publish')} PUBLISH for "
                f"{r.get('sent_total')} broadcasts")
    if s == "fanout":
        return (f"{r['deliveries_per_s']:,.0f} deliveries/s, {r['deliveries_per_cpu_s'] or 0:,.0f}/CPU-s, "
                f"p99 {r['latency_us']['p99'] / 1000:.1f} ms, server {r['server_cpu_util']:.0%}, "
                f"loadgen {r['loadgen_cpu_util']:.0%}")
    if s == "echo":
        return (f"{r['acks_per_s']:,.0f} acks/s, {r['acks_per_cpu_s'] or 0:,.0f}/CPU-s, "
                f"p99 {r['rtt_us']['p99'] / 1000:.2f} ms, server {r['server_cpu_util']:.0%}, "
                f"loadgen {r['loadgen_cpu_util']:.0%}")
    if s == "jitter":
        replay = r.get("replay_us") or {}
        return (f"delivered {r['delivered_pct']:.3f} %, {r['duplicates']} duplicates, {r['out_of_order']} out of order, "
                f"{r['recovered']}/{r['reconnects']} reconnects recovered, replay p50 "
                f"{fmt(replay.get('p50'), 1e-3, 1, ' ms')} p99 {fmt(replay.get('p99'), 1e-3, 1, ' ms')}, "
                f"server {r['server_cpu_util']:.0%}, loadgen {r['loadgen_cpu_util']:.0%}")
    return (f"{(r['rss_per_conn_bytes'] or 0) / 1024:.1f} KiB/conn, {r['conn_per_s']:,.0f} conn/s, "
            f"loadgen {r['loadgen_cpu_util']:.0%}")


def run_suite(names, reg, p):
    ports = PortPool(p.port_base)
    results = []
    plan = [(name, scenario) for name in names for scenario in p.scenarios if scenario in reg[name]["scenarios"]]
    total = p.reps * len(plan)
    done = 0
    started = time.monotonic()
    # Repetitions on the outside: drift on the machine spreads over all servers.
    for rep in range(1, p.reps + 1):
        for name, scenario in plan:
            done += 1
            for attempt in range(1 + p.retry_noisy):
                if p.quiet_wait > 0:
                    wait_quiet(p.quiet_wait)
                try:
                    r = run_one(name, reg[name], scenario, rep, p, ports)
                except RuntimeError as err:
                    r = {"server": name, "scenario": scenario, "rep": rep, "error": str(err)}
                r["attempt"] = attempt + 1
                if "error" in r or not noisy(r, p.noise_limit):
                    break
                log(f"  other processes used the benchmark cores ({r['foreign_load']}); again")
            log(f"[{done}/{total}] {name} {scenario} #{rep}: {summary(r)}")
            results.append(r)
    log(f"suite took {time.monotonic() - started:.0f} s")
    return results


# ------------------------------------------------------------------ report


def machine_info():
    info = {}
    fields = {}
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ":" in ln:
                k, v = (x.strip() for x in ln.split(":", 1))
                fields.setdefault(k, v)
    cpu = fields.get("model name") or platform.processor()
    extra = [f"family {fields['cpu family']} model {fields['model']} stepping {fields.get('stepping', '?')}"
             if "cpu family" in fields and "model" in fields else "",
             f"{float(fields['cpu MHz']):.0f} MHz" if "cpu MHz" in fields else "",
             f"{fields['cache size']} cache" if "cache size" in fields else "",
             "virtual machine" if " hypervisor" in f" {fields.get('flags', '')} " else ""]
    extra = [x for x in extra if x]
    info["cpu"] = cpu + (f" ({', '.join(extra)})" if extra else "")
    info["cores"] = os.cpu_count()
    info["kernel"] = platform.release()
    with open("/proc/meminfo") as f:
        kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
    info["memory_gib"] = round(kb / 1024 / 1024, 1)
    try:
        with open("/etc/os-release") as f:
            osr = dict(ln.rstrip().split("=", 1) for ln in f if "=" in ln)
        info["os"] = osr.get("PRETTY_NAME", "").strip('"')
    except OSError:
        info["os"] = ""
    for tool, cmd in (("rustc", "rustc --version"), ("node", "node --version"), ("python", f"{sys.executable} --version")):
        ok, out = shell(cmd, ROOT, timeout=30, quiet=True)
        info[tool] = out.strip() if ok else "?"
    return info


def med(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def metric(rows, path):
    out = []
    for r in rows:
        v = r
        for k in path.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        out.append(v)
    return out


def fmt(v, scale=1.0, digits=0, suffix=""):
    if v is None:
        return "n/a"
    return f"{v * scale:,.{digits}f}{suffix}"


def spread(rows, path):
    vals = [v for v in metric(rows, path) if v is not None]
    if len(vals) < 2:
        return ""
    m = statistics.median(vals)
    if not m:
        return ""
    return f" ±{(max(vals) - min(vals)) / 2 / m:.0%}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


SCENARIO_NAMES = {"fanout": "fan-out", "echo": "echo", "idle": "idle", "jitter": "reconnect jitter",
                  "cluster": "cluster fan-out"}


def runs_of(meta, results):
    """The runs the results come from: `meta["runs"]`, or one run made of the
    whole file for results written before runs were recorded."""
    if meta.get("runs"):
        return meta["runs"]
    pairs = sorted({(r["server"], r["scenario"]) for r in results})
    return [{"date": meta.get("date", "?"), "duration_s": meta.get("duration_s", 0),
             "reps": meta.get("params", {}).get("reps"), "pairs": [list(x) for x in pairs],
             "versions": meta.get("versions", {}), "machine": meta.get("machine")}]


def merge_previous(results, meta, planned, path, reg):
    """Adds the rows of the previous results file for the (server, scenario)
    pairs this run did not plan, so that a run of one scenario keeps the
    others' tables; returns (results, meta)."""
    try:
        with open(path) as f:
            lines = [json.loads(ln) for ln in f if ln.strip()]
        old_meta = next(x["meta"] for x in lines if "meta" in x)
    except (OSError, ValueError, StopIteration):
        return results, meta
    old_rows = [x for x in lines if "meta" not in x]
    kept = [r for r in old_rows if (r.get("server"), r.get("scenario")) not in planned]
    if not kept:
        return results, meta
    runs = list(meta["runs"])
    for run in runs_of(old_meta, old_rows):
        pairs = [x for x in run["pairs"] if tuple(x) not in planned]
        if pairs:
            runs.append({**run, "pairs": pairs})
    servers = {r["server"] for r in results + kept}
    order = list(reg) + sorted(servers - set(reg))
    versions = dict(old_meta.get("versions", {}))
    versions.update(meta["versions"])
    params = dict(old_meta.get("params", {}))
    params.update(meta["params"])
    notes = list(meta["notes"]) + [n for n in old_meta.get("notes", []) if n not in meta["notes"]]
    meta = {**meta, "servers": [n for n in order if n in servers], "versions": versions, "params": params,
            "notes": notes, "runs": runs}
    return results + kept, meta


def build_report(results, meta, reg):
    # Medians come from the runs no other process disturbed, where there are
    # any; cells resting on disturbed runs only are marked.
    by, disturbed = {}, set()
    for r in results:
        if "error" not in r:
            by.setdefault((r["server"], r["scenario"]), []).append(r)
    for key, rows in by.items():
        clean = [r for r in rows if not noisy(r, meta["noise_limit"])]
        if clean:
            by[key] = clean
        else:
            disturbed.add(key)
    names = meta["servers"]
    label = {n: reg[n]["label"] if n in reg else n for n in names}
    p = meta["params"]
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("iobus against the Socket.IO servers people would otherwise use, measured side by side with one load")
    w("generator (`bench/loadgen`) and one bench contract (`join`, `broadcast`, `echo` on namespace `/`, and")
    w("`stats` with `BENCH_RECOVERY=1` for reconnect jitter; see `bench/README.md`).")
    runs = runs_of(meta, results)
    if len(runs) == 1:
        w(f"Generated by `bench/run.py` on {meta['date']} in {meta['duration_s']:.0f} s; medians of "
          f"{p['reps']} runs, each on a fresh server process. Raw results: `bench/results/latest.jsonl`.")
    else:
        w(f"Generated by `bench/run.py` on {meta['date']} from {len(runs)} runs of the suite (below); medians over "
          "the repetitions of each, every repetition on a fresh server process. Raw results: "
          "`bench/results/latest.jsonl`.")
        w("")
        for run in runs:
            scen = [s for s in SCENARIOS if any(x[1] == s for x in run["pairs"])]
            w(f"- {', '.join(SCENARIO_NAMES.get(s, s) for s in scen)}: run of {run['date']} "
              f"({run['duration_s']:.0f} s, {run.get('reps') or '?'} repetition{'' if run.get('reps') == 1 else 's'})")
    w("")
    w("## Machine")
    w("")
    m = meta["machine"]
    w(f"- CPU: {m['cpu']}, {m['cores']} cores; the server pinned to CPU {SERVER_CPU}, the load generator "
      f"to CPU {LOADGEN_CPU} (`taskset`), so every server has exactly one core")
    w(f"- Memory {m['memory_gib']} GiB; kernel {m['kernel']}; {m['os']}")
    for run in runs:
        rm = run.get("machine")
        if rm and (rm.get("cpu"), rm.get("kernel")) != (m.get("cpu"), m.get("kernel")):
            w(f"- the run of {run['date']} was on another machine of the same kind: {rm.get('cpu')}, "
              f"kernel {rm.get('kernel')}")
    w(f"- Toolchains: {m['rustc']}; node {m['node']}; {m['python']}")
    for n in names:
        seen = {}
        for run in runs:
            scen = [x[1] for x in run["pairs"] if x[0] == n]
            if scen:
                seen.setdefault(run["versions"].get(n) or meta["versions"].get(n) or "?", []).extend(scen)
        if len(seen) > 1:
            w(f"- {label[n]}: " + "; ".join(f"{v} ({', '.join(SCENARIO_NAMES.get(s, s) for s in sc)})"
                                              for v, sc in seen.items()))
        else:
            w(f"- {label[n]}: {meta['versions'].get(n) or '?'}")
    w("- Loopback TCP (127.0.0.1), websocket transport, no compression.")
    w("")
    w("## Parameters")
    w("")
    if "fanout_receivers" in p:
        w(f"- fan-out: {p['fanout_receivers']} receivers in one room, one sender broadcasting {p['fanout_payload']}-byte "
          f"payloads, closed loop with at most {p['fanout_window']} broadcasts outstanding (a broadcast is "
          f"outstanding until every receiver has it); {p['warmup']} s warm-up, {p['duration']} s measured; latency "
          "from the send time carried in the payload to its arrival, over every delivery")
    if "echo_clients" in p:
        w(f"- echo: {p['echo_clients']} clients, each doing emit-with-ack round trips of a {p['echo_payload']}-byte string in a loop; "
          f"{p['warmup']} s warm-up, {p['duration']} s measured")
    if "idle_connections" in p:
        w(f"- idle: {p['idle_connections']} connections opened {p['idle_concurrency']} at a time (websocket + Socket.IO CONNECT), "
          f"held {p['idle_hold']} s answering pings; RSS per connection = (VmRSS after − VmRSS before) / connections")
    if "jitter_receivers" in p:
        w(f"- reconnect jitter: {p['jitter_receivers']} receivers in one room, one sender broadcasting "
          f"{p['jitter_rate']:g} {p['jitter_payload']}-byte payloads a second for {p['jitter_duration']:g} s, each "
          "with its sequence number; each receiver drops its TCP connection after "
          f"{p['jitter_drop_every'].replace(',', '–')} s online and reconnects after {p['jitter_offline'].replace(',', '–')} s "
          f"(uniform, seed {p['jitter_seed']}, the same for every server), sending `{{pid, offset}}` where the server "
          "offered recovery (`BENCH_RECOVERY=1`), rejoining the room when it gets a new session; at most "
          f"{p['jitter_settle']:g} s after the stream for the last reconnections. Delivered = distinct sequence numbers "
          "received / (receivers × broadcasts), every receiver being in the room before the first broadcast. Replay "
          "latency of a reconnection: from the start of the reconnection (before the TCP connect) until the client "
          "is back in the room (the CONNECT reply of a recovered session, the join ack of a new one) and holds every "
          "sequence number above the highest it had when the reconnection started, up to the highest the sender "
          "had emitted by then; a reconnection that never gets there counts as not caught up. Log memory per "
          f"packet: the server's RSS growth over {p['jitter_log_packets']} broadcasts to a room with no member "
          "(stored, delivered to no one) after the stream, and the log's own account where the server gives one "
          "(`stats`)")
    if "cluster_receivers" in p:
        w(f"- cluster fan-out: two processes of the server on one Redis (Debian's redis-server, started for the run), "
          f"each with its Redis pub/sub adapter (iobus `RedisAdapter::pubsub`, socket.io `@socket.io/redis-adapter`, "
          f"socketioxide its own `socketioxide-redis`); "
          f"{p['cluster_receivers']} receivers on each, all in one room, one sender on the first broadcasting "
          f"{p['cluster_payload']}-byte payloads, closed loop with at most {p['cluster_window']} broadcasts outstanding; "
          f"{p['warmup']} s warm-up, {p['duration']} s measured. Both servers and Redis share CPU {SERVER_CPU}; "
          "per CPU-second counts the two servers together, Redis's CPU is given beside")
    w("- per CPU-second: deliveries (acks, connections) divided by the server's utime + stime from `/proc/<pid>/stat` "
      "over the measured window")
    w("")
    w("## Results")
    w("")

    def name(n, s):
        return label[n] + (" †" if (n, s) in disturbed else "")

    w("### Fan-out")
    w("")
    w("| server | deliveries/s | per server CPU-s | latency p50 | p90 | p99 | server CPU | loadgen CPU |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|")
    for n in names:
        rows = by.get((n, "fanout"), [])
        if not rows:
            w(f"| {name(n, 'fanout')} | n/a | | | | | | |")
            continue
        w(f"| {name(n, 'fanout')} | {fmt(med(metric(rows, 'deliveries_per_s')))} "
          f"| {fmt(med(metric(rows, 'deliveries_per_cpu_s')))}{spread(rows, 'deliveries_per_cpu_s')} "
          f"| {fmt(med(metric(rows, 'latency_us.p50')), 1e-3, 2, ' ms')} "
          f"| {fmt(med(metric(rows, 'latency_us.p90')), 1e-3, 2, ' ms')} "
          f"| {fmt(med(metric(rows, 'latency_us.p99')), 1e-3, 2, ' ms')} "
          f"| {fmt(med(metric(rows, 'server_cpu_util')), 100, 0, ' %')} "
          f"| {fmt(med(metric(rows, 'loadgen_cpu_util')), 100, 0, ' %')} |")
    w("")
    w("### Echo")
    w("")
    w("| server | acks/s | per server CPU-s | RTT p50 | p90 | p99 | server CPU | loadgen CPU |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|")
    for n in names:
        rows = by.get((n, "echo"), [])
        if not rows:
            w(f"| {name(n, 'echo')} | n/a | | | | | | |")
            continue
        w(f"| {name(n, 'echo')} | {fmt(med(metric(rows, 'acks_per_s')))} "
          f"| {fmt(med(metric(rows, 'acks_per_cpu_s')))}{spread(rows, 'acks_per_cpu_s')} "
          f"| {fmt(med(metric(rows, 'rtt_us.p50')), 1e-3, 2, ' ms')} "
          f"| {fmt(med(metric(rows, 'rtt_us.p90')), 1e-3, 2, ' ms')} "
          f"| {fmt(med(metric(rows, 'rtt_us.p99')), 1e-3, 2, ' ms')} "
          f"| {fmt(med(metric(rows, 'server_cpu_util')), 100, 0, ' %')} "
          f"| {fmt(med(metric(rows, 'loadgen_cpu_util')), 100, 0, ' %')} |")
    w("")
    w("### Idle connections")
    w("")
    w("| server | RSS per connection | RSS before → after | connections/s (ramp-up) | per server CPU-s | loadgen CPU |")
    w("|---|--:|--:|--:|--:|--:|")
    for n in names:
        rows = by.get((n, "idle"), [])
        if not rows:
            w(f"| {name(n, 'idle')} | n/a | | | | |")
            continue
        w(f"| {name(n, 'idle')} | {fmt(med(metric(rows, 'rss_per_conn_bytes')), 1 / 1024, 1, ' KiB')}"
          f"{spread(rows, 'rss_per_conn_bytes')} "
          f"| {fmt(med(metric(rows, 'rss_before_kib')), 1 / 1024, 1)} → {fmt(med(metric(rows, 'rss_after_kib')), 1 / 1024, 1, ' MiB')} "
          f"| {fmt(med(metric(rows, 'conn_per_s')))} "
          f"| {fmt(med(metric(rows, 'conn_per_cpu_s')))} "
          f"| {fmt(med(metric(rows, 'loadgen_cpu_util')), 100, 0, ' %')} |")
    w("")
    if any(s == "jitter" for _, s in by) or any(s == "jitter" for _, s in disturbed):
        w("### Reconnect jitter")
        w("")
        w("| server | recovery | delivered | worst receiver | duplicates | out of order | reconnects recovered "
          "| not caught up | replay p50 | p99 | max | log memory per packet (RSS) | log's own account | server CPU |")
        w("|---|:-:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for n in names:
            rows = by.get((n, "jitter"), [])
            if not rows:
                if n in reg and "jitter" in reg[n].get("scenarios", []):
                    w(f"| {name(n, 'jitter')} | n/a | | | | | | | | | | | | |")
                continue
            total = lambda k: sum(r.get(k) or 0 for r in rows)  # noqa: E731

            def own_account(rows):
                logged = med(metric(rows, "log_bytes_per_packet"))
                if logged is not None:
                    return fmt(logged, 1, 0, " B (log)")
                heap = med(metric(rows, "log_heap_per_packet_bytes"))
                return fmt(heap, 1, 0, " B (heap)") if heap is not None else "n/a"
            offered = "on" if all(r.get("recovery_offered") for r in rows) else (
                "off" if not any(r.get("recovery_offered") for r in rows) else "mixed")
            lo = min(r["delivered_pct"] for r in rows)

            def replay(q, digits=1):
                # Latencies of the few reconnections that missed nothing say
                # nothing about a server whose reconnections mostly never catch up.
                if total("replays") * 2 < total("reconnects"):
                    return "n/a"
                return fmt(med(metric(rows, f"replay_us.{q}")), 1e-3, digits, " ms")
            w(f"| {name(n, 'jitter')} | {offered} "
              f"| {fmt(med(metric(rows, 'delivered_pct')), 1, 3, ' %')}" + (f" (min {lo:.3f} %)" if len(rows) > 1 else "") +
              f" | {fmt(min(r['worst_receiver_pct'] for r in rows), 1, 3, ' %')} "
              f"| {total('duplicates'):,} | {total('out_of_order'):,} "
              f"| {total('recovered'):,} / {total('reconnects'):,} | {total('not_caught_up'):,} "
              f"| {replay('p50')} "
              f"| {replay('p99')}{spread(rows, 'replay_us.p99') if replay('p99') != 'n/a' else ''} "
              f"| {replay('max', 0)} "
              f"| {fmt(med(metric(rows, 'log_rss_per_packet_bytes')), 1, 0, ' B')} "
              f"| {own_account(rows)} "
              f"| {fmt(med(metric(rows, 'server_cpu_util')), 100, 0, ' %')} |")
        w("")
        w("Delivered and replay latency are medians over the runs; worst receiver is the lowest share one receiver "
          "got in any run; duplicates, out-of-order deliveries, reconnections and those not caught up are totals "
          "over the runs. A replay latency is only counted for a reconnection that caught up; where fewer than half "
          "did (a server without recovery), the few that missed nothing say nothing and none is shown. The server's own "
          "account of the log memory: iobus's `RecoveryLog::usage()` (bytes over packets, what its `max_log_bytes` "
          "cap counts), socket.io's V8 heap in use after a full collection (growth over the probe's packets); "
          "without recovery the RSS column shows what the probe costs when nothing is stored.")
        w("")
    if any(s == "cluster" for _, s in by) or any(s == "cluster" for _, s in disturbed):
        w("### Cluster fan-out (two servers on one Redis)")
        w("")
        w("| server | deliveries/s | per CPU-s of both servers | latency p50 | p99 | servers' CPU | Redis CPU "
          "| PUBLISH per broadcast | loadgen CPU |")
        w("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
        for n in names:
            rows = by.get((n, "cluster"), [])
            if not rows:
                if n in reg and "cluster" in reg[n].get("scenarios", []):
                    w(f"| {name(n, 'cluster')} | n/a | | | | | | | |")
                continue
            sent = sum(r.get("sent_total") or 0 for r in rows)
            published = sum(r.get("redis_publish") or 0 for r in rows)
            w(f"| {name(n, 'cluster')} | {fmt(med(metric(rows, 'deliveries_per_s')))} "
              f"| {fmt(med(metric(rows, 'deliveries_per_cpu_s')))}{spread(rows, 'deliveries_per_cpu_s')} "
              f"| {fmt(med(metric(rows, 'latency_us.p50')), 1e-3, 2, ' ms')} "
              f"| {fmt(med(metric(rows, 'latency_us.p99')), 1e-3, 2, ' ms')} "
              f"| {fmt(med(metric(rows, 'server_cpu_util')), 100, 0, ' %')} "
              f"| {fmt(med(metric(rows, 'redis_cpu_util')), 100, 1, ' %')} "
              f"| {fmt(ratio(published, sent), 1, 3)} ({published:,} / {sent:,}) "
              f"| {fmt(med(metric(rows, 'loadgen_cpu_util')), 100, 0, ' %')} |")
        w("")
        w("Servers' CPU is the two servers' utime + stime over the measured window, as a share of one core; "
          "PUBLISH per broadcast is Redis's `INFO commandstats` `cmdstat_publish` calls during the runs over the "
          "broadcasts the sender emitted (warm-up included), totals over the runs; a broadcast still in flight "
          "when the load generator closes may never be handled, so slightly under 1 is expected.")
        w("")
    w("Medians over the runs that no other process disturbed (see Notes); ± is half the range of those runs "
      "relative to the median. † marks a row with disturbed runs only.")
    w("")

    def mv(n, s, path):
        return med(metric(by.get((n, s), []), path))

    iob = [n for n in names if reg.get(n, {}).get("group") == "iobus"]
    peers = [n for n in names if reg.get(n, {}).get("group") != "iobus"]
    if iob and peers:
        w("## Ratios")
        w("")
        w("iobus ÷ peer for throughput (higher is better for iobus); peer ÷ iobus for memory and latency "
          "(higher is better for iobus too).")
        w("")
        w("| iobus row | peer | fan-out per CPU-s | fan-out deliveries/s | fan-out p99 latency | echo per CPU-s "
          "| echo acks/s | echo p99 RTT | RSS per connection | connections/s | cluster fan-out per CPU-s |")
        w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for a in iob:
            for b in peers:
                cells = [
                    ratio(mv(a, "fanout", "deliveries_per_cpu_s"), mv(b, "fanout", "deliveries_per_cpu_s")),
                    ratio(mv(a, "fanout", "deliveries_per_s"), mv(b, "fanout", "deliveries_per_s")),
                    ratio(mv(b, "fanout", "latency_us.p99"), mv(a, "fanout", "latency_us.p99")),
                    ratio(mv(a, "echo", "acks_per_cpu_s"), mv(b, "echo", "acks_per_cpu_s")),
                    ratio(mv(a, "echo", "acks_per_s"), mv(b, "echo", "acks_per_s")),
                    ratio(mv(b, "echo", "rtt_us.p99"), mv(a, "echo", "rtt_us.p99")),
                    ratio(mv(b, "idle", "rss_per_conn_bytes"), mv(a, "idle", "rss_per_conn_bytes")),
                    ratio(mv(a, "idle", "conn_per_s"), mv(b, "idle", "conn_per_s")),
                    ratio(mv(a, "cluster", "deliveries_per_cpu_s"), mv(b, "cluster", "deliveries_per_cpu_s")),
                ]
                w(f"| {label[a]} | {label[b]} | " + " | ".join(fmt(c, 1, 2, "×") for c in cells) + " |")
        w("")
        w("## Targets")
        w("")
        w("| iobus row | target | measured | met |")
        w("|---|---|--:|:-:|")
        for a in iob:
            t = reg[a].get("targets", {})
            checks = []
            for key, scen, path in (("fanout_per_cpu", "fanout", "deliveries_per_cpu_s"),
                                    ("echo_per_cpu", "echo", "acks_per_cpu_s"),
                                    ("cluster_per_cpu", "cluster", "deliveries_per_cpu_s")):
                for peer, goal in t.get(key, {}).items():
                    if peer not in names:
                        continue
                    r = ratio(mv(a, scen, path), mv(peer, scen, path))
                    what = "acks" if scen == "echo" else "deliveries"
                    checks.append((f"{'cluster fan-out' if scen == 'cluster' else scen} {what} per CPU-s ≥ {goal}× {label[peer]}", fmt(r, 1, 2, "×"),
                                   r is not None and r >= goal))
            if "echo_p99_ms" in t:
                v = mv(a, "echo", "rtt_us.p99")
                checks.append((f"echo p99 RTT ≤ {t['echo_p99_ms']} ms at {p.get('echo_clients', '?')} clients",
                               fmt(v, 1e-3, 2, " ms"), v is not None and v / 1000 <= t["echo_p99_ms"]))
            jrows = by.get((a, "jitter"), [])
            if "jitter_delivered_pct" in t:
                v = min((r["delivered_pct"] for r in jrows), default=None)
                checks.append((f"reconnect jitter: delivered ≥ {t['jitter_delivered_pct']:.3f} % in every run",
                               fmt(v, 1, 3, " %"), v is not None and v >= t["jitter_delivered_pct"]))
            for key, what in (("jitter_duplicates", "duplicates"), ("jitter_out_of_order", "out-of-order deliveries")):
                if key in t:
                    v = sum(r.get(key[len("jitter_"):]) or 0 for r in jrows) if jrows else None
                    checks.append((f"reconnect jitter: {what} ≤ {t[key]}", fmt(v), v is not None and v <= t[key]))
            for peer, goal in t.get("jitter_replay_p99", {}).items():
                if peer not in names:
                    continue
                mine, theirs = mv(a, "jitter", "replay_us.p99"), mv(peer, "jitter", "replay_us.p99")
                r = ratio(mine, theirs)
                checks.append((f"reconnect jitter: replay p99 ≤ {goal}× {label[peer]}'s "
                               f"({fmt(theirs, 1e-3, 1, ' ms')})", fmt(mine, 1e-3, 1, " ms"),
                               r is not None and r <= goal))
            if "idle_rss_kib" in t:
                v = mv(a, "idle", "rss_per_conn_bytes")
                checks.append((f"idle RSS ≤ {t['idle_rss_kib']} KiB per connection", fmt(v, 1 / 1024, 1, " KiB"),
                               v is not None and v / 1024 <= t["idle_rss_kib"]))
            for what, got, ok in checks:
                w(f"| {label[a]} | {what} | {got} | {'yes' if ok else '**no**'} |")
        w("")
    notes = list(meta.get("notes", []))
    errors = [r for r in results if "error" in r]
    for r in errors:
        notes.append(f"{r['server']} {r['scenario']} run {r['rep']} failed: {r['error'][:300]}")
    flagged = [r for r in results if "error" not in r and noisy(r, meta["noise_limit"])]
    if flagged:
        notes.append(f"{len(flagged)} run(s) shared a benchmark core with other processes (more than "
                     f"{meta['noise_limit']:.0%} of the server's core or {2 * meta['noise_limit']:.0%} of the load "
                     "generator's) and are left out of the medians where a clean run "
                     "of the same server and scenario exists: " + ", ".join(
                         f"{r['server']} {r['scenario']} #{r['rep']}" for r in flagged))
    def server_util(r):
        if r.get("server_cpu_util") is not None:
            return r["server_cpu_util"]
        if r.get("ramp_server_cpu_s") is not None and r.get("ramp_s"):
            return r["ramp_server_cpu_s"] / r["ramp_s"]
        return None

    busy_lg = [r for r in results if "error" not in r and (r.get("loadgen_cpu_util") or 0) > 0.9]
    limited = [r for r in busy_lg if (server_util(r) or 0) < 0.95]
    if limited:
        notes.append("the load generator used more than 90 % of its core while the server used less than 95 % "
                     "of its own in: " + ", ".join(f"{r['server']} {r['scenario']} #{r['rep']}" for r in limited) +
                     " (there the load generator may have limited the rate; per-CPU-second figures still hold)")
    if len(busy_lg) > len(limited):
        notes.append("in " + ", ".join(f"{r['server']} {r['scenario']} #{r['rep']}" for r in busy_lg
                                        if r not in limited) +
                     " both the server and the load generator were near a full core: the server was saturated")
    if notes:
        w("## Notes")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")
    if os.path.exists(ANALYSIS):
        with open(ANALYSIS) as f:
            text = f.read().strip()
        if text:
            w("## Where the time and memory go")
            w("")
            w("(From `bench/analysis.md`, kept by hand beside the generated tables.)")
            w("")
            w(text)
            w("")
    w("## Reproduce")
    w("")
    w("`bench/run.sh` (or `python3 bench/run.py`): builds, installs the peers' dependencies, runs the suite and "
      "rewrites this file. `python3 bench/run.py --help` lists the parameters; bench/README.md describes the "
      "server registry.")
    w("")
    return "\n".join(L)


# ------------------------------------------------------------------ main


def add_params(ap):
    ap.add_argument("--servers", help="comma-separated server names (default: every enabled one)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--fanout-receivers", type=int, default=1000)
    ap.add_argument("--fanout-payload", type=int, default=64)
    ap.add_argument("--fanout-window", type=int, default=16)
    ap.add_argument("--echo-clients", type=int, default=100)
    ap.add_argument("--echo-payload", type=int, default=64)
    ap.add_argument("--idle-connections", type=int, default=8000)
    ap.add_argument("--idle-concurrency", type=int, default=100)
    ap.add_argument("--idle-hold", type=float, default=2.0)
    ap.add_argument("--jitter-receivers", type=int, default=300, help="keep under ~2000 on a two-core machine")
    ap.add_argument("--jitter-rate", type=float, default=100.0, help="broadcasts per second")
    ap.add_argument("--jitter-duration", type=float, default=40.0, help="seconds of stream")
    ap.add_argument("--jitter-payload", type=int, default=64)
    ap.add_argument("--jitter-drop-every", default="3,8", help="LO,HI seconds online between drops")
    ap.add_argument("--jitter-offline", default="0.5,2", help="LO,HI seconds offline")
    ap.add_argument("--jitter-settle", type=float, default=15.0,
                    help="most seconds waited after the stream for the last reconnections")
    ap.add_argument("--jitter-seed", type=int, default=1)
    ap.add_argument("--jitter-log-packets", type=int, default=20000,
                    help="broadcasts to an empty room for the log memory probe")
    ap.add_argument("--cluster-receivers", type=int, default=500, help="receivers on each of the two servers")
    ap.add_argument("--cluster-payload", type=int, default=64)
    ap.add_argument("--cluster-window", type=int, default=16)
    ap.add_argument("--fresh", action="store_true",
                    help="replace the results file instead of keeping its rows of the servers and scenarios not run")
    ap.add_argument("--run-timeout", type=float, default=90.0, help="limit for one load generator run (s)")
    ap.add_argument("--port-base", type=int, default=31000)
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="wait up to this long before each run for the two cores to be idle (0: don't)")
    ap.add_argument("--noise-limit", type=float, default=0.10,
                    help="share of the server's core other processes may use before a run counts as disturbed "
                         "and is repeated (twice that on the load generator's core)")
    ap.add_argument("--retry-noisy", type=int, default=1, help="repeat a run disturbed by other processes this often")
    ap.add_argument("--quick", action="store_true", help="one short repetition with small parameters (smoke test)")
    ap.add_argument("--no-setup", action="store_true", help="skip the dependency installs (builds still run)")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--results", default=RESULTS)


def main():
    argv = sys.argv[1:]
    cmd = argv[0] if argv and argv[0] in ("run", "serve", "list", "report") else "run"
    if argv and argv[0] == cmd:
        argv = argv[1:]
    reg = load_registry()

    if cmd == "list":
        for name, e in reg.items():
            state = "" if e["enabled"] else "  (disabled)"
            print(f"{name:18} {e['group']:6} {e['label']}{state}")
        return 0

    if cmd == "serve":
        ap = argparse.ArgumentParser(prog="run.py serve")
        ap.add_argument("name")
        ap.add_argument("--port", type=int, default=3100)
        ap.add_argument("--no-setup", action="store_true")
        ap.add_argument("--pin", action="store_true", help=f"pin to CPU {SERVER_CPU}")
        a = ap.parse_args(argv)
        if a.name not in reg:
            raise SystemExit(f"unknown server {a.name}; known: {', '.join(reg)}")
        e = reg[a.name]
        for step in ([] if a.no_setup else e["setup"]) + e["build"]:
            ok, _ = shell(subst(step), entry_cwd(e), env=entry_env(e))
            if not ok:
                return 1
        raise_nofile()
        run_argv = shlex.split(subst(e["cmd"], a.port))
        if a.pin:
            run_argv = ["taskset", "-c", str(SERVER_CPU)] + run_argv
        os.chdir(entry_cwd(e))
        os.execvpe(run_argv[0], run_argv, entry_env(e))

    ap = argparse.ArgumentParser(prog="run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_params(ap)
    p = ap.parse_args(argv)

    if cmd == "report":
        with open(p.results) as f:
            lines = [json.loads(ln) for ln in f if ln.strip()]
        meta = next(x["meta"] for x in lines if "meta" in x)
        results = [x for x in lines if "meta" not in x]
        with open(p.out, "w") as f:
            f.write(build_report(results, meta, reg))
        log(f"wrote {p.out}")
        return 0

    if p.quick:
        p.reps, p.duration, p.warmup = 1, 2.0, 0.5
        p.fanout_receivers, p.idle_connections, p.idle_hold = 200, 1000, 1.0
        p.cluster_receivers = 100
        p.jitter_receivers, p.jitter_duration, p.jitter_settle, p.jitter_log_packets = 100, 10.0, 5.0, 5000
        p.quiet_wait = min(p.quiet_wait, 5.0)
    p.scenarios = [s for s in p.scenarios.split(",") if s]
    for s in p.scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s}")
    if p.servers:
        names = [n for n in p.servers.split(",") if n]
        for n in names:
            if n not in reg:
                raise SystemExit(f"unknown server {n}; known: {', '.join(reg)}")
    else:
        names = [n for n, e in reg.items() if e["enabled"]]
    if os.cpu_count() < 2:
        raise SystemExit("the benchmark needs two cores (server on CPU 0, load generator on CPU 1)")

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    nofile = raise_nofile()
    if nofile < p.idle_connections + 1000:
        log(f"open-file limit {nofile} is below what {p.idle_connections} idle connections need")

    started = time.time()
    ready, notes = prepare(names, reg, do_setup=not p.no_setup)
    versions = {n: version_of(reg[n]) for n in ready}
    results = run_suite(ready, reg, p)
    keys = {"fanout": ("warmup", "duration", "fanout_receivers", "fanout_payload", "fanout_window"),
            "echo": ("warmup", "duration", "echo_clients", "echo_payload"),
            "idle": ("idle_connections", "idle_concurrency", "idle_hold"),
            "cluster": ("warmup", "duration", "cluster_receivers", "cluster_payload", "cluster_window"),
            "jitter": ("jitter_receivers", "jitter_rate", "jitter_duration", "jitter_payload", "jitter_drop_every",
                       "jitter_offline", "jitter_settle", "jitter_seed", "jitter_log_packets")}
    params = {"reps": p.reps}
    for s in p.scenarios:
        params.update({k: getattr(p, k) for k in keys[s]})
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    planned = {(n, s) for n in names for s in p.scenarios if s in reg[n]["scenarios"]}
    run = {"date": date, "duration_s": time.time() - started, "reps": p.reps, "versions": versions,
           "pairs": sorted([n, s] for n, s in planned if n in ready)}
    machine = machine_info()
    run["machine"] = machine
    meta = {"date": date, "duration_s": time.time() - started, "servers": ready, "versions": versions,
            "machine": machine, "params": params, "notes": notes, "noise_limit": p.noise_limit,
            "runs": [run]}
    if not p.fresh:
        results, meta = merge_previous(results, meta, planned, p.results, reg)
    os.makedirs(os.path.dirname(p.results), exist_ok=True)
    with open(p.results, "w") as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        for r in results:
            f.write(json.dumps(r) + "\n")
    with open(p.out, "w") as f:
        f.write(build_report(results, meta, reg))
    log(f"wrote {p.out} and {p.results}")
    return 1 if not ready else 0


if __name__ == "__main__":
    sys.exit(main())
