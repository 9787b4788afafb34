"""The facade's whole-request calls: send, send_stream, embed, virtual keys, recent decisions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, aclosing
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from polyroute.client import RECENT_DECISIONS, Polyroute
from polyroute.config import Config, validate
from polyroute.errors import AllProvidersFailedError, BudgetExceeded, NoCandidateError
from polyroute.events import TextDelta
from polyroute.ledger._schema import usage
from polyroute.ledger._store import Store
from polyroute.router.decision import Target
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, EmbeddingRequest, Message, Tool


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply="sent") as f:
        yield f


@pytest.fixture
async def pr(fleet: Fleet) -> AsyncIterator[Polyroute]:
    settings = fleet.settings(storage={"url": "sqlite://"})
    p = Polyroute(Config(validate(settings, "test"), "test", fleet.env()))

    async def no_sleep(_: float) -> None:
        return None

    p.executor.sleep = no_sleep
    yield p
    await p.aclose()


def rows(store: Store) -> list[dict[str, Any]]:
    with store.read() as c:
        return [dict(r) for r in c.execute(select(usage)).mappings()]


REQUEST = ChatRequest(
    "ignored",
    (Message.system("be brief"), Message.user("weather?")),
    max_tokens=50,
    temperature=0.3,
    top_p=0.9,
    stop=("END",),
    tools=(Tool("get_weather", "the weather", {"type": "object", "properties": {}}),),
    tool_choice="auto",
    seed=7,
    user="u-1",
)
FOR_ANTHROPIC = replace(REQUEST, seed=None)
"""Anthropic has no seed: a request with one is refused there by name (DESIGN §9)."""


async def test_send_carries_every_option_with_the_targets_model(
    fleet: Fleet, pr: Polyroute
) -> None:
    answer = await pr.send(REQUEST, provider="openai", model="gpt-4o")
    assert (answer.provider, answer.model, answer.content) == ("openai", "gpt-4o", "sent")
    body = fleet["openai"].last_request().body
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"], body["user"]) == (
        0.3,
        0.9,
        ["END"],
        7,
        "u-1",
    )
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == "auto"


async def test_a_virtual_key_is_recorded_and_its_budget_reserved(pr: Polyroute) -> None:
    await pr.send(REQUEST, provider="openai", virtual_key="vk_1")
    stream = pr.send_stream(FOR_ANTHROPIC, provider="anthropic", virtual_key="vk_1")
    text = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
    assert text == "sent"
    await pr.ledger.flush()
    assert [r["virtual_key"] for r in await pr.ledger.run(rows)] == ["vk_1", "vk_1"]

    await pr.ledger.set_budget("key:vk_1", daily_usd=0.0)
    with pytest.raises(BudgetExceeded) as info:
        await pr.send(REQUEST, provider="openai", virtual_key="vk_1")
    assert info.value.scope == "key:vk_1"
    await pr.send(REQUEST, provider="openai", virtual_key="vk_2")  # another key: its own budget


async def test_complete_and_stream_are_wrappers_over_send(fleet: Fleet, pr: Polyroute) -> None:
    answer = await pr.complete("hi", system="sys", max_tokens=5, temperature=0.1, provider="openai")
    assert answer.content == "sent"
    body = fleet["openai"].last_request().body
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
    ]
    assert body["temperature"] == 0.1
    stream = pr.stream("hi", provider="anthropic")
    assert [e async for e in stream][-1].kind == "end"
    assert stream.target == Target("anthropic", fleet["anthropic"].models[0])
    assert stream.answer is not None and stream.cost_usd == stream.answer.cost_usd


async def test_models_routes_among_the_providers_serving_them(pr: Polyroute) -> None:
    answer = await pr.send(FOR_ANTHROPIC, models=["claude-haiku-4-5"])
    assert (answer.provider, answer.model) == ("anthropic", "claude-haiku-4-5")
    with pytest.raises(NoCandidateError, match="anthropic cannot take seed"):
        await pr.send(REQUEST, models=["claude-haiku-4-5"])
    with pytest.raises(NoCandidateError, match="no enabled provider matches models nope"):
        await pr.send(REQUEST, models=["nope"])


async def test_recent_keeps_the_last_decisions_bounded(pr: Polyroute) -> None:
    for _ in range(RECENT_DECISIONS + 5):
        await pr.send(REQUEST, provider="openai", virtual_key="vk_9")
    assert len(pr.recent) == RECENT_DECISIONS
    last = pr.recent[-1]
    assert (last.decision.provider, last.stream, last.virtual_key) == ("openai", False, "vk_9")
    pr.route("hi")  # a decision without a call is not recorded
    assert pr.recent[-1] is last


async def test_embed_falls_back_between_the_providers_serving_the_model(
    fleet: Fleet, pr: Polyroute
) -> None:
    request = EmbeddingRequest("text-embedding-3-small", ("a", "b"))
    done = await pr.embed(request, virtual_key="vk_e")
    assert done.target == Target("openai", "text-embedding-3-small")
    assert len(done.response.vectors) == 2
    await pr.ledger.flush()
    assert [r["virtual_key"] for r in await pr.ledger.run(rows)] == ["vk_e"]

    fleet["openai"].script.fail_always(500)
    with pytest.raises(AllProvidersFailedError) as info:
        await pr.embed(request)
    assert [(a.provider, a.ok) for a in info.value.attempts] == [("openai", False)] * 2
    with pytest.raises(NoCandidateError):
        await pr.embed(EmbeddingRequest("no-such-embedder", ("a",)))


async def test_a_stream_leaves_no_generator_for_the_event_loop_to_close(
    pr: Polyroute, left_to_the_loop: Callable[[], AbstractContextManager[list[str]]]
) -> None:
    """Read to its end or abandoned, a stream's layers (the meter, the provider's client, the
    SSE framing, the transport) are closed in turn, not left to the loop's finalizer."""
    with left_to_the_loop() as left:
        read = [e async for e in pr.stream("hi", provider="openai")]
        async with aclosing(pr.stream("hi", provider="anthropic").__aiter__()) as events:
            async for _ in events:
                break
    assert read[-1].kind == "end"
    assert left == []
