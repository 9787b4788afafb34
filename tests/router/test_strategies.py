"""The built-in strategies on hand-made candidates, and loading strategies by name."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from polyroute.catalog import CatalogModel
from polyroute.config import BalancedWeights
from polyroute.errors import ConfigError
from polyroute.router.context import Candidate, Ranking, RoutingContext
from polyroute.router.strategies import (
    DEFAULT_CARBON_INTENSITY,
    BalancedStrategy,
    CarbonStrategy,
    CostStrategy,
    PerformanceStrategy,
    QualityStrategy,
    grams_co2e,
    load_strategy,
)
from polyroute.types import Message


def cand(
    provider: str,
    model: str,
    *,
    cost: float | None = 0.01,
    quality: float | None = 0.8,
    latency: float | None = None,
    ttft: float | None = None,
    samples: int | None = None,
    local: bool = False,
    params_b: float | None = None,
    carbon: float | None = None,
) -> Candidate:
    entry = CatalogModel(model, "openai", quality=quality, params_b=params_b)
    return Candidate(
        provider=provider,
        provider_type="ollama" if local else "openai",
        model=model,
        entry=entry,
        est_cost_usd=cost,
        latency_ms=latency,
        ttft_ms=ttft,
        samples=samples if samples is not None else (5 if latency is not None else 0),
        local=local,
        carbon_intensity=carbon,
    )


def ctx(complexity: str = "medium", **kw: object) -> RoutingContext:
    return RoutingContext(
        messages=[Message.user("hello")],
        prompt_tokens=kw.pop("prompt_tokens", 500),  # type: ignore[arg-type]
        complexity=complexity,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def order(r: Ranking) -> list[str]:
    return [f"{s.candidate.provider}/{s.candidate.model}" for s in r.ranked]


def excluded(r: Ranking) -> dict[str, str]:
    return {f"{c.provider}/{c.model}": why for c, why in r.excluded}


# -- cost ---------------------------------------------------------------------------


def test_cost_cheapest_first_unpriced_last_ties_by_quality() -> None:
    cs = [
        cand("a", "unpriced", cost=None, quality=0.99),
        cand("b", "pricey", cost=0.05),
        cand("c", "cheap-low", cost=0.001, quality=0.6),
        cand("d", "cheap-high", cost=0.001, quality=0.9),
        cand("e", "free", cost=0.0, quality=0.5),
    ]
    r = CostStrategy().rank(cs, ctx())
    assert order(r) == ["e/free", "d/cheap-high", "c/cheap-low", "b/pricey", "a/unpriced"]
    assert r.reasoning.startswith("e/free is the cheapest at an estimated $0.00")
    assert 0 <= r.confidence <= 1
    assert r.excluded == []


def test_cost_tie_lowers_confidence_and_says_so() -> None:
    r = CostStrategy().rank(
        [cand("a", "x", cost=0.002, quality=0.7), cand("b", "y", cost=0.002, quality=0.9)], ctx()
    )
    assert order(r) == ["b/y", "a/x"]
    assert "tied with a/x" in r.reasoning
    assert r.confidence < 1


def test_cost_all_unpriced_is_never_free() -> None:
    r = CostStrategy().rank(
        [cand("a", "x", cost=None, quality=0.6), cand("b", "y", cost=None, quality=0.9)], ctx()
    )
    assert order(r) == ["b/y", "a/x"]
    assert "no candidate has a price" in r.reasoning
    assert r.confidence <= 0.3


# -- quality ------------------------------------------------------------------------


def test_quality_floor_excludes_with_reason() -> None:
    cs = [
        cand("a", "weak", quality=0.55),
        cand("b", "strong", quality=0.92),
        cand("c", "good", quality=0.85),
    ]
    r = QualityStrategy().rank(cs, ctx("complex"))
    assert order(r) == ["b/strong", "c/good"]
    assert excluded(r) == {"a/weak": "quality 0.55 below the 0.8 floor for complex"}
    assert r.reasoning == "b/strong has the highest catalog quality (0.92)"


def test_quality_ties_by_cost() -> None:
    cs = [
        cand("a", "m", quality=0.9, cost=0.03),
        cand("b", "m", quality=0.9, cost=0.01),
        cand("c", "m", quality=0.9, cost=None),
        cand("d", "n", quality=0.7, cost=0.0),
    ]
    r = QualityStrategy().rank(cs, ctx("simple"))
    assert order(r) == ["b/m", "a/m", "c/m", "d/n"]
    assert "tied with a/m and cheaper" in r.reasoning


def test_quality_floor_excluding_everyone_ranks_all() -> None:
    cs = [cand("a", "x", quality=0.5), cand("b", "y", quality=0.7)]
    r = QualityStrategy().rank(cs, ctx("complex"))
    assert order(r) == ["b/y", "a/x"]
    assert r.excluded == []
    assert "none meets the 0.8 quality floor for complex: ranked all" in r.reasoning


def test_unknown_quality_counts_as_half() -> None:
    r = QualityStrategy().rank([cand("a", "x", quality=None)], ctx("medium"))
    assert excluded(r) == {} and order(r) == ["a/x"]  # alone below the floor: ranked anyway
    assert "none meets" in r.reasoning


# -- performance --------------------------------------------------------------------


def test_performance_learned_latency_first_then_local_then_rest() -> None:
    cs = [
        cand("remote", "nodata", quality=0.95),
        cand("ollama", "nodata", local=True, quality=0.5),
        cand("slow", "m", latency=2000.0),
        cand("fast", "m", latency=300.0),
    ]
    r = PerformanceStrategy().rank(cs, ctx())
    assert order(r) == ["fast/m", "slow/m", "ollama/nodata", "remote/nodata"]
    assert r.reasoning == "fast/m has the lowest learned latency: 300 ms over 5 calls"


def test_performance_without_data_prefers_local_with_low_confidence() -> None:
    cs = [cand("cloud", "m", quality=0.95), cand("ollama", "m", local=True, quality=0.5)]
    r = PerformanceStrategy().rank(cs, ctx())
    assert order(r) == ["ollama/m", "cloud/m"]
    assert "no latency learned yet" in r.reasoning and "local" in r.reasoning
    with_data = PerformanceStrategy().rank([cand("x", "m", latency=100.0, samples=40)], ctx())
    assert r.confidence < with_data.confidence == 1.0


def test_performance_streams_rank_by_time_to_first_token() -> None:
    cs = [
        cand("a", "m", latency=1000.0, ttft=500.0),
        cand("b", "m", latency=3000.0, ttft=100.0),
    ]
    assert order(PerformanceStrategy().rank(cs, ctx())) == ["a/m", "b/m"]
    streamed = PerformanceStrategy().rank(cs, ctx(stream=True))
    assert order(streamed) == ["b/m", "a/m"]
    assert "time to first token" in streamed.reasoning


# -- balanced -----------------------------------------------------------------------


def test_balanced_scores_each_candidate_on_its_own_cost() -> None:
    # The seed scored every provider with one shared cost estimate: cost then cannot
    # separate candidates and the higher quality one wins. Here the far cheaper one must.
    cs = [
        cand("pricey", "m", cost=0.10, quality=0.85),
        cand("cheap", "m", cost=0.001, quality=0.80),
    ]
    r = BalancedStrategy().rank(cs, ctx())
    assert order(r) == ["cheap/m", "pricey/m"]
    scores = {s.candidate.provider: s.score for s in r.ranked}
    # 0.35 x 1.0 + 0.40 x 0.80 + 0.25 x 0.5 and 0.35 x 0.0 + 0.40 x 0.85 + 0.25 x 0.5
    assert scores["cheap"] == pytest.approx(0.795)
    assert scores["pricey"] == pytest.approx(0.465)
    assert r.reasoning.startswith(
        "cheap/m scores 0.795: cost 1.00, quality 0.80, speed 0.50 (weights 0.35/0.40/0.25)"
    )


def test_balanced_normalises_cost_latency_and_treats_unpriced_as_worst() -> None:
    cs = [
        cand("a", "m", cost=0.0, quality=0.5, latency=100.0),
        cand("b", "m", cost=0.01, quality=0.5, latency=300.0),
        cand("c", "m", cost=0.005, quality=0.5, latency=None),
        cand("d", "m", cost=None, quality=0.5, latency=200.0),
    ]
    w = BalancedWeights(cost=1, quality=0, performance=1)
    r = BalancedStrategy(w).rank(cs, ctx())
    scores = {s.candidate.provider: s.score for s in r.ranked}
    assert scores == pytest.approx(
        {"a": 0.5 * 1 + 0.5 * 1, "b": 0.0, "c": 0.5 * 0.5 + 0.5 * 0.5, "d": 0.5 * 0 + 0.5 * 0.5}
    )
    assert order(r) == ["a/m", "c/m", "d/m", "b/m"]


def test_balanced_weights_come_from_config() -> None:
    cs = [cand("cheap", "m", cost=0.001, quality=0.5), cand("good", "m", cost=0.1, quality=0.99)]
    only_quality = BalancedStrategy(BalancedWeights(cost=0, quality=1, performance=0))
    only_cost = BalancedStrategy(BalancedWeights(cost=1, quality=0, performance=0))
    assert order(only_quality.rank(cs, ctx()))[0] == "good/m"
    assert order(only_cost.rank(cs, ctx()))[0] == "cheap/m"
    all_zero = BalancedStrategy(BalancedWeights(cost=0, quality=0, performance=0))
    assert all_zero.w_cost == all_zero.w_quality == all_zero.w_perf == pytest.approx(1 / 3)


# -- carbon -------------------------------------------------------------------------


def test_carbon_picks_the_small_model_on_the_clean_grid_within_the_floor() -> None:
    cs = [
        cand("dirty", "small", params_b=8, carbon=700, quality=0.7),
        cand("clean", "small", params_b=8, carbon=50, quality=0.7),
        cand("clean", "big", params_b=400, carbon=50, quality=0.95),
        cand("clean", "tiny-weak", params_b=1, carbon=50, quality=0.4),
        cand("unknown", "size", params_b=None, quality=0.99),
    ]
    r = CarbonStrategy().rank(cs, ctx("medium"))
    assert order(r) == ["clean/small", "dirty/small", "clean/big", "unknown/size"]
    assert excluded(r) == {"clean/tiny-weak": "quality 0.40 below the 0.6 floor for medium"}
    tokens = 500 + 500
    assert r.ranked[0].score == pytest.approx(-grams_co2e(8, tokens, 50))
    assert r.reasoning.startswith("clean/small emits the least: ~")
    assert "8B params at 50 gCO2e/kWh" in r.reasoning


def test_carbon_formula_and_default_grid() -> None:
    # 2 x 8e9 FLOP/token at 1e11 FLOP/J = 0.16 J/token; 1,000 tokens = 160 J = 4.44e-5 kWh
    assert grams_co2e(8, 1000, 450) == pytest.approx(160 / 3.6e6 * 450)
    assert grams_co2e(8, 1000, None) == pytest.approx(160 / 3.6e6 * DEFAULT_CARBON_INTENSITY)
    assert DEFAULT_CARBON_INTENSITY == 475


def test_carbon_unknown_sizes_rank_after_known_cheapest_first() -> None:
    cs = [
        cand("a", "unknown-pricey", params_b=None, cost=0.05),
        cand("b", "unknown-cheap", params_b=None, cost=0.001),
        cand("c", "unknown-unpriced", params_b=None, cost=None),
        cand("d", "known-huge", params_b=1000, quality=0.6),
    ]
    r = CarbonStrategy().rank(cs, ctx("simple"))
    assert order(r) == ["d/known-huge", "b/unknown-cheap", "a/unknown-pricey", "c/unknown-unpriced"]
    only_unknown = CarbonStrategy().rank(cs[:3], ctx("simple"))
    assert "no candidate's size is known" in only_unknown.reasoning
    assert only_unknown.confidence < r.confidence


# -- loading ------------------------------------------------------------------------


def test_load_builtins() -> None:
    for name, cls in [
        ("cost", CostStrategy),
        ("quality", QualityStrategy),
        ("performance", PerformanceStrategy),
        ("balanced", BalancedStrategy),
        ("carbon", CarbonStrategy),
    ]:
        s = load_strategy(name, None)
        assert isinstance(s, cls) and s.name == name
    b = load_strategy("balanced", BalancedWeights(cost=1, quality=1, performance=2))
    assert isinstance(b, BalancedStrategy) and b.w_perf == pytest.approx(0.5)


CUSTOM = """
from polyroute.router.context import Ranking, Scored


