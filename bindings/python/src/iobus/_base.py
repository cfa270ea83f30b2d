"""What the blocking and the asyncio servers share: the native server handle
and its lifetime, handler registration, reading what libiobus delivers, and
every operation on sockets, rooms and namespaces.

Both flavours run libiobus in ``IOBUS_DISPATCH_POLL`` mode, on a thread of
Python's choosing (the blocking server's dispatch thread, or the asyncio
loop through ``add_reader`` on the poll descriptor). Events do not arrive as
ctypes callbacks: one ``iobus_server_poll_records`` call takes every pending
connection, event, disconnection and ack reply as records in one buffer
(one foreign call per batch, not five per event), and ``_deliver`` reads
them with ``struct``. How a handler's result is awaited is the only thing
the subclasses decide (``_invoke``).
"""

from __future__ import annotations

import atexit
import contextvars
import ctypes
import inspect
import itertools
import json
import logging
import struct
import threading
from ctypes import addressof, byref, c_size_t, c_uint16, c_void_p
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from . import _native as n
from ._payload import decode, encode, encode_plain, to_args
from .exceptions import ConnectionRefusedError

if TYPE_CHECKING:
    from .namespace import BaseNamespace

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[..., Any]
Rooms = Union[str, Iterable[str], None]

default_logger = logging.getLogger("iobus")

# python-socketio and python-engineio options that have no meaning here;
# accepted so that existing constructor calls keep working.
_IGNORED_OPTIONS = frozenset(
    {
        "async_mode",
        "async_handlers",
        "http_compression",
        "compression_threshold",
        "cookie",
        "monitor_clients",
        "engineio_logger",
    }
)

# What a class-based namespace returns for an event it has no method for:
# a client that asked for an ack gets none, as in python-socketio.
NOT_HANDLED: Any = object()

# The record buffer; a record larger than this (a big binary event) is
# read into a buffer of its own size.
_RECORDS_CAP = 256 * 1024
_RECORD_HEADER = n.RECORD_HEADER.size
_RESERVED = frozenset({"connect", "disconnect"})
# Statuses after which iobus_ack_send has not consumed the handle.
_ACK_STILL_OWNED = frozenset({n.ERR_NULL_ARGUMENT, n.ERR_INVALID_UTF8, n.ERR_INVALID_JSON, n.ERR_INVALID_BINARY})
# Operations on a socket that is gone, or a server that is not running, do
# nothing (as in python-socketio).
_QUIET = frozenset({n.ERR_UNKNOWN_SOCKET, n.ERR_DISCONNECTED, n.ERR_NOT_RUNNING})


class DisconnectReason:
    """The reasons a ``disconnect`` handler receives (Socket.IO's strings)."""

    CLIENT_DISCONNECT = "client namespace disconnect"
    SERVER_DISCONNECT = "server namespace disconnect"
    SERVER_SHUTTING_DOWN = "server shutting down"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PARSE_ERROR = "parse error"
    FORCED_CLOSE = "forced close"
    FORCED_SERVER_CLOSE = "forced server close"


class _HandlerContext:
    """The event being handled on this thread or task: a handler that
    disconnects its own socket while the client waits for the ack gets the
    disconnection after the ack, so that the ack still arrives."""

    __slots__ = ("server", "sid", "acking", "deferred")

    def __init__(self, server: "BaseServer", sid: str, acking: bool) -> None:
        self.server = server
        self.sid = sid
        self.acking = acking
        self.deferred: Optional[List[Callable[[], None]]] = None


_current_handler: contextvars.ContextVar[Optional[_HandlerContext]] = contextvars.ContextVar(
    "iobus_current_handler", default=None
)


@dataclass
class _PendingConnect:
    """A connection whose ``connect`` handler has not decided yet. libiobus
    already reaches its socket (rooms, emits), but a disconnect can only
    follow the accept: it waits here."""

    ops: List[Callable[[], None]] = field(default_factory=list)


class _Registration:
    """What a registration's user data stands for."""

    __slots__ = ("kind", "namespace", "event", "handler_key", "pattern")

    def __init__(self, kind: str, namespace: str, event: str = "") -> None:
        self.kind = kind  # "event", "any", "connect", "disconnect"
        self.namespace = namespace  # the key handlers are stored under ("/", "/chat", "*", "/room-*")
        self.event = event
        # The handler an event of this registration goes to.
        self.handler_key = event if kind == "event" else "*"
        # Handlers of a pattern receive the concrete namespace first.
        self.pattern = _is_pattern(namespace)


def _describe(what: str, done: Optional[Callable[[Any], None]]) -> str:
    """How a log line names the handler ``_invoke`` ran."""
    return f"handler of {what!r}" if done is None else what


def _positional_capacity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (a large number for *args)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1 << 16
    count = 0
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return 1 << 16
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def normalize_namespace(namespace: Optional[str]) -> str:
    if namespace is None or namespace == "":
        return "/"
    if namespace == "*":
        return "*"
    return namespace if namespace.startswith("/") else "/" + namespace


def _is_pattern(key: str) -> bool:
    return "*" in key


def _c_pattern(key: str) -> str:
    return "/*" if key == "*" else key


