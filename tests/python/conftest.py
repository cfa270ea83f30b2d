"""Starts the iobus fixture server (see tests/FIXTURE.md) for the Python suites.

The fixture command comes from the environment variable IOBUS_FIXTURE, a
whitespace-separated command line such as `node tests/node/reference-server.js`;
the default is the iobus fixture `<repo>/target/debug/examples/fixture` (built
from tests/fixture/server.rs as a cargo example).
Relative paths in the command are resolved against the repository root. The
server gets a free port as its last argument and must accept connections on
127.0.0.1:<port> within SERVER_START_TIMEOUT seconds.

One server is started per test session (per worker, when tests run in
parallel); every test opens its own connections, so tests never share a
session.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wire import Http  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURE = REPO_ROOT / "target" / "debug" / "examples" / "fixture"
SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 5.0


@dataclass
class FixtureServer:
    port: int
    command: list[str]
    pid: int

    def rss_kib(self) -> int:
        """Resident memory of the server process (VmRSS), in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def alive(self) -> bool:
        return os.path.exists(f"/proc/{self.pid}") and not _is_zombie(self.pid)

    @property
    def url(self) -> str:
        """Base URL for Socket.IO clients."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def http(self) -> Http:
        return Http(self.port)


def fixture_command() -> list[str]:
    raw = os.environ.get("IOBUS_FIXTURE", "").strip()
    parts = raw.split() if raw else [str(DEFAULT_FIXTURE)]
    resolved = []
    for part in parts:
        # A relative path (anything with a slash) is relative to the repo root;
        # a bare word such as `node` is a program looked up on PATH.
        if "/" in part and not os.path.isabs(part):
            part = str(REPO_ROOT / part)
        resolved.append(part)
    return resolved


def fixture_command_overridden() -> bool:
    return bool(os.environ.get("IOBUS_FIXTURE", "").strip())


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(SERVER_STOP_TIMEOUT)


def read_tail(f, limit: int = 4000) -> str:
    f.flush()
    f.seek(0)
    text = f.read().decode("utf-8", "replace")
    return text[-limit:] if text else "(empty)"


@pytest.fixture(scope="session")
def server():
    command = fixture_command()
    if not fixture_command_overridden() and not DEFAULT_FIXTURE.exists():
        pytest.fail(
            f"fixture binary {DEFAULT_FIXTURE} not found: build it with "
            "`cargo build --example fixture`, or set IOBUS_FIXTURE "
            '(e.g. IOBUS_FIXTURE="node tests/node/reference-server.js")',
            pytrace=False)
    port = free_port()
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    argv = command + [str(port)]
    try:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    except OSError as e:
        pytest.fail(f"cannot start fixture server {shlex.join(argv)}: {e}", pytrace=False)

    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"fixture server {shlex.join(argv)} exited with {proc.returncode} "
                f"before listening.\nstdout:\n{read_tail(out)}\nstderr:\n{read_tail(err)}",
                pytrace=False)
        if port_accepts(port):
            break
        if time.monotonic() > deadline:
            stop(proc)
            pytest.fail(
                f"fixture server {shlex.join(argv)} did not accept connections on "
                f"127.0.0.1:{port} within {SERVER_START_TIMEOUT:.0f}s.\n"
                f"stdout:\n{read_tail(out)}\nstderr:\n{read_tail(err)}",
                pytrace=False)
        time.sleep(0.05)

    try:
        yield FixtureServer(port=port, command=command, pid=proc.pid)
    finally:
        stop(proc)
        out.close()
        err.close()


@pytest.fixture
def http(server: FixtureServer) -> Http:
    return server.http
