"""Gemini adapter against its simulator: translation, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from polyroute.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentFilterError,
    InternalServerError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    StreamInterruptedError,
    UnprocessableEntityError,
)
from polyroute.events import StreamEnd, StreamStart, TextDelta, ToolCallDelta
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.providers.google import SKIP_SIGNATURE, GoogleProtocol
from polyroute.testing.google import GoogleSimulator
from polyroute.types import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
)

LOOKUP = Tool("lookup", "look up", {"type": "object", "properties": {"q": {"type": "string"}}})


@pytest.fixture
def sim() -> Iterator[GoogleSimulator]:
    s = GoogleSimulator(reply="The answer is 42")
    with s:
        yield s


@pytest.fixture
async def client(sim: GoogleSimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    yield connect(Provider("gem", "google", sim.base_url, Secret("sim-key")), pool)
    await pool.aclose()


def req(**kw: object) -> ChatRequest:
    return ChatRequest(model="gemini-2.5-flash", messages=[Message.user("hi")], **kw)  # type: ignore[arg-type]


# -- over loopback -----------------------------------------------------------


async def test_complete_returns_reply_usage_and_id(
    client: ProviderClient, sim: GoogleSimulator
) -> None:
    r = await client.complete(req(max_tokens=50))
    assert r.content == "The answer is 42"
    assert r.finish_reason == "stop" and r.raw_finish_reason == "STOP"
    assert r.usage.prompt_tokens == 1 and r.usage.completion_tokens == 4
    assert r.model == "gemini-2.5-flash" and r.id and r.provider == "gem"
    assert r.request_id is None  # Gemini sends no request-id header; the id is responseId
    sent = sim.last_request()
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == "sim-key"
    assert sent.body["generationConfig"] == {"maxOutputTokens": 50}
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


async def test_key_travels_in_header_never_in_url() -> None:
    p = GoogleProtocol()
    assert p.headers("AIza-secret") == {"x-goog-api-key": "AIza-secret"}
    for call in (p.chat(req(), stream=False), p.chat(req(), stream=True), p.list_models()):
        assert "AIza" not in call.path and "key" not in (call.params or {})


async def test_stream_yields_start_text_end_with_usage(
    client: ProviderClient, sim: GoogleSimulator
) -> None:
    events = [e async for e in client.stream(req())]
    start, end = events[0], events[-1]
    assert isinstance(start, StreamStart) and start.model == "gemini-2.5-flash" and start.id
    assert sum(isinstance(e, StreamStart) for e in events) == 1
    assert sum(isinstance(e, StreamEnd) for e in events) == 1
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer is 42"
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop"
    assert end.usage.prompt_tokens == 1 and end.usage.completion_tokens == 4
    assert sim.last_request().path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


async def test_max_tokens_truncation_is_length(client: ProviderClient) -> None:
    r = await client.complete(req(max_tokens=2))
    assert r.finish_reason == "length" and r.raw_finish_reason == "MAX_TOKENS"
    assert r.usage.completion_tokens == 2
    events = [e async for e in client.stream(req(max_tokens=2))]
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "length"


async def test_cached_tokens_are_a_subset_of_prompt(
    client: ProviderClient, sim: GoogleSimulator
) -> None:
    sim.script.cached_tokens = 1
    r = await client.complete(req())
    assert r.usage.cached_tokens == 1 and r.usage.prompt_tokens == 1


async def test_forced_tool_call_round_trip(client: ProviderClient, sim: GoogleSimulator) -> None:
    r = await client.complete(req(tools=[LOOKUP], tool_choice="lookup"))
    assert r.finish_reason == "tool_calls" and r.raw_finish_reason == "STOP"
    (call,) = r.tool_calls
    assert call.name == "lookup" and call.arguments == "{}" and call.id.startswith("call_")
    cfg = sim.last_request().body["toolConfig"]["functionCallingConfig"]
    assert cfg == {"mode": "ANY", "allowedFunctionNames": ["lookup"]}
    events = [e async for e in client.stream(req(tools=[LOOKUP], tool_choice="required"))]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(d.index, d.name, d.arguments) for d in deltas] == [(0, "lookup", "{}")]
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "tool_calls"


async def test_list_models_reads_limits_and_capabilities(client: ProviderClient) -> None:
    models = {m.id: m for m in await client.list_models()}
    flash = models["gemini-2.5-flash"]
    assert flash.context_window == 1048576 and flash.max_output_tokens == 65536
    assert flash.capabilities == {"chat", "stream"} and flash.provider_type == "google"
    assert models["gemini-embedding-001"].capabilities == {"embeddings"}


async def test_list_models_asks_for_the_largest_page() -> None:
    # Only the first page is read; pageSize=1000 (the API maximum) makes it hold them all.
    many = tuple(f"gemini-sim-{i}" for i in range(60))
    with GoogleSimulator(models=many) as s:
        pool = HttpPool()
        c = connect(Provider("gem", "google", s.base_url, Secret("sim-key")), pool)
        assert len(await c.list_models()) == 60
        await pool.aclose()


async def test_embeddings(client: ProviderClient, sim: GoogleSimulator) -> None:
    emb = await client.embed(EmbeddingRequest("gemini-embedding-001", ["a", "b"], dimensions=4))
    assert len(emb.vectors) == 2 and all(len(v) == 4 for v in emb.vectors)
    assert emb.usage.prompt_tokens == 0  # Gemini reports no token usage for embeddings
    sent = sim.last_request()
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body["requests"][0] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "a"}]},
        "outputDimensionality": 4,
    }


async def test_embedding_errors_are_typed(client: ProviderClient, sim: GoogleSimulator) -> None:
    sim.script.fail_next(1, 429, retry_after=2)
    with pytest.raises(RateLimitError) as info:
        await client.embed(EmbeddingRequest("gemini-embedding-001", ["a"]))
    assert info.value.retry_after == 2 and info.value.vendor_type == "RESOURCE_EXHAUSTED"


async def test_test_connection(client: ProviderClient, sim: GoogleSimulator) -> None:
    check = await client.test_connection()
    assert check.ok and check.models == len(sim.models)
    pool = HttpPool()
    bad = connect(Provider("gem", "google", sim.base_url, Secret("nope")), pool)
    check = await bad.test_connection()
    assert not check.ok and check.error_type == "authentication"
    await pool.aclose()


@pytest.mark.parametrize(
    ("status", "cls", "vendor_type", "retryable"),
    [
        (400, BadRequestError, "INVALID_ARGUMENT", False),
        (401, AuthenticationError, "UNAUTHENTICATED", False),
        (403, PermissionDeniedError, "PERMISSION_DENIED", False),
        (404, NotFoundError, "NOT_FOUND", False),
        (408, RequestTimeoutError, "DEADLINE_EXCEEDED", True),
        (409, ConflictError, "ABORTED", True),
        (413, RequestTooLargeError, "INVALID_ARGUMENT", False),
        (422, UnprocessableEntityError, "INVALID_ARGUMENT", False),
        (429, RateLimitError, "RESOURCE_EXHAUSTED", True),
        (500, InternalServerError, "INTERNAL", True),
        (502, InternalServerError, "UNAVAILABLE", True),
        (503, InternalServerError, "UNAVAILABLE", True),
    ],
)
async def test_every_error_status_is_typed(
    client: ProviderClient,
    sim: GoogleSimulator,
    status: int,
    cls: type[ProviderError],
    vendor_type: str,
    retryable: bool,
) -> None:
    sim.script.fail_next(1, status, message="simulated failure")
    with pytest.raises(cls) as info:
        await client.complete(req())
    err = info.value
    assert type(err) is cls
    assert err.status == status and err.vendor_type == vendor_type
    assert err.retryable is retryable and err.provider == "gem"
    assert err.request_id is None  # Gemini sends no request-id header
    assert err.message == "simulated failure" and err.retry_after is None
    assert sim.calls == 1


async def test_rate_limit_retry_delay_comes_from_retry_info(
    client: ProviderClient, sim: GoogleSimulator
) -> None:
    sim.script.fail_next(1, 429, retry_after=7)
    with pytest.raises(RateLimitError) as info:
        await client.complete(req())
    assert info.value.retry_after == 7 and info.value.retryable
    details = info.value.body["error"]["details"]
    assert details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]


async def test_stream_errors_before_the_first_byte_are_typed(
    client: ProviderClient, sim: GoogleSimulator
) -> None:
    sim.script.fail_next(1, 503)
    with pytest.raises(InternalServerError) as info:
        [e async for e in client.stream(req())]
    assert info.value.vendor_type == "UNAVAILABLE"


async def test_invalid_key_is_authentication_error_without_the_key(sim: GoogleSimulator) -> None:
    pool = HttpPool()
    c = connect(
        Provider("gem", "google", sim.base_url, Secret("AIzaWrongWrongWrongWrong123")), pool
    )
    with pytest.raises(AuthenticationError) as info:
        await c.complete(req())
    err = info.value
    assert err.status == 400 and err.vendor_type == "API_KEY_INVALID" and not err.retryable
    for text in (str(err), repr(err)):
        assert "AIzaWrong" not in text
    await pool.aclose()


async def test_missing_key_is_permission_denied(sim: GoogleSimulator) -> None:
    pool = HttpPool()
    c = connect(Provider("gem", "google", sim.base_url, None), pool)
    with pytest.raises(PermissionDeniedError) as info:
        await c.complete(req())
    assert info.value.status == 403 and info.value.vendor_type == "PERMISSION_DENIED"
    await pool.aclose()


async def test_stream_cut_after_all_text_still_lacks_its_end(
    client: ProviderClient, sim: GoogleSimulator
) -> None:
    sim.script.cut_stream(after_chunks=4)  # every text chunk, but not the finishReason one
    with pytest.raises(StreamInterruptedError):
        [e async for e in client.stream(req())]


async def test_in_band_stream_error_is_typed() -> None:
    head = {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}]}
    error = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    body = f"data: {json.dumps(head)}\r\n\r\ndata: {json.dumps(error)}\r\n\r\n".encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    pool = HttpPool(transport=httpx2.MockTransport(handler))
    c = connect(Provider("gem", "google", "http://127.0.0.1:1", Secret("k")), pool)
    seen = []
    with pytest.raises(RateLimitError) as info:
        async for e in c.stream(req()):
            seen.append(e)
    assert info.value.vendor_type == "RESOURCE_EXHAUSTED" and info.value.provider == "gem"
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["Hel"]
    await pool.aclose()


async def test_connection_refused_is_connection_error() -> None:
    pool = HttpPool()
    c = connect(Provider("gem", "google", "http://127.0.0.1:9", Secret("k")), pool)
    with pytest.raises(APIConnectionError) as info:
        await c.complete(req())
    assert info.value.retryable and not isinstance(info.value, APITimeoutError)
    await pool.aclose()


async def test_hang_longer_than_timeout_is_timeout(
    client: ProviderClient, sim: GoogleSimulator
) -> None:
    sim.script.hang_next(0.5)
    with pytest.raises(APITimeoutError):
        await client.complete(req(), timeout_s=0.1)


# -- translation, no I/O ------------------------------------------------------


def test_request_translation_covers_system_images_tools_and_config() -> None:
    r = ChatRequest(
        model="gemini-2.5-pro",
        messages=[
            Message.system("be brief"),
            Message.user(
                [
                    TextPart("what are these?"),
                    ImagePart(data="AAAA", media_type="image/jpeg"),
                    ImagePart(url="https://example.com/cat.png"),
                    ImagePart(url="data:image/webp;base64,BBBB"),
                ]
            ),
            Message.assistant(
                "checking",
                [ToolCall("call_1", "lookup", '{"q": "x"}'), ToolCall("call_2", "lookup", "{}")],
            ),
            Message.tool("call_1", '{"hits": 3}', name="lookup"),
            Message.tool("call_2", "nothing"),  # name found from the call id
            Message.system("and kind"),
        ],
        tools=[LOOKUP],
        tool_choice="auto",
        response_format="json",
        stop=["END"],
        max_tokens=100,
        temperature=0.2,
        top_p=0.9,
        seed=7,
    )
    body = GoogleProtocol().chat(r, stream=False).json
    assert body is not None
    assert body["systemInstruction"] == {"parts": [{"text": "be brief\n\nand kind"}]}
    user, model, tools = body["contents"]
    assert user["role"] == "user" and user["parts"] == [
        {"text": "what are these?"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
        {"inlineData": {"mimeType": "image/webp", "data": "BBBB"}},
    ]
    assert model["role"] == "model" and model["parts"] == [
        {"text": "checking"},
        {
            "functionCall": {"name": "lookup", "args": {"q": "x"}},
            "thoughtSignature": SKIP_SIGNATURE,
        },
        {"functionCall": {"name": "lookup", "args": {}}},
    ]
    assert tools == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "lookup", "response": {"hits": 3}}},
            {"functionResponse": {"name": "lookup", "response": {"output": "nothing"}}},
        ],
    }
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
        "seed": 7,
        "responseMimeType": "application/json",
    }
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "lookup",
                    "description": "look up",
                    "parametersJsonSchema": dict(LOOKUP.parameters),
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    json.dumps(body)  # serialisable


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ("lookup", {"mode": "ANY", "allowedFunctionNames": ["lookup"]}),
    ],
)
def test_tool_choice(choice: str, config: dict[str, object]) -> None:
    body = GoogleProtocol().chat(req(tools=[LOOKUP], tool_choice=choice), stream=False).json
    assert body is not None and body["toolConfig"] == {"functionCallingConfig": config}


def test_paths_and_minimal_body() -> None:
    p = GoogleProtocol()
    call = p.chat(req(), stream=True)
    assert call.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert call.params == {"alt": "sse"}
    assert call.json == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    tuned = ChatRequest(model="tunedModels/mine", messages=[Message.user("x")])
    assert p.chat(tuned, stream=False).path == "/v1beta/tunedModels/mine:generateContent"
    prefixed = ChatRequest(model="models/gemini-2.5-pro", messages=[Message.user("x")])
    assert p.chat(prefixed, stream=False).path == "/v1beta/models/gemini-2.5-pro:generateContent"


def test_response_parsing_skips_thoughts_and_reads_calls_and_usage() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "let me think", "thought": True},
                        {"text": "Calling "},
                        {"text": "now."},
                        {"functionCall": {"id": "fc-9", "name": "f", "args": {"a": 1}}},
                        {"functionCall": {"name": "g"}, "thoughtSignature": "c2ln"},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "candidatesTokenCount": 10,
            "thoughtsTokenCount": 25,
            "toolUsePromptTokenCount": 5,
            "totalTokenCount": 140,
        },
        "modelVersion": "gemini-2.5-pro",
        "responseId": "resp-1",
    }
    r = GoogleProtocol().parse_chat(body)
    assert r.content == "Calling now." and r.id == "resp-1" and r.model == "gemini-2.5-pro"
    assert r.finish_reason == "tool_calls"
    first = r.tool_calls[0]
    assert (first.id, first.name, json.loads(first.arguments)) == ("fc-9", "f", {"a": 1})
    assert r.tool_calls[1].name == "g" and r.tool_calls[1].id.startswith("call_")
    assert r.usage.prompt_tokens == 105 and r.usage.cached_tokens == 60
    assert r.usage.completion_tokens == 35 and r.usage.total_tokens == 140


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("UNEXPECTED_TOOL_CALL", "error"),
        ("LANGUAGE", "other"),
        ("OTHER", "other"),
        ("FINISH_REASON_UNSPECIFIED", "other"),
        ("SOMETHING_NEW", "other"),
    ],
)
def test_finish_reasons_map(raw: str, ours: str) -> None:
    body = {"candidates": [{"content": {"parts": [], "role": "model"}, "finishReason": raw}]}
    r = GoogleProtocol().parse_chat(body)
    assert r.finish_reason == ours and r.raw_finish_reason == raw and r.content == ""


def test_blocked_prompt_is_content_filter_error() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    with pytest.raises(ContentFilterError) as info:
        GoogleProtocol().parse_chat(body)
    assert info.value.vendor_type == "SAFETY" and not info.value.retryable
    decoder = GoogleProtocol().stream_decoder(req())
    with pytest.raises(ContentFilterError):
        decoder.feed(json.dumps(body), None)
    with pytest.raises(InvalidResponseError):
        GoogleProtocol().parse_chat({"candidates": []})


def test_stream_decoder_ends_only_on_finish_reason() -> None:
    d = GoogleProtocol().stream_decoder(req())
    chunk = {
        "candidates": [{"content": {"parts": [{"text": "a"}], "role": "model"}}],
        "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
        "responseId": "r1",
        "modelVersion": "gemini-2.5-flash",
    }
    first = d.feed(json.dumps(chunk), None)
    assert [e.kind for e in first] == ["start", "text"] and not d.done
    thought = {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}]}}]}
    assert [e.kind for e in d.feed(json.dumps(thought), None)] == ["thinking"]  # never text
    last = {
        "candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "SAFETY"}],
        "usageMetadata": {
            "promptTokenCount": 4,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 3,
        },
    }
    events = d.feed(json.dumps(last), None)
    assert d.done and [e.kind for e in events] == ["text", "end"]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "content_filter"
    assert end.usage.completion_tokens == 5 and end.raw_finish_reason == "SAFETY"
    with pytest.raises(InvalidResponseError):
        GoogleProtocol().stream_decoder(req()).feed("not json", None)


def test_error_body_parsing() -> None:
    p = GoogleProtocol()
    key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        }
    }
    assert p.parse_error(400, key).vendor_type == "API_KEY_INVALID"
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.5s"}
    quota = [
        {"error": {"code": 429, "message": "q", "status": "RESOURCE_EXHAUSTED", "details": [retry]}}
    ]
    v = p.parse_error(429, quota)  # list-wrapped, as streamed errors can be
    assert (v.message, v.vendor_type, v.retry_after) == ("q", "RESOURCE_EXHAUSTED", 3.5)
    assert p.parse_error(502, "<html>bad gateway</html>").vendor_type is None
