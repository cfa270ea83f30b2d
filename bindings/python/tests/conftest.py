"""Fixtures of the Python binding's tests: servers that are always closed,
python-socketio clients that are always disconnected, the npm
socket.io-client driven through a small Node process, and a helper to wait
for conditions with a deadline.

The tests use the installed ``iobus`` package (``pip install
./bindings/python``), never the source folder.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import socketio

import iobus

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def make_server() -> Iterator[Callable[..., iobus.Server]]:
    """``make_server(**options)`` → an ``iobus.Server`` closed after the test."""
    servers: List[iobus.Server] = []

    def make(**options: Any) -> iobus.Server:
        server = iobus.Server(**options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., socketio.Client]]:
    """``make_client(server, **connect_kwargs)`` → a connected python-socketio
    client (websocket unless ``transports`` says otherwise)."""
    clients: List[socketio.Client] = []

    def make(server: iobus.Server, namespaces: Optional[List[str]] = None, **kwargs: Any) -> socketio.Client:
        client = socketio.Client(reconnection=False)
        clients.append(client)
        kwargs.setdefault("transports", ["websocket"])
        kwargs.setdefault("wait_timeout", 5)
        client.connect(f"http://127.0.0.1:{server.port}", namespaces=namespaces, **kwargs)
        return client

    yield make
    for client in clients:
        try:
            client.disconnect()
        except Exception:
            pass


def _to_wire(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


def _from_wire(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_wire(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$b64"}:
            return base64.b64decode(value["$b64"])
        return {k: _from_wire(v) for k, v in value.items()}
    return value


class NodeDriver:
    """The npm socket.io-client in a Node process (tests/node/driver.js)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(HERE / "node" / "driver.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._ids = itertools.count(1)
        self._answers: Dict[int, "queue.Queue[Dict[str, Any]]"] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                box = self._answers.get(msg.get("id"))
            if box is not None:
                box.put(msg)

    def request(self, op: str, *, wait: float = 10.0, **args: Any) -> Dict[str, Any]:
        rid = next(self._ids)
        box: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        with self._lock:
            self._answers[rid] = box
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": rid, "op": op, **_to_wire(args)}) + "\n")
        self.proc.stdin.flush()
        try:
            answer = box.get(timeout=wait)
        except queue.Empty:
            raise AssertionError(f"node driver: no answer to {op} within {wait} s") from None
        finally:
            with self._lock:
                self._answers.pop(rid, None)
        if "error" in answer:
            raise AssertionError(f"node driver: {op}: {answer['error']}")
        return _from_wire({k: v for k, v in answer.items() if k != "id"})

    def connect(self, c: str, port: int, **kwargs: Any) -> Dict[str, Any]:
        return self.request("connect", c=c, url=f"http://127.0.0.1:{port}", **kwargs)

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def node() -> Iterator[NodeDriver]:
    assert shutil.which("node"), "node is needed for the socket.io-client tests"
    driver = NodeDriver()
    yield driver
    driver.close()
