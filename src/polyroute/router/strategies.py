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

Carbon estimate: :func:`polyroute.carbon.grams_co2e` (the model and its sources are in
:mod:`polyroute.carbon`; the ledger's ``carbon_g`` uses the same function). Models of unknown
size rank after every known one, cheapest first (price as a proxy for size).
"""

from __future__ import annotations

import importlib
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, TypeVar, cast, overload

from polyroute._frozen import fast_init
from polyroute._plugins import STRATEGIES, installed, load
from polyroute.carbon import DEFAULT_CARBON_INTENSITY, grams_co2e
from polyroute.config import BalancedWeights
from polyroute.errors import ConfigError
from polyroute.errors import usd_text as usd
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

_INF = math.inf
_NO_DATA_LOCAL = -1e300  # a speed score below every real one, above -inf (no data, remote)

_T = TypeVar("_T")
Scores = Sequence[float] | Mapping[int, float]
"""A strategy's score per row: a list over the whole table, or a dict over the candidates."""


@fast_init
@dataclass(frozen=True, slots=True)
class Pool:
    """Candidates as parallel columns, indexed by row: what built-in strategies rank.

    Columns may cover more rows than ``rows`` (the router passes its whole table);
    only ``rows`` are candidates, and they come in descending catalog quality.
    Treat the columns as read-only.
    """

    new: ClassVar[type[Pool]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

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
    cost_span: tuple[float, float] | None = None
    """The lowest and highest estimated cost among ``rows``, when the router has them at
    hand (``None``: not given, or no row is priced)."""
    latency_span: tuple[float, float] | None = None
    """The same for ``latency``, among the rows with data."""
    latency_key: object = None
    """When not ``None``: equal keys mean the same ``latency`` values and ``latency_span``
    as an earlier pool's, so what a strategy derived from them may be reused."""
    quality_source: str = "catalog"
    """``catalog``, or ``bench``: ``quality`` is measured where the run has samples (the
    router names each winner's basis in the decision)."""

    @property
    def whole(self) -> bool:
        """``rows`` are every row of the columns (nothing was filtered out)."""
        return len(self.rows) == len(self.label)

    @property
    def sparse(self) -> bool:
        """``rows`` are a small part of the columns: computing a value for each of them
        costs less than computing it for every row."""
        return 3 * len(self.rows) < len(self.label)

    def column(self, values: Sequence[_T]) -> Sequence[_T]:
        """``values`` for one comprehension to compute a result per candidate from: the whole
        column (indexed by row, non-candidates included) unless the pool is sparse, then
        ``values[i]`` for each ``i`` in ``rows``. :meth:`by_row` indexes the results by row."""
        return [values[i] for i in self.rows] if self.sparse else values

    def by_row(self, values: list[float]) -> Scores:
        """Results computed over :meth:`column` columns, indexed by row."""
        return dict(zip(self.rows, values, strict=True)) if self.sparse else values

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


class CostColumn(Sequence[float | None]):
    """A request's estimated cost per row, ``prompt x per_input[i] + output x per_output[i]``
    (``None``, unpriced, where ``per_input[i]`` is), each computed when read. The router
    passes it to strategies that read the costs of a few rows; its terms let a strategy
    compute costs within its own comprehension."""

    __slots__ = ("_values", "output", "per_input", "per_output", "prompt")

    def __init__(
        self,
        prompt: float,
        output: float,
        per_input: Sequence[float | None],
        per_output: Sequence[float],
    ) -> None:
        self.prompt, self.output = prompt, output
        """Tokens in and out."""
        self.per_input, self.per_output = per_input, per_output
        """USD per token, per row."""
        self._values: list[float | None] | None = None

    def values(self) -> list[float | None]:
        """Every row's cost (computed once)."""
        if self._values is None:
            p, o = self.prompt, self.output
            self._values = [
                p * a + o * b if a is not None else None
                for a, b in zip(self.per_input, self.per_output, strict=True)
            ]
        return self._values

    def take(self, rows: Sequence[int]) -> list[float | None]:
        """The costs of ``rows``, in one comprehension."""
        if self._values is not None:
            return [self._values[i] for i in rows]
        p, o, per_input, per_output = self.prompt, self.output, self.per_input, self.per_output
        return [
            p * a + o * per_output[i] if (a := per_input[i]) is not None else None for i in rows
        ]

    @overload
    def __getitem__(self, i: int) -> float | None: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[float | None]: ...
    def __getitem__(self, i: int | slice) -> float | Sequence[float | None] | None:
        if self._values is not None or isinstance(i, slice):
            return self.values()[i]
        a = self.per_input[i]
        return None if a is None else self.prompt * a + self.output * self.per_output[i]

    def __len__(self) -> int:
        return len(self.per_input)

    def __iter__(self) -> Iterator[float | None]:
        return iter(self.values())


@dataclass(slots=True)  # not frozen, like Pool: one per decision
class Order:
    """A built-in strategy's verdict on a pool."""

    rows: Sequence[int]
    """Best first (possibly a :class:`Ranked`, completed when read past its head)."""
    score: Scores
    """Per row (the pool's indexing), higher is better; ``-inf``: unknown."""
    reasoning: str
    confidence: float
    excluded: Sequence[tuple[int, str]] = ()


class Ranked(Sequence[int]):
    """Rows best first, ranked only as far as they are read: ``pieces`` yields the ranking in
    consecutive pieces, each made when a read first goes past the ones before. A decision
    reads the winner and a few fallbacks; ``rank()`` reads everything."""

    __slots__ = ("_len", "_pieces", "_rows")

    def __init__(self, pieces: Iterator[list[int]], n: int) -> None:
        self._rows: list[int] = []
        self._pieces, self._len = pieces, n

    def _reach(self, k: int) -> bool:
        """Ranked up to index ``k`` at least (``False``: there are not that many rows)."""
        rows = self._rows
        while len(rows) <= k:
            piece = next(self._pieces, None)
            if piece is None:
                return False
            rows += piece
        return True

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, k: int) -> int: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[int]: ...
    def __getitem__(self, k: int | slice) -> int | Sequence[int]:
        if isinstance(k, int) and k >= 0:
            self._reach(k)
        else:
            self._reach(self._len - 1)
        return self._rows[k]

    def __iter__(self) -> Iterator[int]:
        rows, k = self._rows, 0
        while k < len(rows) or self._reach(k):
            yield rows[k]
            k += 1


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
    uses_spans = False
    """Reads the lowest and highest cost and latency (``Pool.cost_span``, ``latency_span``)."""

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
        score = pool.by_row([-c if c is not None else -_INF for c in pool.column(pool.cost)])
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
        quality, cost = pool.quality, pool.cost
        # rows come in descending quality: ranking them is ordering each run of equal quality
        # by cost, and only the first run is needed up front (the winner, likely fallbacks)
        best_run = below_floor(rows, quality, quality[rows[0]])
        head = _cheapest_first(rows[:best_run], cost)

        def pieces() -> Iterator[list[int]]:
            yield head
            if best_run < len(rows):
                rest = _cheapest_first(rows[best_run:], cost)  # ties by cost: cheaper first
                rest.sort(key=quality.__getitem__, reverse=True)
                yield rest

        best = head[0]
        what = "catalog quality" if pool.quality_source == "catalog" else "quality"
        why = f"{pool.label[best]} has the highest {what} ({quality[best]:.2f})"
        if len(head) > 1:
            why += f", tied with {pool.label[head[1]]} and cheaper"
        ranked = Ranked(pieces(), len(rows))
        return Order(ranked, quality, why + note, 0.5 if note else 0.9, excluded)


class PerformanceStrategy(BuiltinStrategy):
    __slots__ = ()
    name = "performance"
    uses_cost = False
    uses_latency = True

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        speed = [
            -x if x is not None else _NO_DATA_LOCAL if loc else -_INF
            for x, loc in zip(pool.column(pool.latency), pool.column(pool.local), strict=True)
        ]
        score = pool.by_row(speed)
        ranked = sorted(pool.rows, key=score.__getitem__, reverse=True)
        best = ranked[0]
        lat = pool.latency[best]
        metric = "time to first token" if ctx.stream else "latency"
        if lat is None:
            where = "local, so it goes first" if pool.local[best] else "the highest quality"
            why = f"no latency learned yet; {pool.label[best]} is {where}"
            return Order(ranked, score, why, 0.25)
        n = pool.samples[best]
        basis = f"over {n} calls" if n else "seeded by a bench run, no live call yet"
        why = f"{pool.label[best]} has the lowest learned {metric}: {lat:,.0f} ms {basis}"
        return Order(ranked, score, why, 0.5 + 0.5 * min(1.0, n / 20))


class BalancedStrategy(BuiltinStrategy):
    """``w_cost x cost_score + w_quality x quality + w_perf x speed_score``, weights summing to 1.

    cost_score: the candidate's own estimated cost scaled between the cheapest
    (1.0) and the priciest (0.0) candidate; unpriced 0. speed_score: its own
    learned latency scaled the same way among those with data; no data 0.5
    (neutral), and 0.5 for all when fewer than two distinct latencies exist.
    """

    __slots__ = ("_bases", "_weighted", "_weighted_of", "w_cost", "w_perf", "w_quality")
    name = "balanced"
    uses_cost = False  # computed within the score when the pool is whole (see order())
    uses_latency = True
    uses_spans = True

    def __init__(self, weights: BalancedWeights | None = None) -> None:
        w = weights or BalancedWeights()
        total = w.cost + w.quality + w.performance
        if total <= 0:
            self.w_cost = self.w_quality = self.w_perf = 1 / 3
        else:
            self.w_cost = w.cost / total
            self.w_quality = w.quality / total
            self.w_perf = w.performance / total
        self._weighted_of: Sequence[float] | None = None
        self._weighted: Sequence[float] = ()
        self._bases: dict[object, list[float]] = {}  # a few: streams and not, say

    def _weighted_quality(self, quality: Sequence[float]) -> Sequence[float]:
        """``w_quality x quality`` per row, made again only for another column (the router
        passes the same one every time)."""
        if quality is not self._weighted_of:
            self._weighted = [self.w_quality * q for q in quality]
            self._weighted_of = quality
            self._bases.clear()  # made from the former column
        return self._weighted

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        quality = self._weighted_quality(pool.quality)
        cost, lat = pool.cost, pool.latency
        # costs from their terms within the score's comprehension when the cost span is at
        # hand (a whole pool): one pass fewer; else the cost column, computed if need be
        terms = cost if isinstance(cost, CostColumn) and pool.cost_span is not None else None
        if isinstance(cost, CostColumn) and terms is None:
            cost = cost.values()
        cost_scale = _Scale(pool.cost_span or _span(pool, cost), missing=0.0, flat=1.0)
        speed_scale = _Scale(pool.latency_span or _span(pool, lat), missing=0.5, flat=0.5)
        wc, wq, wp = self.w_cost, self.w_quality, self.w_perf
        # each sub-score is linear: w x (1 - (v - lo) / span) = a - b x v
        ac, bc = wc * cost_scale.at_lo, wc * cost_scale.slope
        al, bl = wp * speed_scale.at_lo, wp * speed_scale.slope
        half = wp * speed_scale.missing
        values: list[float]
        if terms is not None:  # a whole pool: the sums below, with c = p x a + o x b
            # quality and speed terms change only with the latencies: summed once per change
            key = pool.latency_key
            base = self._bases.get(key) if key is not None else None
            if base is None:
                base = [
                    q + (al - bl * x if x is not None else half)
                    for q, x in zip(quality, lat, strict=True)
                ]
                if key is not None:
                    if len(self._bases) >= 4:  # stale keys of older latencies
                        self._bases.clear()
                    self._bases[key] = base
            p, o = terms.prompt, terms.output
            values = [
                u + (ac - bc * (p * a + o * b)) if a is not None else u
                for u, a, b in zip(base, terms.per_input, terms.per_output, strict=True)
            ]
        else:  # summed in the same order as above, so both paths agree to the last bit
            values = [
                (q + (al - bl * x if x is not None else half))
                + (ac - bc * c if c is not None else 0.0)
                for q, c, x in zip(
                    pool.column(quality), pool.column(cost), pool.column(lat), strict=True
                )
            ]
        score = pool.by_row(values)
        ranked = sorted(pool.rows, key=score.__getitem__, reverse=True)
        best = ranked[0]
        why = (
            f"{pool.label[best]} scores {score[best]:.3f}: "
            f"cost {cost_scale(cost[best]):.2f}, quality {pool.quality[best]:.2f}, "
            f"speed {speed_scale(lat[best]):.2f} (weights {wc:.2f}/{wq:.2f}/{wp:.2f})"
        )
        margin = score[best] - score[ranked[1]] if len(ranked) > 1 else 1.0
        return Order(ranked, score, why, min(1.0, 0.5 + 5 * margin))


def _span(pool: Pool, column: Sequence[float | None]) -> tuple[float, float] | None:
    """The lowest and highest value of ``column`` among the candidates, ``None`` left out."""
    if pool.whole:
        known = [v for v in column if v is not None]
    else:
        known = [v for i in pool.rows if (v := column[i]) is not None]
    if not known:
        return None
    known.sort()  # then its ends: faster than min() and max() on floats
    return known[0], known[-1]


class _Scale:
    """``1 - (v - lo) / (hi - lo)`` over values spanning ``lo, hi`` (lowest 1.0, highest
    0.0) as ``at_lo - slope x v``; ``flat`` for every value when they do not spread."""

    __slots__ = ("at_lo", "missing", "slope")

    def __init__(self, lo_hi: tuple[float, float] | None, missing: float, flat: float) -> None:
        lo, hi = lo_hi or (0.0, 0.0)
        span = hi - lo
        self.missing = missing
        self.slope = 1 / span if span > 0 else 0.0
        self.at_lo = 1 + lo / span if span > 0 else flat

    def __call__(self, v: float | None) -> float:
        return self.missing if v is None else self.at_lo - self.slope * v


class CarbonStrategy(BuiltinStrategy):
    __slots__ = ()
    name = "carbon"
    uses_cost = False  # read for the rows of unknown size only (when read that far)
    uses_floor = True

    def order(self, pool: Pool, ctx: RoutingContext) -> Order:
        rows, excluded, note = _above_floor(pool, ctx)
        tokens = ctx.prompt_tokens + ctx.output_tokens
        per = grams_co2e(1.0, tokens, 1.0)  # per billion params per gCO2e/kWh
        default = DEFAULT_CARBON_INTENSITY
        score = pool.by_row(
            [
                -per * p * (ci if ci is not None else default) if p is not None else -_INF
                for p, ci in zip(
                    pool.column(pool.params_b), pool.column(pool.carbon_intensity), strict=True
                )
            ]
        )
        by_score = sorted(rows, key=score.__getitem__, reverse=True)
        n_known = bisect_left(by_score, _INF, key=lambda i: -score[i])  # then -inf: unknown

        def pieces() -> Iterator[list[int]]:
            yield by_score[:n_known]
            if n_known < len(by_score):  # size unknown: cheapest first, price for size
                yield _cheapest_first(by_score[n_known:], pool.cost)

        ranked = Ranked(pieces(), len(by_score))
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


def floor_reason(quality: float, complexity: Complexity) -> str:
    return f"quality {quality:.2f} below the {QUALITY_FLOOR[complexity]:g} floor for {complexity}"


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


def _cheapest_first(rows: Sequence[int], cost: Sequence[float | None]) -> list[int]:
    """``rows`` by estimated cost, unpriced last; stable."""
    costs = cost.take(rows) if isinstance(cost, CostColumn) else [cost[i] for i in rows]
    key = [c if c is not None else _INF for c in costs]
    return [rows[k] for k in sorted(range(len(rows)), key=key.__getitem__)]


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
    """A built-in by name, an installed one (``polyroute.strategies`` entry point), or
    ``"pkg.module:Class"`` imported; the last two are made with no arguments."""
    if name == "balanced":
        return BalancedStrategy(weights)
    builtin = _BUILTIN.get(name)
    if builtin is not None:
        return builtin()
    module_name, sep, attr = name.partition(":")
    if not sep:
        plugin = installed(STRATEGIES).get(name)
        if plugin is None:
            plugins = ", ".join(sorted(installed(STRATEGIES))) or "none"
            raise ConfigError(
                f"strategy {name!r}: not a built-in ({', '.join(BUILTIN_STRATEGIES)}), "
                f"an installed strategy ({plugins}) nor 'pkg.module:Class'"
            )
        return _made(name, plugin.value.partition(":")[2], load(plugin))
    if not module_name or not attr:
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
    return _made(name, attr, factory)


def _made(name: str, attr: str, factory: object) -> Strategy:
    """``factory()``, checked to be a strategy."""
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
