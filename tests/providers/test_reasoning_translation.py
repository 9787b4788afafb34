"""Reasoning asked one way reaches each vendor its own way (effort, budget, level, think), and
another vendor's thinking parts are left out of the history, never sent as text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from polyroute.events import TextDelta, ThinkingDelta
from polyroute.providers.google import GoogleProtocol
from polyroute.providers.mistral import MistralProtocol
from polyroute.providers.ollama import OllamaProtocol
from polyroute.providers.openai import OpenAIProtocol
from polyroute.reasoning import EFFORT_BUDGETS, budget_of, effort_of
from polyroute.types import (
    ChatRequest,
    Message,
    Reasoning,
    TextPart,
    ThinkingPart,
    ToolCall,
)

SIGNED = ThinkingPart("Claude's private reasoning", signature="sig-abc")
HISTORY = (
    Message.user("q"),
    Message(
        "assistant",
        (SIGNED, TextPart("calling")),
        tool_calls=(ToolCall("c1", "f", "{}"),),
    ),
    Message.tool("c1", "42", name="f"),
)


def req(model: str, reasoning: Reasoning | None, messages: Any = HISTORY) -> ChatRequest:
    return ChatRequest(model, messages, reasoning=reasoning)


def body(protocol: Any, request: ChatRequest) -> dict[str, Any]:
    out = protocol.chat(request, stream=False).json
    assert out is not None
    return dict(out)


@pytest.mark.parametrize(
    ("reasoning", "effort", "budget"),
    [
        (Reasoning(effort="high"), "high", EFFORT_BUDGETS["high"]),
        (Reasoning(budget_tokens=10_000), "medium", 10_000),
        (Reasoning(budget_tokens=500), "minimal", 500),
        (Reasoning(budget_tokens=EFFORT_BUDGETS["low"]), "low", EFFORT_BUDGETS["low"]),
    ],
)
def test_effort_and_budget_map_both_ways(reasoning: Reasoning, effort: str, budget: int) -> None:
    assert effort_of(reasoning) == effort and budget_of(reasoning) == budget
    for e, b in EFFORT_BUDGETS.items():  # each effort's budget reads back as that effort
        assert effort_of(Reasoning(budget_tokens=b)) == e


def test_openai_and_mistral_get_reasoning_effort_and_no_thinking_text() -> None:
    for protocol in (OpenAIProtocol(), MistralProtocol()):
        sent = body(protocol, req("gpt-5", Reasoning(budget_tokens=3000)))
        assert sent["reasoning_effort"] == "low"
        assert "Claude's private reasoning" not in json.dumps(sent)
        assert sent["messages"][1]["content"] == [{"type": "text", "text": "calling"}]
    assert "reasoning_effort" not in body(OpenAIProtocol(), req("gpt-5", None))


def test_an_assistant_turn_of_thinking_only_is_empty_text_for_openai() -> None:
    only = (Message.user("q"), Message("assistant", (SIGNED,)), Message.user("again"))
    sent = body(OpenAIProtocol(), req("gpt-5", None, only))
    assert sent["messages"][1] == {"role": "assistant", "content": ""}


def test_gemini_25_gets_a_budget_and_gemini_3_a_level() -> None:
    g = GoogleProtocol()
    config = body(g, req("gemini-2.5-flash", Reasoning(effort="medium")))["generationConfig"]
    assert config["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 8192}
    big = body(g, req("gemini-2.5-pro", Reasoning(budget_tokens=60_000)))["generationConfig"]
    assert big["thinkingConfig"]["thinkingBudget"] == 24_576
    pro = body(g, req("gemini-3-pro-preview", Reasoning(budget_tokens=2048)))["generationConfig"]
    assert pro["thinkingConfig"] == {"includeThoughts": True, "thinkingLevel": "low"}
    flash = body(g, req("gemini-3-flash-preview", Reasoning(effort="medium")))
    assert flash["generationConfig"]["thinkingConfig"]["thinkingLevel"] == "medium"
    sent = body(g, req("gemini-2.5-flash", None))
    assert "thinkingConfig" not in sent.get("generationConfig", {})
    assert "Claude's private reasoning" not in json.dumps(sent)


def test_gemini_thought_summaries_are_thinking_not_text() -> None:
    g = GoogleProtocol()
    parts = [{"text": "pondering", "thought": True}, {"text": "Rome"}]
    wire = {"candidates": [{"content": {"parts": parts}, "finishReason": "STOP"}]}
    r = g.parse_chat(wire)
    assert r.content == "Rome" and [t.text for t in r.thinking] == ["pondering"]
    events = g.stream_decoder(req("gemini-2.5-flash", None)).feed(json.dumps(wire), None)
    assert [type(e) for e in events if isinstance(e, TextDelta | ThinkingDelta)] == [
        ThinkingDelta,
        TextDelta,
    ]


def test_ollama_gets_think_and_reads_thinking_apart_from_content() -> None:
    o = OllamaProtocol()
    sent = body(o, req("qwen3", Reasoning(effort="low")))
    assert sent["think"] is True
    assert "Claude's private reasoning" not in json.dumps(sent)
    assert "think" not in body(o, req("qwen3", None))
    wire = {
        "model": "qwen3",
        "message": {"role": "assistant", "content": "Rome", "thinking": "hmm"},
        "done": True,
        "done_reason": "stop",
    }
    r = o.parse_chat(wire)
    assert r.content == "Rome" and [t.text for t in r.thinking] == ["hmm"]
    events = o.stream_decoder(req("qwen3", None)).feed(json.dumps(wire), None)
    assert [e for e in events if isinstance(e, ThinkingDelta)] == [ThinkingDelta(0, "hmm")]
