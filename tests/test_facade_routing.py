"""The facade's routing glue: key checks, pins, budget hints, the health monitor's verdicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import BudgetExceeded, ConfigError
from polyroute.testing import Fleet


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic", "ollama"), reply="routed") as f:
        yield f


def polyroute(fleet: Fleet, **extra: Any) -> Polyroute:
    settings = fleet.settings(storage={"url": "sqlite://"})
    for pid, spec in extra.items():
        settings["providers"][pid] = spec
    return Polyroute(Config(validate(settings, "test"), "test", fleet.env()))


async def test_a_provider_without_its_key_is_excluded_not_fatal(fleet: Fleet) -> None:
    nokey = {"type": "openai", "base_url": fleet["openai"].base_url, "api_key": "env:NOPE"}
    async with polyroute(fleet, nokey=nokey) as pr:
        d = pr.route("hi", priority="cost")
        reasons = {e.provider: e.reason for e in d.excluded}
        assert reasons["nokey"] == "api key missing ($NOPE is not set)"
        answer = await pr.complete("hi")
        assert answer.content == "routed" and answer.provider != "nokey"
        with pytest.raises(ConfigError, match=r"\$NOPE is not set"):
            await pr.complete("hi", provider="nokey")  # pinned: its own clear error, exit 2


async def test_pins(fleet: Fleet) -> None:
    async with polyroute(fleet) as pr:
        d = pr.route("hi", provider="anthropic")
        assert (d.provider, d.model) == ("anthropic", fleet["anthropic"].models[0])  # default
        d = pr.route("hi", provider="openai", model="gpt-brand-new")
        assert (d.strategy, d.provider, d.model) == ("pinned", "openai", "gpt-brand-new")
        answer = await pr.complete("hi", provider="openai", model="gpt-brand-new")
        assert answer.model == "gpt-brand-new"


async def test_a_budget_refusal_keeps_the_provider_out_of_later_decisions(fleet: Fleet) -> None:
    async with polyroute(fleet) as pr:
        await pr.ledger.set_budget("provider:anthropic", daily_usd=0.0)
        with pytest.raises(BudgetExceeded):
            await pr.complete("hi", provider="anthropic")
        d = pr.route("hi", priority="quality")
        reasons = {e.provider: e.reason for e in d.excluded}
        assert reasons["anthropic"].startswith("over budget: daily budget for provider:anthropic")
        assert d.provider != "anthropic"


async def test_a_global_refusal_keeps_priced_providers_out_for_ten_seconds(fleet: Fleet) -> None:
    async with polyroute(fleet) as pr:
        await pr.ledger.set_budget("global", daily_usd=0.0)
        with pytest.raises(BudgetExceeded):
            await pr.complete("hi", provider="openai")
        d = pr.route("hi", priority="quality")
        reasons = {e.provider: e.reason for e in d.excluded}
        assert set(reasons) == {"openai", "anthropic"}  # ollama is free: still admitted
        assert all(r.startswith("over budget: daily budget for global") for r in reasons.values())
        assert d.provider == "ollama"
        assert (await pr.complete("hi")).provider == "ollama"
        # ten seconds on, the hint is gone: the reservation decides again
        pr._over_budget = {k: (at - 10.0, why) for k, (at, why) in pr._over_budget.items()}
        assert pr.route("hi", priority="quality").excluded == ()
        assert pr._over_budget == {}


async def test_an_unhealthy_provider_is_excluded_until_it_recovers(fleet: Fleet) -> None:
    down = {"type": "ollama", "base_url": "http://127.0.0.1:9", "models": ["tiny"]}
    async with polyroute(fleet, down=down) as pr:
        await pr.health_monitor.check_all()
        d = pr.route("hi", priority="cost")
        reasons = {e.provider: e.reason for e in d.excluded}
        assert reasons["down"].startswith("unhealthy: ")
        assert d.provider != "down"
