"""Soak tests: what hostile or broken clients cost the iobus server process.

Each test measures the server's open file descriptors (/proc/<pid>/fd) and
resident memory (VmRSS) before, during and after a bounded load, while a
well-behaved python-socketio client (the canary) keeps working and new
clients keep getting served:

- churn: websocket and long-polling sessions opened and closed in rounds;
- slow readers: websocket clients in a room, with a 4 KiB receive buffer,
  that never read while another client broadcasts 20,000 x 1 KB to the room;
- slowloris: connections sending their request head one byte per second;
- idle flood: more silent connections than the server has descriptors.

The server is a fixture of its own (tests/FIXTURE.md options, iobus's default
limits: keep-alive timeout 5 s, header timeout 10 s, 4 MiB held per client),
run with a descriptor limit of FD_LIMIT so that a flood can exhaust it.
Memory after a load is compared with the memory after a first warm-up round:
the allocator keeps some freed memory for reuse, so what is checked is that a
load leaves nothing behind that grows with it. Every figure is printed
(`pytest -s` shows them).
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import socketio
import websocket

from conftest import (DEFAULT_FIXTURE, SERVER_START_TIMEOUT, fixture_command_overridden, free_port,
                      port_accepts, read_tail, stop)
from wire import WAIT, Http, PollingSession, call, compact, connect_sio_ws, parse_sio

pytestmark = pytest.mark.skipif(
    fixture_command_overridden(), reason="measures the iobus fixture process itself")

FD_LIMIT = 256
PING_INTERVAL = 1.0
PING_TIMEOUT = 0.5
KEEP_ALIVE_TIMEOUT = 5.0
HEADER_TIMEOUT = 10.0
# Descriptors the server may still hold after a load beyond its baseline
# (a polling session closed by its client lingers for one last poll, but
# holds no descriptor; this is slack for a connection closing right then).
FD_SLACK = 2
# Memory a load may leave beyond the warmed-up baseline, in KiB.
RSS_SLACK_KB = 16 * 1024


class Proc:
    def __init__(self, pid: int):
        self.pid = pid

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def sample(self) -> tuple[int, int]:
        return self.fds(), self.rss_kb()

    def wait_fds(self, at_most: int, timeout: float) -> tuple[int, float]:
        """Waits until the server holds at most `at_most` descriptors."""
        start = time.monotonic()
        while True:
            n = self.fds()
            if n <= at_most or time.monotonic() - start > timeout:
                return n, time.monotonic() - start
            time.sleep(0.05)


class Server:
    def __init__(self, port: int, proc: subprocess.Popen):
        self.port = port
        self.http = Http(port)
        self.url = f"http://127.0.0.1:{port}"
        self.proc = Proc(proc.pid)


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture(scope="module")
def soak_server():
    if not DEFAULT_FIXTURE.exists():
        pytest.fail(f"fixture binary {DEFAULT_FIXTURE} not found: cargo build --example fixture",
                    pytrace=False)
    port = free_port()
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(DEFAULT_FIXTURE), str(port)], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, start_new_session=True,
                            preexec_fn=_limit_fds)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not port_accepts(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"fixture did not start\nstderr:\n{read_tail(err)}", pytrace=False)
        time.sleep(0.05)
    try:
        yield Server(port, proc)
    finally:
        stop(proc)
        out.close()
        err.close()


class Canary:
    """A python-socketio client that asks for an ack every 100 ms in the background."""

    def __init__(self, url: str):
        self.client = socketio.Client(reconnection=False, handle_sigint=False)
        self.client.connect(url, transports=["websocket"], wait_timeout=WAIT)
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            token = uuid.uuid4().hex
            try:
                if self.client.call("ack", token, timeout=WAIT) == token:
                    self.answered += 1
                else:
                    self.failures.append("wrong ack")
            except Exception as e:  # reported by check()
                self.failures.append(repr(e))
            self._stop.wait(0.1)

    def check(self) -> None:
        """Stops, and asserts the canary was served all along."""
        self._stop.set()
        self._thread.join(WAIT + 1)
        assert not self.failures, self.failures
        assert self.answered > 0
        assert self.client.connected
        self.client.disconnect()


@pytest.fixture
def canary(soak_server):
    c = Canary(soak_server.url)
    yield c
    if c.client.connected:
        c.client.disconnect()


def new_client_served(server: Server) -> float:
    """A new client connects (websocket), gets an ack and leaves; the seconds it took."""
    start = time.monotonic()
    ws, _ = connect_sio_ws(server.http)
    try:
        assert call(ws, "ack", "new") == ["new"]
    finally:
        ws.close()
    return time.monotonic() - start


def report(name: str, **figures) -> None:
    print(f"\n[soak] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# ---------------------------------------------------------------------------
# churn


def churn_round(server: Server, sessions: int) -> None:
    for i in range(sessions):
        ws, _ = connect_sio_ws(server.http)
        assert call(ws, "ack", i) == [i]
        ws.close()
        p = PollingSession(server.http)
        reply = p.sio_connect()
        assert reply.type == 0, reply
        p.collect(1)  # hello
        p.post("1")


@pytest.mark.timeout(60)
def test_churn_of_websocket_and_polling_sessions(soak_server, canary):
    proc = soak_server.proc
    churn_round(soak_server, 50)  # warm-up
    fds_before, rss_before = proc.wait_fds(proc.fds(), 0)[0], proc.rss_kb()
    peak_fds = 0
    for _ in range(3):
        churn_round(soak_server, 100)
        peak_fds = max(peak_fds, proc.fds())
    fds_after, waited = proc.wait_fds(fds_before + FD_SLACK, timeout=PING_INTERVAL + PING_TIMEOUT + 1)
    rss_after = proc.rss_kb()
    report("churn (300 websocket + 300 polling sessions)", fds_before=fds_before, fds_peak=peak_fds,
           fds_after=fds_after, rss_before_kb=rss_before, rss_after_kb=rss_after,
           settled_s=round(waited, 2))
    canary.check()
    assert fds_after <= fds_before + FD_SLACK
    assert rss_after <= rss_before + RSS_SLACK_KB


# ---------------------------------------------------------------------------
# slow readers


def slow_reader(server: Server, room: str) -> websocket.WebSocket:
    """A websocket client in `room` with a 4 KiB receive buffer; it reads no more."""
    ws = websocket.create_connection(
        server.http.ws_url(EIO="4", transport="websocket"), timeout=WAIT,
        sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    assert ws.recv().startswith("0{")
    ws.send("40")
    assert parse_sio(ws.recv()).type == 0
    assert parse_sio(ws.recv()).data[0] == "hello"
    ws.send("421" + compact(["join", room]))
    while not ws.recv().startswith("431"):
        pass
    return ws


def flood(server: Server, room: str, count: int = 20_000, size: int = 1000) -> float:
    """Broadcasts `count` events of `size` bytes to `room`; the seconds it took."""
    sender, _ = connect_sio_ws(server.http)
    data = "x" * size
    start = time.monotonic()
    try:
        for i in range(count):
            sender.send("42" + compact(["broadcast", {"to": room}, "flood", data]))
            if i % 100 == 0:
                # The sender reads nothing meanwhile: keep its heartbeat going.
                sender.send("3")
        # Every broadcast has been handled once this is answered.
        assert call(sender, "ack", "done", timeout=30) == ["done"]
    finally:
        sender.close()
    return time.monotonic() - start


@pytest.mark.timeout(90)
def test_slow_readers_are_dropped_with_what_they_held(soak_server, canary):
    proc = soak_server.proc
    readers = 5
    fds_before, rss_before = proc.sample()
    rounds = []
    for r in range(3):
        room = f"slow-{uuid.uuid4().hex}"
        slow = [slow_reader(soak_server, room) for _ in range(readers)]
        fds_during = proc.fds()
        took = flood(soak_server, room)
        rss_during = proc.rss_kb()
        fds_after, settled = proc.wait_fds(fds_before + FD_SLACK, timeout=PING_INTERVAL + PING_TIMEOUT)
        rss_after = proc.rss_kb()
        rounds.append((fds_during, fds_after, rss_during, rss_after, round(took, 1), round(settled, 2)))
        new_client_served(soak_server)
        for ws in slow:
            ws.shutdown()
        if r == 0:
            # The first round warms the allocator up: later rounds must not add to it.
            rss_warm = rss_after
        assert fds_after <= fds_before + FD_SLACK, rounds
    report(f"slow readers ({readers} per round, 20,000 x 1 KB broadcast)", fds_before=fds_before,
           rss_before_kb=rss_before,
           rounds="; ".join(f"fds {d}->{a}, rss {rd}->{ra} KiB, flood {t}s, released in {s}s"
                            for d, a, rd, ra, t, s in rounds))
    canary.check()
    assert rounds[-1][3] <= rss_warm + RSS_SLACK_KB, rounds


# ---------------------------------------------------------------------------
# slowloris and idle floods


def open_raw(port: int, count: int) -> list[socket.socket]:
    conns = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        conns.append(s)
    return conns


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.timeout(60)
def test_slowloris_is_cut_off_and_locks_nobody_out(soak_server, canary):
    proc = soak_server.proc
    fds_before, rss_before = proc.sample()
    head = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    conns = open_raw(soak_server.port, 150)
    time.sleep(0.2)
    start = time.monotonic()
    sent = 0
    fds_during = 0
    new_clients = []
    while time.monotonic() - start < HEADER_TIMEOUT + 3 and sent < len(head):
        for s in conns:
            try:
                s.send(head[sent:sent + 1])
            except OSError:
                pass
        sent += 1
        fds_during = max(fds_during, proc.fds())
        new_clients.append(new_client_served(soak_server))
        time.sleep(1.0)
        if all(closed_by_server(s) for s in conns):
            break
    cut_after = time.monotonic() - start
    closed = sum(closed_by_server(s) for s in conns)
    for s in conns:
        s.close()
    fds_after, _ = proc.wait_fds(fds_before + FD_SLACK, timeout=2)
    rss_after = proc.rss_kb()
    report("slowloris (150 connections, 1 header byte/s)", fds_before=fds_before, fds_during=fds_during,
           fds_after=fds_after, rss_before_kb=rss_before, rss_after_kb=rss_after,
           cut_off_after_s=round(cut_after, 1), new_client_max_s=round(max(new_clients), 3))
    canary.check()
    assert closed == len(conns)
    assert cut_after < HEADER_TIMEOUT + 3
    assert max(new_clients) < 2
    assert fds_after <= fds_before + FD_SLACK
    assert rss_after <= rss_before + RSS_SLACK_KB


@pytest.mark.timeout(60)
def test_idle_flood_beyond_the_descriptor_limit_locks_nobody_out(soak_server, canary):
    proc = soak_server.proc
    fds_before, rss_before = proc.sample()
    conns = open_raw(soak_server.port, FD_LIMIT + 100)
    time.sleep(0.5)
    fds_during = proc.fds()
    start = time.monotonic()
    new_clients = []
    # New clients are served while the flood holds every descriptor.
    for _ in range(3):
        new_clients.append(new_client_served(soak_server))
        p = PollingSession(soak_server.http)
        p.sio_connect()
        p.post("1")
        time.sleep(0.3)
    # Those the server could accept are closed within the keep-alive timeout
    # (the others wait in the kernel's backlog until it has room, and so on).
    fds_after, waited = proc.wait_fds(fds_before + FD_SLACK, timeout=3 * KEEP_ALIVE_TIMEOUT)
    for s in conns:
        s.close()
    fds_end, _ = proc.wait_fds(fds_before + FD_SLACK, timeout=2)
    rss_after = proc.rss_kb()
    report(f"idle flood ({len(conns)} silent connections, descriptor limit {FD_LIMIT})",
           fds_before=fds_before, fds_during=fds_during, fds_after=fds_end, rss_before_kb=rss_before,
           rss_after_kb=rss_after, drained_s=round(time.monotonic() - start, 1),
           new_client_max_s=round(max(new_clients), 3))
    canary.check()
    assert fds_during >= FD_LIMIT - 10, "the flood did reach the descriptor limit"
    assert max(new_clients) < 2
    assert fds_after <= fds_before + FD_SLACK
    assert fds_end <= fds_before + FD_SLACK
    assert rss_after <= rss_before + RSS_SLACK_KB
