"""Both server flavours against the npm socket.io-client (Node): auth and
refusal data, binary both ways, acks both ways with timeouts, rooms and
skip_sid, server-side disconnects, namespaces. The asyncio server runs on a
loop in its own thread here, with coroutine handlers."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest

import iobus
from conftest import NodeDriver, wait_for


class Host:
    """One server flavour behind a blocking interface for the tests."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.loop: asyncio.AbstractEventLoop | None = None
        if flavour == "async":
            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
            self.thread.start()
            self.server: Any = self.run(self._make_async())
        else:
            self.server = iobus.Server()

    async def _make_async(self) -> iobus.AsyncServer:
        return iobus.AsyncServer()

    def run(self, value: Any) -> Any:
        """Runs a coroutine on the server's loop (a plain value passes)."""
        if self.loop is None or not asyncio.iscoroutine(value):
            return value
        return asyncio.run_coroutine_threadsafe(value, self.loop).result(15)

    def do(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.loop is None:
            return getattr(self.server, method)(*args, **kwargs)

        async def call() -> Any:
            result = getattr(self.server, method)(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(15)

    def handler(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The handler as a coroutine function for the asyncio flavour."""
        if self.loop is None:
            return fn

        async def wrapper(*args: Any) -> Any:
            await asyncio.sleep(0)
            return fn(*args)

        wrapper.__signature__ = __import__("inspect").signature(fn)  # type: ignore[attr-defined]
        return wrapper

    def on(self, event: str, fn: Callable[..., Any], namespace: str | None = None) -> None:
        self.server.on(event, self.handler(fn), namespace=namespace)

    def start(self) -> int:
        self.do("start")
        return int(self.server.port)

    def close(self) -> None:
        self.do("close")
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    h = Host(request.param)
    yield h
    h.close()


def test_auth_and_refusal_with_data(host: Host, node: NodeDriver):
    auths: List[Any] = []

    def connect(sid, environ, auth):
        auths.append(auth)
        if auth.get("token") != "secret":
            raise iobus.ConnectionRefusedError("Not authorized", {"reason": "bad token", "retry": 3})

    host.on("connect", connect)
    port = host.start()
    refused = node.connect("bad", port, auth={"token": "nope"})
    assert refused == {"refused": {"message": "Not authorized", "data": {"reason": "bad token", "retry": 3}}}
    ok = node.connect("good", port, auth={"token": "secret"}, transports=["polling", "websocket"])
    assert len(ok["sid"]) == 20
    assert auths == [{"token": "nope"}, {"token": "secret"}]


def test_refusal_by_false(host: Host, node: NodeDriver):
    host.on("connect", lambda sid, environ, auth: False)
    port = host.start()
    assert node.connect("c", port) == {"refused": {"message": "Connection rejected by server", "data": None}}


def test_binary_both_ways(host: Host, node: NodeDriver):
    got: List[Any] = []

    def upload(sid, meta, blob):
        got.append((meta, blob))
        return {"reversed": blob[::-1], "parts": [b"\x00\x01", "text"]}

    host.on("upload", upload)
    port = host.start()
    sid = node.connect("c", port)["sid"]
    blob = bytes(range(200))
    answer = node.request("emit", c="c", event="upload", args=[{"name": "x", "thumb": b"\xff"}, blob], ack=True)
    assert answer == {"reply": [{"reversed": blob[::-1], "parts": [b"\x00\x01", "text"]}]}
    assert got == [({"name": "x", "thumb": b"\xff"}, blob)]
    host.do("emit", "blob", (b"\x10\x20", {"nested": [b"\x30"]}), to=sid)
    events = node.request("wait", c="c", event="blob")["events"]
    assert events == [["blob", b"\x10\x20", {"nested": [b"\x30"]}]]


def test_acks_both_ways_with_timeouts(host: Host, node: NodeDriver):
    def double(sid, x):
        return x * 2

    def broken(sid):
        raise RuntimeError("no ack from here")

    host.on("double", double)
    host.on("broken", broken)
    port = host.start()
    sid = node.connect("c", port)["sid"]
    # client → server
    assert node.request("emit", c="c", event="double", args=[21], ack=True) == {"reply": [42]}
    assert node.request("emit", c="c", event="broken", ack=True, timeout=300) == {"timeout": True}
    # server → client
    node.request("answer", c="c", event="question", reply=["yes", {"n": 1}])
    assert host.do("call", "question", "are you there?", to=sid, timeout=5) == ("yes", {"n": 1})
    node.request("answer", c="c", event="slow", reply=["late"], delay=1500)
    start = time.monotonic()
    with pytest.raises(iobus.TimeoutError):
        host.do("call", "slow", to=sid, timeout=0.3)
    assert time.monotonic() - start < 1.5
    replies: List[Any] = []
    host.do("emit", "question", to=sid, callback=lambda *args: replies.append(args))
    wait_for(lambda: replies)
    assert replies == [("yes", {"n": 1})]
    received = node.request("wait", c="c", event="question", count=2)["events"]
    assert received[0] == ["question", "are you there?"]


def test_rooms_and_skip_sid(host: Host, node: NodeDriver):
    port = host.start()
    sids = {name: node.connect(name, port)["sid"] for name in ("a", "b", "c")}
    host.do("enter_room", sids["a"], "team")
    host.do("enter_room", sids["b"], "team")
    assert host.server.rooms(sids["a"]) == sorted([sids["a"], "team"])
    host.do("emit", "news", "for the team but a", to="team", skip_sid=sids["a"])
    host.do("emit", "news", "everyone but b and c", skip_sid=[sids["b"], sids["c"]])
    host.do("emit", "news", "just c", to=sids["c"])
    host.do("leave_room", sids["b"], "team")
    host.do("emit", "news", "team after b left", room="team")
    # A last message to each, so that everything before it has arrived.
    host.do("emit", "news", "end")
    expected = {
        "a": ["everyone but b and c", "team after b left", "end"],
        "b": ["for the team but a", "end"],
        "c": ["just c", "end"],
    }
    for name, texts in expected.items():
        wait_for(lambda: any(e == ["news", "end"] for e in node.request("events", c=name)["events"]))
        news = [e[1] for e in node.request("events", c=name)["events"] if e[0] == "news"]
        assert news == texts, name


def test_server_disconnect_and_namespaces(host: Host, node: NodeDriver):
    reasons: List[Any] = []
    host.on("disconnect", lambda sid, reason: reasons.append(reason), namespace="/chat")
    host.on("where", lambda sid: "chat", namespace="/chat")
    port = host.start()
    # A second namespace on the same connection keeps the connection open
    # after "/chat" is disconnected, so the only disconnect is the server's.
    node.connect("root", port, forceNew=False)
    sid = node.connect("c", port, nsp="/chat", forceNew=False)["sid"]
    assert node.request("emit", c="c", event="where", ack=True) == {"reply": ["chat"]}
    assert node.connect("x", port, nsp="/missing") == {"refused": {"message": "Invalid namespace", "data": None}}
    host.do("disconnect", sid)
    events = node.request("wait", c="c", event="$disconnect")["events"]
    assert events == [["$disconnect", "io server disconnect"]]
    wait_for(lambda: reasons, what="the disconnect handler")
    assert reasons == ["server namespace disconnect"]


def test_every_event_of_a_burst_arrives(host: Host, node: NodeDriver):
    counts: dict = {}
    lock = threading.Lock()

    def tick(sid, i):
        with lock:
            counts[sid] = counts.get(sid, 0) + 1

    host.on("tick", tick)
    port = host.start()
    names = ["a", "b", "c"]
    for name in names:
        node.connect(name, port)
    for name in names:
        node.request("blast", c=name, event="tick", count=3000)
    wait_for(lambda: sum(counts.values()) == 9000, timeout=30, what="9000 events")
    assert sorted(counts.values()) == [3000, 3000, 3000]


def test_operations_from_the_connect_handler(host: Host, node: NodeDriver):
    server = host.server
    if host.flavour == "sync":

        def connect(sid, environ, auth):
            if auth.get("kick"):
                server.disconnect(sid)
                return
            server.enter_room(sid, "vip")
            server.emit("welcome", {"rooms": server.rooms(sid)}, to=sid)

    else:

        async def connect(sid, environ, auth):
            if auth.get("kick"):
                await server.disconnect(sid)
                return
            await server.enter_room(sid, "vip")
            await server.emit("welcome", {"rooms": server.rooms(sid)}, to=sid)

    server.on("connect", connect)
    port = host.start()
    sid = node.connect("c", port)["sid"]
    welcome = node.request("wait", c="c", event="welcome")["events"]
    assert welcome == [["welcome", {"rooms": sorted([sid, "vip"])}]]
    assert "vip" in server.rooms(sid)
    # A disconnect from the connect handler follows the accept.
    node.connect("k", port, auth={"kick": True})
    events = node.request("wait", c="k", event="$disconnect")["events"]
    assert events == [["$disconnect", "io server disconnect"]]
