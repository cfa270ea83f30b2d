"""Reading what libiobus delivers: one ``iobus_server_poll_records`` call takes
every pending connection, event, disconnection, server-side emit, ack reply
and query answer as records in one buffer (one foreign call per batch, not
five per event); this module reads them with ``struct`` (layout in
``_abi``), finds the handler or the waiting operation each one goes to, and
hands it over.

A handler on the polling thread that waits for a query's answer takes
records itself (``_take_records(hold=True)``): answers to queries are
delivered at once, everything else is held back and delivered, in order,
after the batch in hand.

A record whose size is impossible ends its batch (its boundaries are lost);
one whose fields do not add up is skipped and its handle released (the
operation waiting for it ends as if the server had gone); neither stops the
server.
"""

from __future__ import annotations

import ctypes
import json
import logging
import struct
from ctypes import addressof, c_size_t, c_void_p
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from . import _abi as abi
from . import _native as n
from ._environ import build_environ
from ._handlers import Handler, Registration, is_pattern, positional_capacity
from ._payload import decode
from ._results import PendingConnect

if TYPE_CHECKING:
    from .namespace import BaseNamespace

# The record buffer; a record larger than this (a big binary event) is
# read into a buffer of its own size.
RECORDS_CAP = 256 * 1024

_HEADER_SIZE = abi.RECORD_HEADER.size
_HEADER_FROM = abi.RECORD_HEADER.unpack_from
_FIELD_FROM = abi.RECORD_FIELD_LEN.unpack_from
_FIELD_LEN = abi.RECORD_FIELD_LEN.size
_CONNECT_FIELDS = len(abi.RECORD_FIELDS[abi.RECORD_CONNECT].names)
_DISCONNECT_FIELDS = len(abi.RECORD_FIELDS[abi.RECORD_DISCONNECT].names)
_ACK_FIELDS = len(abi.RECORD_FIELDS[abi.RECORD_ACK].names)
_BROADCAST_ACK_FIELDS = len(abi.RECORD_FIELDS[abi.RECORD_BROADCAST_ACK].names)
_SERVER_SIDE_FIELDS = len(abi.RECORD_FIELDS[abi.RECORD_SERVER_SIDE_EMIT].names)
_QUERY_KINDS = frozenset({abi.RECORD_SOCKETS, abi.RECORD_ROOMS})
_NO_HANDLERS: Dict[str, Tuple[Handler, int]] = {}

# The functions called per record, looked up once.
_poll_records = n.lib.iobus_server_poll_records
_ack_free = n.lib.iobus_ack_free


def read_fields(data: bytes, p: int, end: int, count: int, attachments: bool) -> Optional[List[bytes]]:
    """The ``count`` length-prefixed fields of the record ending at ``end``,
    then (with ``attachments``) a count and that many more; None unless they
    fill the record exactly."""
    fields: List[bytes] = []
    try:
        for _ in range(2 if attachments else 1):
            for _ in range(count):
                size = _FIELD_FROM(data, p)[0]
                p += _FIELD_LEN
                if size > end - p:
                    return None
                fields.append(data[p : p + size])
                p += size
            if attachments:
                count = _FIELD_FROM(data, p)[0]
                p += _FIELD_LEN
                attachments = False
                if count > (end - p) // _FIELD_LEN:
                    return None
    except struct.error:
        return None
    return fields if p == end else None


