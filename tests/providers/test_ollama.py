"""Ollama adapter against its simulator: translation, NDJSON streaming, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from polyroute.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    UnprocessableEntityError,
)
from polyroute.events import StreamEnd, StreamStart, TextDelta, ToolCallDelta
from polyroute.providers import (
    HttpPool,
    Provider,
    ProviderClient,
    Secret,
    UnsupportedError,
    connect,
)
from polyroute.providers.ollama import OllamaProtocol
from polyroute.testing import Script
from polyroute.testing.ollama import OllamaSimulator
from polyroute.types import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
)

KEY = "sk-ollama-cloud-0123456789"


@pytest.fixture(scope="module")
def _server() -> Iterator[OllamaSimulator]:
    with OllamaSimulator() as s:
        yield s


@pytest.fixture
def sim(_server: OllamaSimulator) -> OllamaSimulator:
    """The module's server with a fresh script: no fault leaks between tests."""
    _server.script = Script(reply="The answer is 42")
    return _server


@pytest.fixture
async def client(sim: OllamaSimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    yield connect(Provider("ol", "ollama", sim.base_url), pool)
    await pool.aclose()


def req(**kw: object) -> ChatRequest:
    kw.setdefault("messages", [Message.user("hi")])
    return ChatRequest(model="llama3.2", **kw)  # type: ignore[arg-type]


# -- over the wire -----------------------------------------------------------


async def test_complete_reads_reply_usage_and_duration(
    client: ProviderClient, sim: OllamaSimulator
) -> None:
    r = await client.complete(req(max_tokens=50, temperature=0.2))
    assert r.content == "The answer is 42"
    assert r.finish_reason == "stop" and r.raw_finish_reason == "stop"
    assert r.usage.prompt_tokens == 1 and r.usage.completion_tokens == 4
    assert r.model == "llama3.2" and r.provider == "ol" and r.request_id is None
    assert r.server_ms is not None and r.server_ms == pytest.approx(83.5)  # total_duration in ms
    sent = sim.last_request()
    assert sent.path == "/api/chat" and "authorization" not in sent.headers  # keyless
    assert sent.body["stream"] is False  # Ollama streams unless told not to
    assert sent.body["options"] == {"num_predict": 50, "temperature": 0.2}


async def test_stream_yields_start_text_end_with_usage(
    client: ProviderClient, sim: OllamaSimulator
) -> None:
    events = [e async for e in client.stream(req())]
    assert isinstance(events[0], StreamStart) and events[0].model == "llama3.2"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer is 42"
    end = events[-1]
    assert isinstance(end, StreamEnd) and sum(isinstance(e, StreamEnd) for e in events) == 1
    assert end.finish_reason == "stop" and end.usage.completion_tokens == 4
    assert end.usage.prompt_tokens == 1 and end.server_ms is not None and end.server_ms > 0
    assert sim.last_request().body["stream"] is True


async def test_num_predict_truncation_is_length(client: ProviderClient) -> None:
    r = await client.complete(req(max_tokens=2))
    assert r.finish_reason == "length" and r.raw_finish_reason == "length"
    assert r.usage.completion_tokens == 2
    events = [e async for e in client.stream(req(max_tokens=2))]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "length"


async def test_cached_prompt_has_no_prompt_eval_count(
    client: ProviderClient, sim: OllamaSimulator
) -> None:
    sim.script.cached_tokens = 1  # the whole one-token prompt came from the cache
    r = await client.complete(req())
    assert r.usage.prompt_tokens == 0 and r.usage.cached_tokens == 0
    assert r.usage.completion_tokens == 4


async def test_key_travels_as_bearer_and_wrong_key_is_authentication_error() -> None:
    with OllamaSimulator(api_key=KEY) as sim:
        pool = HttpPool()
        good = connect(Provider("ol", "ollama", sim.base_url, Secret(KEY)), pool)
        assert (await good.complete(req())).content
        assert sim.last_request().headers["authorization"] == f"Bearer {KEY}"
        bad = connect(Provider("ol", "ollama", sim.base_url, Secret("sk-wrong-0123456789")), pool)
        with pytest.raises(AuthenticationError) as info:
            await bad.complete(req())
        for text in (str(info.value), repr(info.value), repr(bad), repr(bad.provider)):
            assert "sk-wrong" not in text and KEY not in text
        await pool.aclose()


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, PermissionDeniedError, False),
        (404, NotFoundError, False),
        (408, RequestTimeoutError, True),
        (409, ConflictError, True),
        (413, RequestTooLargeError, False),
        (422, UnprocessableEntityError, False),
        (429, RateLimitError, True),
        (500, InternalServerError, True),
        (502, InternalServerError, True),
        (503, InternalServerError, True),
    ],
)
async def test_every_status_maps_to_its_class(
    client: ProviderClient,
    sim: OllamaSimulator,
    status: int,
    cls: type[APIStatusError],
    retryable: bool,
) -> None:
    sim.script.fail_next(1, status, message=f"failure {status}")
    with pytest.raises(cls) as info:
        await client.complete(req())
    err = info.value
    assert type(err) is cls and err.status == status and err.retryable is retryable
    assert err.message == f"failure {status}" and err.provider == "ol"
    assert err.vendor_type is None and err.request_id is None  # Ollama sends neither
    assert err.body == {"error": f"failure {status}"}


