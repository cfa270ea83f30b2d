"""Operations on sockets, rooms and namespaces, as python-socketio offers
them: emit (to a sid, rooms, or a namespace, minus skipped sids, with or
without an ack callback), call, join/leave/close rooms, the rooms of a
socket or a namespace, the sockets a selection matches, disconnect, the
handshake environ, sessions (kept in libiobus as the socket's data), and
server-side emits to the other servers of a cluster.

Each is one libiobus call: who an emit reaches, and the collection of every
recipient's ack, are libiobus's (``iobus_selection_*``). What libiobus
answers later (acks, queries) comes back as a record carrying the token the
call was given; ``_completions`` says what each token is waiting for.

All are thread-safe and non-blocking (libiobus's calls are); the servers wrap
them as plain methods or coroutines and decide how to wait for an answer.
An operation on a socket that is gone, or on a server that is not running,
does nothing, as in python-socketio.
"""

from __future__ import annotations

import json
import logging
from ctypes import c_void_p
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import _abi as abi
from . import _native as n
from ._environ import build_environ
from ._payload import encode, encode_plain, to_args
from ._remote import RemoteSocket
from ._results import HandlerContext, PendingConnect, current_handler
from ._selection import Rooms, concrete_namespace, milliseconds, names, select

# How an emit-with-ack to one socket ends: (iobus_ack_status, the reply's
# arguments or None).
AckCompletion = Callable[[int, Optional[List[Any]]], None]
# How an emit with acks to many ends: (iobus_ack_status, every reply's
# arguments in arrival order, the number of replies expected).
BroadcastCompletion = Callable[[int, List[List[Any]], int], None]
# The answer to a query: the decoded JSON value.
QueryCompletion = Callable[[Any], None]

# Statuses of an operation whose target is gone or whose server is not
# running: the operation does nothing.
_QUIET = frozenset({abi.ERR_UNKNOWN_SOCKET, abi.ERR_DISCONNECTED, abi.ERR_NOT_RUNNING})


def call_result(args: List[Any]) -> Any:
    """An acknowledgement as ``call()`` returns it: its single argument, a
    tuple of several, or None."""
    if len(args) > 1:
        return tuple(args)
    return args[0] if args else None


