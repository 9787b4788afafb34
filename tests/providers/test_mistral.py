"""Mistral adapter against its simulator: translation, streaming, errors."""

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
    ContextLengthError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    UnprocessableEntityError,
)
from polyroute.events import StreamEnd, StreamStart, TextDelta, ThinkingDelta, ToolCallDelta
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect, protocol_for
from polyroute.providers.mistral import MistralProtocol, tool_call_id
from polyroute.testing import Script
from polyroute.testing.mistral import MistralSimulator
from polyroute.types import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
)

KEY = "sk-mistral-sim-key-0001"
OPENAI_ONLY = {"stream_options", "max_completion_tokens", "seed", "user"}


@pytest.fixture(scope="module")
def _server() -> Iterator[MistralSimulator]:
    s = MistralSimulator(api_key=KEY)
    with s:  # one server per module: starting one costs
        yield s


@pytest.fixture
def sim(_server: MistralSimulator) -> MistralSimulator:
    _server.script = Script(reply="The answer is 42")  # a fresh script per test
    return _server


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


@pytest.fixture
def client(sim: MistralSimulator, pool: HttpPool) -> ProviderClient:
    return connect(Provider("mi", "mistral", sim.base_url, Secret(KEY)), pool)


def req(**kw: object) -> ChatRequest:
    return ChatRequest(model="mistral-small-latest", messages=[Message.user("hi")], **kw)  # type: ignore[arg-type]


# -- over loopback ----------------------------------------------------------


async def test_complete_returns_reply_usage_and_request_id(
    client: ProviderClient, sim: MistralSimulator
) -> None:
    r = await client.complete(req(max_tokens=50, temperature=0.2, seed=7))
    assert r.content == "The answer is 42"
    assert r.finish_reason == "stop" and r.raw_finish_reason == "stop"
    assert r.usage.completion_tokens == 4 and r.usage.prompt_tokens == 1
    assert r.provider == "mi" and r.request_id and len(r.request_id) == 36
    sent = sim.last_request()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["max_tokens"] == 50 and sent.body["random_seed"] == 7
    assert sent.body["temperature"] == 0.2
    assert not OPENAI_ONLY & set(sent.body)


async def test_stream_yields_start_text_end_with_usage(
    client: ProviderClient, sim: MistralSimulator
) -> None:
    events = [e async for e in client.stream(req())]
    assert isinstance(events[0], StreamStart) and events[0].model == "mistral-small-latest"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer is 42"
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop"
    assert end.usage.completion_tokens == 4 and end.usage.prompt_tokens == 1
    assert sum(isinstance(e, StreamEnd) for e in events) == 1
    body = sim.last_request().body
    assert body["stream"] is True and "stream_options" not in body  # usage comes unasked


async def test_max_tokens_truncation_is_length(client: ProviderClient) -> None:
    r = await client.complete(req(max_tokens=2))
    assert r.finish_reason == "length" and r.usage.completion_tokens == 2
    events = [e async for e in client.stream(req(max_tokens=2))]
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "length"


async def test_cached_tokens_are_read(client: ProviderClient, sim: MistralSimulator) -> None:
    sim.script.cached_tokens = 1
    r = await client.complete(req())
    assert r.usage.cached_tokens == 1 and r.usage.prompt_tokens == 1
    events = [e async for e in client.stream(req())]
    assert isinstance(events[-1], StreamEnd) and events[-1].usage.cached_tokens == 1


async def test_full_tool_conversation_is_accepted(
    client: ProviderClient, sim: MistralSimulator
) -> None:
    # The simulator refuses unknown fields (422) and ids that are not 9 alphanumerics (400),
    # as Mistral does: a conversation started on another vendor must still go through.
    r = await client.complete(
        ChatRequest(
            model="mistral-large-latest",
            messages=[
                Message.system("be brief"),
                Message.user([TextPart("what is this?"), ImagePart(url="https://x/y.png")]),
                Message.assistant("", [ToolCall("call_abc123XYZ_long", "lookup", '{"q":"x"}')]),
                Message.tool("call_abc123XYZ_long", "found", name="lookup"),
            ],
            tools=[Tool("lookup", "look up", {"type": "object"})],
            tool_choice="required",
            response_format="json",
            stop=["END"],
        )
    )
    assert r.content == "The answer is 42"
    body = sim.last_request().body
    assert body["tool_choice"] == "any"


