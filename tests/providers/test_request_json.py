"""An upstream request body: msgspec writes it, json where msgspec would differ in meaning
(a NaN it writes as null must be refused), with the same refusals as before."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from polyroute.errors import JSONTooDeepError
from polyroute.providers import UnsupportedError
from polyroute.providers._http import _dumps


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7},
        {"model": "m", "messages": [{"role": "user", "content": "é \u2028 😀"}], "top_p": 1e-7},
        {"model": "m", "tools": [{"parameters": {"type": "object", "default": None}}]},
        {"model": "m", "logit_bias": {"50256": -100}, "n": 2, "stream": False},
        {"model": "m", 1: "an int key", None: "a None key"},
    ],
)
def test_a_body_reads_as_the_stdlib_writes_it(body: dict[Any, Any]) -> None:
    sent = _dumps(body, "p")
    assert json.loads(sent) == json.loads(json.dumps(body))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_json_cannot_carry_is_refused(value: float) -> None:
    body = {"model": "m", "tools": [{"parameters": {"minimum": value}}]}
    with pytest.raises(UnsupportedError, match="cannot be sent as JSON") as info:
        _dumps(body, "p")
    assert info.value.provider == "p"


def test_too_deep_a_body_is_refused() -> None:
    body: dict[str, Any] = {}
    inner = body
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(JSONTooDeepError):
        _dumps(body, "p")


def test_what_no_json_encoder_writes_is_still_a_type_error() -> None:
    with pytest.raises(TypeError):
        _dumps({"model": object()}, "p")
