"""The Redis adapter (``adapter=iobus.RedisAdapter(...)``) and the host
backpressure options: two servers on one real Redis (Debian's
redis-server, started here on a free port in a temporary directory), with
python-socketio clients on each, and the npm socket.io-client recovering its
session on the other server in streams mode."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

import pytest
import socketio

import iobus
from conftest import NodeDriver, wait_for

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (make setup-redis)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [str(REDIS_SERVER), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: redis_ping(port), 10, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


Pair = Tuple[iobus.Server, iobus.Server, socketio.Client, socketio.Client, List[Any], List[Any]]


@pytest.fixture
def cluster(
    redis_url: str, make_server: Callable[..., iobus.Server], make_client: Callable[..., socketio.Client]
) -> Callable[..., Pair]:
    """``cluster(mode)`` → two started servers on one Redis (keys of their
    own), each with a client in room "r" recording its "news" events."""

    def make(mode: str, **options: Any) -> Pair:
        key = f"t{time.monotonic_ns()}"
        adapter = iobus.RedisAdapter(redis_url, key=key, mode=mode, request_timeout=2.0)  # type: ignore[arg-type]
        servers = [make_server(adapter=adapter, **options) for _ in range(2)]
        for server in servers:
            server.on("connect", lambda sid, environ, auth=None, server=server: server.enter_room(sid, "r"))
            server.start()
        clients, received = [], []
        for server in servers:
            got: List[Any] = []
            client = make_client(server)
            client.on("news", got.append)
            clients.append(client)
            received.append(got)
        return servers[0], servers[1], clients[0], clients[1], received[0], received[1]

    return make


@pytest.mark.parametrize("mode", ["pubsub", "pubsub-own-response-channel", "streams"])
def test_room_broadcast_and_fetch_reach_the_other_node(cluster: Callable[..., Pair], mode: str) -> None:
    a, b, ca, cb, got_a, got_b = cluster(mode)
    # Both sockets are known on both nodes.
    assert wait_for(lambda: len(a.fetch_sockets(to="r")) == 2, 5, "both sockets seen from a")
    remote = b.fetch_sockets(to="r")
    assert sorted(s.sid for s in remote) == sorted([ca.get_sid(), cb.get_sid()])
    assert all("r" in s.rooms for s in remote)
    a.emit("news", {"from": "a"}, to="r")
    wait_for(lambda: got_a and got_b, 5, "the broadcast on both nodes")
    assert got_a == got_b == [{"from": "a"}]
    b.emit("news", "from b", to="r", skip_sid=cb.get_sid())
    wait_for(lambda: len(got_a) == 2, 5, "b's broadcast on a")
    time.sleep(0.2)
    assert got_b == [{"from": "a"}]
    assert "r" in b.all_rooms()
    # A broadcast with acks gets one reply from each node's client.
    for client in (ca, cb):
        client.on("ask", lambda n: n + 1)
    replies: List[Any] = []
    a.emit("ask", 1, to="r", callback=lambda *args: replies.append(args))
    wait_for(lambda: len(replies) == 2, 5, "both replies")
    assert replies == [(2,), (2,)]


def test_room_operations_reach_remote_sockets(cluster: Callable[..., Pair]) -> None:
    a, b, ca, cb, got_a, got_b = cluster("pubsub")
    wait_for(lambda: len(a.fetch_sockets(to="r")) == 2, 5, "both sockets seen from a")
    # b's socket leaves "r" through a's close_room; a broadcast to "r" then
    # reaches no one.
    a.close_room("r")
    wait_for(lambda: not b.fetch_sockets(to="r"), 5, "room r closed on both nodes")
    a.emit("news", "nobody", to="r")
    a.emit("news", "everyone")
    wait_for(lambda: got_a and got_b, 5, "the namespace broadcast on both nodes")
    assert got_a == got_b == ["everyone"]


def test_server_side_emit_reaches_the_other_node(cluster: Callable[..., Pair]) -> None:
    a, b, *_ = cluster("pubsub")
    heard: List[Any] = []
    b.on_server_side_emit("ping-nodes", lambda x: heard.append(x) or f"pong {x}")
    replies: List[Any] = []
    a.server_side_emit("ping-nodes", 1, callback=replies.append)
    wait_for(lambda: replies, 5, "b's reply")
    assert heard == [1]
    assert replies == [["pong 1"]]


class Balancer:
    """A TCP port in front of the servers, as a load balancer: each new
    connection goes to ``target`` once ``open`` is set; a connection closed
    on one side is closed on the other."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(down,), daemon=True).start()

    def _forward(self, down: socket.socket) -> None:
        self.open.wait(10)
        up = socket.create_connection(("127.0.0.1", self.target))
        for a, b in ((down, up), (up, down)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def test_streams_recovery_on_the_other_node(cluster: Callable[..., Pair], node: NodeDriver) -> None:
    a, b, *_ = cluster("streams", connection_state_recovery={"max_disconnection_duration": 10})
    left: List[str] = []
    a.on("disconnect", lambda sid, reason: left.append(reason))
    balancer = Balancer(a.port or 0)
    try:
        sid = node.connect("c", balancer.port, reconnection=True)["sid"]
        wait_for(lambda: len(b.fetch_sockets(to="r")) == 3, 5, "the client in r, seen from b")
        # A first packet gives the client an offset to recover from.
        b.emit("news", "before", to=sid)
        wait_for(lambda: ["news", "before"] in [e[:2] for e in node.request("events", c="c")["events"]], 5, "before")
        # The next connection goes to b, once a has seen the drop.
        balancer.open.clear()
        balancer.target = b.port or 0
        node.request("drop", c="c")
        wait_for(lambda: left, 5, "a sees the drop")
        assert left == ["transport close"]
        a.emit("news", "while away", to=sid)
        balancer.open.set()
        assert node.request("connected", c="c", count=2) == {"sid": sid, "recovered": True}
        wait_for(
            lambda: ["news", "while away"] in [e[:2] for e in node.request("events", c="c")["events"]],
            5,
            "the packet missed while away",
        )
        assert "r" in b.rooms(sid)
    finally:
        balancer.close()


def test_redis_down_at_start_is_a_clear_error(make_server: Callable[..., iobus.Server]) -> None:
    server = make_server(adapter=iobus.RedisAdapter(f"redis://127.0.0.1:{free_port()}"))
    with pytest.raises(iobus.IobusError):
        server.start()


def test_adapter_options_are_checked() -> None:
    with pytest.raises(ValueError):
        iobus.RedisAdapter(mode="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        iobus.RedisAdapter(key="")
    with pytest.raises(ValueError):
        iobus.RedisAdapter(request_timeout=0)
    with pytest.raises(iobus.IobusError, match="redis://"):
        iobus.Server(adapter=iobus.RedisAdapter("http://127.0.0.1:6379"))
    with pytest.raises(TypeError):
        iobus.Server(adapter="redis://127.0.0.1:6379")


def test_async_server_takes_the_adapter(redis_url: str) -> None:
    async def main() -> List[Any]:
        servers = [iobus.AsyncServer(adapter=iobus.RedisAdapter(redis_url, key="async")) for _ in range(2)]
        try:
            for server in servers:
                await server.start()
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(f"http://127.0.0.1:{servers[1].port}", transports=["websocket"], wait_timeout=5)
            try:
                for _ in range(100):
                    if await servers[0].fetch_sockets():
                        break
                    await asyncio.sleep(0.05)
                return [s.sid for s in await servers[0].fetch_sockets()] + [client.get_sid()]
            finally:
                await client.disconnect()
        finally:
            for server in servers:
                await server.close()

    sids = asyncio.run(main())
    assert len(sids) == 2 and sids[0] == sids[1]


def test_host_backpressure_options_are_checked(
    make_server: Callable[..., iobus.Server], make_client: Callable[..., socketio.Client]
) -> None:
    with pytest.raises(iobus.IobusError, match="host_queue_limit"):
        iobus.Server(host_queue_limit=1)
    with pytest.raises(iobus.IobusError, match="host_queue_limit"):
        iobus.Server(host_queue_limit=1 << 40)
    with pytest.raises(iobus.IobusError, match="free_timeout"):
        iobus.Server(free_timeout=3600)
    with pytest.raises(ValueError):
        iobus.Server(free_timeout=-1)
    with pytest.raises(ValueError):
        iobus.Server(host_queue_limit=-1)
    server = make_server(host_queue_limit=64 << 10, free_timeout=0.5)
    server.on("echo", lambda sid, x: x)
    server.start()
    client = make_client(server)
    for i in range(50):
        assert client.call("echo", "x" * 4096 + str(i), timeout=5) == "x" * 4096 + str(i)
