"""The official openai SDK parses what the simulator's Responses API sends (``responses.create``,
``responses.stream``, each body and event validated against the SDK's own models), and
polyroute's adapter reads the same bytes; ``chat.completions.parse`` reads a refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from polyroute.providers.openai import OpenAIProtocol
from polyroute.testing import OpenAISimulator
from polyroute.testing.mistral import MistralSimulator
from polyroute.types import ChatRequest

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(reply="Hello from the wire", models=("o3-pro",)) as s:
        yield s


@pytest.fixture
def sdk(sim: OpenAISimulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="sim-key", max_retries=0)


def raw(sim: OpenAISimulator, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{sim.base_url}/responses", json=body, headers={"authorization": "Bearer sim-key"}
    )


def events_of(response: httpx.Response) -> list[dict[str, Any]]:
    out = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            data = json.loads(lines["data"])
            assert lines["event"] == data["type"]
            out.append(data)
    return out


def test_a_response_validates_and_the_sdk_and_polyroute_read_it(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    body = raw(sim, {"model": "o3-pro", "input": "hi", "reasoning": {"effort": "low"}}).json()
    Response.model_validate(body)  # strictly, not the SDK's lenient construction
    r = sdk.responses.create(model="o3-pro", input="hi", instructions="Be brief.")
    assert r.output_text == "Hello from the wire" and r.status == "completed"
    assert r.usage is not None and r.usage.output_tokens == 5
    assert r.usage.input_tokens_details.cached_tokens == 0
    ours = OpenAIProtocol().parse_chat(body)
    assert ours.content == "Hello from the wire" and ours.usage.completion_tokens == 5


def test_a_stream_with_a_function_call_and_reasoning_validates_and_accumulates(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    request: dict[str, Any] = {
        "model": "o3-pro",
        "input": "weather in Paris?",
        "tools": [WEATHER],
        "tool_choice": "required",
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "stream": True,
    }
    events = events_of(raw(sim, request))
    for i, event in enumerate(events):
        EVENTS.validate_python(event)
        assert event["sequence_number"] == i
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.function_call_arguments.delta") == 3
    assert "response.reasoning_summary_text.delta" in kinds

    with sdk.responses.stream(
        model="o3-pro",
        input="weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        reasoning={"effort": "high", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        store=False,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    reasoning, call = final.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert reasoning.summary[0].text.startswith("Thinking about")
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "sample"}

    decoder = OpenAIProtocol(frozenset({"o3-pro"})).stream_decoder(ChatRequest("o3-pro", []))
    ours = [e for event in events for e in decoder.feed(json.dumps(event), event["type"])]
    assert decoder.done
    args = "".join(e.arguments for e in ours if e.kind == "tool_call")
    assert json.loads(args) == {"city": "sample"}
    thinking = "".join(e.text for e in ours if e.kind == "thinking")
    assert thinking == reasoning.summary[0].text


def test_a_text_stream_a_truncation_and_a_failure_validate(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    with sdk.responses.stream(model="o3-pro", input="hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert text == "Hello from the wire"
        assert stream.get_final_response().output_text == text
    short = events_of(
        raw(sim, {"model": "o3-pro", "input": "hi", "max_output_tokens": 2, "stream": True})
    )
    for event in short:
        EVENTS.validate_python(event)
    assert short[-1]["type"] == "response.incomplete"
    assert short[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    sim.stream_error = "server_error"
    failed = events_of(raw(sim, {"model": "o3-pro", "input": "hi", "stream": True}))
    for event in failed:
        EVENTS.validate_python(event)
    assert [e["type"] for e in failed[-2:]] == ["error", "response.failed"]


def test_a_refusal_validates_in_both_apis(sim: OpenAISimulator) -> None:
    sim.refusal = "I can't help with that."
    body = raw(sim, {"model": "o3-pro", "input": "hi"}).json()
    Response.model_validate(body)
    assert body["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I can't help with that."}
    ]
    for event in events_of(raw(sim, {"model": "o3-pro", "input": "hi", "stream": True})):
        EVENTS.validate_python(event)


class Answer(pydantic.BaseModel):
    city: str


def test_chat_completions_parse_reads_a_refusal(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    sim.refusal = "I can't help with that."
    r = sdk.chat.completions.parse(
        model="o3-pro", messages=[{"role": "user", "content": "hi"}], response_format=Answer
    )
    message = r.choices[0].message
    assert message.parsed is None and message.refusal == "I can't help with that."
    with sdk.chat.completions.stream(
        model="o3-pro", messages=[{"role": "user", "content": "hi"}], response_format=Answer
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.refusal == "I can't help with that."


def test_only_openai_serves_the_responses_api() -> None:
    with MistralSimulator() as mistral:
        sent = httpx.post(
            f"{mistral.root_url}/v1/responses",
            json={"model": "mistral-small-latest", "input": "hi"},
            headers={"authorization": "Bearer sim-key"},
        )
    assert sent.status_code == 404
