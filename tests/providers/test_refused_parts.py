"""Every content part is translated by every adapter, never refused and never sent as
something else: a thinking part goes to Anthropic as its thinking block and is left out for
the other vendors (its signature is only good at Anthropic), never sent as text."""

from __future__ import annotations

import json

import pytest

from polyroute.providers import anthropic, google, ollama, openai
from polyroute.providers._base import WireProtocol
from polyroute.types import ChatRequest, Message, TextPart, ThinkingPart


@pytest.mark.parametrize(
    "protocol",
    [openai.OpenAIProtocol(), google.GoogleProtocol(), ollama.OllamaProtocol()],
)
def test_a_thinking_part_is_left_out_for_other_vendors(protocol: WireProtocol) -> None:
    turn = Message("assistant", (ThinkingPart("hmm, private", signature="sig"), TextPart("hi")))
    request = ChatRequest("m", [Message.user("q"), turn, Message.user("again")])
    sent = json.dumps(protocol.chat(request, stream=False).json)
    assert "hmm, private" not in sent and "sig" not in sent and "hi" in sent


def test_a_thinking_part_goes_to_anthropic_as_its_block() -> None:
    turn = Message("assistant", (TextPart("hi"), ThinkingPart("hmm", signature="sig")))
    request = ChatRequest("m", [Message.user("q"), turn, Message.user("again")])
    sent = anthropic.AnthropicProtocol().chat(request, stream=False).json
    assert sent is not None
    assert sent["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "hi"},
    ]
