"""Counting a request's input tokens where the vendor counts them (Anthropic), refused
by name where it does not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from polyroute.providers import HttpPool, Provider, Secret, UnsupportedError, connect
from polyroute.testing import OpenAISimulator
from polyroute.testing.anthropic import AnthropicSimulator
from polyroute.types import ChatRequest, Message, Tool

REQUEST = ChatRequest(
    model="claude-haiku-4-5",
    messages=[Message.system("be brief"), Message.user("What is the weather in Rome?")],
    max_tokens=200,
    temperature=0.5,
    stop=["END"],
    tools=[Tool("lookup", "look up", {"type": "object"})],
)


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


async def test_anthropic_counts_without_the_answer_shaping_fields(pool: HttpPool) -> None:
    with AnthropicSimulator() as sim:
        client = connect(Provider("an", "anthropic", sim.base_url, Secret("sim-key")), pool)
        tokens = await client.count_tokens(REQUEST)
        sent = sim.last_request()
        # the endpoint refuses max_tokens, temperature, stop_sequences, stream, metadata
        with httpx.Client() as http:
            refused = http.post(
                sim.base_url + "/v1/messages/count_tokens",
                headers={"x-api-key": "sim-key", "anthropic-version": "2023-06-01"},
                json={**sent.body, "max_tokens": 5},
            )
    assert sent.path == "/v1/messages/count_tokens"
    assert set(sent.body) == {"model", "messages", "system", "tools"}
    assert sent.headers["x-api-key"] == "sim-key"
    assert tokens > 0
    assert refused.status_code == 400 and "max_tokens" in refused.text


async def test_a_vendor_without_counting_refuses_by_name(pool: HttpPool) -> None:
    with OpenAISimulator() as sim:
        client = connect(Provider("oa", "openai", sim.base_url, Secret("sim-key")), pool)
        assert not client.protocol.counts_tokens
        with pytest.raises(UnsupportedError, match="token counting") as exc:
            await client.count_tokens(REQUEST)
        assert exc.value.provider == "oa" and sim.calls == 0
