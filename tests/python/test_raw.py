"""Raw Engine.IO v4 / Socket.IO v5 wire tests against the iobus fixture server.

Plain HTTP (`requests`) and a plain WebSocket (`websocket-client`) send exact
protocol strings, including ones that real clients never send, and check the
server's exact answers: status codes, bodies, content types, what is written
before a close, and the disconnect reason the server records (`reasons`).

The fixture runs with pingInterval 1000 ms, pingTimeout 500 ms,
maxHttpBufferSize 100 000 bytes and connectTimeout 1000 ms (tests/FIXTURE.md).
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid

import pytest
import requests
import socketio
import websocket

from wire import (
    WAIT,
    Closed,
    Http,
    PendingRequest,
    PollingSession,
    WsSession,
    call,
    compact,
    connect_sio_ws,
    decode_payload,
    parse_open,
    parse_sio,
    raw_http_get_then_abort,
    wait_reason,
)

PING_INTERVAL = 1.0
PING_TIMEOUT = 0.5
CONNECT_TIMEOUT = 1.0
MAX_PAYLOAD = 100_000

SID_RE = re.compile(r"^[A-Za-z0-9_-]{20}$")
PH = '{"_placeholder":true,"num":%d}'


# ---------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def sessions():
    """Closes every raw WebSocket a test opened."""
    opened: list[WsSession] = []
    yield opened
    for ws in opened:
        ws.close()


@pytest.fixture
def ws_open(http, sessions):
    """Factory: a fresh Engine.IO WebSocket session (open packet read)."""
    def make(**kwargs) -> WsSession:
        ws = WsSession(http.ws_url(EIO="4", transport="websocket"), **kwargs)
        sessions.append(ws)
        return ws
    return make


@pytest.fixture
def sio_ws(http, sessions):
    """Factory: a WebSocket session joined to a namespace -> (session, socket id)."""
    def make(nsp: str = "/", auth=None) -> tuple[WsSession, str]:
        ws, sid = connect_sio_ws(http, nsp, auth)
        sessions.append(ws)
        return ws, sid
    return make


@pytest.fixture
def bystander(server):
    """A well-behaved python-socketio client connected before the test acts.

    It answers heartbeats in the background, so it survives long tests.
    """
    client = socketio.Client(reconnection=False, handle_sigint=False)
    client.connect(server.url, transports=["websocket"], wait_timeout=WAIT)
    yield client
    client.disconnect()


def assert_serving(client: socketio.Client) -> None:
    """The server still answers a well-behaved client."""
    token = uuid.uuid4().hex
    assert client.connected
    assert client.call("ack", token, timeout=WAIT) == token


def assert_error(r: requests.Response, status: int, code: int, message: str) -> None:
    """An Engine.IO HTTP error: status, JSON content type, {"code","message"}."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("content-type", "").split(";")[0].strip() == "application/json"
    assert r.json() == {"code": code, "message": message}


def assert_session_gone(p: PollingSession) -> None:
    assert_error(p.get_response(), 400, 1, "Session ID unknown")


