"""The official openai SDK parses the simulator's hosted web search (``web_search_call``
items, ``url_citation`` annotations, ``response.web_search_call.*`` events), each body
and event validated strictly against the SDK's own models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from polyroute.testing import OpenAISimulator
from polyroute.testing._openai_responses import CITED_URL

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
TEXT = "The capital of France is Paris."


@pytest.fixture
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(reply=TEXT, models=("gpt-4.1-mini",)) as s:
        yield s


def post(sim: OpenAISimulator, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{sim.base_url}/responses", json=body, headers={"authorization": "Bearer sim-key"}
    )


BODY: dict[str, Any] = {
    "model": "gpt-4.1-mini",
    "input": "Capital?",
    "tools": [{"type": "web_search"}],
}


def test_a_searched_answer_validates(sim: OpenAISimulator) -> None:
    r = Response.model_validate(post(sim, BODY).json())  # strictly
    search, message = r.output
    assert search.type == "web_search_call" and search.action.type == "search"
    assert message.type == "message"
    [part] = message.content
    assert part.type == "output_text"
    [cite] = part.annotations
    assert cite.type == "url_citation" and cite.url == CITED_URL
    assert (cite.start_index, cite.end_index) == (0, len(TEXT))


def test_a_searched_stream_validates_event_by_event(sim: OpenAISimulator) -> None:
    r = post(sim, {**BODY, "stream": True})
    kinds = []
    for block in r.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            event = json.loads(lines["data"])
            assert lines["event"] == event["type"]
            EVENTS.validate_python(event)
            kinds.append(event["type"])
    assert kinds[2:8] == [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert "response.output_text.annotation.added" in kinds


def test_the_sdk_accumulates_a_searched_stream(sim: OpenAISimulator) -> None:
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="sim-key", max_retries=0)
    with sdk.responses.stream(**BODY) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert [o.type for o in final.output] == ["web_search_call", "message"]
    assert final.output_text == TEXT


def test_max_tool_calls_zero_searches_nothing(sim: OpenAISimulator) -> None:
    r = Response.model_validate(post(sim, {**BODY, "max_tool_calls": 0}).json())
    assert [o.type for o in r.output] == ["message"] and r.max_tool_calls == 0
