"""How events reach Python: libiobus hands them over as records in one
buffer (iobus_server_poll_records). Records larger than the buffer, batches
that need several buffers, and records that do not add up (which must never
stop the delivery of the others)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, List, Optional

import pytest
import socketio

import iobus
from iobus import _abi as abi
from iobus import _records
from conftest import wait_for

# ---- through the library ---------------------------------------------------------------


@pytest.mark.parametrize("size", [300_000, 900_000])
def test_an_event_larger_than_the_record_buffer(make_server, make_client, size):
    assert size > _records.RECORDS_CAP
    server = make_server()
    order: List[str] = []

    @server.event
    def small(sid, tag):
        order.append(tag)
        return tag

    @server.event
    def big(sid, tag, blob):
        order.append(tag)
        return tag, blob[::-1]

    server.start()
    client = make_client(server)
    blob = bytes(range(256)) * (size // 256)
    replies: List[Any] = []
    client.emit("small", "before", callback=lambda *a: replies.append(a))
    client.emit("big", ("big", blob), callback=lambda *a: replies.append(a))
    client.emit("small", "after", callback=lambda *a: replies.append(a))
    wait_for(lambda: len(replies) == 3, timeout=10, what="three acks")
    assert order == ["before", "big", "after"]
    assert replies == [("before",), ("big", blob[::-1]), ("after",)]


def test_a_burst_larger_than_the_record_buffer_arrives_in_order(make_server, make_client):
    server = make_server()
    seen: List[int] = []

    def n_handler(sid, i, pad):
        if i == 0:
            time.sleep(0.5)  # the rest queues up meanwhile
        seen.append(i)

    server.on("n", n_handler)
    server.on("done", lambda sid: len(seen))
    server.start()
    client = make_client(server)
    pad = "x" * 4000
    total = 200  # about 800 KB of records queued: several buffers
    for i in range(total):
        client.emit("n", (i, pad))
    assert client.call("done", timeout=10) == total
    assert seen == list(range(total))


def test_a_large_ack_reply_from_the_client(make_server, make_client):
    server = make_server()
    server.start()
    client = make_client(server)
    blob = b"\x07" * 400_000
    client.on("give", lambda: blob)
    assert server.call("give", to=client.get_sid(), timeout=10) == blob


def test_async_server_delivers_large_records():
    async def main() -> None:
        server = iobus.AsyncServer()

        @server.event
        async def big(sid, blob):
            return len(blob)

        await server.start()
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
            assert await client.call("big", b"\x01" * 500_000, timeout=10) == 500_000
        finally:
            await client.disconnect()
            await server.close()

    asyncio.run(main())


# ---- records that do not add up ----------------------------------------------------------


def u32(value: int) -> bytes:
    """A field length or an attachment count."""
    return abi.RECORD_FIELD_LEN.pack(value)


def field(b: bytes) -> bytes:
    return u32(len(b)) + b


def record(kind: int, user: int, body: bytes, status: int = 0, handle: int = 0, size: Optional[int] = None) -> bytes:
    total = abi.RECORD_HEADER.size + len(body) if size is None else size
    return abi.RECORD_HEADER.pack(total, kind, status, user, handle) + body


def event_body(name: str, args: str, sid: str = "sid1", attachments: Optional[List[bytes]] = None) -> bytes:
    attachments = attachments or []
    body = field(b"/") + field(sid.encode()) + field(name.encode()) + field(args.encode())
    return body + u32(len(attachments)) + b"".join(field(a) for a in attachments)


def token_of(server: iobus.Server, event: str) -> int:
    for token, reg in server._registrations.items():
        if reg.kind == "event" and reg.event == event:
            return token
    raise AssertionError(f"no registration for {event}")


@pytest.fixture
def offline_server():
    """A server that is never started: records are fed to it by hand."""
    server = iobus.Server()
    got: List[tuple] = []
    server.on("x", lambda sid, *args: got.append((sid, *args)))
    server.got = got  # type: ignore[attr-defined]
    yield server
    server.close()


def test_well_formed_records_are_delivered(offline_server):
    token = token_of(offline_server, "x")
    data = record(abi.RECORD_EVENT, token, event_body("x", '["a",1]'))
    data += record(abi.RECORD_EVENT, token, event_body("x", '["b",{"_placeholder":true,"num":0}]', "sid2", [b"\x00\x01"]))
    offline_server._deliver(data)
    assert offline_server.got == [("sid1", "a", 1), ("sid2", "b", b"\x00\x01")]


def test_a_record_with_bad_fields_is_skipped_and_the_batch_goes_on(offline_server, caplog):
    token = token_of(offline_server, "x")
    good = event_body("x", '["ok"]')
    # A field length running past the end of its record.
    bad = field(b"/") + u32(1000) + b"sid"
    # Fields that stop short of the record's end.
    short = event_body("x", '["short"]') + b"\x00\x00"
    # More attachments announced than there are.
    missing = event_body("x", '["m"]')[:-4] + u32(3)
    # Arguments that are not JSON.
    not_json = event_body("x", "[nope")
    data = b"".join(
        record(abi.RECORD_EVENT, token, body) for body in (bad, good, short, missing, not_json, good)
    )
    with caplog.at_level(logging.ERROR, logger="iobus"):
        offline_server._deliver(data)
    assert offline_server.got == [("sid1", "ok"), ("sid1", "ok")]
    assert caplog.text.count("reading an event") == 4


def test_a_record_with_an_impossible_size_ends_the_batch(offline_server, caplog):
    token = token_of(offline_server, "x")
    first = record(abi.RECORD_EVENT, token, event_body("x", '["first"]'))
    with caplog.at_level(logging.ERROR, logger="iobus"):
        # Larger than what is left of the batch.
        offline_server._deliver(first + record(abi.RECORD_EVENT, token, event_body("x", "[]"), size=10_000))
        # Smaller than a header.
        offline_server._deliver(first + record(abi.RECORD_EVENT, token, b"", size=3))
        # A header cut short.
        offline_server._deliver(first + b"\x30\x00\x00")
    assert offline_server.got == [("sid1", "first")] * 3
    assert caplog.text.count("malformed record") == 3


def test_unknown_kinds_and_registrations_are_skipped(offline_server, caplog):
    token = token_of(offline_server, "x")
    with caplog.at_level(logging.ERROR, logger="iobus"):
        offline_server._deliver(
            record(9, token, b"\x01\x02")
            + record(abi.RECORD_EVENT, 987654, event_body("x", "[]"))
            + record(abi.RECORD_EVENT, token, event_body("x", "[2]"))
        )
    assert offline_server.got == [("sid1", 2)]
    assert "unknown kind 9" in caplog.text
    assert "reading an event" in caplog.text


def expect(server: iobus.Server, token: int, outcomes: List[tuple], gone: tuple) -> None:
    """Makes ``token`` an operation waiting for its record."""
    server._completions[token] = (lambda *answer: outcomes.append((token, *answer)), gone)


def test_ack_records(offline_server, caplog):
    outcomes: List[tuple] = []
    for token in (41, 42, 43):
        expect(offline_server, token, outcomes, (abi.ACK_DISCONNECTED, None))
    ok = field(b"/") + field(b"s") + field(b'["r",{"_placeholder":true,"num":0}]') + u32(1) + field(b"\x05")
    timeout = field(b"/") + field(b"s") + field(b"") + u32(0)
    broken = field(b"/") + field(b"s") + field(b"[1]") + u32(2)
    with caplog.at_level(logging.ERROR, logger="iobus"):
        offline_server._deliver(
            record(abi.RECORD_ACK, 41, ok)
            + record(abi.RECORD_ACK, 42, timeout, status=abi.ACK_TIMEOUT)
            + record(abi.RECORD_ACK, 43, broken)
            + record(abi.RECORD_ACK, 44, ok)  # nobody waits for it
        )
    assert outcomes == [(41, abi.ACK_OK, ["r", b"\x05"]), (42, abi.ACK_TIMEOUT, None), (43, abi.ACK_DISCONNECTED, None)]
    assert "reading an acknowledgement" in caplog.text


def test_broadcast_ack_records(offline_server, caplog):
    outcomes: List[tuple] = []
    for token in (51, 52, 53):
        expect(offline_server, token, outcomes, (abi.ACK_DISCONNECTED, [], 0))
    # Two replies; the placeholders number the attachments of both.
    replies = b'[["a",{"_placeholder":true,"num":0}],[{"_placeholder":true,"num":1},2]]'
    ok = field(replies) + u32(2) + field(b"\x01") + field(b"\x02")
    timeout = field(b'[["late"]]') + u32(0)
    broken = field(b"[[1]") + u32(0)
    with caplog.at_level(logging.ERROR, logger="iobus"):
        offline_server._deliver(
            record(abi.RECORD_BROADCAST_ACK, 51, ok, handle=3)
            + record(abi.RECORD_BROADCAST_ACK, 52, timeout, status=abi.ACK_TIMEOUT, handle=2)
            + record(abi.RECORD_BROADCAST_ACK, 53, broken, handle=1)
        )
    assert outcomes == [
        (51, abi.ACK_OK, [["a", b"\x01"], [b"\x02", 2]], 3),
        (52, abi.ACK_TIMEOUT, [["late"]], 2),
        (53, abi.ACK_DISCONNECTED, [], 0),
    ]
    assert "acknowledgements of an emit" in caplog.text


def test_query_records(offline_server, caplog):
    outcomes: List[tuple] = []
    for token in (61, 62, 63):
        expect(offline_server, token, outcomes, ([],))
    sockets = b'[{"id":"AAAAAAAAAAAAAAAAAAAA","handshake":{},"rooms":["AAAAAAAAAAAAAAAAAAAA"],"data":null}]'
    with caplog.at_level(logging.ERROR, logger="iobus"):
        offline_server._deliver(
            record(abi.RECORD_SOCKETS, 61, field(sockets))
            + record(abi.RECORD_ROOMS, 62, field(b'["a","b"]'))
            + record(abi.RECORD_ROOMS, 63, field(b'{"not":"a list"}'))
        )
    assert outcomes == [(61, json.loads(sockets)), (62, ["a", "b"]), (63, [])]
    assert "answer to a query" in caplog.text


def test_server_side_emit_records(offline_server):
    got: List[tuple] = []
    offline_server.on_server_side_emit("hello", lambda *args: got.append(("hello", *args)))
    offline_server.on_server_side_emit("*", lambda event, *args: got.append(("*", event, *args)))
    token = next(t for t, r in offline_server._registrations.items() if r.kind == "server-side")

    def body(name: str, args: str) -> bytes:
        return field(b"/") + field(b"") + field(name.encode()) + field(args.encode()) + u32(0)

    offline_server._deliver(
        record(abi.RECORD_SERVER_SIDE_EMIT, token, body("hello", '[1,"x"]'))
        + record(abi.RECORD_SERVER_SIDE_EMIT, token, body("other", "[]"))
    )
    assert got == [("hello", 1, "x"), ("*", "other")]


def test_disconnect_records(offline_server, caplog):
    reasons: List[tuple] = []
    offline_server.on("disconnect", lambda sid, reason: reasons.append((sid, reason)))
    token = next(t for t, r in offline_server._registrations.items() if r.kind == "disconnect" and r.namespace == "/")
    offline_server._sessions["gone"] = {"k": 1}
    good = field(b"/") + field(b"gone") + field(b"transport close") + field(b'["gone"]')
    with caplog.at_level(logging.ERROR, logger="iobus"):
        offline_server._deliver(
            record(abi.RECORD_DISCONNECT, token, good[:-2]) + record(abi.RECORD_DISCONNECT, token, good)
        )
    assert reasons == [("gone", "transport close")]
    assert "gone" not in offline_server._sessions
    assert "malformed disconnect record" in caplog.text


def test_a_keyboard_interrupt_in_a_handler_does_not_stop_the_batch(offline_server):
    token = token_of(offline_server, "x")
    calls: List[str] = []

    def stop(sid):
        calls.append("stop")
        raise KeyboardInterrupt

    offline_server.on("stop", stop)
    stop_token = token_of(offline_server, "stop")
    offline_server._deliver(
        record(abi.RECORD_EVENT, stop_token, event_body("stop", "[]"))
        + record(abi.RECORD_EVENT, token, event_body("x", '["after"]'))
    )
    assert calls == ["stop"]
    assert offline_server.got == [("sid1", "after")]
    # Kept, to be raised once the batch is delivered.
    assert isinstance(offline_server._exception, KeyboardInterrupt)
    offline_server._exception = None


def test_close_delivers_what_is_queued_as_records(caplog):
    # Events still queued when a server is closed reach their handlers as
    # records, in order, and nothing goes wrong while it is freed.
    got: List[int] = []

    async def main() -> None:
        server = iobus.AsyncServer()
        server.on("n", lambda sid, i: got.append(i))
        await server.start()
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
        for i in range(200):
            await client.emit("n", i)
        await asyncio.sleep(0.05)
        await server.close()
        await client.disconnect()

    with caplog.at_level(logging.WARNING, logger="iobus"):
        asyncio.run(main())
    assert got == list(range(len(got)))
    assert len(got) > 0
    assert [r.getMessage() for r in caplog.records if r.name == "iobus"] == []