class Alphabetical:
    name = "alphabetical"

    def rank(self, candidates, ctx):
        ranked = sorted(candidates, key=lambda c: (c.provider, c.model))
        return Ranking([Scored(c, 0.0) for c in ranked], f"{ranked[0].provider} comes first")


class NeedsArgs:
    def __init__(self, x):
        self.x = x

    def rank(self, candidates, ctx):
        raise AssertionError


class NoRank:
    name = "norank"


not_a_class = 42
"""


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"polyroute_test_strategy_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_custom_strategy(custom_module: str) -> None:
    s = load_strategy(f"{custom_module}:Alphabetical", None)
    cs: Sequence[Candidate] = [cand("zeta", "m"), cand("alpha", "m")]
    r = s.rank(cs, ctx())
    assert order(r) == ["alpha/m", "zeta/m"]
    assert r.reasoning == "alpha comes first"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fastest", "strategy 'fastest': not a built-in"),
        ("{mod}:", "not a built-in (cost, quality, performance, balanced, carbon)"),
        (":Alphabetical", "nor 'pkg.module:Class'"),
        ("no_such_module_xyz:Thing", "strategy 'no_such_module_xyz:Thing': cannot import"),
        ("{mod}:Missing", "has no 'Missing'"),
        ("{mod}:not_a_class", "'not_a_class' is not a class"),
        ("{mod}:NeedsArgs", "NeedsArgs cannot be made with no arguments"),
        ("{mod}:NoRank", "NoRank has no rank(candidates, ctx) method"),
    ],
)
def test_load_errors_name_the_spec(custom_module: str, spec: str, message: str) -> None:
    spec = spec.format(mod=custom_module)
    with pytest.raises(ConfigError) as info:
        load_strategy(spec, None)
    assert message in str(info.value)
    assert repr(spec) in str(info.value)
