"""Exceptions of the iobus binding, named as python-socketio names them."""

from __future__ import annotations

from typing import Any, Dict


class SocketIOError(Exception):
    """Base class of the errors the binding raises."""


class IobusError(SocketIOError):
    """A libiobus call failed; ``status`` is its ``iobus_status`` code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TimeoutError(SocketIOError):  # noqa: A001 - python-socketio's name
    """``call()`` got no acknowledgement in time."""


class DisconnectedError(SocketIOError):
    """The socket left before answering a ``call()``, or the server stopped."""


class ConnectionRefusedError(ConnectionError):  # noqa: A001 - python-socketio's name
    """Raised by a ``connect`` handler to refuse the connection.

    ``ConnectionRefusedError("Not authorized", {"retry": False})``: the
    client's ``connect_error`` receives ``message`` and, when given, ``data``
    (several data arguments are sent as a list).
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if not args:
            self.error_args: Dict[str, Any] = {"message": "Connection rejected by server"}
        elif len(args) == 1:
            self.error_args = {"message": str(args[0])}
        elif len(args) == 2:
            self.error_args = {"message": str(args[0]), "data": args[1]}
        else:
            self.error_args = {"message": str(args[0]), "data": list(args[1:])}


__all__ = [
    "ConnectionRefusedError",
    "DisconnectedError",
    "IobusError",
    "SocketIOError",
    "TimeoutError",
]
