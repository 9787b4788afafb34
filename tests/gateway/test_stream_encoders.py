"""The stream encoders' fast path for text deltas writes the bytes their general path does."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from polyroute.gateway import _anthropic, _openai
from polyroute.gateway._anthropic import AnthropicMessages
from polyroute.gateway._openai import OpenAIChat
from polyroute.gateway._wire import ChatFormat, Inbound
from polyroute.types import ChatRequest, Usage


@dataclass(frozen=True, slots=True)
class Slow(TextDelta):
    """A text delta the fast path does not take (it matches the exact type)."""


def _events(text: type[TextDelta]) -> list[StreamEvent]:
    return [
        StreamStart("id", "m"),
        text(""),
        text("Hello"),
        text(' "quoted" \\ \u2028 café 😀\n'),
        ThinkingDelta(0, "hmm"),
        text("after thinking"),
        ToolCallDelta(0, "call_1", "f", '{"a":'),
        text("between"),
        ToolCallDelta(0, arguments="1}"),
        text("end"),
        StreamEnd("stop", Usage(3, 5)),
    ]


@pytest.mark.parametrize("fmt", [OpenAIChat(), AnthropicMessages()])
def test_text_deltas_are_written_as_the_general_path_writes_them(
    fmt: ChatFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (_openai, _anthropic):
        monkeypatch.setattr(module, "new_id", lambda prefix: prefix + "x")
    monkeypatch.setattr(_openai.time, "time", lambda: 1_700_000_000.0)
    inbound = Inbound(ChatRequest("m", ()), stream=True, include_usage=True)
    frames = {}
    for text in (TextDelta, Slow):
        encoder = fmt.encoder(inbound, "m")
        frames[text] = [encoder.event(e) for e in _events(text)]
    assert frames[TextDelta] == frames[Slow]
    assert "café".encode() in b"".join(frames[TextDelta])
