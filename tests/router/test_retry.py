"""A retry never waits past the request's timeout (a vendor's retry-after included)."""

from __future__ import annotations

import random

import pytest

from polyroute.client import Polyroute
from polyroute.config import CircuitBreakerConfig, Config, validate
from polyroute.errors import AllProvidersFailedError, RateLimitError
from polyroute.router.breaker import Breakers
from polyroute.router.decision import Decision
from polyroute.router.executor import Executor
from polyroute.router.retry import RetryPolicy
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, Message, Target

OPENAI = Target("openai", "gpt-4o-mini")
ANTHROPIC = Target("anthropic", "claude-sonnet-4-6")
REQUEST = ChatRequest("", (Message.user("What is routing?"),), max_tokens=100)


def limited(retry_after: float) -> RateLimitError:
    return RateLimitError("slow down", provider="openai", status=429, retry_after=retry_after)


def test_the_policy_does_not_wait_past_the_time_left() -> None:
    policy, rng = RetryPolicy(retries_per_provider=2), random.Random(0)
    assert policy.delay(0, limited(30), rng, time_left_s=2.0) is None
    why = policy.no_wait_reason(limited(30), 2.0)
    assert why == "retry-after 30s is past the request's timeout (2.0s left)"
    assert policy.delay(0, limited(1), rng, time_left_s=2.0) == 1.0
    assert policy.no_wait_reason(limited(1), 2.0) is None
    assert policy.delay(0, limited(30), rng) == 30.0  # no deadline given: the policy's cap only
    backoff = RetryPolicy(base_s=10.0, cap_s=10.0)
    assert all(backoff.delay(0, limited(0), rng, time_left_s=0.5) <= 0.5 for _ in range(50))  # type: ignore[operator]


class Sleeps:
    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


@pytest.mark.parametrize("fallback", [True, False])
async def test_a_retry_after_past_the_timeout_falls_back_at_once(fallback: bool) -> None:
    with Fleet(("openai", "anthropic")) as fleet:
        settings = fleet.settings(storage={"url": "sqlite://"})
        settings["providers"]["openai"]["timeout_s"] = 2
        fleet["openai"].script.fail_next(1, 429, retry_after=30)
        async with Polyroute(Config(validate(settings, "test"), "test", fleet.env())) as pr:
            sleeps = Sleeps()
            ex = Executor(
                pr.client,
                pr.meter,
                Breakers(CircuitBreakerConfig()),
                None,
                RetryPolicy(retries_per_provider=1),
                max_attempts=4,
                sleep=sleeps,
                rng=random.Random(0),
            )
            fallbacks = (ANTHROPIC,) if fallback else ()
            decision = Decision("test", OPENAI.provider, OPENAI.model, "t", None, fallbacks)
            if fallback:
                done = await ex.complete(decision, REQUEST)
                assert done.target == ANTHROPIC
                attempts = done.attempts
            else:
                with pytest.raises(AllProvidersFailedError) as caught:
                    await ex.complete(decision, REQUEST)
                attempts = caught.value.attempts
        assert sleeps.asked == []  # not waited: 30 s is past the 2 s timeout
        assert fleet["openai"].calls == 1
        first = attempts[0]
        assert first.provider == "openai" and not first.ok
        assert "retry-after 30s is past the request's timeout" in (first.error or "")
