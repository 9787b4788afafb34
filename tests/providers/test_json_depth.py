"""Deep JSON from callers and upstreams is a typed error, never a RecursionError."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from polyroute.errors import BadRequestError, InvalidResponseError, JSONTooDeepError
from polyroute.providers import HttpPool, Provider, Secret, connect
from polyroute.providers._json import MAX_DEPTH, depth_exceeds, loads_bounded
from polyroute.types import ChatRequest, Message, Tool, ToolCall

DEEP = "[" * 5000 + "]" * 5000
DEEP_ARGS = '{"a":' + DEEP + "}"
ADAPTERS = {
    "anthropic": "claude-3-5-haiku-latest",
    "google": "gemini-2.0-flash",
    "ollama": "llama3.2",
    "openai": "gpt-4o-mini",
    "mistral": "mistral-small-latest",
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("as_bytes", [False, True])
def test_depth_is_counted_outside_strings_only(as_bytes: bool) -> None:
    def enc(s: str) -> str | bytes:
        return s.encode() if as_bytes else s

    assert not depth_exceeds(enc(nested(MAX_DEPTH)))
    assert depth_exceeds(enc(nested(MAX_DEPTH + 1)))
    # brackets inside strings, escaped quotes included, do not nest
    text = json.dumps({"s": "[" * 500 + '\\"[[[' + "{" * 500, "t": ["]]]"]})
    assert not depth_exceeds(enc(text))
    assert loads_bounded(enc(text))["t"] == ["]]]"]


def test_too_deep_is_a_bad_request_and_not_json_is_a_value_error() -> None:
    with pytest.raises(JSONTooDeepError) as info:
        loads_bounded(DEEP)
    assert isinstance(info.value, BadRequestError) and not info.value.retryable
    with pytest.raises(ValueError):
        loads_bounded("{nope")


def _history(arguments: str, result: str) -> list[Message]:
    return [
        Message.user("hi"),
        Message(role="assistant", content="", tool_calls=(ToolCall("c1", "f", arguments),)),
        Message(role="tool", content=result, tool_call_id="c1", name="f"),
    ]


def _provider(kind: str) -> Provider:
    return Provider(kind, kind, "http://127.0.0.1:9", Secret("k"))


@pytest.mark.parametrize("kind", ["anthropic", "google", "ollama"])
async def test_deep_tool_arguments_are_refused_before_any_call(kind: str) -> None:
    calls: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        return httpx2.Response(500)

    pool = HttpPool(transport=httpx2.MockTransport(handler))
    client = connect(_provider(kind), pool)
    request = ChatRequest(ADAPTERS[kind], _history(DEEP_ARGS, "ok"))
    with pytest.raises(JSONTooDeepError) as info:
        await client.complete(request)
    assert info.value.provider == kind and not calls
    await pool.aclose()


async def test_deep_tool_result_is_refused_by_google() -> None:
    pool = HttpPool(transport=httpx2.MockTransport(lambda r: httpx2.Response(500)))
    client = connect(_provider("google"), pool)
    with pytest.raises(JSONTooDeepError):
        await client.complete(ChatRequest(ADAPTERS["google"], _history("{}", DEEP_ARGS)))
    await pool.aclose()


async def test_a_deep_python_structure_is_refused_not_a_recursion_error() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(5000):
        schema = {"type": "object", "properties": {"x": schema}}
    pool = HttpPool(transport=httpx2.MockTransport(lambda r: httpx2.Response(500)))
    client = connect(_provider("openai"), pool)
    request = ChatRequest("gpt-4o-mini", [Message.user("hi")], tools=[Tool("f", "f", schema)])
    with pytest.raises(JSONTooDeepError):
        await client.complete(request)
    await pool.aclose()


def _deep_body(kind: str) -> bytes:
    return ('{"model":"m","x":' + DEEP + "}").encode()


def _deep_stream(kind: str) -> bytes:
    data = '{"x":' + DEEP + "}"
    if kind == "ollama":
        return data.encode() + b"\n"
    return f"data: {data}\n\n".encode()


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@pytest.mark.parametrize("stream", [False, True])
async def test_a_deep_upstream_answer_is_an_invalid_response(kind: str, stream: bool) -> None:
    body: Callable[[str], bytes] = _deep_stream if stream else _deep_body

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body(kind))

    pool = HttpPool(transport=httpx2.MockTransport(handler))
    client = connect(_provider(kind), pool)
    request = ChatRequest(ADAPTERS[kind], [Message.user("hi")])
    with pytest.raises(InvalidResponseError) as info:
        if stream:
            [e async for e in client.stream(request)]
        else:
            await client.complete(request)
    assert "nested deeper" in str(info.value)
    await pool.aclose()


async def test_a_deep_upstream_error_body_still_gives_the_status_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(400, content=DEEP.encode())

    pool = HttpPool(transport=httpx2.MockTransport(handler))
    client = connect(_provider("openai"), pool)
    with pytest.raises(BadRequestError) as info:
        await client.complete(ChatRequest("gpt-4o-mini", [Message.user("hi")]))
    assert info.value.status == 400
    await pool.aclose()
