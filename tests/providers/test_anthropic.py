"""Anthropic adapter against its simulator: translation, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest

from polyroute.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    UnprocessableEntityError,
)
from polyroute.events import StreamEnd, StreamEvent, StreamStart, TextDelta, ToolCallDelta
from polyroute.providers import (
    HttpPool,
    Provider,
    ProviderClient,
    Secret,
    StreamDecoder,
    UnsupportedError,
    connect,
)
from polyroute.providers.anthropic import JSON_TOOL, AnthropicProtocol
from polyroute.testing.anthropic import AnthropicSimulator
from polyroute.types import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
)

MODEL = "claude-sonnet-4-6"
LOOKUP = Tool("lookup", "look up", {"type": "object", "properties": {"q": {"type": "string"}}})


@pytest.fixture
def sim() -> Iterator[AnthropicSimulator]:
    s = AnthropicSimulator(reply="The answer is 42")
    with s:
        yield s


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


@pytest.fixture
def client(sim: AnthropicSimulator, pool: HttpPool) -> ProviderClient:
    return connect(Provider("an", "anthropic", sim.base_url, Secret("sim-key")), pool)


def req(*messages: Message, **kw: object) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=list(messages) or [Message.user("hi")], **kw)  # type: ignore[arg-type]


async def collect(client: ProviderClient, request: ChatRequest) -> list[StreamEvent]:
    return [e async for e in client.stream(request)]


# -- happy paths over loopback ---------------------------------------------


async def test_complete_returns_reply_usage_and_request_id(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    r = await client.complete(req())
    assert r.content == "The answer is 42" and r.model == MODEL
    assert r.finish_reason == "stop" and r.raw_finish_reason == "end_turn"
    assert r.usage.prompt_tokens == 1 and r.usage.completion_tokens == 4
    assert r.provider == "an" and r.request_id and r.request_id.startswith("req_")
    assert r.id.startswith("msg_")
    sent = sim.last_request()
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sim-key"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.body["max_tokens"] == AnthropicProtocol.DEFAULT_MAX_TOKENS
    assert "stream" not in sent.body


async def test_stream_yields_one_start_text_and_one_end_with_usage(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    events = await collect(client, req(max_tokens=50))
    assert isinstance(events[0], StreamStart) and events[0].id.startswith("msg_")
    assert sum(isinstance(e, StreamStart) for e in events) == 1
    assert sum(isinstance(e, StreamEnd) for e in events) == 1
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer is 42"
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "stop" and end.raw_finish_reason == "end_turn"
    assert end.usage.prompt_tokens == 1 and end.usage.completion_tokens == 4
    assert sim.last_request().body["stream"] is True


async def test_max_tokens_truncation_is_length(client: ProviderClient) -> None:
    r = await client.complete(req(max_tokens=2))
    assert r.finish_reason == "length" and r.raw_finish_reason == "max_tokens"
    assert r.usage.completion_tokens == 2
    end = (await collect(client, req(max_tokens=2)))[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "length"


async def test_stop_sequence_is_sent_and_ends_with_stop(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    r = await client.complete(req(stop=["42"]))
    assert sim.last_request().body["stop_sequences"] == ["42"]
    assert r.content == "The answer is " and r.finish_reason == "stop"
    assert r.raw_finish_reason == "stop_sequence"


async def test_cached_tokens_count_in_prompt_and_as_cached(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.script.cached_tokens = 3
    prompt = req(Message.user("hello there my friend"))  # 21 chars: 6 tokens
    r = await client.complete(prompt)
    assert r.usage.prompt_tokens == 6 and r.usage.cached_tokens == 3
    end = (await collect(client, prompt))[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage.prompt_tokens == 6 and end.usage.cached_tokens == 3


async def test_tool_call_round_trip_complete_and_stream(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.script.reply = '{"q": "weather in Paris"}'
    request = req(tools=[LOOKUP], tool_choice="required")
    r = await client.complete(request)
    assert sim.last_request().body["tool_choice"] == {"type": "any"}
    assert r.finish_reason == "tool_calls" and r.raw_finish_reason == "tool_use"
    assert r.content == "" and len(r.tool_calls) == 1
    call = r.tool_calls[0]
    assert call.name == "lookup" and call.id.startswith("toolu_")
    assert json.loads(call.arguments) == {"q": "weather in Paris"}

    events = await collect(client, request)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].name == "lookup" and deltas[0].id and deltas[0].arguments == ""
    assert {d.index for d in deltas} == {0}
    assert json.loads("".join(d.arguments for d in deltas)) == {"q": "weather in Paris"}
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "tool_calls"


async def test_json_mode_answers_with_json_text(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.script.reply = '{"answer": 42}'
    request = req(response_format="json")
    r = await client.complete(request)
    body = sim.last_request().body
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert [t["name"] for t in body["tools"]] == [JSON_TOOL]
    assert json.loads(r.content) == {"answer": 42}
    assert r.finish_reason == "stop" and r.raw_finish_reason == "tool_use" and not r.tool_calls

    events = await collect(client, request)
    assert not any(isinstance(e, ToolCallDelta) for e in events)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert json.loads(text) == {"answer": 42}
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop"


async def test_list_models_and_test_connection(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    models = await client.list_models()
    assert [m.id for m in models] == list(sim.models)
    opus = next(m for m in models if m.id == "claude-opus-4-7")
    assert opus.context_window == 200_000 and opus.max_output_tokens == 128_000
    assert opus.display_name == "Claude Opus 4.7" and opus.provider_type == "anthropic"
    assert {"chat", "stream", "tools", "vision", "json"} <= opus.capabilities
    sent = sim.last_request()
    assert sent.path == "/v1/models" and sent.headers["x-api-key"] == "sim-key"
    check = await client.test_connection()
    assert check.ok and check.models == 3


async def test_embeddings_are_unsupported(client: ProviderClient) -> None:
    with pytest.raises(UnsupportedError):
        await client.embed(EmbeddingRequest("any", ["a"]))


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls", "vendor_type", "retryable"),
    [
        (400, BadRequestError, "invalid_request_error", False),
        (401, AuthenticationError, "authentication_error", False),
        (403, PermissionDeniedError, "permission_error", False),
        (404, NotFoundError, "not_found_error", False),
        (408, RequestTimeoutError, "invalid_request_error", True),
        (409, ConflictError, "conflict_error", True),
        (413, RequestTooLargeError, "request_too_large", False),
        (422, UnprocessableEntityError, "invalid_request_error", False),
        (429, RateLimitError, "rate_limit_error", True),
        (500, InternalServerError, "api_error", True),
        (502, InternalServerError, "api_error", True),
        (503, InternalServerError, "api_error", True),
        (529, OverloadedError, "overloaded_error", True),
    ],
)
async def test_each_error_status_maps_to_its_class(
    client: ProviderClient,
    sim: AnthropicSimulator,
    status: int,
    cls: type[ProviderError],
    vendor_type: str,
    retryable: bool,
) -> None:
    sim.script.fail_next(1, status)
    with pytest.raises(cls) as info:
        await client.complete(req())
    err = info.value
    assert type(err) is cls
    assert err.status == status and err.vendor_type == vendor_type
    assert err.retryable is retryable and err.provider == "an"
    assert err.request_id and err.request_id.startswith("req_")
    assert isinstance(err.body, dict) and err.body["type"] == "error"


async def test_rate_limit_carries_retry_after(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.script.fail_next(1, 429, retry_after=7)
    with pytest.raises(RateLimitError) as info:
        await client.complete(req())
    assert info.value.retry_after == 7 and info.value.retryable


async def test_overloaded_type_on_503_is_overloaded(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.script.fail_next(1, 503, error_type="overloaded_error")
    with pytest.raises(OverloadedError) as info:
        await client.complete(req())
    assert info.value.status == 503


async def test_529_on_a_stream_request_is_overloaded(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.script.fail_next(1, 529)
    with pytest.raises(OverloadedError) as info:
        await collect(client, req())
    assert info.value.status == 529 and info.value.request_id


async def test_wrong_key_is_authentication_error_and_never_shown(
    sim: AnthropicSimulator, pool: HttpPool
) -> None:
    key = "sk-ant-api03-wrongwrongwrong"
    c = connect(Provider("an", "anthropic", sim.base_url, Secret(key)), pool)
    with pytest.raises(AuthenticationError) as info:
        await c.complete(req())
    assert sim.last_request().headers["x-api-key"] == key
    assert key not in str(info.value) and key not in repr(info.value)
    check = await c.test_connection()
    assert not check.ok and check.error_type == "authentication"
    assert check.error is not None and key not in check.error


async def test_in_band_overloaded_error_raises_typed_error(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.error_mid_stream("overloaded_error", "Overloaded", after_chunks=2)
    seen: list[StreamEvent] = []
    with pytest.raises(OverloadedError) as info:
        async for e in client.stream(req()):
            seen.append(e)
    err = info.value
    assert err.vendor_type == "overloaded_error" and err.status == 529 and err.retryable
    assert err.provider == "an" and "Overloaded" in str(err)
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["The ", "answer "]
    assert not any(isinstance(e, StreamEnd) for e in seen)


async def test_in_band_api_error_is_internal_server_error(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.error_mid_stream("api_error", "Internal server error", after_chunks=0)
    with pytest.raises(InternalServerError) as info:
        await collect(client, req())
    assert info.value.status == 500 and not isinstance(info.value, OverloadedError)


async def test_connection_refused_is_connection_error(pool: HttpPool) -> None:
    c = connect(Provider("an", "anthropic", "http://127.0.0.1:9", Secret("k")), pool)
    with pytest.raises(APIConnectionError) as info:
        await c.complete(req())
    assert not isinstance(info.value, APITimeoutError) and info.value.retryable


async def test_hang_past_timeout_is_timeout_error(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    sim.script.hang_next(0.6)
    with pytest.raises(APITimeoutError):
        await client.complete(req(), timeout_s=0.2)


async def test_api_version_2026_rejects_sampling_so_the_default_is_pinned(
    sim: AnthropicSimulator, pool: HttpPool
) -> None:
    """A provider's headers override the version; 2026-10-21 rejects temperature."""
    newer = Provider(
        "an",
        "anthropic",
        sim.base_url,
        Secret("sim-key"),
        headers={"anthropic-version": "2026-10-21"},
    )
    with pytest.raises(BadRequestError) as info:
        await connect(newer, pool).complete(req(temperature=0.2))
    assert "temperature" in str(info.value)
    default = Provider("an", "anthropic", sim.base_url, Secret("sim-key"))
    r = await connect(default, pool).complete(req(temperature=0.2))
    assert r.content and sim.last_request().body["temperature"] == 0.2


