"""The iobus fixture server (tests/FIXTURE.md) driven by the real `python-socketio` client.

Every scenario runs three times: WebSocket only, long-polling only, and the
default (long-polling first, then upgraded to WebSocket).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Optional

import pytest
import socketio

WAIT = 5.0

TRANSPORT_MODES = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": None,  # the client's default: polling, then upgrade to websocket
}


class Peer:
    """A `socketio.Client` that records everything it receives, in order."""

    def __init__(self, url: str, mode: str):
        self.url = url
        self.mode = mode
        self.client = socketio.Client(reconnection=False, handle_sigint=False)
        self._cond = threading.Condition()
        self._inbox: list[tuple[str, str, tuple]] = []  # (nsp, event, args)
        self.connect_errors: dict[str, list] = {}
        self.disconnects: dict[str, list] = {}
        # namespace -> function called with the args of a server `question`;
        # its return value is the ack reply.
        self.answers: dict[str, Callable[..., Any]] = {}
        self.hello: dict[str, tuple] = {}

    # -- wiring ------------------------------------------------------------

    def _listen(self, nsp: str) -> None:
        def on_any(event: str, *args: Any) -> None:
            with self._cond:
                self._inbox.append((nsp, event, args))
                self._cond.notify_all()

        def on_question(*args: Any) -> Any:
            return self.answers.get(nsp, lambda *a: None)(*args)

        def on_connect_error(*data: Any) -> None:
            with self._cond:
                self.connect_errors.setdefault(nsp, []).append(data)
                self._cond.notify_all()

        def on_disconnect(*reason: Any) -> None:
            with self._cond:
                self.disconnects.setdefault(nsp, []).append(reason)
                self._cond.notify_all()

        self.client.on("*", on_any, namespace=nsp)
        self.client.on("question", on_question, namespace=nsp)
        self.client.on("connect_error", on_connect_error, namespace=nsp)
        self.client.on("disconnect", on_disconnect, namespace=nsp)

    def connect(self, namespaces: tuple[str, ...] = ("/",), auth: Optional[dict] = None,
                wait_upgrade: bool = True) -> "Peer":
        for nsp in namespaces:
            self._listen(nsp)
        self.client.connect(self.url, namespaces=list(namespaces), auth=auth,
                            transports=TRANSPORT_MODES[self.mode], wait_timeout=WAIT)
        if self.mode == "polling":
            assert self.client.transport() == "polling"
        elif self.mode == "websocket":
            assert self.client.transport() == "websocket"
        elif wait_upgrade:
            self.wait_for_upgrade()
        # The fixture greets every accepted socket with `hello`.
        self.hello = {nsp: self.next("hello", nsp=nsp) for nsp in namespaces}
        return self

    def wait_for_upgrade(self) -> None:
        deadline = time.monotonic() + WAIT
        while self.client.transport() != "websocket":
            assert time.monotonic() < deadline, "the client never upgraded to websocket"
            time.sleep(0.01)

    def sid(self, nsp: str = "/") -> str:
        return self.client.get_sid(nsp)

    # -- sending -----------------------------------------------------------

    def emit(self, event: str, *args: Any, nsp: str = "/") -> None:
        self.client.emit(event, args, namespace=nsp)

    def call(self, event: str, *args: Any, nsp: str = "/", timeout: float = WAIT) -> Any:
        """Emit with an ack; the ack's arguments as python-socketio returns them
        (None for none, the value for one, a tuple for several)."""
        return self.client.call(event, args, namespace=nsp, timeout=timeout)

    # -- receiving ---------------------------------------------------------

    def _wait(self, predicate: Callable[[], Any], what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}; inbox: {self._inbox!r}"
                self._cond.wait(left)

    def next(self, event: str, nsp: str = "/", timeout: float = WAIT) -> tuple:
        """Remove and return the args of the first `event` received in `nsp`."""
        def find():
            for i, (n, e, args) in enumerate(self._inbox):
                if n == nsp and e == event:
                    del self._inbox[i]
                    return args
            return None
        return self._wait(find, f"{event!r} in {nsp}", timeout)

    def take_until(self, event: str, token: str, nsp: str = "/",
                   timeout: float = WAIT) -> list[tuple[str, str, tuple]]:
        """Everything received before the `event` whose first arg is `token`
        (removed from the inbox along with it)."""
        def find():
            for i, (n, e, args) in enumerate(self._inbox):
                if n == nsp and e == event and args[:1] == (token,):
                    before = self._inbox[:i]
                    del self._inbox[:i + 1]
                    return before
            return None
        return self._wait(find, f"{event!r} {token!r} in {nsp}", timeout)

    def wait_disconnect(self, nsp: str = "/", timeout: float = WAIT) -> tuple:
        return self._wait(lambda: (self.disconnects.get(nsp) or [None])[0],
                          f"disconnect of {nsp}", timeout)

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:
            pass


@pytest.fixture(params=list(TRANSPORT_MODES), ids=list(TRANSPORT_MODES))
def mode(request) -> str:
    return request.param


@pytest.fixture
def peer(server, mode):
    """Factory: `peer()` gives a new, not yet connected Peer; all are closed at the end."""
    made: list[Peer] = []

    def make() -> Peer:
        p = Peer(server.url, mode)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def server_reasons(p: Peer) -> list[dict]:
    return p.call("reasons")


def wait_reason(observer: Peer, sid: str, nsp: str = "/", timeout: float = WAIT) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for entry in server_reasons(observer):
            if entry["sid"] == sid and entry["nsp"] == nsp:
                return entry["reason"]
        assert time.monotonic() < deadline, f"server recorded no disconnect for {sid} in {nsp}"
        time.sleep(0.05)


def sync(everyone: list[Peer], sender: Peer, nsp: str = "/") -> list[list[tuple]]:
    """Have the server emit a marker to the whole namespace and return, for each
    peer, the (event, args) it received before the marker. Packets on one
    connection arrive in order, so anything sent earlier shows up here."""
    token = unique("marker")
    assert sender.call("broadcast", {}, "marker", token, nsp=nsp) is None
    return [[(e, a) for (n, e, a) in p.take_until("marker", token, nsp=nsp) if n == nsp]
            for p in everyone]


# ---------------------------------------------------------------------------
# connection


def test_connect_receives_hello(peer, mode):
    p = peer().connect()
    sid = p.sid()
    assert p.hello["/"] == ({"sid": sid, "nsp": "/", "auth": {}},)
    assert isinstance(sid, str) and sid
    # The namespace socket id is not the Engine.IO session id.
    assert sid != p.client.eio.sid


def test_auth_reaches_the_server(peer):
    auth = {"token": "s3cret", "n": 7, "nested": {"list": [1, "two"]}}
    p = peer().connect(auth=auth)
    assert p.hello["/"] == ({"sid": p.sid(), "nsp": "/", "auth": auth},)


def test_refusal_carries_message_and_data(peer):
    p = peer()
    with pytest.raises(socketio.exceptions.ConnectionError):
        p.connect(auth={"refuse": "banned", "other": 1})
    assert p.connect_errors["/"] == [
        ({"message": "Not authorized", "data": {"reason": "banned"}},)]
    assert not p.client.connected


def test_refusal_in_admin_namespace(peer):
    p = peer()
    with pytest.raises(socketio.exceptions.ConnectionError):
        p.connect(namespaces=("/admin",), auth={"refuse": {"why": ["nested", 1]}})
    assert p.connect_errors["/admin"] == [
        ({"message": "Not authorized", "data": {"reason": {"why": ["nested", 1]}}},)]


@pytest.mark.parametrize("nsp", ["/nope", "/dyn-", "/dyn-bad!", "/admin2"])
def test_unknown_namespace_is_refused(peer, nsp):
    p = peer()
    with pytest.raises(socketio.exceptions.ConnectionError):
        p.connect(namespaces=(nsp,))
    assert p.connect_errors[nsp] == [({"message": "Invalid namespace"},)]


def test_dynamic_namespace_is_accepted(peer):
    p = peer().connect(namespaces=("/dyn-Room_42",))
    assert p.hello["/dyn-Room_42"] == (
        {"sid": p.sid("/dyn-Room_42"), "nsp": "/dyn-Room_42", "auth": {}},)


def test_two_namespaces_on_one_client(peer):
    p = peer().connect(namespaces=("/", "/admin"), auth={"k": "v"})
    assert p.hello["/"] == ({"sid": p.sid("/"), "nsp": "/", "auth": {"k": "v"}},)
    assert p.hello["/admin"] == ({"sid": p.sid("/admin"), "nsp": "/admin", "auth": {"k": "v"}},)
    assert p.sid("/") != p.sid("/admin")

    # Events stay in their namespace.
    p.emit("echo", "to-admin", nsp="/admin")
    p.emit("echo", "to-main", nsp="/")
    assert p.next("echo", nsp="/admin") == ("to-admin",)
    assert p.next("echo", nsp="/") == ("to-main",)

    # Rooms are per namespace socket.
    room = unique("room")
    assert p.call("join", room, nsp="/admin") == sorted([room, p.sid("/admin")])
    assert p.call("rooms", nsp="/") == [p.sid("/")]


# ---------------------------------------------------------------------------
# events


JSON_VALUES = [
    0, -1, 3.25, 2 ** 53 - 1, "", "plain", True, False, None,
    [], {}, [1, [2, [3, {"deep": None}]]],
    {"a": 1, "b": [True, False, None], "c": {"d": "e"}, "empty": {}},
    "quote \" backslash \\ newline \n tab \t slash /",
]


def test_events_round_trip_json_values(peer):
    p = peer().connect()
    p.emit("echo", *JSON_VALUES)
    assert p.next("echo") == tuple(JSON_VALUES)


def test_event_without_arguments(peer):
    p = peer().connect()
    p.emit("echo")
    assert p.next("echo") == ()


def test_events_keep_their_order(peer):
    p = peer().connect()
    # python-engineio refuses a long-polling payload of more than 16 packets,
    # and the server may batch the whole burst into one payload.
    for i in range(12):
        p.emit("echo", i)
    assert [p.next("echo")[0] for _ in range(12)] == list(range(12))


def test_unicode_round_trip(peer):
    p = peer().connect()
    text = "héllo wörld — ✓ 日本語 🎉 \u0000 \u2028"
    p.emit("echo", text, {"ключ": "значение", "emoji🙂": ["👍", "é"]})
    assert p.next("echo") == (text, {"ключ": "значение", "emoji🙂": ["👍", "é"]})


def test_large_event(peer):
    p = peer().connect()
    big = "x" * 60_000
    p.emit("echo", big)
    assert p.next("echo") == (big,)


# ---------------------------------------------------------------------------
# binary


def test_binary_client_to_server_and_back(peer):
    p = peer().connect()
    top = bytes(range(256))
    nested = {"file": {"parts": [b"\x00\x01", "text", b""]}, "n": 1}
    p.emit("echo", top, nested, "plain")
    got = p.next("echo")
    assert got == (top, nested, "plain")
    assert isinstance(got[0], bytes)


def test_binary_server_to_client(peer):
    p = peer().connect()
    assert p.call("binary") is None
    assert p.next("binary") == (b"\x01\x02\x03", {"nested": {"deep": [b"\x04\x05", "x"]}})


def test_binary_in_acks(peer):
    p = peer().connect()
    assert p.call("ack", b"\xff\x00", {"k": [b"\x01"]}) == (b"\xff\x00", {"k": [b"\x01"]})


# ---------------------------------------------------------------------------
# acknowledgements


def test_client_call_gets_the_ack(peer):
    p = peer().connect()
    assert p.call("ack", 1, "two", {"3": [True]}) == (1, "two", {"3": [True]})
    assert p.call("ack", "single") == "single"
    assert p.call("ack") is None


def test_acks_in_a_namespace(peer):
    p = peer().connect(namespaces=("/admin",))
    assert p.call("ack", "in-admin", nsp="/admin") == "in-admin"


def test_many_concurrent_calls(peer):
    p = peer().connect()
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        results[i] = p.call("ack", i, f"v{i}")

    # At most 10 in flight: python-engineio refuses long-polling payloads of
    # more than 16 packets, and the server may batch all the acks together.
    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert results == {i: (i, f"v{i}") for i in range(10)}


def test_server_ack_request_gets_the_handler_return_value(peer):
    p = peer().connect()
    seen = []

    def answer(*args):
        seen.append(args)
        return ("answer", {"n": len(args)})

    p.answers["/"] = answer
    assert p.call("ask", 3000, "what?", 42) == {"reply": ["answer", {"n": 2}]}
    assert seen == [("what?", 42)]

    p.answers["/"] = lambda *args: "one"
    assert p.call("ask", 3000) == {"reply": ["one"]}

    p.answers["/"] = lambda *args: None
    assert p.call("ask", 3000, "x") == {"reply": []}

    p.answers["/"] = lambda *args: (b"\x09\x08", {"bin": b"\x07"})
    assert p.call("ask", 3000) == {"reply": [b"\x09\x08", {"bin": b"\x07"}]}


def test_server_ack_request_times_out(peer):
    p = peer().connect()
    answered = threading.Event()

    def slow(*args):
        time.sleep(0.8)
        answered.set()
        return "too late"

    p.answers["/"] = slow
    started = time.monotonic()
    assert p.call("ask", 100, "slow?") == {"error": "timeout"}
    assert time.monotonic() - started < 0.7  # the server gave up before the answer
    # The late answer is dropped and the connection keeps working.
    assert answered.wait(WAIT)
    assert p.call("ack", "still here") == "still here"


# ---------------------------------------------------------------------------
# rooms and broadcasts


def test_join_leave_and_rooms(peer):
    p = peer().connect()
    sid = p.sid()
    a, b, c = unique("a"), unique("b"), unique("c")
    assert p.call("rooms") == [sid]
    assert p.call("join", a) == sorted([sid, a])
    assert p.call("join", [b, c]) == sorted([sid, a, b, c])
    assert p.call("join", a) == sorted([sid, a, b, c])
    assert p.call("leave", b) == sorted([sid, a, c])
    assert p.call("leave", "never-joined") == sorted([sid, a, c])
    assert p.call("rooms") == sorted([sid, a, c])


def test_broadcast_from_namespace_reaches_everyone(peer):
    a, b, c = (peer().connect() for _ in range(3))
    assert a.call("broadcast", {}, "news", "all", 1) is None
    for p in (a, b, c):
        assert p.next("news") == ("all", 1)


def test_broadcast_from_socket_excludes_the_sender(peer):
    a, b, c = (peer().connect() for _ in range(3))
    assert a.call("broadcast", {"fromSocket": True}, "news", "others") is None
    assert b.next("news") == ("others",)
    assert c.next("news") == ("others",)
    got_a, _, _ = sync([a, b, c], a)
    assert got_a == []


def test_broadcast_to_room_union_is_received_once(peer):
    r1, r2, r3 = unique("r1"), unique("r2"), unique("r3")
    a, b, c, d, sender = (peer().connect() for _ in range(5))
    a.call("join", r1)
    b.call("join", [r1, r2])
    c.call("join", r2)
    d.call("join", r3)
    assert sender.call("broadcast", {"to": [r1, r2]}, "news", "union") is None
    got = sync([a, b, c, d, sender], sender)
    assert got == [[("news", ("union",))], [("news", ("union",))],
                   [("news", ("union",))], [], []]


def test_broadcast_from_socket_to_room_excludes_the_sender(peer):
    room = unique("room")
    a, b, outsider = (peer().connect() for _ in range(3))
    a.call("join", room)
    b.call("join", room)
    assert a.call("broadcast", {"to": room, "fromSocket": True}, "news", "x") is None
    got = sync([a, b, outsider], a)
    assert got == [[], [("news", ("x",))], []]

    # From the namespace, the sender in the room gets it too.
    assert a.call("broadcast", {"to": room}, "news", "y") is None
    got = sync([a, b, outsider], a)
    assert got == [[("news", ("y",))], [("news", ("y",))], []]


def test_broadcast_except(peer):
    r1, r2 = unique("r1"), unique("r2")
    a, b, c, sender = (peer().connect() for _ in range(4))
    a.call("join", r1)
    b.call("join", [r1, r2])
    c.call("join", r2)
    assert sender.call("broadcast", {"to": r1, "except": r2}, "news", 1) is None
    assert sync([a, b, c, sender], sender) == [[("news", (1,))], [], [], []]

    # `except` alone: everyone but the excluded rooms (sender included).
    assert sender.call("broadcast", {"except": [r1]}, "news", 2) is None
    assert sync([a, b, c, sender], sender) == [[], [], [("news", (2,))], [("news", (2,))]]

    # Excluding a socket's own id room excludes that socket.
    assert sender.call("broadcast", {"except": c.sid()}, "news", 3) is None
    assert sync([a, b, c, sender], sender) == [
        [("news", (3,))], [("news", (3,))], [], [("news", (3,))]]


def test_broadcast_to_a_socket_id(peer):
    a, b = peer().connect(), peer().connect()
    assert a.call("broadcast", {"to": b.sid()}, "direct", "hi") is None
    assert sync([a, b], a) == [[], [("direct", ("hi",))]]


def test_broadcast_with_binary(peer):
    a, b = peer().connect(), peer().connect()
    assert a.call("broadcast", {"fromSocket": True}, "blob", b"\x00\x01", {"x": b"\x02"}) is None
    assert b.next("blob") == (b"\x00\x01", {"x": b"\x02"})


def test_broadcasts_stay_in_their_namespace(peer):
    main = peer().connect(namespaces=("/",))
    admin = peer().connect(namespaces=("/", "/admin"))
    assert admin.call("broadcast", {}, "news", "admin-only", nsp="/admin") is None
    assert admin.next("news", nsp="/admin") == ("admin-only",)
    assert sync([main, admin], admin) == [[], []]


def test_fetch_sockets_join_and_leave(peer):
    room, extra = unique("room"), unique("extra")
    a, b, c = (peer().connect() for _ in range(3))
    a.call("join", room)
    b.call("join", room)
    assert c.call("fetch", room) == sorted([a.sid(), b.sid()])
    assert c.call("fetch", unique("empty")) == []

    assert c.call("sockets-join", room, extra) is None
    assert a.call("rooms") == sorted([a.sid(), room, extra])
    assert c.call("fetch", extra) == sorted([a.sid(), b.sid()])

    assert c.call("sockets-leave", room, room) is None
    assert c.call("fetch", room) == []
    assert b.call("rooms") == sorted([b.sid(), extra])


# ---------------------------------------------------------------------------
# disconnection


def test_client_disconnect_is_seen_by_the_server(peer):
    observer = peer().connect()
    p = peer().connect(namespaces=("/", "/admin"))
    main_sid, admin_sid = p.sid("/"), p.sid("/admin")
    p.client.disconnect()
    # python-socketio queues a DISCONNECT per namespace and closes its transport
    # right away, so the server may see the transport go first: the reference
    # server reports "transport close" over polling (it handles the Engine.IO
    # close packet of the same POST before the Socket.IO packets) and usually
    # "client namespace disconnect" over websocket. test_raw covers each reason
    # deterministically.
    assert wait_reason(observer, main_sid, "/") in {"client namespace disconnect",
                                                    "transport close"}
    assert wait_reason(observer, admin_sid, "/admin") in {"client namespace disconnect",
                                                          "transport close"}
    assert p.disconnects["/"] == [(socketio.Client.reason.CLIENT_DISCONNECT,)]


def test_transport_close_is_seen_by_the_server(peer):
    observer = peer().connect()
    p = peer().connect(namespaces=("/", "/admin"))
    main_sid, admin_sid = p.sid("/"), p.sid("/admin")
    p.client.eio.disconnect()  # Engine.IO close, no Socket.IO DISCONNECT first
    assert wait_reason(observer, main_sid, "/") == "transport close"
    assert wait_reason(observer, admin_sid, "/admin") == "transport close"


@pytest.mark.parametrize("close", [False, True], ids=["namespace", "close"])
def test_server_disconnect_is_seen_by_the_client(peer, close):
    observer = peer().connect()
    p = peer().connect()
    sid = p.sid()
    p.emit("disconnect-me", close)
    assert p.wait_disconnect("/") == (socketio.Client.reason.SERVER_DISCONNECT,)
    assert wait_reason(observer, sid) == "server namespace disconnect"
    deadline = time.monotonic() + WAIT
    while p.client.connected:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_server_disconnect_of_one_namespace_keeps_the_other(peer):
    p = peer().connect(namespaces=("/", "/admin"))
    p.emit("disconnect-me", False, nsp="/admin")
    assert p.wait_disconnect("/admin") == (socketio.Client.reason.SERVER_DISCONNECT,)
    assert p.call("ack", "main still up") == "main still up"
    assert "/" not in p.disconnects


def test_disconnect_room(peer):
    room = unique("room")
    observer = peer().connect()
    a, b, c = (peer().connect() for _ in range(3))
    a.call("join", room)
    b.call("join", room)
    sids = [a.sid(), b.sid()]
    observer.emit("disconnect-room", room, False)
    for p in (a, b):
        assert p.wait_disconnect("/") == (socketio.Client.reason.SERVER_DISCONNECT,)
    for sid in sids:
        assert wait_reason(observer, sid) == "server namespace disconnect"
    assert c.call("ack", "c unaffected") == "c unaffected"


# ---------------------------------------------------------------------------
# transport


def test_transport_in_use(peer, mode):
    p = peer().connect()
    assert p.client.transport() == {"websocket": "websocket", "polling": "polling",
                                    "upgrade": "websocket"}[mode]


def test_traffic_while_upgrading(peer, mode):
    p = peer().connect(wait_upgrade=False)
    for i in range(10):
        p.emit("echo", i)
    assert [p.next("echo")[0] for _ in range(10)] == list(range(10))
    if mode == "upgrade":
        p.wait_for_upgrade()
    assert p.call("ack", "after") == "after"


def test_connection_outlives_several_heartbeats(peer):
    p = peer().connect()
    time.sleep(1.8)  # > pingInterval 1000 ms + pingTimeout 500 ms
    assert p.client.connected
    assert p.call("ack", "alive") == "alive"
