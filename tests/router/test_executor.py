"""Executor on simulated vendors: retries, fallback, breakers, budgets, streams and the ledger."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from polyroute.cli._common import exit_code
from polyroute.client import Polyroute
from polyroute.config import CircuitBreakerConfig, Config, validate
from polyroute.errors import (
    AllProvidersFailedError,
    BudgetExceeded,
    ProviderError,
    StreamInterruptedError,
)
from polyroute.events import StreamEnd, StreamEvent, StreamStart, TextDelta
from polyroute.router.breaker import Breakers
from polyroute.router.decision import Decision, Target
from polyroute.router.executor import Executor
from polyroute.router.retry import RetryPolicy
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, Message

OPENAI = Target("openai", "gpt-4o-mini")
ANTHROPIC = Target("anthropic", "claude-sonnet-4-6")
DECISION = Decision("test", OPENAI.provider, OPENAI.model, "test", None, fallbacks=(ANTHROPIC,))
REQUEST = ChatRequest("", (Message.user("What is routing?"),), max_tokens=100)
OPENAI_REPLY = "Simulated openai reply from gpt-4o-mini."
ANTHROPIC_REPLY = "Simulated anthropic reply from claude-sonnet-4-6."


class FakeTime:
    """A clock for the breakers and a sleep that only advances it, recording each delay."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Stats:
    """Stands in for LatencyStats: records what it is told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float, float | None]] = []

    def record(
        self, provider: str, model: str, latency_ms: float, ttft_ms: float | None = None
    ) -> None:
        self.seen.append((provider, model, latency_ms, ttft_ms))


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic")) as f:
        yield f


def polyroute(fleet: Fleet, **sections: Any) -> Polyroute:
    settings = fleet.settings(storage={"url": "sqlite://"}, **sections)
    return Polyroute(Config(validate(settings, "test"), "test", fleet.env()))


@pytest.fixture
async def pr(fleet: Fleet) -> AsyncIterator[Polyroute]:
    p = polyroute(fleet)
    yield p
    await p.aclose()


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def executor(
    pr: Polyroute,
    clock: FakeTime,
    *,
    retries: int = 1,
    max_attempts: int = 4,
    threshold: int = 5,
    reset_s: float = 60.0,
    stats: Any = None,
    sleep: Any = None,
) -> Executor:
    breakers = Breakers(
        CircuitBreakerConfig(
            failure_threshold=threshold, reset_timeout_s=reset_s, half_open_requests=1
        ),
        clock,
    )
    return Executor(
        pr.client,
        pr.meter,
        breakers,
        stats,
        RetryPolicy(retries_per_provider=retries),
        max_attempts=max_attempts,
        sleep=sleep or clock.sleep,
        rng=random.Random(0),
    )


def outcomes(attempts: Any) -> list[tuple[str, bool, str | None]]:
    return [(a.provider, a.ok, a.error_type) for a in attempts]


async def drain(stream: AsyncIterator[StreamEvent]) -> tuple[list[StreamEvent], str]:
    events = [e async for e in stream]
    return events, "".join(e.text for e in events if isinstance(e, TextDelta))


# -- complete: retries and fallback ------------------------------------------------


async def test_sticky_500_is_retried_per_policy_then_the_fallback_answers(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.fail_always(500)
    stats = Stats()
    done = await executor(pr, clock, retries=1, stats=stats).complete(DECISION, REQUEST)

    assert done.response.content == ANTHROPIC_REPLY
    assert done.target == ANTHROPIC
    assert fleet["openai"].calls == 2  # the call and one retry
    assert fleet["anthropic"].calls == 1
    assert outcomes(done.attempts) == [
        ("openai", False, "internal_server"),
        ("openai", False, "internal_server"),
        ("anthropic", True, None),
    ]
    assert "HTTP 500" in (done.attempts[0].error or "")
    assert not (done.attempts[0].error or "").startswith("openai:")  # the attempt names it
    assert len(clock.sleeps) == 1 and 0.0 <= clock.sleeps[0] <= 0.5
    assert [(p, m) for p, m, _, _ in stats.seen] == [("anthropic", ANTHROPIC.model)]
    assert done.cost_usd is not None and done.cost_usd > 0


async def test_429_retry_after_is_honoured(fleet: Fleet, pr: Polyroute, clock: FakeTime) -> None:
    fleet["openai"].script.fail_next(1, 429, retry_after=1)
    done = await executor(pr, clock).complete(DECISION, REQUEST)

    assert done.target == OPENAI
    assert clock.sleeps and clock.sleeps[0] >= 1.0
    assert outcomes(done.attempts) == [("openai", False, "rate_limit"), ("openai", True, None)]
    assert fleet["anthropic"].calls == 0


async def test_429_retry_after_waits_in_real_time(fleet: Fleet, pr: Polyroute) -> None:
    fleet["openai"].script.fail_next(1, 429, retry_after=1)
    ex = executor(pr, FakeTime(), sleep=asyncio.sleep)
    start = time.monotonic()
    done = await ex.complete(DECISION, REQUEST)
    assert time.monotonic() - start >= 1.0
    assert done.target == OPENAI and fleet["openai"].calls == 2


async def test_retry_after_beyond_the_policy_falls_back_now(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.fail_next(1, 429, retry_after=120)
    done = await executor(pr, clock).complete(DECISION, REQUEST)
    assert done.target == ANTHROPIC
    assert clock.sleeps == []
    assert fleet["openai"].calls == 1


async def test_a_timeout_is_retried(fleet: Fleet, clock: FakeTime) -> None:
    settings = fleet.settings(storage={"url": "sqlite://"})
    settings["providers"]["openai"]["timeout_s"] = 0.2
    fleet["openai"].script.hang_next(1.0)
    async with Polyroute(Config(validate(settings, "test"), "test", fleet.env())) as pr:
        done = await executor(pr, clock).complete(DECISION, REQUEST)
    assert done.target == OPENAI
    assert outcomes(done.attempts) == [("openai", False, "api_timeout"), ("openai", True, None)]


@pytest.mark.parametrize(("status", "kind"), [(401, "authentication"), (404, "not_found")])
async def test_provider_specific_failures_fall_back_at_once(
    fleet: Fleet, pr: Polyroute, clock: FakeTime, status: int, kind: str
) -> None:
    fleet["openai"].script.fail_next(1, status)
    ex = executor(pr, clock, retries=3)
    done = await ex.complete(DECISION, REQUEST)

    assert fleet["openai"].calls == 1  # no retry
    assert clock.sleeps == []
    assert outcomes(done.attempts) == [("openai", False, kind), ("anthropic", True, None)]
    # a bad key says the provider is unusable; an unknown model is this request's fault
    assert ex.breakers.get("openai").consecutive_failures == (1 if status == 401 else 0)


async def test_all_providers_down_lists_every_attempt(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.fail_always(500)
    fleet["anthropic"].script.fail_always(503)
    with pytest.raises(AllProvidersFailedError) as info:
        await executor(pr, clock, retries=1).complete(DECISION, REQUEST)

    err = info.value
    assert outcomes(err.attempts) == [
        ("openai", False, "internal_server"),
        ("openai", False, "internal_server"),
        ("anthropic", False, "internal_server"),
        ("anthropic", False, "internal_server"),
    ]
    message = str(err)
    assert message.startswith("no provider could serve the request: ")
    parts = message.removeprefix("no provider could serve the request: ").split("; ")
    assert len(parts) == 4
    assert parts[0].startswith("openai/gpt-4o-mini: HTTP 500")
    assert parts[3].startswith("anthropic/claude-sonnet-4-6: HTTP 503")
    assert isinstance(err, ProviderError)
    assert err.type == "all_providers_failed"
    assert exit_code(err) == 4


async def test_max_attempts_bounds_the_targets_tried(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.fail_always(500)
    with pytest.raises(AllProvidersFailedError) as info:
        await executor(pr, clock, retries=0, max_attempts=1).complete(DECISION, REQUEST)
    assert outcomes(info.value.attempts) == [("openai", False, "internal_server")]
    assert fleet["anthropic"].calls == 0


# -- streams -------------------------------------------------------------------------


async def test_stream_cut_before_its_first_token_falls_over_transparently(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.cut_stream(after_chunks=0)
    stats = Stats()
    stream = executor(pr, clock, retries=0, stats=stats).stream(DECISION, REQUEST)
    events, text = await drain(stream)

    starts = [e for e in events if isinstance(e, StreamStart)]
    assert len(starts) == 1 and events[0] is starts[0]
    assert starts[0].model.startswith("claude-sonnet-4-6")
    assert text == ANTHROPIC_REPLY
    assert isinstance(events[-1], StreamEnd)
    assert stream.target == ANTHROPIC
    assert outcomes(stream.attempts) == [
        ("openai", False, "stream_interrupted"),
        ("anthropic", True, None),
    ]
    assert stream.cost_usd is not None and stream.cost_usd > 0
    assert len(stats.seen) == 1 and stats.seen[0][3] is not None  # with a time to first token


async def test_stream_cut_before_content_is_retried_on_the_same_target(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.cut_stream(after_chunks=0, abort=True)
    stream = executor(pr, clock, retries=1).stream(DECISION, REQUEST)
    events, text = await drain(stream)
    assert sum(isinstance(e, StreamStart) for e in events) == 1
    assert text == OPENAI_REPLY
    assert fleet["openai"].calls == 2 and fleet["anthropic"].calls == 0
    assert [a.ok for a in stream.attempts] == [False, True]


@pytest.mark.parametrize("abort", [False, True])
async def test_stream_cut_after_tokens_raises_after_the_delivered_text(
    fleet: Fleet, pr: Polyroute, clock: FakeTime, abort: bool
) -> None:
    fleet["openai"].script.cut_stream(after_chunks=2, abort=abort)
    stream = executor(pr, clock, retries=3).stream(DECISION, REQUEST)
    received: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in stream:
            received.append(event)

    if not abort:
        assert isinstance(info.value, StreamInterruptedError)
    text = "".join(e.text for e in received if isinstance(e, TextDelta))
    assert text and OPENAI_REPLY.startswith(text) and text != OPENAI_REPLY
    assert not any(isinstance(e, StreamEnd) for e in received)  # never a clean end
    assert fleet["openai"].calls == 1 and fleet["anthropic"].calls == 0  # no retry, no fallback
    assert stream.target == OPENAI
    assert [a.ok for a in stream.attempts] == [False]


async def test_stream_consumer_stopping_early_records_a_cancelled_attempt(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    ex = executor(pr, clock)
    stream = ex.stream(DECISION, REQUEST)
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    assert outcomes(stream.attempts) == [("openai", False, "cancelled")]
    assert ex.breakers.get("openai").consecutive_failures == 0
    report = await pr.usage(by="provider")
    assert [(r.key, r.requests, r.failed) for r in report.rows] == [("openai", 1, 1)]


async def test_stream_all_down_raises_all_providers_failed(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.fail_always(500)
    fleet["anthropic"].script.fail_always(401)
    stream = executor(pr, clock, retries=0).stream(DECISION, REQUEST)
    with pytest.raises(AllProvidersFailedError) as info:
        await drain(stream)
    assert outcomes(info.value.attempts) == [
        ("openai", False, "internal_server"),
        ("anthropic", False, "authentication"),
    ]


# -- circuit breaker through the executor ------------------------------------------------


async def test_breaker_opens_then_blocks_traffic_until_one_probe(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    primary = fleet["openai"]
    primary.script.fail_always(500)
    ex = executor(pr, clock, retries=0, threshold=3, reset_s=30.0)

    for _ in range(3):
        done = await ex.complete(DECISION, REQUEST)
        assert done.target == ANTHROPIC
    assert primary.calls == 3
    assert ex.breakers.get("openai").state == "open"

    # open: the provider gets no traffic at all
    done = await ex.complete(DECISION, REQUEST)
    assert primary.calls == 3
    assert outcomes(done.attempts) == [("openai", False, "breaker_open"), ("anthropic", True, None)]
    assert done.attempts[0].error == "circuit breaker open, retry in 30s"
    assert done.attempts[0].latency_ms == 0
    clock.now += 29.5
    await ex.complete(DECISION, REQUEST)
    assert primary.calls == 3

    # half-open: exactly one probe, which fails and re-opens the breaker
    clock.now += 0.5
    await ex.complete(DECISION, REQUEST)
    assert primary.calls == 4
    assert ex.breakers.get("openai").state == "open"
    await ex.complete(DECISION, REQUEST)
    assert primary.calls == 4

    # half-open again: two requests at once, only one probes; its success closes the breaker
    primary.script.recover()
    primary.script.latency_s = 0.2
    clock.now += 30
    first, second = await asyncio.gather(
        ex.complete(DECISION, REQUEST), ex.complete(DECISION, REQUEST)
    )
    assert primary.calls == 5
    assert {first.target, second.target} == {OPENAI, ANTHROPIC}
    assert ex.breakers.get("openai").state == "closed"
    assert ex.breakers.snapshot()["openai"]["consecutive_failures"] == 0
    primary.script.latency_s = 0.0
    done = await ex.complete(DECISION, REQUEST)
    assert done.target == OPENAI and primary.calls == 6


async def test_breaker_opened_by_a_retry_stops_the_retries(
    fleet: Fleet, pr: Polyroute, clock: FakeTime
) -> None:
    fleet["openai"].script.fail_always(500)
    ex = executor(pr, clock, retries=5, threshold=2)
    done = await ex.complete(DECISION, REQUEST)
    assert fleet["openai"].calls == 2
    assert done.target == ANTHROPIC
    assert len(clock.sleeps) == 1


# -- budgets ----------------------------------------------------------------------------


async def test_budget_refusal_falls_back_to_the_next_target(fleet: Fleet, clock: FakeTime) -> None:
    settings = fleet.settings(storage={"url": "sqlite://"})
    settings["providers"]["openai"]["budget"] = {"daily_usd": 0.0}
    async with Polyroute(Config(validate(settings, "test"), "test", fleet.env())) as pr:
        ex = executor(pr, clock)
        done = await ex.complete(DECISION, REQUEST)
        assert done.target == ANTHROPIC
        assert fleet["openai"].calls == 0
        assert outcomes(done.attempts) == [
            ("openai", False, "budget_exceeded"),
            ("anthropic", True, None),
        ]
        assert ex.breakers.get("openai").consecutive_failures == 0


async def test_every_target_refused_by_budgets_raises_budget_exceeded(
    fleet: Fleet, clock: FakeTime
) -> None:
    async with polyroute(fleet, budget={"daily_usd": 0.0}) as pr:
        ex = executor(pr, clock)
        with pytest.raises(BudgetExceeded) as info:
            await ex.complete(DECISION, REQUEST)
        assert info.value.model == OPENAI.model  # the first refusal
        assert exit_code(info.value) == 3
        with pytest.raises(BudgetExceeded):
            await drain(ex.stream(DECISION, REQUEST))
    assert fleet["openai"].calls == 0 and fleet["anthropic"].calls == 0


# -- the ledger ---------------------------------------------------------------------------


async def test_every_attempt_is_in_the_ledger(fleet: Fleet, pr: Polyroute, clock: FakeTime) -> None:
    fleet["openai"].script.fail_always(500)
    ex = executor(pr, clock, retries=1)
    done = await ex.complete(DECISION, REQUEST)
    fleet["anthropic"].script.fail_next(1, 429)
    fleet["openai"].script.recover().cut_stream(after_chunks=0, n=2)
    stream = ex.stream(DECISION, REQUEST)
    _, text = await drain(stream)
    assert text == ANTHROPIC_REPLY

    attempts = [*done.attempts, *stream.attempts]
    report = await pr.usage(by="provider")
    rows = {r.key: (r.requests, r.failed) for r in report.rows}
    expected: dict[str, tuple[int, int]] = {}
    for a in attempts:
        n, failed = expected.get(a.provider, (0, 0))
        expected[a.provider] = (n + 1, failed + (not a.ok))
    assert rows == expected == {"openai": (4, 4), "anthropic": (3, 1)}
    assert rows["openai"][0] == fleet["openai"].calls
    assert rows["anthropic"][0] == fleet["anthropic"].calls
