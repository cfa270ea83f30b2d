"""Both server flavours against the npm socket.io-client (Node): auth and
refusal data, binary both ways, acks both ways with timeouts, rooms and
skip_sid (one or several), emits with acks to a room, close_room, call to a
room, fetch_sockets and all_rooms (also from a handler), sessions as socket
data, server-side emits on one node, connection state recovery, server-side
disconnects, namespaces. The asyncio server runs on a loop in its own
thread here, with coroutine handlers."""

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

    def __init__(self, flavour: str, **options: Any) -> None:
        self.flavour = flavour
        self.loop: asyncio.AbstractEventLoop | None = None
        if flavour == "async":
            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
            self.thread.start()
            self.server: Any = self.run(self._make_async(options))
        else:
            self.server = iobus.Server(**options)

    async def _make_async(self, options: Any) -> iobus.AsyncServer:
        return iobus.AsyncServer(**options)

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
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def host(flavour: str) -> Iterator[Host]:
    h = Host(flavour)
    yield h
    h.close()


@pytest.fixture
def make_host(flavour: str) -> Iterator[Callable[..., Host]]:
    """``make_host(**options)``: a Host of the test's flavour with options."""
    hosts: List[Host] = []

    def make(**options: Any) -> Host:
        hosts.append(Host(flavour, **options))
        return hosts[-1]

    yield make
    for h in hosts:
        h.close()


def news_of(node: NodeDriver, name: str, last: str = "end") -> List[Any]:
    """The ``news`` a client received, once the ``last`` one is in (with
    connection state recovery the client also receives each packet's
    offset, as a last argument)."""
    wait_for(lambda: ["news", last] in [e[:2] for e in node.request("events", c=name)["events"]], what=f"{name}: {last}")
    return [e[1] for e in node.request("events", c=name)["events"] if e[0] == "news"]


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


def test_emit_to_a_room_with_several_skip_sids(host: Host, node: NodeDriver):
    port = host.start()
    sids = {name: node.connect(name, port)["sid"] for name in ("a", "b", "c", "d", "e")}
    for name in ("a", "b", "c", "d"):
        host.do("enter_room", sids[name], "team")
    host.do("enter_room", sids["e"], "other")
    host.do("emit", "news", "team but a and c", to="team", skip_sid=[sids["a"], sids["c"]])
    # Two rooms, each member once, minus two (one of them in no room reached).
    host.do("emit", "news", "both rooms but b", to=["team", "other"], skip_sid=[sids["b"], "AAAAAAAAAAAAAAAAAAAA"])
    host.do("emit", "news", "end")
    assert news_of(node, "a") == ["both rooms but b", "end"]
    assert news_of(node, "b") == ["team but a and c", "end"]
    assert news_of(node, "c") == ["both rooms but b", "end"]
    assert news_of(node, "d") == ["team but a and c", "both rooms but b", "end"]
    assert news_of(node, "e") == ["both rooms but b", "end"]
    # A skip_sid that is not a socket id is a mistake, said so.
    with pytest.raises(iobus.IobusError) as info:
        host.do("emit", "news", "x", to="team", skip_sid=["not a sid"])
    assert "not a socket id" in str(info.value)


def test_emit_with_callback_to_a_room(make_host, node: NodeDriver):
    host = make_host(ack_timeout=1)
    port = host.start()
    sids = {name: node.connect(name, port)["sid"] for name in ("a", "b", "c", "d")}
    for name in ("a", "b", "c"):
        host.do("enter_room", sids[name], "team")
    node.request("answer", c="a", event="poll", reply=["from a", 1])
    node.request("answer", c="b", event="poll", reply=["from b"], delay=100)
    node.request("answer", c="d", event="poll", reply=["from d"])
    # c never answers: the callback gets the replies that came, once per
    # reply, in arrival order, when ack_timeout has passed.
    replies: List[Any] = []
    start = time.monotonic()
    host.do("emit", "poll", "q1", to="team", callback=lambda *args: replies.append(args))
    wait_for(lambda: len(replies) == 2, what="two replies")
    assert replies == [("from a", 1), ("from b",)]
    assert time.monotonic() - start >= 0.9
    time.sleep(0.2)
    assert len(replies) == 2
    # Everyone reached answers: done as soon as the last one did (well
    # before a 30 s timeout), here without c.
    slow = make_host(ack_timeout=30)
    port = slow.start()
    others = {name: node.connect(name, port)["sid"] for name in ("a2", "b2", "c2")}
    for name, sid in others.items():
        slow.do("enter_room", sid, "team")
        if name != "c2":
            node.request("answer", c=name, event="poll", reply=[name])
    replies.clear()
    # (a's sid belongs to the other server: it skips nobody here.)
    slow.do("emit", "poll", to="team", skip_sid=[others["c2"], sids["a"]], callback=lambda *args: replies.append(args))
    wait_for(lambda: len(replies) == 2, timeout=5, what="the replies of a2 and b2")
    assert sorted(replies) == [("a2",), ("b2",)]
    assert node.request("events", c="c2")["events"] == []
    # Nobody reached: the callback is never called.
    slow.do("emit", "poll", to="empty room", callback=lambda *args: replies.append(args))
    time.sleep(0.2)
    assert len(replies) == 2


