"""Constructor options: python-socketio's names (times in seconds) turned into
an ``iobus_config`` (times in milliseconds), the options python-socketio
accepts that mean nothing here, and the logger a server writes to.

Every server runs libiobus in ``IOBUS_DISPATCH_POLL`` mode; that is not an
option.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Literal, Optional, Tuple, Union

from . import _abi as abi
from . import _native as n

default_logger = logging.getLogger("iobus")

# python-socketio and python-engineio options that have no meaning here;
# accepted so that existing constructor calls keep working.
IGNORED_OPTIONS = frozenset(
    {
        "async_mode",
        "async_handlers",
        "http_compression",
        "compression_threshold",
        "cookie",
        "monitor_clients",
        "engineio_logger",
    }
)


def check_unknown(kwargs: Iterable[str]) -> None:
    """Refuses options that are neither iobus's nor ignored ones."""
    unknown = set(kwargs) - IGNORED_OPTIONS
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")


def logger_for(logger: Union[bool, logging.Logger]) -> logging.Logger:
    """python-socketio's ``logger``: a Logger to use, or True for INFO on
    iobus's own logger (False: errors only), unless its level is set."""
    if isinstance(logger, logging.Logger):
        return logger
    if default_logger.level == logging.NOTSET:
        default_logger.setLevel(logging.INFO if logger else logging.ERROR)
    return default_logger


def _ms(seconds: float) -> int:
    return max(0, int(round(float(seconds) * 1000)))


# connection_state_recovery's keys and defaults (Socket.IO's, in seconds).
RECOVERY_DEFAULTS = {"max_disconnection_duration": 120.0, "skip_middlewares": True, "max_log_bytes": None}

Recovery = Union[bool, Dict[str, Any], None]


