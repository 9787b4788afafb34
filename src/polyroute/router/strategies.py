"""The built-in routing strategies, and loading one by name.

========== ==================================================================
``cost``        cheapest estimated cost first; unpriced models last (never free);
                ties by quality
``quality``     models below ``QUALITY_FLOOR[complexity]`` excluded; highest
                catalog quality first; ties by cost
``performance`` lowest learned latency first (time to first token for streams,
                where learned); pairs with no data after those with data, local
                ones first among them
``balanced``    a weighted sum of each candidate's own normalised cost, its
                quality and its own normalised latency (weights from config)
``carbon``      least estimated gCO2e for this request, above the quality floor
========== ==================================================================

Every strategy is a :class:`~polyroute.router.context.Strategy`: ``rank()``
takes :class:`Candidate` objects. The router does not build one object per
(provider, model) per request, though: built-ins also take a :class:`Pool`,
the same data as parallel columns, through :meth:`BuiltinStrategy.order`, and
``rank()`` is that same method behind a conversion. Rows of a pool arrive in
descending catalog quality, and every sort here is stable, so equal keys stay
in quality order.

``confidence`` says how much a ranking rests on known data rather than
defaults: a priced winner, learned latencies, a known model size.

Carbon estimate. Compute per token is ``2 x params`` FLOPs (a transformer's
forward pass; Kaplan et al. 2020, "Scaling Laws for Neural Language Models"),
turned into energy at an effective 1e11 FLOP per joule. That is Epoch AI's
baseline in "How much energy does ChatGPT use?" (2025): an H100 at 10 %
utilisation drawing 70 % of its server's 1,275 W share, with a PUE of 1.2,
puts a 500-token GPT-4o answer (100B active parameters assumed) at 1e14 FLOP
and ~0.3 Wh, i.e. ~9e10 FLOP/J. So ``J/token = 0.02 x params_b``, applied to
prompt plus output tokens (prefill runs at higher utilisation, so this errs
high for long prompts; for mixture-of-experts models the active parameters are
what counts, and the catalog's ``params_b`` is what it knows). Times the
provider's ``carbon_intensity`` (gCO2e/kWh), or 475 when it sets none: the
IEA's world average for 2018 (its Electricity 2025 report gives 445 for 2024);
local providers too, unless set. Models of unknown size rank after every known
one, cheapest first (price as a proxy for size).
"""

from __future__ import annotations

import importlib
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from polyroute.config import BalancedWeights
from polyroute.errors import ConfigError
from polyroute.router.context import (
    BUILTIN_STRATEGIES,
    QUALITY_FLOOR,
    Candidate,
    Complexity,
    Ranking,
    RoutingContext,
    Scored,
    Strategy,
)

DEFAULT_CARBON_INTENSITY = 475.0
"""gCO2e/kWh for providers that set none: a world-average grid (IEA, 2018 figure)."""
FLOP_PER_JOULE = 1e11
"""Effective inference efficiency (see the module docstring)."""
_KWH = 3.6e6  # joules

_INF = math.inf
_NO_DATA_LOCAL = -1e300  # a speed score below every real one, above -inf (no data, remote)


@dataclass(slots=True)  # not frozen: one is built per decision, and a frozen init costs µs
class Pool:
    """Candidates as parallel columns, indexed by row: what built-in strategies rank.

    Columns may cover more rows than ``rows`` (the router passes its whole table);
    only ``rows`` are candidates, and they come in descending catalog quality.
    Treat it as read-only.
    """

    rows: Sequence[int]
    """The candidates' rows, highest catalog quality first."""
    label: Sequence[str]
    """``"provider/model"``."""
    provider: Sequence[str]
    quality: Sequence[float]
    cost: Sequence[float | None]
    """Estimated USD of this request (``None``: unpriced)."""
    latency: Sequence[float | None]
    """Learned speed: time to first token for streams where known, else total latency."""
    samples: Sequence[int]
    local: Sequence[bool]
    carbon_intensity: Sequence[float | None]
    params_b: Sequence[float | None]
    floor_applied: bool = False
    """The router already excluded rows below the quality floor (and listed them), unless
    none met it: then ``rows`` has them all."""

    @classmethod
    def of(cls, candidates: Sequence[Candidate], ctx: RoutingContext) -> Pool:
        n = len(candidates)
        quality = [c.quality for c in candidates]
        return cls(
            rows=sorted(range(n), key=quality.__getitem__, reverse=True),
            label=[f"{c.provider}/{c.model}" for c in candidates],
            provider=[c.provider for c in candidates],
            quality=quality,
            cost=[c.est_cost_usd for c in candidates],
            latency=[
                c.ttft_ms if ctx.stream and c.ttft_ms is not None else c.latency_ms
                for c in candidates
            ],
            samples=[c.samples for c in candidates],
            local=[c.local for c in candidates],
            carbon_intensity=[c.carbon_intensity for c in candidates],
            params_b=[c.entry.params_b for c in candidates],
        )


