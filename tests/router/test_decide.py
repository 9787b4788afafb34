"""Router.decide, table-driven over a small config of four providers (one disabled)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from polyroute.config import Config, validate
from polyroute.errors import BudgetExceeded, ConfigError, NoCandidateError, ProviderError
from polyroute.router._router import Router, _cost_ends
from polyroute.router.context import RoutingContext
from polyroute.router.decision import Target
from polyroute.router.hints import BudgetHints
from polyroute.router.stats import LatencyStats
from polyroute.types import Message

MODELS: dict[str, dict[str, Any]] = {
    "gpt-small": {
        "provider_type": "openai",
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.60,
        "quality": 0.70,
        "context_window": 128_000,
        "capabilities": ["chat", "stream", "tools", "vision", "json"],
        "params_b": 8,
    },
    "gpt-big": {
        "provider_type": "openai",
        "input_usd_per_mtok": 2.50,
        "output_usd_per_mtok": 10.0,
        "quality": 0.90,
        "context_window": 128_000,
        "capabilities": ["chat", "stream", "tools", "vision", "json"],
        "params_b": 200,
    },
    "claude-mid": {
        "provider_type": "anthropic",
        "input_usd_per_mtok": 3.0,
        "output_usd_per_mtok": 15.0,
        "quality": 0.88,
        "context_window": 200_000,
        "capabilities": ["chat", "stream", "tools", "vision"],
    },
    "claude-unpriced": {
        "provider_type": "anthropic",
        "quality": 0.60,
        "context_window": 200_000,
        "capabilities": ["chat", "stream"],
    },
    "llama-local": {
        "provider_type": "ollama",
        "quality": 0.55,
        "context_window": 8_192,
        "capabilities": ["chat", "stream"],
        "params_b": 3,
    },
    "mistral-x": {
        "provider_type": "mistral",
        "input_usd_per_mtok": 0.1,
        "output_usd_per_mtok": 0.3,
        "quality": 0.6,
    },
}

PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {
        "type": "openai",
        "api_key": "env:K",
        "models": ["gpt-small", "gpt-big"],
        "carbon_intensity": 400,
    },
    "anthropic": {
        "type": "anthropic",
        "api_key": "env:K",
        "models": ["claude-mid", "claude-unpriced"],
    },
    "ollama": {"type": "ollama", "models": ["llama-local"], "carbon_intensity": 30},
    "mistral-off": {
        "type": "mistral",
        "api_key": "env:K",
        "models": ["mistral-x"],
        "enabled": False,
    },
}

DISABLED = {"mistral-off/mistral-x": "disabled"}


def make_config(router: Mapping[str, Any] | None = None) -> Config:
    data: dict[str, Any] = {"providers": PROVIDERS, "models": MODELS}
    if router is not None:
        data["router"] = router
    return Config(validate(data, "test"), "test", {"K": "x"})


def make_router(
    latencies: Mapping[str, float] = {},
    checks: tuple[Callable[[], Mapping[str, str]], ...] = (),
    router: Mapping[str, Any] | None = None,
) -> Router:
    config = make_config(router)
    stats = LatencyStats()
    for label, ms in latencies.items():
        provider, model = label.split("/")
        stats.record(provider, model, ms, ttft_ms=ms / 4)
    return Router(config, config.catalog(), stats, checks)


@dataclass(frozen=True)
class Case:
    id: str
    ctx: Mapping[str, Any]
    winner: str
    excluded: Mapping[str, str] = field(default_factory=lambda: DISABLED)
    latencies: Mapping[str, float] = field(default_factory=dict)
    checks: tuple[Callable[[], Mapping[str, str]], ...] = ()


def breaker_open() -> dict[str, str]:
    return {"anthropic": "breaker open"}


def over_budget() -> dict[str, str]:
    return {"openai": "over budget: daily $5.00 spent"}


# Token arithmetic used below: prompt 1,000 and medium's typical 500 output tokens cost
# gpt-small $0.00045, gpt-big $0.0075, claude-mid $0.0105, llama-local $0 (local, free).
CASES = [
    Case("cost: the free local model", {"strategy": "cost"}, "ollama/llama-local"),
    Case(
        "cost: vision rules out the local model",
        {"strategy": "cost", "required": frozenset({"vision"})},
        "openai/gpt-small",
        {
            **DISABLED,
            "ollama/llama-local": "lacks capability vision",
            "anthropic/claude-unpriced": "lacks capability vision",
        },
    ),
    Case(
        "cost: two capabilities missing",
        {"strategy": "cost", "required": frozenset({"json", "vision"})},
        "openai/gpt-small",
        {
            **DISABLED,
            "ollama/llama-local": "lacks capabilities json, vision",
            "anthropic/claude-unpriced": "lacks capabilities json, vision",
            "anthropic/claude-mid": "lacks capability json",
        },
    ),
    Case(
        "quality: floor for complex",
        {"strategy": "quality", "complexity": "complex"},
        "openai/gpt-big",
        {
            **DISABLED,
            "anthropic/claude-unpriced": "quality 0.60 below the 0.8 floor for complex",
            "openai/gpt-small": "quality 0.70 below the 0.8 floor for complex",
            "ollama/llama-local": "quality 0.55 below the 0.8 floor for complex",
        },
    ),
    Case(
        "quality: simple has no floor",
        {"strategy": "quality", "complexity": "simple"},
        "openai/gpt-big",
    ),
    Case(
        "performance: learned latency wins",
        {"strategy": "performance"},
        "anthropic/claude-mid",
        latencies={"anthropic/claude-mid": 300.0, "openai/gpt-big": 900.0},
    ),
    Case("performance: no data, local first", {"strategy": "performance"}, "ollama/llama-local"),
    Case("balanced: own cost, quality, latency", {"strategy": "balanced"}, "openai/gpt-small"),
    Case(
        "balanced: a fast pair gains",
        {"strategy": "balanced"},
        "ollama/llama-local",
        latencies={"ollama/llama-local": 100.0, "openai/gpt-small": 5000.0},
    ),
    Case(
        "carbon: floor for medium, small model",
        {"strategy": "carbon"},
        "openai/gpt-small",
        {**DISABLED, "ollama/llama-local": "quality 0.55 below the 0.6 floor for medium"},
    ),
    Case(
        "carbon: simple, tiny local model on a clean grid",
        {"strategy": "carbon", "complexity": "simple"},
        "ollama/llama-local",
    ),
    Case(
        "context window too small",
        {"strategy": "cost", "prompt_tokens": 12_000},
        "openai/gpt-small",
        {**DISABLED, "ollama/llama-local": "context window 8,192 < 12,000 needed"},
    ),
    Case(
        "max_tokens counts toward the window",
        {"strategy": "cost", "prompt_tokens": 4_000, "max_tokens": 8_000},
        "openai/gpt-small",
        {**DISABLED, "ollama/llama-local": "context window 8,192 < 12,000 needed"},
    ),
    Case(
        "max cost",
        {"strategy": "quality", "max_cost_usd": 0.001},
        "openai/gpt-small",
        {
            **DISABLED,
            "openai/gpt-big": "estimated $0.0075 over the cost cap $0.001",
            "anthropic/claude-mid": "estimated $0.0105 over the cost cap $0.001",
            "anthropic/claude-unpriced": "unpriced: its cost cannot be held to the cost cap $0.001",
            "ollama/llama-local": "quality 0.55 below the 0.6 floor for medium",
        },
    ),
    Case(
        "max latency: slow learned pairs out, no data kept",
        {"strategy": "performance", "max_latency_ms": 1000.0},
        "ollama/llama-local",
        {**DISABLED, "openai/gpt-big": "learned latency 1,850 ms over the latency cap 1000 ms"},
        latencies={"openai/gpt-big": 1850.0},
    ),
    Case(
        "a failing check: breaker open",
        {"strategy": "quality"},
        "openai/gpt-big",
        {
            **DISABLED,
            "anthropic/claude-mid": "breaker open",
            "anthropic/claude-unpriced": "breaker open",
            "ollama/llama-local": "quality 0.55 below the 0.6 floor for medium",
        },
        checks=(breaker_open,),
    ),
    Case(
        "checks: the first reason wins",
        {"strategy": "cost", "required": frozenset({"vision"})},
        "anthropic/claude-mid",
        {
            **DISABLED,
            "anthropic/claude-unpriced": "lacks capability vision",
            "ollama/llama-local": "lacks capability vision",
            "openai/gpt-small": "over budget: daily $5.00 spent",
            "openai/gpt-big": "over budget: daily $5.00 spent",
        },
        checks=(over_budget, lambda: {"openai": "unhealthy: 503"}),
    ),
    Case(
        "providers filter: others are not candidates, not listed",
        {"strategy": "cost", "providers": frozenset({"anthropic"})},
        "anthropic/claude-mid",
        {},
    ),
    Case(
        "models filter",
        {"strategy": "cost", "models": frozenset({"gpt-big", "claude-mid"})},
        "openai/gpt-big",
        {},
    ),
    Case(
        "a disabled provider named in the filter is listed",
        {"strategy": "cost", "providers": frozenset({"mistral-off", "openai"})},
        "openai/gpt-small",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    router = make_router(case.latencies, case.checks)
    ctx = RoutingContext(messages=[Message.user("hi")], **{"prompt_tokens": 1000, **case.ctx})
    d = router.decide(ctx)
    assert f"{d.provider}/{d.model}" == case.winner, d.reasoning
    assert {f"{e.provider}/{e.model}": e.reason for e in d.excluded} == dict(case.excluded)
    assert d.strategy == case.ctx["strategy"]
    assert d.reasoning and case.winner in d.reasoning
    assert 0 <= d.confidence <= 1


def test_each_exclusion_says_what_kind_it_is() -> None:
    config = make_config()
    budget = BudgetHints()
    budget.note([refusal(left_usd=0.0)])  # spent: the local provider, free, still fits
    reason = f"over budget: {refusal(left_usd=0.0)}"
    router = Router(config, config.catalog(), LatencyStats(), (breaker_open,), budget)
    ctx = RoutingContext(
        messages=[Message.user("hi")], prompt_tokens=1000, required=frozenset({"vision"})
    )
    with pytest.raises(NoCandidateError) as info:
        router.decide(ctx)
    kinds = {f"{e.provider}/{e.model}": (e.kind, e.reason) for e in info.value.excluded}
    assert kinds == {
        "mistral-off/mistral-x": ("unavailable", "disabled"),
        "anthropic/claude-mid": ("unavailable", "breaker open"),
        "anthropic/claude-unpriced": ("unavailable", "breaker open"),
        "openai/gpt-small": ("over_budget", reason),
        "openai/gpt-big": ("over_budget", reason),
        "ollama/llama-local": ("unsuitable", "lacks capability vision"),
    }


def refusal(*, left_usd: float, requested_usd: float | None = 0.01) -> BudgetExceeded:
    return BudgetExceeded(
        scope="global",
        period="daily",
        limit_usd=1.0,
        spent_usd=1.0 - left_usd,
        reserved_usd=0.0,
        requested_usd=requested_usd,
    )


def test_a_budget_hint_keeps_out_only_pairs_whose_cheapest_request_cannot_fit() -> None:
    config = make_config()
    hints = BudgetHints()
    router = Router(config, config.catalog(), LatencyStats(), (), hints)
    ctx = RoutingContext(messages=[Message.user("hi")], prompt_tokens=1000, strategy="cost")
    # a large request refused with room left, or an unpriced one: nothing is kept out
    hints.note(
        [refusal(left_usd=0.5, requested_usd=2.5), refusal(left_usd=0.0, requested_usd=None)]
    )
    assert {e.kind for e in router.decide(ctx).excluded} == {"unavailable"}  # mistral-off
    # gpt-small costs $0.15/$0.60 a million tokens: its cheapest request, 1 token each way, fits
    # in $0.000001; gpt-big's does not
    hints.note([refusal(left_usd=0.000_001)])
    over = {
        f"{e.provider}/{e.model}" for e in router.decide(ctx).excluded if e.kind == "over_budget"
    }
    assert over == {"openai/gpt-big", "anthropic/claude-mid"}


def test_every_strategy_and_reason_is_covered() -> None:
    strategies = {c.ctx["strategy"] for c in CASES}
    assert strategies == {"cost", "quality", "performance", "balanced", "carbon"}
    reasons = " | ".join(r for c in CASES for r in c.excluded.values())
    for needle in (
        "disabled",
        "breaker open",
        "over budget",
        "lacks capability",
        "context window",
        "over the cost cap",
        "unpriced",
        "over the latency cap",
        "below the",
    ):
        assert needle in reasons


def test_estimated_cost_and_its_basis() -> None:
    router = make_router()
    ctx = RoutingContext([Message.user("x")], prompt_tokens=1000, strategy="quality")
    d = router.decide(ctx)
    assert (d.provider, d.model) == ("openai", "gpt-big")
    assert d.estimated_cost_usd == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    assert (
        d.cost_basis == "1,000 prompt tokens (estimated) + 500 output tokens (typical for medium)"
    )
    counted = RoutingContext(
        [Message.user("x")], prompt_tokens=10, max_tokens=64, prompt_tokens_counted=True
    )
    basis = router.decide(counted).cost_basis
    assert basis == "10 prompt tokens (counted) + 64 output tokens (max_tokens)"
    as_dict = d.as_dict()
    assert as_dict["estimated_cost_basis"] == d.cost_basis
    for key in ("strategy", "provider", "model", "reasoning", "estimated_cost_usd", "fallbacks"):
        assert key in as_dict
    assert as_dict["excluded"] == [
        {"provider": "mistral-off", "model": "mistral-x", "reason": "disabled"},
        {
            "provider": "ollama",
            "model": "llama-local",
            "reason": "quality 0.55 below the 0.6 floor for medium",
        },
    ]


def test_unpriced_winner_has_no_estimate() -> None:
    router = make_router()
    ctx = RoutingContext(
        [Message.user("x")],
        prompt_tokens=10,
        strategy="cost",
        models=frozenset({"claude-unpriced"}),
    )
    d = router.decide(ctx)
    assert d.model == "claude-unpriced" and d.estimated_cost_usd is None


def test_fallbacks_prefer_other_providers_and_respect_max_attempts() -> None:
    router = make_router(router={"max_attempts": 4})
    d = router.decide(RoutingContext([Message.user("x")], prompt_tokens=100, strategy="quality"))
    # quality order: gpt-big 0.90, claude-mid 0.88, gpt-small 0.70, claude-unpriced 0.60
    assert d.targets == [
        Target("openai", "gpt-big"),
        Target("anthropic", "claude-mid"),
        Target("openai", "gpt-small"),
        Target("anthropic", "claude-unpriced"),
    ]
    simple = RoutingContext(
        [Message.user("x")], prompt_tokens=100, strategy="quality", complexity="simple"
    )
    d = router.decide(simple)
    # llama-local (another provider) comes before second models of openai and anthropic
    assert d.targets == [
        Target("openai", "gpt-big"),
        Target("anthropic", "claude-mid"),
        Target("ollama", "llama-local"),
        Target("openai", "gpt-small"),
    ]
    assert make_router(router={"max_attempts": 1}).decide(simple).fallbacks == ()
    two = make_router(router={"max_attempts": 2}).decide(simple)
    assert two.fallbacks == (Target("anthropic", "claude-mid"),)


def test_no_candidate_lists_every_exclusion() -> None:
    router = make_router(checks=(lambda: dict.fromkeys(PROVIDERS, "breaker open"),))
    with pytest.raises(NoCandidateError) as info:
        router.decide(RoutingContext([Message.user("x")], prompt_tokens=10, strategy="cost"))
    err = info.value
    assert isinstance(err, ProviderError)  # the CLI exits 4
    assert {f"{e.provider}/{e.model}": e.reason for e in err.excluded} == {
        **DISABLED,
        "openai/gpt-small": "breaker open",
        "openai/gpt-big": "breaker open",
        "anthropic/claude-mid": "breaker open",
        "anthropic/claude-unpriced": "breaker open",
        "ollama/llama-local": "breaker open",
    }
    msg = str(err)
    assert msg.startswith("no provider can serve this request: ")
    assert "mistral-off/mistral-x: disabled" in msg and "ollama/llama-local: breaker open" in msg
    assert err.type == "no_candidate"


def test_no_candidate_when_the_filter_matches_nothing() -> None:
    router = make_router()
    ctx = RoutingContext(
        [Message.user("x")], prompt_tokens=10, strategy="cost", models=frozenset({"gpt-9"})
    )
    with pytest.raises(NoCandidateError, match="no enabled provider matches models gpt-9"):
        router.decide(ctx)


def test_candidates_come_from_config_or_the_catalog() -> None:
    config = Config(
        validate(
            {
                "providers": {
                    "oa": {"type": "openai", "api_key": "env:K", "default_model": "my-tuned"},
                    "ol": {
                        "type": "ollama",
                        "models": ["llama3.2", "nomic-embed-text", "llama3.2"],
                    },
                }
            },
            "test",
        ),
        "test",
        {"K": "x"},
    )
    catalog = config.catalog()
    router = Router(config, catalog, LatencyStats())
    pairs = {(t.provider, t.model) for t in router.pairs}
    chat_models = {m.id for m in catalog.for_type("openai") if "chat" in m.capabilities}
    assert {m for p, m in pairs if p == "oa"} == chat_models | {"my-tuned"}
    # listed models are kept once; a model the catalog knows cannot chat is left out
    assert [t.model for t in router.pairs if t.provider == "ol"] == ["llama3.2"]


def test_strategies_are_loaded_once_per_router_and_errors_are_config_errors() -> None:
    router = make_router()
    assert router.strategy("cost") is router.strategy("cost")
    with pytest.raises(ConfigError, match="strategy 'nope'"):
        router.decide(RoutingContext([Message.user("x")], prompt_tokens=10, strategy="nope"))


CUSTOM = """
from polyroute.router.context import Ranking, Scored