async def test_list_models_reads_cards(client: ProviderClient, sim: MistralSimulator) -> None:
    models = {m.id: m for m in await client.list_models()}
    assert set(models) == {"mistral-small-latest", "mistral-large-latest", "mistral-embed"}
    small = models["mistral-small-latest"]
    assert small.provider_type == "mistral" and small.context_window == 131072
    assert {"chat", "stream", "tools", "vision", "json"} <= small.capabilities
    assert models["mistral-embed"].capabilities == frozenset({"embeddings"})
    assert sim.last_request().path == "/v1/models"


async def test_embeddings(client: ProviderClient, sim: MistralSimulator) -> None:
    emb = await client.embed(EmbeddingRequest("mistral-embed", ["a", "b"], dimensions=16))
    assert len(emb.vectors) == 2 and len(emb.vectors[0]) == 16
    assert emb.usage.prompt_tokens == 2 and emb.request_id and emb.provider == "mi"
    sent = sim.last_request()
    assert sent.path == "/v1/embeddings"
    assert sent.body["input"] == ["a", "b"] and sent.body["output_dimension"] == 16


async def test_embeddings_errors_are_typed(client: ProviderClient, sim: MistralSimulator) -> None:
    sim.script.fail_next(1, 429)
    with pytest.raises(RateLimitError):
        await client.embed(EmbeddingRequest("mistral-embed", ["a"]))


async def test_test_connection(
    client: ProviderClient, sim: MistralSimulator, pool: HttpPool
) -> None:
    ok = await client.test_connection()
    assert ok.ok and ok.models == 3 and ok.error is None
    bad = connect(Provider("mi", "mistral", sim.base_url, Secret("sk-wrong-key-99999")), pool)
    check = await bad.test_connection()
    assert not check.ok and check.error_type == "authentication"
    assert check.error is not None and "sk-wrong" not in check.error


# -- errors -----------------------------------------------------------------

STATUSES = [
    (400, BadRequestError, "invalid_request_error", False),
    (401, AuthenticationError, None, False),
    (403, PermissionDeniedError, "invalid_request_error", False),
    (404, NotFoundError, "invalid_model", False),
    (408, RequestTimeoutError, "invalid_request_error", True),
    (409, ConflictError, "invalid_request_error", True),
    (413, RequestTooLargeError, "invalid_request_error", False),
    (422, UnprocessableEntityError, "invalid_request_error", False),
    (429, RateLimitError, "rate_limited", True),
    (500, InternalServerError, "server_error", True),
    (502, InternalServerError, "server_error", True),
    (503, InternalServerError, "server_error", True),
]


@pytest.mark.parametrize(("status", "cls", "vendor_type", "retryable"), STATUSES)
async def test_each_status_is_typed(
    client: ProviderClient,
    sim: MistralSimulator,
    status: int,
    cls: type[APIStatusError],
    vendor_type: str | None,
    retryable: bool,
) -> None:
    sim.script.fail_next(1, status, message="nope")
    with pytest.raises(cls) as info:
        await client.complete(req())
    err = info.value
    assert type(err) is cls and err.status == status and err.vendor_type == vendor_type
    assert err.retryable is retryable and err.provider == "mi"
    assert err.request_id  # mistral-correlation-id, or the gateway's x-kong-request-id
    assert KEY not in str(err) and KEY not in repr(err)


