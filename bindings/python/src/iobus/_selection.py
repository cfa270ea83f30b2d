"""Who an operation is for: python-socketio's ``to``/``room``, ``skip_sid``
and ``namespace`` arguments as one ``iobus_selection`` — the sockets of a
namespace in any of the rooms (none: all of them), minus the skipped sids.
libiobus does the choosing; this module only translates.
"""

from __future__ import annotations

import math
from typing import Iterable, List, Optional, Union

from . import _native as n
from ._handlers import normalize_namespace

# A room, a sid (the name of that socket's own room), or several.
Rooms = Union[str, Iterable[str], None]


def names(value: Rooms, what: str) -> List[str]:
    """``None`` → none, a str → itself, anything else → its items (str)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be a str or a list of str, not {type(item).__name__}")
    return items


def concrete_namespace(namespace: Optional[str]) -> str:
    """The namespace an operation acts on; a pattern acts on none."""
    nsp = normalize_namespace(namespace)
    if "*" in nsp:
        raise ValueError(f"an operation needs a concrete namespace, not the pattern {nsp!r}")
    return nsp


def milliseconds(seconds: float) -> int:
    """A timeout in whole milliseconds, never rounded down to 0 (which
    libiobus reads as "no timeout") unless it is 0."""
    if seconds <= 0:
        return 0
    return max(1, math.ceil(seconds * 1000))


class Selected:
    """An ``iobus_selection`` and the arrays it points into (kept alive as
    long as this object). Pass ``.struct`` to the ``iobus_selection_*``
    functions."""

    __slots__ = ("namespace", "rooms", "skip", "_arrays", "struct")

    def __init__(self, namespace: str, rooms: List[str], skip: List[str], timeout: float = 0) -> None:
        self.namespace = namespace
        self.rooms = rooms
        self.skip = skip
        room_array = n.string_array(rooms)
        skip_array = n.string_array(skip)
        self._arrays = (room_array, skip_array)
        self.struct = n.Selection(
            nsp=namespace.encode(),
            rooms=room_array,
            room_count=len(rooms),
            except_rooms=None,
            except_room_count=0,
            except_sids=skip_array,
            except_sid_count=len(skip),
            flags=0,
            timeout_ms=milliseconds(timeout),
        )


def select(
    namespace: Optional[str], to: Rooms = None, skip_sid: Rooms = None, timeout: float = 0
) -> Selected:
    """The sockets of ``namespace`` in any of ``to`` (none: every one),
    minus ``skip_sid``; ``timeout`` (seconds) bounds an emit with acks."""
    return Selected(concrete_namespace(namespace), names(to, "to"), names(skip_sid, "skip_sid"), timeout)
