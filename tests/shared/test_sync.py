"""Breakers, health marks and learned latency between two replicas on one Redis, at the
level of the parts (``SharedBreakers``, ``SharedHealth``, ``SharedLatency``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from polyroute.config import CircuitBreakerConfig
from polyroute.errors import ConfigError
from polyroute.providers import ProviderClient
from polyroute.router.breaker import Breakers, CircuitBreaker
from polyroute.router.health import HealthMonitor
from polyroute.router.stats import LatencyStats
from polyroute.shared import Shared, SharedBreakers, SharedHealth, SharedLatency, share
from servers.redis import RedisServer
from shared.test_shared import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def no_client(provider: str) -> ProviderClient:
    raise ConfigError(f"no key for {provider}")


def providers() -> Sequence[str]:
    return ["openai"]


@dataclass
class Replica:
    shared: Shared
    breakers: Breakers
    health: HealthMonitor
    stats: LatencyStats
    clock: Clock


def replica(url: str, threshold: int = 2, reset_s: float = 60.0) -> Replica:
    clock = Clock()
    config = CircuitBreakerConfig(failure_threshold=threshold, reset_timeout_s=reset_s)
    breakers = Breakers(config, clock)
    health = HealthMonitor(no_client, providers, interval_s=0)
    stats = LatencyStats()
    shared = Shared(url)
    share(shared, breakers, health, stats, latency_interval_s=3600)
    return Replica(shared, breakers, health, stats, clock)


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = replica(redis_url), replica(redis_url)
    await a.shared.start()
    await b.shared.start()
    yield a, b
    await a.shared.aclose()
    await b.shared.aclose()


@pytest.fixture
async def quick(redis_url: str) -> AsyncIterator[tuple[Replica, Replica]]:
    """Two replicas whose breakers turn half-open after 0.3 s (real time: Redis's clock
    says when the cluster's breaker does)."""
    a, b = replica(redis_url, reset_s=0.3), replica(redis_url, reset_s=0.3)
    for r in (a, b):
        r.breakers.clock = time.monotonic
        await r.shared.start()
    yield a, b
    await a.shared.aclose()
    await b.shared.aclose()


async def open_both(a: Replica, b: Replica) -> tuple[CircuitBreaker, CircuitBreaker]:
    ba, bb = a.breakers.get("openai"), b.breakers.get("openai")
    ba.failure(ba.admit())
    ba.failure(ba.admit())
    assert ba.state == "open"
    await eventually(lambda: bb.state == "open")
    await eventually(lambda: ba.state == bb.state == "half_open")
    return ba, bb


async def test_one_half_open_probe_for_the_cluster_then_its_news_for_all(
    quick: tuple[Replica, Replica],
) -> None:
    ba, bb = await open_both(*quick)
    # the first ask of each is refused while the lock is asked for; one of them gets it
    assert ba.admit() is None and bb.admit() is None
    await asyncio.sleep(0.1)
    tickets = [ba.admit(), bb.admit()]
    assert sum(t is not None for t in tickets) == 1
    holder, other = (ba, bb) if tickets[0] is not None else (bb, ba)
    ticket = tickets[0] if tickets[0] is not None else tickets[1]
    assert other.admit() is None
    holder.success(ticket)
    assert holder.state == "closed"
    await eventually(lambda: other.state == "closed")
    assert other.admit() is not None


async def test_a_failed_probe_reopens_the_breaker_everywhere(
    quick: tuple[Replica, Replica],
) -> None:
    ba, bb = await open_both(*quick)
    assert ba.admit() is None
    await asyncio.sleep(0.1)
    ticket = ba.admit()
    if ticket is None:  # b's ask took the lock: it probes
        ba, bb = bb, ba
        ticket = ba.admit()
    assert ticket is not None
    epoch = bb.epoch
    ba.failure(ticket)
    assert ba.state == "open"
    await eventually(lambda: bb.epoch > epoch)
    assert bb._state == "open"


async def test_a_health_verdict_that_changes_reaches_the_other_replica(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    status = await a.health.check("openai")
    assert not status.ok
    await eventually(lambda: "openai" in b.health.blocked())
    assert b.health.status["openai"] == status
    late = replica(a.shared.url)  # a replica started later reads the kept verdicts
    try:
        await late.shared.start()
        assert late.health.status["openai"] == status
    finally:
        await late.shared.aclose()


async def test_learned_latency_is_merged_across_replicas(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    sync_a, sync_b = (SharedLatency(r.shared, r.stats, interval_s=3600) for r in pair)
    for _ in range(5):
        a.stats.record("openai", "gpt-4o-mini", 100.0, 20.0)
    b.stats.record("openai", "gpt-4o-mini", 300.0)
    b.stats.slot("anthropic", "claude")  # known to b only, no data anywhere
    await sync_a.sync()
    await sync_b.sync()
    lat_b, ttft_b, samples_b = b.stats.get("openai", "gpt-4o-mini")
    assert samples_b == 6 and ttft_b == 20.0
    assert lat_b is not None and 100 < lat_b < 300
    await sync_a.sync()
    assert a.stats.get("openai", "gpt-4o-mini") == (lat_b, 20.0, 6)
    assert b.stats.get("anthropic", "claude") == (None, None, 0)
    assert b.stats.pending == {}


async def test_a_breaker_opened_while_redis_was_down_becomes_the_clusters() -> None:
    server = RedisServer()
    server.start()
    a, b = replica(server.url), replica(server.url)
    for r in (a, b):
        r.shared.reconnect_s = 0.05
        await r.shared.start()
    try:
        bb = b.breakers.get("openai")
        server.kill()
        await b.shared.call(lambda r: r.ping())
        await eventually(lambda: not a.shared.up and not b.shared.up)
        ba = a.breakers.get("openai")
        ba.failure(ba.admit())
        ba.failure(ba.admit())  # alone: no error, the local breaker opens
        assert ba.state == "open" and bb.state == "closed"
        latency = SharedLatency(a.shared, a.stats, interval_s=3600)
        a.stats.record("openai", "gpt-4o-mini", 100.0)
        await latency.sync()  # no error: the sample stays in a's own means
        assert a.stats.get("openai", "gpt-4o-mini") == (100.0, None, 1)
        server.start()
        await eventually(lambda: bb.state == "open")  # a told the cluster on reconnecting
    finally:
        await a.shared.aclose()
        await b.shared.aclose()
        server.remove()


async def test_malformed_messages_are_ignored(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    await a.shared.publish("breaker", {"provider": "openai"})
    await a.shared.publish("health", {"provider": "openai"})
    await a.shared.publish("breaker", {"provider": "openai", "state": "odd", "failures": 1})
    await a.shared.publish("breaker", {"provider": "openai", "state": "closed", "failures": 3})
    await eventually(lambda: b.breakers.get("openai").consecutive_failures == 3)
    assert b.breakers.get("openai").state == "closed" and "openai" not in b.health.status


def test_without_redis_nothing_is_linked() -> None:
    r = replica("")
    assert r.stats.pending is None and r.health.link is None
    assert r.breakers.get("openai").link is None
    assert isinstance(SharedBreakers, type) and isinstance(SharedHealth, type)