async def test_model_not_found_keeps_ollamas_message(
    client: ProviderClient, sim: OllamaSimulator
) -> None:
    sim.script.fail_next(1, 404, message='model "nope" not found, try pulling it first')
    with pytest.raises(NotFoundError, match="try pulling it first"):
        await client.stream(req()).__anext__()


async def test_rate_limit_carries_retry_after(client: ProviderClient, sim: OllamaSimulator) -> None:
    sim.script.fail_next(1, 429, retry_after=7)
    with pytest.raises(RateLimitError) as info:
        await client.complete(req())
    assert info.value.retryable and info.value.retry_after == 7 and info.value.status == 429


async def test_in_band_stream_error_raises_typed_error(
    client: ProviderClient, sim: OllamaSimulator
) -> None:
    sim.error_mid_stream("llama runner process has terminated", after_chunks=2)
    seen = []
    with pytest.raises(InternalServerError, match="runner process") as info:
        async for e in client.stream(req()):
            seen.append(e)
    assert info.value.provider == "ol" and info.value.retryable
    assert not any(isinstance(e, StreamEnd) for e in seen)
    assert len([e for e in seen if isinstance(e, TextDelta)]) == 2


async def test_connection_refused_is_connection_error() -> None:
    pool = HttpPool()
    c = connect(Provider("ol", "ollama", "http://127.0.0.1:9"), pool)
    with pytest.raises(APIConnectionError) as info:
        await c.complete(req())
    assert not isinstance(info.value, APITimeoutError) and info.value.retryable
    check = await c.test_connection()
    assert not check.ok and check.error_type == info.value.type
    await pool.aclose()


async def test_hang_beyond_timeout_is_timeout_error(
    client: ProviderClient, sim: OllamaSimulator
) -> None:
    sim.script.hang_next(0.4)
    with pytest.raises(APITimeoutError):
        await client.complete(req(), timeout_s=0.1)


async def test_list_models_maps_tags(client: ProviderClient, sim: OllamaSimulator) -> None:
    models = {m.id: m for m in await client.list_models()}
    assert sim.last_request().path == "/api/tags"
    llama = models["llama3.2:latest"]
    assert llama.provider_type == "ollama" and llama.context_window is None
    assert llama.capabilities == {"chat", "stream"} and llama.owned_by == "library"
    assert llama.display_name == "llama3.2:latest (3.2B Q4_K_M)"
    assert "vision" in models["llava:latest"].capabilities
    assert models["nomic-embed-text:latest"].capabilities == {"embeddings"}


