"""The C callbacks the binding hands libiobus only because its registration
functions require one: ``iobus_server_on_connect``/``_on_event``/``_on_any``/
``_on_disconnect`` and ``iobus_socket_emit_with_ack`` take a function
pointer, but a server whose records are taken with
``iobus_server_poll_records`` is never called back through it.

Only ``iobus_server_free`` would call them, for jobs queued after the last
records were taken, which the servers prevent (they stop the server and take
the rest first). Should one still come, it is released: a connection is
refused, the rest is dropped. One set serves every server and lives as long
as the module.
"""

from __future__ import annotations

from typing import Optional

from . import _native as n
from ._options import default_logger


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


CONNECT_CB = n.CONNECT_CB(_late_connect)
EVENT_CB = n.EVENT_CB(_late_event)
DISCONNECT_CB = n.DISCONNECT_CB(_late_disconnect)
ACK_CB = n.ACK_CB(_late_ack)