class Operations:
    """What a host does to sockets, rooms and namespaces (a part of
    ``BaseServer``). Uses the native handle, the token counter, the pending
    connections and the rooms of departing sockets."""

    logger: logging.Logger
    _handle: c_void_p
    _closed: bool
    _tokens: Iterator[int]
    _pending: Dict[str, PendingConnect]
    _departing: Dict[str, List[str]]
    _invoke: Callable[..., None]

    def _init_operations(self, ack_timeout: float, recovery: bool) -> None:
        self.ack_timeout = float(ack_timeout)
        # Whether libiobus keeps dropped sockets (connection state recovery).
        self._recovery = recovery
        # token (user data of a call libiobus answers with a record) → the
        # completion, and its arguments should the server go first
        self._completions: Dict[int, Tuple[Callable[..., None], Tuple[Any, ...]]] = {}
        self._sessions: Dict[str, Dict[str, Any]] = {}

    def _expect(self, complete: Callable[..., None], gone: Tuple[Any, ...]) -> int:
        """A token whose record will be handed to ``complete``."""
        token = next(self._tokens)
        self._completions[token] = (complete, gone)
        return token

    def _issued(self, token: int, status: int, what: str) -> bool:
        """Whether the call that was given ``token`` was accepted; if not,
        nothing will answer it, and an error other than a missing target
        or a stopped server is raised."""
        if status == abi.OK:
            return True
        self._completions.pop(token, None)
        if status not in _QUIET:
            n.check(status, what)
        return False

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
        text, blobs = encode(to_args(data))
        bufs = n.buffer_array(blobs)
        if isinstance(target, str) and target in self._pending:
            # A socket its connect handler has not accepted yet is in no
            # room: reach it directly (sent after the CONNECT answer).
            if callback is not None:
                self._emit_with_ack(target, event, text, bufs, len(blobs), self.ack_timeout, self._ack_callback(callback))
                return
            status = n.lib.iobus_socket_emit(
                self._handle, target.encode(), event.encode(), text, len(text), bufs, len(blobs)
            )
            if status not in _QUIET:
                n.check(status, f"emit {event!r}")
            return
        sel = select(namespace, target, skip_sid, self.ack_timeout if callback is not None else 0)
        if callback is None:
            status = n.lib.iobus_selection_emit(
                self._handle, sel, event.encode(), text, len(text), bufs, len(blobs)
            )
            if status not in _QUIET:
                n.check(status, f"emit {event!r}")
            return
        # One emit, one ack id for every recipient; libiobus collects the
        # replies and answers once, when the last recipient answered or
        # left, or ack_timeout passed.
        token = self._expect(self._replies_callback(callback), (abi.ACK_DISCONNECTED, [], 0))
        status = n.lib.iobus_selection_emit_with_ack(
            self._handle, sel, event.encode(), text, len(text), bufs, len(blobs), None, c_void_p(token)
        )
        self._issued(token, status, f"emit {event!r}")

    def _ack_callback(self, callback: Callable[..., Any]) -> AckCompletion:
        """An ack completion that calls ``callback(*reply)`` when the client
        answers (never on timeout or disconnect, as in python-socketio)."""

        def complete(status: int, args: Optional[List[Any]]) -> None:
            if status == abi.ACK_OK and args is not None:
                self._invoke(callback, tuple(args), "?", "emit callback", lambda _r: None, 0)

        return complete

    def _replies_callback(self, callback: Callable[..., Any]) -> BroadcastCompletion:
        """A completion of an emit to many that calls ``callback(*reply)``
        once per reply that came, in arrival order."""

        def complete(_status: int, replies: List[List[Any]], _expected: int) -> None:
            for reply in replies:
                self._invoke(callback, tuple(reply), "?", "emit callback", lambda _r: None, 0)

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
        token = self._expect(complete, (abi.ACK_DISCONNECTED, None))
        status = n.lib.iobus_socket_emit_with_ack(
            self._handle,
            sid.encode(),
            event.encode(),
            text,
            len(text),
            bufs,
            count,
            milliseconds(timeout),
            None,
            c_void_p(token),
        )
        self._issued(token, status, f"emit {event!r}")
        return int(status)

    def _start_call(
        self,
        event: str,
        data: Any,
        to: Optional[str],
        sid: Optional[str],
        namespace: Optional[str],
        timeout: float,
        complete: AckCompletion,
    ) -> int:
        """Emits to one client and asks for its ack; the status of the
        emit. ``complete`` is called once unless it failed."""
        target = to if to is not None else sid
        if not isinstance(target, str):
            raise ValueError("call() needs the sid of one client (to= or sid=)")
        if self._closed:
            return abi.ERR_NOT_RUNNING
        text, blobs = encode(to_args(data))
        status = self._emit_with_ack(target, event, text, n.buffer_array(blobs), len(blobs), timeout, complete)
        if status == abi.ERR_UNKNOWN_SOCKET and self._fetch(concrete_namespace(namespace), [target]):
            raise ValueError(
                f"call() waits for one client's answer and {target!r} is a room: "
                "use emit(..., to=room, callback=...) for the answers of its members"
            )
        return status

    def _server_side_emit(
        self,
        event: str,
        data: Any,
        namespace: Optional[str],
        callback: Optional[Callable[..., Any]],
        timeout: Optional[float],
    ) -> None:
        if self._closed:
            return
        if not isinstance(event, str):
            raise TypeError("the event name must be a str")
        nsp = concrete_namespace(namespace).encode()
        text, blobs = encode(to_args(data))
        bufs = n.buffer_array(blobs)
        if callback is None:
            status = n.lib.iobus_namespace_server_side_emit(
                self._handle, nsp, event.encode(), text, len(text), bufs, len(blobs)
            )
            if status not in _QUIET:
                n.check(status, f"server_side_emit {event!r}")
            return

        def complete(_status: int, replies: List[List[Any]], _expected: int) -> None:
            answers = [call_result(reply) for reply in replies]
            self._invoke(callback, (answers,), "?", "server_side_emit callback", lambda _r: None, 0)

        token = self._expect(complete, (abi.ACK_DISCONNECTED, [], 0))
        wait = self.ack_timeout if timeout is None else float(timeout)
        status = n.lib.iobus_namespace_server_side_emit_with_ack(
            self._handle, nsp, event.encode(), text, len(text), bufs, len(blobs), milliseconds(wait), None,
            c_void_p(token),
        )
        self._issued(token, status, f"server_side_emit {event!r}")

    # ---- rooms ---------------------------------------------------------------------

    def _fetch(self, nsp: str, rooms: List[str]) -> List[str]:
        """The sids of this server's sockets of ``nsp`` in any of ``rooms``."""
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

    def _participants(self, room: Optional[str], namespace: Optional[str]) -> List[str]:
        if self._closed:
            return []
        return self._fetch(concrete_namespace(namespace), names(room, "room"))

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
        if not isinstance(room, str):
            raise TypeError("room must be a str")
        sel = select(namespace, room)
        status = n.lib.iobus_selection_leave(self._handle, sel, n.string_array([room]), 1)
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

    # ---- queries (answered later, as records) ----------------------------------------

    def _query(self, start: Callable[[c_void_p], int], complete: QueryCompletion, what: str) -> bool:
        """Issues a query whose answer comes as a record; False when there is
        nothing to wait for (the server is not running)."""
        if self._closed:
            return False
        token = self._expect(complete, ([],))
        return self._issued(token, start(c_void_p(token)), what)

    def _start_fetch_sockets(
        self, to: Rooms, skip_sid: Rooms, namespace: Optional[str], complete: Callable[[List[RemoteSocket]], None]
    ) -> bool:
        sel = select(namespace, to, skip_sid)
        nsp = concrete_namespace(namespace)

        def answer(sockets: Any) -> None:
            complete([RemoteSocket.from_json(nsp, s) for s in sockets if isinstance(s, dict)])

        return self._query(
            lambda token: n.lib.iobus_selection_fetch_sockets(self._handle, sel, None, token),
            answer,
            "fetch_sockets",
        )

    def _start_all_rooms(self, namespace: Optional[str], complete: Callable[[List[str]], None]) -> bool:
        nsp = concrete_namespace(namespace).encode()
        return self._query(
            lambda token: n.lib.iobus_namespace_all_rooms(self._handle, nsp, None, token),
            lambda rooms: complete([r for r in rooms if isinstance(r, str)]),
            "all_rooms",
        )

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

    # ---- sessions: the socket's data in libiobus ------------------------------------------
    #
    # A session is Python's dict while its socket is connected; libiobus
    # keeps a JSON copy as the socket's data, which fetch_sockets reports and
    # connection state recovery keeps for a dropped socket and gives back.

    def _get_session(self, sid: str) -> Dict[str, Any]:
        return self._sessions.setdefault(sid, {})

    def _save_session(self, sid: str, session: Dict[str, Any]) -> None:
        self._sessions[sid] = session
        self._store_session(sid, session)

    def _store_session(self, sid: str, session: Dict[str, Any]) -> None:
        """Writes the session to the socket's data in libiobus (also for a
        socket that dropped and may be recovered)."""
        if self._closed:
            return
        try:
            text = encode_plain(session)
        except (TypeError, ValueError):
            self.logger.warning(
                "iobus: the session of %s is not JSON; fetch_sockets and connection state recovery see null", sid
            )
            text = b"null"
        status = n.lib.iobus_socket_set_data(self._handle, sid.encode(), text, len(text))
        if status not in _QUIET:
            n.check(status, "save_session")

    def _load_session(self, sid: str) -> None:
        """Takes the session of a recovered socket from the data libiobus
        kept for it (a JSON object; anything else is no session)."""
        if self._closed or sid in self._sessions:
            return
        status, raw = n.take_string(
            lambda out, length: n.lib.iobus_socket_data(self._handle, sid.encode(), out, length)
        )
        if status != abi.OK or not raw:
            return
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if isinstance(data, dict):
            self._sessions[sid] = data

    def _end_session(self, sid: str) -> None:
        """Forgets a departed socket's session; with connection state
        recovery, its last state goes to libiobus first, which keeps it if
        the socket may still be recovered."""
        session = self._sessions.pop(sid, None)
        if self._recovery and session is not None:
            self._store_session(sid, session)
