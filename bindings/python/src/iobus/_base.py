"""``BaseServer``: what the blocking and the asyncio servers share, put
together from one part per concern:

- ``_lifecycle.NativeServer``: the native handle, start/stop, safe polls, freeing;
- ``_handlers.HandlerRegistry``: ``on``/``event``/``register_namespace``/``on_server_side_emit``;
- ``_records.RecordReader``: records from ``iobus_server_poll_records`` to handlers and waiting operations;
- ``_results.HandlerResults``: acks answered, connections decided;
- ``_operations.Operations``: emit, call, rooms, queries, disconnect, sessions, server-side emits.

Both flavours run libiobus in ``IOBUS_DISPATCH_POLL`` mode, on a thread of
Python's choosing (the blocking server's dispatch thread, or the asyncio
loop through ``add_reader`` on the poll descriptor). How a handler's result
is awaited is the only thing the subclasses decide (``_invoke``).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Iterable, Optional, Tuple, Union

from ._handlers import HandlerRegistry, normalize_namespace
from ._lifecycle import NativeServer
from ._operations import Operations
from ._options import Recovery, RedisAdapter, check_unknown, logger_for, recovery_options
from ._records import RecordReader
from ._results import HandlerResults


class DisconnectReason:
    """The reasons a ``disconnect`` handler receives (Socket.IO's strings)."""

    CLIENT_DISCONNECT = "client namespace disconnect"
    SERVER_DISCONNECT = "server namespace disconnect"
    SERVER_SHUTTING_DOWN = "server shutting down"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PARSE_ERROR = "parse error"
    FORCED_CLOSE = "forced close"
    FORCED_SERVER_CLOSE = "forced server close"


class BaseServer(NativeServer, HandlerRegistry, RecordReader, HandlerResults, Operations):
    """Shared machinery of ``Server`` and ``AsyncServer``."""

    reason = DisconnectReason

    def __init__(
        self,
        *,
        cors_allowed_origins: Union[str, Iterable[str], None] = None,
        cors_credentials: bool = True,
        cors_max_age: Optional[int] = None,
        ping_interval: Union[float, Tuple[float, float], None] = None,
        ping_timeout: Optional[float] = None,
        max_http_buffer_size: Optional[int] = None,
        allow_upgrades: Optional[bool] = None,
        transports: Optional[Iterable[str]] = None,
        namespaces: Union[str, Iterable[str], None] = None,
        logger: Union[bool, logging.Logger] = False,
        path: Optional[str] = None,
        connect_timeout: Optional[float] = None,
        upgrade_timeout: Optional[float] = None,
        max_attachments: Optional[int] = None,
        max_buffered: Optional[int] = None,
        http_header_timeout: Optional[float] = None,
        http_keep_alive_timeout: Optional[float] = None,
        write_timeout: Optional[float] = None,
        max_header_bytes: Optional[int] = None,
        max_connections: Optional[int] = None,
        connection_state_recovery: Recovery = None,
        worker_threads: Optional[int] = None,
        batch_scheduling: Optional[bool] = None,
        serve_client: Optional[bool] = None,
        client_dir: Optional[str] = None,
        static_dir: Optional[str] = None,
        adapter: Optional[RedisAdapter] = None,
        host_queue_limit: Optional[int] = None,
        free_timeout: Optional[float] = None,
        ack_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        check_unknown(kwargs)
        self.logger = logger_for(logger)
        # The user data of every subscription and emit-with-ack: it comes
        # back in the records that answer them.
        self._tokens = itertools.count(1)
        self._init_registry()
        self._init_records()
        self._init_results()
        self._init_operations(ack_timeout, recovery_options(connection_state_recovery) is not None)
        self._init_native(
            cors_allowed_origins=cors_allowed_origins,
            cors_credentials=cors_credentials,
            cors_max_age=cors_max_age,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_http_buffer_size=max_http_buffer_size,
            allow_upgrades=allow_upgrades,
            transports=transports,
            path=path,
            connect_timeout=connect_timeout,
            upgrade_timeout=upgrade_timeout,
            max_attachments=max_attachments,
            max_buffered=max_buffered,
            http_header_timeout=http_header_timeout,
            http_keep_alive_timeout=http_keep_alive_timeout,
            write_timeout=write_timeout,
            max_header_bytes=max_header_bytes,
            max_connections=max_connections,
            connection_state_recovery=connection_state_recovery,
            worker_threads=worker_threads,
            batch_scheduling=batch_scheduling,
            serve_client=serve_client,
            client_dir=client_dir,
            static_dir=static_dir,
            adapter=adapter,
            host_queue_limit=host_queue_limit,
            free_timeout=free_timeout,
        )
        # `namespaces` adds namespaces without handlers ("*": every one);
        # the default namespace is added at start unless "*" covers it.
        if namespaces == "*":
            self._touch_namespace("*")
        elif namespaces:
            for ns in [namespaces] if isinstance(namespaces, str) else namespaces:
                self._touch_namespace(normalize_namespace(ns))
