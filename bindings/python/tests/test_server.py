"""iobus.Server (the blocking flavour) against python-socketio's client:
every operation, handlers, acks both ways, binary, namespaces, sessions,
refusals and handler failures."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List

import pytest
import requests
import socketio

import iobus
from conftest import wait_for


def recorder(client: socketio.Client, *events: str) -> List[tuple]:
    got: List[tuple] = []
    for event in events:
        client.on(event, (lambda e: lambda *args: got.append((e, *args)))(event))
    return got


# ---- connect ------------------------------------------------------------------


def test_connect_handler_gets_sid_environ_and_auth(make_server, make_client):
    server = make_server()
    seen: Dict[str, Any] = {}

    @server.event
    def connect(sid, environ, auth):
        seen.update(sid=sid, environ=environ, auth=auth)

    server.start()
    client = make_client(server, auth={"token": "t1"}, headers={"X-Trace": "abc"})
    wait_for(lambda: seen, what="connect handler")
    assert seen["sid"] == client.get_sid()
    assert seen["auth"] == {"token": "t1"}
    env = seen["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/socket.io/"
    assert "EIO=4" in env["QUERY_STRING"]
    assert env["HTTP_X_TRACE"] == "abc"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["iobus.handshake"]["query"]["EIO"] == "4"
    # get_environ gives the same picture later on.
    later = server.get_environ(client.get_sid())
    assert later is not None and later["HTTP_X_TRACE"] == "abc"
    assert server.get_environ("AAAAAAAAAAAAAAAAAAAA") is None


def test_connect_handler_with_fewer_parameters(make_server, make_client):
    server = make_server()
    seen = []
    server.on("connect", lambda sid, environ: seen.append(sid))
    server.start()
    client = make_client(server)
    wait_for(lambda: seen == [client.get_sid()])


def test_connect_refused_by_returning_false(make_server):
    server = make_server()
    server.on("connect", lambda sid, environ, auth: False)
    server.start()
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
    assert errors == [{"message": "Connection rejected by server"}]


def test_connect_refused_with_message_and_data(make_server):
    server = make_server()

    @server.event
    def connect(sid, environ, auth):
        if auth.get("token") != "good":
            raise iobus.ConnectionRefusedError("Not authorized", {"retry": False})

    server.start()
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(f"http://127.0.0.1:{server.port}", auth={"token": "bad"}, transports=["websocket"],
                       wait_timeout=5)
    assert errors == [{"message": "Not authorized", "data": {"retry": False}}]
    ok = socketio.Client(reconnection=False)
    ok.connect(f"http://127.0.0.1:{server.port}", auth={"token": "good"}, transports=["websocket"], wait_timeout=5)
    assert ok.connected
    ok.disconnect()


def test_connect_handler_exception_refuses_and_is_logged(make_server, caplog):
    server = make_server()

    @server.event
    def connect(sid, environ, auth):
        raise RuntimeError("boom in connect")

    server.start()
    client = socketio.Client(reconnection=False)
    with caplog.at_level(logging.ERROR, logger="iobus"):
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
        wait_for(lambda: "boom in connect" in caplog.text, what="the traceback in the log")
    assert "Traceback" in caplog.text


def test_rooms_and_emits_from_the_connect_handler(make_server):
    server = make_server()

    @server.event
    def connect(sid, environ, auth):
        server.enter_room(sid, "vip")
        assert sorted(server.rooms(sid)) == sorted([sid, "vip"])
        server.emit("welcome", {"sid": sid}, to=sid)
        with server.session(sid) as session:
            session["name"] = auth.get("name")

    server.start()
    client = socketio.Client(reconnection=False)
    got = recorder(client, "welcome")
    client.connect(f"http://127.0.0.1:{server.port}", auth={"name": "ann"}, transports=["websocket"], wait_timeout=5)
    try:
        wait_for(lambda: got, what="welcome")
        assert got == [("welcome", {"sid": client.get_sid()})]
        assert "vip" in server.rooms(client.get_sid())
        assert server.get_session(client.get_sid()) == {"name": "ann"}
    finally:
        client.disconnect()


# ---- events and acks ------------------------------------------------------------


def test_event_handlers_receive_sid_and_args_and_return_the_ack(make_server, make_client):
    server = make_server()
    calls = []

    @server.on("add")
    def add(sid, a, b):
        calls.append(sid)
        return a + b

    @server.event
    def pair(sid, *args):
        return ("first", {"n": len(args)})

    @server.event
    def nothing(sid):
        return None

    def echo(sid, *args):
        return args

    server.on("echo", echo)
    server.start()
    client = make_client(server)
    assert client.call("add", (2, 3), timeout=5) == 5
    assert calls == [client.get_sid()]
    assert client.call("pair", (1, 2, 3), timeout=5) == ("first", {"n": 3})
    assert client.call("nothing", timeout=5) is None
    payload = {"text": "héllo ✓", "list": [1, 2.5, None, True], "nested": {"a": [{}]}}
    assert client.call("echo", payload, timeout=5) == payload


def test_catch_all_handler(make_server, make_client):
    server = make_server()
    seen = []

    @server.on("known")
    def known(sid):
        seen.append("known")

    @server.on("*")
    def anything(event, sid, *args):
        seen.append((event, sid, args))
        return "caught"

    server.start()
    client = make_client(server)
    assert client.call("whatever", ("x", 1), timeout=5) == "caught"
    client.emit("known")
    wait_for(lambda: "known" in seen)
    assert seen[0] == ("whatever", client.get_sid(), ("x", 1))


def test_handler_exception_is_logged_and_serving_goes_on(make_server, make_client, caplog):
    server = make_server()

    @server.event
    def explode(sid):
        raise ValueError("handler went wrong")

    @server.event
    def fine(sid):
        return "still here"

    server.start()
    client = make_client(server)
    with caplog.at_level(logging.ERROR, logger="iobus"):
        client.emit("explode")
        with pytest.raises(socketio.exceptions.TimeoutError):
            client.call("explode", timeout=0.5)
        assert client.call("fine", timeout=5) == "still here"
        wait_for(lambda: caplog.text.count("handler went wrong") >= 2)
    assert "Traceback" in caplog.text and "ValueError" in caplog.text


def test_emit_with_callback_gets_the_client_ack(make_server, make_client):
    server = make_server()
    server.start()
    client = make_client(server)
    client.on("question", lambda *args: ("answer", list(args)))
    replies = []
    server.emit("question", (1, 2), to=client.get_sid(), callback=lambda *a: replies.append(a))
    wait_for(lambda: replies, what="callback")
    assert replies == [("answer", [1, 2])]


def test_emit_with_callback_to_a_room_calls_it_per_reply(make_server, make_client):
    server = make_server(ack_timeout=1)
    server.start()
    clients = [make_client(server) for _ in range(4)]
    for i, client in enumerate(clients):
        server.enter_room(client.get_sid(), "r")
        client.on("poll", (lambda i: lambda q: f"{q} from {i}")(i))
    answers: List[Any] = []
    # Several skipped sids; every other member answers.
    skip = [clients[0].get_sid(), clients[2].get_sid()]
    server.emit("poll", "q", to="r", skip_sid=skip, callback=lambda answer: answers.append(answer))
    wait_for(lambda: len(answers) == 2, what="two answers")
    assert sorted(answers) == ["q from 1", "q from 3"]
    # A member that answers too late is not waited for beyond ack_timeout,
    # and its late answer is dropped.
    clients[3].on("slow", lambda: time.sleep(2) or "late")
    clients[2].on("slow", lambda: "quick")
    answers.clear()
    start = time.monotonic()
    server.emit("slow", to="r", skip_sid=skip[:1] + [clients[1].get_sid()], callback=lambda *a: answers.append(a))
    wait_for(lambda: answers, timeout=5, what="the answers of the emit")
    assert answers == [("quick",)]
    assert 0.9 <= time.monotonic() - start < 2
    time.sleep(1.3)
    assert answers == [("quick",)]


def test_handlers_are_subscriptions_without_c_callbacks(make_server, make_client):
    import ctypes

    from iobus import _native

    # The binding hands libiobus no function pointer: what it is owed
    # arrives as records.
    cfuncs = [name for name, value in vars(_native).items() if isinstance(value, type) and issubclass(value, ctypes._CFuncPtr)]
    assert cfuncs == []
    server = make_server()
    server.start()
    client = make_client(server)
    # Registered while serving: subscribed at once.
    server.on("late", lambda sid, x: x + 1)
    assert client.call("late", 1, timeout=5) == 2
    seen: List[Any] = []
    server.on("*", lambda event, sid, *args: seen.append((event, *args)) or "caught")
    assert client.call("anything", "x", timeout=5) == "caught"
    assert seen == [("anything", "x")]


def test_a_query_from_a_handler_keeps_the_order_of_events(make_server, make_client):
    server = make_server()
    order: List[Any] = []
    started = threading.Event()

    def who(sid):
        started.set()
        time.sleep(0.3)  # the next events queue up meanwhile
        sockets = server.fetch_sockets()
        rooms = server.all_rooms()
        order.append(("who", [s.sid for s in sockets], rooms))
        return len(sockets)

    server.on("who", who)
    server.on("n", lambda sid, i: order.append(i))
    server.start()
    client = make_client(server)
    sid = client.get_sid()
    replies: List[Any] = []
    client.emit("who", callback=lambda *a: replies.append(a))
    assert started.wait(5)
    for i in range(10):
        client.emit("n", i)
    wait_for(lambda: len(order) == 11 and replies, what="every event")
    # Taken while "who" waited for its answers, the events reached their
    # handler after it, in order.
    assert order == [("who", [sid], [sid]), *range(10)]
    assert replies == [(1,)]


def test_call_returns_the_ack_and_times_out(make_server, make_client):
    server = make_server()
    server.start()
    client = make_client(server)
    client.on("one", lambda x: x * 2)
    client.on("many", lambda: (1, "two"))
    client.on("none", lambda: None)
    client.on("slow", lambda: time.sleep(1.5) or "late")
    sid = client.get_sid()
    assert server.call("one", 21, to=sid, timeout=5) == 42
    assert server.call("many", sid=sid, timeout=5) == (1, "two")
    assert server.call("none", to=sid, timeout=5) is None
    start = time.monotonic()
    with pytest.raises(iobus.TimeoutError):
        server.call("slow", to=sid, timeout=0.3)
    assert time.monotonic() - start < 2
    with pytest.raises(iobus.DisconnectedError):
        server.call("one", 1, to="AAAAAAAAAAAAAAAAAAAA", timeout=1)


def test_call_fails_when_the_client_leaves(make_server, make_client):
    server = make_server()
    server.start()
    client = make_client(server)
    client.on("never", lambda: time.sleep(3))
    sid = client.get_sid()
    threading.Timer(0.3, lambda: server.disconnect(sid)).start()
    with pytest.raises(iobus.DisconnectedError):
        server.call("never", to=sid, timeout=10)


def test_call_from_a_handler_is_refused_with_advice(make_server, make_client):
    server = make_server()
    errors = []

    @server.event
    def ask(sid):
        try:
            server.call("x", to=sid, timeout=1)
        except RuntimeError as exc:
            errors.append(str(exc))
        return "done"

    server.start()
    client = make_client(server)
    assert client.call("ask", timeout=5) == "done"
    assert "callback" in errors[0]


def test_call_from_a_background_task(make_server, make_client):
    server = make_server()
    answers = []

    @server.event
    def ask(sid):
        server.start_background_task(lambda: answers.append(server.call("q", to=sid, timeout=5)))

    server.start()
    client = make_client(server)
    client.on("q", lambda: "from client")
    client.emit("ask")
    wait_for(lambda: answers == ["from client"])


# ---- emit targets -----------------------------------------------------------------


def test_emit_targets_rooms_and_skip_sid(make_server, make_client):
    server = make_server()
    server.start()
    a, b, c = (make_client(server) for _ in range(3))
    got = {name: recorder(cl, "news") for name, cl in (("a", a), ("b", b), ("c", c))}
    sa, sb, sc = a.get_sid(), b.get_sid(), c.get_sid()
    server.enter_room(sa, "red")
    server.enter_room(sb, "red")
    server.enter_room(sc, "blue")

    def drain(expected: Dict[str, int]) -> Dict[str, List[Any]]:
        wait_for(lambda: all(len(got[k]) >= v for k, v in expected.items()), what=str(expected))
        time.sleep(0.1)
        out = {k: [e[1:] for e in v] for k, v in got.items()}
        for v in got.values():
            v.clear()
        return out

    server.emit("news", "all")
    assert drain({"a": 1, "b": 1, "c": 1}) == {"a": [("all",)], "b": [("all",)], "c": [("all",)]}
    server.emit("news", "red", to="red")
    assert drain({"a": 1, "b": 1}) == {"a": [("red",)], "b": [("red",)], "c": []}
    server.emit("news", "room kw", room="blue")
    assert drain({"c": 1}) == {"a": [], "b": [], "c": [("room kw",)]}
    server.emit("news", "two rooms", to=["red", "blue"])
    assert drain({"a": 1, "b": 1, "c": 1})["c"] == [("two rooms",)]
    server.emit("news", "skip one", to="red", skip_sid=sa)
    assert drain({"b": 1}) == {"a": [], "b": [("skip one",)], "c": []}
    server.emit("news", "skip two", skip_sid=[sa, sb])
    assert drain({"c": 1}) == {"a": [], "b": [], "c": [("skip two",)]}
    server.emit("news", "direct", to=sb)
    assert drain({"b": 1}) == {"a": [], "b": [("direct",)], "c": []}
    server.emit("news", (1, [2], {"three": 3}), to=sc)
    assert drain({"c": 1})["c"] == [(1, [2], {"three": 3})]
    server.emit("news", None, to=sc)
    assert drain({"c": 1})["c"] == [()]
    messages = recorder(a, "message")
    server.send({"hello": "message"}, to=sa)
    server.send("plain", to=sa)
    wait_for(lambda: len(messages) == 2)
    assert messages == [("message", {"hello": "message"}), ("message", "plain")]


def test_emit_errors(make_server, make_client):
    server = make_server()
    server.start()
    make_client(server)
    with pytest.raises(iobus.IobusError) as info:
        server.emit("connect", 1)
    assert info.value.status == 9
    with pytest.raises(TypeError):
        server.emit("x", object())
    with pytest.raises(ValueError):
        server.emit("x", float("nan"))
    # An unknown sid, or a stopped server, is not an error (as in python-socketio).
    server.emit("x", 1, to="AAAAAAAAAAAAAAAAAAAA")
    server.enter_room("AAAAAAAAAAAAAAAAAAAA", "r")
    server.disconnect("AAAAAAAAAAAAAAAAAAAA")
    assert server.rooms("AAAAAAAAAAAAAAAAAAAA") == []


# ---- rooms --------------------------------------------------------------------------


def test_rooms_enter_leave_close_and_listing(make_server, make_client):
    server = make_server()
    server.start()
    a, b = make_client(server), make_client(server)
    sa, sb = a.get_sid(), b.get_sid()
    assert server.rooms(sa) == [sa]
    server.enter_room(sa, "x")
    server.enter_room(sa, "y")
    server.enter_room(sb, "x")
    assert server.rooms(sa) == sorted([sa, "x", "y"])
    assert server.participants("x") == sorted([sa, sb])
    assert server.participants() == sorted([sa, sb])
    assert set(server.all_rooms()) == {sa, sb, "x", "y"}
    server.leave_room(sa, "y")
    assert server.rooms(sa) == sorted([sa, "x"])
    server.close_room("x")
    assert server.participants("x") == []
    assert server.rooms(sb) == [sb]


# ---- disconnect ------------------------------------------------------------------------


def test_disconnect_from_the_server_and_from_the_client(make_server, make_client):
    server = make_server(namespaces=["/extra"])
    reasons = []

    @server.event
    def disconnect(sid, reason):
        reasons.append((sid, reason, server.rooms(sid)))

    server.start()
    # "/extra" keeps a's connection open after "/" is disconnected, so the
    # only disconnect is the server's.
    a = make_client(server, namespaces=["/", "/extra"], transports=["polling", "websocket"])
    b = make_client(server)
    sa, sb = a.get_sid(), b.get_sid()
    server.enter_room(sa, "club")
    gone = threading.Event()
    a.on("disconnect", lambda *args: gone.set())
    server.disconnect(sa)
    assert gone.wait(5)
    wait_for(lambda: len(reasons) == 1)
    assert reasons[0] == (sa, iobus.DisconnectReason.SERVER_DISCONNECT, sorted([sa, "club"]))
    b.disconnect()
    wait_for(lambda: len(reasons) == 2)
    assert reasons[1][0] == sb
    assert reasons[1][1] in (iobus.DisconnectReason.CLIENT_DISCONNECT, iobus.DisconnectReason.TRANSPORT_CLOSE)


def test_disconnect_handler_with_only_the_sid(make_server, make_client):
    server = make_server()
    seen = []
    server.on("disconnect", lambda sid: seen.append(sid))
    server.start()
    client = make_client(server)
    sid = client.get_sid()
    client.disconnect()
    wait_for(lambda: seen == [sid])


def test_a_handler_disconnecting_its_own_socket_still_acks(make_server, make_client):
    server = make_server()

    @server.event
    def bye(sid):
        server.disconnect(sid)
        return {"ok": True}

    server.start()
    client = make_client(server)
    gone = threading.Event()
    client.on("disconnect", lambda *a: gone.set())
    assert client.call("bye", timeout=5) == {"ok": True}
    assert gone.wait(5)


# ---- sessions ------------------------------------------------------------------------------


def test_sessions(make_server, make_client):
    server = make_server()
    after_disconnect = []

    @server.event
    def login(sid, name):
        server.save_session(sid, {"name": name})

    @server.event
    def whoami(sid):
        return server.get_session(sid)["name"]

    @server.event
    def rename(sid, name):
        with server.session(sid) as session:
            session["name"] = name

    @server.event
    def disconnect(sid, reason):
        after_disconnect.append(dict(server.get_session(sid)))

    server.start()
    client = make_client(server)
    sid = client.get_sid()
    client.call("login", "ann", timeout=5)
    assert client.call("whoami", timeout=5) == "ann"
    client.call("rename", "bob", timeout=5)
    assert client.call("whoami", timeout=5) == "bob"
    client.disconnect()
    wait_for(lambda: after_disconnect == [{"name": "bob"}])
    assert sid not in server._sessions


# ---- binary -------------------------------------------------------------------------------------


def test_binary_both_ways(make_server, make_client):
    server = make_server()
    received = []

    @server.event
    def upload(sid, meta, blob):
        received.append((meta, blob))
        return {"size": len(blob), "back": blob[::-1], "more": [b"\x00", bytearray(b"\xff\xfe")]}

    server.start()
    client = make_client(server)
    got = recorder(client, "file")
    blob = bytes(range(256)) * 10
    reply = client.call("upload", ({"name": "f", "inner": b"\x01\x02"}, blob), timeout=5)
    assert received == [({"name": "f", "inner": b"\x01\x02"}, blob)]
    assert reply == {"size": 2560, "back": blob[::-1], "more": [b"\x00", b"\xff\xfe"]}
    server.emit("file", (b"abc", {"deep": [memoryview(b"xyz")]}, b""), to=client.get_sid())
    wait_for(lambda: got)
    assert got == [("file", b"abc", {"deep": [b"xyz"]}, b"")]


def test_placeholder_lookalikes(make_server, make_client):
    server = make_server()
    seen = []
    server.on("keep", lambda sid, x: seen.append(x) or "kept")
    server.start()
    client = make_client(server)
    lookalike = {"_placeholder": True, "num": 0}
    # Received without attachments, it stays a dict.
    assert client.call("keep", lookalike, timeout=5) == "kept"
    assert seen == [lookalike]
    # Sent without binary, it is plain data too.
    got = recorder(client, "x")
    server.emit("x", lookalike, to=client.get_sid())
    wait_for(lambda: got)
    assert got == [("x", lookalike)]
    # Beside binary it would name an attachment a second time: refused.
    with pytest.raises(iobus.IobusError) as info:
        server.emit("x", (b"\x01", lookalike), to=client.get_sid())
    assert info.value.status == 10


# ---- namespaces ------------------------------------------------------------------------------


def test_namespaces(make_server, make_client):
    server = make_server()
    seen = []

    @server.on("connect", namespace="/chat")
    def chat_connect(sid, environ, auth):
        seen.append(("connect", sid))

    @server.on("msg", namespace="/chat")
    def chat_msg(sid, text):
        server.emit("msg", text.upper(), namespace="/chat")
        return "chat"

    @server.event(namespace="/admin")
    def stats(sid):
        return {"ns": "/admin"}

    @server.on("msg")
    def root_msg(sid, text):
        return "root"

    server.start()
    client = make_client(server, namespaces=["/", "/chat", "/admin"])
    got = []
    client.on("msg", lambda text: got.append(text), namespace="/chat")
    assert client.call("msg", "hi", namespace="/chat", timeout=5) == "chat"
    assert client.call("msg", "hi", timeout=5) == "root"
    assert client.call("stats", namespace="/admin", timeout=5) == {"ns": "/admin"}
    wait_for(lambda: got == ["HI"])
    chat_sid = client.get_sid("/chat")
    assert seen == [("connect", chat_sid)]
    assert chat_sid != client.get_sid("/")
    assert server.participants(namespace="/chat") == [chat_sid]
    # Unknown namespaces are refused.
    other = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        other.connect(f"http://127.0.0.1:{server.port}", namespaces=["/nope"], transports=["websocket"],
                      wait_timeout=3)


def test_wildcard_namespace_handlers_receive_the_namespace(make_server, make_client):
    server = make_server(namespaces="*")
    seen = []

    @server.on("connect", namespace="*")
    def on_connect(namespace, sid, environ, auth):
        seen.append(("connect", namespace))

    @server.on("where", namespace="*")
    def where(namespace, sid):
        return namespace

    @server.on("*", namespace="*")
    def anything(event, namespace, sid, *args):
        return [event, namespace, list(args)]

    server.start()
    client = make_client(server, namespaces=["/", "/room-1", "/other"])
    assert client.call("where", namespace="/room-1", timeout=5) == "/room-1"
    assert client.call("where", namespace="/other", timeout=5) == "/other"
    assert client.call("odd", 7, namespace="/other", timeout=5) == ["odd", "/other", [7]]
    assert ("connect", "/room-1") in seen and ("connect", "/") in seen
    server.emit("hello", namespace="/room-1")


def test_namespace_pattern(make_server, make_client):
    server = make_server()
    server.on("where", lambda namespace, sid: namespace, namespace="/team-*")
    server.start()
    client = make_client(server, namespaces=["/team-red"])
    assert client.call("where", namespace="/team-red", timeout=5) == "/team-red"


def test_class_based_namespace(make_server, make_client):
    server = make_server()
    log = []

    class Chat(iobus.Namespace):
        def on_connect(self, sid, environ):
            log.append("connect")
            self.enter_room(sid, "members")

        def on_hello(self, sid, name):
            self.emit("greeting", f"hi {name}", room="members")
            with self.session(sid) as s:
                s["name"] = name
            return self.rooms(sid)

        def on_disconnect(self, sid, reason):
            log.append(("disconnect", reason))

    server.register_namespace(Chat("/ns"))
    server.start()
    client = make_client(server, namespaces=["/ns"])
    got = []
    client.on("greeting", lambda text: got.append(text), namespace="/ns")
    sid = client.get_sid("/ns")
    assert client.call("hello", "ann", namespace="/ns", timeout=5) == sorted([sid, "members"])
    wait_for(lambda: got == ["hi ann"])
    assert server.get_session(sid) == {"name": "ann"}
    client.disconnect()
    wait_for(lambda: len(log) == 2)
    assert log[0] == "connect" and log[1][0] == "disconnect"
    with pytest.raises(ValueError):
        server.register_namespace(iobus.AsyncNamespace("/wrong"))


# ---- configuration ---------------------------------------------------------------------------


def test_options_reach_the_handshake(make_server):
    server = make_server(ping_interval=1.5, ping_timeout=0.75, max_http_buffer_size=12345, path="/rt")
    server.start()
    res = requests.get(f"http://127.0.0.1:{server.port}/rt/?EIO=4&transport=polling", timeout=5)
    assert res.status_code == 200
    assert res.text.startswith("0")
    import json

    opened = json.loads(res.text[1:])
    assert opened["pingInterval"] == 1500
    assert opened["pingTimeout"] == 750
    assert opened["maxPayload"] == 12345


def test_cors(make_server):
    server = make_server(cors_allowed_origins=["https://app.example"])
    server.start()
    res = requests.options(
        f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        timeout=5,
    )
    assert res.headers.get("Access-Control-Allow-Origin") == "https://app.example"
    plain = make_server()
    plain.start()
    res = requests.get(f"http://127.0.0.1:{plain.port}/socket.io/?EIO=4&transport=polling",
                       headers={"Origin": "https://app.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in res.headers


def test_transports_option(make_server):
    server = make_server(transports=["websocket"])
    server.start()
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(f"http://127.0.0.1:{server.port}", transports=["polling"], wait_timeout=3)
    ws = socketio.Client(reconnection=False)
    ws.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
    ws.disconnect()


def test_static_dir(make_server, tmp_path):
    (tmp_path / "index.html").write_text("<p>static</p>")
    server = make_server(static_dir=str(tmp_path))
    server.start()
    res = requests.get(f"http://127.0.0.1:{server.port}/", timeout=5)
    assert res.status_code == 200 and "static" in res.text


def test_http_limit_options(make_server):
    import socket

    server = make_server(
        max_header_bytes=1024,
        http_header_timeout=0.3,
        http_keep_alive_timeout=0.3,
        write_timeout=5,
        max_connections=100,
        max_buffered=1 << 20,
    )
    server.start()
    url = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling"
    assert requests.get(url, timeout=5).status_code == 200
    res = requests.get(url, headers={"X-Big": "x" * 2000}, timeout=5)
    assert res.status_code == 431
    # A head that never ends is cut off after http_header_timeout, an idle
    # connection after http_keep_alive_timeout.
    for first in (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n", b""):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            start = time.monotonic()
            if first:
                conn.sendall(first)
            while conn.recv(4096):  # (a timeout here fails the test)
                pass
            assert 0.2 <= time.monotonic() - start < 3
    default = make_server()
    default.start()
    res = requests.get(
        f"http://127.0.0.1:{default.port}/socket.io/?EIO=4&transport=polling", headers={"X-Big": "x" * 2000}, timeout=5
    )
    assert res.status_code == 200


def test_limit_and_recovery_options_are_checked():
    for bad in (
        {"max_header_bytes": 10},
        {"http_header_timeout": 0},
        {"http_keep_alive_timeout": 0},
        {"write_timeout": 0},
        {"max_buffered": 0},
    ):
        with pytest.raises(iobus.IobusError):
            iobus.Server(**bad)
    with pytest.raises(TypeError):
        iobus.Server(connection_state_recovery={"max_disconnection": 1})
    with pytest.raises(TypeError):
        iobus.Server(connection_state_recovery="yes")
    with pytest.raises(ValueError):
        iobus.Server(connection_state_recovery={"max_disconnection_duration": 0})
    iobus.Server(connection_state_recovery=True, max_connections=0).close()
    iobus.Server(connection_state_recovery={"skip_middlewares": False, "max_log_bytes": 1 << 20}).close()


def test_bad_options():
    with pytest.raises(TypeError):
        iobus.Server(no_such_option=1)
    with pytest.raises(ValueError):
        iobus.Server(transports=["carrier-pigeon"])
    with pytest.raises(iobus.IobusError):
        iobus.Server(worker_threads=0)
    # python-socketio options without meaning here are accepted.
    iobus.Server(async_mode="threading", http_compression=True).close()


def test_polling_transport(make_server, make_client):
    server = make_server()
    server.on("echo", lambda sid, x: x)
    server.start()
    client = make_client(server, transports=["polling"])
    assert client.call("echo", b"\x00bin", timeout=5) == b"\x00bin"
    assert client.transport() == "polling"


def test_namespace_class_helpers(make_server, make_client):
    server = make_server()
    results = {}

    class Helpers(iobus.Namespace):
        def on_run(self, sid):
            self.enter_room(sid, "a")
            self.enter_room(sid, "b")
            self.leave_room(sid, "a")
            results["rooms"] = self.rooms(sid)
            self.close_room("b")
            results["after close"] = self.rooms(sid)
            self.save_session(sid, {"k": 1})
            results["session"] = self.get_session(sid)
            self.send("via send", to=sid)
            self.emit("via emit", (1, 2), to=sid, callback=lambda *a: results.setdefault("callback", a))
            # call() is blocking: from a background task, not from the handler.
            server.start_background_task(lambda: results.setdefault("call", self.call("q", to=sid, timeout=5)))

        def on_kick(self, sid):
            self.disconnect(sid)

    server.register_namespace(Helpers("/h"))
    server.start()
    client = make_client(server, namespaces=["/h"])
    got = []
    client.on("message", lambda x: got.append(("message", x)), namespace="/h")
    client.on("via emit", lambda *a: ("acked", list(a)), namespace="/h")
    client.on("q", lambda: "answer", namespace="/h")
    sid = client.get_sid("/h")
    client.emit("run", namespace="/h")
    wait_for(lambda: "call" in results and "callback" in results and got)
    assert results["rooms"] == sorted([sid, "b"])
    assert results["after close"] == [sid]
    assert results["session"] == {"k": 1}
    assert results["callback"] == ("acked", [1, 2])
    assert results["call"] == "answer"
    assert got == [("message", "via send")]
    gone = threading.Event()
    client.on("disconnect", lambda *a: gone.set(), namespace="/h")
    client.emit("kick", namespace="/h")
    assert gone.wait(5)


def test_misc_server_helpers(make_server):
    server = make_server()
    assert not server.running and server.port is None
    done = threading.Event()
    thread = server.start_background_task(lambda x: done.set() if x else None, True)
    assert isinstance(thread, threading.Thread)
    assert done.wait(5)
    server.sleep(0.01)
    assert server.reason.SERVER_DISCONNECT == "server namespace disconnect"
    assert iobus.library_version().count(".") == 2
    server.start()
    assert server.running and isinstance(server.port, int)
    server.shutdown()
    assert not server.running


def test_callback_per_recipient_and_unhandled_namespace_events(make_server, make_client):
    server = make_server()
    server.register_namespace(iobus.Namespace("/quiet"))
    server.start()
    a, b = make_client(server), make_client(server)
    a.on("poll", lambda: "from a")
    b.on("poll", lambda: "from b")
    answers = []
    server.emit("poll", callback=lambda answer: answers.append(answer))
    wait_for(lambda: len(answers) == 2)
    assert sorted(answers) == ["from a", "from b"]
    # A class-based namespace without a method for the event sends no ack.
    quiet = make_client(server, namespaces=["/quiet"])
    with pytest.raises(socketio.exceptions.TimeoutError):
        quiet.call("nothing here", namespace="/quiet", timeout=0.3)

