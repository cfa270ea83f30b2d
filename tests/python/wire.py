"""Raw Engine.IO v4 / Socket.IO v5 peers for the iobus protocol tests.

These helpers speak the wire protocol directly (plain HTTP long-polling and a
plain WebSocket), so the tests can send what real clients never send and check
the server's exact answers. They hold no protocol logic beyond framing: every
packet is written and read as the literal string the server sees.

Every blocking call takes a timeout; nothing here can wait forever.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union
from urllib.parse import urlencode

import requests
import websocket

# Default time allowed for any single answer from the server.
WAIT = 5.0

# Engine.IO packet separator in a long-polling payload.
RECORD_SEPARATOR = "\x1e"

Frame = Union[str, bytes]


class Closed(Exception):
    """The server closed the WebSocket (close frame or dropped TCP)."""

    def __init__(self, code: Optional[int] = None, received: Optional[list] = None):
        super().__init__(f"websocket closed (code={code})")
        self.code = code
        self.received = received or []


# --------------------------------------------------------------------------
# Engine.IO long-polling payloads


def decode_payload(body: str) -> list[Frame]:
    """Split a long-polling payload into packets; `b<base64>` becomes bytes."""
    packets: list[Frame] = []
    for part in body.split(RECORD_SEPARATOR):
        if part.startswith("b"):
            packets.append(base64.b64decode(part[1:]))
        else:
            packets.append(part)
    return packets


def encode_payload(packets: list[Frame]) -> str:
    """Join packets into a long-polling payload; bytes become `b<base64>`."""
    parts = []
    for p in packets:
        if isinstance(p, (bytes, bytearray)):
            parts.append("b" + base64.b64encode(bytes(p)).decode("ascii"))
        else:
            parts.append(p)
    return RECORD_SEPARATOR.join(parts)


def parse_open(packet: str) -> dict:
    assert packet.startswith("0"), f"expected an open packet, got {packet!r}"
    return json.loads(packet[1:])


# --------------------------------------------------------------------------
# Socket.IO packets (inside Engine.IO `4` messages)


@dataclass
class SioPacket:
    type: int
    attachments: Optional[int]
    nsp: str
    id: Optional[int]
    data: Any


def parse_sio(message: str) -> SioPacket:
    """Parse an Engine.IO message packet (`4...`) holding a Socket.IO packet.

    Strict on purpose: it is used on what the server sends, which must be
    well-formed.
    """
    assert message.startswith("4"), f"not an Engine.IO message: {message!r}"
    s = message[1:]
    ptype = int(s[0])
    i = 1
    attachments = None
    if ptype in (5, 6):
        dash = s.index("-", i)
        attachments = int(s[i:dash])
        i = dash + 1
    nsp = "/"
    if i < len(s) and s[i] == "/":
        comma = s.find(",", i)
        end = comma if comma != -1 else len(s)
        nsp = s[i:end]
        i = end + 1 if comma != -1 else end
    j = i
    while j < len(s) and s[j].isdigit():
        j += 1
    ack_id = int(s[i:j]) if j > i else None
    data = json.loads(s[j:]) if j < len(s) else None
    return SioPacket(ptype, attachments, nsp, ack_id, data)


def compact(value: Any) -> str:
    """JSON the way Socket.IO servers write it: no spaces, UTF-8 kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def nsp_prefix(nsp: str) -> str:
    return "" if nsp == "/" else nsp + ","


# --------------------------------------------------------------------------
# Plain HTTP


class Http:
    """URLs and plain requests against the fixture's `/socket.io/` endpoint."""

    def __init__(self, port: int):
        self.port = port
        self.base = f"http://127.0.0.1:{port}/socket.io/"
        self.ws_base = f"ws://127.0.0.1:{port}/socket.io/"

    def url(self, **query: str) -> str:
        return self.base + ("?" + urlencode(query) if query else "")

    def ws_url(self, **query: str) -> str:
        return self.ws_base + ("?" + urlencode(query) if query else "")

    def request(self, method: str, data: Union[str, bytes, None] = None,
                headers: Optional[dict] = None, timeout: float = WAIT,
                **query: str) -> requests.Response:
        if isinstance(data, str):
            data = data.encode("utf-8")
        return requests.request(method, self.url(**query), data=data,
                                headers=headers, timeout=timeout)