class Priciest:
    name = "priciest"

    def rank(self, candidates, ctx):
        ranked = sorted(candidates, key=lambda c: -(c.est_cost_usd or 0))
        out = [c for c in ranked if c.provider != "anthropic"]
        drop = [(c, "no anthropic today") for c in ranked if c.provider == "anthropic"]
        return Ranking([Scored(c, 0.0) for c in out], f"{out[0].model} costs most", 0.4, drop)
"""


@pytest.fixture
def custom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import sys

    name = f"polyroute_test_custom_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:Priciest"
    sys.modules.pop(name, None)


def test_a_custom_strategy_gets_candidates_and_may_exclude(custom: str) -> None:
    router = make_router(latencies={"openai/gpt-big": 700.0})
    d = router.decide(RoutingContext([Message.user("x")], prompt_tokens=1000, strategy=custom))
    assert (d.provider, d.model) == ("openai", "gpt-big")
    assert d.reasoning == "gpt-big costs most" and d.confidence == 0.4
    assert d.strategy == custom
    assert {f"{e.provider}/{e.model}": e.reason for e in d.excluded} == {
        **DISABLED,
        "anthropic/claude-mid": "no anthropic today",
        "anthropic/claude-unpriced": "no anthropic today",
    }
    assert d.fallbacks == (Target("ollama", "llama-local"), Target("openai", "gpt-small"))


class ViaCandidates:
    """A built-in reached through the custom-strategy path: real Candidate objects."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name

    def rank(self, candidates: Any, ctx: RoutingContext) -> Any:
        return self.inner.rank(candidates, ctx)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_fast_path_agrees_with_rank_on_candidates(case: Case) -> None:
    router = make_router(case.latencies, case.checks, router={"max_attempts": 10})
    name = case.ctx["strategy"]
    router._strategies["via-candidates"] = ViaCandidates(router.strategy(name))
    ctx = RoutingContext(messages=[Message.user("hi")], **{"prompt_tokens": 1000, **case.ctx})
    fast = router.decide(ctx)
    slow = router.decide(dataclasses.replace(ctx, strategy="via-candidates"))
    assert fast.targets == slow.targets
    assert fast.excluded == slow.excluded
    assert (fast.reasoning, fast.confidence) == (slow.reasoning, slow.confidence)
    assert fast.estimated_cost_usd == slow.estimated_cost_usd