@dataclass(frozen=True, slots=True)
class Order:
    """A built-in strategy's verdict on a pool."""

    rows: Sequence[int]
    """Best first."""
    score: Sequence[float]
    """Per row (the pool's indexing), higher is better; ``-inf``: unknown."""
    reasoning: str
    confidence: float
    excluded: Sequence[tuple[int, str]] = ()


class BuiltinStrategy:
    """Base of the built-ins: ``order()`` on columns, and ``rank()`` on candidates."""

    __slots__ = ()
    name = ""
    uses_cost = True
    """Reads the cost column for most rows (the router then computes it for every row)."""
    uses_latency = False
    """Reads the latency column for most rows."""
    uses_floor = False
    """Excludes rows below ``QUALITY_FLOOR`` (the router may do it first: ``floor_applied``)."""

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        raise NotImplementedError

    def rank(self, candidates: Sequence[Candidate], ctx: RoutingContext) -> Ranking:
        if not candidates:
            return Ranking((), f"{self.name}: no candidates", 0.0)
        o = self.order(Pool.of(candidates, ctx), ctx)
        return Ranking(
            ranked=[Scored(candidates[i], o.score[i]) for i in o.rows],
            reasoning=o.reasoning,
            confidence=o.confidence,
            excluded=[(candidates[i], why) for i, why in o.excluded],
        )


class CostStrategy(BuiltinStrategy):
    __slots__ = ()
    name = "cost"

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        score = [-c if c is not None else -_INF for c in pool.cost]
        ranked = sorted(pool.rows, key=score.__getitem__, reverse=True)
        best = ranked[0]
        cost = pool.cost[best]
        if cost is None:
            why = (
                f"{pool.label[best]}: no candidate has a price (unpriced is never taken as "
                f"free), so the highest quality ({pool.quality[best]:.2f}) goes first"
            )
            return Order(ranked, score, why, 0.2)
        why = f"{pool.label[best]} is the cheapest at an estimated {usd(cost)}"
        confidence = 1.0
        if len(ranked) > 1:
            second = pool.cost[ranked[1]]
            if second is None:
                why += "; the others are unpriced"
            elif second == cost:
                why += f", tied with {pool.label[ranked[1]]}: higher quality first"
                confidence = 0.7
            else:
                why += f" (next: {pool.label[ranked[1]]} at {usd(second)})"
        return Order(ranked, score, why, confidence)


class QualityStrategy(BuiltinStrategy):
    __slots__ = ()
    name = "quality"
    uses_floor = True

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        rows, excluded, note = _above_floor(pool, ctx)
        cost_key = [c if c is not None else _INF for c in pool.cost]
        ranked = sorted(rows, key=cost_key.__getitem__)  # ties by cost: cheaper first
        quality = pool.quality
        ranked.sort(key=quality.__getitem__, reverse=True)
        best = ranked[0]
        why = f"{pool.label[best]} has the highest catalog quality ({quality[best]:.2f})"
        if len(ranked) > 1 and quality[ranked[1]] == quality[best]:
            why += f", tied with {pool.label[ranked[1]]} and cheaper"
        return Order(ranked, quality, why + note, 0.5 if note else 0.9, excluded)


class PerformanceStrategy(BuiltinStrategy):
    __slots__ = ()
    name = "performance"
    uses_cost = False
    uses_latency = True

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        score = [
            -x if x is not None else _NO_DATA_LOCAL if loc else -_INF
            for x, loc in zip(pool.latency, pool.local, strict=True)
        ]
        ranked = sorted(pool.rows, key=score.__getitem__, reverse=True)
        best = ranked[0]
        lat = pool.latency[best]
        metric = "time to first token" if ctx.stream else "latency"
        if lat is None:
            where = "local, so it goes first" if pool.local[best] else "the highest quality"
            why = f"no latency learned yet; {pool.label[best]} is {where}"
            return Order(ranked, score, why, 0.25)
        n = pool.samples[best]
        why = f"{pool.label[best]} has the lowest learned {metric}: {lat:,.0f} ms over {n} calls"
        return Order(ranked, score, why, 0.5 + 0.5 * min(1.0, n / 20))


