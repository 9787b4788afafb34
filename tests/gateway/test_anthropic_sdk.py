"""The official anthropic SDK against the gateway: JSON, streams, tools, and format crossing."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from anthropic.types import MessageParam, RawMessageDeltaEvent, ToolParam

from gateway.support import Gateway

MSGS: list[MessageParam] = [{"role": "user", "content": "hi"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        yield c


def test_an_openai_upstream_answers_an_anthropic_caller(
    sdk: anthropic.Anthropic, gateway: Gateway
) -> None:
    raw = sdk.messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=100,
        system=[{"type": "text", "text": "be"}, {"type": "text", "text": "brief"}],
        messages=MSGS,
        stop_sequences=["END"],
        metadata={"user_id": "u-7"},
    )
    m = raw.parse()
    assert m.type == "message" and m.role == "assistant" and m.model == "gpt-4o-mini"
    assert m.content[0].type == "text"
    assert m.content[0].text == "Simulated openai reply from gpt-4o-mini."
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (3, 10)
    assert raw.headers["x-polyroute-provider"] == "openai"
    body = gateway.fleet["openai"].last_request().body
    assert body["messages"][0] == {"role": "system", "content": "be\n\nbrief"}
    assert (body["stop"], body["user"], body["max_completion_tokens"]) == (["END"], "u-7", 100)


def test_stream_helper_through_an_openai_upstream(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model="gpt-4o", max_tokens=3, messages=MSGS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Simulated openai reply"[: len(text)] and text
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens == 1


def test_raw_stream_events_in_order(sdk: anthropic.Anthropic) -> None:
    events = list(
        sdk.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MSGS, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    delta = events[-2]
    assert isinstance(delta, RawMessageDeltaEvent) and delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 12 and delta.usage.input_tokens == 1


def test_tool_use_and_result_round_trip(sdk: anthropic.Anthropic, gateway: Gateway) -> None:
    gateway.fleet["anthropic"].script.reply = '{"city": "Rome"}'
    m = sdk.messages.create(
        model="anthropic/claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert m.stop_reason == "tool_use"
    [use] = [b for b in m.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Rome"}

    # the result goes back through an OpenAI upstream: tool_result -> a tool message
    m2 = sdk.messages.create(
        model="gpt-4o",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": [use.model_dump()]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "hot"},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
        tools=[WEATHER],
    )
    assert m2.content[0].type == "text"
    sent = gateway.fleet["openai"].last_request().body["messages"]
    assert [t["role"] for t in sent] == ["user", "assistant", "tool", "user"]
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Rome"}',
    }
    assert sent[2] == {"role": "tool", "content": "hot", "tool_call_id": use.id}


def test_streamed_tool_use(sdk: anthropic.Anthropic, gateway: Gateway) -> None:
    gateway.fleet["anthropic"].script.reply = '{"city": "Lima"}'
    with sdk.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=MSGS,
        tools=[WEATHER],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [use] = [b for b in final.content if b.type == "tool_use"]
    assert use.input == {"city": "Lima"}


def test_models_list_in_the_anthropic_shape(sdk: anthropic.Anthropic) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert "claude-sonnet-4-6" in ids and "auto" in ids and "openai/gpt-4o" in ids