# -- a larger table: the fast path's shortcuts against the plain ranking ------------------


def larger_router(seed: int, max_attempts: int = 4) -> Router:
    """Three providers per type sharing models (equal quality and price across them), some
    unpriced (local) or of unknown size, windows of several sizes."""
    rng = random.Random(seed)
    models: dict[str, dict[str, Any]] = {}
    providers: dict[str, dict[str, Any]] = {}
    for t in ("openai", "anthropic", "ollama"):
        names = [f"{t}-m{k}" for k in range(6)]
        for k, name in enumerate(names):
            spec: dict[str, Any] = {
                "provider_type": t,
                "quality": rng.choice((0.5, 0.6, 0.7, 0.8, 0.9)),
                "context_window": rng.choice((8_192, 32_768, 200_000)),
                "capabilities": ["chat", "stream"] + (["vision"] if k % 2 else []),
            }
            if k % 3:
                spec["params_b"] = rng.choice((3, 8, 70))
            if t != "ollama" and k != 5:
                inp = rng.choice((0.1, 0.5, 2.5, 3.0))
                spec["input_usd_per_mtok"] = inp
                spec["output_usd_per_mtok"] = inp * rng.choice((2, 4, 5))
            models[name] = spec
        for n in range(3):
            p: dict[str, Any] = {"type": t, "models": names}
            if t != "ollama":
                p["api_key"] = "env:K"
            p["carbon_intensity"] = rng.choice((None, 50, 400))
            providers[f"{t}-{n}"] = p
    data = {"providers": providers, "models": models, "router": {"max_attempts": max_attempts}}
    config = Config(validate(data, "test"), "test", {"K": "x"})
    return Router(config, config.catalog(), LatencyStats())