def test_close_room(host: Host, node: NodeDriver):
    port = host.start()
    sids = {name: node.connect(name, port)["sid"] for name in ("a", "b", "c")}
    host.do("enter_room", sids["a"], "x")
    host.do("enter_room", sids["b"], "x")
    host.do("enter_room", sids["b"], "y")
    host.do("enter_room", sids["c"], "y")
    host.do("close_room", "x")
    assert host.do("participants", "x") == []
    assert host.do("rooms", sids["a"]) == [sids["a"]]
    assert host.do("rooms", sids["b"]) == sorted([sids["b"], "y"])
    assert host.do("participants", "y") == sorted([sids["b"], sids["c"]])
    host.do("emit", "news", "to x", to="x")
    host.do("emit", "news", "end")
    assert news_of(node, "a") == ["end"]
    # A room of another namespace of the same name is another room.
    host.do("close_room", "y", namespace="/elsewhere")
    assert host.do("participants", "y") == sorted([sids["b"], sids["c"]])


def test_call_to_a_room_is_refused(host: Host, node: NodeDriver):
    port = host.start()
    sid = node.connect("a", port)["sid"]
    node.request("answer", c="a", event="q", reply=["yes"])
    host.do("enter_room", sid, "team")
    with pytest.raises(ValueError, match="is a room"):
        host.do("call", "q", to="team", timeout=1)
    with pytest.raises(iobus.DisconnectedError):
        host.do("call", "q", to="AAAAAAAAAAAAAAAAAAAA", timeout=1)
    with pytest.raises(ValueError):
        host.do("call", "q", timeout=1)
    assert host.do("call", "q", to=sid, timeout=5) == "yes"
    assert node.request("events", c="a")["events"] == [["q"]]


def test_fetch_sockets_all_rooms_and_session_data(host: Host, node: NodeDriver):
    server = host.server
    if host.flavour == "sync":

        def who(sid):
            with server.session(sid) as session:
                session["asked"] = True
            return [s.sid for s in server.fetch_sockets(to="team")], server.all_rooms()

        def name(sid, value):
            server.save_session(sid, {"name": value})

    else:

        async def who(sid):
            async with server.session(sid) as session:
                session["asked"] = True
            return [s.sid for s in await server.fetch_sockets(to="team")], await server.all_rooms()

        async def name(sid, value):
            await server.save_session(sid, {"name": value})

    server.on("who", who)
    server.on("name", name)
    port = host.start()
    a = node.connect("a", port, auth={"user": "a"})["sid"]
    b = node.connect("b", port)["sid"]
    host.do("enter_room", a, "team")
    assert node.request("emit", c="a", event="name", args=["alice"], ack=True) == {"reply": []}
    # From a handler: on the sync flavour's dispatch thread too.
    assert node.request("emit", c="b", event="who", ack=True) == {"reply": [[a], sorted([a, b, "team"])]}
    team = host.do("fetch_sockets", to="team")
    assert [(s.sid, s.namespace, s.rooms, s.data) for s in team] == [(a, "/", sorted([a, "team"]), {"name": "alice"})]
    assert team[0].handshake["auth"] == {"user": "a"}
    assert team[0].environ["REMOTE_ADDR"] == "127.0.0.1"
    everyone = host.do("fetch_sockets")
    assert [s.sid for s in everyone] == sorted([a, b])
    assert {s.sid: s.data for s in everyone}[b] == {"asked": True}
    assert [s.sid for s in host.do("fetch_sockets", skip_sid=[a])] == [b]
    assert host.do("fetch_sockets", room="nobody's") == []
    assert host.do("fetch_sockets", namespace="/elsewhere") == []
    assert host.do("all_rooms") == sorted([a, b, "team"])
    assert host.do("all_rooms", namespace="/elsewhere") == []
    with pytest.raises(ValueError):
        host.do("fetch_sockets", namespace="*")