class PollingSession:
    """One Engine.IO session over HTTP long-polling."""

    def __init__(self, http: Http, timeout: float = WAIT):
        self.http = http
        r = http.request("GET", EIO="4", transport="polling", timeout=timeout)
        assert r.status_code == 200, (r.status_code, r.text)
        self.handshake_response = r
        self.open = parse_open(r.text)
        self.sid: str = self.open["sid"]
        self.backlog: list[Frame] = []  # received by collect(), not yet returned

    def query(self, **extra: str) -> dict:
        return {"EIO": "4", "transport": "polling", "sid": self.sid, **extra}

    def get_response(self, timeout: float = WAIT) -> requests.Response:
        return self.http.request("GET", timeout=timeout, **self.query())

    def get(self, timeout: float = WAIT) -> list[Frame]:
        """One long-poll: the packets of a 200 answer (asserted)."""
        r = self.get_response(timeout)
        assert r.status_code == 200, (r.status_code, r.text)
        return decode_payload(r.text)

    def post_response(self, body: Union[str, bytes], headers: Optional[dict] = None,
                      timeout: float = WAIT) -> requests.Response:
        return self.http.request("POST", data=body, headers=headers,
                                 timeout=timeout, **self.query())

    def post(self, *packets: Frame) -> None:
        """Send packets in one POST; asserts the `200 ok` answer."""
        r = self.post_response(encode_payload(list(packets)))
        assert (r.status_code, r.text) == (200, "ok"), (r.status_code, r.text)

    def collect(self, count: int, timeout: float = WAIT) -> list[Frame]:
        """Long-poll until `count` packets arrived; pings are answered and
        left out, as are noops. Packets beyond `count` are kept for the next
        call."""
        deadline = time.monotonic() + timeout
        while len(self.backlog) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {count} packets, got {self.backlog!r}"
            for p in self.get(timeout=left):
                if p == "2":
                    self.post("3")
                elif p != "6":
                    self.backlog.append(p)
        out, self.backlog = self.backlog[:count], self.backlog[count:]
        return out

    def sio_connect(self, nsp: str = "/", auth: Optional[dict] = None) -> SioPacket:
        """CONNECT to a namespace; returns the server's CONNECT reply."""
        self.post("40" + nsp_prefix(nsp) + (compact(auth) if auth is not None else ""))
        (reply,) = self.collect(1)
        return parse_sio(reply)


class PendingRequest:
    """An HTTP request running in a background thread."""

    def __init__(self, fn: Callable[[], requests.Response]):
        self.response: Optional[requests.Response] = None
        self.error: Optional[BaseException] = None

        def run() -> None:
            try:
                self.response = fn()
            except BaseException as e:  # reported by result()
                self.error = e

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self, timeout: float = WAIT) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "request still pending"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def raw_http_get_then_abort(port: int, path_and_query: str, hold: float = 0.2) -> None:
    """Send a GET over a raw TCP connection and drop it before the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        s.sendall(f"GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        time.sleep(hold)
    finally:
        s.close()


# --------------------------------------------------------------------------
# WebSocket


class WsSession:
    """One Engine.IO session over a plain WebSocket.

    `recv` answers server pings (`2` → `3`) and hides them unless asked not to.
    """

    def __init__(self, url: str, read_open: bool = True, timeout: float = WAIT):
        self.ws = websocket.create_connection(url, timeout=timeout)
        self.closed = False
        self.open: Optional[dict] = None
        self.sid: Optional[str] = None
        if read_open:
            self.open = parse_open(self.recv(timeout, skip_pings=False))
            self.sid = self.open["sid"]

    def send(self, text: str) -> None:
        self.ws.send(text)

    def send_binary(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def send_raw(self, data: bytes) -> bool:
        """Write bytes straight onto the TCP connection (frames built with
        `ws_frame`); false when the server has already dropped it."""
        try:
            self.ws.sock.sendall(data)
            return True
        except OSError:
            return False

    def _recv_frame(self, timeout: float) -> Frame:
        if self.closed:
            raise Closed()
        self.ws.settimeout(max(timeout, 0.001))
        try:
            opcode, data = self.ws.recv_data(control_frame=False)
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(f"no frame within {timeout:.2f}s") from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            self.closed = True
            raise Closed() from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.closed = True
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            raise Closed(code)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return data.decode("utf-8")
        return bytes(data)

    def recv(self, timeout: float = WAIT, skip_pings: bool = True) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            frame = self._recv_frame(deadline - time.monotonic())
            if skip_pings and frame == "2":
                self.send("3")
                continue
            return frame

    def recv_text(self, timeout: float = WAIT) -> str:
        frame = self.recv(timeout)
        assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
        return frame

    def recv_until(self, predicate: Callable[[Frame], bool], timeout: float = WAIT) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(deadline - time.monotonic())
            if predicate(frame):
                return frame

    def expect_silence(self, duration: float = 0.3) -> None:
        """Nothing but pings arrives for `duration` seconds."""
        try:
            frame = self.recv(duration)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame!r}")

    def expect_close(self, timeout: float = 3.0, skip_pings: bool = True) -> Closed:
        """Read until the server closes; fails after `timeout` seconds.

        Pings are not answered here (so that a close is not delayed by them),
        and are left out of `Closed.received` unless `skip_pings` is false.
        """
        deadline = time.monotonic() + timeout
        received: list[Frame] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"connection still open after {timeout}s; received {received!r}")
            try:
                frame = self._recv_frame(left)
            except TimeoutError:
                continue
            except Closed as c:
                c.received = received
                return c
            if skip_pings and frame == "2":
                continue
            received.append(frame)

    def sio_connect(self, nsp: str = "/", auth: Any = None) -> SioPacket:
        """CONNECT to a namespace; returns the server's CONNECT reply."""
        self.send("40" + nsp_prefix(nsp) + (compact(auth) if auth is not None else ""))
        return parse_sio(self.recv_text())

    def drain_raw(self, timeout: float = 3.0) -> tuple[list[tuple[int, bytes]], bool]:
        """Read what the server still sends straight off the socket, until it
        ends the connection or `timeout` passes: its frames as (opcode,
        payload), and whether the connection ended. Made for after a
        `send_raw` flood, where the server's close frame is followed by a
        reset that a websocket library reports instead of the frame."""
        data = b""
        ended = False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.ws.sock.settimeout(left)
            try:
                chunk = self.ws.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                ended = True
                break
            if not chunk:
                ended = True
                break
            data += chunk
        if ended:
            self.closed = True
        return parse_server_frames(data), ended

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.ws.close(timeout=1)
            except Exception:
                pass
        try:
            self.ws.shutdown()
        except Exception:
            pass


