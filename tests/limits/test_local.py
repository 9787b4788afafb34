"""Rate limits in one process: the sliding window, holds settled like money, a provider's
limit routed around (a pin to it refused with when to retry), and a key's limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import (
    AllProvidersFailedError,
    BudgetExceeded,
    ConfigError,
    ProviderLimitError,
    RateLimitedError,
)
from polyroute.ledger import Ledger, VirtualKey, _meter
from polyroute.ledger._keys import utc
from polyroute.limits import WINDOW_S, Limiter, LocalWindows, Rate
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, Message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the window ------------------------------------------------------------------------


def test_rpm_refuses_the_n_plus_first_until_the_oldest_ages_out() -> None:
    clock = Clock()
    w = LocalWindows(clock)
    scopes = [("key:k", Rate(rpm=3))]
    for i in range(3):
        assert w.admit(scopes, 10, f"h{i}") is None
        clock.now += 5
    refused = w.admit(scopes, 10, "h3")
    assert refused is not None
    assert (refused.limit, refused.per_minute) == ("rpm", 3)
    assert refused.retry_after == pytest.approx(WINDOW_S - 15)  # the first went in 15 s ago
    clock.now += refused.retry_after
    assert w.admit(scopes, 10, "h3") is None


def test_tpm_holds_the_worst_case_and_settling_makes_room() -> None:
    clock = Clock()
    w = LocalWindows(clock)
    scopes = [("provider:p", Rate(tpm=1000))]
    assert w.admit(scopes, 600, "a") is None
    refused = w.admit(scopes, 600, "b")  # 600 + 600 > 1000 while "a" holds its worst case
    assert refused is not None and refused.limit == "tpm"
    assert refused.retry_after == pytest.approx(WINDOW_S)
    w.settle(["provider:p"], "a", 50)  # it used 50: the other 550 come back at once
    assert w.admit(scopes, 600, "b") is None
    assert w.admit(scopes, 400, "c") is not None  # 50 + 600 + 400 > 1000


def test_a_request_over_tpm_alone_is_never_admitted_and_says_so() -> None:
    w = LocalWindows(Clock())
    refused = w.admit([("key:k", Rate(tpm=100))], 101, "a")
    assert refused is not None and refused.retry_after is None


def test_admission_is_all_or_nothing_and_release_takes_the_entry_back() -> None:
    clock = Clock()
    w = LocalWindows(clock)
    key, provider = ("key:k", Rate(rpm=5)), ("provider:p", Rate(rpm=1))
    assert w.admit([key, provider], 1, "a") is None
    assert w.admit([key, provider], 1, "b") is not None  # the provider's limit
    # "b" took no room in the key's window: 4 more fit there
    for h in "cdef":
        assert w.admit([key], 1, h) is None
    assert w.admit([key], 1, "g") is not None
    w.settle(["key:k", "provider:p"], "a", None)  # "a" made no call after all
    assert w.admit([key, provider], 1, "g") is None


# -- the facade ------------------------------------------------------------------------

REQUEST = ChatRequest("ignored", (Message.user("hi"),), max_tokens=20)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply="ok") as f:
        yield f


async def make(fleet: Fleet, **limits: dict[str, int]) -> Polyroute:
    settings = fleet.settings(storage={"url": "sqlite://"}, health={"interval_s": 0})
    for pid, rate in limits.items():
        settings["providers"][pid].update(rate)
    p = Polyroute(Config(validate(settings, "test"), "test", fleet.env()))

    async def no_sleep(_: float) -> None:
        return None

    p.executor.sleep = no_sleep
    return p


@pytest.fixture
async def pr(fleet: Fleet) -> AsyncIterator[Polyroute]:
    p = await make(fleet, openai={"rpm": 1})
    yield p
    await p.aclose()


async def test_a_provider_at_its_rpm_is_routed_around_with_the_reason(
    fleet: Fleet, pr: Polyroute
) -> None:
    first = await pr.send(REQUEST, provider="openai")
    assert first.provider == "openai"
    # the executor meets the limit at the attempt and falls back at once, no call made
    answer = await pr.send(REQUEST, models=("gpt-4o-mini", fleet["anthropic"].models[0]))
    assert answer.provider == "anthropic"
    assert [a.error_type for a in answer.attempts] == ["provider_limit", None]
    assert len(fleet["openai"].requests) == 1
    # from then on routing leaves it out, saying why
    again = await pr.send(REQUEST)
    assert again.provider == "anthropic"
    reasons = {e.reason for e in again.decision.excluded if e.provider == "openai"}
    assert reasons and all(r.startswith("rate limit rpm 1 reached, retry in") for r in reasons)


async def test_a_pin_to_a_limited_provider_is_refused_with_retry_after(pr: Polyroute) -> None:
    await pr.send(REQUEST, provider="openai")
    with pytest.raises(AllProvidersFailedError) as caught:
        await pr.send(REQUEST, provider="openai")
    [error] = caught.value.errors
    assert isinstance(error, ProviderLimitError)
    assert error.retry_after is not None and 55 < error.retry_after <= WINDOW_S
    assert "rate limit rpm 1 of provider:openai reached" in str(error)


async def test_tpm_settles_to_the_usage_so_small_answers_admit_more(fleet: Fleet) -> None:
    # the worst case of REQUEST: its prompt bound + 20 output tokens, well under 60; the
    # simulator answers with a few tokens, so settled holds leave room for many
    pr = await make(fleet, openai={"tpm": 60})
    try:
        for _ in range(6):
            answer = await pr.send(REQUEST, provider="openai")
            assert answer.usage.total_tokens < 15
        with pytest.raises(AllProvidersFailedError):  # worst case held, never settled: 2 fit
            await pr.send(replace(REQUEST, max_tokens=50), provider="openai")
    finally:
        await pr.aclose()


async def test_a_key_at_its_rpm_is_refused_without_fallback(fleet: Fleet) -> None:
    pr = await make(fleet)
    try:
        # a library caller billing a key: its limits are read from the ledger, once
        key, _ = await pr.ledger.create_key("ci", rpm=2)
        other, _ = await pr.ledger.create_key("free")
        for _ in range(2):
            await pr.send(REQUEST, virtual_key=key.id)
        with pytest.raises(RateLimitedError) as caught:
            await pr.send(REQUEST, virtual_key=key.id)
        assert caught.value.retry_after is not None and caught.value.retry_after > 55
        assert f"rate limit rpm 2 of key:{key.id} reached" in str(caught.value)
        await pr.send(REQUEST, virtual_key=other.id)  # other keys, and no key, are not held
        await pr.send(REQUEST)
        assert sum(len(s.requests) for s in fleet.sims.values()) == 4
        assert pr.limits.keys == {key.id: Rate(rpm=2), other.id: Rate()}
        assert not pr.limits.applies("openai", other.id)  # known now: no admission at all
        # the gateway hands over the keys it verifies, so it never looks one up
        pr.limits.know(VirtualKey("vk_1", "ci", "sk-pr-aaaaaa", (), utc(0), tpm=5))
        with pytest.raises(RateLimitedError, match="can never admit"):
            await pr.send(REQUEST, virtual_key="vk_1")
    finally:
        await pr.aclose()


async def test_no_limit_configured_means_no_admission() -> None:
    limiter = Limiter({"openai": Rate(), "anthropic": Rate(rpm=0, tpm=0)})
    assert limiter.providers == {}
    assert not limiter.applies("openai", None) and not limiter.applies("openai", "vk_1")
    assert await limiter.admit("openai", "vk_1", 10) is None
    assert limiter.blocked() == {}


@pytest.mark.parametrize(("field", "value"), [("rpm", -1), ("tpm", "many"), ("rpm", 1.5)])
def test_a_bad_provider_limit_is_a_config_error_naming_it(
    fleet: Fleet, field: str, value: object
) -> None:
    settings = fleet.settings()
    settings["providers"]["openai"][field] = value
    with pytest.raises(ConfigError, match=rf"providers\.openai\.{field}"):
        validate(settings, "polyroute.toml")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
async def test_a_keys_limits_are_stored_with_it(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        str(request.getfixturevalue("postgres_url"))
        if dialect == "postgresql"
        else f"sqlite:///{tmp_path}/l.db"
    )
    ledger = Ledger(url)
    try:
        key, secret = await ledger.create_key("ci", rpm=60, tpm=90_000)
        assert (key.rpm, key.tpm) == (60, 90_000)
        found = await ledger.verify_key(secret)
        assert found is not None and (found.rpm, found.tpm) == (60, 90_000)
        plain, _ = await ledger.create_key("plain")
        listed = {k.id: k for k in await ledger.keys()}
        assert (listed[plain.id].rpm, listed[plain.id].tpm) == (None, None)
    finally:
        await ledger.aclose()


async def test_a_stream_is_admitted_and_settled_like_a_call(fleet: Fleet) -> None:
    pr = await make(fleet)
    try:
        key, _ = await pr.ledger.create_key("ci", rpm=1)
        async for _ in pr.send_stream(REQUEST, virtual_key=key.id, provider="openai"):
            pass
        with pytest.raises(RateLimitedError):
            async for _ in pr.send_stream(REQUEST, virtual_key=key.id, provider="openai"):
                pass
        assert len(fleet["openai"].requests) == 1
    finally:
        await pr.aclose()


async def test_a_budget_refusal_gives_the_admission_back(fleet: Fleet) -> None:
    pr = await make(fleet, openai={"rpm": 1})
    try:
        await pr.ledger.set_budget("provider:openai", daily_usd=0.0)
        with pytest.raises(BudgetExceeded):
            await pr.send(REQUEST, provider="openai")
        # no call was made, so the window is still empty: its one request admits
        hold = await pr.limits.admit("openai", None, 1)
        assert hold is not None
    finally:
        await pr.aclose()


async def test_a_failure_pricing_or_holding_the_worst_case_leaves_nothing_admitted(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pr = await make(fleet, openai={"rpm": 1})

    def broken(*_: object) -> float:
        raise ValueError("a catalog entry that cannot be priced")

    try:
        with monkeypatch.context() as m:  # priced before the rate limit admits the call
            m.setattr(_meter, "worst_case", broken)
            with pytest.raises(ValueError, match="cannot be priced"):
                await pr.send(REQUEST, provider="openai")

        async def refused(**_: object) -> None:
            broken()

        with monkeypatch.context() as m:  # admitted, then the budgets' hold fails: given back
            m.setattr(pr.ledger, "hold", broken)  # in memory, or in the database
            m.setattr(pr.ledger, "reserve", refused)
            with pytest.raises(ValueError, match="cannot be priced"):
                await pr.send(REQUEST, provider="openai")
        assert await pr.limits.admit("openai", None, 1) is not None  # the window is empty
        assert fleet["openai"].requests == []
    finally:
        await pr.aclose()
