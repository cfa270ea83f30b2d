"""Arguments to and from JSON text plus attachments (iobus._payload): the
shared fast encoder and scanner must give exactly what the full json
machinery gives, and fail the same way."""

from __future__ import annotations

import json
import math

import pytest

from iobus import _payload


def reference(args):
    return json.dumps(args, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["x" * 64],
        [1, -2.5, 1e300, 10**30, True, False, None],
        ["é\"\\\n\u2028\x00", {"nested": [{"a": []}, {}], "": 0}],
        [{"k": [1, 2, {"deep": "é"}]}],
    ],
)
def test_plain_arguments_encode_as_json_does(args):
    assert _payload._FAST_DUMPS is not _payload._DUMPS  # the C encoder is in use here
    assert _payload.encode(args) == (reference(args), [])


def test_binary_becomes_placeholders_and_attachments():
    text, blobs = _payload.encode(["a", b"\x00", {"k": bytearray(b"y"), "m": [memoryview(b"z")]}])
    assert json.loads(text) == [
        "a",
        {"_placeholder": True, "num": 0},
        {"k": {"_placeholder": True, "num": 1}, "m": [{"_placeholder": True, "num": 2}]},
    ]
    assert blobs == [b"\x00", b"y", b"z"]
    assert _payload.decode(text.decode(), blobs) == ["a", b"\x00", {"k": b"y", "m": [b"z"]}]


def test_values_json_cannot_carry_fail_as_with_json():
    with pytest.raises(ValueError, match="Out of range float"):
        _payload.encode([math.nan])
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        _payload.encode([object()])
    circular: list = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        _payload.encode([circular])


def test_decode():
    assert _payload.decode('["a",1,{"b":[true,null]}]', []) == ["a", 1, {"b": [True, None]}]
    # Not an array: one argument. Whitespace is still fine.
    assert _payload.decode("3", []) == [3]
    assert _payload.decode(' [1, 2] \n', []) == [1, 2]
    with pytest.raises(json.JSONDecodeError):
        _payload.decode("[1", [])
    with pytest.raises(json.JSONDecodeError):
        _payload.decode("[1] x", [])
    with pytest.raises(json.JSONDecodeError):
        _payload.decode("", [])
    # A lookalike without attachments stays a dict; a bad index too.
    lookalike = '[{"_placeholder":true,"num":0},{"_placeholder":true,"num":5}]'
    assert _payload.decode(lookalike, []) == [{"_placeholder": True, "num": 0}, {"_placeholder": True, "num": 5}]
    assert _payload.decode(lookalike, [b"b"]) == [b"b", {"_placeholder": True, "num": 5}]


def test_to_args():
    assert _payload.to_args(None) == []
    assert _payload.to_args((1, 2)) == [1, 2]
    assert _payload.to_args([1, 2]) == [[1, 2]]
    assert _payload.to_args("x") == ["x"]
