"""Structured outputs through the gateway, driven by the official SDKs: a pydantic model's
schema reaches every vendor in its own shape and comes back parsed; a pair that cannot
honour a schema is left out with the reason, and a pin to one is a 400 naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import anthropic
import openai
import pytest
from pydantic import BaseModel

from gateway.support import Gateway, start
from polyroute.testing import Fleet


class Person(BaseModel):
    name: str
    age: int
    tags: list[Literal["a", "b"]]


EXPECTED = Person(name="sample", age=1, tags=["a"])
ASK = [{"role": "user", "content": "Who?"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    db = tmp_path_factory.mktemp("gateway") / "ledger.db"  # not in the test's directory
    with Fleet() as fleet:
        compat = {
            "type": "openai-compatible",
            "base_url": fleet["openai"].base_url,
            "api_key": "env:POLYROUTE_SIM_KEY",
            "models": ["local-llm"],  # unknown to the catalog: no capability json_schema
        }
        storage = {"storage": {"url": f"sqlite:///{db}"}}
        gw = start(fleet, sections=storage, extra_providers={"compat": compat})
        try:
            yield gw
        finally:
            gw.server.stop()


@pytest.fixture(scope="module")
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def _schema_sent(gateway: Gateway, vendor: str) -> object:
    body = gateway.fleet[vendor].last_request().body
    if vendor in ("openai", "mistral"):
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Person"
        assert fmt["json_schema"]["strict"] is True
        return fmt["json_schema"]["schema"]
    if vendor == "anthropic":
        return body["output_config"]["format"]["schema"]
    if vendor == "google":
        assert body["generationConfig"]["responseMimeType"] == "application/json"
        return body["generationConfig"]["responseJsonSchema"]
    return body["format"]  # ollama


@pytest.mark.parametrize(
    ("model", "vendor"),
    [
        ("gpt-4o-mini", "openai"),
        ("anthropic/claude-sonnet-4-6", "anthropic"),
        ("gemini-2.5-flash", "google"),
        ("ollama/llama3.2:latest", "ollama"),
        ("mistral/mistral-small-latest", "mistral"),
    ],
)
def test_parse_returns_the_pydantic_object_from_every_vendor(
    sdk: openai.OpenAI, gateway: Gateway, model: str, vendor: str
) -> None:
    completion = sdk.chat.completions.parse(
        model=model,
        messages=ASK,  # type: ignore[arg-type]
        response_format=Person,
    )
    message = completion.choices[0].message
    assert message.parsed == EXPECTED and message.refusal is None
    schema = _schema_sent(gateway, vendor)
    assert isinstance(schema, dict) and schema["required"] == ["name", "age", "tags"]
    assert schema["additionalProperties"] is False


def test_a_streamed_parse_through_anthropic(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.stream(
        model="claude-haiku-4-5",
        messages=ASK,  # type: ignore[arg-type]
        response_format=Person,
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == EXPECTED


def test_strict_function_tools_reach_the_upstream(sdk: openai.OpenAI, gateway: Gateway) -> None:
    tool = openai.pydantic_function_tool(Person, name="save_person")
    sdk.chat.completions.create(model="mistral-small-latest", messages=ASK, tools=[tool])  # type: ignore[arg-type]
    [sent] = gateway.fleet["mistral"].last_request().body["tools"]
    assert sent["function"]["strict"] is True and sent["function"]["name"] == "save_person"


def test_anthropic_sdk_output_format_on_an_openai_upstream(gateway: Gateway) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        message = c.messages.parse(
            model="gpt-4o",
            max_tokens=200,
            messages=ASK,
            output_format=Person,  # type: ignore[arg-type]
        )
    assert message.parsed_output == EXPECTED
    fmt = gateway.fleet["openai"].last_request().body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"name", "age", "tags"}


def test_a_pin_to_a_pair_without_json_schema_is_a_400_naming_the_field(
    sdk: openai.OpenAI, gateway: Gateway
) -> None:
    calls = gateway.fleet["openai"].calls
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.parse(
            model="compat/local-llm",
            messages=ASK,  # type: ignore[arg-type]
            response_format=Person,
        )
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == "response_format"
    assert "cannot honour response_format json_schema" in error["message"]
    assert gateway.fleet["openai"].calls == calls  # refused before any call


def test_routing_leaves_out_pairs_that_cannot_honour_a_schema(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.parse(
            model="local-llm",
            messages=ASK,  # type: ignore[arg-type]
            response_format=Person,
        )
    assert "compat/local-llm: lacks capability json_schema" in info.value.message
    assert "(cannot honour response_format json_schema)" in info.value.message
    # without a schema the same pair serves
    plain = sdk.chat.completions.create(model="local-llm", messages=ASK)  # type: ignore[arg-type]
    assert plain.choices[0].message.content


def test_fusion_refuses_a_schema_by_name(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.parse(
            model="fusion",
            messages=ASK,  # type: ignore[arg-type]
            response_format=Person,
        )
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == "response_format"


def test_anthropic_beta_output_format_on_a_gemini_upstream(gateway: Gateway) -> None:
    """The structured-outputs beta's own field, ``output_format``, as older clients send it."""
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        message = c.beta.messages.create(
            model="gemini-2.5-flash",
            max_tokens=200,
            messages=ASK,  # type: ignore[arg-type]
            extra_body={
                "output_format": {"type": "json_schema", "schema": Person.model_json_schema()}
            },
            betas=["structured-outputs-2025-11-13"],
        )
    [block] = message.content
    assert block.type == "text" and Person.model_validate_json(block.text) == EXPECTED
    config = gateway.fleet["google"].last_request().body["generationConfig"]
    assert set(config["responseJsonSchema"]["properties"]) == {"name", "age", "tags"}


def test_both_anthropic_schema_fields_at_once_are_a_400(gateway: Gateway) -> None:
    fmt = {"type": "json_schema", "schema": {"type": "object"}}
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 10,
        "messages": ASK,
        "output_config": {"format": fmt},
        "output_format": fmt,
    }
    with gateway.http(**{"anthropic-version": "2023-06-01"}) as http:
        r = http.post("/v1/messages", json=body)
    assert r.status_code == 400
    assert "output_format" in r.json()["error"]["message"]
