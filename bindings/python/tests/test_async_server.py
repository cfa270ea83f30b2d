"""iobus.AsyncServer against python-socketio's AsyncClient: coroutine
handlers and acks, awaited calls both ways, sessions, refusals, binary,
and the loop integration (no thread per event, no polling while idle)."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from typing import Any, Awaitable, Callable, List

import pytest
import socketio

import iobus
from conftest import thread_count


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), 30))


async def connect(server: iobus.AsyncServer, **kwargs: Any) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    kwargs.setdefault("transports", ["websocket"])
    await client.connect(f"http://127.0.0.1:{server.port}", wait_timeout=5, **kwargs)
    return client


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def test_coroutine_and_plain_handlers_with_acks():
    async def main() -> None:
        async with iobus.AsyncServer() as server:
            order: List[str] = []

            @server.event
            async def slow(sid, x):
                order.append(f"start {x}")
                await asyncio.sleep(0.05)
                order.append(f"end {x}")
                return x * 2

            @server.event
            def plain(sid, x):
                return ("plain", x)

            @server.on("both")
            async def both(sid, *args):
                return args

            client = await connect(server)
            try:
                results = await asyncio.gather(*(client.call("slow", i, timeout=5) for i in range(5)))
                assert results == [0, 2, 4, 6, 8]
                # Handlers started in arrival order, and ran concurrently.
                starts = [o for o in order if o.startswith("start")]
                assert starts == [f"start {i}" for i in range(5)]
                assert order.index("start 4") < order.index("end 0")
                assert await client.call("plain", 1, timeout=5) == ("plain", 1)
                assert await client.call("both", (1, b"\x00"), timeout=5) == (1, b"\x00")
            finally:
                await client.disconnect()

    run(main)


def test_async_connect_refusal_and_session():
    async def main() -> None:
        server = iobus.AsyncServer()

        @server.event
        async def connect(sid, environ, auth):
            await asyncio.sleep(0.01)
            if auth.get("token") == "no":
                raise iobus.ConnectionRefusedError("go away", {"code": 7})
            if auth.get("token") == "false":
                return False
            async with server.session(sid) as session:
                session["token"] = auth.get("token")
            await server.enter_room(sid, "authed")
            await server.emit("welcome", to=sid)

        @server.event
        async def token(sid):
            return (await server.get_session(sid))["token"]

        await server.start()
        try:
            for bad, expected in (("no", {"message": "go away", "data": {"code": 7}}),
                                  ("false", {"message": "Connection rejected by server"})):
                client = socketio.AsyncClient(reconnection=False)
                errors: List[Any] = []
                client.on("connect_error", lambda data: errors.append(data))
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await client.connect(f"http://127.0.0.1:{server.port}", auth={"token": bad},
                                         transports=["websocket"], wait_timeout=5)
                assert errors == [expected]
                await client.disconnect()
            client = socketio.AsyncClient(reconnection=False)
            welcomed = asyncio.Event()
            client.on("welcome", lambda: welcomed.set())
            await client.connect(f"http://127.0.0.1:{server.port}", auth={"token": "yes"},
                                 transports=["websocket"], wait_timeout=5)
            await asyncio.wait_for(welcomed.wait(), 5)
            assert await client.call("token", timeout=5) == "yes"
            assert "authed" in server.rooms(client.get_sid())
            await client.disconnect()
        finally:
            await server.close()

    run(main)


def test_async_call_both_ways_with_timeout():
    async def main() -> None:
        async with iobus.AsyncServer() as server:
            results: List[Any] = []

            @server.event
            async def ask_me(sid):
                # A handler may await a call to its own client.
                results.append(await server.call("question", "q1", to=sid, timeout=5))
                try:
                    await server.call("silent", to=sid, timeout=0.3)
                except iobus.TimeoutError:
                    results.append("timeout")
                return "asked"

            client = await connect(server)

            async def question(text):
                await asyncio.sleep(0.01)
                return f"answer to {text}"

            async def silent():
                await asyncio.sleep(2)

            client.on("question", question)
            client.on("silent", silent)
            assert await client.call("ask_me", timeout=5) == "asked"
            assert results == ["answer to q1", "timeout"]
            # emit with an async callback
            got: List[Any] = []

            async def callback(*args):
                got.append(args)

            await server.emit("question", "q2", to=client.get_sid(), callback=callback)
            await eventually(lambda: got)
            assert got == [("answer to q2",)]
            with pytest.raises(iobus.DisconnectedError):
                await server.call("x", to="AAAAAAAAAAAAAAAAAAAA", timeout=1)
            await client.disconnect()

    run(main)


def test_async_rooms_skip_sid_and_disconnect():
    async def main() -> None:
        async with iobus.AsyncServer(namespaces=["/extra"]) as server:
            reasons: List[Any] = []

            @server.event
            async def disconnect(sid, reason):
                reasons.append((sid, reason))

            # "/extra" keeps a's connection open after "/" is disconnected.
            a, b = await connect(server, namespaces=["/", "/extra"]), await connect(server)
            got: List[Any] = []
            a.on("n", lambda x: got.append(("a", x)))
            b.on("n", lambda x: got.append(("b", x)))
            await server.enter_room(a.get_sid(), "r")
            await server.enter_room(b.get_sid(), "r")
            assert server.participants("r") == sorted([a.get_sid(), b.get_sid()])
            await server.emit("n", 1, to="r", skip_sid=a.get_sid())
            await eventually(lambda: got)
            await asyncio.sleep(0.1)
            assert got == [("b", 1)]
            await server.leave_room(b.get_sid(), "r")
            await server.close_room("r")
            assert server.participants("r") == []
            await server.send("m", to=a.get_sid())
            sid = a.get_sid()
            await server.disconnect(sid)
            await eventually(lambda: reasons)
            assert reasons == [(sid, "server namespace disconnect")]
            await b.disconnect()

    run(main)


def test_async_handler_exception_is_logged(caplog):
    async def main() -> None:
        async with iobus.AsyncServer() as server:

            @server.event
            async def broken(sid):
                await asyncio.sleep(0)
                raise KeyError("async failure")

            @server.event
            async def ok(sid):
                return "ok"

            client = await connect(server)
            with pytest.raises(socketio.exceptions.TimeoutError):
                await client.call("broken", timeout=0.5)
            assert await client.call("ok", timeout=5) == "ok"
            await client.disconnect()

    with caplog.at_level(logging.ERROR, logger="iobus"):
        run(main)
    assert "async failure" in caplog.text and "Traceback" in caplog.text


def test_async_namespace_class_and_binary():
    async def main() -> None:
        class Files(iobus.AsyncNamespace):
            async def on_put(self, sid, name, data):
                await self.emit("stored", {"name": name, "data": data[::-1]}, to=sid)
                return len(data)

        server = iobus.AsyncServer()
        server.register_namespace(Files("/files"))
        await server.start()
        try:
            client = await connect(server, namespaces=["/files"])
            stored = asyncio.Future()
            client.on("stored", lambda d: stored.set_result(d), namespace="/files")
            assert await client.call("put", ("f", b"\x01\x02\x03"), namespace="/files", timeout=5) == 3
            assert await asyncio.wait_for(stored, 5) == {"name": "f", "data": b"\x03\x02\x01"}
            await client.disconnect()
        finally:
            await server.close()

    run(main)


def test_no_thread_per_event_and_no_polling_while_idle():
    async def main() -> None:
        server = iobus.AsyncServer(worker_threads=1)

        @server.event
        async def ping(sid, i):
            return i

        await server.start()
        try:
            client = await connect(server)
            await client.call("ping", 0, timeout=5)
            before = thread_count()
            for i in range(200):
                assert await client.call("ping", i, timeout=5) == i
            assert thread_count() <= before
            # Idle: the loop sleeps in its selector; the process uses next to no CPU.
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu_before = usage.ru_utime + usage.ru_stime
            await asyncio.sleep(1.0)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            assert usage.ru_utime + usage.ru_stime - cpu_before < 0.2
            await client.disconnect()
        finally:
            await server.close()

    run(main)


def test_async_serve_forever_until_stopped():
    async def main() -> None:
        server = iobus.AsyncServer()
        task = asyncio.ensure_future(server.serve_forever(port=0))
        for _ in range(100):
            if server.running:
                break
            await asyncio.sleep(0.01)
        client = await connect(server)
        await server.stop()
        await asyncio.wait_for(task, 5)
        assert not server.running
        # Cancelling serve_forever stops the server too.
        task = asyncio.ensure_future(server.serve_forever(port=0))
        await asyncio.sleep(0.1)
        assert server.running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.running
        await server.close()
        await client.disconnect()

    run(main)


def test_async_start_stop_cycles_leave_no_threads_or_fds():
    async def main() -> None:
        server = iobus.AsyncServer()
        server.on("echo", lambda sid, x: x)
        # One warm-up cycle: aiohttp and the resolver keep a few things.
        await server.start()
        client = await connect(server)
        await client.call("echo", 1, timeout=5)
        await client.disconnect()
        await server.stop()
        await asyncio.sleep(0.2)
        threads, fds = thread_count(), len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            await server.start()
            client = await connect(server)
            assert await client.call("echo", "x", timeout=5) == "x"
            await client.disconnect()
            await server.stop()
        await asyncio.sleep(0.2)
        assert thread_count() <= threads
        assert len(os.listdir("/proc/self/fd")) <= fds
        await server.close()

    run(main)


def test_async_namespace_helpers_and_background_tasks():
    async def main() -> None:
        results: dict = {}

        class Helpers(iobus.AsyncNamespace):
            async def on_run(self, sid):
                await self.enter_room(sid, "a")
                await self.enter_room(sid, "b")
                await self.leave_room(sid, "a")
                results["rooms"] = self.rooms(sid)
                await self.close_room("b")
                await self.save_session(sid, {"k": 1})
                async with self.session(sid) as s:
                    s["k"] += 1
                results["session"] = await self.get_session(sid)
                await self.send("via send", to=sid)
                results["call"] = await self.call("q", to=sid, timeout=5)
                return "ran"

            async def on_kick(self, sid):
                await self.disconnect(sid)

        server = iobus.AsyncServer()
        server.register_namespace(Helpers("/h"))
        ticks: List[int] = []

        async def ticker(n):
            for i in range(n):
                ticks.append(i)
                await server.sleep(0.01)

        await server.start()
        try:
            await server.start_background_task(ticker, 3)
            assert ticks == [0, 1, 2]
            client = await connect(server, namespaces=["/h"])
            got: List[Any] = []
            client.on("message", lambda x: got.append(x), namespace="/h")
            client.on("q", lambda: "answer", namespace="/h")
            sid = client.get_sid("/h")
            assert await client.call("run", namespace="/h", timeout=5) == "ran"
            assert results == {"rooms": sorted([sid, "b"]), "session": {"k": 2}, "call": "answer"}
            await eventually(lambda: got == ["via send"])
            gone = asyncio.Event()
            client.on("disconnect", lambda *a: gone.set(), namespace="/h")
            await client.emit("kick", namespace="/h")
            await asyncio.wait_for(gone.wait(), 5)
            with pytest.raises(ValueError):
                server.register_namespace(iobus.Namespace("/sync"))
            await client.disconnect()
        finally:
            await server.shutdown()
            await server.close()

    run(main)


def test_async_emit_to_a_room_with_coroutine_callback_and_queries():
    async def main() -> None:
        async with iobus.AsyncServer(ack_timeout=5) as server:
            clients = [await connect(server) for _ in range(3)]
            try:
                for i, client in enumerate(clients):
                    client.on("poll", (lambda i: lambda: f"from {i}")(i))
                    await server.enter_room(client.get_sid(), "r")
                answers: List[Any] = []

                async def on_answer(answer):
                    await asyncio.sleep(0)
                    answers.append(answer)

                await server.emit("poll", to="r", skip_sid=[clients[1].get_sid()], callback=on_answer)
                await eventually(lambda: len(answers) == 2)
                assert sorted(answers) == ["from 0", "from 2"]
                sids = sorted(c.get_sid() for c in clients)
                assert await server.all_rooms() == sorted([*sids, "r"])
                assert [s.sid for s in await server.fetch_sockets(room="r")] == sids
                await server.close_room("r")
                assert await server.fetch_sockets(room="r") == []
                replies: List[Any] = []
                await server.server_side_emit("ping", callback=replies.append)
                await eventually(lambda: replies)
                assert replies == [[]]
            finally:
                for client in clients:
                    await client.disconnect()

    run(main)
