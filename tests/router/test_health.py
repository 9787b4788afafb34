"""The health monitor: probes, the reason a provider is excluded, the background loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest

from polyroute.client import Polyroute
from polyroute.config import CircuitBreakerConfig, Config, validate
from polyroute.errors import NoCandidateError
from polyroute.providers import ConnectionCheck, ProviderClient
from polyroute.router.breaker import Breakers
from polyroute.router.health import HealthMonitor
from polyroute.testing import Fleet


@pytest.fixture
async def pr() -> AsyncIterator[Polyroute]:
    with Fleet(("openai", "anthropic")) as fleet:
        settings = fleet.settings(storage={"url": "sqlite://"})
        settings["providers"]["down"] = {"type": "ollama", "base_url": "http://127.0.0.1:9"}
        settings["providers"]["wrong-key"] = {
            **settings["providers"]["anthropic"],
            "api_key": "env:WRONG",
        }
        env = {**fleet.env(), "WRONG": "not-the-key"}
        async with Polyroute(Config(validate(settings, "test"), "test", env)) as p:
            yield p


def monitor(pr: Polyroute, **kw: float) -> HealthMonitor:
    return HealthMonitor(pr.client, pr.config.enabled, timeout_s=2.0, **kw)


async def test_probe_results_and_exclusion_reasons(pr: Polyroute) -> None:
    m = monitor(pr)
    assert m.reason("down") is None  # never probed: assumed healthy
    results = {s.provider: s for s in await m.check_all()}
    assert results["openai"].ok and results["openai"].models
    assert results["anthropic"].ok
    assert not results["down"].ok and results["down"].error_type == "api_connection"
    assert not results["wrong-key"].ok and results["wrong-key"].error_type == "authentication"
    assert m.reason("openai") is None
    reason = m.reason("down")
    assert reason is not None and reason.startswith("unhealthy: ") and "checked 0s ago" in reason
    assert results["down"].as_dict()["ok"] is False
    assert m.blocked() == {"down": reason, "wrong-key": m.reason("wrong-key")}


async def test_a_provider_that_recovers_is_no_longer_blocked(pr: Polyroute) -> None:
    clients = {"flaky": pr.client("down")}
    m = HealthMonitor(clients.__getitem__, lambda: ["flaky"], timeout_s=2.0)
    await m.check("flaky")
    assert set(m.blocked()) == {"flaky"}
    clients["flaky"] = pr.client("openai")  # back up
    await m.check("flaky")
    assert m.blocked() == {} and m.status["flaky"].ok


async def test_a_provider_that_cannot_be_configured_is_unhealthy(pr: Polyroute) -> None:
    settings = pr.config.settings.model_dump()
    settings["providers"]["nokey"] = {"type": "openai", "api_key": "env:MISSING"}
    config = Config(validate(settings, "test"), "test", pr.config.env)
    async with Polyroute(config) as other:
        status = await monitor(other).check("nokey")
    assert not status.ok and status.error_type == "config"
    assert "$MISSING is not set" in (status.error or "")


async def test_the_background_loop_probes_every_interval_and_stops(pr: Polyroute) -> None:
    m = monitor(pr, interval_s=0.05)
    m.start()
    m.start()  # idempotent
    assert m.running
    for _ in range(100):
        if len(m.status) == 4:
            break
        await asyncio.sleep(0.02)
    first = m.status["openai"].checked_at
    await asyncio.sleep(0.2)
    assert m.status["openai"].checked_at > first  # probed again
    await m.stop()
    assert not m.running


async def test_interval_zero_means_no_background_checks(pr: Polyroute) -> None:
    m = monitor(pr, interval_s=0)
    m.start()
    assert not m.running


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def tripped(clock: Clock, *providers: str, probes: int = 1) -> Breakers:
    """Breakers whose given providers were opened and have turned half-open."""
    breakers = Breakers(CircuitBreakerConfig(failure_threshold=1, half_open_requests=probes), clock)
    for p in providers:
        assert breakers.get(p).allow()
        breakers.get(p).failure()
    clock.now += 61.0
    assert {breakers.get(p).state for p in providers} == {"half_open"}
    return breakers


async def test_the_monitor_probes_half_open_breakers_and_settles_them(pr: Polyroute) -> None:
    clock = Clock()
    breakers = tripped(clock, "openai", "down")
    m = HealthMonitor(
        pr.client, lambda: ["openai", "down"], timeout_s=2.0, clock=clock, breakers=breakers
    )
    await m.tick()
    assert breakers.get("openai").state == "closed"  # its probe passed
    assert breakers.get("down").state == "open"  # failed: open again, timer restarted
    assert breakers.get("down").retry_in_s == 60.0
    clock.now += 60.0
    assert breakers.get("down").state == "half_open"
    await m.tick()
    assert breakers.get("down").state == "open"


async def test_a_half_open_breaker_admits_exactly_its_probes(pr: Polyroute) -> None:
    clock = Clock()
    breakers = tripped(clock, "openai", probes=2)
    b = breakers.get("openai")
    assert b.allow()  # a request took one probe slot
    gate = asyncio.Event()

    class Held:  # a client whose probe waits for the gate
        async def test_connection(self, *, timeout_s: float) -> ConnectionCheck:
            await gate.wait()
            return await pr.client("openai").test_connection(timeout_s=timeout_s)

    held = cast(ProviderClient, Held())
    m = HealthMonitor(lambda _: held, lambda: ["openai"], clock=clock, breakers=breakers)
    tick = asyncio.create_task(m.tick())
    await asyncio.sleep(0.05)
    assert not b.allow() and b.state == "half_open"  # the monitor holds the second one
    gate.set()
    await tick
    assert b.state == "closed"


async def test_the_monitor_leaves_a_half_open_breaker_to_a_request_holding_its_probe(
    pr: Polyroute,
) -> None:
    clock = Clock()
    breakers = tripped(clock, "down")
    b = breakers.get("down")
    assert b.allow()  # a request holds the only probe
    m = HealthMonitor(pr.client, lambda: ["down"], timeout_s=2.0, clock=clock, breakers=breakers)
    await m.tick()
    assert not m.status["down"].ok and b.state == "half_open"  # checked, breaker untouched
    b.success()  # the request's probe served after all
    assert b.state == "closed"


async def test_a_failed_provider_is_probed_again_with_backoff_up_to_the_interval(
    pr: Polyroute,
) -> None:
    clock = Clock()
    m = HealthMonitor(pr.client, lambda: ["down", "openai"], interval_s=10.0, clock=clock)
    down, up = set(), set()
    for _ in range(8):
        wait = await m.tick()
        down.add(m.status["down"].checked_at - 1_000.0)
        up.add(m.status["openai"].checked_at - 1_000.0)
        clock.now += wait
    assert sorted(down) == [0.0, 1.0, 3.0, 7.0, 15.0, 25.0]  # 1, 2, 4, 8 s apart, then 10
    assert sorted(up) == [0.0, 10.0, 20.0]  # the healthy one: every interval


async def test_a_provider_down_at_start_is_served_again_soon_after_it_recovers(
    pr: Polyroute,
) -> None:
    clients = {"flaky": pr.client("down")}
    m = HealthMonitor(
        clients.__getitem__, lambda: ["flaky"], interval_s=30.0, timeout_s=2.0, first_retry_s=0.05
    )
    m.start()
    try:
        for _ in range(100):
            if "flaky" in m.status:
                break
            await asyncio.sleep(0.02)
        assert set(m.blocked()) == {"flaky"}
        clients["flaky"] = pr.client("openai")  # back up, long before the next interval
        for _ in range(200):
            if not m.blocked():
                break
            await asyncio.sleep(0.02)
        assert m.blocked() == {}
    finally:
        await m.stop()


async def test_a_pin_is_tried_despite_a_health_mark_but_not_past_an_open_breaker(
    pr: Polyroute,
) -> None:
    real = pr.client("openai")
    pr._clients["openai"] = pr.client("down")  # its probe fails (down at start-up, say)
    assert not (await pr.health_monitor.check("openai")).ok
    pr._clients["openai"] = real  # and it is back, before the next probe
    unpinned = pr.route("hi")
    assert unpinned.provider != "openai"
    assert any(
        e.provider == "openai" and e.reason.startswith("unhealthy: ") for e in unpinned.excluded
    )
    assert pr.route("hi", provider="openai").provider == "openai"
    answer = await pr.complete("hi", provider="openai", max_tokens=5)
    assert answer.provider == "openai"
    breaker = pr.breakers.get("openai")
    for _ in range(breaker.failure_threshold):
        breaker.failure()
    with pytest.raises(NoCandidateError, match="breaker open"):
        pr.route("hi", provider="openai")
