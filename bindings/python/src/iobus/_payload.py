"""Event arguments between Python values and what libiobus takes: the JSON
text of the argument array, with ``bytes`` anywhere in it replaced by
``{"_placeholder": true, "num": N}`` and carried as attachment N.

Also the python-socketio conventions for turning one ``data`` value or a
handler's return value into an argument list: ``None`` is no argument, a
tuple is several, anything else is one.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def to_args(data: Any) -> List[Any]:
    """python-socketio's rule: None → [], tuple → its items, else [data]."""
    if data is None:
        return []
    if isinstance(data, tuple):
        return list(data)
    return [data]


def encode(args: List[Any]) -> Tuple[bytes, List[bytes]]:
    """JSON text (UTF-8) of ``args`` and the binary attachments it refers to."""
    attachments: List[bytes] = []

    def binary(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            attachments.append(bytes(value))
            return {"_placeholder": True, "num": len(attachments) - 1}
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=binary)
    text = encoder.encode(args)
    return text.encode("utf-8"), attachments


def encode_plain(value: Any) -> bytes:
    """JSON text of a value that carries no binary (refusal data)."""
    return _DUMPS(value).encode("utf-8")


def decode(text: bytes, attachments: List[bytes]) -> List[Any]:
    """The argument list from JSON text and attachments."""
    if not attachments:
        result = json.loads(text)
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
