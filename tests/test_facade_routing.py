"""The facade's routing glue: key checks, pins, budget hints, the health monitor's verdicts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import BudgetExceeded, ConfigError, InvalidModelError, UnknownModelError
from polyroute.router.hints import HINT_S, BudgetHints
from polyroute.router.targets import check_model
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, Message


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
        calls = fleet["openai"].calls
        with pytest.raises(UnknownModelError, match="does not list model 'gpt-brand-new'"):
            await pr.complete("hi", provider="openai", model="gpt-brand-new")
        assert fleet["openai"].calls == calls  # refused before any call
    passing = {**fleet.settings()["providers"]["openai"], "models": ["gpt-*"]}
    async with polyroute(fleet, passing=passing) as pr:
        d = pr.route("hi", provider="passing", model="gpt-brand-new")
        assert (d.strategy, d.provider, d.model) == ("pinned", "passing", "gpt-brand-new")
        answer = await pr.complete("hi", provider="passing", model="gpt-brand-new")
        assert answer.model == "gpt-brand-new"
        with pytest.raises(UnknownModelError):
            pr.route("hi", provider="passing", model="o3")


@pytest.mark.parametrize(
    "model",
    [
        "tunedModels/../../../v1beta/cachedContents#",
        "a?b",
        "a#b",
        "a\x00b",
        "",
        "a//b",
        "./a",
        "a/..",
        "caf\u00e9",
        "a b",
        "x" * 257,
    ],
)
async def test_a_model_name_that_is_not_a_plain_id_is_refused_before_any_call(
    fleet: Fleet, model: str
) -> None:
    async with polyroute(fleet) as pr:
        calls = fleet["openai"].calls
        with pytest.raises(InvalidModelError):
            await pr.complete("hi", provider="openai", model=model)
        with pytest.raises(InvalidModelError):
            pr.route("hi", model=model)
        assert fleet["openai"].calls == calls


def test_plain_model_ids_with_slashes_and_tags_pass() -> None:
    for model in ["tunedModels/x", "meta-llama/Llama-3.3-70B", "llama3.2:3b", "gpt-4o@2024-08"]:
        assert check_model(model) == model


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
        now = [0.0]
        pr.budget_hints = BudgetHints(clock=lambda: now[0])
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
        now[0] += HINT_S
        assert pr.route("hi", priority="quality").excluded == ()
        assert pr.budget_hints.headroom() == {}


PRICED = {"input_usd_per_mtok": 10.0, "output_usd_per_mtok": 10.0, "context_window": 1_000_000}


def priced(fleet: Fleet) -> Polyroute:
    """Every simulated model at $10 a million tokens each way (ollama's too: not free)."""
    models = {
        sim.models[0]: {"provider_type": t, **PRICED, "max_output_tokens": 500_000}
        for t, sim in fleet.sims.items()
    }
    settings = fleet.settings(storage={"url": "sqlite://"}, models=models)
    settings["providers"]["openai"]["models"].append("gpt-unpriced")
    return Polyroute(Config(validate(settings, "test"), "test", fleet.env()))


async def test_one_refused_request_refuses_only_itself(fleet: Fleet) -> None:
    async with priced(fleet) as pr:
        await pr.ledger.set_budget("global", daily_usd=1.0)
        await pr.complete("hi", provider="openai", max_tokens=10)
        with pytest.raises(BudgetExceeded) as refused:  # worst case $2.50: rightly refused
            await pr.complete("hi", provider="openai", max_tokens=250_000)
        message = str(refused.value)
        assert "exhausted" not in message
        assert re.search(r"needs up to \$2\.50; \$[0-9.]+ is left", message), message
        # the next small request, routed or pinned, billed to a key or not, is served
        assert pr.route("hi", priority="quality").excluded == ()
        assert (await pr.complete("hi", max_tokens=10)).content == "routed"
        key, _ = await pr.ledger.create_key("other")
        request = ChatRequest("", (Message.user("hi"),), max_tokens=10)
        assert (await pr.send(request, virtual_key=key.id, provider="openai")).provider == "openai"


async def test_a_refusal_of_an_unpriced_model_keeps_nobody_out(fleet: Fleet) -> None:
    async with priced(fleet) as pr:
        await pr.ledger.set_budget("global", daily_usd=1.0)
        with pytest.raises(BudgetExceeded, match="has no price"):
            await pr.complete("hi", provider="openai", model="gpt-unpriced")
        assert pr.route("hi", priority="quality").excluded == ()
        assert (
            await pr.complete("hi", provider="anthropic", max_tokens=10)
        ).provider == "anthropic"


def test_a_refusal_says_exhausted_only_when_nothing_is_left() -> None:
    def refusal(spent: float, held: float) -> str:
        return str(
            BudgetExceeded(
                scope="global",
                period="daily",
                limit_usd=1.0,
                spent_usd=spent,
                reserved_usd=held,
                requested_usd=2.5,
            )
        )

    assert refusal(0.9, 0.1).endswith(
        "is exhausted: spent $0.9, $0.1 held by requests in flight, this request needs up to $2.50"
    )
    assert refusal(0.5, 0.25).endswith(
        "cannot admit this request: it needs up to $2.50; $0.25 is left "
        "(spent $0.5, $0.25 held by requests in flight)"
    )