async def test_validation_error_message_names_the_field(
    client: ProviderClient, sim: MistralSimulator
) -> None:
    sim.script.fail_next(1, 422, error_type="extra_forbidden", message="Extra inputs")
    with pytest.raises(UnprocessableEntityError) as info:
        await client.complete(req())
    assert info.value.message == "body: Extra inputs"


async def test_rate_limit_carries_retry_after(
    client: ProviderClient, sim: MistralSimulator
) -> None:
    sim.script.fail_next(1, 429, retry_after=7)
    with pytest.raises(RateLimitError) as info:
        await client.complete(req())
    assert info.value.retry_after == 7 and info.value.retryable


async def test_context_length_code_is_precise(
    client: ProviderClient, sim: MistralSimulator
) -> None:
    sim.script.fail_next(1, 400, error_type="3051", message="Prompt contains 9 tokens, too large")
    with pytest.raises(ContextLengthError) as info:
        await client.complete(req())
    assert info.value.vendor_type == "context_length_exceeded" and not info.value.retryable


async def test_wrong_key_never_shows(sim: MistralSimulator, pool: HttpPool) -> None:
    wrong = "sk-wrong-mistral-key-123456"
    c = connect(Provider("mi", "mistral", sim.base_url, Secret(wrong)), pool)
    with pytest.raises(AuthenticationError) as info:
        await c.complete(req())
    err = info.value
    assert err.message == "Unauthorized" and err.request_id and len(err.request_id) == 32
    assert wrong not in str(err) and wrong not in repr(err)
    assert sim.last_request().headers["authorization"] == f"Bearer {wrong}"


async def test_connection_refused(pool: HttpPool) -> None:
    c = connect(Provider("mi", "mistral", "http://127.0.0.1:9", Secret(KEY)), pool)
    with pytest.raises(APIConnectionError) as info:
        await c.complete(req())
    assert info.value.retryable and KEY not in str(info.value)


async def test_hang_past_timeout(client: ProviderClient, sim: MistralSimulator) -> None:
    sim.script.hang_next(0.6)
    with pytest.raises(APITimeoutError):
        await client.complete(req(), timeout_s=0.15)


# -- pure translation ---------------------------------------------------------


def test_registry_and_defaults() -> None:
    p = protocol_for("mistral")
    assert isinstance(p, MistralProtocol)
    assert p.default_base_url == "https://api.mistral.ai"
    assert p.chat(req(), stream=False).path == "/v1/chat/completions"
    assert p.list_models().path == "/v1/models"
    assert p.embed(EmbeddingRequest("mistral-embed", ["a"])).path == "/v1/embeddings"
    assert p.headers("k") == {"authorization": "Bearer k"} and p.headers(None) == {}


def test_request_translation() -> None:
    p = MistralProtocol()
    r = ChatRequest(
        model="mistral-large-latest",
        messages=[
            Message.system("be brief"),
            Message.user(
                [TextPart("what is this?"), ImagePart(data="AAAA", media_type="image/jpeg")]
            ),
            Message.assistant("", [ToolCall("call_1", "lookup", '{"q": "x"}')]),
            Message.tool("call_1", "found", name="lookup"),
        ],
        tools=[
            Tool("lookup", "look up", {"type": "object", "properties": {"q": {"type": "string"}}})
        ],
        tool_choice="lookup",
        response_format="json",
        stop=["END"],
        max_tokens=9,
        temperature=0.1,
        top_p=0.9,
        seed=3,
    )
    body = p.chat(r, stream=True).json
    assert body is not None
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1]["content"][0] == {"type": "text", "text": "what is this?"}
    assert msgs[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/jpeg;base64,AAAA"},
    }
    call_id = msgs[2]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum() and call_id == tool_call_id("call_1")
    assert msgs[2]["content"] is None
    assert msgs[2]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q": "x"}'}
    assert msgs[3] == {
        "role": "tool",
        "content": "found",
        "tool_call_id": call_id,
        "name": "lookup",
    }
    assert body["tools"][0]["function"]["name"] == "lookup"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert body["response_format"] == {"type": "json_object"} and body["stop"] == ["END"]
    assert body["max_tokens"] == 9 and body["temperature"] == 0.1 and body["top_p"] == 0.9
    assert body["random_seed"] == 3 and body["stream"] is True
    assert not OPENAI_ONLY & set(body) and "safe_prompt" not in body
    json.dumps(body)