def assert_polling_session_closes(p: PollingSession, timeout: float = 3.0) -> None:
    """The session ends: a GET returns the close packet `1`, or the sid is unknown."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = p.get_response(timeout=timeout)
        if r.status_code == 400:
            assert_error(r, 400, 1, "Session ID unknown")
            return
        assert r.status_code == 200, (r.status_code, r.text)
        if "1" in decode_payload(r.text):
            assert_session_gone(p)
            return
    raise AssertionError("polling session still open")


def polling_sio(http: Http, nsp: str = "/") -> tuple[PollingSession, str]:
    """A long-polling session joined to `nsp` (hello consumed) -> (session, socket id)."""
    p = PollingSession(http)
    reply = p.sio_connect(nsp)
    sid = reply.data["sid"]
    (hello,) = p.collect(1)
    assert parse_sio(hello).data[0] == "hello"
    return p, sid


def text_content_type(r: requests.Response) -> str:
    return r.headers.get("content-type", "").replace(" ", "").lower()


# ---------------------------------------------------------------------------
# Engine.IO handshake


def test_polling_handshake(http):
    r = http.request("GET", EIO="4", transport="polling")
    assert r.status_code == 200
    assert text_content_type(r) == "text/plain;charset=utf-8"
    assert r.text.startswith("0")
    open_packet = json.loads(r.text[1:])
    assert set(open_packet) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert SID_RE.match(open_packet["sid"]), open_packet["sid"]
    assert open_packet["upgrades"] == ["websocket"]
    assert open_packet["pingInterval"] == 1000
    assert open_packet["pingTimeout"] == 500
    assert open_packet["maxPayload"] == MAX_PAYLOAD
    # CORS: any origin, no credentials.
    assert r.headers.get("access-control-allow-origin") == "*"
    assert "access-control-allow-credentials" not in r.headers

    other = parse_open(http.request("GET", EIO="4", transport="polling").text)
    assert other["sid"] != open_packet["sid"]


def test_polling_handshake_ignores_cache_buster_and_extra_query(http):
    r = http.request("GET", EIO="4", transport="polling", t="NxQ3pX1", foo="bar")
    assert r.status_code == 200
    assert SID_RE.match(parse_open(r.text)["sid"])


def test_websocket_handshake(ws_open):
    ws = ws_open()
    assert set(ws.open) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert SID_RE.match(ws.sid)
    assert ws.open["upgrades"] == []
    assert ws.open["pingInterval"] == 1000
    assert ws.open["pingTimeout"] == 500
    assert ws.open["maxPayload"] == MAX_PAYLOAD


@pytest.mark.parametrize("eio", [None, "3", "5", "abc", ""], ids=["missing", "3", "5", "abc", "empty"])
def test_unsupported_protocol_version(http, eio):
    query = {"transport": "polling"}
    if eio is not None:
        query["EIO"] = eio
    r = http.request("GET", **query)
    assert_error(r, 400, 5, "Unsupported protocol version")
    assert r.headers.get("access-control-allow-origin") == "*"


@pytest.mark.parametrize("transport", [None, "abc", "Polling", "webtransport", ""])
def test_unknown_transport(http, transport):
    query = {"EIO": "4"}
    if transport is not None:
        query["transport"] = transport
    assert_error(http.request("GET", **query), 400, 0, "Transport unknown")


def test_transport_is_checked_before_protocol_version(http):
    # Reference order: transport, then sid, then method, then EIO.
    assert_error(http.request("GET", EIO="3", transport="abc"), 400, 0, "Transport unknown")
    assert_error(http.request("GET", EIO="3", transport="polling", sid="nope"),
                 400, 1, "Session ID unknown")
    assert_error(http.request("POST", EIO="3", transport="polling"),
                 400, 2, "Bad handshake method")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("sid", ["nope", "AAAAAAAAAAAAAAAAAAAA"])
def test_unknown_sid(http, method, sid):
    r = http.request(method, data="40" if method == "POST" else None,
                     EIO="4", transport="polling", sid=sid)
    assert_error(r, 400, 1, "Session ID unknown")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_handshake_with_another_method(http, method):
    r = http.request(method, data="40" if method != "DELETE" else None,
                     EIO="4", transport="polling")
    assert_error(r, 400, 2, "Bad handshake method")


def test_bad_request_websocket_transport_without_upgrade(http):
    assert_error(http.request("GET", EIO="4", transport="websocket"), 400, 3, "Bad request")


def test_bad_request_transport_mismatch(http):
    p = PollingSession(http)
    assert_error(http.request("GET", EIO="4", transport="websocket", sid=p.sid),
                 400, 3, "Bad request")
    # The session itself is unharmed.
    p.post("40")
    assert parse_sio(p.collect(1)[0]).type == 0


def test_bad_request_protocol_mismatch(http):
    p = PollingSession(http)
    assert_error(http.request("GET", EIO="3", transport="polling", sid=p.sid),
                 400, 3, "Bad request")


def test_cors_preflight(http):
    r = http.request("OPTIONS", headers={"Origin": "http://example.test",
                                         "Access-Control-Request-Method": "POST"},
                     EIO="4", transport="polling")
    assert r.status_code == 204
    assert r.text == ""
    assert r.headers.get("access-control-allow-origin") == "*"
    methods = {m.strip() for m in r.headers.get("access-control-allow-methods", "").split(",")}
    assert {"GET", "POST"} <= methods
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize("query,body", [
    ({"EIO": "4", "transport": "abc"}, b"Transport unknown"),
    ({"EIO": "4"}, b"Transport unknown"),
    ({"EIO": "4", "transport": "websocket", "sid": "nope"}, b"Session ID unknown"),
])
def test_websocket_handshake_errors(http, query, body):
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(http.ws_url(**query), timeout=WAIT)
    assert err.value.status_code == 400
    assert err.value.resp_body == body
    # Rejected upgrades answer in plain text, not JSON.
    assert err.value.resp_headers.get("content-type") == "text/html"


@pytest.mark.parametrize("eio", [None, "3"], ids=["missing", "3"])
def test_websocket_unsupported_protocol_version_gets_no_session(http, eio):
    # The reference completes the upgrade, then writes an HTTP 400 onto the
    # socket and drops it: a client sees a broken connection, never an open packet.
    query = {"transport": "websocket"}
    if eio is not None:
        query["EIO"] = eio
    try:
        ws = WsSession(http.ws_url(**query), read_open=False)
    except (websocket.WebSocketException, ConnectionError, OSError):
        return
    try:
        frame = ws.recv(3.0, skip_pings=False)
    except (Closed, websocket.WebSocketException, ConnectionError, OSError):
        return
    finally:
        ws.close()
    raise AssertionError(f"got a frame from an unsupported protocol version: {frame!r}")


# ---------------------------------------------------------------------------
# long-polling payloads


def test_polling_connect_and_payload_format(http):
    p = PollingSession(http)
    r = p.post_response("40")
    assert (r.status_code, r.text) == (200, "ok")
    assert text_content_type(r) == "text/html"
    connect, hello = p.collect(2)
    sid = json.loads(connect[2:])["sid"]
    assert connect == '40{"sid":"%s"}' % sid
    assert hello == '42["hello",{"sid":"%s","nsp":"/","auth":{}}]' % sid

    # Several packets in one POST, separated by \x1e ...
    p.post('42["echo","a"]', '42["echo","b"]', '42["echo",{"c":[1,2]}]')
    time.sleep(0.2)
    # ... and what the server buffered comes back in one GET, the same way.
    r = p.get_response()
    assert r.status_code == 200
    assert text_content_type(r) == "text/plain;charset=utf-8"
    assert r.text == '42["echo","a"]\x1e42["echo","b"]\x1e42["echo",{"c":[1,2]}]'


def test_polling_utf8(http):
    p, _ = polling_sio(http)
    text = '42["echo","é✓ 日本 🎉"]'
    p.post(text)
    r = p.get_response()
    assert r.text == text
    assert int(r.headers["content-length"]) == len(text.encode("utf-8"))


def test_polling_binary_client_to_server(http):
    p, _ = polling_sio(http)
    # A binary attachment travels as `b` + base64 in the payload.
    p.post('451-["echo",%s]' % (PH % 0), b"\x01\x02\x03")
    time.sleep(0.2)
    r = p.get_response()
    assert r.text == '451-["echo",%s]\x1ebAQID' % (PH % 0)


def test_polling_binary_server_to_client(http):
    p, _ = polling_sio(http)
    p.post('42["binary"]')
    time.sleep(0.2)
    r = p.get_response()
    assert r.text == ('452-["binary",%s,{"nested":{"deep":[%s,"x"]}}]\x1ebAQID\x1ebBAU='
                      % (PH % 0, PH % 1))


def test_polling_binary_ack(http):
    p, _ = polling_sio(http)
    p.post('451-7["ack",{"k":%s}]' % (PH % 0), b"\xff\x00")
    assert p.collect(2) == ['461-7[{"k":%s}]' % (PH % 0), b"\xff\x00"]


# ---------------------------------------------------------------------------
# long-polling errors


def test_duplicate_get_closes_the_session(http, bystander):
    p, sid = polling_sio(http)
    first = PendingRequest(p.get_response)
    time.sleep(0.2)
    second = p.get_response()
    # The overlapping GET gets a bare 400 (no JSON body) ...
    assert second.status_code == 400
    assert second.text == ""
    # ... and the pending one is answered with the close packet.
    r = first.result()
    assert (r.status_code, r.text) == (200, "1")
    assert_session_gone(p)
    assert wait_reason(http, sid) == "transport error"
    assert_serving(bystander)


def test_duplicate_post_closes_the_session(http, server, bystander):
    p, sid = polling_sio(http)
    # A POST whose body never finishes arriving stays pending.
    s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        s.sendall((f"POST /socket.io/?EIO=4&transport=polling&sid={p.sid} HTTP/1.1\r\n"
                   "Host: 127.0.0.1\r\nContent-Length: 100\r\n\r\n42").encode())
        time.sleep(0.2)
        r = p.post_response('42["echo",1]')
        assert r.status_code == 400
        assert r.text == ""  # a bare 400, like the duplicate GET
    finally:
        s.close()
    assert_session_gone(p)
    assert wait_reason(http, sid) == "transport error"
    assert_serving(bystander)


def test_oversized_post(http, bystander):
    p, sid = polling_sio(http)
    r = p.post_response('42["echo","' + "x" * MAX_PAYLOAD + '"]')
    assert r.status_code == 413
    assert r.text == ""
    # The reference only rejects the request: the session stays open.
    p.post('42["echo","after"]')
    assert p.collect(1) == ['42["echo","after"]']

    # The limit counts bytes, not characters.
    r = p.post_response('42["echo","' + "é" * (MAX_PAYLOAD // 2) + '"]')
    assert r.status_code == 413

    # Exactly maxHttpBufferSize bytes is accepted.
    filler = MAX_PAYLOAD - len('42["echo",""]')
    body = '42["echo","' + "y" * filler + '"]'
    assert len(body.encode()) == MAX_PAYLOAD
    p.post(body)
    assert p.collect(1) == [body]
    assert_serving(bystander)


def test_binary_content_type_post_closes_the_session(http, bystander):
    p, sid = polling_sio(http)
    r = p.post_response(b"4hello", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400
    assert r.text == ""
    assert_session_gone(p)
    assert wait_reason(http, sid) == "transport error"
    assert_serving(bystander)


@pytest.mark.parametrize("body", ["abc", "", '42["echo",1]\x1exyz'], ids=["abc", "empty", "second-bad"])
def test_unparseable_post_closes_the_session(http, bystander, body):
    p, sid = polling_sio(http)
    r = p.post_response(body)
    # The reference answers `ok` and then closes the session.
    assert (r.status_code, r.text) == (200, "ok")
    assert_session_gone(p)
    assert wait_reason(http, sid) == "parse error"
    assert_serving(bystander)


def test_other_method_on_a_session(http):
    p, _ = polling_sio(http)
    r = http.request("PUT", data="42", **p.query())
    # The reference answers a bare 500 and leaves the session open.
    assert r.status_code == 500
    assert r.text == ""
    p.post('42["echo","still open"]')
    assert p.collect(1) == ['42["echo","still open"]']


def test_aborted_get_closes_the_session(http, server, bystander):
    p, sid = polling_sio(http)
    raw_http_get_then_abort(server.port, f"/socket.io/?EIO=4&transport=polling&sid={p.sid}")
    time.sleep(0.1)
    assert_session_gone(p)
    assert wait_reason(http, sid) == "transport error"
    assert_serving(bystander)


def test_close_packet_over_polling(http):
    p, sid = polling_sio(http)
    pending = PendingRequest(p.get_response)
    time.sleep(0.2)
    p.post("1")
    # The pending GET is ended with a noop.
    r = pending.result()
    assert (r.status_code, r.text) == (200, "6")
    assert_session_gone(p)
    assert wait_reason(http, sid) == "transport close"


def test_server_close_without_pending_get(http):
    p = PollingSession(http)
    p.post("4abc")  # invalid Socket.IO packet: the server closes the session
    time.sleep(0.2)
    # With no GET pending, the next GET carries a noop and the close packet.
    r = p.get_response()
    assert (r.status_code, r.text) == (200, "6\x1e1")
    assert_session_gone(p)


# ---------------------------------------------------------------------------
# heartbeat


def test_heartbeat_over_websocket(sio_ws):
    opened = time.monotonic()
    ws, _ = sio_ws()  # joined, so that connectTimeout does not close it
    for _ in range(2):
        assert ws.recv(PING_INTERVAL + 1.0, skip_pings=False) == "2"
        elapsed = time.monotonic() - opened
        assert PING_INTERVAL * 0.8 <= elapsed <= PING_INTERVAL + 0.6, elapsed
        ws.send("3")
        opened = time.monotonic()
    ws.send('42["echo","alive"]')
    assert ws.recv_text() == '42["echo","alive"]'


def test_ping_timeout_over_websocket(sio_ws, http, bystander):
    started = time.monotonic()
    ws, sid = sio_ws()
    closed = ws.expect_close(timeout=4.0, skip_pings=False)
    elapsed = time.monotonic() - started
    assert closed.received == ["2"]
    assert PING_INTERVAL + PING_TIMEOUT - 0.2 <= elapsed <= PING_INTERVAL + PING_TIMEOUT + 1.0
    assert wait_reason(http, sid) == "ping timeout"
    assert_serving(bystander)


def test_heartbeat_and_timeout_over_polling(http):
    p, sid = polling_sio(http)
    started = time.monotonic()
    assert p.get() == ["2"]
    assert PING_INTERVAL * 0.7 <= time.monotonic() - started <= PING_INTERVAL + 0.6
    p.post("3")
    started = time.monotonic()
    assert p.get() == ["2"]
    assert PING_INTERVAL * 0.8 <= time.monotonic() - started <= PING_INTERVAL + 0.6
    # No pong this time.
    time.sleep(PING_TIMEOUT + 0.3)
    assert_session_gone(p)
    assert wait_reason(http, sid) == "ping timeout"


def test_client_ping_over_websocket_closes_the_session(sio_ws, http, bystander):
    ws, sid = sio_ws()
    ws.send("2")
    # Engine.IO v4 heartbeats go server -> client only.
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) == "transport error"
    assert_serving(bystander)


def test_client_ping_over_polling_closes_the_session(http, bystander):
    p, sid = polling_sio(http)
    p.post("2")
    assert_session_gone(p)
    assert wait_reason(http, sid) == "transport error"
    assert_serving(bystander)


def test_ignored_engine_packets_over_websocket(sio_ws):
    ws, _ = sio_ws()
    # noop, an unsolicited pong and a stray upgrade packet change nothing.
    for packet in ["6", "3", "5"]:
        ws.send(packet)
    ws.send('42["echo","still open"]')
    assert ws.recv() == '42["echo","still open"]'


def test_close_packet_over_websocket_ends_the_session(sio_ws, http):
    ws, sid = sio_ws()
    # `1` means the client closes the transport (the official Engine.IO suite
    # checks that the websocket then closes); the npm server instead waits for
    # the heartbeat to notice, so the reason it records differs.
    ws.send("1")
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) in ("transport close", "ping timeout")


def test_probe_on_an_established_websocket_closes_it(sio_ws, http):
    ws, sid = sio_ws()
    ws.send("2probe")
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) == "transport error"


def test_websocket_message_over_max_payload(sio_ws, http, bystander):
    ws, sid = sio_ws()
    filler = MAX_PAYLOAD - len('42["echo",""]')
    exact = '42["echo","' + "y" * filler + '"]'
    ws.send(exact)
    assert ws.recv() == exact
    ws.send('42["echo","' + "y" * (filler + 1) + '"]')
    closed = ws.expect_close(timeout=2.0)
    assert closed.received == []
    assert closed.code == 1009  # "message too big"
    assert wait_reason(http, sid) == "transport error"
    assert_serving(bystander)


# ---------------------------------------------------------------------------
# upgrade


def test_upgrade_from_polling_to_websocket(http, sessions, server):
    p, sid = polling_sio(http)
    pending = PendingRequest(p.get_response)
    time.sleep(0.1)

    ws = WsSession(http.ws_url(EIO="4", transport="websocket", sid=p.sid), read_open=False)
    sessions.append(ws)
    ws.send("2probe")
    assert ws.recv(skip_pings=False) == "3probe"
    # The pending long-poll is released with a noop.
    r = pending.result()
    assert (r.status_code, r.text) == (200, "6")

    # Until `5`, polling is still the transport: what the server sends now is
    # buffered, then flushed over the websocket after the upgrade.
    p.post('42["echo","during upgrade"]')
    time.sleep(0.1)
    ws.send("5")
    assert ws.recv() == '42["echo","during upgrade"]'
    ws.send('42["echo","over websocket"]')
    assert ws.recv() == '42["echo","over websocket"]'
    (rooms,) = call(ws, "rooms")
    assert rooms == [sid]  # same Socket.IO socket

    # Polling requests with an upgraded sid are refused (a transport mismatch).
    assert_error(p.get_response(), 400, 3, "Bad request")
    assert_error(p.post_response('42["echo",1]'), 400, 3, "Bad request")

    # A second websocket for the same session is closed at once.
    second = WsSession(http.ws_url(EIO="4", transport="websocket", sid=p.sid), read_open=False)
    sessions.append(second)
    assert second.expect_close(timeout=2.0).received == []

    ws.send('42["echo","still upgraded"]')
    assert ws.recv() == '42["echo","still upgraded"]'


def test_upgrade_keeps_heartbeat(http, sessions):
    p, _ = polling_sio(http)
    ws = WsSession(http.ws_url(EIO="4", transport="websocket", sid=p.sid), read_open=False)
    sessions.append(ws)
    ws.send("2probe")
    assert ws.recv(skip_pings=False) == "3probe"
    ws.send("5")
    # Pings now come over the websocket.
    assert ws.recv(PING_INTERVAL + 1.0, skip_pings=False) == "2"
    ws.send("3")
    ws.send('42["echo","alive"]')
    assert ws.recv_text() == '42["echo","alive"]'


# ---------------------------------------------------------------------------
# Socket.IO: connecting


def test_connect_main_namespace(ws_open):
    ws = ws_open()
    ws.send("40")
    reply = ws.recv_text()
    assert reply.startswith("40{")
    handshake = json.loads(reply[2:])
    assert set(handshake) == {"sid"}
    sid = handshake["sid"]
    assert SID_RE.match(sid)
    assert sid != ws.sid  # namespace socket id, not the Engine.IO session id
    assert ws.recv_text() == '42["hello",{"sid":"%s","nsp":"/","auth":{}}]' % sid


@pytest.mark.parametrize("packet", ["40/admin,", "40/admin"], ids=["comma", "no-comma"])
def test_connect_custom_namespace(ws_open, packet):
    ws = ws_open()
    ws.send(packet)  # the reference also accepts a namespace without the comma
    reply = ws.recv_text()
    assert reply.startswith("40/admin,{")
    sid = json.loads(reply[len("40/admin,"):])["sid"]
    assert SID_RE.match(sid)
    assert ws.recv_text() == '42/admin,["hello",{"sid":"%s","nsp":"/admin","auth":{}}]' % sid


def test_connect_dynamic_namespace(ws_open):
    ws = ws_open()
    ws.send("40/dyn-Abc_9,")
    sid = parse_sio(ws.recv_text()).data["sid"]
    assert ws.recv_text() == '42/dyn-Abc_9,["hello",{"sid":"%s","nsp":"/dyn-Abc_9","auth":{}}]' % sid


@pytest.mark.parametrize("nsp,auth", [
    ("/", {"token": "123"}),
    ("/admin", {"token": "abc", "n": [1, {"x": None}]}),
])
def test_connect_with_auth(ws_open, nsp, auth):
    ws = ws_open()
    prefix = "" if nsp == "/" else nsp + ","
    ws.send("40" + prefix + compact(auth))
    sid = parse_sio(ws.recv_text()).data["sid"]
    assert ws.recv_text() == "42%s[\"hello\",%s]" % (
        prefix, compact({"sid": sid, "nsp": nsp, "auth": auth}))


@pytest.mark.parametrize("nsp", ["/random", "/dyn-", "/dyn-a.b", "/admin/x"])
def test_connect_invalid_namespace(ws_open, nsp):
    ws = ws_open()
    ws.send("40" + nsp + ",")
    assert ws.recv_text() == '44%s,{"message":"Invalid namespace"}' % nsp
    # The connection stays usable.
    ws.send("40")
    assert parse_sio(ws.recv_text()).type == 0


def test_connect_refused(ws_open):
    ws = ws_open()
    ws.send('40{"refuse":"x"}')
    assert ws.recv_text() == '44{"message":"Not authorized","data":{"reason":"x"}}'
    ws.send('40/admin,{"refuse":[1,{"a":null}]}')
    assert ws.recv_text() == '44/admin,{"message":"Not authorized","data":{"reason":[1,{"a":null}]}}'
    # A refused CONNECT does not end the connection: a later one is accepted.
    ws.send('40{"token":1}')
    assert parse_sio(ws.recv_text()).type == 0


def test_connect_over_polling(http):
    p = PollingSession(http)
    p.post('40/admin,{"k":"v"}')
    connect, hello = p.collect(2)
    sid = json.loads(connect[len("40/admin,"):])["sid"]
    assert hello == '42/admin,["hello",{"sid":"%s","nsp":"/admin","auth":{"k":"v"}}]' % sid


@pytest.mark.parametrize("before", ["", "40/random,", '40{"refuse":true}'],
                         ids=["nothing", "invalid-namespace", "refused"])
def test_no_connect_within_connect_timeout(ws_open, before, bystander):
    started = time.monotonic()
    ws = ws_open()
    if before:
        ws.send(before)
        assert ws.recv_text().startswith("44")
    closed = ws.expect_close(timeout=3.0)
    elapsed = time.monotonic() - started
    assert CONNECT_TIMEOUT - 0.2 <= elapsed <= CONNECT_TIMEOUT + 0.7, elapsed
    assert closed.received == []
    assert_serving(bystander)


def test_no_connect_within_connect_timeout_over_polling(http):
    p = PollingSession(http)
    time.sleep(CONNECT_TIMEOUT + 0.2)
    assert_polling_session_closes(p)


def test_first_packet_not_connect_over_polling(http):
    p = PollingSession(http)
    p.post('42["echo",1]')
    time.sleep(0.1)
    r = p.get_response()
    assert (r.status_code, r.text) == (200, "6\x1e1")


# ---------------------------------------------------------------------------
# Socket.IO: packets that close the connection


# Each is sent by a socket connected to "/" (and nothing else).
INVALID_PACKETS = {
    "unknown-type": "4abc",
    "type-7": "47[]",
    "event-object": "42{}",
    "event-string": '42"echo"',
    "event-empty-array": "42[]",
    "event-name-object": '42[{"a":1}]',
    "event-name-null": "42[null]",
    "event-bad-json": '42["echo",',
    "event-trailing-garbage": '42["echo"]]',
    "reserved-connect": '42["connect"]',
    "reserved-connect_error": '42["connect_error"]',
    "reserved-disconnect": '42["disconnect"]',
    "reserved-disconnecting": '42["disconnecting"]',
    "reserved-newListener": '42["newListener"]',
    "reserved-removeListener": '42["removeListener"]',
    "invalid-ack-id": '42abc["echo",1]',
    "ack-not-array": "431{}",
    "disconnect-with-payload": '41{"a":1}',
    "connect-not-object": '40"str"',
    "connect-array": "40[1]",
    "connect-error-from-client": '44{"message":"x"}',
    "second-connect": "40",
    "second-connect-with-auth": '40{"a":1}',
    "too-many-attachments": '4511-["echo",%s]' % (PH % 0),
    "zero-attachments": '450-["echo"]',
    "attachments-without-dash": '451["echo",%s]' % (PH % 0),
    "attachments-not-a-number": '45x-["echo"]',
    "event-to-unjoined-namespace": '42/admin,["echo",1]',
    "disconnect-unjoined-namespace": "41/admin,",
    "separator-in-websocket-frame": '42["echo",1]\x1e42["echo",2]',
}


@pytest.mark.parametrize("packet", list(INVALID_PACKETS.values()), ids=list(INVALID_PACKETS))
def test_invalid_packet_closes_the_connection(sio_ws, http, bystander, packet):
    ws, sid = sio_ws()
    ws.send(packet)
    closed = ws.expect_close(timeout=2.0)
    assert closed.received == []
    assert wait_reason(http, sid) == "forced close"
    assert_serving(bystander)


@pytest.mark.parametrize("packet", ["abc", "", "9", "x4"], ids=["abc", "empty", "type-9", "x4"])
def test_invalid_engine_packet_closes_the_connection(sio_ws, http, bystander, packet):
    ws, sid = sio_ws()
    ws.send(packet)
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) == "parse error"
    assert_serving(bystander)


def test_binary_frame_without_binary_packet(sio_ws, http, bystander):
    ws, sid = sio_ws()
    ws.send_binary(b"\x01\x02")
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) == "forced close"
    assert_serving(bystander)


def test_text_frame_while_attachments_are_pending(sio_ws, http, bystander):
    ws, sid = sio_ws()
    ws.send('451-["echo",%s]' % (PH % 0))
    ws.send('42["echo",1]')
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) == "forced close"
    assert_serving(bystander)


def test_placeholder_out_of_range(sio_ws, http, bystander):
    ws, sid = sio_ws()
    ws.send('451-["echo",%s]' % (PH % 5))
    ws.send_binary(b"\x01")
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) == "forced close"
    assert_serving(bystander)


@pytest.mark.parametrize("packet", ['42["echo",1]', "41", "431[]", '42/admin,["echo",1]'],
                         ids=["event", "disconnect", "ack", "namespaced-event"])
def test_first_packet_not_connect(ws_open, bystander, packet):
    ws = ws_open()
    ws.send(packet)
    assert ws.expect_close(timeout=2.0).received == []
    assert_serving(bystander)


def test_second_connect_to_a_custom_namespace(sio_ws, http):
    ws, sid = sio_ws()
    ws.send("40/admin,")
    admin_sid = parse_sio(ws.recv_text()).data["sid"]
    ws.recv_text()  # hello
    ws.send("40/admin,")
    assert ws.expect_close(timeout=2.0).received == []
    assert wait_reason(http, sid) == "forced close"
    assert wait_reason(http, admin_sid, "/admin") == "forced close"


def test_numeric_event_name_is_accepted(sio_ws):
    ws, _ = sio_ws()
    # A number is a valid event name; the fixture has no handler for it.
    ws.send("42[1,2]")
    ws.send('42["echo","after"]')
    assert ws.recv() == '42["echo","after"]'


def test_unknown_ack_id_is_ignored(sio_ws):
    ws, _ = sio_ws()
    ws.send('43999["nobody asked"]')
    ws.send('42["echo","after"]')
    assert ws.recv() == '42["echo","after"]'


# ---------------------------------------------------------------------------
# Socket.IO: events, acks, binary


def test_event_exact_strings(sio_ws):
    ws, _ = sio_ws()
    for packet in ['42["echo",1,"2",{"3":[true,false,null]}]',
                   '42["echo"]',
                   '42["echo",{"b":1,"a":2}]',  # key order is kept
                   '42["echo","é✓🎉"]',
                   '42["echo",-1.5,0,1e-7]']:
        ws.send(packet)
        expected = json.loads(packet[2:])
        got = ws.recv_text()
        assert got.startswith("42[")
        assert json.loads(got[2:]) == expected
    ws.send('42["echo",{"b":1,"a":2}]')
    assert ws.recv_text() == '42["echo",{"b":1,"a":2}]'
    ws.send('42["echo","\\u00e9\\ud83c\\udf89"]')
    assert ws.recv_text() == '42["echo","é🎉"]'


def test_event_in_custom_namespace(sio_ws):
    ws, _ = sio_ws("/admin")
    ws.send('42/admin,["echo","x"]')
    assert ws.recv_text() == '42/admin,["echo","x"]'


@pytest.mark.parametrize("sent,expected", [
    ('4212["ack",1]', "4312[1]"),
    ('420["ack"]', "430[]"),
    ('42999["ack","a",{"b":[1,2]},null]', '43999["a",{"b":[1,2]},null]'),
    ('424294967296["ack","big"]', '434294967296["big"]'),
])
def test_ack_ids(sio_ws, sent, expected):
    ws, _ = sio_ws()
    ws.send(sent)
    assert ws.recv_text() == expected


def test_ack_in_custom_namespace(ws_open):
    ws = ws_open()
    ws.send("40/admin,")
    ws.recv_text()
    ws.recv_text()
    ws.send('42/admin,7["ack",true,null]')
    assert ws.recv_text() == "43/admin,7[true,null]"


def test_server_to_client_ack(sio_ws):
    ws, _ = sio_ws()
    ws.send('421["ask",3000,"q",1]')
    question = parse_sio(ws.recv_text())
    assert (question.type, question.nsp, question.data) == (2, "/", ["question", "q", 1])
    assert isinstance(question.id, int)
    ws.send('43%d["r",{"n":2}]' % question.id)
    assert ws.recv_text() == '431[{"reply":["r",{"n":2}]}]'

    # An empty reply.
    ws.send('422["ask",3000]')
    question = parse_sio(ws.recv_text())
    assert question.data == ["question"]
    ws.send("43%d[]" % question.id)
    assert ws.recv_text() == '432[{"reply":[]}]'


def test_server_to_client_binary_ack(sio_ws):
    ws, _ = sio_ws()
    ws.send('421["ask",3000]')
    question = parse_sio(ws.recv_text())
    ws.send('461-%d[%s]' % (question.id, PH % 0))
    ws.send_binary(b"\x07\x08")
    assert ws.recv_text() == '461-1[{"reply":[%s]}]' % (PH % 0)
    assert ws.recv() == b"\x07\x08"


def test_server_to_client_ack_in_custom_namespace(sio_ws):
    ws, _ = sio_ws("/admin")
    ws.send('42/admin,5["ask",3000,"hi"]')
    question = parse_sio(ws.recv_text())
    assert (question.nsp, question.data) == ("/admin", ["question", "hi"])
    ws.send('43/admin,%d["yo"]' % question.id)
    assert ws.recv_text() == '43/admin,5[{"reply":["yo"]}]'


def test_server_to_client_ack_timeout(sio_ws):
    ws, _ = sio_ws()
    started = time.monotonic()
    ws.send('421["ask",150,"slow"]')
    question = parse_sio(ws.recv_text())
    assert question.data == ["question", "slow"]
    assert ws.recv_text(timeout=2.0) == '431[{"error":"timeout"}]'
    assert 0.1 <= time.monotonic() - started <= 1.0
    # The late answer is ignored; the connection goes on.
    ws.send("43%d[\"late\"]" % question.id)
    ws.send('42["echo","after"]')
    assert ws.recv_text() == '42["echo","after"]'


def test_binary_event_echo(sio_ws):
    ws, _ = sio_ws()
    ws.send('451-["echo",%s]' % (PH % 0))
    ws.send_binary(b"\x01\x02\x03")
    assert ws.recv_text() == '451-["echo",%s]' % (PH % 0)
    assert ws.recv() == b"\x01\x02\x03"


def test_binary_event_nested_and_several(sio_ws):
    ws, _ = sio_ws()
    ws.send('452-["echo",{"a":[%s,"s"]},%s,3]' % (PH % 1, PH % 0))
    ws.send_binary(b"zero")
    ws.send_binary(b"")
    text = ws.recv_text()
    # The attachments may be renumbered, but each must land where it was.
    pkt = parse_sio(text)
    assert pkt.type == 5 and pkt.attachments == 2
    frames = [ws.recv(), ws.recv()]
    first = pkt.data[1]["a"][0]
    second = pkt.data[2]
    assert frames[first["num"]] == b""
    assert frames[second["num"]] == b"zero"
    assert pkt.data[0] == "echo" and pkt.data[3] == 3 and pkt.data[1]["a"][1] == "s"


def test_binary_event_with_ten_attachments(sio_ws):
    ws, _ = sio_ws()
    placeholders = ",".join(PH % i for i in range(10))
    ws.send('4510-["echo",%s]' % placeholders)
    for i in range(10):
        ws.send_binary(bytes([i]) * (i + 1))
    assert ws.recv_text() == '4510-["echo",%s]' % placeholders
    assert [ws.recv() for _ in range(10)] == [bytes([i]) * (i + 1) for i in range(10)]


def test_binary_ack(sio_ws):
    ws, _ = sio_ws()
    ws.send('451-12["ack",%s]' % (PH % 0))
    ws.send_binary(b"\x01\x02\x03")
    assert ws.recv_text() == '461-12[%s]' % (PH % 0)
    assert ws.recv() == b"\x01\x02\x03"


def test_binary_event_in_custom_namespace(sio_ws):
    ws, _ = sio_ws("/admin")
    ws.send('451-/admin,["echo",%s]' % (PH % 0))
    ws.send_binary(b"\xfe")
    assert ws.recv_text() == '451-/admin,["echo",%s]' % (PH % 0)
    assert ws.recv() == b"\xfe"
    ws.send('451-/admin,4["ack",%s]' % (PH % 0))
    ws.send_binary(b"\xfd")
    assert ws.recv_text() == '461-/admin,4[%s]' % (PH % 0)
    assert ws.recv() == b"\xfd"


def test_server_binary_event(sio_ws):
    ws, _ = sio_ws()
    ws.send('42["binary"]')
    assert ws.recv_text() == ('452-["binary",%s,{"nested":{"deep":[%s,"x"]}}]'
                              % (PH % 0, PH % 1))
    assert ws.recv() == b"\x01\x02\x03"
    assert ws.recv() == b"\x04\x05"


def test_placeholder_in_a_plain_event_stays_json(sio_ws):
    ws, _ = sio_ws()
    # Not a binary packet: the object is just data.
    ws.send('42["echo",%s]' % (PH % 0))
    assert ws.recv_text() == '42["echo",%s]' % (PH % 0)


# ---------------------------------------------------------------------------
# Socket.IO: disconnecting


def test_client_disconnect_packet(sio_ws, http):
    ws, sid = sio_ws()
    ws.send("41")
    assert wait_reason(http, sid) == "client namespace disconnect"
    # The Engine.IO session stays open: the heartbeat goes on ...
    assert ws.recv(PING_INTERVAL + 1.0, skip_pings=False) == "2"
    ws.send("3")
    # ... and the namespace can be joined again, as a new socket.
    ws.send("40")
    new_sid = parse_sio(ws.recv_text()).data["sid"]
    assert new_sid != sid


def test_client_disconnect_from_one_namespace(sio_ws, http):
    ws, sid = sio_ws()
    ws.send("40/admin,")
    admin_sid = parse_sio(ws.recv_text()).data["sid"]
    ws.recv_text()  # hello
    ws.send("41/admin,")
    assert wait_reason(http, admin_sid, "/admin") == "client namespace disconnect"
    ws.send('42["echo","main"]')
    assert ws.recv_text() == '42["echo","main"]'


def test_server_namespace_disconnect(sio_ws, http):
    ws, sid = sio_ws()
    ws.send('42["disconnect-me",false]')
    assert ws.recv_text() == "41"
    assert wait_reason(http, sid) == "server namespace disconnect"
    # The connection stays open and can join again.
    ws.send("40")
    assert parse_sio(ws.recv_text()).type == 0


def test_server_disconnect_with_close(sio_ws, http):
    ws, sid = sio_ws()
    ws.send("40/admin,")
    admin_sid = parse_sio(ws.recv_text()).data["sid"]
    ws.recv_text()  # hello
    ws.send('42/admin,["disconnect-me",true]')
    closed = ws.expect_close(timeout=2.0)
    # Every namespace gets its DISCONNECT before the connection closes.
    assert sorted(closed.received) == sorted(["41", "41/admin,"])
    assert wait_reason(http, sid) == "server namespace disconnect"
    assert wait_reason(http, admin_sid, "/admin") == "server namespace disconnect"


def test_server_disconnect_with_close_over_polling(http):
    p, sid = polling_sio(http)
    p.post('42["disconnect-me",true]')
    assert p.collect(1) == ["41"]
    r = p.get_response()
    assert (r.status_code, r.text) == (200, "6\x1e1")
    assert_session_gone(p)
    assert wait_reason(http, sid) == "server namespace disconnect"


def test_transport_close_reason(sio_ws, http):
    ws, sid = sio_ws()
    ws.close()
    assert wait_reason(http, sid) == "transport close"
