"""CircuitBreaker states on a fake clock, which failures count, and the retry delay's bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyroute.config import CircuitBreakerConfig
from polyroute.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    StreamInterruptedError,
    UnsupportedError,
)
from polyroute.router.breaker import Breakers, CircuitBreaker, counts_against_provider
from polyroute.router.retry import RetryPolicy, backoff_delay, is_transient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(
    clock: Clock, threshold: int = 3, reset: float = 30.0, probes: int = 1
) -> CircuitBreaker:
    return CircuitBreaker(threshold, reset, probes, clock)


# -- CircuitBreaker ----------------------------------------------------------------


def test_opens_after_n_consecutive_failures_only() -> None:
    b = breaker(Clock())
    b.failure()
    b.failure()
    b.success()  # the run is broken: start over
    b.failure()
    b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open"
    assert not b.allow()
    assert b.consecutive_failures == 3


def test_open_turns_half_open_after_the_reset_timeout_and_admits_exactly_the_probes() -> None:
    clock = Clock()
    b = breaker(clock, probes=2)
    for _ in range(3):
        b.failure()
    assert b.retry_in_s == pytest.approx(30.0)
    clock.now += 29.9
    assert b.state == "open" and not b.allow()
    assert b.retry_in_s == pytest.approx(0.1)
    clock.now += 0.1
    assert b.state == "half_open"
    assert b.retry_in_s == 0.0
    assert b.allow() and b.allow()
    assert not b.allow()  # both probes in flight


def test_probe_success_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 30
    assert b.allow()
    b.success()
    assert b.state == "closed"
    assert b.consecutive_failures == 0
    assert all(b.allow() for _ in range(10))


def test_probe_failure_reopens_and_restarts_the_timer() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 45
    assert b.allow()
    b.failure()
    assert b.state == "open"
    assert b.as_dict()["opened_at"] == 145.0
    assert b.retry_in_s == pytest.approx(30.0)
    clock.now += 29
    assert not b.allow()
    clock.now += 1
    assert b.allow()


def test_release_gives_back_the_probe_slot_without_changing_state() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 30
    assert b.allow()
    assert not b.allow()
    b.release()  # e.g. the probe was refused by a budget
    assert b.state == "half_open"
    assert b.allow()


def test_stale_reports_while_open_change_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 10
    b.failure()  # a call admitted before it opened
    b.success()
    assert b.state == "open"
    assert b.retry_in_s == pytest.approx(20.0)


def test_record_sorts_errors() -> None:
    b = breaker(Clock(), threshold=1)
    b.record(NotFoundError("no such model"))
    b.record(ContextLengthError("too long"))
    assert b.state == "closed" and b.consecutive_failures == 0
    b.record(AuthenticationError("bad key"))
    assert b.state == "open"


def test_as_dict_and_snapshot() -> None:
    clock = Clock()
    breakers = Breakers(
        CircuitBreakerConfig(failure_threshold=2, reset_timeout_s=10, half_open_requests=1), clock
    )
    assert breakers.get("openai") is breakers.get("openai")
    breakers.get("openai").failure()
    breakers.get("openai").failure()
    breakers.get("anthropic")
    clock.now += 4
    assert breakers.snapshot() == {
        "anthropic": {
            "state": "closed",
            "consecutive_failures": 0,
            "opened_at": None,
            "retry_in_s": 0.0,
        },
        "openai": {
            "state": "open",
            "consecutive_failures": 2,
            "opened_at": 100.0,
            "retry_in_s": 6.0,
        },
    }


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0, 1)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0.0, 1)


# -- which failures count, which are retried ---------------------------------------

PROVIDER_UNWELL = [
    InternalServerError("boom", status=500),
    OverloadedError("busy", status=529),
    RateLimitError("slow down", status=429),
    RequestTimeoutError("timeout", status=408),
    APIConnectionError("refused"),
    APITimeoutError("no answer"),
    StreamInterruptedError("cut"),
    AuthenticationError("bad key", status=401),
    PermissionDeniedError("forbidden", status=403),
    QuotaExceededError("no credit", status=429),
]
REQUESTS_FAULT = [
    BadRequestError("bad", status=400),
    NotFoundError("no model", status=404),
    ContextLengthError("too long", status=400),
    ContentFilterError("refused", status=400),
    UnsupportedError("no embeddings"),
]


@pytest.mark.parametrize("exc", PROVIDER_UNWELL, ids=lambda e: type(e).__name__)
def test_provider_failures_count(exc: ProviderError) -> None:
    assert counts_against_provider(exc)


@pytest.mark.parametrize("exc", REQUESTS_FAULT, ids=lambda e: type(e).__name__)
def test_a_requests_own_fault_does_not_count(exc: ProviderError) -> None:
    assert not counts_against_provider(exc)
    assert not is_transient(exc)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (InternalServerError("x", status=503), True),
        (OverloadedError("x", status=529), True),
        (RateLimitError("x", status=429), True),
        (QuotaExceededError("x", status=429), False),
        (APITimeoutError("x"), True),
        (AuthenticationError("x", status=401), False),
        (PermissionDeniedError("x", status=403), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_is_transient(exc: ProviderError, transient: bool) -> None:
    assert is_transient(exc) is transient


# -- retry delays -------------------------------------------------------------------


@given(
    retry=st.integers(0, 10_000),
    base=st.floats(0.0, 10.0),
    cap=st.floats(0.0, 60.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_delay_stays_within_the_cap(retry: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(retry, retry_after=None, base_s=base, cap_s=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= cap
    assert delay <= base * 2 ** min(retry, 60)


@given(
    retry=st.integers(0, 100),
    retry_after=st.floats(0.0, 1000.0),
    cap=st.floats(0.0, 60.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_delay_honours_retry_after(
    retry: int, retry_after: float, cap: float, seed: int
) -> None:
    delay = backoff_delay(retry, retry_after=retry_after, cap_s=cap, rng=random.Random(seed))
    assert delay >= retry_after
    assert delay <= max(cap, retry_after)


def test_backoff_is_jittered_and_grows() -> None:
    rng = random.Random(7)
    first = [backoff_delay(0, retry_after=None, rng=rng) for _ in range(200)]
    third = [backoff_delay(3, retry_after=None, rng=rng) for _ in range(200)]
    assert len(set(first)) > 100  # full jitter: spread out
    assert max(first) <= 0.5 < max(third) <= 4.0


def test_backoff_refuses_a_negative_retry() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, retry_after=None, rng=random.Random())


def test_policy_gives_up_on_long_retry_after_used_retries_and_permanent_errors() -> None:
    policy = RetryPolicy(retries_per_provider=2, max_retry_after_s=30.0)
    rng = random.Random(1)
    assert policy.delay(0, RateLimitError("x", retry_after=5.0), rng) == 5.0
    assert policy.delay(0, RateLimitError("x", retry_after=31.0), rng) is None
    assert policy.delay(1, InternalServerError("x"), rng) is not None
    assert policy.delay(2, InternalServerError("x"), rng) is None
    assert policy.delay(0, NotFoundError("x"), rng) is None
    assert RetryPolicy(retries_per_provider=0).delay(0, InternalServerError("x"), rng) is None


def test_blocked_lists_open_breakers_only_until_they_let_a_probe_through() -> None:
    clock = Clock()
    breakers = Breakers(
        CircuitBreakerConfig(failure_threshold=1, reset_timeout_s=10, half_open_requests=1), clock
    )
    assert breakers.blocked() == {}
    breakers.get("anthropic").success()
    breakers.get("openai").failure()
    assert breakers.blocked() == {"openai": "breaker open, retry in 10s"}
    clock.now += 10  # half-open: a probe may go, so the router may choose it
    assert breakers.blocked() == {}
    assert breakers.get("openai").allow()
    breakers.get("openai").failure()  # the probe failed: open again
    assert breakers.blocked() == {"openai": "breaker open, retry in 10s"}
    clock.now += 10
    breakers.get("openai").success()
    assert breakers.blocked() == {} and breakers._tripped == {}  # closed: no longer watched