def test_tool_choice_words() -> None:
    p = MistralProtocol()
    for ours, theirs in [("required", "any"), ("auto", "auto"), ("none", "none")]:
        body = p.chat(req(tool_choice=ours), stream=False).json
        assert body is not None and body["tool_choice"] == theirs


def test_tool_call_ids() -> None:
    assert tool_call_id("D681PevKs") == "D681PevKs"  # already Mistral's shape: kept
    derived = tool_call_id("call_0fypS1hVX")
    assert len(derived) == 9 and derived.isascii() and derived.isalnum()
    assert derived == tool_call_id("call_0fypS1hVX") != tool_call_id("call_other")


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("model_length", "length"),
        ("tool_calls", "tool_calls"),
        ("error", "error"),
        ("something_new", "other"),
    ],
)
def test_finish_reasons(raw: str, ours: str) -> None:
    body = {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": {"content": "a"}, "finish_reason": raw}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    r = MistralProtocol().parse_chat(body)
    assert r.finish_reason == ours and r.raw_finish_reason == raw
    d = MistralProtocol().stream_decoder(req())
    chunk = {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": raw}]}
    d.feed(json.dumps(chunk), None)
    end = d.feed("[DONE]", None)[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == ours and end.raw_finish_reason == raw


def test_response_with_tool_calls_thinking_and_cache() -> None:
    body = {
        "id": "cmpl",
        "object": "chat.completion",
        "model": "magistral-medium-latest",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                        {"type": "text", "text": "Calling."},
                    ],
                    "tool_calls": [
                        {"id": "D681PevKs", "function": {"name": "f", "arguments": {"a": 1}}},
                        {"id": "Xy12Zw34Q", "function": {"name": "g", "arguments": '{"b":2}'}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 5,
            "total_tokens": 35,
            "prompt_tokens_details": {"cached_tokens": 12},
        },
    }
    r = MistralProtocol().parse_chat(body)
    assert r.content == "Calling." and r.finish_reason == "tool_calls"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in r.tool_calls] == [
        ("D681PevKs", "f", {"a": 1}),
        ("Xy12Zw34Q", "g", {"b": 2}),
    ]
    assert r.usage.prompt_tokens == 30 and r.usage.cached_tokens == 12
    old = dict(body, usage={"prompt_tokens": 30, "completion_tokens": 5, "num_cached_tokens": 8})
    assert MistralProtocol().parse_chat(old).usage.cached_tokens == 8


def test_stream_decoder_chunks_tools_and_content_lists() -> None:
    d = MistralProtocol().stream_decoder(req())
    base = {"id": "s1", "object": "chat.completion.chunk", "model": "m"}

    def feed(delta: dict[str, object], finish: str | None = None, **extra: object) -> list[object]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return list(d.feed(json.dumps({**base, "choices": [choice], **extra}), None))

    first = feed({"role": "assistant", "content": ""})
    assert first == [StreamStart("s1", "m")]
    thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]
    assert feed({"content": thinking}) == [ThinkingDelta(0, "hmm")]  # never answer text
    assert feed({"content": [{"type": "text", "text": "Hi"}]}) == [TextDelta("Hi")]
    calls = feed(
        {
            "tool_calls": [
                {"id": "D681PevKs", "index": 0, "function": {"name": "f", "arguments": {"a": 1}}}
            ]
        }
    )
    assert calls == [ToolCallDelta(0, "D681PevKs", "f", '{"a": 1}')]
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert feed({"content": ""}, "tool_calls", usage=usage) == []
    assert not d.done
    (end,) = d.feed("[DONE]", None)
    assert d.done and isinstance(end, StreamEnd)
    assert end.finish_reason == "tool_calls" and end.usage.total_tokens == 5


@pytest.mark.parametrize(
    ("chunk", "cls", "vendor_type"),
    [
        (
            {"object": "error", "message": "overloaded", "type": "server_error", "code": None},
            InternalServerError,
            "server_error",
        ),
        (
            {
                "object": "error",
                "message": "Rate limit exceeded",
                "type": "rate_limited",
                "code": "1300",
                "raw_status_code": 429,
            },
            RateLimitError,
            "rate_limited",
        ),
        ({"error": {"message": "boom", "type": "internal"}}, InternalServerError, "internal"),
        ({"error": "boom"}, InternalServerError, None),
    ],
)
def test_in_band_stream_error_is_typed(
    chunk: dict[str, object], cls: type[APIStatusError], vendor_type: str | None
) -> None:
    d = MistralProtocol().stream_decoder(req())
    with pytest.raises(cls) as info:
        d.feed(json.dumps(chunk), None)
    assert info.value.vendor_type == vendor_type and not d.done


@pytest.mark.parametrize(
    ("body", "message", "vendor_type"),
    [
        (  # the documented API error
            {
                "object": "error",
                "message": "Invalid model: x",
                "type": "invalid_model",
                "param": None,
                "code": "1500",
            },
            "Invalid model: x",
            "invalid_model",
        ),
        (  # prompt over the context window: the numeric code is the precise part
            {
                "object": "error",
                "message": "Prompt contains 160907 tokens and 0 draft tokens, too large",
                "type": "invalid_request_invalid_args",
                "param": None,
                "code": "3051",
                "raw_status_code": 400,
            },
            "Prompt contains 160907 tokens and 0 draft tokens, too large",
            "context_length_exceeded",
        ),
        (  # 422 with the validation errors inside `message`
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", "stream_options", "include_usage"],
                            "msg": "Extra inputs are not permitted",
                            "input": True,
                        }
                    ]
                },
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            "body.stream_options.include_usage: Extra inputs are not permitted",
            "invalid_request_error",
        ),
        (  # 422, newer: a list in both `detail` and `message`, an int code
            {
                "object": "Error",
                "detail": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required"}],
                "message": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required"}],
                "type": "invalid_request_error",
                "code": 3001,
            },
            "body.model: Field required",
            "invalid_request_error",
        ),
        (  # 422, bare (the OpenAPI HTTPValidationError)
            {"detail": [{"type": "missing", "loc": ["body", "input"], "msg": "Field required"}]},
            "body.input: Field required",
            None,
        ),
        ({"message": "Unauthorized", "request_id": "933f2339"}, "Unauthorized", None),  # gateway
        ({"detail": "Unauthorized"}, "Unauthorized", None),
        ({"message": "Requests rate limit exceeded"}, "Requests rate limit exceeded", None),
        ("<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>", None),
    ],
)
def test_error_bodies_parse(body: object, message: str, vendor_type: str | None) -> None:
    v = MistralProtocol().parse_error(400, body)
    assert v.message == message and v.vendor_type == vendor_type


def test_models_parse_fine_tuned_cards() -> None:
    body = {
        "object": "list",
        "data": [
            {
                "id": "ft:open-mistral-7b:abc",
                "type": "fine-tuned",
                "owned_by": "my-org",
                "capabilities": {"completion_chat": True, "function_calling": False},
                "max_context_length": 32768,
                "job": "j",
                "root": "open-mistral-7b",
                "archived": False,
            }
        ],
    }
    (m,) = MistralProtocol().parse_models(body)
    assert m.id == "ft:open-mistral-7b:abc" and m.owned_by == "my-org"
    assert m.capabilities == frozenset({"chat", "stream", "json"}) and m.context_window == 32768
