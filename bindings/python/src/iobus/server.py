"""``iobus.Server``: the blocking flavour, in python-socketio's shape.

Handlers run one at a time, in arrival order, on one dispatch thread the
server owns while it runs; it sleeps in ``poll()`` on libiobus's wake-up
descriptor, so an idle server costs nothing. Every other method may be
called from any thread, handlers included.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type, TypeVar

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

S = TypeVar("S", bound="Server")


class Server(BaseServer):
    """A Socket.IO server whose protocol work runs in libiobus.

    ``Server(cors_allowed_origins="*", ping_interval=25, ping_timeout=20,
    max_http_buffer_size=1_000_000, ...)``; times are in seconds as in
    python-socketio. iobus adds ``path``, ``connect_timeout``,
    ``upgrade_timeout``, ``max_attachments``, ``max_buffered``,
    ``http_header_timeout``, ``http_keep_alive_timeout``,
    ``write_timeout``, ``max_header_bytes``, ``max_connections``,
    ``connection_state_recovery``, ``worker_threads``,
    ``batch_scheduling``, ``serve_client``, ``client_dir``, ``static_dir``,
    ``cors_max_age``, ``adapter`` (an ``iobus.RedisAdapter``: a cluster of
    nodes through Redis), ``host_queue_limit``, ``free_timeout`` and
    ``ack_timeout`` (how long ``emit(..., callback=...)`` waits for the
    clients). See the README for each.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._stop_requested = False
        self._stopped = threading.Event()
        self._stopped.set()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ---- lifecycle ----------------------------------------------------------------

    def start(self: S, host: str = "127.0.0.1", port: int = 0) -> S:
        """Starts listening on ``host:port`` (port 0 picks a free one; see
        ``server.port``) and dispatching to the handlers. Returns the
        server, so ``with server.start(port=3000):`` works."""
        with self._lifecycle:
            if self._thread is not None and self._thread.is_alive() and self._stop_requested:
                # A stop from a handler: its dispatch thread is finishing.
                if self._thread.ident == threading.get_ident():
                    raise RuntimeError("start() from a handler while stopping")
                self._thread.join()
            self._native_start(host, port)
            self._stop_requested = False
            self._stopped.clear()
            self._thread = threading.Thread(target=self._dispatch, name="iobus-dispatch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving: clients disconnect with ``"server shutting down"``
        (disconnect handlers still run), pending ``call()``s fail, the
        dispatch thread ends. The server may be started again."""
        with self._lifecycle:
            thread = self._thread
            self._native_stop()
            self._stop_requested = True
            self._wake()
        if thread is not None and thread.ident != threading.get_ident():
            thread.join()
        self._stopped.set()

    shutdown = stop

    def close(self) -> None:
        """Stops and frees the native server; the object is unusable after."""
        if self._closed:
            return
        self.stop()
        self._free_native()
        self._close_pipe()

    def serve_forever(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Starts (unless running) and blocks until ``stop()`` is called or
        Ctrl-C is pressed; Ctrl-C stops the server and returns normally."""
        if not self.running:
            self.start(host, port)
        try:
            while not self._stopped.wait(3600):
                pass
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self: S) -> S:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def _close_at_exit(self) -> None:
        thread = self._thread
        self._native_stop()
        self._stop_requested = True
        self._wake()
        if thread is not None and thread.ident != threading.get_ident():
            thread.join(5.0)
            if thread.is_alive():
                self.logger.error("iobus: a handler is still running at exit; the server is left allocated")
                return
        self._free_native(wait=1.0)
        self._close_pipe()

    def __del__(self) -> None:
        super().__del__()
        self._close_pipe()

    def _close_pipe(self) -> None:
        for attr in ("_wake_r", "_wake_w"):
            fd = getattr(self, attr, -1)
            if fd >= 0:
                setattr(self, attr, -1)
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass

    # ---- the dispatch thread ----------------------------------------------------

    def _dispatch(self) -> None:
        poller = select.poll()
        poller.register(self._poll_fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        wake_r = self._wake_r
        while not self._stop_requested:
            for fd, _events in poller.poll():
                if fd == wake_r:  # stop() wants the thread's attention
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except (BlockingIOError, OSError):
                        pass
            # One buffer of records per wake-up: libiobus leaves its
            # descriptor readable while more are pending.
            self._drain(self._poll)
        # What the stop queued: disconnect handlers, failed acks.
        self._drain(self._poll_all)

    def _drain(self, poll: Callable[[], Any]) -> None:
        try:
            poll()
        except BaseException:  # noqa: BLE001 - SystemExit from a handler ends only that handler
            self.logger.exception("iobus: a handler raised past its own error handling")

    def _in_dispatch(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def _wait_answer(self, done: threading.Event) -> None:
        """Waits for the answer to a query (libiobus always gives one). A
        handler runs on the thread that takes the records: it takes them
        itself meanwhile, delivering only answers to queries and holding
        the rest back until the batch in hand is delivered."""
        if self._poller != threading.get_ident():
            done.wait()
            return
        poller = select.poll()
        poller.register(self._poll_fd, select.POLLIN)
        while not done.is_set():
            poller.poll()
            self._take_records(hold=True)

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
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001
                if on_error is not None and isinstance(exc, ConnectionRefusedError):
                    on_error(exc)
                    return
                self._log_handler_error(describe(what, done), sid)
                if ack:
                    n.lib.iobus_ack_free(ack)
                if on_error is not None:
                    on_error(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            self._settle(result, sid, what, done, ack)
        finally:
            _reset_handler(token)
            if ctx.deferred:
                self._run_deferred(ctx)

    # ---- python-socketio's operations -------------------------------------------

    def emit(
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
        """Emits ``event`` to one client (``to=sid``), a room or several
        (``to=``/``room=``), or the whole namespace, minus ``skip_sid`` (a
        sid or a list of them). ``data`` is one argument, a tuple of several,
        or None for none; ``bytes`` travel as binary. ``callback`` is called
        with each recipient's acknowledgement arguments, once per reply, in
        arrival order, once every recipient answered or left or
        ``ack_timeout`` passed."""
        self._emit(event, data, to, room, skip_sid, namespace, callback)

    def send(
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

    def call(
        self,
        event: str,
        data: Any = None,
        to: Optional[str] = None,
        sid: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60,
        ignore_queue: bool = False,
    ) -> Any:
        """Emits to one client and waits for its acknowledgement: returns
        its single argument, a tuple of several, or None. Raises
        ``iobus.TimeoutError`` after ``timeout`` seconds and
        ``iobus.DisconnectedError`` when the client is gone; ``ValueError``
        when ``to`` names a room (use ``emit(..., callback=...)``).

        Handlers run on the dispatch thread, which delivers the answer, so
        ``call()`` cannot be used from a handler: use ``emit(...,
        callback=...)``, a ``start_background_task``, or ``AsyncServer``."""
        if self._in_dispatch():
            raise RuntimeError(
                "Server.call() from a handler would wait for an answer that this same thread delivers; "
                "use emit(..., callback=...), start_background_task(), or AsyncServer"
            )
        done = threading.Event()
        outcome: Dict[str, Any] = {}

        def complete(status: int, args: Optional[List[Any]]) -> None:
            outcome["status"] = status
            outcome["args"] = args
            done.set()

        status = self._start_call(event, data, to, sid, namespace, timeout, complete)
        if status != abi.OK:
            raise DisconnectedError(f"cannot call {to or sid}: {n.status_name(status)}")
        # libiobus completes it exactly once: reply, timeout or disconnect.
        done.wait()
        if outcome["status"] == abi.ACK_TIMEOUT:
            raise TimeoutError(f"no acknowledgement of {event!r} within {timeout} s")
        if outcome["status"] != abi.ACK_OK:
            raise DisconnectedError(f"{to or sid} disconnected before acknowledging {event!r}")
        return call_result(outcome["args"] or [])

    def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        """Adds a client to a room."""
        self._enter_room(sid, room)

    def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        """Removes a client from a room."""
        self._leave_room(sid, room)

    def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        """Removes every client from a room."""
        self._close_room(room, namespace)

    def rooms(self, sid: str, namespace: Optional[str] = None) -> List[str]:
        """The rooms a client is in, its own sid room included."""
        return self._rooms(sid)

    def all_rooms(self, namespace: Optional[str] = None) -> List[str]:
        """The rooms of a namespace that have members (sid rooms included),
        sorted, on every server of a cluster."""
        done = threading.Event()
        answer: List[List[str]] = [[]]

        def complete(rooms: List[str]) -> None:
            answer[0] = rooms
            done.set()

        if self._start_all_rooms(namespace, complete):
            self._wait_answer(done)
        return answer[0]

    def fetch_sockets(
        self,
        to: Rooms = None,
        room: Rooms = None,
        skip_sid: Rooms = None,
        namespace: Optional[str] = None,
    ) -> List[RemoteSocket]:
        """The sockets a selection matches (as ``emit`` chooses its
        recipients), on every server of a cluster, sorted by sid: each
        with its rooms, its data (the session as last saved) and its
        handshake (``iobus.RemoteSocket``)."""
        done = threading.Event()
        answer: List[List[RemoteSocket]] = [[]]

        def complete(sockets: List[RemoteSocket]) -> None:
            answer[0] = sockets
            done.set()

        if self._start_fetch_sockets(to if to is not None else room, skip_sid, namespace, complete):
            self._wait_answer(done)
        return answer[0]

    def participants(self, room: Optional[str] = None, namespace: Optional[str] = None) -> List[str]:
        """The sids of this server's sockets in a room (or in the whole
        namespace), sorted."""
        return self._participants(room, namespace)

    def server_side_emit(
        self,
        event: str,
        data: Any = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[[List[Any]], Any]] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """Emits ``event`` to the ``on_server_side_emit`` handlers of the
        other servers of a cluster (never to clients, never to this
        server's own handlers). ``callback(replies)`` receives one answer
        per server (as ``call()`` returns an answer), once every server
        answered or ``timeout`` (default ``ack_timeout``) passed. With the
        default in-memory adapter there is no other server: ``callback([])``."""
        self._server_side_emit(event, data, namespace, callback, timeout)

    def disconnect(self, sid: str, namespace: Optional[str] = None, ignore_queue: bool = False) -> None:
        """Disconnects a client from its namespace (it sees
        ``"io server disconnect"``)."""
        self._disconnect(sid)

    def get_environ(self, sid: str, namespace: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The WSGI-style environ of a client's handshake."""
        return self._environ(sid)

    def get_session(self, sid: str, namespace: Optional[str] = None) -> Dict[str, Any]:
        """The session dict of a client (kept until it disconnects)."""
        return self._get_session(sid)

    def save_session(self, sid: str, session: Dict[str, Any], namespace: Optional[str] = None) -> None:
        """Replaces the session dict of a client."""
        self._save_session(sid, session)

    @contextlib.contextmanager
    def session(self, sid: str, namespace: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        """``with server.session(sid) as s: s["user"] = ...`` (saved at the end)."""
        session = self.get_session(sid)
        yield session
        self.save_session(sid, session)

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        """Runs ``target`` on a new daemon thread and returns the thread."""
        thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
        thread.start()
        return thread

    def sleep(self, seconds: float = 0) -> None:
        time.sleep(seconds)

