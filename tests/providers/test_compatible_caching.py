"""Cache breakpoints for openai-compatible upstreams (OpenRouter, LiteLLM): ``cache_control``
on text parts reaches the simulated upstream; OpenAI's own API never gets it; OpenRouter's
cache-write count is read into usage, whole and streamed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from polyroute.events import StreamEnd
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.testing import Script
from polyroute.testing.openai import OpenAISimulator
from polyroute.types import CacheControl, ChatRequest, ImagePart, Message, TextPart

FIVE = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
MODEL = "anthropic/claude-sonnet-4.5"


@pytest.fixture(scope="module")
def _server() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(models=(MODEL, "gpt-4o-mini")) as s:
        yield s


@pytest.fixture
def sim(_server: OpenAISimulator) -> OpenAISimulator:
    _server.script = Script(reply="cached answer")
    return _server


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


def client(kind: str, sim: OpenAISimulator, pool: HttpPool) -> ProviderClient:
    return connect(Provider("up", kind, sim.base_url, Secret("sim-key")), pool)


def marked(model: str = MODEL) -> ChatRequest:
    return ChatRequest(
        model,
        (
            Message("system", (TextPart("policy", CacheControl("1h")), TextPart("today"))),
            Message(
                "user",
                (
                    TextPart("the long document", CacheControl()),
                    ImagePart(data="AAAA"),
                    TextPart("question"),
                ),
                cache_control=CacheControl(),
            ),
            Message("assistant", "an answer", cache_control=CacheControl()),
            Message("tool", "a result", tool_call_id="t1", is_error=True),
            Message.user("and now?"),
        ),
    )


async def test_breakpoints_reach_an_openai_compatible_upstream_on_text_parts(
    sim: OpenAISimulator, pool: HttpPool
) -> None:
    await client("openai-compatible", sim, pool).complete(marked())
    system, user, assistant, tool, last = sim.last_request().body["messages"]
    assert system["content"] == [
        {"type": "text", "text": "policy", "cache_control": HOUR},
        {"type": "text", "text": "today"},
    ]
    # its own mark on the first text; the message's mark on its last text part
    assert [p.get("cache_control") for p in user["content"]] == [FIVE, None, FIVE]
    assert assistant["content"] == [{"type": "text", "text": "an answer", "cache_control": FIVE}]
    assert tool["content"] == "Error: a result" and last["content"] == "and now?"


async def test_openai_itself_never_gets_cache_control(sim: OpenAISimulator, pool: HttpPool) -> None:
    await client("openai", sim, pool).complete(marked("gpt-4o-mini"))
    sent = json.dumps(sim.last_request().body)
    assert "cache_control" not in sent and "policy" in sent


async def test_an_unmarked_request_goes_as_before(sim: OpenAISimulator, pool: HttpPool) -> None:
    plain = ChatRequest(MODEL, (Message.user("hi"),))
    await client("openai-compatible", sim, pool).complete(plain)
    assert sim.last_request().body["messages"] == [{"role": "user", "content": "hi"}]


async def test_openrouter_cache_reads_and_writes_are_read_whole_and_streamed(
    sim: OpenAISimulator, pool: HttpPool
) -> None:
    sim.script.cached_tokens = 2
    sim.script.cache_write_tokens = 3
    up = client("openai-compatible", sim, pool)
    r = await up.complete(marked())
    assert (r.usage.cached_tokens, r.usage.cache_write_tokens) == (2, 3)
    events = [e async for e in up.stream(marked())]
    (end,) = [e for e in events if isinstance(e, StreamEnd)]
    assert (end.usage.cached_tokens, end.usage.cache_write_tokens) == (2, 3)


def test_the_openai_sdk_parses_the_cache_write_count(sim: OpenAISimulator) -> None:
    sim.script.cache_write_tokens = 1
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="sim-key", max_retries=0)
    r = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.model_dump()["cache_write_tokens"] == 1
