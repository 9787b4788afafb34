"""The openai adapter on OpenAI's Responses API (catalog ``api = "responses"``), against the
simulator: translation both ways, streamed events, errors; and ``message.refusal``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from polyroute.errors import (
    ContextLengthError,
    InternalServerError,
    RateLimitError,
    UnsupportedError,
)
from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.providers._openai_responses import ResponsesStreamDecoder, parse
from polyroute.testing import OpenAISimulator
from polyroute.testing._sim import Script
from polyroute.types import (
    ChatRequest,
    DocumentPart,
    ImagePart,
    JsonSchema,
    Message,
    Reasoning,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCall,
)

MODELS = ("o3-pro", "gpt-4o-mini")
WEATHER = Tool(
    "weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
def sim() -> AsyncIterator[OpenAISimulator]:
    script = Script(reply="The answer is 42", cached_tokens=2, reasoning_tokens=5)
    with OpenAISimulator(models=MODELS, script=script) as s:
        yield s


@pytest.fixture
async def client(sim: OpenAISimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    provider = Provider(
        "oa", "openai", sim.base_url, Secret("sim-key"), responses_models=frozenset({"o3-pro"})
    )
    yield connect(provider, pool)
    await pool.aclose()


def req(*messages: Message, **kw: object) -> ChatRequest:
    given = messages or (Message.system("Be brief."), Message.user("What is the answer?"))
    return ChatRequest("o3-pro", given, **kw)  # type: ignore[arg-type]


async def collect(client: ProviderClient, request: ChatRequest) -> list[StreamEvent]:
    return [e async for e in client.stream(request)]


async def test_a_responses_model_goes_to_responses_and_its_answer_is_read(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    r = await client.complete(
        req(
            max_tokens=500,
            temperature=0.5,
            metadata={"k": "v"},
            service_tier="flex",
            user="u1",
            response_format=JsonSchema("answer", {"type": "object"}, strict=True),
            reasoning=Reasoning(effort="low"),
        )
    )
    sent = sim.last_request()
    assert sent.path == "/v1/responses"
    assert sent.body["instructions"] == "Be brief."
    assert sent.body["input"] == [
        {"type": "message", "role": "user", "content": "What is the answer?"}
    ]
    assert sent.body["max_output_tokens"] == 500 and sent.body["temperature"] == 0.5
    assert sent.body["store"] is False and sent.body["include"] == ["reasoning.encrypted_content"]
    assert sent.body["metadata"] == {"k": "v"} and sent.body["service_tier"] == "flex"
    assert sent.body["user"] == "u1"
    assert sent.body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "answer",
            "schema": {"type": "object"},
            "strict": True,
        }
    }
    assert r.content == "The answer is 42" and r.finish_reason == "stop"
    assert r.raw_finish_reason == "completed" and r.id.startswith("resp_")
    assert r.usage.cached_tokens == 2 and r.usage.reasoning_tokens == 5
    assert r.usage.completion_tokens == 4 + 5 and r.usage.prompt_tokens > 2
    assert r.provider == "oa" and r.request_id


async def test_a_chat_model_of_the_same_provider_stays_on_chat_completions(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    r = await client.complete(ChatRequest("gpt-4o-mini", [Message.user("hi")]))
    assert sim.last_request().path == "/v1/chat/completions" and r.content == "The answer is 42"


async def test_store_is_carried_when_asked(client: ProviderClient, sim: OpenAISimulator) -> None:
    await client.complete(req(store=True, reasoning=Reasoning(effort="low")))
    assert sim.last_request().body["store"] is True and "include" not in sim.last_request().body


async def test_encrypted_reasoning_is_asked_of_reasoning_requests_only(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    r = await client.complete(req())  # OpenAI refuses include for models that do not reason
    assert "include" not in sim.last_request().body and "reasoning" not in sim.last_request().body
    assert r.thinking == ()


async def test_conversation_items_tools_and_parts_are_translated(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    call = ToolCall("call_1", "weather", '{"city":"Paris"}')
    messages = (
        Message.system("Be brief."),
        Message.user(
            [
                TextPart("Look:"),
                ImagePart(url="https://x/cat.png", detail="low"),
                DocumentPart(data="JVBER", filename="a.pdf"),
                DocumentPart(url="https://x/b.pdf"),
            ]
        ),
        Message("assistant", "Let me check.", tool_calls=(call,)),
        Message("tool", "boom", tool_call_id="call_1", is_error=True),
    )
    await client.complete(
        req(*messages, tools=(WEATHER,), tool_choice="auto", parallel_tool_calls=False)
    )
    body = sim.last_request().body
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look:"},
                {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
                {
                    "type": "input_file",
                    "file_data": "data:application/pdf;base64,JVBER",
                    "filename": "a.pdf",
                },
                {"type": "input_file", "file_url": "https://x/b.pdf"},
            ],
        },
        {"type": "message", "role": "assistant", "content": "Let me check."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Error: boom"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "weather",
            "description": "The weather in a city",
            "parameters": dict(WEATHER.parameters),
            "strict": False,  # not asked: the Responses API would default to strict
        }
    ]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False


async def test_a_forced_function_call_comes_back_whole_and_streamed(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    request = req(tools=(WEATHER,), tool_choice="weather")
    r = await client.complete(request)
    assert sim.last_request().body["tool_choice"] == {"type": "function", "name": "weather"}
    assert r.finish_reason == "tool_calls" and len(r.tool_calls) == 1
    assert r.tool_calls[0].name == "weather" and r.tool_calls[0].id.startswith("call_")
    assert json.loads(r.tool_calls[0].arguments) == {"city": "sample"}

    events = await collect(client, request)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].name == "weather" and deltas[0].id and deltas[0].index == 0
    assert len(deltas) > 2  # the arguments came in pieces
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "sample"}
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "tool_calls"


async def test_stream_yields_start_text_and_end_with_usage(client: ProviderClient) -> None:
    events = await collect(client, req())
    assert isinstance(events[0], StreamStart) and events[0].id.startswith("resp_")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer is 42"
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop"
    assert end.usage.cached_tokens == 2 and end.usage.reasoning_tokens == 5


async def test_reasoning_comes_back_signed_and_goes_back_as_the_same_item(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    r = await client.complete(req(reasoning=Reasoning(effort="high")))
    assert sim.last_request().body["reasoning"] == {"effort": "high"}
    (thought,) = r.thinking
    item_id, _, encrypted = (thought.signature or "").partition("|")
    assert item_id.startswith("rs_") and encrypted.startswith("gAAAA")

    events = await collect(client, req(reasoning=Reasoning(effort="high")))
    signed = [e for e in events if isinstance(e, ThinkingDelta) and e.signature]
    assert len(signed) == 1 and signed[0].signature and signed[0].signature.startswith("rs_")

    anthropic_thought = ThinkingPart("hmm", signature="EqQBCkYIBxgCKkA")
    turn = Message("assistant", (anthropic_thought, thought, TextPart("42")))
    await client.complete(req(Message.user("q"), turn, Message.user("and?")))
    items = sim.last_request().body["input"]
    assert items[1] == {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "encrypted_content": encrypted,
    }  # another vendor's thinking is left out
    assert items[2] == {"type": "message", "role": "assistant", "content": "42"}
    # sent back by a Responses client with no summary: redacted thinking, the same item
    redacted = ThinkingPart(thought.signature or "", redacted=True)
    await client.complete(req(Message.user("q"), Message("assistant", (redacted,))))
    assert sim.last_request().body["input"][1]["id"] == item_id


async def test_a_truncated_answer_finishes_with_length(client: ProviderClient) -> None:
    r = await client.complete(req(max_tokens=2))
    assert r.finish_reason == "length" and r.raw_finish_reason == "max_output_tokens"
    events = await collect(client, req(max_tokens=2))
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "length"


async def test_errors_take_the_error_tree(client: ProviderClient, sim: OpenAISimulator) -> None:
    sim.script.fail_next(1, 429, retry_after=3)
    with pytest.raises(RateLimitError) as caught:
        await client.complete(req())
    assert caught.value.retry_after == 3 and caught.value.provider == "oa"


async def test_a_stream_that_fails_midway_raises(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    sim.stream_error = "server_error"
    seen: list[StreamEvent] = []
    with pytest.raises(InternalServerError) as caught:
        async for event in client.stream(req()):
            seen.append(event)
    assert any(isinstance(e, TextDelta) for e in seen)
    assert caught.value.vendor_type == "server_error" and caught.value.provider == "oa"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stop", ("x",)),
        ("seed", 1),
        ("n", 2),
        ("logprobs", True),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("logit_bias", {"1": 5.0}),
        ("top_k", 3),
    ],
)
async def test_fields_the_responses_api_lacks_are_refused_by_name(
    client: ProviderClient, sim: OpenAISimulator, field: str, value: object
) -> None:
    calls = sim.calls
    with pytest.raises(UnsupportedError, match=field if field != "n" else "n > 1"):
        await client.complete(req(**{field: value}))
    assert sim.calls == calls


# -- message.refusal (Chat Completions) ---------------------------------------------------


async def test_a_chat_refusal_is_carried_whole_and_streamed() -> None:
    pool = HttpPool()
    with OpenAISimulator(refusal="I can't help with that.") as sim:
        c = connect(Provider("oa", "openai", sim.base_url, Secret("sim-key")), pool)
        r = await c.complete(ChatRequest("gpt-4o-mini", [Message.user("hi")]))
        assert r.refusal == "I can't help with that." and r.content == ""
        events = [e async for e in c.stream(ChatRequest("gpt-4o-mini", [Message.user("hi")]))]
        end = events[-1]
        assert isinstance(end, StreamEnd) and end.refusal == "I can't help with that."
        assert not any(isinstance(e, TextDelta) for e in events)
        responses = Provider(
            "oa", "openai", sim.base_url, Secret("sim-key"), responses_models=frozenset({"gpt-4o"})
        )
        c = connect(responses, pool)
        r = await c.complete(ChatRequest("gpt-4o", [Message.user("hi")]))
        assert r.refusal == "I can't help with that." and r.content == ""
        events = [e async for e in c.stream(ChatRequest("gpt-4o", [Message.user("hi")]))]
        end = events[-1]
        assert isinstance(end, StreamEnd) and end.refusal == "I can't help with that."
    await pool.aclose()


# -- the translation alone ---------------------------------------------------------------


def test_a_failed_response_and_error_events_take_the_error_tree() -> None:
    failed = {"object": "response", "status": "failed", "output": []}
    failed["error"] = {"code": "rate_limit_exceeded", "message": "slow down"}
    with pytest.raises(RateLimitError, match="slow down"):
        parse(failed)
    decoder = ResponsesStreamDecoder("oa")
    with pytest.raises(RateLimitError):
        decoder.feed(json.dumps({"type": "response.failed", "response": failed}), None)
    error = {"type": "error", "code": "context_length_exceeded", "message": "too long"}
    with pytest.raises(ContextLengthError):
        decoder.feed(json.dumps(error), "error")
    unknown = {"type": "error", "code": None, "message": "boom"}
    with pytest.raises(InternalServerError, match="boom"):
        decoder.feed(json.dumps(unknown), "error")


def test_incomplete_reasons_and_unknown_events() -> None:
    body = {"object": "response", "status": "incomplete", "output": []}
    body["incomplete_details"] = {"reason": "content_filter"}
    r = parse(body)
    assert r.finish_reason == "content_filter" and r.raw_finish_reason == "content_filter"
    decoder = ResponsesStreamDecoder("oa")
    later = {"type": "response.web_search_call.searching", "output_index": 0}
    assert decoder.feed(json.dumps(later), None) == [] and not decoder.done
    (end,) = decoder.feed(json.dumps({"type": "response.incomplete", "response": body}), None)
    assert isinstance(end, StreamEnd) and end.finish_reason == "content_filter" and decoder.done


async def test_a_stream_rate_limited_midway_is_a_rate_limit(
    client: ProviderClient, sim: OpenAISimulator
) -> None:
    sim.stream_error = "rate_limit_exceeded"
    with pytest.raises(RateLimitError):
        async for _ in client.stream(req()):
            pass
