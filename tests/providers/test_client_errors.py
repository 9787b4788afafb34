"""Cross-vendor guarantees of ProviderClient: who failed, with which request id, and retryability."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, aclosing

import pytest

from polyroute.config import Config, validate
from polyroute.errors import (
    InvalidResponseError,
    OverloadedError,
    QuotaExceededError,
    RateLimitError,
    StreamInterruptedError,
    UnsupportedError,
    _snake,
)
from polyroute.events import StreamEnd, StreamEvent, StreamStart, TextDelta
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.testing import (
    SIMULATORS,
    AnthropicSimulator,
    Fleet,
    OllamaSimulator,
    OpenAISimulator,
)
from polyroute.types import ChatRequest, ImagePart, Message, TextPart


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


def req(model: str = "m") -> ChatRequest:
    return ChatRequest(model=model, messages=[Message.user("hi")])


async def test_quota_429_is_not_retryable(pool: HttpPool) -> None:
    with OpenAISimulator() as sim:
        c = connect(Provider("oa", "openai", sim.base_url, Secret("sim-key")), pool)
        sim.script.fail_next(1, 429, error_type="insufficient_quota")
        with pytest.raises(QuotaExceededError) as info:
            await c.complete(req())
        assert isinstance(info.value, RateLimitError) and not info.value.retryable
        sim.script.fail_next(1, 429)
        with pytest.raises(RateLimitError) as plain:
            await c.complete(req())
        assert plain.value.retryable


async def test_translation_error_names_the_provider(pool: HttpPool) -> None:
    with OllamaSimulator() as sim:
        c: ProviderClient = connect(Provider("local", "ollama", sim.root_url), pool)
        image_by_url = Message.user(
            [TextPart("what is it?"), ImagePart(url="https://example.com/a.png")]
        )
        with pytest.raises(UnsupportedError) as info:
            await c.complete(ChatRequest(model="llama3.2", messages=[image_by_url]))
        assert info.value.provider == "local" and not info.value.retryable
        assert sim.calls == 0  # refused before anything was sent


async def test_in_stream_error_carries_provider_and_request_id(pool: HttpPool) -> None:
    with AnthropicSimulator() as sim:
        c = connect(Provider("claude", "anthropic", sim.root_url, Secret("sim-key")), pool)
        sim.error_mid_stream(error_type="overloaded_error", message="Overloaded", after_chunks=1)
        with pytest.raises(OverloadedError) as info:
            async for _ in c.stream(req("claude-haiku-4-5")):
                pass
        assert info.value.provider == "claude" and info.value.request_id
        assert info.value.retryable


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("APIConnection", "api_connection"),
        ("RateLimit", "rate_limit"),
        ("InternalServer", "internal_server"),
    ],
)
def test_error_type_names(name: str, snake: str) -> None:
    assert _snake(name) == snake


# -- the same guarantees, for every vendor --------------------------------------

VENDORS = list(SIMULATORS)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(reply="The answer is 42") as f:
        yield f


@pytest.fixture
async def clients(fleet: Fleet) -> AsyncIterator[dict[str, ProviderClient]]:
    config = Config(validate(fleet.settings(), "test"), "test", fleet.env())
    p = HttpPool()
    yield {v: connect(config.provider(v), p) for v in VENDORS}
    await p.aclose()
    for sim in fleet.sims.values():
        sim.script.recover()


@pytest.mark.parametrize("vendor", VENDORS)
async def test_garbage_body_is_invalid_response(
    vendor: str, fleet: Fleet, clients: dict[str, ProviderClient]
) -> None:
    fleet[vendor].script.garbage_next()
    with pytest.raises(InvalidResponseError) as info:
        await clients[vendor].complete(req(fleet[vendor].models[0]))
    assert info.value.provider == vendor


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("abort", [False, True])
async def test_cut_stream_is_an_error_not_an_end(
    vendor: str, abort: bool, fleet: Fleet, clients: dict[str, ProviderClient]
) -> None:
    fleet[vendor].script.cut_stream(after_chunks=1, abort=abort)
    seen: list[StreamEvent] = []
    with pytest.raises(StreamInterruptedError):
        async for e in clients[vendor].stream(req(fleet[vendor].models[0])):
            seen.append(e)
    assert isinstance(seen[0], StreamStart)
    assert not any(isinstance(e, StreamEnd) for e in seen)
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["The "]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_stream_closes_the_generators_under_it(
    vendor: str,
    fleet: Fleet,
    clients: dict[str, ProviderClient],
    left_to_the_loop: Callable[[], AbstractContextManager[list[str]]],
) -> None:
    model = fleet[vendor].models[0]
    with left_to_the_loop() as left:
        read = [e async for e in clients[vendor].stream(req(model))]
        async with aclosing(clients[vendor].stream(req(model))) as events:
            async for _ in events:
                break  # abandoned after its first event
    assert isinstance(read[-1], StreamEnd)
    assert left == []