class BalancedStrategy(BuiltinStrategy):
    """``w_cost x cost_score + w_quality x quality + w_perf x speed_score``, weights summing to 1.

    cost_score: the candidate's own estimated cost scaled between the cheapest
    (1.0) and the priciest (0.0) candidate; unpriced 0. speed_score: its own
    learned latency scaled the same way among those with data; no data 0.5
    (neutral), and 0.5 for all when fewer than two distinct latencies exist.
    """

    __slots__ = ("w_cost", "w_perf", "w_quality")
    name = "balanced"
    uses_latency = True

    def __init__(self, weights: BalancedWeights | None = None) -> None:
        w = weights or BalancedWeights()
        total = w.cost + w.quality + w.performance
        if total <= 0:
            self.w_cost = self.w_quality = self.w_perf = 1 / 3
        else:
            self.w_cost = w.cost / total
            self.w_quality = w.quality / total
            self.w_perf = w.performance / total

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        rows, cost, lat, quality = pool.rows, pool.cost, pool.latency, pool.quality
        if len(rows) == len(cost):
            priced = [c for c in cost if c is not None]
            known = [x for x in lat if x is not None]
        else:
            priced = [c for i in rows if (c := cost[i]) is not None]
            known = [x for i in rows if (x := lat[i]) is not None]
        cost_scale = _Scale(priced, missing=0.0, flat=1.0)
        speed_scale = _Scale(known, missing=0.5, flat=0.5)
        wc, wq, wp = self.w_cost, self.w_quality, self.w_perf
        # each sub-score is linear: w x (1 - (v - lo) / span) = a - b x v
        ac, bc = wc * cost_scale.at_lo, wc * cost_scale.slope
        al, bl = wp * speed_scale.at_lo, wp * speed_scale.slope
        half = wp * speed_scale.missing
        score = [
            wq * q
            + (ac - bc * c if c is not None else 0.0)
            + (al - bl * x if x is not None else half)
            for q, c, x in zip(quality, cost, lat, strict=False)
        ]
        ranked = sorted(rows, key=score.__getitem__, reverse=True)
        best = ranked[0]
        why = (
            f"{pool.label[best]} scores {score[best]:.3f}: cost {cost_scale(cost[best]):.2f}, "
            f"quality {quality[best]:.2f}, speed {speed_scale(lat[best]):.2f} "
            f"(weights {wc:.2f}/{wq:.2f}/{wp:.2f})"
        )
        margin = score[best] - score[ranked[1]] if len(ranked) > 1 else 1.0
        return Order(ranked, score, why, min(1.0, 0.5 + 5 * margin))


class _Scale:
    """``1 - (v - lo) / (hi - lo)`` over ``values`` (lowest 1.0, highest 0.0) as
    ``at_lo - slope x v``; ``flat`` for every value when they do not spread."""

    __slots__ = ("at_lo", "missing", "slope")

    def __init__(self, values: Sequence[float], missing: float, flat: float) -> None:
        lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
        span = hi - lo
        self.missing = missing
        self.slope = 1 / span if span > 0 else 0.0
        self.at_lo = 1 + lo / span if span > 0 else flat

    def __call__(self, v: float | None) -> float:
        return self.missing if v is None else self.at_lo - self.slope * v


