"""A finished JSON answer (``Answered``) carries exactly the headers, in order, and the body
``starlette.responses.Response`` would."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from polyroute.gateway._chat import JSON, Answered, served_headers


@pytest.mark.parametrize(
    ("provider", "model", "cost"),
    [("openai", "gpt-4o-mini", 5.15e-06), ("local", "modèle/ü\n", None), ("p", "m", 0.0)],
)
@pytest.mark.parametrize("body", [b'{"id":"x"}', b""])
def test_the_same_head_and_body_as_a_response(
    provider: str, model: str, cost: float | None, body: bytes
) -> None:
    headers = served_headers(provider, model, cost)
    ours, theirs = Answered(body, headers), Response(body, 200, headers, JSON)
    assert ours.raw_headers == theirs.raw_headers
    assert (ours.status_code, ours.body, ours.background) == (200, body, None)
    assert ours.headers["content-type"] == "application/json"
