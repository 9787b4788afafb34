"""Routing that learns from a bench run, and a replay that scores the strategies on it.

:func:`measured` turns a run's samples into the :class:`~polyroute.router.measured.Measured`
values the router reads with ``[router] quality_source = "bench"``; :func:`load_measured`
finds the latest finished run in the ledger's database (once, when the router is built).

:func:`evaluate_routing` replays a run, RouteLLM-style (Ong et al. 2024, "RouteLLM:
Learning to Route LLMs with Preference Data"): for each case, every strategy picks a
pair among those the run measured (routing as it would with this run learned, the
request's complexity being the case's task type); the pair's stored results for that
case give the quality and cost of the choice. Each strategy is scored against always
sending every case to the best single pair (highest mean quality over the run): the
share of that pair's quality it keeps and the share of its cost it saves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyroute.benchmark._model import RunInfo, Sample
from polyroute.benchmark._stats import percentile
from polyroute.errors import BenchError, NoCandidateError, UnknownRunError
from polyroute.router.context import BUILTIN_STRATEGIES, QUALITY_FLOOR, Complexity, RoutingContext
from polyroute.router.measured import Measured, MeasuredLatency, MeasuredQuality

if TYPE_CHECKING:
    from rich.table import Table

    from polyroute.catalog import Catalog
    from polyroute.client import Polyroute
    from polyroute.config import Config
    from polyroute.ledger import Ledger


def measured(run_id: int, samples: Sequence[Sample]) -> Measured:
    """What routing reads of a run: mean grade per (provider, model, task type) and per
    (model, task type), median latency and TTFT per (provider, model)."""
    scores: dict[tuple[str, str, str], list[float]] = {}
    by_model: dict[tuple[str, str], list[float]] = {}
    latency: dict[tuple[str, str], list[float]] = {}
    ttft: dict[tuple[str, str], list[float]] = {}
    for s in samples:
        if s.ok and s.score is not None:
            scores.setdefault((s.provider, s.model, s.task_type), []).append(s.score)
            by_model.setdefault((s.model, s.task_type), []).append(s.score)
        if s.ok and s.latency_ms is not None:
            latency.setdefault((s.provider, s.model), []).append(s.latency_ms)
            if s.ttft_ms is not None:
                ttft.setdefault((s.provider, s.model), []).append(s.ttft_ms)
    return Measured(
        run_id=run_id,
        quality={k: MeasuredQuality(sum(v) / len(v), len(v)) for k, v in scores.items()},
        model_quality={k: MeasuredQuality(sum(v) / len(v), len(v)) for k, v in by_model.items()},
        latency={
            k: MeasuredLatency(
                percentile(v, 50), percentile(ttft[k], 50) if k in ttft else None, len(v)
            )
            for k, v in latency.items()
        },
    )


async def latest_finished(ledger: Ledger) -> RunInfo | None:
    """The newest run whose status is ``finished``."""
    from polyroute.benchmark._store import BenchStore

    done = [r for r in await BenchStore(ledger).runs() if r.status == "finished"]
    return done[-1] if done else None


async def load_measured(ledger: Ledger) -> Measured | None:
    """The latest finished run's figures (``None``: no run has finished)."""
    from polyroute.benchmark._store import BenchStore

    run = await latest_finished(ledger)
    if run is None:
        return None
    return measured(run.id, await BenchStore(ledger).samples(run.id))


