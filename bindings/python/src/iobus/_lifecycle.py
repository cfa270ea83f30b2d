"""The native server's life: creating the ``iobus_server`` from the options,
starting and stopping it, polling it for records without ever freeing the
handle under a poll, freeing it (after delivering what it still holds), and
stopping every running server when the interpreter exits.

When to poll (a dispatch thread, or an asyncio reader) is the servers'
business; this module makes each poll safe.
"""

from __future__ import annotations

import atexit
import logging
import threading
from ctypes import byref, c_uint16, c_void_p
from typing import Any, Callable, Dict, Optional, Set, Tuple

from . import _abi as abi
from . import _native as n
from ._options import configure, default_logger

# Servers that are running; they stay alive while running and are stopped
# when the interpreter exits.
_running: Set["NativeServer"] = set()
_running_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        try:
            server._close_at_exit()
        except Exception:  # pragma: no cover - best effort at exit
            default_logger.exception("iobus: stopping a server at exit failed")


class NativeServer:
    """The ``iobus_server`` handle and its lifetime (a part of
    ``BaseServer``). Uses the records reader (``_take_records``) and
    completes the operations still waiting when the handle goes."""

    logger: logging.Logger
    _completions: Dict[int, Tuple[Callable[..., None], Tuple[Any, ...]]]
    _exception: Optional[BaseException]
    _known_namespaces: Set[str]
    _take_records: Callable[..., int]
    _touch_namespace: Callable[[str], None]

    def _init_native(self, **options: Any) -> None:
        """Creates the native server from the constructor's options (see
        ``_options.configure``)."""
        self._handle = c_void_p()
        self._closed = False
        # Held while a batch of records is taken and delivered, so that the
        # handle is never freed under it; _poller is the thread doing it.
        self._poll_lock = threading.Lock()
        self._poller: Optional[int] = None
        self._free_after_poll = False
        config = n.lib.iobus_config_new()
        if not config:
            raise MemoryError("iobus_config_new")
        try:
            configure(config, **options)
            n.check(n.lib.iobus_server_new(config, byref(self._handle)), "iobus_server_new")
        finally:
            n.lib.iobus_config_free(config)
        self._poll_fd = int(n.lib.iobus_server_poll_fd(self._handle))

    @property
    def port(self) -> Optional[int]:
        """The port the server listens on, or None when it is not running."""
        if self._closed:
            return None
        out = c_uint16()
        if n.lib.iobus_server_port(self._handle, byref(out)) != abi.OK:
            return None
        return int(out.value)

    @property
    def running(self) -> bool:
        return self.port is not None

    def _native_start(self, host: str, port: int) -> int:
        if self._closed:
            raise RuntimeError("the server is closed")
        # The default namespace always accepts connections, as in
        # python-socketio.
        if "*" not in self._known_namespaces:
            self._touch_namespace("/")
        status = n.lib.iobus_server_start(self._handle, host.encode(), int(port))
        n.check(status, "start")
        with _running_lock:
            _running.add(self)
        bound = self.port
        assert bound is not None
        return bound

    def _native_stop(self) -> None:
        if not self._closed:
            n.lib.iobus_server_stop(self._handle)
        with _running_lock:
            _running.discard(self)

    def _poll(self) -> int:
        """Takes what libiobus has queued (as much as fits in the record
        buffer) and delivers it; the number of records delivered."""
        with self._poll_lock:
            if self._closed:
                return 0
            self._poller = threading.get_ident()
            try:
                count = self._take_records()
            finally:
                self._poller = None
            if self._free_after_poll:
                self._free_native_locked()
        exc, self._exception = self._exception, None
        if exc is not None:
            raise exc
        return count

    def _poll_all(self) -> None:
        while self._poll():
            pass

    def _free_native(self, wait: float = 5.0) -> None:
        """Frees the handle, unless a poll is running on this very thread (then
        right after it)."""
        if self._closed:
            return
        if self._poller == threading.get_ident():
            self._free_after_poll = True
            return
        if not self._poll_lock.acquire(timeout=wait):
            # A poll that never ends (a handler stuck forever): leaking the
            # handle is better than freeing it under a running handler.
            self.logger.error("iobus: a handler is still running; the server is left allocated")
            return
        try:
            self._free_native_locked()
        finally:
            self._poll_lock.release()

    def _free_native_locked(self) -> None:
        if self._closed:
            return
        # Stopped, the library queues nothing more: what it still has
        # (disconnections, failed acks) is delivered as records here, so
        # that iobus_server_free finds nothing left to call back with.
        n.lib.iobus_server_stop(self._handle)
        self._poller = threading.get_ident()
        try:
            while self._take_records():
                pass
        except Exception:
            self.logger.exception("iobus: delivering the last records before freeing the server failed")
        finally:
            self._poller = None
        self._closed = True
        self._free_after_poll = False
        n.lib.iobus_server_free(self._handle)
        with _running_lock:
            _running.discard(self)
        # libiobus completes what it still held when it is freed, but those
        # completions can no longer be taken as records: what still waits
        # ends as if the server had gone.
        completions, self._completions = self._completions, {}
        for complete, gone in completions.values():
            try:
                complete(*gone)
            except Exception:
                self.logger.exception("iobus: completing an operation at close failed")

    def _close_at_exit(self) -> None:
        raise NotImplementedError

    def __del__(self) -> None:
        try:
            if not getattr(self, "_closed", True) and getattr(self, "_handle", None):
                self._free_native(wait=0.5)
        except Exception:
            pass
