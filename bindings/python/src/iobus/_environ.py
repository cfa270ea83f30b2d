"""The WSGI-style ``environ`` a ``connect`` handler receives (and
``get_environ`` returns), built from the handshake JSON libiobus records for
every socket."""

from __future__ import annotations

from typing import Any, Dict


def build_environ(handshake: Dict[str, Any]) -> Dict[str, Any]:
    """A WSGI-style environ from the handshake libiobus records; the raw
    handshake is under ``"iobus.handshake"``."""
    url = str(handshake.get("url") or "")
    path, _, query = url.partition("?")
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": str(handshake.get("address", "")),
        "REMOTE_PORT": str(handshake.get("port", "")),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "iobus.handshake": handshake,
    }
    headers = handshake.get("headers") or {}
    for name, value in headers.items():
        key = str(name).upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    host = environ.get("HTTP_HOST")
    if isinstance(host, str) and host:
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "80")
        environ["SERVER_NAME"] = name or host
        environ["SERVER_PORT"] = port
    return environ