# --------------------------------------------------------------------------
# Raw WebSocket frames and raw HTTP, for what no client library will send

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
             masked: bool = True) -> bytes:
    """One client-to-server frame (RFC 6455 §5.2) with any header bits:
    `rsv` holds RSV1..RSV3 as bits 4, 2, 1. The mask key is all zeros, so the
    payload goes out as given."""
    head = bytearray([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if masked:
        head += b"\0\0\0\0"
    return bytes(head) + payload


def parse_server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into (opcode, payload); a frame cut off
    at the end is left out."""
    frames = []
    i = 0
    while i + 2 <= len(data):
        opcode = data[i] & 0x0F
        n = data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        if i + n > len(data):
            break
        frames.append((opcode, data[i:i + n]))
        i += n
    return frames


def close_code(frames: list[tuple[int, bytes]]) -> Optional[int]:
    """The status code of the first close frame, if there is one with a code."""
    for opcode, payload in frames:
        if opcode == OP_CLOSE:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
    return None


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; the last of repeated ones
    body: bytes


def raw_http(port: int, request: bytes, timeout: float = WAIT,
             send_timeout: Optional[float] = None) -> Optional[RawResponse]:
    """Send `request` on a fresh TCP connection and read one HTTP/1.1 answer.

    None when the server closes (or resets) the connection without answering;
    TimeoutError when it answers nothing within `timeout`. The body is read by
    Content-Length, by chunks, or to the end of the connection.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=send_timeout or timeout)
    try:
        try:
            s.sendall(request)
        except OSError:
            pass  # the server may answer, then close, before reading it all
        s.settimeout(timeout)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length")
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        try:
            while (length is None and not (chunked and body.endswith(b"0\r\n\r\n"))
                   or length is not None and len(body) < int(length)):
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        if chunked:
            body = dechunk(body)
        return RawResponse(status, headers, body)
    finally:
        s.close()


def dechunk(body: bytes) -> bytes:
    """The data of a `Transfer-Encoding: chunked` body."""
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def connect_sio_ws(http: Http, nsp: str = "/", auth: Any = None) -> tuple[WsSession, str]:
    """Open a WebSocket session and join `nsp`; returns (session, socket id).

    The `hello` event that follows an accepted CONNECT is read and checked.
    """
    ws = WsSession(http.ws_url(EIO="4", transport="websocket"))
    reply = ws.sio_connect(nsp, auth)
    assert reply.type == 0 and reply.nsp == nsp, reply
    sid = reply.data["sid"]
    hello = parse_sio(ws.recv_text())
    assert hello.data == ["hello", {"sid": sid, "nsp": nsp, "auth": auth or {}}], hello
    return ws, sid


def call(ws: WsSession, event: str, *args: Any, nsp: str = "/", ack_id: int = 1,
         timeout: float = WAIT) -> list:
    """Emit `event` with an ack id and return the ack's arguments.

    Frames that arrive before the ack (other events) are skipped.
    """
    ws.send("42" + nsp_prefix(nsp) + str(ack_id) + compact([event, *args]))
    prefix = "43" + nsp_prefix(nsp) + str(ack_id) + "["
    reply = ws.recv_until(lambda f: isinstance(f, str) and f.startswith(prefix), timeout)
    return json.loads(reply[len(prefix) - 1:])


def server_reasons(http: Http) -> list[dict]:
    """The fixture's list of every disconnect it has seen (`reasons` event)."""
    ws, _ = connect_sio_ws(http)
    try:
        (reasons,) = call(ws, "reasons")
        return reasons
    finally:
        ws.close()


def wait_reason(http: Http, sid: str, nsp: str = "/", timeout: float = 4.0) -> str:
    """Wait until the server has recorded the disconnect of `sid`; its reason."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in server_reasons(http):
            if entry["sid"] == sid and entry["nsp"] == nsp:
                return entry["reason"]
        assert time.monotonic() < deadline, f"no disconnect recorded for {sid} in {nsp}"
        time.sleep(0.05)


def assert_still_serving(ws: WsSession, nsp: str = "/") -> None:
    """A connected bystander still gets its echo back."""
    token = f"alive-{time.monotonic_ns()}"
    expected = "42" + nsp_prefix(nsp) + compact(["echo", token])
    ws.send(expected)
    got = ws.recv_until(lambda f: f == expected or (isinstance(f, str) and token in f))
    assert got == expected