def build_environ(handshake: Dict[str, Any]) -> Dict[str, Any]:
    """A WSGI-style environ from the handshake libiobus records; the raw
    handshake is under ``"iobus.handshake"``."""
    url = str(handshake.get("url") or "")
    path, _, query = url.partition("?")
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": str(handshake.get("address", "")),
        "REMOTE_PORT": str(handshake.get("port", "")),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "iobus.handshake": handshake,
    }
    headers = handshake.get("headers") or {}
    for name, value in headers.items():
        key = str(name).upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    host = environ.get("HTTP_HOST")
    if isinstance(host, str) and host:
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "80")
        environ["SERVER_NAME"] = name or host
        environ["SERVER_PORT"] = port
    return environ


# Servers that are running; they stay alive while running and are stopped
# when the interpreter exits.
_running: Set["BaseServer"] = set()
_running_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        try:
            server._close_at_exit()
        except Exception:  # pragma: no cover - best effort at exit
            default_logger.exception("iobus: stopping a server at exit failed")


class BaseServer:
    """Shared machinery of ``Server`` and ``AsyncServer``."""

    reason = DisconnectReason

    def __init__(
        self,
        *,
        cors_allowed_origins: Union[str, Iterable[str], None] = None,
        cors_credentials: bool = True,
        cors_max_age: Optional[int] = None,
        ping_interval: Union[float, Tuple[float, float], None] = None,
        ping_timeout: Optional[float] = None,
        max_http_buffer_size: Optional[int] = None,
        allow_upgrades: Optional[bool] = None,
        transports: Optional[Iterable[str]] = None,
        namespaces: Union[str, Iterable[str], None] = None,
        logger: Union[bool, logging.Logger] = False,
        path: Optional[str] = None,
        connect_timeout: Optional[float] = None,
        upgrade_timeout: Optional[float] = None,
        max_attachments: Optional[int] = None,
        max_buffered: Optional[int] = None,
        worker_threads: Optional[int] = None,
        batch_scheduling: Optional[bool] = None,
        serve_client: Optional[bool] = None,
        client_dir: Optional[str] = None,
        static_dir: Optional[str] = None,
        ack_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - _IGNORED_OPTIONS
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        if isinstance(logger, logging.Logger):
            self.logger = logger
        else:
            self.logger = default_logger
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO if logger else logging.ERROR)
        self.ack_timeout = float(ack_timeout)

        self._handle = c_void_p()
        self._closed = False
        self._lock = threading.RLock()
        # Held while a batch of records is taken and delivered, so that the
        # handle is never freed under it; _poller is the thread doing it.
        self._poll_lock = threading.Lock()
        self._poller: Optional[int] = None
        self._free_after_poll = False
        # The buffer iobus_server_poll_records writes into, and its two
        # out-parameters (passed by address: the cheapest ctypes argument).
        self._records = ctypes.create_string_buffer(_RECORDS_CAP)
        self._records_len = c_size_t(0)
        self._records_count = c_size_t(0)
        self._records_args = (
            addressof(self._records),
            _RECORDS_CAP,
            addressof(self._records_len),
            addressof(self._records_count),
        )

        self._handlers: Dict[str, Dict[str, Tuple[Handler, int]]] = {}
        self._namespace_objects: Dict[str, "BaseNamespace"] = {}
        self._known_namespaces: Set[str] = set()
        self._c_registered: Set[Tuple[str, str, str]] = set()
        self._registrations: Dict[int, _Registration] = {}
        self._tokens = itertools.count(1)
        self._acks: Dict[int, Callable[[int, Optional[List[Any]]], None]] = {}
        self._sessions: Dict[str, Dict[str, Any]] = {}
        self._pending: Dict[str, _PendingConnect] = {}
        self._departing: Dict[str, List[str]] = {}
        self._exception: Optional[BaseException] = None

        config = n.lib.iobus_config_new()
        if not config:
            raise MemoryError("iobus_config_new")
        try:
            self._configure(
                config,
                cors_allowed_origins=cors_allowed_origins,
                cors_credentials=cors_credentials,
                cors_max_age=cors_max_age,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                max_http_buffer_size=max_http_buffer_size,
                allow_upgrades=allow_upgrades,
                transports=transports,
                path=path,
                connect_timeout=connect_timeout,
                upgrade_timeout=upgrade_timeout,
                max_attachments=max_attachments,
                max_buffered=max_buffered,
                worker_threads=worker_threads,
                batch_scheduling=batch_scheduling,
                serve_client=serve_client,
                client_dir=client_dir,
                static_dir=static_dir,
            )
            n.check(n.lib.iobus_server_new(config, byref(self._handle)), "iobus_server_new")
        finally:
            n.lib.iobus_config_free(config)
        self._poll_fd = int(n.lib.iobus_server_poll_fd(self._handle))

        # `namespaces` adds namespaces without handlers ("*": every one);
        # the default namespace is added at start unless "*" covers it.
        if namespaces == "*":
            self._touch_namespace("*")
        elif namespaces:
            for ns in [namespaces] if isinstance(namespaces, str) else namespaces:
                self._touch_namespace(normalize_namespace(ns))

    # ---- configuration -----------------------------------------------------

    @staticmethod
    def _configure(cfg: Any, **o: Any) -> None:
        lib = n.lib

        def ms(seconds: float) -> int:
            return max(0, int(round(float(seconds) * 1000)))

        n.check(lib.iobus_config_set_dispatch(cfg, n.DISPATCH_POLL), "dispatch")
        origins = o["cors_allowed_origins"]
        if origins:
            for origin in [origins] if isinstance(origins, str) else list(origins):
                n.check(lib.iobus_config_add_cors_origin(cfg, origin.encode()), "cors_allowed_origins")
            n.check(lib.iobus_config_set_cors_credentials(cfg, bool(o["cors_credentials"])), "cors_credentials")
            if o["cors_max_age"] is not None:
                n.check(lib.iobus_config_set_cors_max_age(cfg, int(o["cors_max_age"])), "cors_max_age")
        interval = o["ping_interval"]
        if isinstance(interval, (tuple, list)):
            interval = interval[0]
        if interval is not None:
            n.check(lib.iobus_config_set_ping_interval(cfg, ms(interval)), "ping_interval")
        if o["ping_timeout"] is not None:
            n.check(lib.iobus_config_set_ping_timeout(cfg, ms(o["ping_timeout"])), "ping_timeout")
        if o["max_http_buffer_size"] is not None:
            n.check(lib.iobus_config_set_max_payload(cfg, int(o["max_http_buffer_size"])), "max_http_buffer_size")
        if o["allow_upgrades"] is not None:
            n.check(lib.iobus_config_set_allow_upgrades(cfg, bool(o["allow_upgrades"])), "allow_upgrades")
        if o["transports"] is not None:
            wanted = set(o["transports"])
            bad = wanted - {"polling", "websocket"}
            if bad:
                raise ValueError(f"unknown transport(s): {', '.join(sorted(bad))}")
            n.check(
                lib.iobus_config_set_transports(cfg, "polling" in wanted, "websocket" in wanted), "transports"
            )
        if o["path"] is not None:
            path = o["path"] if o["path"].startswith("/") else "/" + o["path"]
            n.check(lib.iobus_config_set_path(cfg, path.encode()), "path")
        if o["connect_timeout"] is not None:
            n.check(lib.iobus_config_set_connect_timeout(cfg, ms(o["connect_timeout"])), "connect_timeout")
        if o["upgrade_timeout"] is not None:
            n.check(lib.iobus_config_set_upgrade_timeout(cfg, ms(o["upgrade_timeout"])), "upgrade_timeout")
        if o["max_attachments"] is not None:
            n.check(lib.iobus_config_set_max_attachments(cfg, int(o["max_attachments"])), "max_attachments")
        if o["max_buffered"] is not None:
            n.check(lib.iobus_config_set_max_buffered(cfg, int(o["max_buffered"])), "max_buffered")
        if o["worker_threads"] is not None:
            n.check(lib.iobus_config_set_worker_threads(cfg, int(o["worker_threads"])), "worker_threads")
        if o["batch_scheduling"] is not None:
            n.check(lib.iobus_config_set_batch_scheduling(cfg, bool(o["batch_scheduling"])), "batch_scheduling")
        if o["serve_client"] is not None:
            n.check(lib.iobus_config_set_serve_client(cfg, bool(o["serve_client"])), "serve_client")
        if o["client_dir"] is not None:
            n.check(lib.iobus_config_set_client_dir(cfg, str(o["client_dir"]).encode()), "client_dir")
        if o["static_dir"] is not None:
            n.check(lib.iobus_config_set_static_dir(cfg, str(o["static_dir"]).encode()), "static_dir")

    # ---- handler registration ------------------------------------------------

    def on(
        self, event: str, handler: Optional[Handler] = None, namespace: Optional[str] = None
    ) -> Callable[[F], F]:
        """Registers a handler for ``event`` (``"connect"``, ``"disconnect"``,
        ``"*"`` for every event without a handler of its own, or any event
        name). Used as ``@server.on("chat")`` or ``server.on("chat", fn)``.

        Event handlers receive ``(sid, *args)`` and their return value is
        the acknowledgement (a tuple for several arguments). ``connect``
        receives ``(sid, environ, auth)`` and refuses with ``False`` or
        ``ConnectionRefusedError``; ``disconnect`` receives
        ``(sid, reason)``. For ``namespace="*"`` (or any pattern with
        ``*``) handlers get the namespace before the sid, and catch-all
        handlers get the event name first.
        """
        key = normalize_namespace(namespace)

        def register(fn: F) -> F:
            self._register(key, event, fn)
            return fn

        if handler is not None:
            register(handler)
        return register

    def event(self, *args: Any, **kwargs: Any) -> Any:
        """Registers a handler named after the function:
        ``@server.event`` or ``@server.event(namespace="/chat")``."""
        if len(args) == 1 and not kwargs and callable(args[0]):
            fn = args[0]
            self.on(fn.__name__)(fn)
            return fn

        def decorator(fn: F) -> F:
            return self.on(fn.__name__, *args, **kwargs)(fn)

        return decorator

    def register_namespace(self, namespace_handler: "BaseNamespace") -> None:
        """Registers a class-based namespace (``iobus.Namespace`` with
        ``on_<event>`` methods)."""
        from .namespace import AsyncNamespace, Namespace

        expected = AsyncNamespace if self._is_async() else Namespace
        if not isinstance(namespace_handler, expected):
            raise ValueError(f"not a {expected.__name__} instance")
        key = normalize_namespace(namespace_handler.namespace)
        namespace_handler._set_server(self)
        with self._lock:
            self._namespace_objects[key] = namespace_handler
            self._touch_namespace(key)
            self._c_register(key, "connect")
            self._c_register(key, "*")

    def _is_async(self) -> bool:
        return False

    def _register(self, key: str, event: str, fn: Handler) -> None:
        if not callable(fn):
            raise TypeError("a handler must be callable")
        with self._lock:
            self._handlers.setdefault(key, {})[event] = (fn, _positional_capacity(fn))
            self._touch_namespace(key)
            if event != "disconnect":
                self._c_register(key, event)

    def _touch_namespace(self, key: str) -> None:
        """Makes the namespace exist in libiobus, with the disconnect
        callback that also clears sessions."""
        with self._lock:
            if key in self._known_namespaces:
                return
            if _is_pattern(key):
                n.check(
                    n.lib.iobus_server_add_namespace_pattern(self._handle, _c_pattern(key).encode()),
                    f"namespace pattern {key}",
                )
            self._known_namespaces.add(key)
            self._c_register(key, "disconnect")

    def _c_register(self, key: str, event: str) -> None:
        marker = (key, event, "")
        if marker in self._c_registered:
            return
        nsp = _c_pattern(key).encode()
        token = next(self._tokens)
        lib = n.lib
        if event == "connect":
            self._registrations[token] = _Registration("connect", key)
            status = lib.iobus_server_on_connect(self._handle, nsp, _CONNECT_CB, c_void_p(token))
        elif event == "disconnect":
            self._registrations[token] = _Registration("disconnect", key)
            status = lib.iobus_server_on_disconnect(self._handle, nsp, _DISCONNECT_CB, c_void_p(token))
        elif event == "*":
            self._registrations[token] = _Registration("any", key)
            status = lib.iobus_server_on_any(self._handle, nsp, _EVENT_CB, c_void_p(token))
        else:
            self._registrations[token] = _Registration("event", key, event)
            status = lib.iobus_server_on_event(self._handle, nsp, event.encode(), _EVENT_CB, c_void_p(token))
        n.check(status, f"registering {event!r} on {key}")
        self._c_registered.add(marker)

    # ---- lifecycle helpers -------------------------------------------------------

    @property
    def port(self) -> Optional[int]:
        """The port the server listens on, or None when it is not running."""
        if self._closed:
            return None
        out = c_uint16()
        if n.lib.iobus_server_port(self._handle, byref(out)) != n.OK:
            return None
        return int(out.value)

    @property
    def running(self) -> bool:
        return self.port is not None

    def _native_start(self, host: str, port: int) -> int:
        if self._closed:
            raise RuntimeError("the server is closed")
        # The default namespace always accepts connections, as in
        # python-socketio.
        if "*" not in self._known_namespaces:
            self._touch_namespace("/")
        status = n.lib.iobus_server_start(self._handle, host.encode(), int(port))
        n.check(status, "start")
        with _running_lock:
            _running.add(self)
        bound = self.port
        assert bound is not None
        return bound

    def _native_stop(self) -> None:
        if not self._closed:
            n.lib.iobus_server_stop(self._handle)
        with _running_lock:
            _running.discard(self)

    def _poll(self) -> int:
        """Takes what libiobus has queued (as much as fits in the record
        buffer) and delivers it; the number of records delivered."""
        with self._poll_lock:
            if self._closed:
                return 0
            self._poller = threading.get_ident()
            try:
                count = self._take_records()
            finally:
                self._poller = None
            if self._free_after_poll:
                self._free_native_locked()
        exc, self._exception = self._exception, None
        if exc is not None:
            raise exc
        return count

    def _poll_all(self) -> None:
        while self._poll():
            pass

    def _take_records(self) -> int:
        """One ``iobus_server_poll_records`` call and the delivery of what it
        took (``_poll_lock`` held); the number of records."""
        status = _poll_records(self._handle, *self._records_args)
        buf = self._records
        if status == n.ERR_INVALID_ARGUMENT and self._records_len.value > _RECORDS_CAP:
            # The oldest record alone is larger than the buffer: take it
            # (and whatever fits after it) into one of its size.
            need = self._records_len.value
            buf = ctypes.create_string_buffer(need)
            status = _poll_records(
                self._handle, addressof(buf), need, addressof(self._records_len), addressof(self._records_count)
            )
        if status != n.OK:
            if status != n.ERR_WRONG_STATE:  # (from inside a callback of the library's)
                n.check(status, "poll")
            return 0
        count = int(self._records_count.value)
        if count:
            self._deliver(ctypes.string_at(buf, self._records_len.value))
        return count

    def _free_native(self, wait: float = 5.0) -> None:
        """Frees the handle, unless a poll is running on this very thread (then
        right after it)."""
        if self._closed:
            return
        if self._poller == threading.get_ident():
            self._free_after_poll = True
            return
        if not self._poll_lock.acquire(timeout=wait):
            # A poll that never ends (a handler stuck forever): leaking the
            # handle is better than freeing it under a running handler.
            self.logger.error("iobus: a handler is still running; the server is left allocated")
            return
        try:
            self._free_native_locked()
        finally:
            self._poll_lock.release()

    def _free_native_locked(self) -> None:
        if self._closed:
            return
        # Stopped, the library queues nothing more: what it still has
        # (disconnections, failed acks) is delivered as records here, so
        # that iobus_server_free finds nothing left to call back with.
        n.lib.iobus_server_stop(self._handle)
        self._poller = threading.get_ident()
        try:
            while self._take_records():
                pass
        except Exception:
            self.logger.exception("iobus: delivering the last records before freeing the server failed")
        finally:
            self._poller = None
        self._closed = True
        self._free_after_poll = False
        n.lib.iobus_server_free(self._handle)
        with _running_lock:
            _running.discard(self)
        # Whatever still waits for an ack will not get one.
        acks, self._acks = self._acks, {}
        for complete in acks.values():
            try:
                complete(n.ACK_DISCONNECTED, None)
            except Exception:
                self.logger.exception("iobus: completing an ack at close failed")

    def _close_at_exit(self) -> None:
        raise NotImplementedError

    def __del__(self) -> None:
        try:
            if not getattr(self, "_closed", True) and getattr(self, "_handle", None):
                self._free_native(wait=0.5)
        except Exception:
            pass

    # ---- records from libiobus (iobus_server_poll_records) ----------------------

    def _keep_exception(self, exc: BaseException) -> None:
        """Exceptions that are not a handler's own (KeyboardInterrupt,
        SystemExit) do not stop the delivery of a batch: the first is kept
        and raised once the batch is delivered."""
        if self._exception is None:
            self._exception = exc

    def _log_handler_error(self, what: str, sid: str) -> None:
        self.logger.exception("iobus: %s for socket %s raised; the server keeps serving", what, sid)

    def _deliver(self, data: bytes) -> None:
        """Delivers a batch of records, oldest first. A record whose size
        is impossible ends the batch (its boundaries are lost); one whose
        fields do not add up is skipped, its handle released."""
        header = _HEADER_FROM
        total = len(data)
        pos = 0
        while pos < total:
            size = kind = status = user = handle = 0
            if total - pos >= _RECORD_HEADER:
                size, kind, status, user, handle = header(data, pos)
            end = pos + size
            if size < _RECORD_HEADER or end > total:
                self.logger.error(
                    "iobus: a malformed record (size %d at byte %d of %d); the rest of the batch is dropped",
                    size, pos, total,
                )
                return
            try:
                if kind == n.RECORD_EVENT:
                    self._event_record(data, pos + _RECORD_HEADER, end, user, handle)
                elif kind == n.RECORD_CONNECT:
                    self._connect_record(data, pos + _RECORD_HEADER, end, user, handle)
                elif kind == n.RECORD_DISCONNECT:
                    self._disconnect_record(data, pos + _RECORD_HEADER, end, user)
                elif kind == n.RECORD_ACK:
                    self._ack_record(data, pos + _RECORD_HEADER, end, user, status)
                else:
                    self.logger.error("iobus: a record of unknown kind %d; skipped", kind)
            except BaseException as exc:  # noqa: BLE001 - one record never stops the batch
                self._keep_exception(exc)
            pos = end

    def _event_record(self, data: bytes, p: int, end: int, token: int, ack: int) -> None:
        # The hot path: fields read inline.
        sid = "?"
        try:
            size = _FIELD_FROM(data, p)[0]
            p += 4
            nsp = data[p : p + size]
            p += size
            size = _FIELD_FROM(data, p)[0]
            p += 4
            sid = data[p : p + size].decode()
            p += size
            size = _FIELD_FROM(data, p)[0]
            p += 4
            name_at = p
            p += size
            name_end = p
            size = _FIELD_FROM(data, p)[0]
            p += 4
            text = data[p : p + size].decode()
            p += size
            attachments: List[bytes] = []
            count = _FIELD_FROM(data, p)[0]
            p += 4
            while count and p <= end:
                count -= 1
                size = _FIELD_FROM(data, p)[0]
                p += 4
                attachments.append(data[p : p + size])
                p += size
            if p != end:
                raise ValueError("a malformed event record")
            reg = self._registrations.get(token)
            if reg is None:
                raise LookupError("unknown registration")
            args = decode(text, attachments)
            if reg.kind == "event":
                name = reg.event
            else:
                name = data[name_at:name_end].decode()
            key = reg.namespace
            entry = self._handlers.get(key, _NO_HANDLERS).get(reg.handler_key)
            if entry is not None:
                fn: Handler = entry[0]
                call_args: Tuple[Any, ...] = (sid, *args)
                if reg.pattern:
                    call_args = (nsp.decode(), *call_args)
                if reg.kind == "any":
                    call_args = (name, *call_args)
            else:
                nsobj = self._namespace_objects.get(key)
                if nsobj is None:
                    if ack:
                        _ack_free(ack)
                    return
                fn = nsobj.trigger_event
                call_args = (name, sid, *args)
        except Exception:
            if ack:
                _ack_free(ack)
            self._log_handler_error("reading an event", sid)
            return
        self._invoke(fn, call_args, sid, name, None, ack)

    def _answer(self, ack: int, result: Any) -> None:
        if result is NOT_HANDLED:
            _ack_free(ack)
            return
        try:
            text, blobs = encode(to_args(result))
        except (TypeError, ValueError):
            _ack_free(ack)
            raise
        if blobs:
            status = _ack_send(ack, text, len(text), n.buffer_array(blobs), len(blobs))
        else:
            status = _ack_send(ack, text, len(text), None, 0)
        if status in _ACK_STILL_OWNED:
            _ack_free(ack)
            n.check(status, "acknowledgement")

    def _connect_record(self, data: bytes, p: int, end: int, token: int, req: int) -> None:
        lib = n.lib
        if not req:
            return
        sid = "?"
        try:
            fields = _read_fields(data, p, end, 3, False)
            if fields is None:
                raise ValueError("a malformed connect record")
            nsp, sid = fields[0].decode(), fields[1].decode()
            handshake = json.loads(fields[2]) if fields[2] else {}
            if not isinstance(handshake, dict):
                handshake = {}
            auth = handshake.get("auth", {})
            environ = build_environ(handshake)
            reg = self._registrations.get(token)
            key = reg.namespace if reg else nsp
            entry = self._handlers.get(key, {}).get("connect")
            nsobj = self._namespace_objects.get(key)
            if entry is not None:
                fn, capacity = entry
                call_args: Tuple[Any, ...] = (sid, environ, auth)
                if _is_pattern(key):
                    call_args = (nsp, *call_args)
                call_args = call_args[: max(capacity, 1)]
            elif nsobj is not None and hasattr(nsobj, "on_connect"):
                fn = nsobj.trigger_event
                handler_capacity = _positional_capacity(nsobj.on_connect)
                call_args = ("connect", *(sid, environ, auth)[: max(handler_capacity, 1)])
            else:
                self._accept(req, sid)
                return
        except Exception:
            self._log_handler_error("reading a connection", sid)
            lib.iobus_connect_reject(req, None, None, 0)
            return
        self._pending[sid] = _PendingConnect()
        self._invoke(
            fn,
            call_args,
            sid,
            "connect handler",
            lambda result: self._decide(req, sid, result),
            0,
            on_error=lambda exc: self._refuse(req, sid, exc),
        )

    def _decide(self, req: int, sid: str, result: Any) -> None:
        if result is False:
            self._refuse(req, sid, ConnectionRefusedError())
        else:
            self._accept(req, sid)

    def _accept(self, req: int, sid: str) -> None:
        status = n.lib.iobus_connect_accept(req)
        pending = self._pending.pop(sid, None)
        if status != n.OK:
            self._sessions.pop(sid, None)
            return
        if pending:
            for op in pending.ops:
                try:
                    op()
                except Exception:
                    self._log_handler_error("an operation from the connect handler", sid)

    def _refuse(self, req: int, sid: str, exc: BaseException) -> None:
        self._pending.pop(sid, None)
        self._sessions.pop(sid, None)
        if isinstance(exc, ConnectionRefusedError):
            args = exc.error_args
            message = str(args.get("message", "Connection rejected by server")).encode()
            if "data" in args:
                try:
                    data = encode_plain(args["data"])
                except (TypeError, ValueError):
                    self.logger.exception("iobus: refusal data of socket %s is not JSON", sid)
                    data = None
            else:
                data = None
            status = n.lib.iobus_connect_reject(req, message, data, len(data) if data else 0)
        else:
            status = n.lib.iobus_connect_reject(req, b"Connection rejected by server", None, 0)
        if status != n.OK:  # invalid arguments leave the request ours
            n.lib.iobus_connect_reject(req, None, None, 0)

    def _disconnect_record(self, data: bytes, p: int, end: int, token: int) -> None:
        fields = _read_fields(data, p, end, 4, False)
        if fields is None:
            self.logger.error("iobus: a malformed disconnect record; skipped")
            return
        nsp, sid_raw, reason_raw, rooms_raw = fields
        sid = sid_raw.decode(errors="replace")
        reg = self._registrations.get(token)
        try:
            namespace = nsp.decode()
            reason = reason_raw.decode()
            rooms = json.loads(rooms_raw) if rooms_raw else []
            key = reg.namespace if reg else namespace
            entry = self._handlers.get(key, {}).get("disconnect")
            nsobj = self._namespace_objects.get(key)
            if entry is not None:
                fn, capacity = entry
                call_args: Tuple[Any, ...] = (sid, reason)
                if _is_pattern(key):
                    call_args = (namespace, *call_args)
                call_args = call_args[: max(capacity, 1)]
            elif nsobj is not None and hasattr(nsobj, "on_disconnect"):
                fn = nsobj.trigger_event
                capacity = _positional_capacity(nsobj.on_disconnect)
                call_args = ("disconnect", *(sid, reason)[: max(capacity, 1)])
            else:
                self._forget(sid)
                return
        except Exception:
            self._log_handler_error("reading a disconnection", sid)
            self._forget(sid)
            return
        self._departing[sid] = rooms
        self._invoke(
            fn,
            call_args,
            sid,
            "disconnect handler",
            lambda _result: self._forget(sid),
            0,
            on_error=lambda _exc: self._forget(sid),
        )

    def _forget(self, sid: str) -> None:
        self._departing.pop(sid, None)
        self._sessions.pop(sid, None)

    def _ack_record(self, data: bytes, p: int, end: int, token: int, status: int) -> None:
        complete = self._acks.pop(token, None)
        if complete is None:
            return
        args: Optional[List[Any]] = None
        try:
            fields = _read_fields(data, p, end, 3, True)
            if fields is None:
                raise ValueError("a malformed ack record")
            if status == n.ACK_OK:
                args = decode(fields[2].decode(), fields[3:])
        except Exception:
            # The emit still ends, as if the client had gone.
            self.logger.exception("iobus: reading an acknowledgement failed")
            status = n.ACK_DISCONNECTED
        complete(status, args)

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
        """Runs a handler and hands its result to ``done``; an exception is
        logged (or given to ``on_error``) and the server goes on. ``done``
        None is an event handler: ``what`` is the event's name and the
        result answers ``ack`` (when not 0), which an exception frees."""
        raise NotImplementedError

    def _settle(self, result: Any, sid: str, what: str, done: Optional[Callable[[Any], None]], ack: int) -> None:
        """Hands a handler's result on (see ``_invoke``)."""
        try:
            if done is None:
                if ack:
                    self._answer(ack, result)
            else:
                done(result)
        except Exception:
            self._log_handler_error("answering the " + _describe(what, done), sid)

    def _run_deferred(self, ctx: _HandlerContext) -> None:
        for op in ctx.deferred or ():
            try:
                op()
            except Exception:
                self._log_handler_error("a deferred disconnect", ctx.sid)

    # ---- operations (thread-safe, non-blocking) ---------------------------------

    def _emit(
        self,
        event: str,
        data: Any,
        to: Rooms,
        room: Rooms,
        skip_sid: Rooms,
        namespace: Optional[str],
        callback: Optional[Callable[..., Any]],
    ) -> None:
        if self._closed:
            return
        if not isinstance(event, str):
            raise TypeError("the event name must be a str")
        target = to if to is not None else room
        nsp = normalize_namespace(namespace)
        if nsp == "*":
            raise ValueError("emit needs a concrete namespace, not '*'")
        text, blobs = encode(to_args(data))
        bufs = n.buffer_array(blobs)
        if isinstance(target, str) and target in self._pending:
            # A socket its connect handler has not accepted yet is in no
            # room: reach it directly (sent after the CONNECT answer).
            if callback is not None:
                self._emit_with_ack(
                    target, event, text, bufs, len(blobs), self.ack_timeout, self._callback_ack(callback)
                )
                return
            status = n.lib.iobus_socket_emit(
                self._handle, target.encode(), event.encode(), text, len(text), bufs, len(blobs)
            )
            if status not in _QUIET:
                n.check(status, f"emit {event!r}")
            return
        rooms = [] if target is None else [target] if isinstance(target, str) else list(target)
        skips = [] if skip_sid is None else [skip_sid] if isinstance(skip_sid, str) else list(skip_sid)
        if callback is not None:
            recipients = [s for s in self._fetch(nsp, rooms) if s not in skips]
            for sid in recipients:
                self._emit_with_ack(sid, event, text, bufs, len(blobs), self.ack_timeout, self._callback_ack(callback))
            return
        except_sid = skips[0].encode() if len(skips) == 1 else None
        except_rooms = skips if len(skips) > 1 else []
        status = n.lib.iobus_namespace_emit(
            self._handle,
            nsp.encode(),
            n.string_array(rooms),
            len(rooms),
            n.string_array(except_rooms),
            len(except_rooms),
            except_sid,
            0,
            event.encode(),
            text,
            len(text),
            bufs,
            len(blobs),
        )
        if status not in _QUIET:
            n.check(status, f"emit {event!r}")

    def _callback_ack(self, callback: Callable[..., Any]) -> Callable[[int, Optional[List[Any]]], None]:
        """An ack completion that calls ``callback(*reply)`` when the client
        answers (never on timeout or disconnect, as in python-socketio)."""

        def complete(status: int, args: Optional[List[Any]]) -> None:
            if status == n.ACK_OK and args is not None:
                self._invoke(callback, tuple(args), "?", "emit callback", lambda _r: None, 0)

        return complete

    def _emit_with_ack(
        self,
        sid: str,
        event: str,
        text: bytes,
        bufs: Any,
        count: int,
        timeout: float,
        complete: Callable[[int, Optional[List[Any]]], None],
    ) -> int:
        token = next(self._tokens)
        self._acks[token] = complete
        status = n.lib.iobus_socket_emit_with_ack(
            self._handle,
            sid.encode(),
            event.encode(),
            text,
            len(text),
            bufs,
            count,
            max(0, int(timeout * 1000)),
            _ACK_CB,
            c_void_p(token),
        )
        if status != n.OK:
            self._acks.pop(token, None)
            if status not in _QUIET:
                n.check(status, f"emit {event!r}")
        return int(status)

    def _start_call(
        self,
        event: str,
        data: Any,
        to: Optional[str],
        sid: Optional[str],
        timeout: float,
        complete: Callable[[int, Optional[List[Any]]], None],
    ) -> int:
        target = to if to is not None else sid
        if not isinstance(target, str):
            raise ValueError("call() needs the sid of one client (to= or sid=)")
        if self._closed:
            return n.ERR_NOT_RUNNING
        text, blobs = encode(to_args(data))
        return self._emit_with_ack(target, event, text, n.buffer_array(blobs), len(blobs), timeout, complete)

    @staticmethod
    def _call_result(args: List[Any]) -> Any:
        if len(args) > 1:
            return tuple(args)
        return args[0] if args else None

    def _fetch(self, nsp: str, rooms: List[str]) -> List[str]:
        status, raw = n.take_string(
            lambda out, length: n.lib.iobus_namespace_fetch_sockets(
                self._handle, nsp.encode(), n.string_array(rooms), len(rooms), out, length
            )
        )
        if status != n.OK:
            if status in _QUIET:
                return []
            n.check(status, "participants")
        return list(json.loads(raw)) if raw else []

    def _enter_room(self, sid: str, room: str) -> None:
        if self._closed:
            return
        status = n.lib.iobus_socket_join(self._handle, sid.encode(), room.encode())
        if status not in _QUIET:
            n.check(status, "enter_room")

    def _leave_room(self, sid: str, room: str) -> None:
        if self._closed:
            return
        status = n.lib.iobus_socket_leave(self._handle, sid.encode(), room.encode())
        if status not in _QUIET:
            n.check(status, "leave_room")

    def _close_room(self, room: str, namespace: Optional[str]) -> None:
        if self._closed:
            return
        rooms = [room]
        status = n.lib.iobus_namespace_sockets_leave(
            self._handle, normalize_namespace(namespace).encode(), n.string_array(rooms), 1, room.encode()
        )
        if status not in _QUIET:
            n.check(status, "close_room")

    def _rooms(self, sid: str) -> List[str]:
        if sid in self._departing:
            return list(self._departing[sid])
        if self._closed:
            return []
        status, raw = n.take_string(
            lambda out, length: n.lib.iobus_socket_rooms(self._handle, sid.encode(), out, length)
        )
        if status != n.OK:
            if status in _QUIET:
                return []
            n.check(status, "rooms")
        return list(json.loads(raw)) if raw else []

    def _all_rooms(self, namespace: Optional[str]) -> List[str]:
        if self._closed:
            return []
        nsp = normalize_namespace(namespace).encode()
        status, raw = n.take_string(lambda out, length: n.lib.iobus_namespace_rooms(self._handle, nsp, out, length))
        if status != n.OK:
            if status in _QUIET:
                return []
            n.check(status, "all_rooms")
        return list(json.loads(raw)) if raw else []

    def _disconnect(self, sid: str) -> None:
        if self._closed:
            return
        if sid in self._pending:
            self._pending[sid].ops.append(lambda: self._disconnect(sid))
            return
        ctx = _current_handler.get()
        if ctx is not None and ctx.server is self and ctx.sid == sid and ctx.acking:
            if ctx.deferred is None:
                ctx.deferred = []
            ctx.deferred.append(lambda: self._disconnect(sid))
            return
        status = n.lib.iobus_socket_disconnect(self._handle, sid.encode(), False)
        if status not in _QUIET:
            n.check(status, "disconnect")

    def _environ(self, sid: str) -> Optional[Dict[str, Any]]:
        if self._closed:
            return None
        status, raw = n.take_string(
            lambda out, length: n.lib.iobus_socket_handshake(self._handle, sid.encode(), out, length)
        )
        if status != n.OK or not raw:
            return None
        return build_environ(json.loads(raw))

    # ---- sessions -----------------------------------------------------------------

    def _get_session(self, sid: str) -> Dict[str, Any]:
        return self._sessions.setdefault(sid, {})

    def _save_session(self, sid: str, session: Dict[str, Any]) -> None:
        self._sessions[sid] = session