def load_measured_blocking(ledger: Ledger) -> Measured | None:
    """:func:`load_measured` from synchronous code (the router is built on first use, in or
    outside an event loop): one query on the ledger's thread, waited for here."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polyroute-learn") as ex:
        return ex.submit(asyncio.run, load_measured(ledger)).result()


# -- replaying a run through the strategies -------------------------------------------


@dataclass(frozen=True, slots=True)
class StrategyScore:
    """One strategy over a replayed run."""

    strategy: str
    cases: int
    quality: float
    """Mean quality of the pairs it picked, on their own results for each case."""
    cost_usd: float
    """Total cost of its picks (one call per case, at the pair's mean cost for it)."""
    quality_retained: float | None
    """Its quality over the best single pair's (``None``: that pair scored 0)."""
    cost_saved: float | None
    """``1 - cost / best pair's cost`` (``None``: the best pair cost nothing)."""
    picks: Mapping[str, int]
    """``"provider/model"`` -> cases it sent there."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "cases": self.cases,
            "quality": self.quality,
            "cost_usd": self.cost_usd,
            "quality_retained": self.quality_retained,
            "cost_saved": self.cost_saved,
            "picks": dict(self.picks),
        }


@dataclass(frozen=True, slots=True)
class RoutingEvaluation:
    run_id: int
    best_pair: str
    """The pair with the highest mean quality over every case: the baseline."""
    best_quality: float
    best_cost_usd: float
    strategies: tuple[StrategyScore, ...]
    choices: Mapping[str, Mapping[str, str]]
    """Case id -> strategy -> ``"provider/model"`` it picked."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "baseline": {
                "pair": self.best_pair,
                "quality": self.best_quality,
                "cost_usd": self.best_cost_usd,
            },
            "strategies": [s.as_dict() for s in self.strategies],
            "cases": {case: dict(picks) for case, picks in self.choices.items()},
        }


@dataclass(frozen=True, slots=True)
class _Result:
    """One pair's stored results on one case: mean grade (failures count 0) and cost."""

    quality: float
    cost_usd: float
    prompt_tokens: int


def _results(samples: Sequence[Sample]) -> dict[tuple[str, tuple[str, str]], _Result]:
    grouped: dict[tuple[str, tuple[str, str]], list[Sample]] = {}
    for s in samples:
        grouped.setdefault((s.case_id, (s.provider, s.model)), []).append(s)
    return {
        key: _Result(
            quality=sum((s.score or 0.0) if s.ok else 0.0 for s in group) / len(group),
            cost_usd=sum(s.cost_usd or 0.0 for s in group) / len(group),
            prompt_tokens=round(statistics.median(s.prompt_tokens for s in group)),
        )
        for key, group in grouped.items()
    }


def _complexity(task_type: str) -> Complexity:
    """A case's task type as a request's complexity (a suite's own types, e.g. coding: medium)."""
    for c in QUALITY_FLOOR:
        if c == task_type:
            return c
    return "medium"