# -- pure translation ----------------------------------------------------------


def test_request_translation_system_turns_images_and_tools() -> None:
    r = ChatRequest(
        model=MODEL,
        messages=[
            Message.system("be brief"),
            Message.user("first"),
            Message.user(
                [
                    TextPart("what is this?"),
                    ImagePart(data="AAAA", media_type="image/jpeg"),
                    ImagePart(url="https://example.com/cat.png"),
                    ImagePart(url="data:image/webp;base64,BBBB"),
                ]
            ),
            Message.assistant("let me look", [ToolCall("toolu_1", "lookup", '{"q": "x"}')]),
            Message.tool("toolu_1", "found"),
            Message.user("thanks"),
            Message.system("answer in French"),
        ],
        max_tokens=300,
        temperature=0.3,
        top_p=0.9,
        stop=["END"],
        tools=[LOOKUP],
        tool_choice="lookup",
        user="user-123",
    )
    body = AnthropicProtocol().chat(r, stream=False).json
    assert body is not None
    assert body["system"] == "be brief\n\nanswer in French"
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    first = msgs[0]["content"]
    assert first[0] == {"type": "text", "text": "first"}
    assert first[2] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
    }
    assert first[3]["source"] == {"type": "url", "url": "https://example.com/cat.png"}
    assert first[4]["source"] == {"type": "base64", "media_type": "image/webp", "data": "BBBB"}
    assert msgs[1]["content"] == [
        {"type": "text", "text": "let me look"},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"},
        {"type": "text", "text": "thanks"},
    ]
    assert body["tools"] == [
        {"name": "lookup", "description": "look up", "input_schema": dict(LOOKUP.parameters)}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "lookup"}
    assert body["max_tokens"] == 300 and body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "user-123"}
    assert "stream" not in body
    json.dumps(body)  # serialisable