def random_context(rng: random.Random, strategy: str) -> RoutingContext:
    return RoutingContext(
        [Message.user("x")],
        prompt_tokens=rng.choice((0, 10, 1_000, 1_000, 20_000)),
        max_tokens=rng.choice((None, None, 64, 8_000)),
        complexity=rng.choice(("simple", "medium", "complex")),
        strategy=strategy,
        stream=rng.random() < 0.3,
        **rng.choice(  # most requests filter nothing; the rest one way or several
            (
                {},
                {},
                {"max_cost_usd": rng.choice((0.001, 0.05)), "max_latency_ms": 800.0},
                {"required": frozenset({"vision"}), "max_latency_ms": 800.0},
                {"providers": frozenset({"openai-0", "anthropic-1", "ollama-2"})},
                {"max_cost_usd": 0.01, "required": frozenset({"vision"})},
            )
        ),
    )


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_agrees_on_a_larger_table_as_latencies_move(seed: int) -> None:
    rng = random.Random(seed)
    router = larger_router(seed, max_attempts=rng.choice((2, 4, 30)))
    for name in ("cost", "quality", "performance", "balanced", "carbon"):
        router._strategies[f"via-{name}"] = ViaCandidates(router.strategy(name))
    for step in range(200):
        for target in rng.sample(router.pairs, 3):  # learned while deciding, as in service
            ttft = rng.choice((None, rng.uniform(20, 400)))
            router.stats.record(target.provider, target.model, rng.uniform(100, 2_000), ttft)
        name = ("cost", "quality", "performance", "balanced", "carbon")[step % 5]
        ctx = random_context(rng, name)
        try:
            fast = router.decide(ctx)
        except NoCandidateError as no:
            with pytest.raises(NoCandidateError) as info:
                router.decide(dataclasses.replace(ctx, strategy=f"via-{name}"))
            assert info.value.excluded == no.excluded
            continue
        slow = router.decide(dataclasses.replace(ctx, strategy=f"via-{name}"))
        assert fast.targets == slow.targets
        assert fast.excluded == slow.excluded
        assert (fast.reasoning, fast.confidence) == (slow.reasoning, slow.confidence)
        assert fast.estimated_cost_usd == slow.estimated_cost_usd


