"""Cross-vendor guarantees of ProviderClient: who failed, with which request id, and retryability."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyroute.errors import (
    OverloadedError,
    QuotaExceededError,
    RateLimitError,
    UnsupportedError,
    _snake,
)
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.testing import AnthropicSimulator, OllamaSimulator, OpenAISimulator
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
