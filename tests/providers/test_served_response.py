"""A completion's response gets the provider id and the vendor's request id on every field
it came with (``_served``: ``dataclasses.replace`` done positionally)."""

from __future__ import annotations

from dataclasses import fields, replace

from polyroute.providers._client import _served
from polyroute.types import (
    Alternative,
    ChatResponse,
    ThinkingPart,
    TokenLogprob,
    ToolCall,
    Usage,
)


def test_every_field_is_kept_and_the_two_are_set() -> None:
    full = ChatResponse(
        content="42",
        model="m",
        finish_reason="tool_calls",
        usage=Usage(9, 6, 1, 2, 1, 3),
        id="resp-1",
        tool_calls=(ToolCall("c1", "f", "{}"),),
        raw_finish_reason="tool_use",
        provider="before",
        request_id="rid-before",
        server_ms=12.5,
        thinking=(ThinkingPart("hmm", "sig"),),
        stop_sequence="STOP",
        alternatives=(Alternative("41", "stop"),),
        logprobs=(TokenLogprob("42", -0.1),),
        refusal="no",
    )
    # a field added to ChatResponse must come through too: none of them is left default here
    defaults = ChatResponse("", "", "stop", Usage())
    assert all(getattr(full, f.name) != getattr(defaults, f.name) for f in fields(ChatResponse))
    served = _served(full, "openai", "rid-1")
    assert served == replace(full, provider="openai", request_id="rid-1")
    assert _served(defaults, "p", None) == replace(defaults, provider="p", request_id=None)
