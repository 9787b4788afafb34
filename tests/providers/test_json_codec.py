"""loads_bounded parses with msgspec and gives what the stdlib's json would, always."""

from __future__ import annotations

import json
import math

import pytest

from polyroute.errors import JSONTooDeepError
from polyroute.providers import loads_bounded

SAME_AS_STDLIB = [
    b'{"id":"chatcmpl-1","created":1700000000,"choices":[{"index":0}],"usage":null}',
    '{"text": "caf\\u00e9 \\ud83d\\ude00", "x": [1.5, -0.0, 1e-7, true, false]}',
    b'{"a": 1, "a": 2}',  # the last duplicate wins
    b'{"big": 123456789012345678901234567890, "neg": -9223372036854775809}',
    # msgspec refuses these, the stdlib takes them: parsed by the stdlib
    b'{"a": NaN, "b": Infinity, "c": -Infinity}',
    b'"\\ud800"',  # a lone surrogate escape
    b"1e400",
    '{"a": 1}'.encode("utf-16"),
    b'\xef\xbb\xbf{"bom": 1}',
]


@pytest.mark.parametrize("text", SAME_AS_STDLIB)
def test_parses_as_the_stdlib_does(text: str | bytes) -> None:
    got, want = loads_bounded(text), json.loads(text)
    assert repr(got) == repr(want)  # repr: NaN != NaN, and int 1 == float 1.0
    if isinstance(want, float) and math.isinf(want):
        assert got == want


@pytest.mark.parametrize("text", [b"", b"{", b'{"a": }', b"[1,]", "nope", b'{"a": 1} x'])
def test_what_neither_parses_is_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        loads_bounded(text)


def test_the_depth_limit_still_holds() -> None:
    with pytest.raises(JSONTooDeepError):
        loads_bounded("[" * 101 + "]" * 101)
    assert loads_bounded("[" * 100 + "]" * 100) is not None
