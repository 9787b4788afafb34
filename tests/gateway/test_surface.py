"""The rest of the gateway's surface (DESIGN.md §9): how answers end (``tool_use``,
``stop_sequence``), token counting, one model's page, unknown routes and validation
errors in the caller's own API shape."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, ToolParam

from gateway.support import Gateway, running
from polyroute.testing import Fleet
from polyroute.testing._sim import SimChat, SimReply, sse
from polyroute.testing.openai import OpenAISimulator

MSGS: list[MessageParam] = [{"role": "user", "content": "hi"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        yield c


# -- how an answer ended -------------------------------------------------------------


def test_stop_sequence_round_trips_json_and_stream(sdk: anthropic.Anthropic) -> None:
    m = sdk.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=MSGS, stop_sequences=["from", "zz"]
    )
    assert m.content[0].type == "text" and m.content[0].text == "Simulated anthropic reply "
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "from")
    with sdk.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=MSGS, stop_sequences=["reply"]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "reply")


def test_an_answer_without_a_stop_sequence_says_null(sdk: anthropic.Anthropic) -> None:
    m = sdk.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=MSGS, stop_sequences=["absent"]
    )
    assert (m.stop_reason, m.stop_sequence) == ("end_turn", None)


class ToolsThenStop(OpenAISimulator):
    """An OpenAI-style server that returns a tool call with ``finish_reason: "stop"``, as
    several compatible servers (and OpenAI with ``tool_choice`` forcing a function) do."""

    vendor: ClassVar[str] = "openai"
    ARGS: ClassVar[str] = '{"city": "Zürich"}'

    def _call(self) -> dict[str, Any]:
        return {"id": "call_1", "type": "function", "function": {"name": "get_weather"}}

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        call = self._call()
        call["function"]["arguments"] = self.ARGS
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": self._usage(reply),
        }

    def more_answers(self, chat: SimChat, reply: SimReply, body: Any) -> Any:
        return body  # the one answer above, as it is

    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": chat.model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        first = self._call()
        first["index"] = 0
        first["function"]["arguments"] = self.ARGS[:7]
        yield chunk({"role": "assistant", "content": None, "tool_calls": [first]})
        rest = {"index": 0, "function": {"arguments": self.ARGS[7:]}}
        yield chunk({"tool_calls": [rest]})
        yield chunk({}, "stop")
        yield sse({**base, "choices": [], "usage": self._usage(reply)})
        yield sse("[DONE]")


@pytest.fixture
def tools_gateway(fleet: Fleet) -> Iterator[Gateway]:
    with ToolsThenStop() as sim:
        upstream = {
            "type": "openai",
            "base_url": sim.base_url,
            "models": ["gpt-4o-mini"],
            "api_key": "env:POLYROUTE_SIM_KEY",
        }
        with running(fleet, extra_providers={"toolsy": upstream}) as gw:
            yield gw


def test_tool_calls_ending_in_stop_reach_anthropic_callers_as_tool_use(
    tools_gateway: Gateway,
) -> None:
    kw: dict[str, Any] = {
        "model": "toolsy/gpt-4o-mini",
        "max_tokens": 100,
        "messages": MSGS,
        "tools": [WEATHER],
    }
    with anthropic.Anthropic(base_url=tools_gateway.url, api_key="u", max_retries=0) as sdk:
        m = sdk.messages.create(**kw)
        with sdk.messages.stream(**kw) as stream:
            final = stream.get_final_message()
    for message in (m, final):
        assert message.stop_reason == "tool_use"
        (block,) = message.content
        assert block.type == "tool_use" and block.input == {"city": "Zürich"}


# -- token counting ----------------------------------------------------------------


def test_count_tokens_is_exact_from_an_anthropic_upstream(
    sdk: anthropic.Anthropic, gateway: Gateway
) -> None:
    sim = gateway.fleet["anthropic"]
    raw = sdk.messages.with_raw_response.count_tokens(
        model="anthropic/claude-haiku-4-5",
        system="be brief",
        messages=[{"role": "user", "content": "What is the weather in Rome today?"}],
        tools=[WEATHER],
        extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"},
    )
    counted = raw.parse()
    sent = sim.last_request()
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    assert (
        sent.body["model"] == "claude-haiku-4-5" and sent.body["tools"][0]["name"] == "get_weather"
    )
    assert "max_tokens" not in sent.body and "stream" not in sent.body
    assert raw.headers["x-polyroute-token-count"] == "exact"
    assert raw.headers["x-polyroute-provider"] == "anthropic"
    assert counted.input_tokens > 0
    # a bare model an Anthropic provider serves is counted there too, and agrees with a call
    message = sdk.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MSGS)
    bare = sdk.messages.with_raw_response.count_tokens(model="claude-haiku-4-5", messages=MSGS)
    assert bare.headers["x-polyroute-token-count"] == "exact"
    assert bare.parse().input_tokens == message.usage.input_tokens


def test_count_tokens_is_estimated_and_marked_elsewhere(
    sdk: anthropic.Anthropic, gateway: Gateway
) -> None:
    calls = gateway.fleet["openai"].calls
    long = "word " * 400
    for model in ("gpt-4o-mini", "openai/gpt-4o", "auto"):
        raw = sdk.messages.with_raw_response.count_tokens(
            model=model, messages=[{"role": "user", "content": long}]
        )
        assert raw.headers["x-polyroute-token-count"] == "estimated"
        assert "x-polyroute-provider" not in raw.headers
        assert 500 <= raw.parse().input_tokens <= 520  # 2,000 characters, 4 a token
    assert gateway.fleet["openai"].calls == calls  # an estimate calls no one


def test_count_tokens_refuses_as_messages_does(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as unknown:
        sdk.messages.count_tokens(model="no-such-model", messages=MSGS)
    assert unknown.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": unknown.value.body["error"]["message"]},
    }
    with pytest.raises(anthropic.BadRequestError) as empty:
        sdk.messages.count_tokens(model="claude-haiku-4-5", messages=[])
    assert "messages" in empty.value.message


# -- one model; unknown routes ----------------------------------------------------


@pytest.fixture
def oa(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_a_model_is_retrieved_by_id_slashes_included(
    oa: openai.OpenAI, sdk: anthropic.Anthropic
) -> None:
    pinned = oa.models.retrieve("openai/gpt-4o-mini")
    assert (pinned.id, pinned.object, pinned.owned_by) == ("openai/gpt-4o-mini", "model", "openai")
    assert oa.models.retrieve("auto:cost").owned_by == "polyroute"
    claude = sdk.models.retrieve("anthropic/claude-haiku-4-5")
    assert (claude.type, claude.id) == ("model", "anthropic/claude-haiku-4-5")
    with pytest.raises(openai.NotFoundError) as missing:
        oa.models.retrieve("openai/no-such-model")
    body = missing.value.body
    assert isinstance(body, dict) and "'openai/no-such-model'" in body["message"]
    assert (body["type"], body["param"], body["code"]) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )
    with pytest.raises(anthropic.NotFoundError) as gone:
        sdk.models.retrieve("claude-nope")
    assert gone.value.body["error"]["type"] == "not_found_error"


def test_unknown_routes_are_404_in_the_callers_shape(
    oa: openai.OpenAI, sdk: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.NotFoundError) as legacy:
        oa.completions.create(model="gpt-4o-mini", prompt="hi")
    body = legacy.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    assert body["code"] == "unknown_route" and "POST /v1/completions" in body["message"]
    with pytest.raises(anthropic.NotFoundError) as batches:
        sdk.messages.batches.list()
    assert batches.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "GET /v1/messages/batches: no such route"},
    }


def test_a_method_a_route_does_not_take_is_405_in_the_callers_shape(gateway: Gateway) -> None:
    with gateway.http() as http:
        chat = http.get("/v1/chat/completions")
        messages = http.get("/v1/messages")
        other = http.delete("/nowhere", headers={"anthropic-version": "2023-06-01"})
    assert chat.status_code == 405 and chat.headers["allow"] == "POST"
    assert chat.json()["error"]["code"] == "method_not_allowed"
    assert messages.status_code == 405
    assert messages.json()["error"]["type"] == "invalid_request_error"
    assert messages.json()["type"] == "error"
    assert other.status_code == 404 and other.json()["error"]["type"] == "not_found_error"


# -- validation errors in plain words ------------------------------------------------

BRANCH_NAMES = re.compile(r"\.str\b|\[|tagged-union|\b_[A-Z]|Input should")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/messages",
            {"messages": [{"role": "user", "content": 5}]},
            "messages.0.content: expected a string or an array, got a number",
        ),
        (
            "/v1/messages",
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages.0.content.0.text: expected a string, got a number",
        ),
        (
            "/v1/messages",
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages.0.content.0.type: unknown type 'video' (expected one of 'text', ",
        ),
        (
            "/v1/messages",
            {"system": [{"type": "text"}]},
            "system.0.text: field required",
        ),
        (
            "/v1/chat/completions",
            {"stop": 5},
            "stop: expected a string or an array, got a number",
        ),
        (
            "/v1/chat/completions",
            {"tool_choice": "sometimes"},
            "tool_choice: expected 'auto', 'none' or 'required' or an object, got \"sometimes\"",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]},
            "messages.0.content.0.image_url: expected an object, got a number",
        ),
        (
            "/v1/embeddings",
            {"input": {"text": "hi"}},
            "input: expected ",
        ),
    ],
)
def test_validation_errors_name_the_callers_field_in_plain_words(
    gateway: Gateway, path: str, body: dict[str, Any], message: str
) -> None:
    base: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSGS}
    if path == "/v1/messages":
        base["max_tokens"] = 10
    if path == "/v1/embeddings":
        base = {"model": "text-embedding-3-small"}
    with gateway.http() as http:
        r = http.post(path, json={**base, **body})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith(message), error["message"]
    assert not BRANCH_NAMES.search(error["message"]), error["message"]
    if "param" in error:  # OpenAI's shape names the field alone
        assert error["param"] == message.partition(":")[0]


def test_the_sdks_show_the_plain_words(oa: openai.OpenAI, sdk: anthropic.Anthropic) -> None:
    with pytest.raises(openai.BadRequestError) as chat:
        oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": [{"type": "text", "text": None}]}],  # type: ignore[typeddict-item]
        )
    assert "messages.0.content.0.text: expected a string, got null" in chat.value.message
    with pytest.raises(anthropic.BadRequestError) as messages:
        sdk.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": 42}],  # type: ignore[typeddict-item]
        )
    assert "messages.0.content: expected a string or an array, got a number" in (
        messages.value.message
    )