def test_the_cheapest_and_priciest_rows_bound_every_cost() -> None:
    rng = random.Random(3)
    for _ in range(300):
        n = rng.randint(1, 40)
        prices = [rng.choice((0.0, 0.1, 0.15, 1.0, 2.5, 3.0, 10.0)) / 1e6 for _ in range(2 * n)]
        per_input: list[float | None] = [None if rng.random() < 0.1 else a for a in prices[:n]]
        per_output = prices[n:]
        cheapest, priciest = _cost_ends(per_input, per_output)
        p, o = float(rng.choice((0, 1, 7, 1_000, 123_457))), float(rng.choice((0, 1, 500)))
        cost = [
            p * a + o * b if a is not None else None
            for a, b in zip(per_input, per_output, strict=True)
        ]
        priced = [c for c in cost if c is not None]
        if not priced:
            assert cheapest == priciest == ()
            continue
        assert min(cost[i] for i in cheapest) == min(priced)  # type: ignore[type-var]
        assert max(cost[i] for i in priciest) == max(priced)  # type: ignore[type-var]


def test_latency_columns_follow_every_record() -> None:
    stats = LatencyStats()
    pairs = [("a", "x"), ("a", "y"), ("b", "x")]
    stats.record("a", "y", 500.0)
    columns = stats.columns(pairs)
    assert columns.latency == [None, 500.0, None] and columns.span() == (500.0, 500.0)
    rng = random.Random(1)
    for _ in range(200):
        provider, model = rng.choice(pairs)
        stats.record(provider, model, rng.uniform(50, 3_000), rng.choice((None, 40.0)))
        slots = [stats.slot(p, m) for p, m in pairs]
        assert columns.latency == [s.latency_ms for s in slots]
        assert columns.first_token == [
            s.ttft_ms if s.ttft_ms is not None else s.latency_ms for s in slots
        ]
        assert columns.samples == [s.samples for s in slots]
        known = [x for x in columns.latency if x is not None]
        assert columns.span() == (min(known), max(known))
        first = [x for x in columns.first_token if x is not None]
        assert columns.span(first_token=True) == (min(first), max(first))
    del columns  # a router gone: its columns are forgotten on the next record
    stats.record("a", "x", 100.0)
    assert stats._feeds[("a", "x")] == []
