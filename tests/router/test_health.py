"""The health monitor: probes, the reason a provider is excluded, the background loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
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