class CarbonStrategy(BuiltinStrategy):
    __slots__ = ()
    name = "carbon"
    uses_floor = True

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        rows, excluded, note = _above_floor(pool, ctx)
        tokens = ctx.prompt_tokens + ctx.output_tokens
        per = grams_co2e(1.0, tokens, 1.0)  # per billion params per gCO2e/kWh
        default = DEFAULT_CARBON_INTENSITY
        score = [
            -per * p * (ci if ci is not None else default) if p is not None else -_INF
            for p, ci in zip(pool.params_b, pool.carbon_intensity, strict=True)
        ]
        ranked = sorted(rows, key=score.__getitem__, reverse=True)
        n_known = len(ranked)
        while n_known and score[ranked[n_known - 1]] == -_INF:
            n_known -= 1
        if n_known < len(ranked):  # size unknown: cheapest first, price standing in for size
            cost = pool.cost
            key = {i: c if (c := cost[i]) is not None else _INF for i in ranked[n_known:]}
            ranked[n_known:] = sorted(ranked[n_known:], key=key.__getitem__)
        best = ranked[0]
        params, ci = pool.params_b[best], pool.carbon_intensity[best]
        if params is None:
            why = (
                f"no candidate's size is known; {pool.label[best]} is the cheapest "
                "(price standing in for size)"
            )
            return Order(ranked, score, why + note, 0.3, excluded)
        grid = f"{ci:g} gCO2e/kWh" if ci is not None else f"{default:g} gCO2e/kWh (default)"
        why = (
            f"{pool.label[best]} emits the least: ~{-score[best]:.3g} gCO2e for {tokens:,} tokens "
            f"({params:g}B params at {grid})"
        )
        confidence = (0.8 if ci is not None else 0.6) * (0.6 if note else 1.0)
        return Order(ranked, score, why + note, confidence, excluded)


def grams_co2e(params_b: float, tokens: int, intensity: float | None) -> float:
    """Estimated gCO2e of ``tokens`` through a ``params_b``-billion-parameter model (module docs)."""
    joules = tokens * 2 * params_b * 1e9 / FLOP_PER_JOULE
    grid = DEFAULT_CARBON_INTENSITY if intensity is None else intensity
    return joules / _KWH * grid


def floor_reason(quality: float, complexity: Complexity) -> str:
    return f"quality {quality:.2f} below the {QUALITY_FLOOR[complexity]:g} floor for {complexity}"


def usd(v: float) -> str:
    """Cents from a dollar up; below, three significant digits (``$0.00123``)."""
    if v >= 1 or v <= 0:
        return f"${v:,.2f}"
    decimals = 2 - math.floor(math.log10(v))
    return f"${v:.{decimals}f}".rstrip("0").rstrip(".")


def _above_floor(
    pool: Pool, ctx: RoutingContext
) -> tuple[Sequence[int], list[tuple[int, str]], str]:
    """Rows meeting the quality floor, the others with why, and a note when none met it."""
    floor = QUALITY_FLOOR[ctx.complexity]
    quality, rows = pool.quality, pool.rows
    if quality[rows[0]] < floor:  # rows come best quality first: none meets it
        note = f" (none meets the {floor:g} quality floor for {ctx.complexity}: ranked all)"
        return rows, [], note
    if pool.floor_applied or quality[rows[-1]] >= floor:
        return rows, [], ""
    cut = below_floor(rows, quality, floor)
    excluded = [(i, floor_reason(quality[i], ctx.complexity)) for i in rows[cut:]]
    return rows[:cut], excluded, ""


def below_floor(rows: Sequence[int], quality: Sequence[float], floor: float) -> int:
    """Where, in ``rows`` sorted by descending quality, the rows below ``floor`` start."""
    return bisect_right(rows, -floor, key=lambda i: -quality[i])  # keeps quality == floor


_BUILTIN: MappingProxyType[str, type[BuiltinStrategy]] = MappingProxyType(
    {
        "cost": CostStrategy,
        "quality": QualityStrategy,
        "performance": PerformanceStrategy,
        "balanced": BalancedStrategy,
        "carbon": CarbonStrategy,
    }
)


def load_strategy(name: str, weights: BalancedWeights | None = None) -> Strategy:
    """A built-in by name, or ``"pkg.module:Class"`` imported and made with no arguments."""
    if name == "balanced":
        return BalancedStrategy(weights)
    builtin = _BUILTIN.get(name)
    if builtin is not None:
        return builtin()
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"strategy {name!r}: not a built-in ({', '.join(BUILTIN_STRATEGIES)}) "
            "nor 'pkg.module:Class'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"strategy {name!r}: cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ConfigError(f"strategy {name!r}: module {module_name!r} has no {attr!r}")
    if not callable(factory):
        raise ConfigError(f"strategy {name!r}: {attr!r} is not a class")
    try:
        strategy = factory()
    except TypeError as exc:
        raise ConfigError(
            f"strategy {name!r}: {attr} cannot be made with no arguments: {exc}"
        ) from None
    if not callable(getattr(strategy, "rank", None)):
        raise ConfigError(f"strategy {name!r}: {attr} has no rank(candidates, ctx) method")
    return cast(Strategy, strategy)
