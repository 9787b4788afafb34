"""The official openai SDK against the gateway: JSON, streams, usage, tools, embeddings."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from gateway.support import Gateway

MSGS = [{"role": "user", "content": "hi"}]
OPENAI_REPLY = "Simulated openai reply from gpt-4o-mini."
CLAUDE_REPLY = "Simulated anthropic reply from claude-sonnet-4-6."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_json_answer_with_usage_and_headers(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSGS, max_tokens=50
    )
    r = raw.parse()
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.content == OPENAI_REPLY
    assert r.choices[0].finish_reason == "stop" and r.model == "gpt-4o-mini"
    assert r.usage is not None and r.usage.completion_tokens == 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + 10
    assert raw.headers["x-polyroute-provider"] == "openai"
    assert raw.headers["x-polyroute-model"] == "gpt-4o-mini"
    assert float(raw.headers["x-polyroute-cost-usd"]) > 0


def test_an_anthropic_upstream_answers_an_openai_caller(
    sdk: openai.OpenAI, gateway: Gateway
) -> None:
    r = sdk.chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "system", "content": "be brief"}, *MSGS],
        max_completion_tokens=3,
    )
    assert r.choices[0].finish_reason == "length"  # max_tokens on the Anthropic side
    assert r.usage is not None and r.usage.completion_tokens == 3
    body = gateway.fleet["anthropic"].last_request().body
    assert body["system"] == "be brief" and body["max_tokens"] == 3


def test_stream_with_include_usage(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="anthropic/claude-sonnet-4-6",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-polyroute-provider"] == "anthropic"
    assert raw.headers["x-polyroute-model"] == "claude-sonnet-4-6"
    assert raw.headers["x-polyroute-cost-estimated"] == "true"
    chunks = list(raw.parse())
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CLAUDE_REPLY
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 13
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tools_round_trip(sdk: openai.OpenAI, gateway: Gateway) -> None:
    gateway.fleet["anthropic"].script.reply = '{"city": "Paris"}'
    forced = {"type": "function", "function": {"name": "get_weather"}}
    r = sdk.chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice=forced,  # type: ignore[arg-type]
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    sent = gateway.fleet["anthropic"].last_request().body
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert sent["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}

    gateway.fleet["anthropic"].script.reply = "Sunny in Paris."
    r = sdk.chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert r.choices[0].message.content == "Sunny in Paris."
    turns = gateway.fleet["anthropic"].last_request().body["messages"]
    assert turns[1]["content"][0]["type"] == "tool_use"
    assert turns[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": "sunny, 24C",
    }


def test_streamed_tool_call(sdk: openai.OpenAI, gateway: Gateway) -> None:
    gateway.fleet["anthropic"].script.reply = '{"city": "Oslo"}'
    chunks = list(
        sdk.chat.completions.create(
            model="claude-sonnet-4-6",
            messages=MSGS,
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="required",
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id and calls[0].function and calls[0].function.name == "get_weather"
    arguments = "".join((tc.function.arguments or "") for tc in calls if tc.function)
    assert json.loads(arguments) == {"city": "Oslo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_json_mode_and_options_reach_the_upstream(sdk: openai.OpenAI, gateway: Gateway) -> None:
    sdk.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "developer", "content": "terse"}, *MSGS],
        response_format={"type": "json_object"},
        stop="END",
        seed=3,
        temperature=0.5,
        top_p=0.5,
        user="alice",
    )
    body = gateway.fleet["openai"].last_request().body
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": "terse"}
    assert (body["stop"], body["seed"], body["temperature"], body["user"]) == (
        ["END"],
        3,
        0.5,
        "alice",
    )


def test_image_parts_are_passed_on(sdk: openai.OpenAI, gateway: Gateway) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    sdk.chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
    )
    blocks = gateway.fleet["anthropic"].last_request().body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }


def test_embeddings_float_and_base64(sdk: openai.OpenAI) -> None:
    e = sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"])  # SDK: base64
    assert [d.index for d in e.data] == [0, 1] and len(e.data[0].embedding) == 8
    assert e.usage.prompt_tokens == 2
    f = sdk.embeddings.create(
        model="openai/text-embedding-3-small", input="a", encoding_format="float"
    )
    assert f.data[0].embedding == pytest.approx(e.data[0].embedding, abs=1e-6)


def test_models_list(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    for name in ("gpt-4o-mini", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-6", "auto"):
        assert name in ids
    assert {"auto:cost", "fusion", "fusion:majority", "text-embedding-3-small"} <= set(ids)
