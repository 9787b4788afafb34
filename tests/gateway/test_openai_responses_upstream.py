"""Through the gateway, with the official SDKs: an OpenAI upstream model served only by the
Responses API (catalog ``api = "responses"``) answers every inbound API, and an OpenAI
``refusal`` reaches each API in its own shape (``message.refusal``, a ``refusal`` content
part, text for Messages)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest
from pydantic import BaseModel

from gateway.support import Gateway, start
from polyroute.testing import Fleet, OpenAISimulator

REFUSAL = "I can't help with that."
TOOL = {
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


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    db = tmp_path_factory.mktemp("gateway") / "ledger.db"
    with Fleet() as fleet:
        upstream = {
            "type": "openai",
            "base_url": fleet["openai"].base_url,
            "api_key": "env:POLYROUTE_SIM_KEY",
            "models": ["o3-pro", "gpt-5-codex"],
        }
        storage = {"storage": {"url": f"sqlite:///{db}"}}
        gw = start(fleet, sections=storage, extra_providers={"resp": upstream})
        try:
            yield gw
        finally:
            gw.server.stop()


@pytest.fixture
def sim(gateway: Gateway) -> Iterator[OpenAISimulator]:
    sim = gateway.fleet["openai"]
    assert isinstance(sim, OpenAISimulator)
    try:
        yield sim
    finally:
        sim.refusal = None
        sim.script.reply = None


@pytest.fixture(scope="module")
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_chat_completions_reach_a_responses_only_model(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    sim.script.reply = "Forty-two."
    r = sdk.chat.completions.create(
        model="resp/o3-pro",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "?"}],
        max_completion_tokens=100,
    )
    sent = sim.last_request()
    assert sent.path == "/v1/responses" and sent.body["instructions"] == "Be brief."
    assert sent.body["max_output_tokens"] == 100 and sent.body["store"] is False
    assert r.choices[0].message.content == "Forty-two." and r.choices[0].finish_reason == "stop"
    chunks = list(
        sdk.chat.completions.create(
            model="resp/gpt-5-codex", messages=[{"role": "user", "content": "?"}], stream=True
        )
    )
    assert sim.last_request().path == "/v1/responses"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Forty-two."


def test_a_responses_tool_loop_on_a_responses_only_model(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    first = sdk.responses.create(
        model="resp/gpt-5-codex",
        input="Weather in Paris?",
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice="required",
        reasoning={"effort": "low"},
    )
    sent = sim.last_request().body
    assert sim.last_request().path == "/v1/responses"
    assert sent["tools"][0]["strict"] is True and sent["reasoning"] == {"effort": "low"}
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and json.loads(calls[0].arguments) == {"city": "sample"}
    assert any(o.type == "reasoning" and o.encrypted_content for o in first.output)
    sim.script.reply = "Sunny."
    second = sdk.responses.create(
        model="resp/gpt-5-codex",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
        tools=[TOOL],  # type: ignore[list-item]
    )
    items = sim.last_request().body["input"]
    kinds = [i["type"] for i in items]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert items[1]["id"].startswith("rs_") and items[1]["encrypted_content"]
    assert second.output_text == "Sunny."
    with sdk.responses.stream(model="resp/gpt-5-codex", input="hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == "Sunny."


class City(BaseModel):
    city: str


def test_a_refusal_reaches_chat_completions_parse(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    sim.refusal = REFUSAL
    r = sdk.chat.completions.parse(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "?"}],
        response_format=City,
    )
    message = r.choices[0].message
    assert message.parsed is None and message.refusal == REFUSAL and message.content is None
    with sdk.chat.completions.stream(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "?"}],
        response_format=City,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.refusal == REFUSAL
    assert final.choices[0].message.parsed is None


def test_a_refusal_is_a_refusal_part_on_responses(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    sim.refusal = REFUSAL
    for model in ("openai/gpt-4o-mini", "resp/gpt-5-codex"):  # from chat, and from responses
        r = sdk.responses.create(model=model, input="?")
        assert r.output[-1].type == "message"
        assert [c.model_dump() for c in r.output[-1].content] == [
            {"type": "refusal", "refusal": REFUSAL}
        ]
        with sdk.responses.stream(model=model, input="?") as stream:
            refused = "".join(e.delta for e in stream if e.type == "response.refusal.delta")
            final = stream.get_final_response()
        assert refused == REFUSAL
        content = final.output[-1].content  # type: ignore[union-attr]
        assert content[0].type == "refusal" and content[0].refusal == REFUSAL


def test_a_refusal_is_text_on_messages(gateway: Gateway, sim: OpenAISimulator) -> None:
    sim.refusal = REFUSAL
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    r = client.messages.create(
        model="openai/gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "?"}]
    )
    assert [b.type for b in r.content] == ["text"] and r.content[0].text == REFUSAL  # type: ignore[union-attr]
    with client.messages.stream(
        model="openai/gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "?"}]
    ) as stream:
        assert stream.get_final_text() == REFUSAL


def test_a_field_the_responses_api_lacks_is_a_400_naming_it(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    calls = sim.calls
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="resp/o3-pro", messages=[{"role": "user", "content": "?"}], stop=["x"]
        )
    assert "stop" in caught.value.message and sim.calls == calls
