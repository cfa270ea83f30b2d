"""Where a handler's result goes: an event handler's return value answers
the client's ack (``iobus_ack_send``), a connect handler's decides the
connection (``iobus_connect_accept``/``_reject``), and what a handler may not
do yet (disconnect its own socket before its ack is out, or a socket that
is not accepted yet) waits until it may.

How a handler is called and awaited is the servers' business
(``BaseServer._invoke``); this module holds what they share.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from . import _abi as abi
from . import _native as n
from ._handlers import Handler
from ._payload import encode, encode_plain, to_args
from .exceptions import ConnectionRefusedError

if TYPE_CHECKING:
    from ._base import BaseServer

# What a class-based namespace returns for an event it has no method for:
# a client that asked for an ack gets none, as in python-socketio.
NOT_HANDLED: Any = object()

# Statuses after which iobus_ack_send has not consumed the handle.
_ACK_STILL_OWNED = frozenset(
    {abi.ERR_NULL_ARGUMENT, abi.ERR_INVALID_UTF8, abi.ERR_INVALID_JSON, abi.ERR_INVALID_BINARY}
)

_ack_send = n.lib.iobus_ack_send
_ack_free = n.lib.iobus_ack_free


class HandlerContext:
    """The event being handled on this thread or task: a handler that
    disconnects its own socket while the client waits for the ack gets the
    disconnection after the ack, so that the ack still arrives."""

    __slots__ = ("server", "sid", "acking", "deferred")

    def __init__(self, server: "BaseServer", sid: str, acking: bool) -> None:
        self.server = server
        self.sid = sid
        self.acking = acking
        self.deferred: Optional[List[Callable[[], None]]] = None


current_handler: contextvars.ContextVar[Optional[HandlerContext]] = contextvars.ContextVar(
    "iobus_current_handler", default=None
)


@dataclass
class PendingConnect:
    """A connection whose ``connect`` handler has not decided yet. libiobus
    already reaches its socket (rooms, emits), but a disconnect can only
    follow the accept: it waits here. ``recovered``: the connection brings
    back a dropped socket (connection state recovery)."""

    ops: List[Callable[[], None]] = field(default_factory=list)
    recovered: bool = False


def describe(what: str, done: Optional[Callable[[Any], None]]) -> str:
    """How a log line names the handler ``_invoke`` ran."""
    return f"handler of {what!r}" if done is None else what


class HandlerResults:
    """Acks answered, connections decided, deferred operations run (a part
    of ``BaseServer``)."""

    logger: logging.Logger
    _sessions: Dict[str, Dict[str, Any]]
    _load_session: Callable[[str], None]

    def _init_results(self) -> None:
        # sid → operations waiting for its connect handler's decision
        self._pending: Dict[str, PendingConnect] = {}

    def _invoke(
        self,
        fn: Handler,
        args: Tuple[Any, ...],
        sid: str,
        what: str,
        done: Optional[Callable[[Any], None]],
        ack: int,
        on_error: Optional[Callable[[BaseException], None]] = None,
    ) -> None:
        """Runs a handler and hands its result to ``done``; an exception is
        logged (or given to ``on_error``) and the server goes on. ``done``
        None is an event handler: ``what`` is the event's name and the
        result answers ``ack`` (when not 0), which an exception frees."""
        raise NotImplementedError

    def _settle(self, result: Any, sid: str, what: str, done: Optional[Callable[[Any], None]], ack: int) -> None:
        """Hands a handler's result on (see ``_invoke``)."""
        try:
            if done is None:
                if ack:
                    self._answer(ack, result)
            else:
                done(result)
        except Exception:
            self._log_handler_error("answering the " + describe(what, done), sid)

    def _run_deferred(self, ctx: HandlerContext) -> None:
        for op in ctx.deferred or ():
            try:
                op()
            except Exception:
                self._log_handler_error("a deferred disconnect", ctx.sid)

    def _log_handler_error(self, what: str, sid: str) -> None:
        self.logger.exception("iobus: %s for socket %s raised; the server keeps serving", what, sid)

    def _answer(self, ack: int, result: Any) -> None:
        if result is NOT_HANDLED:
            _ack_free(ack)
            return
        try:
            text, blobs = encode(to_args(result))
        except (TypeError, ValueError):
            _ack_free(ack)
            raise
        if blobs:
            status = _ack_send(ack, text, len(text), n.buffer_array(blobs), len(blobs))
        else:
            status = _ack_send(ack, text, len(text), None, 0)
        if status in _ACK_STILL_OWNED:
            _ack_free(ack)
            n.check(status, "acknowledgement")

    # ---- connections ---------------------------------------------------------------

    def _decide(self, req: int, sid: str, result: Any) -> None:
        if result is False:
            self._refuse(req, sid, ConnectionRefusedError())
        else:
            self._accept(req, sid)

    def _accept(self, req: int, sid: str, recovered: bool = False) -> None:
        status = n.lib.iobus_connect_accept(req)
        pending = self._pending.pop(sid, None)
        if status != abi.OK:
            self._sessions.pop(sid, None)
            return
        if recovered or (pending is not None and pending.recovered):
            # Accepted, a recovered socket has its data back: the session,
            # unless its connect handler made a new one.
            self._load_session(sid)
        if pending:
            for op in pending.ops:
                try:
                    op()
                except Exception:
                    self._log_handler_error("an operation from the connect handler", sid)

    def _refuse(self, req: int, sid: str, exc: BaseException) -> None:
        self._pending.pop(sid, None)
        self._sessions.pop(sid, None)
        if isinstance(exc, ConnectionRefusedError):
            args = exc.error_args
            message = str(args.get("message", "Connection rejected by server")).encode()
            if "data" in args:
                try:
                    data = encode_plain(args["data"])
                except (TypeError, ValueError):
                    self.logger.exception("iobus: refusal data of socket %s is not JSON", sid)
                    data = None
            else:
                data = None
            status = n.lib.iobus_connect_reject(req, message, data, len(data) if data else 0)
        else:
            status = n.lib.iobus_connect_reject(req, b"Connection rejected by server", None, 0)
        if status != abi.OK:  # invalid arguments leave the request ours
            n.lib.iobus_connect_reject(req, None, None, 0)
