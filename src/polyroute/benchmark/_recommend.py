"""What a run's summaries recommend: the cost/quality Pareto front and plain-words advice.

Per task type, the *best* pair has the highest measured quality (ties: cheaper,
then faster). An *alternative* is a cheaper or faster pair whose quality lies
within the best pair's 95 % interval: the measurements cannot tell the two apart
on quality, so the cheaper (then faster) one is worth saying. Unpriced pairs
count as the most expensive (their cost is unknown, never free).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from polyroute.benchmark._stats import PairSummary

_SAME = 1.05  # ratios closer to 1 than this are not worth saying


@dataclass(frozen=True, slots=True)
class Recommendation:
    task_type: str
    best: PairSummary
    alternative: PairSummary | None
    """A cheaper or faster pair within the best one's quality interval."""
    text: str


def _cost(s: PairSummary) -> float:
    return math.inf if s.cost_usd_per_task is None else s.cost_usd_per_task


def _latency(s: PairSummary) -> float:
    return math.inf if s.latency_p50_ms is None else s.latency_p50_ms


def _score(s: PairSummary) -> float:
    return s.quality.score if s.quality is not None else -math.inf


def by_task_type(summaries: Iterable[PairSummary]) -> dict[str, list[PairSummary]]:
    """Summaries grouped by task type, task types in the order they first appear."""
    out: dict[str, list[PairSummary]] = {}
    for s in summaries:
        out.setdefault(s.task_type, []).append(s)
    return out


def front(summaries: Sequence[PairSummary]) -> list[PairSummary]:
    """The pairs no other pair beats on both cost and quality (one task type's summaries),
    cheapest first. Pairs without a graded answer are not on it."""
    graded = sorted(
        (s for s in summaries if s.quality is not None),
        key=lambda s: (_cost(s), -_score(s), _latency(s)),
    )
    out: list[PairSummary] = []
    for s in graded:  # cheapest first: on the front iff better than every cheaper one
        if not out or _score(s) > _score(out[-1]):
            out.append(s)
    return out


def pareto(summaries: Iterable[PairSummary]) -> dict[str, list[PairSummary]]:
    """The cost/quality Pareto front of each task type, cheapest first."""
    return {t: front(group) for t, group in by_task_type(summaries).items()}


def _usd(x: float | None) -> str:
    if x is None:
        return "unpriced"
    if x == 0:
        return "free"
    return f"${x:.4f}" if x < 0.01 else f"${x:.2f}"


def _comparison(alt: PairSummary, best: PairSummary) -> list[str]:
    parts: list[str] = []
    la, lb = _latency(alt), _latency(best)
    if la > 0 and math.isfinite(la) and math.isfinite(lb) and lb / la >= _SAME:
        parts.append(f"{lb / la:.1f}x faster")
    ca, cb = _cost(alt), _cost(best)
    if ca == 0 and cb > 0:
        parts.append("free")
    elif ca > 0 and cb / ca >= _SAME:
        parts.append(f"{cb / ca:.1f}x cheaper" if math.isfinite(cb) else _usd(ca) + " per task")
    return parts


def _describe(best: PairSummary) -> str:
    q = best.quality
    assert q is not None
    parts = [f"quality {q.score:.2f} ({q.low:.2f}-{q.high:.2f}, {q.n} graded)"]
    parts.append(f"{_usd(best.cost_usd_per_task)} per task")
    if best.latency_p50_ms is not None:
        parts.append(f"p50 {best.latency_p50_ms:,.0f} ms")
    if best.error_rate > 0:
        parts.append(f"{best.error_rate:.0%} errors")
    return ", ".join(parts)


def recommend_task(task_type: str, summaries: Sequence[PairSummary]) -> Recommendation | None:
    """The recommendation for one task type (``None``: no pair had a graded answer)."""
    graded = [s for s in summaries if s.quality is not None]
    if not graded:
        return None
    best = min(graded, key=lambda s: (-_score(s), _cost(s), _latency(s)))
    assert best.quality is not None
    floor = best.quality.low
    within = [
        s
        for s in graded
        if s is not best
        and _score(s) >= floor
        and (_cost(s) < _cost(best) or _latency(s) * _SAME <= _latency(best))
    ]
    alt = min(within, key=lambda s: (_cost(s), _latency(s), -_score(s)), default=None)
    if alt is None:
        text = f"use {best.pair} for {task_type} tasks: {_describe(best)}"
        return Recommendation(task_type, best, None, text)
    assert alt.quality is not None
    parts = _comparison(alt, best)
    parts.append(f"quality {alt.quality.score:.2f} vs {best.quality.score:.2f}")
    text = (
        f"use {alt.pair} for {task_type} tasks: {', '.join(parts)} "
        f"(within the 95% interval of {best.pair}, the best measured: "
        f"{best.quality.low:.2f}-{best.quality.high:.2f})"
    )
    return Recommendation(task_type, best, alt, text)


def recommendations(summaries: Iterable[PairSummary]) -> list[Recommendation]:
    """One recommendation per task type that has a graded answer."""
    out = []
    for task_type, group in by_task_type(summaries).items():
        r = recommend_task(task_type, group)
        if r is not None:
            out.append(r)
    return out


def recommend(summaries: Iterable[PairSummary]) -> list[str]:
    """The recommendations in plain words, one line per task type."""
    return [r.text for r in recommendations(summaries)]