# ---- reading records -------------------------------------------------------------

_HEADER_FROM = n.RECORD_HEADER.unpack_from
_FIELD_FROM = n.RECORD_FIELD_LEN.unpack_from
_NO_HANDLERS: Dict[str, Tuple[Handler, int]] = {}

# The functions called per record, looked up once.
_poll_records = n.lib.iobus_server_poll_records
_ack_send = n.lib.iobus_ack_send
_ack_free = n.lib.iobus_ack_free


def _read_fields(data: bytes, p: int, end: int, count: int, attachments: bool) -> Optional[List[bytes]]:
    """The ``count`` length-prefixed fields of the record ending at ``end``,
    then (with ``attachments``) a count and that many more; None unless they
    fill the record exactly."""
    fields: List[bytes] = []
    try:
        for _ in range(2 if attachments else 1):
            for _ in range(count):
                size = _FIELD_FROM(data, p)[0]
                p += 4
                if size > end - p:
                    return None
                fields.append(data[p : p + size])
                p += size
            if attachments:
                count = _FIELD_FROM(data, p)[0]
                p += 4
                attachments = False
                if count > (end - p) // 4:
                    return None
    except struct.error:
        return None
    return fields if p == end else None


# ---- callbacks: what libiobus would call -------------------------------------------
#
# libiobus needs a callback to register a handler; with records taken by
# iobus_server_poll_records it does not call them. Only iobus_server_free
# would, for jobs queued after the last records were taken, which the
# servers prevent (they stop the server and take the rest first). Should one
# still come, it is released: a connection is refused, the rest is dropped.
# One set serves every server and lives as long as the module.


def _late_connect(_user_data: Optional[int], req: Optional[int]) -> None:
    try:
        if req:
            n.lib.iobus_connect_reject(req, None, None, 0)
        default_logger.warning("iobus: a connection arrived while its server was being freed; refused")
    except BaseException:  # noqa: BLE001 - nothing may unwind into C
        pass


def _late_event(_user_data: Optional[int], _ev: Optional[int]) -> None:
    try:
        default_logger.warning("iobus: an event arrived while its server was being freed; dropped")
    except BaseException:  # noqa: BLE001
        pass


def _late_disconnect(_user_data: Optional[int], _nsp: bytes, _sid: bytes, _reason: bytes, _rooms: bytes) -> None:
    pass  # the server's sessions go with it


def _late_ack(_user_data: Optional[int], _status: int, _reply: Optional[int]) -> None:
    pass  # the server completes every ack it still waits for when it is freed


_CONNECT_CB = n.CONNECT_CB(_late_connect)
_EVENT_CB = n.EVENT_CB(_late_event)
_DISCONNECT_CB = n.DISCONNECT_CB(_late_disconnect)
_ACK_CB = n.ACK_CB(_late_ack)
