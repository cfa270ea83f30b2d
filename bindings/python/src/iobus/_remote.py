"""``RemoteSocket``: a socket as ``fetch_sockets()`` describes it (Socket.IO's
``RemoteSocket``): its sid, namespace, rooms, data and handshake, on this
server or, through a cluster adapter, on another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from ._environ import build_environ


@dataclass(frozen=True)
class RemoteSocket:
    """A snapshot of one socket taken by ``fetch_sockets()``.

    ``rooms`` is sorted and includes the socket's own room (its sid);
    ``data`` is its session as last saved (``save_session``, the end of
    ``with server.session(sid)``), ``None`` before that; ``handshake`` is
    the raw handshake (``auth``, ``query``, ``headers``, ``address``, …)
    and ``environ`` the WSGI-style environ built from it."""

    sid: str
    namespace: str
    rooms: List[str] = field(default_factory=list)
    data: Any = None
    handshake: Dict[str, Any] = field(default_factory=dict)

    @property
    def environ(self) -> Dict[str, Any]:
        return build_environ(self.handshake)

    @classmethod
    def from_json(cls, namespace: str, value: Dict[str, Any]) -> "RemoteSocket":
        """From one element of libiobus's answer
        (``{"id", "handshake", "rooms", "data"}``)."""
        rooms = value.get("rooms")
        handshake = value.get("handshake")
        return cls(
            sid=str(value.get("id", "")),
            namespace=namespace,
            rooms=[r for r in rooms if isinstance(r, str)] if isinstance(rooms, list) else [],
            data=value.get("data"),
            handshake=handshake if isinstance(handshake, dict) else {},
        )
