"""iobus for Python: a Socket.IO v5 server in python-socketio's shape whose
protocol, transports and fan-out run in libiobus (Rust), loaded through
ctypes.

    import iobus

    sio = iobus.Server(cors_allowed_origins="*")

    @sio.event
    def chat(sid, msg):
        sio.emit("chat", msg, skip_sid=sid)
        return {"ok": True}          # the acknowledgement

    sio.serve_forever(port=3000)

``iobus.AsyncServer`` is the asyncio flavour. The shared library ships inside
the package; ``IOBUS_LIBRARY`` points at another build.
"""

from __future__ import annotations

from . import exceptions
from ._base import DisconnectReason
from ._native import version as _library_version
from .async_server import AsyncServer
from .exceptions import (
    ConnectionRefusedError,
    DisconnectedError,
    IobusError,
    SocketIOError,
    TimeoutError,
)
from ._options import RedisAdapter
from ._remote import RemoteSocket
from .namespace import AsyncNamespace, Namespace
from .server import Server

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the loaded libiobus (``"MAJOR.MINOR.PATCH"``)."""
    return _library_version()


__all__ = [
    "AsyncNamespace",
    "AsyncServer",
    "ConnectionRefusedError",
    "DisconnectReason",
    "DisconnectedError",
    "IobusError",
    "Namespace",
    "RedisAdapter",
    "RemoteSocket",
    "Server",
    "SocketIOError",
    "TimeoutError",
    "exceptions",
    "library_version",
]
