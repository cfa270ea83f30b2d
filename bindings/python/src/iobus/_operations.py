"""Operations on sockets, rooms and namespaces, as python-socketio offers
them: emit (to a sid, rooms, or a namespace, minus skipped sids, with or
without an ack callback), call, join/leave/close rooms, the rooms of a
socket or a namespace, disconnect, the handshake environ, sessions.

All are thread-safe and non-blocking (libiobus's calls are); the servers wrap
them as plain methods or coroutines. An operation on a socket that is gone,
or on a server that is not running, does nothing, as in python-socketio.
"""

from __future__ import annotations

import json
from ctypes import c_void_p
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

from . import _abi as abi
from . import _late_callbacks as late
from . import _native as n
from ._environ import build_environ
from ._handlers import normalize_namespace
from ._payload import encode, to_args
from ._results import HandlerContext, PendingConnect, current_handler

Rooms = Union[str, Iterable[str], None]

# How an emit-with-ack ends: (iobus_ack_status, the reply's arguments or None).
AckCompletion = Callable[[int, Optional[List[Any]]], None]

# Statuses of an operation whose target is gone or whose server is not
# running: the operation does nothing.
_QUIET = frozenset({abi.ERR_UNKNOWN_SOCKET, abi.ERR_DISCONNECTED, abi.ERR_NOT_RUNNING})


class Operations:
    """What a host does to sockets, rooms and namespaces (a part of
    ``BaseServer``). Uses the native handle, the token counter, the pending
    connections and the rooms of departing sockets."""

    _handle: c_void_p
    _closed: bool
    _tokens: Iterator[int]
    _pending: Dict[str, PendingConnect]
    _departing: Dict[str, List[str]]
    _invoke: Callable[..., None]

    def _init_operations(self, ack_timeout: float) -> None:
        self.ack_timeout = float(ack_timeout)
        # token (user data of an emit-with-ack) → its completion
        self._acks: Dict[int, AckCompletion] = {}
        self._sessions: Dict[str, Dict[str, Any]] = {}

    # ---- emitting ----------------------------------------------------------------

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
            # libiobus has no broadcast emit-with-ack: one emit per
            # recipient, recipients listed and filtered here.
            recipients = [s for s in self._fetch(nsp, rooms) if s not in skips]
            for sid in recipients:
                self._emit_with_ack(sid, event, text, bufs, len(blobs), self.ack_timeout, self._callback_ack(callback))
            return
        # iobus_namespace_emit excepts one sid; several are excepted as
        # rooms (every socket is in the room named after its sid).
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

    def _callback_ack(self, callback: Callable[..., Any]) -> AckCompletion:
        """An ack completion that calls ``callback(*reply)`` when the client
        answers (never on timeout or disconnect, as in python-socketio)."""

        def complete(status: int, args: Optional[List[Any]]) -> None:
            if status == abi.ACK_OK and args is not None:
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
        complete: AckCompletion,
    ) -> int:
        token = next(self._tokens)
        self._acks[token] = complete
        # The completion arrives as an IOBUS_RECORD_ACK record with this
        # token; the callback is never called (see _late_callbacks).
        status = n.lib.iobus_socket_emit_with_ack(
            self._handle,
            sid.encode(),
            event.encode(),
            text,
            len(text),
            bufs,
            count,
            max(0, int(timeout * 1000)),
            late.ACK_CB,
            c_void_p(token),
        )
        if status != abi.OK:
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
        complete: AckCompletion,
    ) -> int:
        target = to if to is not None else sid
        if not isinstance(target, str):
            raise ValueError("call() needs the sid of one client (to= or sid=)")
        if self._closed:
            return abi.ERR_NOT_RUNNING
        text, blobs = encode(to_args(data))
        return self._emit_with_ack(target, event, text, n.buffer_array(blobs), len(blobs), timeout, complete)

    @staticmethod
    def _call_result(args: List[Any]) -> Any:
        if len(args) > 1:
            return tuple(args)
        return args[0] if args else None

    # ---- rooms ---------------------------------------------------------------------

    def _fetch(self, nsp: str, rooms: List[str]) -> List[str]:
        status, raw = n.take_string(
            lambda out, length: n.lib.iobus_namespace_fetch_sockets(
                self._handle, nsp.encode(), n.string_array(rooms), len(rooms), out, length
            )
        )
        if status != abi.OK:
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
            # In its disconnect handler a socket has left its rooms already;
            # python-socketio still names them.
            return list(self._departing[sid])
        if self._closed:
            return []
        status, raw = n.take_string(
            lambda out, length: n.lib.iobus_socket_rooms(self._handle, sid.encode(), out, length)
        )
        if status != abi.OK:
            if status in _QUIET:
                return []
            n.check(status, "rooms")
        return list(json.loads(raw)) if raw else []

    def _all_rooms(self, namespace: Optional[str]) -> List[str]:
        if self._closed:
            return []
        nsp = normalize_namespace(namespace).encode()
        status, raw = n.take_string(lambda out, length: n.lib.iobus_namespace_rooms(self._handle, nsp, out, length))
        if status != abi.OK:
            if status in _QUIET:
                return []
            n.check(status, "all_rooms")
        return list(json.loads(raw)) if raw else []

    # ---- sockets ---------------------------------------------------------------------

    def _disconnect(self, sid: str) -> None:
        if self._closed:
            return
        if sid in self._pending:
            self._pending[sid].ops.append(lambda: self._disconnect(sid))
            return
        ctx: Optional[HandlerContext] = current_handler.get()
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
        if status != abi.OK or not raw:
            return None
        return build_environ(json.loads(raw))

    # ---- sessions ----------------------------------------------------------------------

    def _get_session(self, sid: str) -> Dict[str, Any]:
        return self._sessions.setdefault(sid, {})

    def _save_session(self, sid: str, session: Dict[str, Any]) -> None:
        self._sessions[sid] = session