def recovery_options(option: Recovery) -> Optional[Dict[str, Any]]:
    """``connection_state_recovery`` (False/None, True, or a dict of
    ``RECOVERY_DEFAULTS``'s keys) as the settings to apply, or None for off."""
    if option is None or option is False:
        return None
    if option is True:
        return dict(RECOVERY_DEFAULTS)
    if not isinstance(option, dict):
        raise TypeError("connection_state_recovery is True, False, or a dict")
    unknown = set(option) - set(RECOVERY_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown connection_state_recovery key(s): {', '.join(sorted(unknown))}")
    settings = {**RECOVERY_DEFAULTS, **option}
    if float(settings["max_disconnection_duration"]) <= 0:
        raise ValueError("connection_state_recovery: max_disconnection_duration must be more than 0 seconds")
    return settings


RedisMode = Literal["pubsub", "pubsub-own-response-channel", "streams"]

_REDIS_MODES = {
    "pubsub": abi.REDIS_PUBSUB,
    "pubsub-own-response-channel": abi.REDIS_PUBSUB_OWN_RESPONSE_CHANNEL,
    "streams": abi.REDIS_STREAMS,
}


@dataclass(frozen=True)
class RedisAdapter:
    """The ``adapter`` option: joins the server to a cluster through Redis.

    Broadcasts, room operations, socket fetches and server-side emits reach
    every node on that Redis, iobus and npm socket.io nodes alike.

    ``url``: ``"redis://host:port[/db]"``. ``key``: the channel prefix (and
    in streams mode the stream's name). ``mode``: ``"pubsub"`` (as
    ``@socket.io/redis-adapter`` with its defaults),
    ``"pubsub-own-response-channel"`` (its ``publishOnSpecificResponseChannel``)
    or ``"streams"`` (as ``@socket.io/redis-streams-adapter``; sessions and
    missed packets are kept in Redis, so with ``connection_state_recovery``
    a client recovers on any node). ``request_timeout``: how long, in
    seconds, a request waits for the other nodes. Redis unreachable makes
    ``start`` raise ``IobusError``; Redis lost later is reconnected to, each
    node serving its own clients meanwhile.
    """

    url: str = "redis://127.0.0.1:6379"
    key: str = "socket.io"
    mode: RedisMode = "pubsub"
    request_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.mode not in _REDIS_MODES:
            raise ValueError(f"RedisAdapter: mode is one of {', '.join(sorted(_REDIS_MODES))}, not {self.mode!r}")
        if not self.key:
            raise ValueError("RedisAdapter: key must not be empty")
        if not float(self.request_timeout) > 0:
            raise ValueError("RedisAdapter: request_timeout must be more than 0 seconds")

    def _apply(self, cfg: Any) -> None:
        n.check(
            n.lib.iobus_config_set_redis(
                cfg,
                self.url.encode(),
                self.key.encode(),
                _REDIS_MODES[self.mode],
                max(1, _ms(self.request_timeout)),
            ),
            "adapter",
        )


def configure(
    cfg: Any,
    *,
    cors_allowed_origins: Union[str, Iterable[str], None],
    cors_credentials: bool,
    cors_max_age: Optional[int],
    ping_interval: Union[float, Tuple[float, float], None],
    ping_timeout: Optional[float],
    max_http_buffer_size: Optional[int],
    allow_upgrades: Optional[bool],
    transports: Optional[Iterable[str]],
    path: Optional[str],
    connect_timeout: Optional[float],
    upgrade_timeout: Optional[float],
    max_attachments: Optional[int],
    max_buffered: Optional[int],
    http_header_timeout: Optional[float],
    http_keep_alive_timeout: Optional[float],
    write_timeout: Optional[float],
    max_header_bytes: Optional[int],
    max_connections: Optional[int],
    connection_state_recovery: Recovery,
    worker_threads: Optional[int],
    batch_scheduling: Optional[bool],
    serve_client: Optional[bool],
    client_dir: Optional[str],
    static_dir: Optional[str],
    adapter: Optional[RedisAdapter],
    host_queue_limit: Optional[int],
    free_timeout: Optional[float],
) -> None:
    """Writes the options into the ``iobus_config`` ``cfg``; None leaves
    libiobus's default."""
    lib = n.lib
    n.check(lib.iobus_config_set_dispatch(cfg, abi.DISPATCH_POLL), "dispatch")
    if cors_allowed_origins:
        origins = [cors_allowed_origins] if isinstance(cors_allowed_origins, str) else list(cors_allowed_origins)
        for origin in origins:
            n.check(lib.iobus_config_add_cors_origin(cfg, origin.encode()), "cors_allowed_origins")
        n.check(lib.iobus_config_set_cors_credentials(cfg, bool(cors_credentials)), "cors_credentials")
        if cors_max_age is not None:
            n.check(lib.iobus_config_set_cors_max_age(cfg, int(cors_max_age)), "cors_max_age")
    interval = ping_interval
    if isinstance(interval, (tuple, list)):
        interval = interval[0]
    if interval is not None:
        n.check(lib.iobus_config_set_ping_interval(cfg, _ms(interval)), "ping_interval")
    if ping_timeout is not None:
        n.check(lib.iobus_config_set_ping_timeout(cfg, _ms(ping_timeout)), "ping_timeout")
    if max_http_buffer_size is not None:
        n.check(lib.iobus_config_set_max_payload(cfg, int(max_http_buffer_size)), "max_http_buffer_size")
    if allow_upgrades is not None:
        n.check(lib.iobus_config_set_allow_upgrades(cfg, bool(allow_upgrades)), "allow_upgrades")
    if transports is not None:
        wanted = set(transports)
        bad = wanted - {"polling", "websocket"}
        if bad:
            raise ValueError(f"unknown transport(s): {', '.join(sorted(bad))}")
        n.check(lib.iobus_config_set_transports(cfg, "polling" in wanted, "websocket" in wanted), "transports")
    if path is not None:
        path = path if path.startswith("/") else "/" + path
        n.check(lib.iobus_config_set_path(cfg, path.encode()), "path")
    if connect_timeout is not None:
        n.check(lib.iobus_config_set_connect_timeout(cfg, _ms(connect_timeout)), "connect_timeout")
    if upgrade_timeout is not None:
        n.check(lib.iobus_config_set_upgrade_timeout(cfg, _ms(upgrade_timeout)), "upgrade_timeout")
    if max_attachments is not None:
        n.check(lib.iobus_config_set_max_attachments(cfg, int(max_attachments)), "max_attachments")
    if max_buffered is not None:
        n.check(lib.iobus_config_set_max_buffered(cfg, int(max_buffered)), "max_buffered")
    if http_header_timeout is not None:
        n.check(lib.iobus_config_set_http_header_timeout(cfg, _ms(http_header_timeout)), "http_header_timeout")
    if http_keep_alive_timeout is not None:
        n.check(
            lib.iobus_config_set_http_keep_alive_timeout(cfg, _ms(http_keep_alive_timeout)), "http_keep_alive_timeout"
        )
    if write_timeout is not None:
        n.check(lib.iobus_config_set_write_timeout(cfg, _ms(write_timeout)), "write_timeout")
    if max_header_bytes is not None:
        n.check(lib.iobus_config_set_max_header_bytes(cfg, int(max_header_bytes)), "max_header_bytes")
    if max_connections is not None:
        n.check(lib.iobus_config_set_max_connections(cfg, int(max_connections)), "max_connections")
    recovery = recovery_options(connection_state_recovery)
    if recovery is not None:
        n.check(
            lib.iobus_config_set_connection_state_recovery(
                cfg,
                True,
                max(1, _ms(recovery["max_disconnection_duration"])),
                bool(recovery["skip_middlewares"]),
                int(recovery["max_log_bytes"] or 0),
            ),
            "connection_state_recovery",
        )
    if worker_threads is not None:
        n.check(lib.iobus_config_set_worker_threads(cfg, int(worker_threads)), "worker_threads")
    if batch_scheduling is not None:
        n.check(lib.iobus_config_set_batch_scheduling(cfg, bool(batch_scheduling)), "batch_scheduling")
    if serve_client is not None:
        n.check(lib.iobus_config_set_serve_client(cfg, bool(serve_client)), "serve_client")
    if client_dir is not None:
        n.check(lib.iobus_config_set_client_dir(cfg, str(client_dir).encode()), "client_dir")
    if static_dir is not None:
        n.check(lib.iobus_config_set_static_dir(cfg, str(static_dir).encode()), "static_dir")
    if adapter is not None:
        if not isinstance(adapter, RedisAdapter):
            raise TypeError("adapter is an iobus.RedisAdapter")
        adapter._apply(cfg)
    if host_queue_limit is not None:
        if int(host_queue_limit) < 0:
            raise ValueError("host_queue_limit must be a number of bytes")
        n.check(lib.iobus_config_set_host_queue_limit(cfg, int(host_queue_limit)), "host_queue_limit")
    if free_timeout is not None:
        if float(free_timeout) < 0:
            raise ValueError("free_timeout must be 0 seconds or more")
        n.check(lib.iobus_config_set_free_timeout(cfg, _ms(free_timeout)), "free_timeout")
