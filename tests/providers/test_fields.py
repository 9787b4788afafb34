"""Step 7 point 5, adapter side: every content kind and request field reaches each vendor's
wire as the vendor names it, translated, or is refused by name before any call (DESIGN §9)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from polyroute.errors import UnsupportedError
from polyroute.providers import anthropic, google, mistral, ollama, openai
from polyroute.providers._base import WireProtocol
from polyroute.types import (
    ChatRequest,
    DocumentPart,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
)

PDF = "JVBERi0xLjQK"
OPENAI = openai.OpenAIProtocol()
COMPATIBLE = openai.OpenAICompatibleProtocol()
ANTHROPIC = anthropic.AnthropicProtocol()
GOOGLE = google.GoogleProtocol()
MISTRAL = mistral.MistralProtocol()
OLLAMA = ollama.OllamaProtocol()
ALL: dict[str, WireProtocol] = {
    "openai": OPENAI,
    "openai-compatible": COMPATIBLE,
    "anthropic": ANTHROPIC,
    "google": GOOGLE,
    "mistral": MISTRAL,
    "ollama": OLLAMA,
}
TOOL = Tool("lookup", "find a thing", {"type": "object", "properties": {}})


def body(protocol: WireProtocol, request: ChatRequest, *, stream: bool = False) -> Any:
    call = protocol.chat(request, stream=stream)
    assert call.json is not None
    return call.json


def ask(*parts: Any, **fields: Any) -> ChatRequest:
    content = list(parts) or "hi"
    return ChatRequest("m", [Message.user(content)], **fields)


# -- documents -------------------------------------------------------------------


def test_a_pdf_is_a_file_part_for_openai_types() -> None:
    request = ask(TextPart("read"), DocumentPart(data=PDF, filename="a.pdf"))
    for protocol in (OPENAI, COMPATIBLE):
        part = body(protocol, request)["messages"][0]["content"][1]
        assert part == {
            "type": "file",
            "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"},
        }


def test_openai_takes_no_document_url() -> None:
    with pytest.raises(UnsupportedError, match="openai cannot take a document by URL"):
        OPENAI.chat(ask(DocumentPart(url="https://x.test/a.pdf")), stream=False)


def test_a_pdf_is_a_document_block_for_anthropic() -> None:
    request = ask(
        DocumentPart(data=PDF, filename="Report"), DocumentPart(url="https://x.test/a.pdf")
    )
    blocks = body(ANTHROPIC, request)["messages"][0]["content"]
    assert blocks == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "title": "Report",
        },
        {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
    ]


def test_a_plain_text_document_goes_to_anthropic_as_text() -> None:
    data = base64.b64encode("héllo".encode()).decode()
    blocks = body(ANTHROPIC, ask(DocumentPart(data=data, media_type="text/plain")))
    source = blocks["messages"][0]["content"][0]["source"]
    assert source == {"type": "text", "media_type": "text/plain", "data": "héllo"}


def test_a_pdf_is_inline_data_for_gemini() -> None:
    parts = body(GOOGLE, ask(DocumentPart(data=PDF), DocumentPart(url="gs://b/a.pdf")))
    assert parts["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/a.pdf"}},
    ]


def test_mistral_takes_documents_by_url_only() -> None:
    request = ask(DocumentPart(url="https://x.test/a.pdf", filename="a.pdf"))
    part = body(MISTRAL, request)["messages"][0]["content"][0]
    assert part == {
        "type": "document_url",
        "document_url": "https://x.test/a.pdf",
        "document_name": "a.pdf",
    }
    with pytest.raises(UnsupportedError, match="mistral cannot take a document's data"):
        MISTRAL.chat(ask(DocumentPart(data=PDF)), stream=False)


def test_ollama_refuses_documents_by_name() -> None:
    with pytest.raises(UnsupportedError, match="ollama cannot take a document part"):
        OLLAMA.chat(ask(DocumentPart(data=PDF)), stream=False)


# -- image detail ------------------------------------------------------------------


def test_image_detail() -> None:
    request = ask(ImagePart(data="aGk=", detail="low"))
    for protocol in (OPENAI, COMPATIBLE, MISTRAL):
        image = body(protocol, request)["messages"][0]["content"][0]["image_url"]
        assert image["detail"] == "low"
    part = body(GOOGLE, request)["contents"][0]["parts"][0]
    assert part["mediaResolution"] == {"level": "MEDIA_RESOLUTION_LOW"}
    auto = body(GOOGLE, ask(ImagePart(data="aGk=", detail="auto")))["contents"][0]["parts"][0]
    assert "mediaResolution" not in auto  # auto: the API's own choice
    # no equivalent (a hint): ignored, as the README's table says
    assert "detail" not in str(body(ANTHROPIC, request))
    assert "detail" not in str(body(OLLAMA, request))


# -- parallel tool calls -------------------------------------------------------------


def test_parallel_tool_calls() -> None:
    request = ask(tools=[TOOL], parallel_tool_calls=False)
    for protocol in (OPENAI, COMPATIBLE, MISTRAL):
        assert body(protocol, request)["parallel_tool_calls"] is False
    assert body(ANTHROPIC, request)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    forced = body(ANTHROPIC, ask(tools=[TOOL], tool_choice="required", parallel_tool_calls=False))
    assert forced["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    for name, protocol in (("google", GOOGLE), ("ollama", OLLAMA)):
        with pytest.raises(UnsupportedError, match=f"{name} cannot take parallel_tool_calls"):
            protocol.chat(request, stream=False)
    # true is every vendor's default
    for protocol in ALL.values():
        protocol.chat(ask(tools=[TOOL], parallel_tool_calls=True), stream=False)


# -- is_error -------------------------------------------------------------------------


def failed_tool_turn() -> ChatRequest:
    return ChatRequest(
        "m",
        [
            Message.user("go"),
            Message.assistant("", [ToolCall("call_1", "lookup", "{}")]),
            Message("tool", "no such file", tool_call_id="call_1", name="lookup", is_error=True),
        ],
    )


def test_a_failed_tool_result() -> None:
    request = failed_tool_turn()
    result = body(ANTHROPIC, request)["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True
    for protocol in (OPENAI, COMPATIBLE, MISTRAL):
        assert body(protocol, request)["messages"][2]["content"] == "Error: no such file"
    assert body(OLLAMA, request)["messages"][2]["content"] == "Error: no such file"
    response = body(GOOGLE, request)["contents"][2]["parts"][0]["functionResponse"]
    assert response["response"] == {"error": "no such file"}


# -- n, logprobs, seed, user, metadata, store, service_tier ---------------------------


def test_openai_types_carry_every_field() -> None:
    request = ask(
        tools=[TOOL],
        n=2,
        logprobs=True,
        top_logprobs=3,
        seed=7,
        user="u-1",
        metadata={"app": "x"},
        store=True,
        service_tier="flex",
    )
    for protocol in (OPENAI, COMPATIBLE):
        sent = body(protocol, request)
        assert {k: sent[k] for k in ("n", "logprobs", "top_logprobs", "seed", "user")} == {
            "n": 2,
            "logprobs": True,
            "top_logprobs": 3,
            "seed": 7,
            "user": "u-1",
        }
        assert sent["metadata"] == {"app": "x"} and sent["store"] is True
        assert sent["service_tier"] == "flex"


def test_mistral_fields() -> None:
    request = ask(n=3, logprobs=True, top_logprobs=2, seed=5, metadata={"a": "b"})
    sent = body(MISTRAL, request)
    assert sent["n"] == 3 and sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert sent["random_seed"] == 5 and "seed" not in sent
    assert sent["metadata"] == {"a": "b"}
    assert body(MISTRAL, ask(service_tier="default"))["service_tier"] == "standard_only"
    for field, value in (("store", True), ("service_tier", "flex")):
        with pytest.raises(UnsupportedError, match=f"mistral cannot take {field}"):
            MISTRAL.chat(ask(**{field: value}), stream=False)


def test_gemini_fields() -> None:
    sent = body(GOOGLE, ask(n=2, logprobs=True, top_logprobs=4, seed=9, service_tier="flex"))
    config = sent["generationConfig"]
    assert config["candidateCount"] == 2 and config["seed"] == 9
    assert config["responseLogprobs"] is True and config["logprobs"] == 4
    assert sent["serviceTier"] == "flex"
    assert body(GOOGLE, ask(service_tier="default"))["serviceTier"] == "standard"
    assert "serviceTier" not in body(GOOGLE, ask(service_tier="auto"))
    for field, value in (("metadata", {"a": "b"}), ("store", True), ("service_tier", "scale")):
        with pytest.raises(UnsupportedError, match=f"google cannot take {field}"):
            GOOGLE.chat(ask(**{field: value}), stream=False)


def test_anthropic_fields() -> None:
    sent = body(ANTHROPIC, ask(user="u-1", service_tier="default"))
    assert sent["metadata"] == {"user_id": "u-1"}
    assert sent["service_tier"] == "standard_only"
    assert body(ANTHROPIC, ask(service_tier="auto"))["service_tier"] == "auto"
    for field, value in (
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 2),
        ("seed", 1),
        ("metadata", {"a": "b"}),
        ("store", True),
        ("service_tier", "priority"),
    ):
        with pytest.raises(UnsupportedError, match=f"anthropic cannot take {field}"):
            ANTHROPIC.chat(ask(**{field: value}), stream=False)


def test_ollama_fields() -> None:
    sent = body(OLLAMA, ask(logprobs=True, top_logprobs=2, seed=3, service_tier="auto"))
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    assert sent["options"]["seed"] == 3
    for field, value in (
        ("n", 2),
        ("metadata", {"a": "b"}),
        ("store", True),
        ("service_tier", "flex"),
    ):
        with pytest.raises(UnsupportedError, match=f"ollama cannot take {field}"):
            OLLAMA.chat(ask(**{field: value}), stream=False)


def test_user_is_ignored_where_the_vendor_has_no_equivalent() -> None:
    """An end-user id for the vendor's abuse monitoring changes no answer, and Claude Code
    sends one with every request (``metadata.user_id``): ignored, as the README's table says,
    rather than shutting those vendors out."""
    for protocol in (GOOGLE, MISTRAL, OLLAMA):
        assert "u-1" not in str(body(protocol, ask(user="u-1")))


@pytest.mark.parametrize("vendor", ["openai", "google", "mistral", "ollama"])
def test_n_and_logprobs_do_not_stream(vendor: str) -> None:
    protocol = ALL[vendor]
    if vendor != "ollama":
        with pytest.raises(UnsupportedError, match="n > 1 with stream"):
            protocol.chat(ask(n=2), stream=True)
    with pytest.raises(UnsupportedError, match="logprobs with stream"):
        protocol.chat(ask(logprobs=True), stream=True)


# -- answers: several choices, log probabilities -------------------------------------


def test_openai_choices_and_logprobs_come_back() -> None:
    top = [{"token": "Hi", "logprob": -0.1}, {"token": "Yo", "logprob": -2.5}]
    response = OPENAI.parse_chat(
        {
            "id": "x",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi"},
                    "finish_reason": "stop",
                    "logprobs": {
                        "content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": top}]
                    },
                },
                {
                    "index": 1,
                    "message": {"role": "assistant", "content": "Hello there"},
                    "finish_reason": "length",
                    "logprobs": None,
                },
            ],
        }
    )
    assert response.content == "Hi"
    assert response.logprobs is not None
    assert response.logprobs[0].top == (("Hi", -0.1), ("Yo", -2.5))
    [other] = response.alternatives
    assert (other.content, other.finish_reason, other.logprobs) == (
        "Hello there",
        "length",
        None,
    )


def test_gemini_candidates_and_logprobs_come_back() -> None:
    logprobs = {
        "chosenCandidates": [{"token": "A", "logProbability": -0.5}],
        "topCandidates": [
            {
                "candidates": [
                    {"token": "A", "logProbability": -0.5},
                    {"token": "B", "logProbability": -1.5},
                ]
            }
        ],
    }
    response = GOOGLE.parse_chat(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "A"}]},
                    "finishReason": "STOP",
                    "logprobsResult": logprobs,
                },
                {"content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "STOP"},
            ],
            "modelVersion": "gemini-2.5-flash",
        }
    )
    assert response.logprobs is not None
    assert response.logprobs[0].token == "A"
    assert response.logprobs[0].top == (("A", -0.5), ("B", -1.5))
    assert [a.content for a in response.alternatives] == ["B"]


def test_ollama_logprobs_come_back() -> None:
    response = OLLAMA.parse_chat(
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": "ok"},
            "done": True,
            "done_reason": "stop",
            "logprobs": [{"token": "ok", "logprob": -0.01, "top_logprobs": []}],
        }
    )
    assert response.logprobs is not None and response.logprobs[0].logprob == -0.01


# -- embeddings: token ids -------------------------------------------------------------


def test_token_id_embeddings() -> None:
    request = EmbeddingRequest("e", ((1, 2, 3), (4, 5)))
    for protocol in (OPENAI, COMPATIBLE):
        call = protocol.embed(request)
        assert call.json is not None and call.json["input"] == [[1, 2, 3], [4, 5]]
    for name, protocol in (("google", GOOGLE), ("mistral", MISTRAL), ("ollama", OLLAMA)):
        with pytest.raises(UnsupportedError, match=f"{name} cannot take input as token ids"):
            protocol.embed(request)