def test_single_text_turns_are_strings_and_empty_parts_are_dropped() -> None:
    r = req(
        Message.user("hi"),
        Message.assistant("", [ToolCall("t1", "lookup", "")]),
        Message.tool("t1", "ok"),
    )
    body = AnthropicProtocol().chat(r, stream=True).json
    assert body is not None and body["stream"] is True
    assert body["messages"][0] == {"role": "user", "content": "hi"}
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}
    ]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"})],
)
def test_tool_choice_vocabulary(ours: str, theirs: dict[str, str]) -> None:
    body = AnthropicProtocol().chat(req(tools=[LOOKUP], tool_choice=ours), stream=False).json
    assert body is not None and body["tool_choice"] == theirs


def test_json_mode_with_tools_is_unsupported() -> None:
    with pytest.raises(UnsupportedError):
        AnthropicProtocol().chat(req(response_format="json", tools=[LOOKUP]), stream=False)


def test_tool_arguments_that_are_not_an_object_are_a_bad_request() -> None:
    bad = req(Message.user("hi"), Message.assistant("", [ToolCall("t1", "f", "[1, 2]")]))
    with pytest.raises(BadRequestError):
        AnthropicProtocol().chat(bad, stream=False)


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
        ("something_new", "other"),
    ],
)
def test_every_stop_reason_maps(raw: str, ours: str) -> None:
    body = {
        "id": "msg_1",
        "model": MODEL,
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b"},
        ],
        "stop_reason": raw,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 20,
            "output_tokens": 7,
        },
    }
    r = AnthropicProtocol().parse_chat(body)
    assert r.finish_reason == ours and r.raw_finish_reason == raw and r.content == "ab"
    assert r.usage.prompt_tokens == 35 and r.usage.cached_tokens == 20
    assert r.usage.completion_tokens == 7


