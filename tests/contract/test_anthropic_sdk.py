"""The official anthropic SDK parses everything the simulator sends: the simulator cannot drift."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from anthropic.types import MessageParam, RawMessageDeltaEvent, ToolParam

from polyroute.testing.anthropic import AnthropicSimulator

MODEL = "claude-sonnet-4-6"
MSGS: list[MessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def sim() -> Iterator[AnthropicSimulator]:
    s = AnthropicSimulator(reply="Hello from the wire")
    with s:
        yield s


@pytest.fixture
def sdk(sim: AnthropicSimulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.base_url, api_key="sim-key", max_retries=0) as c:
        yield c


def test_message_parses(sdk: anthropic.Anthropic, sim: AnthropicSimulator) -> None:
    sim.script.cached_tokens = 1
    m = sdk.messages.create(model=MODEL, max_tokens=100, system="be brief", messages=MSGS)
    assert m.content[0].type == "text" and m.content[0].text == "Hello from the wire"
    assert m.stop_reason == "end_turn" and m.model == MODEL and m.role == "assistant"
    assert m.usage.output_tokens == 5 and m.usage.cache_read_input_tokens == 1
    assert m._request_id and m._request_id.startswith("req_")


def test_stream_helper_accumulates_text_and_usage(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=100, messages=MSGS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the wire"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5
    assert final.usage.input_tokens == 1
    assert final.content[0].type == "text" and final.content[0].text == text


def test_raw_stream_events_in_order(sdk: anthropic.Anthropic) -> None:
    events = list(sdk.messages.create(model=MODEL, max_tokens=3, messages=MSGS, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = events[-2]
    assert isinstance(delta, RawMessageDeltaEvent) and delta.delta.stop_reason == "max_tokens"
    assert delta.usage.output_tokens == 3


def test_forced_tool_use_parses(sdk: anthropic.Anthropic, sim: AnthropicSimulator) -> None:
    sim.script.reply = '{"city": "Paris"}'
    tools: list[ToolParam] = [{"name": "weather", "input_schema": {"type": "object"}}]
    m = sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=MSGS,
        tools=tools,
        tool_choice={"type": "tool", "name": "weather"},
    )
    block = m.content[0]
    assert block.type == "tool_use" and block.name == "weather"
    assert block.input == {"city": "Paris"} and m.stop_reason == "tool_use"
    with sdk.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=MSGS,
        tools=tools,
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}


def test_models_list_pages_and_retrieve(sdk: anthropic.Anthropic, sim: AnthropicSimulator) -> None:
    ids = [m.id for m in sdk.models.list(limit=2)]  # auto-paginates past the first page
    assert ids == list(sim.models)
    m = sdk.models.retrieve("claude-opus-4-7")
    assert m.display_name == "Claude Opus 4.7" and m.max_input_tokens == 200_000
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("claude-nope")


@pytest.mark.parametrize(
    ("status", "exc", "etype"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (408, anthropic.RequestTimeoutError, "invalid_request_error"),
        (409, anthropic.ConflictError, "conflict_error"),
        (413, anthropic.ContentTooLargeError, "request_too_large"),
        (422, anthropic.UnprocessableEntityError, "invalid_request_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (502, anthropic.InternalServerError, "api_error"),
        (503, anthropic.ServiceUnavailableError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_error_bodies_parse(
    sim: AnthropicSimulator, sdk: anthropic.Anthropic, status: int, exc: type, etype: str
) -> None:
    sim.script.fail_next(1, status)
    with pytest.raises(exc) as info:
        sdk.messages.create(model=MODEL, max_tokens=10, messages=MSGS)
    err = info.value
    assert isinstance(err, anthropic.APIStatusError) and err.status_code == status
    assert err.type == etype and err.api_message
    assert isinstance(err.body, dict)
    assert err.request_id and err.request_id == err.body["request_id"]


def test_wrong_key_is_rejected(sim: AnthropicSimulator) -> None:
    with (
        anthropic.Anthropic(base_url=sim.base_url, api_key="nope", max_retries=0) as c,
        pytest.raises(anthropic.AuthenticationError),
    ):
        c.messages.create(model=MODEL, max_tokens=10, messages=MSGS)


def test_in_band_stream_error_surfaces_in_sdk(
    sim: AnthropicSimulator, sdk: anthropic.Anthropic
) -> None:
    sim.error_mid_stream("overloaded_error", "Overloaded", after_chunks=1)
    with pytest.raises(anthropic.APIStatusError) as info:
        list(sdk.messages.create(model=MODEL, max_tokens=10, messages=MSGS, stream=True))
    assert info.value.type == "overloaded_error"


def test_cut_stream_surfaces_in_sdk(sim: AnthropicSimulator, sdk: anthropic.Anthropic) -> None:
    import httpx2

    sim.script.cut_stream(after_chunks=1, abort=True)
    with (
        pytest.raises(httpx2.TransportError),
        sdk.messages.stream(model=MODEL, max_tokens=10, messages=MSGS) as stream,
    ):
        stream.get_final_message()


def test_clean_cut_leaves_the_sdk_a_message_without_stop_reason(
    sim: AnthropicSimulator, sdk: anthropic.Anthropic
) -> None:
    """The SDK accepts a stream with no message_stop; polyroute must not (see its decoder)."""
    sim.script.cut_stream(after_chunks=1)
    with sdk.messages.stream(model=MODEL, max_tokens=10, messages=MSGS) as stream:
        final = stream.get_final_message()
    assert final.stop_reason is None and final.content[0].type == "text"
    assert final.content[0].text == "Hello "
