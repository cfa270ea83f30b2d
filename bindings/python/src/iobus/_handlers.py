"""Handler registration: ``@server.on``, ``@server.event``,
``register_namespace``, ``on_server_side_emit``, and what each registration
becomes in libiobus (a namespace, a namespace pattern, a connect, event,
catch-all, disconnect or server-side-emit subscription made with
``iobus_server_subscribe``, whose user data is a token that comes back in
every record).

Which handler a record reaches is decided in ``_records``; how a handler's
result goes back, in ``_results``.
"""

from __future__ import annotations

import inspect
import threading
from ctypes import c_void_p
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Set, Tuple, TypeVar

from . import _abi as abi
from . import _native as n

if TYPE_CHECKING:
    from .namespace import BaseNamespace

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[..., Any]


def positional_capacity(fn: Callable[..., Any]) -> int:
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


def is_pattern(key: str) -> bool:
    return "*" in key


def c_pattern(key: str) -> str:
    """The namespace libiobus knows a handler key by ("*" is every one)."""
    return "/*" if key == "*" else key


class Registration:
    """What a registration's user data stands for."""

    __slots__ = ("kind", "namespace", "event", "handler_key", "pattern")

    def __init__(self, kind: str, namespace: str, event: str = "") -> None:
        self.kind = kind  # "event", "any", "connect", "disconnect", "server-side"
        self.namespace = namespace  # the key handlers are stored under ("/", "/chat", "*", "/room-*")
        self.event = event
        # The handler an event of this registration goes to.
        self.handler_key = event if kind == "event" else "*"
        # Handlers of a pattern receive the concrete namespace first.
        self.pattern = is_pattern(namespace)


class HandlerRegistry:
    """The handlers of a server and their subscriptions in libiobus (a part
    of ``BaseServer``). Uses the server's native handle and its token
    counter."""

    _handle: c_void_p
    _tokens: Iterator[int]

    def _init_registry(self) -> None:
        self._lock = threading.RLock()
        # handler key → event ("connect", "disconnect", "*", a name) → (handler, positional capacity)
        self._handlers: Dict[str, Dict[str, Tuple[Handler, int]]] = {}
        self._namespace_objects: Dict[str, "BaseNamespace"] = {}
        self._known_namespaces: Set[str] = set()
        # (handler key, "connect"/"disconnect"/"*"/event name, server-side?)
        self._c_registered: Set[Tuple[str, str, bool]] = set()
        # token (user data of a subscription) → what it stands for
        self._registrations: Dict[int, Registration] = {}
        # handler key → event name ("*": every other) → (handler, positional
        # capacity), for the events other servers emit to a namespace
        self._server_side_handlers: Dict[str, Dict[str, Tuple[Handler, int]]] = {}

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

    def on_server_side_emit(
        self, event: str, handler: Optional[Handler] = None, namespace: Optional[str] = None
    ) -> Callable[[F], F]:
        """Registers a handler for ``event`` when another server of a
        cluster emits it to ``namespace`` with ``server_side_emit`` (never
        an event from a client; ``"*"``: every event without a handler of
        its own, which then comes first). The handler receives the event's
        arguments (after the namespace, for a pattern); its return value
        answers a sender that asked for replies. With libiobus's default
        in-memory adapter (one server) no such event ever arrives."""
        if not isinstance(event, str) or not event:
            raise TypeError("the event name must be a non-empty str")
        key = normalize_namespace(namespace)

        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError("a handler must be callable")
            with self._lock:
                self._server_side_handlers.setdefault(key, {})[event] = (fn, positional_capacity(fn))
                self._touch_namespace(key)
                self._c_register(key, "*", server_side=True)
            return fn

        if handler is not None:
            register(handler)
        return register

    def _is_async(self) -> bool:
        return False

    def _register(self, key: str, event: str, fn: Handler) -> None:
        if not callable(fn):
            raise TypeError("a handler must be callable")
        with self._lock:
            self._handlers.setdefault(key, {})[event] = (fn, positional_capacity(fn))
            self._touch_namespace(key)
            if event != "disconnect":
                self._c_register(key, event)

    def _touch_namespace(self, key: str) -> None:
        """Makes the namespace exist in libiobus, with the disconnect
        subscription that also clears sessions."""
        with self._lock:
            if key in self._known_namespaces:
                return
            if is_pattern(key):
                n.check(
                    n.lib.iobus_server_add_namespace_pattern(self._handle, c_pattern(key).encode()),
                    f"namespace pattern {key}",
                )
            self._known_namespaces.add(key)
            self._c_register(key, "disconnect")

    def _c_register(self, key: str, event: str, server_side: bool = False) -> None:
        """Subscribes to ``event`` of ``key`` in libiobus once (``"connect"``,
        ``"disconnect"``, ``"*"`` or an event name; with ``server_side``,
        every server-side emit): its records come with a token that names
        the registration."""
        marker = (key, event, server_side)
        if marker in self._c_registered:
            return
        token = next(self._tokens)
        name = None
        if server_side:
            registration, kind = Registration("server-side", key), abi.RECORD_SERVER_SIDE_EMIT
        elif event == "connect":
            registration, kind = Registration("connect", key), abi.RECORD_CONNECT
        elif event == "disconnect":
            registration, kind = Registration("disconnect", key), abi.RECORD_DISCONNECT
        elif event == "*":
            registration, kind = Registration("any", key), abi.RECORD_EVENT
        else:
            registration, kind = Registration("event", key, event), abi.RECORD_EVENT
            name = event.encode()
        self._registrations[token] = registration
        status = n.lib.iobus_server_subscribe(self._handle, c_pattern(key).encode(), kind, name, c_void_p(token))
        n.check(status, f"registering {event!r} on {key}")
        self._c_registered.add(marker)
