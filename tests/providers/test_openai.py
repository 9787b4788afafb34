"""OpenAI adapter against its simulator: translation, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from polyroute.errors import (
    AuthenticationError,
    ContextLengthError,
    RateLimitError,
)
from polyroute.events import StreamEnd, StreamStart, TextDelta
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.providers.openai import OpenAICompatibleProtocol, OpenAIProtocol
from polyroute.testing import OpenAISimulator
from polyroute.types import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
)


@pytest.fixture
def sim() -> AsyncIterator[OpenAISimulator]:
    with OpenAISimulator(reply="The answer is 42") as s:
        yield s


@pytest.fixture
async def client(sim: OpenAISimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    yield connect(Provider("oa", "openai", sim.base_url, Secret("sim-key")), pool)
    await pool.aclose()


def req(**kw: object) -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=[Message.user("hi")], **kw)  # type: ignore[arg-type]


async def test_complete_returns_reply_usage_and_request_id(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    r = await client.complete(req(max_tokens=50))
    assert r.content == "The answer is 42"
    assert r.finish_reason == "stop"
    assert r.usage.completion_tokens == 4 and r.usage.prompt_tokens == 1
    assert r.provider == "oa" and r.request_id and r.request_id.startswith("req_")
    sent = sim.last_request()
    assert sent.headers["authorization"] == "Bearer sim-key"
    assert sent.body["max_completion_tokens"] == 50


async def test_stream_yields_start_text_end_with_usage(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    events = [e async for e in client.stream(req())]
    assert isinstance(events[0], StreamStart)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer is 42"
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.usage.completion_tokens == 4
    assert sim.last_request().body["stream_options"] == {"include_usage": True}


async def test_max_tokens_truncation_is_length(client: ProviderClient) -> None:
    r = await client.complete(req(max_tokens=2))
    assert r.finish_reason == "length" and r.usage.completion_tokens == 2


async def test_cached_tokens_are_read(client: ProviderClient, sim: OpenAISimulator) -> None:
    sim.script.cached_tokens = 1
    r = await client.complete(req())
    assert r.usage.cached_tokens == 1


async def test_rate_limit_carries_retry_after(client: ProviderClient, sim: OpenAISimulator) -> None:
    sim.script.fail_next(1, 429, retry_after=7)
    with pytest.raises(RateLimitError) as info:
        await client.complete(req())
    err = info.value
    assert err.retryable and err.retry_after == 7 and err.status == 429
    assert err.vendor_type == "rate_limit_exceeded" and err.request_id


async def test_context_length_code_is_precise(client: ProviderClient, sim: OpenAISimulator) -> None:
    sim.script.fail_next(1, 400, error_type="context_length_exceeded")
    with pytest.raises(ContextLengthError) as info:
        await client.complete(req())
    assert not info.value.retryable


async def test_wrong_key_is_authentication_error(sim: OpenAISimulator) -> None:
    pool = HttpPool()
    c = connect(Provider("oa", "openai", sim.base_url, Secret("wrong")), pool)
    with pytest.raises(AuthenticationError) as info:
        await c.complete(req())
    assert "wrong" not in str(info.value) and "wrong" not in repr(info.value)
    await pool.aclose()


async def test_list_models_and_embeddings(client: ProviderClient) -> None:
    models = await client.list_models()
    assert "gpt-4o-mini" in {m.id for m in models}
    emb = await client.embed(EmbeddingRequest("text-embedding-3-small", ["a", "b"]))
    assert len(emb.vectors) == 2 and emb.usage.prompt_tokens == 2


async def test_test_connection_reports_failure_cleanly(sim: OpenAISimulator) -> None:
    pool = HttpPool()
    c = connect(Provider("oa", "openai", sim.base_url, Secret("nope")), pool)
    check = await c.test_connection()
    assert not check.ok and check.error_type == "authentication"
    await pool.aclose()


def test_request_translation_covers_tools_images_and_json() -> None:
    p = OpenAIProtocol()
    r = ChatRequest(
        model="gpt-4o",
        messages=[
            Message.system("be brief"),
            Message.user(
                [TextPart("what is this?"), ImagePart(data="AAAA", media_type="image/jpeg")]
            ),
            Message.assistant("", [ToolCall("call_1", "lookup", '{"q": "x"}')]),
            Message.tool("call_1", "found"),
        ],
        tools=[
            Tool("lookup", "look up", {"type": "object", "properties": {"q": {"type": "string"}}})
        ],
        tool_choice="lookup",
        response_format="json",
        stop=["END"],
    )
    body = p.chat(r, stream=False).json
    assert body is not None
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1]["content"][1]["image_url"]["url"] == "data:image/jpeg;base64,AAAA"
    assert (
        msgs[2]["tool_calls"][0]["function"]["arguments"] == '{"q": "x"}'
        and msgs[2]["content"] is None
    )
    assert msgs[3] == {"role": "tool", "content": "found", "tool_call_id": "call_1"}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert body["response_format"] == {"type": "json_object"} and body["stop"] == ["END"]
    json.dumps(body)  # serialisable


def test_compatible_servers_get_max_tokens() -> None:
    body = OpenAICompatibleProtocol().chat(req(max_tokens=9), stream=False).json
    assert body is not None and body["max_tokens"] == 9 and "max_completion_tokens" not in body


def test_tool_call_response_and_stream_deltas_parse() -> None:
    p = OpenAIProtocol()
    body = {
        "id": "x",
        "model": "gpt-4o",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    r = p.parse_chat(body)
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].name == "f" and r.content == ""
    d = p.stream_decoder(req())
    chunk = {
        "id": "x",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a'}}
                    ]
                },
                "finish_reason": None,
            }
        ],
    }
    events = d.feed(json.dumps(chunk), None)
    assert events[-1].kind == "tool_call"
