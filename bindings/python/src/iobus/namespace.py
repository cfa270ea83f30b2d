"""Class-based namespaces, as in python-socketio: subclass ``Namespace`` (or
``AsyncNamespace``), write ``on_<event>`` methods, and register an instance
with ``server.register_namespace(MyNamespace("/chat"))``. The helper
methods default to the instance's namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from ._handlers import positional_capacity
from ._results import NOT_HANDLED

if TYPE_CHECKING:
    from ._selection import Rooms
    from .async_server import AsyncServer
    from .server import Server


class BaseNamespace:
    def __init__(self, namespace: Optional[str] = None) -> None:
        self.namespace = namespace or "/"
        self.server: Any = None

    def _set_server(self, server: Any) -> None:
        self.server = server

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Calls ``on_<event>`` with the arguments, if there is one."""
        handler = getattr(self, "on_" + (event or ""), None)
        if handler is None:
            return NOT_HANDLED
        if event in ("connect", "disconnect"):
            args = args[: max(positional_capacity(handler), 1)]
        return handler(*args)


class Namespace(BaseNamespace):
    """A class-based namespace for ``iobus.Server``."""

    server: "Server"

    def emit(
        self,
        event: str,
        data: Any = None,
        to: "Rooms" = None,
        room: "Rooms" = None,
        skip_sid: "Rooms" = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.server.emit(event, data, to, room, skip_sid, namespace or self.namespace, callback)

    def send(
        self,
        data: Any,
        to: "Rooms" = None,
        room: "Rooms" = None,
        skip_sid: "Rooms" = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.server.send(data, to, room, skip_sid, namespace or self.namespace, callback)

    def call(
        self,
        event: str,
        data: Any = None,
        to: Optional[str] = None,
        sid: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60,
    ) -> Any:
        return self.server.call(event, data, to, sid, namespace or self.namespace, timeout)

    def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        self.server.enter_room(sid, room, namespace or self.namespace)

    def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        self.server.leave_room(sid, room, namespace or self.namespace)

    def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        self.server.close_room(room, namespace or self.namespace)

    def rooms(self, sid: str, namespace: Optional[str] = None) -> List[str]:
        return self.server.rooms(sid, namespace or self.namespace)

    def disconnect(self, sid: str, namespace: Optional[str] = None) -> None:
        self.server.disconnect(sid, namespace or self.namespace)

    def get_session(self, sid: str, namespace: Optional[str] = None) -> Dict[str, Any]:
        return self.server.get_session(sid, namespace or self.namespace)

    def save_session(self, sid: str, session: Dict[str, Any], namespace: Optional[str] = None) -> None:
        self.server.save_session(sid, session, namespace or self.namespace)

    def session(self, sid: str, namespace: Optional[str] = None) -> Any:
        return self.server.session(sid, namespace or self.namespace)


class AsyncNamespace(BaseNamespace):
    """A class-based namespace for ``iobus.AsyncServer``; ``on_<event>``
    methods may be coroutines."""

    server: "AsyncServer"

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: "Rooms" = None,
        room: "Rooms" = None,
        skip_sid: "Rooms" = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None:
        await self.server.emit(event, data, to, room, skip_sid, namespace or self.namespace, callback)

    async def send(
        self,
        data: Any,
        to: "Rooms" = None,
        room: "Rooms" = None,
        skip_sid: "Rooms" = None,
        namespace: Optional[str] = None,
        callback: Optional[Callable[..., Any]] = None,
    ) -> None:
        await self.server.send(data, to, room, skip_sid, namespace or self.namespace, callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: Optional[str] = None,
        sid: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60,
    ) -> Any:
        return await self.server.call(event, data, to, sid, namespace or self.namespace, timeout)

    async def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        await self.server.enter_room(sid, room, namespace or self.namespace)

    async def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        await self.server.leave_room(sid, room, namespace or self.namespace)

    async def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        await self.server.close_room(room, namespace or self.namespace)

    def rooms(self, sid: str, namespace: Optional[str] = None) -> List[str]:
        return self.server.rooms(sid, namespace or self.namespace)

    async def disconnect(self, sid: str, namespace: Optional[str] = None) -> None:
        await self.server.disconnect(sid, namespace or self.namespace)

    async def get_session(self, sid: str, namespace: Optional[str] = None) -> Dict[str, Any]:
        return await self.server.get_session(sid, namespace or self.namespace)

    async def save_session(self, sid: str, session: Dict[str, Any], namespace: Optional[str] = None) -> None:
        await self.server.save_session(sid, session, namespace or self.namespace)

    def session(self, sid: str, namespace: Optional[str] = None) -> Any:
        return self.server.session(sid, namespace or self.namespace)