class RecordReader:
    """Takes records from libiobus and delivers each to its handler (a part
    of ``BaseServer``). Uses the registry's tables, the results' pending
    connections, and the operations' acks and sessions."""

    logger: logging.Logger
    _handle: c_void_p
    _registrations: Dict[int, Registration]
    _handlers: Dict[str, Dict[str, Tuple[Handler, int]]]
    _namespace_objects: Dict[str, "BaseNamespace"]
    _server_side_handlers: Dict[str, Dict[str, Tuple[Handler, int]]]
    _pending: Dict[str, PendingConnect]
    _completions: Dict[int, Tuple[Callable[..., None], Tuple[Any, ...]]]
    _invoke: Callable[..., None]
    _end_session: Callable[[str], None]
    _load_session: Callable[[str], None]
    _log_handler_error: Callable[[str, str], None]
    _accept: Callable[..., None]
    _decide: Callable[[int, str, Any], None]
    _refuse: Callable[[int, str, BaseException], None]

    def _init_records(self) -> None:
        # The buffer iobus_server_poll_records writes into, and its two
        # out-parameters (passed by address: the cheapest ctypes argument).
        self._records = ctypes.create_string_buffer(RECORDS_CAP)
        self._records_len = c_size_t(0)
        self._records_count = c_size_t(0)
        self._records_args = (
            addressof(self._records),
            RECORDS_CAP,
            addressof(self._records_len),
            addressof(self._records_count),
        )
        # sid → its rooms, from its disconnect record until its disconnect handler returns
        self._departing: Dict[str, List[str]] = {}
        self._exception: Optional[BaseException] = None
        # Records taken while a handler waited for a query's answer, to be
        # delivered after the batch in hand.
        self._held: List[bytes] = []

    def _take_records(self, hold: bool = False) -> int:
        """One ``iobus_server_poll_records`` call and the delivery of what it
        took (the poll lock held); the number of records. With ``hold``
        (a handler waiting on this thread), only answers to queries are
        delivered; the rest waits in ``_held``."""
        status = _poll_records(self._handle, *self._records_args)
        buf = self._records
        if status == abi.ERR_INVALID_ARGUMENT and self._records_len.value > RECORDS_CAP:
            # The oldest record alone is larger than the buffer: take it
            # (and whatever fits after it) into one of its size.
            need = self._records_len.value
            buf = ctypes.create_string_buffer(need)
            status = _poll_records(
                self._handle, addressof(buf), need, addressof(self._records_len), addressof(self._records_count)
            )
        if status != abi.OK:
            if status != abi.ERR_WRONG_STATE:  # (from inside a callback of the library's)
                n.check(status, "poll")
            return 0
        count = int(self._records_count.value)
        if count:
            data = ctypes.string_at(buf, self._records_len.value)
            if hold:
                self._hold(data)
            else:
                self._deliver(data)
        while self._held and not hold:
            held, self._held = b"".join(self._held), []
            self._deliver(held)
        return count

    def _hold(self, data: bytes) -> None:
        """Delivers the answers to queries in ``data`` (they only wake the
        operation waiting for them, never a handler) and holds back the
        other records, in order."""
        total = len(data)
        pos = 0
        while pos < total:
            size = kind = 0
            if total - pos >= _HEADER_SIZE:
                size, kind = _HEADER_FROM(data, pos)[:2]
            end = pos + size
            if size < _HEADER_SIZE or end > total:
                self.logger.error(
                    "iobus: a malformed record (size %d at byte %d of %d); the rest of the batch is dropped",
                    size, pos, total,
                )
                return
            if kind in _QUERY_KINDS:
                self._deliver(data[pos:end])
            else:
                self._held.append(data[pos:end])
            pos = end

    def _keep_exception(self, exc: BaseException) -> None:
        """Exceptions that are not a handler's own (KeyboardInterrupt,
        SystemExit) do not stop the delivery of a batch: the first is kept
        and raised once the batch is delivered."""
        if self._exception is None:
            self._exception = exc

    def _deliver(self, data: bytes) -> None:
        """Delivers a batch of records, oldest first."""
        header = _HEADER_FROM
        total = len(data)
        pos = 0
        while pos < total:
            size = kind = status = user = handle = 0
            if total - pos >= _HEADER_SIZE:
                size, kind, status, user, handle = header(data, pos)
            end = pos + size
            if size < _HEADER_SIZE or end > total:
                self.logger.error(
                    "iobus: a malformed record (size %d at byte %d of %d); the rest of the batch is dropped",
                    size, pos, total,
                )
                return
            try:
                if kind == abi.RECORD_EVENT:
                    self._event_record(data, pos + _HEADER_SIZE, end, user, handle)
                elif kind == abi.RECORD_CONNECT:
                    self._connect_record(data, pos + _HEADER_SIZE, end, user, handle, status)
                elif kind == abi.RECORD_DISCONNECT:
                    self._disconnect_record(data, pos + _HEADER_SIZE, end, user)
                elif kind == abi.RECORD_ACK:
                    self._ack_record(data, pos + _HEADER_SIZE, end, user, status)
                elif kind == abi.RECORD_BROADCAST_ACK:
                    self._broadcast_ack_record(data, pos + _HEADER_SIZE, end, user, status, handle)
                elif kind in _QUERY_KINDS:
                    self._query_record(data, pos + _HEADER_SIZE, end, user)
                elif kind == abi.RECORD_SERVER_SIDE_EMIT:
                    self._server_side_record(data, pos + _HEADER_SIZE, end, user, handle)
                else:
                    self.logger.error("iobus: a record of unknown kind %d; skipped", kind)
            except BaseException as exc:  # noqa: BLE001 - one record never stops the batch
                self._keep_exception(exc)
            pos = end

    def _event_record(self, data: bytes, p: int, end: int, token: int, ack: int) -> None:
        # The hot path: the fields of abi.RECORD_FIELDS[RECORD_EVENT] read
        # inline (namespace, socket id, event name, arguments JSON, attachments).
        sid = "?"
        try:
            size = _FIELD_FROM(data, p)[0]
            p += 4
            nsp = data[p : p + size]
            p += size
            size = _FIELD_FROM(data, p)[0]
            p += 4
            sid = data[p : p + size].decode()
            p += size
            size = _FIELD_FROM(data, p)[0]
            p += 4
            name_at = p
            p += size
            name_end = p
            size = _FIELD_FROM(data, p)[0]
            p += 4
            text = data[p : p + size].decode()
            p += size
            attachments: List[bytes] = []
            count = _FIELD_FROM(data, p)[0]
            p += 4
            while count and p <= end:
                count -= 1
                size = _FIELD_FROM(data, p)[0]
                p += 4
                attachments.append(data[p : p + size])
                p += size
            if p != end:
                raise ValueError("a malformed event record")
            reg = self._registrations.get(token)
            if reg is None:
                raise LookupError("unknown registration")
            args = decode(text, attachments)
            if reg.kind == "event":
                name = reg.event
            else:
                name = data[name_at:name_end].decode()
            key = reg.namespace
            entry = self._handlers.get(key, _NO_HANDLERS).get(reg.handler_key)
            if entry is not None:
                fn: Handler = entry[0]
                call_args: Tuple[Any, ...] = (sid, *args)
                if reg.pattern:
                    call_args = (nsp.decode(), *call_args)
                if reg.kind == "any":
                    call_args = (name, *call_args)
            else:
                nsobj = self._namespace_objects.get(key)
                if nsobj is None:
                    if ack:
                        _ack_free(ack)
                    return
                fn = nsobj.trigger_event
                call_args = (name, sid, *args)
        except Exception:
            if ack:
                _ack_free(ack)
            self._log_handler_error("reading an event", sid)
            return
        self._invoke(fn, call_args, sid, name, None, ack)

    def _connect_record(self, data: bytes, p: int, end: int, token: int, req: int, status: int) -> None:
        lib = n.lib
        if not req:
            return
        sid = "?"
        recovered = status == abi.CONNECT_RECOVERED
        try:
            fields = read_fields(data, p, end, _CONNECT_FIELDS, False)
            if fields is None:
                raise ValueError("a malformed connect record")
            nsp, sid = fields[0].decode(), fields[1].decode()
            handshake = json.loads(fields[2]) if fields[2] else {}
            if not isinstance(handshake, dict):
                handshake = {}
            auth = handshake.get("auth", {})
            environ = build_environ(handshake)
            environ["iobus.recovered"] = recovered
            if recovered:
                # Its data is back already when the connection needed no
                # decision; otherwise it comes with the accept (_accept).
                self._load_session(sid)
            reg = self._registrations.get(token)
            key = reg.namespace if reg else nsp
            entry = self._handlers.get(key, {}).get("connect")
            nsobj = self._namespace_objects.get(key)
            if entry is not None:
                fn, capacity = entry
                call_args: Tuple[Any, ...] = (sid, environ, auth)
                if is_pattern(key):
                    call_args = (nsp, *call_args)
                call_args = call_args[: max(capacity, 1)]
            elif nsobj is not None and hasattr(nsobj, "on_connect"):
                fn = nsobj.trigger_event
                handler_capacity = positional_capacity(nsobj.on_connect)
                call_args = ("connect", *(sid, environ, auth)[: max(handler_capacity, 1)])
            else:
                self._accept(req, sid, recovered)
                return
        except Exception:
            self._log_handler_error("reading a connection", sid)
            lib.iobus_connect_reject(req, None, None, 0)
            return
        self._pending[sid] = PendingConnect(recovered=recovered)
        self._invoke(
            fn,
            call_args,
            sid,
            "connect handler",
            lambda result: self._decide(req, sid, result),
            0,
            on_error=lambda exc: self._refuse(req, sid, exc),
        )

    def _disconnect_record(self, data: bytes, p: int, end: int, token: int) -> None:
        fields = read_fields(data, p, end, _DISCONNECT_FIELDS, False)
        if fields is None:
            self.logger.error("iobus: a malformed disconnect record; skipped")
            return
        nsp, sid_raw, reason_raw, rooms_raw = fields
        sid = sid_raw.decode(errors="replace")
        reg = self._registrations.get(token)
        try:
            namespace = nsp.decode()
            reason = reason_raw.decode()
            rooms = json.loads(rooms_raw) if rooms_raw else []
            key = reg.namespace if reg else namespace
            entry = self._handlers.get(key, {}).get("disconnect")
            nsobj = self._namespace_objects.get(key)
            if entry is not None:
                fn, capacity = entry
                call_args: Tuple[Any, ...] = (sid, reason)
                if is_pattern(key):
                    call_args = (namespace, *call_args)
                call_args = call_args[: max(capacity, 1)]
            elif nsobj is not None and hasattr(nsobj, "on_disconnect"):
                fn = nsobj.trigger_event
                capacity = positional_capacity(nsobj.on_disconnect)
                call_args = ("disconnect", *(sid, reason)[: max(capacity, 1)])
            else:
                self._forget(sid)
                return
        except Exception:
            self._log_handler_error("reading a disconnection", sid)
            self._forget(sid)
            return
        self._departing[sid] = rooms
        self._invoke(
            fn,
            call_args,
            sid,
            "disconnect handler",
            lambda _result: self._forget(sid),
            0,
            on_error=lambda _exc: self._forget(sid),
        )

    def _forget(self, sid: str) -> None:
        self._departing.pop(sid, None)
        self._end_session(sid)

    def _ack_record(self, data: bytes, p: int, end: int, token: int, status: int) -> None:
        waiting = self._completions.pop(token, None)
        if waiting is None:
            return
        complete, gone = waiting
        try:
            fields = read_fields(data, p, end, _ACK_FIELDS, True)
            if fields is None:
                raise ValueError("a malformed ack record")
            args = decode(fields[2].decode(), fields[_ACK_FIELDS:]) if status == abi.ACK_OK else None
        except Exception:
            # The emit still ends, as if the client had gone.
            self.logger.exception("iobus: reading an acknowledgement failed")
            complete(*gone)
            return
        complete(status, args)

    def _broadcast_ack_record(self, data: bytes, p: int, end: int, token: int, status: int, expected: int) -> None:
        waiting = self._completions.pop(token, None)
        if waiting is None:
            return
        complete, gone = waiting
        try:
            fields = read_fields(data, p, end, _BROADCAST_ACK_FIELDS, True)
            if fields is None:
                raise ValueError("a malformed broadcast ack record")
            # One JSON array of replies; placeholders number the attachments
            # of all of them.
            replies = decode(fields[0].decode(), fields[_BROADCAST_ACK_FIELDS:])
            replies = [reply if isinstance(reply, list) else [reply] for reply in replies]
        except Exception:
            self.logger.exception("iobus: reading the acknowledgements of an emit failed")
            complete(*gone)
            return
        complete(status, replies, int(expected))

    def _query_record(self, data: bytes, p: int, end: int, token: int) -> None:
        waiting = self._completions.pop(token, None)
        if waiting is None:
            return
        complete, gone = waiting
        try:
            fields = read_fields(data, p, end, 1, False)
            if fields is None:
                raise ValueError("a malformed query record")
            answer = json.loads(fields[0]) if fields[0] else []
            if not isinstance(answer, list):
                raise ValueError("a query answer that is not a list")
        except Exception:
            self.logger.exception("iobus: reading the answer to a query failed")
            complete(*gone)
            return
        complete(answer)

    def _server_side_record(self, data: bytes, p: int, end: int, token: int, ack: int) -> None:
        """An event another server emitted to a namespace of this one."""
        name = "?"
        try:
            fields = read_fields(data, p, end, _SERVER_SIDE_FIELDS, True)
            if fields is None:
                raise ValueError("a malformed server-side emit record")
            nsp, name = fields[0].decode(), fields[2].decode()
            args = decode(fields[3].decode(), fields[_SERVER_SIDE_FIELDS:])
            reg = self._registrations.get(token)
            if reg is None:
                raise LookupError("unknown registration")
            handlers = self._server_side_handlers.get(reg.namespace, _NO_HANDLERS)
            # As for client events: the namespace of a pattern first, and
            # before it the event name for a catch-all handler.
            call_args: Tuple[Any, ...] = (nsp, *args) if reg.pattern else tuple(args)
            entry = handlers.get(name)
            if entry is None:
                entry = handlers.get("*")
                call_args = (name, *call_args)
            if entry is None:
                if ack:
                    _ack_free(ack)
                return
        except Exception:
            if ack:
                _ack_free(ack)
            self.logger.exception("iobus: reading a server-side emit failed")
            return
        self._invoke(entry[0], call_args, "", name, None, ack)
