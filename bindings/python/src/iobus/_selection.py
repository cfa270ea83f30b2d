"""Who an operation is for: python-socketio's ``to``/``room``, ``skip_sid``
and ``namespace`` arguments as one ``iobus_selection`` — the sockets of a
namespace in any of the rooms (none: all of them), minus the skipped sids.
libiobus does the choosing; this module only translates.
"""

from __future__ import annotations

import math
from ctypes import c_char_p
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

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


# Namespace arguments as given → the name libiobus gets (few distinct ones).
_NAMESPACES: Dict[Optional[str], bytes] = {}
_ONE = c_char_p * 1


def _namespace_bytes(namespace: Optional[str]) -> bytes:
    known = _NAMESPACES.get(namespace)
    if known is None:
        known = concrete_namespace(namespace).encode()
        if len(_NAMESPACES) >= 1024:
            _NAMESPACES.clear()
        _NAMESPACES[namespace] = known
    return known


def _array(value: Rooms, what: str) -> Tuple[Any, int]:
    """A ``const char *const *`` and its length (NULL, 0 for none)."""
    if value is None:
        return None, 0
    if type(value) is str:  # the common case, kept cheap
        return _ONE(value.encode()), 1
    items = names(value, what)
    if not items:
        return None, 0
    return (c_char_p * len(items))(*[item.encode() for item in items]), len(items)


def select(namespace: Optional[str], to: Rooms = None, skip_sid: Rooms = None, timeout: float = 0) -> Any:
    """The ``iobus_selection`` of the sockets of ``namespace`` in any of
    ``to`` (none: every one), minus ``skip_sid``; ``timeout`` (seconds)
    bounds an emit with acks. The structure keeps the arrays it points
    into alive (ctypes does)."""
    rooms, room_count = _array(to, "to")
    skip, skip_count = _array(skip_sid, "skip_sid")
    ms = milliseconds(timeout) if timeout else 0
    return n.Selection(_namespace_bytes(namespace), rooms, room_count, None, 0, skip, skip_count, 0, ms)
