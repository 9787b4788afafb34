"""The one attempt primitive: admission, each ending told to the breaker once, stale tickets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from polyroute.errors import BudgetExceeded, InternalServerError, NotFoundError, ProviderError
from polyroute.router.attempt import Call, Failed, Served, admit
from polyroute.router.breaker import CircuitBreaker
from polyroute.types import Attempt, Target

TARGET = Target("openai", "gpt-4o-mini")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Done:
    latency_ms: float


def refusal() -> BudgetExceeded:
    return BudgetExceeded(
        scope="global",
        period="daily",
        limit_usd=1.0,
        spent_usd=1.0,
        reserved_usd=0.0,
        requested_usd=0.1,
    )


async def answer(latency_ms: float) -> Done:
    return Done(latency_ms)


async def fail(exc: ProviderError | BudgetExceeded) -> Done:
    raise exc


def opened(clock: Clock) -> CircuitBreaker:
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=30, half_open_requests=1, clock=clock)
    b.failure()
    return b


def admitted(target: Target, breaker: CircuitBreaker, seen: list[Attempt]) -> Call:
    call = admit(target, breaker, lambda a, _: seen.append(a))
    assert isinstance(call, Call)
    return call


async def test_settle_ends_each_way_with_the_same_attempts_as_the_executor() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=Clock())
    seen: list[Attempt] = []
    ok = await admitted(TARGET, breaker, seen).settle(answer(12.5))
    assert isinstance(ok, Served) and ok.done == Done(12.5)
    assert ok.attempt == Attempt("openai", "gpt-4o-mini", True, 12.5)

    refused = await admitted(TARGET, breaker, seen).settle(fail(refusal()))
    assert isinstance(refused, Failed) and isinstance(refused.error, BudgetExceeded)
    assert refused.attempt.error_type == "budget_exceeded" and refused.attempt.latency_ms == 0.0
    assert (refused.attempt.error or "").startswith("daily budget for global")

    # a request's own fault does not count against the provider; a 5xx does
    await admitted(TARGET, breaker, seen).settle(fail(NotFoundError("no model", provider="x")))
    assert breaker.consecutive_failures == 0
    failed = await admitted(TARGET, breaker, seen).settle(
        fail(InternalServerError("boom", provider="openai", status=500))
    )
    assert isinstance(failed, Failed)
    assert (
        failed.attempt.error == "HTTP 500 boom" and failed.attempt.error_type == "internal_server"
    )
    assert breaker.consecutive_failures == 1
    assert [a.ok for a in seen] == [True, False, False, False]


async def test_a_cancelled_call_is_abandoned_reported_and_propagates() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    seen: list[Attempt] = []
    call = admitted(TARGET, breaker, seen)  # the half-open probe
    task = asyncio.create_task(call.settle(asyncio.sleep(60, Done(1.0))))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [call.attempt] and seen[0].error_type == "cancelled"
    assert breaker.state == "half_open" and breaker.allow()  # its slot was given back


def test_an_attempt_ends_once() -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=Clock())
    seen: list[Attempt] = []
    call = admitted(TARGET, breaker, seen)
    with call:
        call.served(5.0)
    # an error after the end (a stream's trailing junk) neither reports nor opens the breaker
    assert call.failed(InternalServerError("late", status=500)).ok
    assert len(seen) == 1 and breaker.state == "closed"


def test_a_refused_admission_is_the_executors_breaker_open_attempt() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 10
    seen: list[Attempt] = []
    skipped = admit(TARGET, breaker, lambda a, _: seen.append(a))
    assert skipped == Attempt(
        "openai", "gpt-4o-mini", False, 0.0, "circuit breaker open, retry in 20s", "breaker_open"
    )
    assert seen == [skipped]
    clock.now += 20
    assert isinstance(admit(TARGET, breaker), Call)  # the probe
    assert admit(TARGET, breaker) == Attempt(
        "openai",
        "gpt-4o-mini",
        False,
        0.0,
        "circuit breaker half-open, its probe is in flight",
        "breaker_open",
    )


@pytest.mark.parametrize("ending", ["abandoned", "refused", "request_fault", "failed", "served"])
def test_a_call_admitted_before_the_breaker_opened_cannot_touch_the_probe(ending: str) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=30, clock=clock)
    seen: list[Attempt] = []
    stale = admitted(TARGET, breaker, seen)  # in flight while the breaker opens
    breaker.failure()
    clock.now += 30
    probe = admitted(TARGET, breaker, seen)
    if ending == "abandoned":
        stale.abandoned()
    elif ending == "refused":
        stale.failed(refusal())
    elif ending == "request_fault":
        stale.failed(NotFoundError("no such model"))
    elif ending == "failed":
        stale.failed(InternalServerError("boom", status=500))
    else:
        stale.served(1.0)
    # the probe's slot is still taken and the breaker still waits for the probe
    assert breaker.state == "half_open" and not breaker.allow()
    probe.served(2.0)
    assert breaker.state == "closed"


def test_tickets_on_the_breaker_itself() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=30, clock=clock)
    old = breaker.admit()
    assert old is not None
    breaker.failure(old)
    clock.now += 30
    probe = breaker.admit()
    assert probe is not None and probe != old
    breaker.release(old)  # stale: the probe's slot stays taken
    assert breaker.admit() is None
    breaker.failure(old)  # stale: does not reopen
    assert breaker.state == "half_open"
    breaker.release(probe)
    assert breaker.admit() == probe  # the slot given back by its own call
    breaker.release()  # a report without a ticket keeps the old rule
    assert breaker.admit() is not None
