"""Event arguments between Python values and what libiobus takes: the JSON
text of the argument array, with ``bytes`` anywhere in it replaced by
``{"_placeholder": true, "num": N}`` and carried as attachment N.

Also the python-socketio conventions for turning one ``data`` value or a
handler's return value into an argument list: ``None`` is no argument, a
tuple is several, anything else is one.
"""

from __future__ import annotations

import json
import json.encoder
from typing import Any, Callable, Dict, List, Tuple

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_DECODER = json.JSONDecoder()
_LOADS = _DECODER.decode
# What _DECODER.decode runs (json's C scanner), without the checks around it.
_SCAN: Callable[[str, int], Tuple[Any, int]] = getattr(_DECODER, "scan_once")


def _not_plain(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _fast_dumps() -> Callable[[Any], str]:
    """``_DUMPS`` without its per-call set-up: json's C encoder, made once.
    It keeps no record of the containers it is in (that record cannot be
    shared between threads), so a circular value ends in RecursionError
    instead of ValueError; ``encode`` then asks ``_DUMPS``, which names the
    problem. Without the C encoder, or should it disagree with ``_DUMPS``,
    this is ``_DUMPS``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _DUMPS
    try:
        chunks = make(None, _not_plain, json.encoder.encode_basestring, None, ":", ",", False, False, False)

        def dumps(value: Any) -> str:
            return "".join(chunks(value, 0))

        sample = [1, -2.5, 1e300, 10**30, "é\"\n\u2028", {"a": [True, None, False], "": {}}, [], ""]
        if dumps(sample) != _DUMPS(sample):
            return _DUMPS
    except Exception:
        return _DUMPS
    return dumps


_FAST_DUMPS = _fast_dumps()


def to_args(data: Any) -> List[Any]:
    """python-socketio's rule: None → [], tuple → its items, else [data]."""
    if data is None:
        return []
    if isinstance(data, tuple):
        return list(data)
    return [data]


def encode(args: List[Any]) -> Tuple[bytes, List[bytes]]:
    """JSON text (UTF-8) of ``args`` and the binary attachments it refers to."""
    try:
        # Most arguments carry no binary: one shared encoder serves them.
        return _FAST_DUMPS(args).encode("utf-8"), []
    except Exception:
        pass  # binary, or a value JSON cannot carry: the full encoder decides
    attachments: List[bytes] = []

    def binary(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            attachments.append(bytes(value))
            return {"_placeholder": True, "num": len(attachments) - 1}
        return _not_plain(value)

    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=binary)
    text = encoder.encode(args)
    return text.encode("utf-8"), attachments


def encode_plain(value: Any) -> bytes:
    """JSON text of a value that carries no binary (refusal data)."""
    return _DUMPS(value).encode("utf-8")


def _loads(text: str) -> Any:
    """``_LOADS`` for the compact JSON libiobus hands over, skipping its
    whitespace handling; anything unusual goes to ``_LOADS`` itself."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _LOADS(text)  # raises the JSONDecodeError
    if end != len(text):
        return _LOADS(text)
    return value


def decode(text: str, attachments: List[bytes]) -> List[Any]:
    """The argument list from JSON text and attachments."""
    if not attachments:
        result = _loads(text)
    else:
        count = len(attachments)

        def restore(obj: Dict[str, Any]) -> Any:
            if len(obj) == 2 and obj.get("_placeholder") is True:
                num = obj.get("num")
                if isinstance(num, int) and not isinstance(num, bool) and 0 <= num < count:
                    return attachments[num]
            return obj

        result = json.loads(text, object_hook=restore)
    return result if isinstance(result, list) else [result]
