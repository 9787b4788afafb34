"""Routing that learns from a bench run: quality_source = "bench", seeded latencies, and the
replay that scores the strategies (benchmark/_learn.py, router/measured.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmark.analysis_support import pair_samples, run_info
from polyroute.benchmark import BenchStore, Sample
from polyroute.benchmark._learn import evaluate_routing, load_measured, measured
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import ConfigError
from polyroute.ledger import Ledger
from polyroute.router.context import Candidate, Ranking, RoutingContext, Scored
from polyroute.router.stats import LatencyStats

MODELS = ["gpt-4o", "gpt-4o-mini"]  # the catalog rates gpt-4o higher (0.85 vs 0.72)


def config(quality_source: str | None = None, **router: Any) -> Config:
    if quality_source is not None:
        router["quality_source"] = quality_source
    settings = {
        "router": router,
        "providers": {"openai": {"type": "openai", "api_key": "env:K", "models": MODELS}},
    }
    return Config(validate(settings, "test"), "test", {"K": "x"})


def bench_samples(run_id: int) -> list[Sample]:
    """The run says: on simple tasks gpt-4o-mini answers better than gpt-4o, and faster."""
    return [
        *pair_samples(
            "openai", "gpt-4o-mini", "simple", n=20, passes=19, latency_ms=300, run_id=run_id
        ),
        *pair_samples(
            "openai", "gpt-4o", "simple", n=20, passes=12, latency_ms=2000, run_id=run_id
        ),
    ]


async def stored_run(ledger: Ledger, *, finish: bool = True) -> int:
    store = BenchStore(ledger)
    run = await store.start_run(
        suites=["simple"],
        runs=10,
        concurrency=2,
        pairs=[("openai", m) for m in MODELS],
        max_cost_usd=None,
    )
    await store.add(bench_samples(run.id))
    if finish:
        await store.finish(run.id, "finished")
    return run.id


async def test_quality_source_bench_changes_the_decision_as_the_run_says(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        run_id = await stored_run(ledger)
        async with Polyroute(config(), ledger=ledger) as pr:
            d = pr.route("hi", priority="quality", complexity="simple")
            assert d.model == "gpt-4o"  # the catalog's view
            assert "bench" not in d.reasoning
        async with Polyroute(config("bench"), ledger=ledger) as pr:
            d = pr.route("hi", priority="quality", complexity="simple")
            assert d.model == "gpt-4o-mini"  # 0.95 measured against 0.60
            assert d.reasoning == (
                "openai/gpt-4o-mini has the highest quality (0.95); "
                f"quality 0.95 from bench run {run_id}, 20 samples"
            )
            # no complex samples in the run: the catalog decides, and the decision says so
            d = pr.route("hi", priority="quality", complexity="complex")
            assert d.model == "gpt-4o"
            assert d.reasoning.endswith(
                f"quality 0.85 from the catalog (bench run {run_id} graded no complex answer of it)"
            )
            # the performance strategy starts from the run's latencies (no live call yet)
            d = pr.route("hi", priority="performance", complexity="simple")
            assert d.model == "gpt-4o-mini"
            assert d.reasoning.startswith(
                "openai/gpt-4o-mini has the lowest learned latency: 310 ms seeded by a bench run, no live call yet; "
            )
    finally:
        await ledger.aclose()


class HighestQuality:
    """A custom strategy: it reads ``Candidate.quality``, measured in bench mode."""

    name = "highest"

    def rank(self, candidates: Sequence[Candidate], ctx: RoutingContext) -> Ranking:
        ranked = sorted(candidates, key=lambda c: -c.quality)
        best = ranked[0]
        return Ranking(
            [Scored(c, c.quality) for c in ranked], f"{best.model} scores {best.quality:.2f}"
        )


async def test_a_custom_strategy_sees_the_measured_quality(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    custom = "benchmark.test_learn:HighestQuality"
    try:
        run_id = await stored_run(ledger)
        async with Polyroute(config("bench", strategy=custom), ledger=ledger) as pr:
            d = pr.route("hi", complexity="simple")
            assert d.model == "gpt-4o-mini"
            assert d.reasoning == (
                f"gpt-4o-mini scores 0.95; quality 0.95 from bench run {run_id}, 20 samples"
            )
            assert pr.route("hi", complexity="medium").model == "gpt-4o"  # catalog: no samples
    finally:
        await ledger.aclose()


async def test_only_a_finished_run_is_learned_from(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        assert await load_measured(ledger) is None  # no run at all
        await stored_run(ledger, finish=False)
        assert await load_measured(ledger) is None  # running: not learned from
        async with Polyroute(config("bench"), ledger=ledger) as pr:
            d = pr.route("hi", priority="quality", complexity="simple")
            assert d.model == "gpt-4o"  # no finished run: the catalog, as if "catalog"
        run_id = await stored_run(ledger)
        learned = await load_measured(ledger)
        assert learned is not None
        assert learned.run_id == run_id
    finally:
        await ledger.aclose()


def test_a_bad_quality_source_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="quality_source"):
        config("measured")


def test_measured_pools_a_model_across_providers_for_pairs_the_run_lacks() -> None:
    samples = [
        *pair_samples("a", "m", "simple", n=10, passes=8),
        *pair_samples("b", "m", "simple", n=10, passes=6),
        *pair_samples("a", "m", "medium", n=4, scores=[0.5], failures=1),
    ]
    m = measured(3, samples)
    assert m.quality_of("a", "m", "simple").score == pytest.approx(0.8)  # type: ignore[union-attr]
    assert m.quality_of("c", "m", "simple").score == pytest.approx(0.7)  # type: ignore[union-attr]
    medium = m.quality_of("a", "m", "medium")
    assert medium is not None
    assert (medium.score, medium.samples) == (0.5, 3)  # failed calls are not graded
    assert m.quality_of("a", "m", "complex") is None
    assert m.latency[("a", "m")].latency_ms == pytest.approx(
        1003.0
    )  # simple and medium answers together
    assert m.basis(medium) == "quality 0.50 from bench run 3, 3 samples"


def test_a_seeded_latency_gives_way_to_live_calls_and_returns_when_they_age() -> None:
    now = [0.0]
    stats = LatencyStats(half_life_s=10, clock=lambda: now[0])
    cols = stats.columns([("p", "m")])
    stats.seed("p", "m", 500.0, 100.0)
    assert stats.get("p", "m") == (500.0, 100.0, 0)
    assert cols.latency == [500.0]
    stats.record("p", "m", 80.0, 20.0)
    assert stats.get("p", "m") == (80.0, 20.0, 1)  # the first live call replaces the seed
    now[0] = 100.0
    assert stats.get("p", "m") == (500.0, 100.0, 0)  # forgotten: back to the seed
    assert cols.latency == [500.0]
    stats.record("q", "m", 10.0)
    stats.seed("q", "m", 999.0, None)  # live data wins over a later seed
    assert stats.get("q", "m") == (10.0, None, 1)


def test_evaluate_routing_scores_each_strategy_against_the_best_single_pair() -> None:
    # gpt-4o: best quality everywhere (1.0), dear; mini: as good on simple cases, worse on complex
    cases_s, cases_c = ["s1", "s2"], ["c1", "c2"]
    samples = [
        *pair_samples("openai", "gpt-4o", "simple", n=4, case_ids=cases_s, cost_usd=0.01),
        *pair_samples("openai", "gpt-4o", "complex", n=4, case_ids=cases_c, cost_usd=0.01),
        *pair_samples("openai", "gpt-4o-mini", "simple", n=4, case_ids=cases_s, cost_usd=0.001),
        *pair_samples(
            "openai", "gpt-4o-mini", "complex", n=4, passes=0, case_ids=cases_c, cost_usd=0.001
        ),
    ]
    ev = evaluate_routing(config(), config().catalog(), run_info(), samples)
    assert ev.best_pair == "openai/gpt-4o"
    assert ev.best_quality == 1.0
    assert ev.best_cost_usd == pytest.approx(0.04)
    by = {s.strategy: s for s in ev.strategies}
    assert set(by) == {"cost", "quality", "performance", "balanced", "carbon"}
    cost = by["cost"]  # always the cheap one: half the quality, 90% saved
    assert cost.picks == {"openai/gpt-4o-mini": 4}
    assert cost.quality_retained == pytest.approx(0.5)
    assert cost.cost_saved == pytest.approx(0.9)
    quality = by["quality"]  # learned: mini ties gpt-4o on simple (1.0) and is cheaper there
    assert quality.picks == {"openai/gpt-4o-mini": 2, "openai/gpt-4o": 2}
    assert quality.quality_retained == pytest.approx(1.0)
    assert quality.cost_saved == pytest.approx(1 - 0.022 / 0.04)
    assert ev.choices["c1"]["quality"] == "openai/gpt-4o"
    assert ev.choices["s1"]["quality"] == "openai/gpt-4o-mini"
    d = ev.as_dict()
    assert d["baseline"] == {
        "pair": "openai/gpt-4o",
        "quality": 1.0,
        "cost_usd": pytest.approx(0.04),
    }
    assert {s["strategy"] for s in d["strategies"]} == set(by)