async def test_embeddings_use_api_embed(client: ProviderClient, sim: OllamaSimulator) -> None:
    emb = await client.embed(EmbeddingRequest("nomic-embed-text", ["a", "b"], dimensions=4))
    assert len(emb.vectors) == 2 and len(emb.vectors[0]) == 4
    assert emb.usage.prompt_tokens == 2 and emb.model == "nomic-embed-text"
    sent = sim.last_request()
    assert sent.path == "/api/embed"
    assert sent.body == {"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 4}


async def test_embedding_error_is_typed(client: ProviderClient, sim: OllamaSimulator) -> None:
    sim.script.fail_next(1, 404, message='model "x" not found, try pulling it first')
    with pytest.raises(NotFoundError):
        await client.embed(EmbeddingRequest("x", ["a"]))


async def test_test_connection_counts_models(client: ProviderClient) -> None:
    check = await client.test_connection()
    assert check.ok and check.models == 4 and check.error is None


# -- translation, no I/O -------------------------------------------------------


def test_request_translation_covers_tools_images_and_json() -> None:
    p = OllamaProtocol()
    r = ChatRequest(
        model="llava",
        messages=[
            Message.system("be brief"),
            Message.user(
                [TextPart("what is this?"), ImagePart(data="AAAA", media_type="image/jpeg")]
            ),
            Message.assistant("", [ToolCall("call_1", "lookup", '{"q": "x"}')]),
            Message.tool("call_1", "found"),  # name recovered from the call it answers
        ],
        tools=[
            Tool("lookup", "look up", {"type": "object", "properties": {"q": {"type": "string"}}})
        ],
        response_format="json",
        stop=["END"],
        top_p=0.9,
        seed=7,
        max_tokens=64,
    )
    call = p.chat(r, stream=True)
    body = call.json
    assert call.method == "POST" and call.path == "/api/chat" and body is not None
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1] == {"role": "user", "content": "what is this?", "images": ["AAAA"]}
    assert msgs[2]["tool_calls"] == [
        {"id": "call_1", "function": {"name": "lookup", "arguments": {"q": "x"}}}
    ]
    assert msgs[3] == {
        "role": "tool",
        "content": "found",
        "tool_name": "lookup",
        "tool_call_id": "call_1",
    }
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "look up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    assert body["format"] == "json" and body["stream"] is True
    assert body["options"] == {"num_predict": 64, "top_p": 0.9, "stop": ["END"], "seed": 7}
    json.dumps(body)  # serialisable


def test_plain_request_sends_no_options_or_format() -> None:
    body = OllamaProtocol().chat(req(), stream=False).json
    assert body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }


def test_image_urls_are_refused_but_data_urls_are_inlined() -> None:
    p = OllamaProtocol()
    with pytest.raises(UnsupportedError, match="base64"):
        p.chat(
            req(messages=[Message.user([ImagePart(url="https://x.test/cat.png")])]), stream=False
        )
    inline = Message.user([TextPart("?"), ImagePart(url="data:image/png;base64,QUJD")])
    body = p.chat(req(messages=[inline]), stream=False).json
    assert body is not None and body["messages"][0]["images"] == ["QUJD"]


def test_tool_arguments_must_be_a_json_object() -> None:
    bad = Message.assistant("", [ToolCall("c1", "f", "[1, 2]")])
    with pytest.raises(UnsupportedError, match="JSON object"):
        OllamaProtocol().chat(req(messages=[bad]), stream=False)
    empty = Message.assistant("", [ToolCall("", "f", "")])
    body = OllamaProtocol().chat(req(messages=[empty]), stream=False).json
    assert body is not None
    assert body["messages"][0]["tool_calls"] == [{"function": {"name": "f", "arguments": {}}}]


def test_tool_choice_none_drops_tools_and_a_name_narrows_them() -> None:
    p = OllamaProtocol()
    tools = [Tool("a"), Tool("b")]
    none = p.chat(req(tools=tools, tool_choice="none"), stream=False).json
    assert none is not None and "tools" not in none
    one = p.chat(req(tools=tools, tool_choice="b"), stream=False).json
    assert one is not None and [t["function"]["name"] for t in one["tools"]] == ["b"]
    auto = p.chat(req(tools=tools, tool_choice="required"), stream=False).json
    assert auto is not None and len(auto["tools"]) == 2


