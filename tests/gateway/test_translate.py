"""The pure parts, without a server: inbound parsing, stream encoding, selection, statuses."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import (
    AllProvidersFailedError,
    APITimeoutError,
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    FusionCostCapError,
    GatewayError,
    InternalServerError,
    NoCandidateError,
    NotEnoughAnswersError,
    QuotaExceededError,
    RateLimitError,
)
from polyroute.events import StreamEnd, StreamStart, TextDelta, ToolCallDelta
from polyroute.gateway._anthropic import AnthropicMessages
from polyroute.gateway._auth import OPEN, Caller
from polyroute.gateway._openai import OpenAIChat, render_embeddings
from polyroute.gateway._problems import problem_of
from polyroute.gateway._select import Selector
from polyroute.gateway._wire import Hints, Inbound, Reply
from polyroute.ledger import VirtualKey
from polyroute.router.decision import Excluded
from polyroute.types import (
    ChatRequest,
    ImagePart,
    JsonSchema,
    Message,
    Reasoning,
    TextPart,
    ToolCall,
    Usage,
)


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


# -- OpenAI in ------------------------------------------------------------------------


def test_openai_messages_become_ours() -> None:
    inbound = OpenAIChat().parse(
        dumps(
            {
                "model": "m",
                "messages": [
                    {"role": "developer", "content": "rules"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "text", "text": "b"},
                        ],
                    },
                    {
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
                    {"role": "tool", "tool_call_id": "c1", "content": "done", "name": "f"},
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    },
                ],
                "max_tokens": 10,
                "max_completion_tokens": 20,
                "stop": "X",
                "response_format": {"type": "json_object"},
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "stream": True,
                "stream_options": {"include_usage": True},
                "polyroute": {"priority": "cost", "require": ["tools"]},
            }
        )
    )
    r = inbound.request
    assert [m.role for m in r.messages] == ["system", "user", "assistant", "tool", "user"]
    assert r.messages[1].content == "ab"  # text parts: the compact form
    assert r.messages[2].tool_calls == (ToolCall("c1", "f", "{}"),)
    assert (r.messages[3].tool_call_id, r.messages[3].name) == ("c1", "f")
    assert r.messages[4].content == (ImagePart(url="https://x/y.png"),)
    assert (r.max_tokens, r.stop, r.response_format, r.tool_choice) == (20, ("X",), "json", "f")
    assert inbound.stream and inbound.include_usage
    assert inbound.hints == Hints(priority="cost", require=("tools",))


def test_openai_json_schema_is_carried_whole_and_nulls_are_unset() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    spec = {"name": "s", "schema": {"type": "object"}, "strict": True, "description": "d"}
    fmt = {"type": "json_schema", "json_schema": spec}
    tool = {"type": "function", "function": {"name": "f", "strict": True}}
    raw = json.dumps({**body, "response_format": fmt, "tools": [tool]}).encode()
    request = OpenAIChat().parse(raw).request
    assert request.response_format == JsonSchema("s", {"type": "object"}, True, "d")
    assert request.tools[0].strict is True
    with pytest.raises(GatewayError, match="json_schema: required") as info:
        no_schema = {**body, "response_format": {"type": "json_schema"}}
        OpenAIChat().parse(json.dumps(no_schema).encode())
    assert info.value.param == "response_format.json_schema"
    inbound = OpenAIChat().parse(json.dumps({**body, "n": None, "stream": None}).encode())
    assert not inbound.stream


def test_base64_embeddings_are_little_endian_float32() -> None:
    out = json.loads(render_embeddings("m", [[1.0, -2.5]], Usage(1, 0), True))
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (1.0, -2.5)


def test_openai_stream_chunks_name_a_tool_call_once() -> None:
    enc = OpenAIChat().encoder(Inbound(ChatRequest("m", ()), stream=True), "m")
    frames = b"".join(
        enc.event(e)
        for e in (
            StreamStart("id", "m"),
            ToolCallDelta(0, "call_1", "f", '{"a"'),
            ToolCallDelta(0, None, None, ": 1}"),
            StreamEnd("tool_calls", Usage(1, 2)),
        )
    ).decode()
    chunks = [json.loads(f[6:]) for f in frames.split("\n\n") if f.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1]["tool_calls"] == [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a"'},
        }
    ]
    assert deltas[2]["tool_calls"] == [{"index": 0, "function": {"arguments": ": 1}"}}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" not in chunks[0]
    assert frames.endswith("data: [DONE]\n\n")


# -- Anthropic in -----------------------------------------------------------------------


def test_anthropic_turns_become_ours() -> None:
    inbound = AnthropicMessages().parse(
        dumps(
            {
                "model": "m",
                "max_tokens": 5,
                "system": "sys",
                "messages": [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "calling"},
                            {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}},
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "and?"},
                            {
                                "type": "tool_result",
                                "tool_use_id": "t1",
                                "content": [{"type": "text", "text": "42"}],
                            },
                            {
                                "type": "image",
                                "source": {"type": "url", "url": "https://x/i.png"},
                            },
                        ],
                    },
                ],
                "tool_choice": {"type": "any"},
                "top_k": 3,  # ignored
            }
        )
    )
    r = inbound.request
    assert [m.role for m in r.messages] == ["system", "user", "assistant", "tool", "user"]
    assert r.messages[2] == Message.assistant("calling", [ToolCall("t1", "f", '{"x": 1}')])
    assert r.messages[3] == Message("tool", "42", tool_call_id="t1", name="f")
    assert r.messages[4].content == (TextPart("and?"), ImagePart(url="https://x/i.png"))
    assert (r.tool_choice, r.max_tokens) == ("required", 5)


def test_anthropic_tool_choice_tool_needs_a_name() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "q"}],
        "tool_choice": {"type": "tool"},
    }
    with pytest.raises(GatewayError, match=r"tool_choice\.name"):
        AnthropicMessages().parse(dumps(body))


def test_anthropic_events_open_one_block_at_a_time() -> None:
    enc = AnthropicMessages().encoder(Inbound(ChatRequest("m", ()), stream=True), "m")
    frames = b"".join(
        enc.event(e)
        for e in (
            StreamStart("id", "m"),
            TextDelta("hello"),
            ToolCallDelta(0, "t1", "f", "{}"),
            StreamEnd("tool_calls", Usage(10, 2, 4)),
        )
    ).decode()
    events = [
        json.loads(f.split("\ndata: ")[1]) for f in frames.split("\n\n") if f.startswith("event:")
    ]
    kinds = [(e["type"], e.get("index")) for e in events]
    assert kinds == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[5]["content_block"] == {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    assert events[8]["delta"]["stop_reason"] == "tool_use"
    assert (
        events[8]["usage"]["input_tokens"] == 6
        and events[8]["usage"]["cache_read_input_tokens"] == 4
    )


def test_anthropic_render_keeps_arguments_that_are_not_an_object() -> None:
    body = json.loads(
        AnthropicMessages().render(
            Reply("", "m", Usage(), "tool_calls", None, (ToolCall("t", "f", "not json"),))
        )
    )
    assert body["content"] == [
        {"type": "tool_use", "id": "t", "name": "f", "input": {"arguments": "not json"}}
    ]
    assert body["stop_reason"] == "tool_use"


# -- selection ----------------------------------------------------------------------------


@pytest.fixture
def selector() -> Selector:
    settings = validate(
        {
            "providers": {
                "openai": {"type": "openai", "models": ["gpt-4o-mini"]},
                "together": {
                    "type": "openai-compatible",
                    "base_url": "http://127.0.0.1:9/v1",
                    "models": ["meta-llama/Llama-3.3-70B"],
                },
                "off": {"type": "openai", "models": ["gpt-4o"], "enabled": False},
            }
        },
        "test",
    )
    return Selector(Polyroute(Config(settings, "test", {})))


def request(model: str, **options: Any) -> ChatRequest:
    return ChatRequest(model, (Message.user("hi"),), **options)


def test_a_slash_pins_only_a_configured_provider(selector: Selector) -> None:
    assert selector.chat(request("openai/gpt-4o"), None, OPEN).routing == {
        "provider": "openai",
        "model": "gpt-4o",
        "complexity": "medium",  # a named model: no estimate
    }
    # not a provider id: the whole string is the model's name
    assert selector.chat(request("meta-llama/Llama-3.3-70B"), None, OPEN).routing == {
        "model": "meta-llama/Llama-3.3-70B",
        "complexity": "medium",
    }
    hinted = selector.chat(request("gpt-4o-mini"), Hints(complexity="auto"), OPEN)
    assert hinted.routing == {"model": "gpt-4o-mini", "complexity": "auto"}
    with pytest.raises(GatewayError, match="provider 'off' is disabled") as info:
        selector.chat(request("off/gpt-4o"), None, OPEN)
    assert info.value.status == 404


def test_auto_requires_what_the_request_needs(selector: Selector) -> None:
    from polyroute.types import Tool

    choice = selector.chat(
        request("auto:cost", tools=(Tool("f"),), response_format="json"),
        Hints(priority="quality", max_latency_ms=500),
        OPEN,
    )
    assert choice.routing == {
        "priority": "cost",
        "max_latency_ms": 500,
        "require": ("json", "tools"),
    }
    with pytest.raises(GatewayError, match=r"model: unknown strategy .pkg\.mod:Evil."):
        selector.chat(request("auto:pkg.mod:Evil"), None, OPEN)


def test_fusion_choices(selector: Selector) -> None:
    assert selector.chat(request("fusion"), Hints(max_cost_usd=0.1), OPEN).fusion == "majority"
    assert selector.chat(request("fusion:weighted"), None, OPEN).fusion == "weighted"
    from polyroute.types import Tool

    with pytest.raises(GatewayError, match="fusion does not take tools"):
        selector.chat(request("fusion", tools=(Tool("f"),)), None, OPEN)
    key = VirtualKey("vk_1", "k", "sk-pr-abc", (), None)  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="not available to virtual keys") as info:
        selector.chat(request("fusion"), None, Caller(admin=False, key=key))
    assert info.value.status == 403


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 0.2),
        ("top_p", 0.9),
        ("stop", ("END",)),
        ("response_format", "json"),
        ("tool_choice", "none"),
        ("parallel_tool_calls", False),
        ("reasoning", Reasoning("high")),
    ],
)
def test_fusion_refuses_by_name_what_its_members_would_not_get(
    selector: Selector, field: str, value: Any
) -> None:
    with pytest.raises(GatewayError, match=f"fusion does not take {field}") as info:
        selector.chat(request("fusion", **{field: value}), None, OPEN)
    assert info.value.param == field


# -- statuses ---------------------------------------------------------------------------


def failed(*errors: Any) -> AllProvidersFailedError:
    return AllProvidersFailedError([], list(errors))


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (GatewayError("x", status=413), 413, "too_large"),
        (
            BudgetExceeded(
                scope="global",
                period="daily",
                limit_usd=0,
                spent_usd=0,
                reserved_usd=0,
                requested_usd=1,
            ),
            429,
            "budget",
        ),
        (FusionCostCapError("x", cap_usd=0.1, worst_case_usd=1.0), 400, "invalid_request"),
        (NotEnoughAnswersError("x"), 502, "upstream"),
        (failed(APITimeoutError("t"), APITimeoutError("t")), 504, "timeout"),
        (failed(RateLimitError("r", retry_after=3), RateLimitError("r")), 429, "rate_limit"),
        (failed(QuotaExceededError("q")), 502, "upstream"),
        (failed(BadRequestError("b"), BadRequestError("b")), 400, "invalid_request"),
        (failed(BadRequestError("b"), InternalServerError("i")), 502, "upstream"),
        (failed(), 502, "upstream"),
        (APITimeoutError("t"), 504, "timeout"),
        (NoCandidateError([Excluded("p", "m", "over budget: x", "over_budget")]), 429, "budget"),
        (NoCandidateError([Excluded("p", "m", "breaker open", "unavailable")]), 502, "upstream"),
        (
            NoCandidateError(
                [
                    Excluded("p", "m", "over budget: x", "over_budget"),
                    Excluded("q", "m", "no vision"),
                ]
            ),
            502,
            "upstream",
        ),
        (NoCandidateError([Excluded("p", "m", "lacks capability tools")]), 400, "invalid_request"),
        (NoCandidateError(detail="no enabled provider matches models x"), 404, "not_found"),
        (ConfigError("bad"), 500, "internal"),
    ],
)
def test_statuses(exc: Any, status: int, kind: str) -> None:
    problem = problem_of(exc)
    assert (problem.status, problem.kind) == (status, kind)


def test_a_rate_limit_problem_carries_the_shortest_wait() -> None:
    problem = problem_of(
        failed(RateLimitError("r", retry_after=3), RateLimitError("r", retry_after=1))
    )
    assert problem.retry_after == 1


async def test_a_bug_after_the_first_event_still_ends_in_an_error_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from polyroute.gateway._chat import _Frames
    from polyroute.gateway._observe import Note

    async def events() -> AsyncGenerator[Any, None]:
        yield TextDelta("half an ans")
        raise RuntimeError("adapter bug")

    class Stream:
        cost_usd = None

    async def durable() -> None:
        pass

    frames: list[bytes] = []

    async def send(message: Any) -> None:
        frames.append(message.get("body", b""))

    inbound = Inbound(ChatRequest("m", ()), stream=True)
    note = Note()
    response = _Frames(
        StreamStart("id", "m"),
        events(),
        Stream(),  # type: ignore[arg-type]
        OpenAIChat().encoder(inbound, "m"),
        note,
        durable,
        {},
    )
    await response.stream_response(send)
    body = b"".join(frames).decode()
    assert "half an ans" in body and "[DONE]" not in body
    last = json.loads(body.strip().split("\n\n")[-1].removeprefix("data: "))
    assert last["error"]["type"] == "server_error" and "adapter bug" not in body
    assert note.error == "internal" and "adapter bug" in caplog.text


def _frames_of(first: Any, events: AsyncGenerator[Any, None], durable: Any) -> Any:
    from polyroute.gateway._chat import _Frames
    from polyroute.gateway._observe import Note

    class Stream:
        cost_usd = None

    inbound = Inbound(ChatRequest("m", ()), stream=True)
    encoder = OpenAIChat().encoder(inbound, "m")
    return _Frames(first, events, Stream(), encoder, Note(), durable, {})  # type: ignore[arg-type]


async def test_a_streams_end_frame_ends_the_response_before_the_stream_unwinds() -> None:
    sent: list[Any] = []
    seen_after_end: list[list[Any]] = []

    async def events() -> AsyncGenerator[Any, None]:
        yield TextDelta("hello")
        yield StreamEnd("stop", Usage.new(1, 1))
        seen_after_end.append(list(sent))  # the stream's own end: the upstream closed...

    async def durable() -> None:
        sent.append("durable")

    async def send(message: Any) -> None:
        sent.append(message)

    await _frames_of(StreamStart("id", "m"), events(), durable).stream_response(send)
    *_, committed, last = sent
    assert committed == "durable"  # the end waited for the ledger
    assert last["more_body"] is False and b"[DONE]" in last["body"]  # one write ends it
    assert seen_after_end == [sent]  # the stream ran to its end, after the response's


async def test_a_stream_that_ends_at_its_first_event_waits_for_the_ledger_too() -> None:
    sent: list[Any] = []

    async def events() -> AsyncGenerator[Any, None]:
        return
        yield

    async def durable() -> None:
        sent.append("durable")

    async def send(message: Any) -> None:
        sent.append(message)

    frames = _frames_of(StreamEnd("stop", Usage.new(1, 1)), events(), durable)
    await frames.stream_response(send)
    assert [m if m == "durable" else m["type"] for m in sent] == [
        "http.response.start",
        "durable",
        "http.response.body",
    ]
    assert sent[-1]["more_body"] is False and b"[DONE]" in sent[-1]["body"]


async def test_a_caller_hanging_up_after_the_end_cuts_nothing_short() -> None:
    """The response's end wakes the hang-up watch (``receive`` answers a disconnect once a
    response is complete): the stream still runs to its end, uncancelled."""
    import asyncio

    ended = asyncio.Event()
    finished: list[bool] = []

    async def events() -> AsyncGenerator[Any, None]:
        yield StreamEnd("stop", Usage.new(1, 1))
        for _ in range(3):
            await asyncio.sleep(0)  # the watch's turn to run
        finished.append(True)

    async def durable() -> None:
        pass

    async def receive() -> Any:
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message.get("more_body") is False:
            ended.set()

    frames = _frames_of(StreamStart("id", "m"), events(), durable)
    await frames({"type": "http"}, receive, send)
    assert finished == [True]


async def test_a_failure_after_the_end_was_sent_is_logged_and_ends_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Any] = []

    async def events() -> AsyncGenerator[Any, None]:
        yield StreamEnd("stop", Usage.new(1, 1))
        raise RuntimeError("a bug in unwinding")

    async def durable() -> None:
        pass

    async def send(message: Any) -> None:
        sent.append(message)

    await _frames_of(StreamStart("id", "m"), events(), durable).stream_response(send)
    assert sent[-1]["more_body"] is False and sent[-1]["body"].endswith(b"data: [DONE]\n\n")
    assert b"error" not in b"".join(m.get("body", b"") for m in sent)
    assert "failed after its end was sent" in caplog.text
