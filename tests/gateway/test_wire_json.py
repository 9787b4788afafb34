"""The gateway's one JSON encoder (msgspec): compact UTF-8, what the stdlib would write."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from polyroute.gateway._wire import dumps, sse


class Color(enum.StrEnum):
    RED = "red"


BODIES: list[Any] = [
    {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "café 😀\u2028"}}]},
    {"usage": {"prompt_tokens": 9}, "t": (1, 2), "none": None, "ok": True, "f": 0.1},
    {"big": 2**70, "neg": -(2**64)},
    {1: "int keys become strings, as in the stdlib"},
    {"enum": Color.RED},
]


@pytest.mark.parametrize("body", BODIES)
def test_compact_utf8_and_parses_back_as_the_stdlibs(body: Any) -> None:
    out = dumps(body)
    want = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert out == want
    assert json.loads(out) == json.loads(want)


def test_nan_and_infinity_are_null_not_invalid_json() -> None:
    assert dumps({"a": float("nan"), "b": float("inf")}) == b'{"a":null,"b":null}'


def test_what_json_cannot_encode_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dumps({"a": object()})


def test_sse_frames() -> None:
    assert sse({"a": 1}) == b'data: {"a":1}\n\n'
    assert sse({"type": "ping"}, "ping") == b'event: ping\ndata: {"type":"ping"}\n\n'