def test_tool_call_response_parses_with_generated_ids() -> None:
    body = {
        "model": "qwen2.5:7b",
        "created_at": "2024-07-22T20:33:28.123648Z",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Paris", "n": 1}}},
                {"id": "call_x", "function": {"index": 1, "name": "time", "arguments": {}}},
            ],
        },
        "done_reason": "stop",
        "done": True,
        "total_duration": 885095291,
        "prompt_eval_count": 122,
        "eval_count": 33,
    }
    r = OllamaProtocol().parse_chat(body)
    assert r.finish_reason == "tool_calls" and r.raw_finish_reason == "stop"
    first, second = r.tool_calls
    assert first.name == "weather" and json.loads(first.arguments) == {"city": "Paris", "n": 1}
    assert first.id.startswith("call_") and first.id != second.id and second.id == "call_x"
    assert second.arguments == "{}"
    assert r.usage.prompt_tokens == 122 and r.usage.completion_tokens == 33
    assert r.server_ms == pytest.approx(885.095291)


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("load", "other"),
        ("unload", "other"),
        (None, "stop"),
    ],
)
def test_done_reasons_map(raw: str | None, ours: str) -> None:
    body = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True}
    if raw is not None:
        body["done_reason"] = raw
    r = OllamaProtocol().parse_chat(body)
    assert r.finish_reason == ours and r.raw_finish_reason == raw and r.server_ms is None


def test_stream_decoder_tool_calls_and_end_marker() -> None:
    d = OllamaProtocol().stream_decoder(req())
    call = {"function": {"name": "f", "arguments": {"a": 1}}}
    first = d.feed(
        json.dumps(
            {
                "model": "m",
                "message": {"role": "assistant", "content": "", "tool_calls": [call]},
                "done": False,
            }
        ),
        None,
    )
    assert isinstance(first[0], StreamStart) and isinstance(first[1], ToolCallDelta)
    assert (
        first[1].index == 0 and first[1].name == "f" and json.loads(first[1].arguments) == {"a": 1}
    )
    assert not d.done
    second = d.feed(
        json.dumps(
            {
                "model": "m",
                "message": {"role": "assistant", "content": "", "tool_calls": [call]},
                "done": False,
            }
        ),
        None,
    )
    assert isinstance(second[0], ToolCallDelta) and second[0].index == 1
    end = d.feed(
        json.dumps(
            {
                "model": "m",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "eval_count": 9,
                "total_duration": 2_000_000,
            }
        ),
        None,
    )
    assert d.done and len(end) == 1 and isinstance(end[0], StreamEnd)
    assert end[0].finish_reason == "tool_calls" and end[0].raw_finish_reason == "stop"
    assert end[0].usage.prompt_tokens == 0 and end[0].usage.completion_tokens == 9
    assert end[0].server_ms == pytest.approx(2.0)


def test_stream_decoder_errors() -> None:
    d = OllamaProtocol().stream_decoder(req())
    with pytest.raises(InternalServerError, match="out of memory"):
        d.feed('{"error":"out of memory"}', None)
    with pytest.raises(InvalidResponseError):
        OllamaProtocol().stream_decoder(req()).feed("<html>", None)


def test_parse_error_shapes() -> None:
    p = OllamaProtocol()
    assert p.parse_error(404, {"error": "model not found"}).message == "model not found"
    proxied = p.parse_error(429, {"error": {"message": "slow down", "type": "rate_limit"}})
    assert proxied.message == "slow down" and proxied.vendor_type == "rate_limit"
    assert p.parse_error(502, "Bad Gateway").message == "Bad Gateway"


def test_protocol_declares_ndjson_and_native_paths() -> None:
    p = OllamaProtocol()
    assert p.stream_format == "ndjson" and p.list_models().path == "/api/tags"
    assert p.default_base_url == "http://localhost:11434"
    assert p.headers(None) == {} and p.headers("k") == {"authorization": "Bearer k"}
