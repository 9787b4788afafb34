"""A finished JSON answer (``Answered``) carries exactly the headers, in order, and the body
``starlette.responses.Response`` would; a stream's head (``_Frames``) exactly the headers
``starlette.responses.StreamingResponse`` would."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from starlette.responses import Response, StreamingResponse

from polyroute.events import StreamStart
from polyroute.gateway._chat import JSON, Answered, _Frames, served_headers
from polyroute.gateway._observe import Note


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


@pytest.mark.parametrize(
    ("provider", "model", "cost"),
    [("openai", "gpt-4o-mini", 5.15e-06), ("local", "modèle/ü\n", None)],
)
def test_a_streams_head_is_a_streaming_responses(
    provider: str, model: str, cost: float | None
) -> None:
    headers = served_headers(provider, model, cost)
    headers["x-polyroute-cost-estimated"] = "true"
    headers["cache-control"] = "no-cache"

    async def nothing() -> AsyncGenerator[Any, None]:
        yield StreamStart("", model)

    ours = _Frames(
        StreamStart("", model),
        nothing(),
        None,  # type: ignore[arg-type]  # neither is used before the response is sent
        None,  # type: ignore[arg-type]
        Note(),
        None,  # type: ignore[arg-type]
        dict(headers),
    )
    theirs = StreamingResponse(iter(()), 200, headers, "text/event-stream")
    assert ours.raw_headers == theirs.raw_headers
    assert (ours.status_code, ours.background) == (200, None)
