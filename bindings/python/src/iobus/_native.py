"""The C face of libiobus as ctypes sees it: finding and loading the shared
library, the prototypes of every function the binding calls, the
structures passed in (``iobus_buf``, ``iobus_selection``), and small helpers
to pass arrays in and read strings the library hands out. The ABI's numbers
and the record layout are in ``_abi``.

The binding registers no C callback: handlers are subscriptions and
completions are asked for without a callback, so everything libiobus owes
Python arrives as records (``iobus_server_poll_records``).

Nothing here knows about Socket.IO semantics; the server modules build on it.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    POINTER,
    Structure,
    byref,
    c_bool,
    c_char_p,
    c_int,
    c_int32,
    c_size_t,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Optional

from ._abi import OK
from .exceptions import IobusError

LIBRARY_NAME = "libiobus.so"


class Buf(Structure):
    """``iobus_buf``: one binary attachment."""

    _fields_ = [("data", c_char_p), ("len", c_size_t)]


class Selection(Structure):
    """``iobus_selection``: who an operation is for (the sockets of one
    namespace in any of ``rooms``, minus those in ``except_rooms``, minus
    ``except_sids``)."""

    _fields_ = [
        ("nsp", c_char_p),
        ("rooms", POINTER(c_char_p)),
        ("room_count", c_size_t),
        ("except_rooms", POINTER(c_char_p)),
        ("except_room_count", c_size_t),
        ("except_sids", POINTER(c_char_p)),
        ("except_sid_count", c_size_t),
        ("flags", c_uint32),
        ("timeout_ms", c_uint64),
    ]


_P = c_void_p  # opaque handles travel as plain pointers
# A completion callback: always NULL, since every completion is taken as a
# record (IOBUS_DISPATCH_POLL); the call's user data says whose it is.
_NO_CB = c_void_p
_STR_OUT = POINTER(c_void_p)
_SIZE_OUT = POINTER(c_size_t)
_STRS = POINTER(c_char_p)
_BUFS = POINTER(Buf)
_SEL = POINTER(Selection)

# Every function the binding calls: return type, argument types (checked
# against include/iobus.h by tests/test_abi.py).
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "iobus_last_error": (c_char_p, []),
    "iobus_version": (c_char_p, []),
    "iobus_status_str": (c_char_p, [c_int32]),
    "iobus_string_free": (None, [c_void_p]),
    "iobus_config_new": (_P, []),
    "iobus_config_free": (None, [_P]),
    "iobus_config_set_path": (c_int, [_P, c_char_p]),
    "iobus_config_set_ping_interval": (c_int, [_P, c_uint64]),
    "iobus_config_set_ping_timeout": (c_int, [_P, c_uint64]),
    "iobus_config_set_max_payload": (c_int, [_P, c_size_t]),
    "iobus_config_set_upgrade_timeout": (c_int, [_P, c_uint64]),
    "iobus_config_set_connect_timeout": (c_int, [_P, c_uint64]),
    "iobus_config_set_transports": (c_int, [_P, c_bool, c_bool]),
    "iobus_config_set_allow_upgrades": (c_int, [_P, c_bool]),
    "iobus_config_add_cors_origin": (c_int, [_P, c_char_p]),
    "iobus_config_set_cors_credentials": (c_int, [_P, c_bool]),
    "iobus_config_set_cors_max_age": (c_int, [_P, c_uint64]),
    "iobus_config_set_connection_state_recovery": (c_int, [_P, c_bool, c_uint64, c_bool, c_size_t]),
    "iobus_config_set_max_attachments": (c_int, [_P, c_size_t]),
    "iobus_config_set_max_buffered": (c_int, [_P, c_size_t]),
    "iobus_config_set_http_header_timeout": (c_int, [_P, c_uint64]),
    "iobus_config_set_http_keep_alive_timeout": (c_int, [_P, c_uint64]),
    "iobus_config_set_write_timeout": (c_int, [_P, c_uint64]),
    "iobus_config_set_max_header_bytes": (c_int, [_P, c_size_t]),
    "iobus_config_set_max_connections": (c_int, [_P, c_size_t]),
    "iobus_config_set_worker_threads": (c_int, [_P, c_size_t]),
    "iobus_config_set_batch_scheduling": (c_int, [_P, c_bool]),
    "iobus_config_set_serve_client": (c_int, [_P, c_bool]),
    "iobus_config_set_client_dir": (c_int, [_P, c_char_p]),
    "iobus_config_set_static_dir": (c_int, [_P, c_char_p]),
    "iobus_config_set_dispatch": (c_int, [_P, c_int32]),
    "iobus_config_set_redis": (c_int, [_P, c_char_p, c_char_p, c_int32, c_uint64]),
    "iobus_config_set_host_queue_limit": (c_int, [_P, c_size_t]),
    "iobus_config_set_free_timeout": (c_int, [_P, c_uint64]),
    "iobus_ack_send": (c_int, [_P, c_char_p, c_size_t, _BUFS, c_size_t]),
    "iobus_ack_free": (None, [_P]),
    "iobus_connect_accept": (c_int, [_P]),
    "iobus_connect_reject": (c_int, [_P, c_char_p, c_char_p, c_size_t]),
    "iobus_server_new": (c_int, [_P, POINTER(c_void_p)]),
    "iobus_server_start": (c_int, [_P, c_char_p, c_uint16]),
    "iobus_server_port": (c_int, [_P, POINTER(c_uint16)]),
    "iobus_server_stop": (c_int, [_P]),
    "iobus_server_free": (None, [_P]),
    "iobus_server_poll_fd": (c_int32, [_P]),
    # buf and the two out-parameters travel as plain addresses.
    "iobus_server_poll_records": (c_int, [_P, c_void_p, c_size_t, c_void_p, c_void_p]),
    "iobus_server_add_namespace_pattern": (c_int, [_P, c_char_p]),
    "iobus_server_subscribe": (c_int, [_P, c_char_p, c_int32, c_char_p, c_void_p]),
    "iobus_socket_emit": (c_int, [_P, c_char_p, c_char_p, c_char_p, c_size_t, _BUFS, c_size_t]),
    "iobus_socket_emit_with_ack": (
        c_int,
        [_P, c_char_p, c_char_p, c_char_p, c_size_t, _BUFS, c_size_t, c_uint64, _NO_CB, c_void_p],
    ),
    "iobus_socket_join": (c_int, [_P, c_char_p, c_char_p]),
    "iobus_socket_leave": (c_int, [_P, c_char_p, c_char_p]),
    "iobus_socket_disconnect": (c_int, [_P, c_char_p, c_bool]),
    "iobus_socket_rooms": (c_int, [_P, c_char_p, _STR_OUT, _SIZE_OUT]),
    "iobus_socket_handshake": (c_int, [_P, c_char_p, _STR_OUT, _SIZE_OUT]),
    "iobus_socket_set_data": (c_int, [_P, c_char_p, c_char_p, c_size_t]),
    "iobus_socket_data": (c_int, [_P, c_char_p, _STR_OUT, _SIZE_OUT]),
    "iobus_selection_emit": (c_int, [_P, _SEL, c_char_p, c_char_p, c_size_t, _BUFS, c_size_t]),
    "iobus_selection_emit_with_ack": (
        c_int,
        [_P, _SEL, c_char_p, c_char_p, c_size_t, _BUFS, c_size_t, _NO_CB, c_void_p],
    ),
    "iobus_selection_fetch_sockets": (c_int, [_P, _SEL, _NO_CB, c_void_p]),
    "iobus_selection_leave": (c_int, [_P, _SEL, _STRS, c_size_t]),
    "iobus_namespace_fetch_sockets": (c_int, [_P, c_char_p, _STRS, c_size_t, _STR_OUT, _SIZE_OUT]),
    "iobus_namespace_all_rooms": (c_int, [_P, c_char_p, _NO_CB, c_void_p]),
    "iobus_namespace_server_side_emit": (c_int, [_P, c_char_p, c_char_p, c_char_p, c_size_t, _BUFS, c_size_t]),
    "iobus_namespace_server_side_emit_with_ack": (
        c_int,
        [_P, c_char_p, c_char_p, c_char_p, c_size_t, _BUFS, c_size_t, c_uint64, _NO_CB, c_void_p],
    ),
}


def _candidates() -> list[Path]:
    override = os.environ.get("IOBUS_LIBRARY")
    if override:
        return [Path(override)]
    here = Path(__file__).resolve().parent
    found = [here / LIBRARY_NAME]
    # A source checkout used without installing (src/iobus → repository root).
    root = here.parent.parent.parent.parent
    if (root / "Cargo.toml").is_file():
        found += [root / "target" / "release" / LIBRARY_NAME, root / "target" / "debug" / LIBRARY_NAME]
    return found


def _load() -> ctypes.CDLL:
    tried = []
    for path in _candidates():
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            break
        tried.append(str(path))
    else:
        raise ImportError(
            "iobus: the shared library was not found (looked at " + ", ".join(tried) + "); reinstall the package "
            "with `pip install ./bindings/python` or set IOBUS_LIBRARY to a built libiobus.so"
        )
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = _load()


def last_error() -> str:
    raw = lib.iobus_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def check(status: int, what: str) -> None:
    """Raises ``IobusError`` for a failed status."""
    if status != OK:
        raise IobusError(status, f"{what}: {last_error() or status_name(status)}")


def status_name(status: int) -> str:
    raw = lib.iobus_status_str(status)
    return raw.decode() if raw else str(status)


def version() -> str:
    raw: bytes = lib.iobus_version()
    return raw.decode()


def take_string(fn: Any, *args: Any) -> tuple[int, Optional[bytes]]:
    """Calls a function that returns a string through ``char **``/``size_t *``
    out-parameters, copies the string and frees the library's copy."""
    out = c_void_p()
    length = c_size_t()
    status = fn(*args, byref(out), byref(length))
    if status != OK:
        return status, None
    try:
        return status, ctypes.string_at(out.value, length.value) if out.value else b""
    finally:
        lib.iobus_string_free(out)


def string_array(items: list[str]) -> Any:
    """A ``const char *const *`` holding ``items`` (NULL for none)."""
    if not items:
        return None
    return (c_char_p * len(items))(*[s.encode("utf-8") for s in items])


def buffer_array(blobs: list[bytes]) -> Any:
    """An ``iobus_buf`` array over ``blobs`` (NULL for none). The array keeps
    the bytes objects alive; the library copies them before returning."""
    if not blobs:
        return None
    return (Buf * len(blobs))(*[Buf(b, len(b)) for b in blobs])