def test_error_body_prefers_the_precise_error_code() -> None:
    p = AnthropicProtocol()
    body = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "spend limit reached",
            "details": {"error_code": "enforced_spend_limit_reached"},
        },
        "request_id": "req_1",
    }
    v = p.parse_error(429, body)
    assert v.vendor_type == "enforced_spend_limit_reached" and v.message == "spend limit reached"
    plain = p.parse_error(529, {"type": "error", "error": {"type": "overloaded_error"}})
    assert plain.vendor_type == "overloaded_error"
    html = p.parse_error(413, "<html>413 Request Entity Too Large</html>")
    assert html.vendor_type is None and "413" in html.message


def _sse(decoder: StreamDecoder, *events: Mapping[str, Any]) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    for e in events:
        out.extend(decoder.feed(json.dumps(e), str(e["type"])))
    return out


def test_decoder_keeps_start_usage_when_delta_omits_it_and_completes_empty_tool_input() -> None:
    d = AnthropicProtocol().stream_decoder(req())
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": MODEL,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1},
        },
    }
    events = _sse(
        d,
        start,
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "now", "input": {}},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "t2", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
        {"type": "content_block_stop", "index": 2},
        {"type": "some_future_event"},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
    )
    assert not d.done
    assert isinstance(events[0], StreamStart) and events[0].id == "msg_1"
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "t1", "now", ""),
        (0, None, None, "{}"),
        (1, "t2", "f", ""),
        (1, None, None, '{"a": 1}'),
    ]
    end = _sse(d, {"type": "message_stop"})
    assert d.done and isinstance(end[0], StreamEnd)
    assert end[0].finish_reason == "tool_calls"
    assert end[0].usage.prompt_tokens == 14 and end[0].usage.cached_tokens == 4
    assert end[0].usage.completion_tokens == 9


def test_decoder_in_band_error_without_a_known_type_is_a_server_error() -> None:
    d = AnthropicProtocol().stream_decoder(req())
    with pytest.raises(InternalServerError) as info:
        _sse(d, {"type": "error", "error": {"type": "mystery", "message": "boom"}})
    assert info.value.status == 500 and info.value.vendor_type == "mystery"
    assert not d.done


def test_decoder_rejects_a_non_json_message() -> None:
    d = AnthropicProtocol().stream_decoder(req())
    with pytest.raises(InvalidResponseError):
        d.feed("<html>", "message_start")