def test_server_side_emit_on_one_node(host: Host, node: NodeDriver):
    heard: List[Any] = []
    host.server.on_server_side_emit("hello", host.handler(lambda *args: heard.append(args) or "hi"))
    host.server.on_server_side_emit("*", host.handler(lambda event, *args: heard.append((event, *args))))
    port = host.start()
    node.connect("a", port)
    replies: List[Any] = []
    host.do("server_side_emit", "hello", ("world", 1))
    host.do("server_side_emit", "hello", "world", callback=lambda answers: replies.append(answers))
    wait_for(lambda: replies, what="the server-side emit's callback")
    # No other server: no replies, and never this server's own handlers,
    # nor any client.
    assert replies == [[]]
    host.do("emit", "news", "end")
    assert news_of(node, "a") == ["end"]
    assert [e[0] for e in node.request("events", c="a")["events"]] == ["news"]
    assert heard == []
    with pytest.raises(iobus.IobusError):
        host.do("server_side_emit", "disconnect")


@pytest.mark.parametrize("skip_middlewares", [True, False])
def test_connection_state_recovery(make_host, node: NodeDriver, skip_middlewares: bool):
    host = make_host(
        connection_state_recovery={"max_disconnection_duration": 10, "skip_middlewares": skip_middlewares}
    )
    server = host.server
    connects: List[Any] = []
    reasons: List[str] = []
    if host.flavour == "sync":

        def connect(sid, environ, auth):
            connects.append((sid, environ["iobus.recovered"], dict(server.get_session(sid))))

        def remember(sid, value):
            with server.session(sid) as session:
                session["n"] = value
            server.enter_room(sid, "club")

        def whoami(sid):
            return server.get_session(sid), server.rooms(sid)

        def disconnect(sid, reason):
            # The session's last state is what a recovery brings back.
            server.get_session(sid)["left"] = reason
            reasons.append(reason)

    else:

        async def connect(sid, environ, auth):
            connects.append((sid, environ["iobus.recovered"], dict(await server.get_session(sid))))

        async def remember(sid, value):
            async with server.session(sid) as session:
                session["n"] = value
            await server.enter_room(sid, "club")

        async def whoami(sid):
            return await server.get_session(sid), server.rooms(sid)

        async def disconnect(sid, reason):
            (await server.get_session(sid))["left"] = reason
            reasons.append(reason)

    for event, fn in (("connect", connect), ("remember", remember), ("whoami", whoami), ("disconnect", disconnect)):
        server.on(event, fn)
    port = host.start()
    sid = node.connect("a", port, reconnection=True)["sid"]
    assert node.request("emit", c="a", event="remember", args=[7], ack=True) == {"reply": []}
    node.request("drop", c="a")
    wait_for(lambda: reasons, what="the disconnect handler")
    assert reasons == ["transport close"]
    # Missed while away, and given back before the connection is.
    host.do("emit", "news", "while away", to="club")
    back = node.request("connected", c="a", count=2)
    assert back == {"sid": sid, "recovered": True}
    assert news_of(node, "a", last="while away") == ["while away"]
    session = {"n": 7, "left": "transport close"}
    assert node.request("emit", c="a", event="whoami", ack=True) == {"reply": [session, sorted([sid, "club"])]}
    assert connects[0] == (sid, False, {})
    if skip_middlewares:
        # Already accepted: the connect handler sees the socket as it was.
        assert connects[1] == (sid, True, session)
    else:
        # The connect handler decides first; the session is back once it accepted.
        assert connects[1][:2] == (sid, True)
    assert [s.data for s in host.do("fetch_sockets", to="club")] == [session]
