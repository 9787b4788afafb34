"""A content part an adapter does not translate is refused by name before any call,
never dropped (DESIGN §9)."""

from __future__ import annotations

import pytest

from polyroute.errors import UnsupportedError
from polyroute.providers import anthropic, google, ollama, openai
from polyroute.providers._base import WireProtocol
from polyroute.types import ChatRequest, DocumentPart, Message, TextPart, ThinkingPart

PDF = DocumentPart(data="JVBERi0xLjQK")


@pytest.mark.parametrize("part", [PDF, ThinkingPart("hmm", signature="sig")])
@pytest.mark.parametrize(
    ("vendor", "protocol"),
    [
        ("openai", openai.OpenAIProtocol()),
        ("anthropic", anthropic.AnthropicProtocol()),
        ("google", google.GoogleProtocol()),
        ("ollama", ollama.OllamaProtocol()),
    ],
)
def test_an_untranslated_part_is_refused_by_name(
    vendor: str, protocol: WireProtocol, part: DocumentPart | ThinkingPart
) -> None:
    request = ChatRequest("m", [Message.user([TextPart("read this"), part])])
    with pytest.raises(UnsupportedError, match=f"{vendor} cannot take a {part.kind} part"):
        protocol.chat(request, stream=False)