def evaluate_routing(
    config: Config,
    catalog: Catalog,
    run: RunInfo,
    samples: Sequence[Sample],
    strategies: Sequence[str] = BUILTIN_STRATEGIES,
) -> RoutingEvaluation:
    """Replay ``run`` through each strategy (see the module docs). Pairs of the run that the
    config no longer serves cannot be picked; a case no strategy can route is skipped."""
    from polyroute.router._router import Router
    from polyroute.router.stats import LatencyStats

    if not samples:
        raise BenchError(f"bench run {run.id} has no samples to replay")
    results = _results(samples)
    cases: dict[str, str] = {}
    for s in samples:
        cases.setdefault(s.case_id, s.task_type)
    pairs = sorted({p for _, p in results})
    learned = measured(run.id, samples)

    def totals(pair: tuple[str, str]) -> tuple[float, float, int]:
        got = [results[(c, pair)] for c in cases if (c, pair) in results]
        return sum(r.quality for r in got), sum(r.cost_usd for r in got), len(got)

    # the baseline: the pair with the best mean quality over the cases it ran, then cheapest
    best = max(pairs, key=lambda p: (totals(p)[0] / max(1, totals(p)[2]), -totals(p)[1]))
    best_q, best_cost, _ = totals(best)
    router = Router(config, catalog, LatencyStats(), measured=learned)
    providers = frozenset(p for p, _ in pairs)
    models = frozenset(m for _, m in pairs)
    measured_pairs = set(pairs)

    choices: dict[str, dict[str, str]] = {}
    scores: list[StrategyScore] = []
    routed: dict[str, list[tuple[str, tuple[str, str]]]] = {name: [] for name in strategies}
    for case, task_type in cases.items():
        prompt_tokens = results[(case, best)].prompt_tokens if (case, best) in results else 0
        for name in strategies:
            ctx = RoutingContext(
                messages=(),
                prompt_tokens=prompt_tokens,
                complexity=_complexity(task_type),
                strategy=name,
                providers=providers,
                models=models,
            )
            try:
                decision = router.decide(ctx)
            except NoCandidateError:
                continue
            ranked = [(decision.provider, decision.model)]
            ranked += [(t.provider, t.model) for t in decision.fallbacks]
            pick = next((p for p in ranked if p in measured_pairs and (case, p) in results), None)
            if pick is None:
                continue
            routed[name].append((case, pick))
            choices.setdefault(case, {})[name] = f"{pick[0]}/{pick[1]}"

    # the baseline over the cases every strategy was scored on
    for name in strategies:
        picks = routed[name]
        q = sum(results[(c, p)].quality for c, p in picks)
        cost = sum(results[(c, p)].cost_usd for c, p in picks)
        common = [(c, p) for c, p in picks if (c, best) in results]
        base_q = sum(results[(c, best)].quality for c, _ in common)
        base_cost = sum(results[(c, best)].cost_usd for c, _ in common)
        common_q = sum(results[(c, p)].quality for c, p in common)
        common_cost = sum(results[(c, p)].cost_usd for c, p in common)
        count: dict[str, int] = {}
        for _, p in picks:
            count[f"{p[0]}/{p[1]}"] = count.get(f"{p[0]}/{p[1]}", 0) + 1
        scores.append(
            StrategyScore(
                strategy=name,
                cases=len(picks),
                quality=q / len(picks) if picks else 0.0,
                cost_usd=cost,
                quality_retained=common_q / base_q if base_q > 0 else None,
                cost_saved=1 - common_cost / base_cost if base_cost > 0 else None,
                picks=count,
            )
        )
    n = sum(1 for c in cases if (c, best) in results)
    return RoutingEvaluation(
        run_id=run.id,
        best_pair=f"{best[0]}/{best[1]}",
        best_quality=best_q / n if n else 0.0,
        best_cost_usd=best_cost,
        strategies=tuple(scores),
        choices=choices,
    )


async def evaluate_stored(pr: Polyroute, run_id: int | None = None) -> RoutingEvaluation:
    """``polyroute bench --evaluate-routing [--run RUN]``: replay run ``run_id`` (default: the
    latest finished one) through every built-in strategy, as ``pr``'s config routes."""
    from polyroute.benchmark._store import BenchStore

    store = BenchStore(pr.ledger)
    run = await store.run(run_id) if run_id is not None else await latest_finished(pr.ledger)
    if run is None:
        raise UnknownRunError("no finished benchmark run to replay: run `polyroute bench` first")
    return evaluate_routing(pr.config, pr.catalog, run, await store.samples(run.id))


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def evaluation_table(ev: RoutingEvaluation) -> Table:
    """The replay as a rich table: per strategy, quality kept and cost saved against the
    best single pair."""
    from rich.table import Table

    t = Table(
        title=f"bench run {ev.run_id} replayed through each strategy, against always "
        f"{ev.best_pair} (quality {ev.best_quality:.2f}, ${ev.best_cost_usd:.4f})"
    )
    for name in ("strategy", "cases", "quality", "quality kept", "cost USD", "cost saved"):
        t.add_column(name, justify="left" if name == "strategy" else "right")
    t.add_column("picks")
    for s in ev.strategies:
        picks = ", ".join(f"{pair} x{n}" for pair, n in sorted(s.picks.items()))
        t.add_row(
            s.strategy,
            str(s.cases),
            f"{s.quality:.2f}",
            _share(s.quality_retained),
            f"{s.cost_usd:.4f}",
            _share(s.cost_saved),
            picks or "-",
        )
    return t
