"""``iobus.AsyncServer``: the asyncio flavour, in python-socketio's shape.

libiobus wakes the event loop through its poll descriptor
(``loop.add_reader``); each wake-up takes the queued events as records in
one batch (``iobus_server_poll_records``) and delivers them on the loop's
thread. A handler may be a plain function (run right there)
or a coroutine function (run as a task, started in arrival order); its
result becomes the acknowledgement when it finishes. No thread is created
per event and nothing polls on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Dict, List, Optional, Set, Tuple, Type, TypeVar

from . import _abi as abi
from . import _native as n
from ._base import BaseServer
from ._handlers import Handler
from ._operations import call_result
from ._remote import RemoteSocket
from ._results import HandlerContext, current_handler, describe
from ._selection import Rooms
from .exceptions import ConnectionRefusedError, DisconnectedError, TimeoutError

_set_handler = current_handler.set
_reset_handler = current_handler.reset

A = TypeVar("A", bound="AsyncServer")


class AsyncServer(BaseServer):
    """The asyncio Socket.IO server; options as for ``iobus.Server``.

    ``await server.start(port=3000)`` (or ``async with server:``) binds and
    attaches to the running loop; ``await server.serve_forever()`` waits
    until ``stop()`` or cancellation.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._stopped: Optional[asyncio.Event] = None

    def _is_async(self) -> bool:
        return True

    # ---- lifecycle ----------------------------------------------------------------

    async def start(self: A, host: str = "127.0.0.1", port: int = 0) -> A:
        """Starts listening on ``host:port`` (0: a free port, see
        ``server.port``) and feeds the handlers from the running loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
            self._detach()
        self._native_start(host, port)
        self._loop = loop
        self._stopped = asyncio.Event()
        loop.add_reader(self._poll_fd, self._on_readable)
        return self

    async def stop(self) -> None:
        """Stops serving: clients disconnect with ``"server shutting down"``,
        disconnect handlers run, pending ``call()``s fail, and running
        handler tasks get 5 s to finish before they are cancelled."""
        if self._closed:
            return
        self._native_stop()
        if self._loop is not None:
            self._poll_all()
        self._detach()
        tasks = {t for t in self._tasks if t is not asyncio.current_task()}
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=5)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=1)
        if self._stopped is not None:
            self._stopped.set()

    shutdown = stop

    async def close(self) -> None:
        """Stops and frees the native server; the object is unusable after."""
        if self._closed:
            return
        await self.stop()
        self._free_native()

    async def serve_forever(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Starts (unless running) and waits until ``stop()``; cancelling it
        (Ctrl-C under ``asyncio.run``) stops the server."""
        if not self.running:
            await self.start(host, port)
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def __aenter__(self: A) -> A:
        if not self.running:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def _detach(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self._poll_fd)
            except (RuntimeError, ValueError, OSError):
                pass

    def _close_at_exit(self) -> None:
        # The loop is usually gone by now: stop and free without it.
        self._native_stop()
        self._detach()
        self._free_native(wait=1.0)

    def _on_readable(self) -> None:
        # One buffer of records per wake-up: libiobus leaves its descriptor
        # readable while more are pending, so other callbacks get their turn.
        self._poll()

    # ---- running handlers ------------------------------------------------------

    def _invoke(
        self,
        fn: Handler,
        args: Tuple[Any, ...],
        sid: str,
        what: str,
        done: Optional[Callable[[Any], None]],
        ack: int,
        on_error: Optional[Callable[[BaseException], None]] = None,
    ) -> None:
        ctx = HandlerContext(self, sid, bool(ack))
        token = _set_handler(ctx)
        try:
            result = fn(*args)
            if result is not None and inspect.isawaitable(result):
                loop = self._loop
                if loop is None or loop.is_closed():
                    # Records delivered while the server is freed after the
                    # loop has gone (interpreter exit).
                    if inspect.iscoroutine(result):
                        result.close()
                    if ack:
                        n.lib.iobus_ack_free(ack)
                    if on_error is not None:
                        on_error(ConnectionRefusedError())
                    return
                # The task copies the context, handler context included.
                self._spawn(self._finish(result, ctx, what, done, ack, on_error))
                return
        except Exception as exc:
            self._failed(exc, ctx, what, done, ack, on_error)
            self._run_deferred(ctx)
            return
        finally:
            _reset_handler(token)
        self._settle(result, sid, what, done, ack)
        if ctx.deferred:
            self._run_deferred(ctx)

    async def _finish(
        self,
        awaitable: Awaitable[Any],
        ctx: HandlerContext,
        what: str,
        done: Optional[Callable[[Any], None]],
        ack: int,
        on_error: Optional[Callable[[BaseException], None]],
    ) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if ack:
                n.lib.iobus_ack_free(ack)
            if on_error is not None:
                on_error(ConnectionRefusedError())
            raise
        except Exception as exc:
            self._failed(exc, ctx, what, done, ack, on_error)
            self._run_deferred(ctx)
            return
        self._settle(result, ctx.sid, what, done, ack)
        self._run_deferred(ctx)

    def _failed(
        self,
        exc: Exception,
        ctx: HandlerContext,
        what: str,
        done: Optional[Callable[[Any], None]],
        ack: int,
        on_error: Optional[Callable[[BaseException], None]],
    ) -> None:
        if not (on_error is not None and isinstance(exc, ConnectionRefusedError)):
            self._log_handler_error(describe(what, done), ctx.sid)
        if ack:
            n.lib.iobus_ack_free(ack)
        if on_error is not None:
            on_error(exc)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> "asyncio.Task[Any]":
        loop = self._loop or asyncio.get_running_loop()
        task: "asyncio.Task[Any]" = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- python-socketio's operations -------------------------------------------

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Rooms = None,
        room: Rooms = None,
        skip_sid: Rooms = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
        ignore_queue: bool = False,
    ) -> None:
        """As ``Server.emit``; ``callback`` may be a coroutine function."""
        self._emit(event, data, to, room, skip_sid, namespace, callback)

    async def send(
        self,
        data: Any,
        to: Rooms = None,
        room: Rooms = None,
        skip_sid: Rooms = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
        ignore_queue: bool = False,
    ) -> None:
        """Emits a ``message`` event."""
        self._emit("message", data, to, room, skip_sid, namespace, callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: Optional[str] = None,
        sid: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60,
        ignore_queue: bool = False,
    ) -> Any:
        """Emits to one client and waits for its acknowledgement (usable
        from handlers): its single argument, a tuple of several, or None.
        Raises ``iobus.TimeoutError`` or ``iobus.DisconnectedError``."""
        future, complete = self._answer_future()
        status = self._start_call(event, data, to, sid, namespace, timeout, complete)
        if status != abi.OK:
            raise DisconnectedError(f"cannot call {to or sid}: {n.status_name(status)}")
        # libiobus completes it exactly once: reply, timeout or disconnect.
        outcome, args = await future
        if outcome == abi.ACK_TIMEOUT:
            raise TimeoutError(f"no acknowledgement of {event!r} within {timeout} s")
        if outcome != abi.ACK_OK:
            raise DisconnectedError(f"{to or sid} disconnected before acknowledging {event!r}")
        return call_result(args or [])

    @staticmethod
    def _answer_future() -> "Tuple[asyncio.Future[Any], Callable[..., None]]":
        """A future of the running loop, and a completion (callable from
        any thread) that resolves it with its arguments: one as is,
        several as a tuple."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Any]" = loop.create_future()

        def settle(value: Any) -> None:
            if not future.done():
                future.set_result(value)

        def complete(*args: Any) -> None:
            value = args[0] if len(args) == 1 else args
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                settle(value)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(settle, value)

        return future, complete

    async def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        self._enter_room(sid, room)

    async def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        self._leave_room(sid, room)

    async def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        self._close_room(room, namespace)

    def rooms(self, sid: str, namespace: Optional[str] = None) -> List[str]:
        """The rooms a client is in (not a coroutine, as in python-socketio)."""
        return self._rooms(sid)

    async def all_rooms(self, namespace: Optional[str] = None) -> List[str]:
        """As ``Server.all_rooms`` (a coroutine here: the answer may come
        from other servers)."""
        future, complete = self._answer_future()
        if not self._start_all_rooms(namespace, complete):
            return []
        rooms: List[str] = await future
        return rooms

    async def fetch_sockets(
        self,
        to: Rooms = None,
        room: Rooms = None,
        skip_sid: Rooms = None,
        namespace: Optional[str] = None,
    ) -> List[RemoteSocket]:
        """As ``Server.fetch_sockets``."""
        future, complete = self._answer_future()
        if not self._start_fetch_sockets(to if to is not None else room, skip_sid, namespace, complete):
            return []
        sockets: List[RemoteSocket] = await future
        return sockets

    def participants(self, room: Optional[str] = None, namespace: Optional[str] = None) -> List[str]:
        """As ``Server.participants`` (not a coroutine)."""
        return self._participants(room, namespace)

    async def server_side_emit(
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[[List[Any]], Any]] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """As ``Server.server_side_emit``; ``callback`` may be a coroutine
        function."""
        self._server_side_emit(event, data, namespace, callback, timeout)
    async def disconnect(self, sid: str, namespace: Optional[str] = None, ignore_queue: bool = False) -> None:
        self._disconnect(sid)

    def get_environ(self, sid: str, namespace: Optional[str] = None) -> Optional[Dict[str, Any]]:
        return self._environ(sid)

    async def get_session(self, sid: str, namespace: Optional[str] = None) -> Dict[str, Any]:
        return self._get_session(sid)

    async def save_session(self, sid: str, session: Dict[str, Any], namespace: Optional[str] = None) -> None:
        self._save_session(sid, session)

    @contextlib.asynccontextmanager
    async def session(self, sid: str, namespace: Optional[str] = None) -> AsyncIterator[Dict[str, Any]]:
        """``async with server.session(sid) as s: ...`` (saved at the end)."""
        session = await self.get_session(sid)
        yield session
        await self.save_session(sid, session)

    def start_background_task(
        self, target: Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kwargs: Any
    ) -> "asyncio.Task[Any]":
        """Runs the coroutine function ``target`` as a task."""
        return self._spawn(target(*args, **kwargs))

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)
