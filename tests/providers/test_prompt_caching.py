"""Prompt caching through the adapters: breakpoints sent where they were (Anthropic), left to
the vendor's own caching elsewhere, and every vendor's cache and reasoning counts read."""

from __future__ import annotations

import json
from typing import Any

from polyroute.events import StreamEnd
from polyroute.providers import anthropic, google, mistral, openai
from polyroute.providers.anthropic import AnthropicProtocol, AnthropicStreamDecoder
from polyroute.providers.google import GoogleProtocol
from polyroute.providers.openai import OpenAIProtocol, OpenAIStreamDecoder
from polyroute.types import (
    CacheControl,
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)

FIVE = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


def cached_request(**kw: Any) -> ChatRequest:
    return ChatRequest(
        model="claude-haiku-4-5",
        messages=(
            Message("system", (TextPart("policy", CacheControl("1h")), TextPart("today"))),
            Message(
                "user",
                (
                    TextPart("the long document", CacheControl()),
                    ImagePart(data="AAAA", cache_control=CacheControl()),
                ),
            ),
            Message(
                "assistant",
                "looking",
                tool_calls=(ToolCall("t1", "look", '{"q":"x"}'),),
                cache_control=CacheControl(),
            ),
            Message("tool", "found", tool_call_id="t1", cache_control=CacheControl()),
            Message("user", (TextPart("and now?", CacheControl()),)),
        ),
        tools=(Tool("look", "Look it up.", cache_control=CacheControl("1h")), Tool("other")),
        **kw,
    )


def test_anthropic_sends_every_breakpoint_where_it_was() -> None:
    body: Any = AnthropicProtocol().chat(cached_request(), stream=False).json
    assert body["system"] == [
        {"type": "text", "text": "policy", "cache_control": HOUR},
        {"type": "text", "text": "today"},
    ]
    assert body["tools"][0]["cache_control"] == HOUR and "cache_control" not in body["tools"][1]
    user, assistant, result = body["messages"]
    assert [b.get("cache_control") for b in user["content"]] == [FIVE, FIVE]
    assert assistant["content"][-1]["type"] == "tool_use"
    assert assistant["content"][-1]["cache_control"] == FIVE
    assert "cache_control" not in assistant["content"][0]
    # the tool result and the next user text share one user turn, each keeping its mark
    assert [b["type"] for b in result["content"]] == ["tool_result", "text"]
    assert [b["cache_control"] for b in result["content"]] == [FIVE, FIVE]


def test_anthropic_keeps_a_lone_marked_text_as_a_block_and_plain_system_as_a_string() -> None:
    request = ChatRequest(
        "claude-haiku-4-5",
        (Message.system("be brief"), Message.user((TextPart("hi", CacheControl()),))),
    )
    body: Any = AnthropicProtocol().chat(request, stream=False).json
    assert body["system"] == "be brief"
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": FIVE}]}
    ]


def test_anthropic_forwards_betas_as_its_header() -> None:
    call = AnthropicProtocol().chat(
        ChatRequest("claude-haiku-4-5", (Message.user("hi"),), betas=("a-1", "b-2")),
        stream=True,
    )
    assert call.headers == {"anthropic-beta": "a-1,b-2"}
    plain = AnthropicProtocol().chat(ChatRequest("m", (Message.user("hi"),)), stream=False)
    assert plain.headers is None


def test_openai_and_gemini_cache_by_themselves_so_breakpoints_stay_home() -> None:
    request = cached_request()
    for call in (
        OpenAIProtocol().chat(request, stream=False),
        GoogleProtocol().chat(request, stream=False),
    ):
        text = json.dumps(call.json)
        assert "cache_control" not in text and "policy" in text and call.headers is None


def test_anthropic_usage_adds_cache_reads_and_writes_to_the_prompt() -> None:
    u = anthropic.usage_from_wire(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 50,
            "output_tokens_details": {"thinking_tokens": 20},
        }
    )
    assert u == Usage(1310, 50, 1000, 300, 200, 20)


def test_anthropic_stream_usage_from_message_start_and_delta() -> None:
    d = AnthropicStreamDecoder("anthropic")
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "m",
            "usage": {
                "input_tokens": 4,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 30,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 10,
                    "ephemeral_1h_input_tokens": 20,
                },
                "output_tokens": 1,
            },
        },
    }
    d.feed(json.dumps(start), "message_start")
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 9, "output_tokens_details": {"thinking_tokens": 5}},
    }
    d.feed(json.dumps(delta), "message_delta")
    [end] = d.feed('{"type":"message_stop"}', "message_stop")
    assert isinstance(end, StreamEnd)
    assert end.usage == Usage(134, 9, 100, 30, 20, 5)


def test_openai_usage_reads_cached_and_reasoning_details() -> None:
    wire = {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 1536},
        "completion_tokens_details": {"reasoning_tokens": 256},
    }
    assert openai.usage_from_wire(wire) == Usage(2000, 300, 1536, reasoning_tokens=256)
    assert mistral.usage_from_wire(wire) == Usage(2000, 300, 1536, reasoning_tokens=256)


def test_openai_stream_usage_chunk_carries_the_details() -> None:
    d = OpenAIStreamDecoder("openai")
    d.feed('{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}', None)
    usage = {
        "prompt_tokens": 40,
        "completion_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 32},
        "completion_tokens_details": {"reasoning_tokens": 6},
    }
    d.feed(json.dumps({"id": "c", "model": "m", "choices": [], "usage": usage}), None)
    [end] = d.feed("[DONE]", None)
    assert isinstance(end, StreamEnd) and end.usage == Usage(40, 8, 32, reasoning_tokens=6)


def test_gemini_usage_reads_cached_content_and_thoughts() -> None:
    u = google.usage_from_wire(
        {
            "promptTokenCount": 5000,
            "cachedContentTokenCount": 4096,
            "candidatesTokenCount": 100,
            "thoughtsTokenCount": 400,
        }
    )
    assert u == Usage(5000, 500, 4096, reasoning_tokens=400)


def test_a_message_marked_as_a_whole_marks_its_last_block() -> None:
    request = ChatRequest(
        "claude-haiku-4-5",
        (
            Message("system", "rules", cache_control=CacheControl("1h")),
            Message("user", (TextPart("a"), TextPart("b")), cache_control=CacheControl()),
        ),
    )
    body: Any = AnthropicProtocol().chat(request, stream=False).json
    assert body["system"] == [{"type": "text", "text": "rules", "cache_control": HOUR}]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b", "cache_control": FIVE},
    ]
