"""Structured outputs: each adapter carries a JSON schema (and tool ``strict``) to its vendor's
own mechanism, never weakened, and reads the answer back as text in that schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from polyroute.events import TextDelta
from polyroute.providers import (
    HttpPool,
    Provider,
    ProviderClient,
    Secret,
    UnsupportedError,
    connect,
)
from polyroute.providers.anthropic import JSON_TOOL
from polyroute.providers.google import GoogleProtocol
from polyroute.testing import Simulator, simulator_class
from polyroute.testing._sim import sample_json
from polyroute.types import ChatRequest, JsonSchema, Message, Tool

PERSON: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
    "$defs": {"Tag": {"type": "string", "enum": ["a", "b"]}},
}
SCHEMA = JsonSchema("person", PERSON, strict=True, description="A person")
EXPECTED = {"name": "sample", "age": 1, "tags": ["a"]}
STRICT_TOOL = Tool("lookup", "Look it up.", {"type": "object"}, strict=True)

OPENAI_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "person", "schema": PERSON, "strict": True, "description": "A person"},
}


def _openai(body: Any) -> Any:
    return body["response_format"]


def _anthropic(body: Any) -> Any:
    assert "tools" not in body and "tool_choice" not in body
    return body["output_config"]


def _anthropic_legacy(body: Any) -> Any:
    assert "output_config" not in body
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    return body["tools"]


def _google(body: Any) -> Any:
    return body["generationConfig"]


def _ollama(body: Any) -> Any:
    return body["format"]


CASES: list[tuple[str, str, Callable[[Any], Any], Any]] = [
    ("openai", "gpt-4o-mini", _openai, OPENAI_FORMAT),
    ("openai-compatible", "llama-3.3-70b", _openai, OPENAI_FORMAT),
    ("mistral", "mistral-small-latest", _openai, OPENAI_FORMAT),
    (
        "anthropic",
        "claude-sonnet-4-6",
        _anthropic,
        {"format": {"type": "json_schema", "schema": PERSON}},
    ),
    (
        "anthropic",
        "claude-3-5-haiku-latest",  # older than structured outputs: a forced tool
        _anthropic_legacy,
        [{"name": JSON_TOOL, "description": "A person", "input_schema": PERSON}],
    ),
    (
        "google",
        "gemini-2.5-flash",
        _google,
        {"responseMimeType": "application/json", "responseJsonSchema": PERSON},
    ),
    ("ollama", "llama3.2", _ollama, PERSON),
]
IDS = [f"{t}-{m}" for t, m, _, _ in CASES]


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Simulator]]:
    started: dict[str, Simulator] = {}
    try:
        for ptype in ("openai", "anthropic", "google", "ollama", "mistral"):
            started[ptype] = simulator_class(ptype)().start()
        started["openai-compatible"] = started["openai"]
        yield started
    finally:
        for ptype, sim in started.items():
            if ptype != "openai-compatible":
                sim.stop()


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


def _client(sims: Mapping[str, Simulator], ptype: str, pool: HttpPool) -> ProviderClient:
    sim = sims[ptype]
    sim.script.reply = None  # the default reply: a JSON object in the schema asked for
    return connect(Provider("p", ptype, sim.base_url, Secret("sim-key")), pool)


def req(model: str, **kw: Any) -> ChatRequest:
    return ChatRequest(model, (Message.user("Who?"),), **kw)


@pytest.mark.parametrize(("ptype", "model", "wire", "expected"), CASES, ids=IDS)
async def test_the_schema_reaches_the_vendor_whole_and_the_answer_is_json_text(
    sims: dict[str, Simulator],
    pool: HttpPool,
    ptype: str,
    model: str,
    wire: Callable[[Any], Any],
    expected: Any,
) -> None:
    client = _client(sims, ptype, pool)
    r = await client.complete(req(model, response_format=SCHEMA))
    assert json.loads(r.content) == EXPECTED
    assert r.finish_reason == "stop" and not r.tool_calls
    assert wire(sims[ptype].last_request().body) == expected


@pytest.mark.parametrize(("ptype", "model", "wire", "expected"), CASES, ids=IDS)
async def test_a_streamed_schema_answer_is_json_text(
    sims: dict[str, Simulator],
    pool: HttpPool,
    ptype: str,
    model: str,
    wire: Callable[[Any], Any],
    expected: Any,
) -> None:
    client = _client(sims, ptype, pool)
    events = [e async for e in client.stream(req(model, response_format=SCHEMA))]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert json.loads(text) == EXPECTED
    wire(sims[ptype].last_request().body)


@pytest.mark.parametrize(
    ("ptype", "model", "strict_of"),
    [
        ("openai", "gpt-4o", lambda b: b["tools"][0]["function"]["strict"]),
        ("mistral", "mistral-small-latest", lambda b: b["tools"][0]["function"]["strict"]),
        ("anthropic", "claude-sonnet-4-6", lambda b: b["tools"][0]["strict"]),
        # Gemini holds calls to their schemas in VALIDATED mode
        (
            "google",
            "gemini-2.5-flash",
            lambda b: b["toolConfig"]["functionCallingConfig"] == {"mode": "VALIDATED"},
        ),
    ],
)
async def test_tool_strict_reaches_the_wire(
    sims: dict[str, Simulator],
    pool: HttpPool,
    ptype: str,
    model: str,
    strict_of: Callable[[Any], Any],
) -> None:
    client = _client(sims, ptype, pool)
    await client.complete(req(model, tools=(STRICT_TOOL,)))
    assert strict_of(sims[ptype].last_request().body) is True


async def test_ollama_refuses_strict_tools_by_name(
    sims: dict[str, Simulator], pool: HttpPool
) -> None:
    client = _client(sims, "ollama", pool)
    with pytest.raises(UnsupportedError, match=r"tools\.0\.function\.strict"):
        await client.complete(req("llama3.2", tools=(STRICT_TOOL,)))


async def test_anthropic_schema_with_tools_on_an_older_model_is_refused(
    sims: dict[str, Simulator], pool: HttpPool
) -> None:
    client = _client(sims, "anthropic", pool)
    tool = Tool("lookup", "Look it up.")
    with pytest.raises(UnsupportedError, match="json_schema cannot be combined with tools"):
        await client.complete(req("claude-3-5-haiku-latest", response_format=SCHEMA, tools=(tool,)))
    # a model with structured outputs takes both: the schema as output_config, the tools as
    # they are
    await client.complete(req("claude-haiku-4-5", response_format=SCHEMA, tools=(tool,)))
    body = sims["anthropic"].last_request().body
    assert body["output_config"]["format"]["schema"] == PERSON
    assert [t["name"] for t in body["tools"]] == ["lookup"]


def test_sample_json_fills_every_property() -> None:
    assert sample_json(PERSON) == EXPECTED
    nullable = {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert sample_json({"type": ["null", "boolean"]}) is True and sample_json(nullable) == 1.5


def test_gemini_gets_const_as_enum_and_constraints_it_would_not_enforce_are_refused() -> None:
    with_const = {"type": "object", "properties": {"kind": {"const": "person"}}}
    body = (
        GoogleProtocol()
        .chat(req("gemini-2.5-flash", response_format=JsonSchema("k", with_const)), stream=False)
        .json
    )
    assert body is not None
    sent = body["generationConfig"]["responseJsonSchema"]
    assert sent["properties"]["kind"] == {"enum": ["person"]}
    nested = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}}
        },
    }
    with pytest.raises(UnsupportedError, match=r"schema\.properties\.tags\.items\.pattern"):
        GoogleProtocol().chat(
            req("gemini-2.5-flash", response_format=JsonSchema("t", nested)), stream=False
        )
