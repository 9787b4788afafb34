"""The access log line: msgspec writes it where it reads the same as ``json.dumps`` did,
the stdlib where it would not (non-ASCII, a NaN)."""

from __future__ import annotations

import json
import math

import pytest

from polyroute.gateway._observe import _line


def fields(**over: object) -> dict[str, object]:
    return {
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "latency_ms": 0.54,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "cost_usd": 5.15e-06,
        "key": None,
        "error": None,
        **over,
    }


def test_a_line_reads_as_the_stdlibs() -> None:
    f = fields()
    line = _line(f)
    assert json.loads(line) == json.loads(json.dumps(f)) == f
    assert list(json.loads(line)) == list(f)  # the same fields, in the same order


@pytest.mark.parametrize(
    "over",
    [
        {"model": "modèle"},  # msgspec writes it raw: the stdlib escapes it, as before
        {"cost_usd": math.nan},  # msgspec writes null: the stdlib NaN, as before
        {"cost_usd": math.inf},
        {"error": "null"},
        {"model": "\ud800"},  # a lone surrogate (a model name a caller sent): msgspec refuses it
    ],
)
def test_what_msgspec_writes_otherwise_is_the_stdlibs_line(over: dict[str, object]) -> None:
    f = fields(**over)
    assert _line(f) == json.dumps(f, separators=(",", ":"))
