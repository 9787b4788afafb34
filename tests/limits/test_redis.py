"""Rate limits across replicas through a real Redis: one limit for every instance, tokens
settled there, and each instance on its own windows while Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.support import ADMIN, start
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import AllProvidersFailedError, ProviderLimitError, RateLimitedError
from polyroute.ledger import VirtualKey
from polyroute.ledger._keys import utc
from polyroute.limits import WINDOW_S, Limiter, Rate, RedisWindows
from polyroute.shared import Shared
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, Message
from servers.redis import RedisServer

REQUEST = ChatRequest("ignored", (Message.user("hi"),), max_tokens=20)
KEY = VirtualKey("vk_1", "ci", "sk-pr-aaaaaa", (), utc(0), rpm=4)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply="ok") as f:
        yield f


def replica(fleet: Fleet, redis_url: str, **openai: Any) -> Polyroute:
    settings = fleet.settings(
        storage={"url": "sqlite://", "redis_url": redis_url}, health={"interval_s": 0}
    )
    settings["providers"]["openai"].update(openai)
    return Polyroute(Config(validate(settings, "test"), "test", fleet.env()))


@pytest.fixture
async def two(fleet: Fleet, redis_url: str) -> AsyncIterator[tuple[Polyroute, Polyroute]]:
    a, b = replica(fleet, redis_url, rpm=3), replica(fleet, redis_url, rpm=3)
    assert isinstance(a.limits.shared, RedisWindows)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_two_instances_share_one_provider_rpm(fleet: Fleet, two: Any) -> None:
    a, b = two
    await a.send(REQUEST, provider="openai")
    await b.send(REQUEST, provider="openai")
    await a.send(REQUEST, provider="openai")
    for pr in (b, a):  # 3 across both: the fourth is refused wherever it goes
        with pytest.raises(AllProvidersFailedError) as caught:
            await pr.send(REQUEST, provider="openai")
        [error] = caught.value.errors
        assert isinstance(error, ProviderLimitError)
        assert error.retry_after is not None and 0 < error.retry_after <= WINDOW_S
    assert len(fleet["openai"].requests) == 3
    answer = await b.send(REQUEST)  # auto goes elsewhere
    assert answer.provider == "anthropic"


async def test_two_instances_share_one_keys_rpm(two: Any) -> None:
    a, b = two
    for pr in (a, b):
        pr.limits.know(KEY)
    for pr in (a, b, a, b):
        await pr.send(REQUEST, virtual_key=KEY.id, provider="anthropic")
    for pr in (a, b):
        with pytest.raises(RateLimitedError):
            await pr.send(REQUEST, virtual_key=KEY.id, provider="anthropic")


async def test_tokens_held_at_worst_case_are_settled_in_redis(redis_url: str) -> None:
    shared = Shared(redis_url)
    limiter = Limiter({"p": Rate(tpm=1000)}, shared=RedisWindows(shared))
    try:
        first = await limiter.admit("p", None, 600)
        with pytest.raises(ProviderLimitError) as caught:
            await limiter.admit("p", None, 600)
        assert caught.value.retry_after == pytest.approx(WINDOW_S, abs=1)
        first.settle(50)
        await limiter.aclose()  # the settlement has reached Redis
        await limiter.admit("p", None, 600)  # 50 + 600 fit in 1000
        with pytest.raises(ProviderLimitError):
            await limiter.admit("p", None, 400)
        never = Limiter({"p": Rate(tpm=100)}, shared=RedisWindows(shared))
        with pytest.raises(ProviderLimitError) as too_big:
            await never.admit("p", None, 101)
        assert too_big.value.retry_after is None
    finally:
        await shared.aclose()


async def test_released_holds_leave_the_shared_window(redis_url: str) -> None:
    shared = Shared(redis_url)
    limiter = Limiter({"p": Rate(rpm=1)}, shared=RedisWindows(shared))
    try:
        hold = await limiter.admit("p", None, 1)
        hold.release()  # a budget refused the call: no request was made
        await limiter.aclose()
        await limiter.admit("p", None, 1)
    finally:
        await shared.aclose()


async def test_with_redis_down_each_instance_limits_on_its_own() -> None:
    server = RedisServer()
    server.start()
    shared = Shared(server.url, timeout_s=0.2)
    limiter = Limiter({"p": Rate(rpm=2)}, shared=RedisWindows(shared))
    try:
        await limiter.admit("p", None, 1)
        server.kill()
        # the first call finds it down and is admitted locally; then local windows only
        await limiter.admit("p", None, 1)
        assert not shared.up
        await limiter.admit("p", None, 1)
        with pytest.raises(ProviderLimitError):
            await limiter.admit("p", None, 1)
    finally:
        await shared.aclose()
        server.remove()


def test_two_gateways_on_one_redis_hold_a_keys_rpm_together(
    fleet: Fleet, redis_url: str, tmp_path: Path
) -> None:
    storage = {"url": f"sqlite:///{tmp_path / 'ledger.db'}", "redis_url": redis_url}
    gateways = [start(fleet, admin_key=ADMIN, sections={"storage": storage}) for _ in range(2)]
    try:
        _, secret = asyncio.run(gateways[0].pr.ledger.create_key("team", rpm=3))
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        statuses = []
        for i in range(6):
            with gateways[i % 2].http(authorization=f"Bearer {secret}") as http:
                r = http.post("/v1/chat/completions", json=body)
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert 0 < int(r.headers["retry-after"]) <= WINDOW_S
                    assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert statuses == [200, 200, 200, 429, 429, 429]
    finally:
        for g in gateways:
            g.server.stop()


async def test_thousands_of_entries_age_out_in_one_admission(redis_url: str) -> None:
    shared = Shared(redis_url)
    windows = RedisWindows(shared)
    try:
        scopes = [("provider:p", Rate(rpm=20_000))]
        for i in range(10_000):
            assert await windows.admit(scopes, 1, f"h{i}") is None
        # age them all: move their times a window back, as if the scope had been idle
        redis = shared.redis
        assert redis is not None
        log = shared.key("rl", "provider:p", "log")
        await redis.zadd(log, {f"h{i}": 0 for i in range(10_000)})
        assert await windows.admit(scopes, 1, "last") is None
        assert await redis.zcard(log) == 1
        assert await redis.get(shared.key("rl", "provider:p", "sum")) == "1"
    finally:
        await shared.aclose()
