"""The gateway over a provider type from an installed plugin (examples/polyroute-cohere):
OpenAI and Anthropic callers, JSON and streams, a tool call and its result, on Cohere's
simulator. The official openai and anthropic SDKs are the callers.

The ``cohere`` SDK itself is not a test dependency: it pulls ``tokenizers`` (a native
wheel), ``fastavro`` and ``requests`` for a check the docs-derived simulator already
makes, so no contract test makes it parse the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from polyroute_cohere.simulator import CohereSimulator

from gateway.support import Server
from polyroute.client import Polyroute
from polyroute.config import Config, validate

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
MSGS = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[CohereSimulator]:
    with CohereSimulator(reply="Sunny and mild.") as s:
        yield s


@pytest.fixture(scope="module")
def server(sim: CohereSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("cohere") / "ledger.db"
    settings = {
        "health": {"interval_s": 0},
        "router": {"strategy": "frugal"},  # the plugin's strategy
        "storage": {"url": f"sqlite:///{Path(db)}"},
        "providers": {
            "cohere-1": {
                "type": "cohere",
                "base_url": sim.base_url,
                "api_key": "env:COHERE_TEST_KEY",
                "models": ["command-a-03-2025", "command-r7b-12-2024"],
            }
        },
    }
    pr = Polyroute(Config(validate(settings, "test"), "test", {"COHERE_TEST_KEY": "sim-key"}))
    srv = Server(pr, admin_key=None)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _reset(sim: CohereSimulator) -> Iterator[None]:
    yield
    sim.script.reply = "Sunny and mild."
    sim.script.recover()


@pytest.fixture
def oai(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


@pytest.fixture
def ant(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)


def test_chat_completions(oai: openai.OpenAI, sim: CohereSimulator) -> None:
    r = oai.chat.completions.create(model="command-a-03-2025", messages=MSGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Sunny and mild."
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "command-a-03-2025"
    assert r.usage is not None and r.usage.completion_tokens == 4
    assert sim.last_request().path == "/v2/chat"


def test_chat_completions_stream(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="cohere-1/command-r7b-12-2024",
            messages=MSGS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Sunny and mild."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


def test_tool_call_and_result_round_trip(oai: openai.OpenAI, sim: CohereSimulator) -> None:
    sim.script.reply = '{"city": "Paris"}'
    r = oai.chat.completions.create(
        model="command-a-03-2025",
        messages=MSGS,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    sent = sim.last_request().body
    assert sent["tool_choice"] == "REQUIRED"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["city"]

    sim.script.reply = "Sunny in Paris."
    r = oai.chat.completions.create(
        model="command-a-03-2025",
        messages=[
            *MSGS,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert r.choices[0].message.content == "Sunny in Paris."
    turns = sim.last_request().body["messages"]
    assert turns[1]["tool_calls"][0]["id"] == call.id
    assert turns[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"}


def test_streamed_tool_call(oai: openai.OpenAI, sim: CohereSimulator) -> None:
    sim.script.reply = '{"city": "Oslo"}'
    chunks = list(
        oai.chat.completions.create(
            model="command-a-03-2025",
            messages=MSGS,  # type: ignore[arg-type]
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


def test_messages(ant: anthropic.Anthropic) -> None:
    m = ant.messages.create(
        model="command-a-03-2025",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert m.content[0].type == "text" and m.content[0].text == "Sunny and mild."
    assert m.stop_reason == "end_turn" and m.usage.output_tokens == 4


def test_messages_stream_and_tool_use(ant: anthropic.Anthropic, sim: CohereSimulator) -> None:
    with ant.messages.stream(
        model="command-a-03-2025",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "Sunny and mild."

    sim.script.reply = '{"city": "Lima"}'
    with ant.messages.stream(
        model="command-a-03-2025",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Lima?"}],
        tools=[
            {
                "name": "get_weather",
                "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
            }
        ],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [use] = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Lima"}


def test_a_field_cohere_cannot_carry_is_a_400_naming_it(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="command-a-03-2025", messages=MSGS, n=2)  # type: ignore[arg-type]
    assert "cohere cannot take n > 1" in str(e.value)


def test_auto_routes_by_the_installed_strategy(oai: openai.OpenAI, sim: CohereSimulator) -> None:
    for alias in ("auto", "auto:frugal"):
        r = oai.chat.completions.create(model=alias, messages=MSGS)  # type: ignore[arg-type]
        assert r.choices[0].message.content == "Sunny and mild."
        assert sim.last_request().body["model"] == "command-r7b-12-2024"  # the cheaper one
