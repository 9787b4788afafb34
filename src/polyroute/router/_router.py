"""The router: a request's context in, a :class:`Decision` out, in tens of microseconds.

Candidates are the (provider, model) pairs of enabled providers
(:func:`~polyroute.router.targets.candidate_models`). Everything static about a pair is
computed once, at construction, into parallel columns (one row per pair).

``decide()`` then, in order:

1. leaves out pairs outside ``ctx.providers`` / ``ctx.models`` (not candidates,
   not listed) and lists disabled providers' pairs as excluded ("disabled");
2. excludes, with a reason: providers a check blocks (the facade's keys, breakers,
   health: ``check() -> {provider_id: reason}``), pairs whose cheapest request a budget
   that refused lately could not fit (:mod:`.hints`), missing capabilities, a
   context window smaller than prompt plus ``max_tokens``, an estimated cost
   over ``max_cost_usd`` (an unpriced pair cannot be held to a cap, so it is
   excluded too), a learned latency over ``max_latency_ms`` (no data: kept);
3. lets the strategy rank the rest (it may exclude more, e.g. a quality floor).

Fallbacks: the next pairs in rank order, at most ``router.max_attempts - 1``,
other providers first: a provider that just failed (auth, outage, rate limit)
likely fails for its other models too, so the best pair of each provider not yet
tried comes before a second model of one already in the list.

Measured quality (``[router] quality_source = "bench"``): given a :class:`Measured`,
the quality column is made once per complexity from the run's quality for that task
type, the catalog's where the run has no graded answer; the run's latencies seed the
learned ones; and a decision's reasoning names the winner's basis.

Speed: no per-request object per pair. Columns are tuples read by index; the
built-in strategies rank the columns (``BuiltinStrategy.order``), and objects
are made only for excluded pairs and the few targets. Learned latencies are
flat columns the stats keep current (``LatencyStats.columns``); costs are a
:class:`CostColumn`, computed whole only for strategies (and the cost cap) that
read most rows. Exclusions whose reason depends on static data alone (disabled,
capabilities, the quality floor) are built once and reused; the others (checks,
context window, cost and latency caps) are made when the decision's list is
first read (:class:`Exclusions`). Only a custom strategy gets :class:`Candidate` objects,
built for the eligible pairs.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from polyroute.catalog import Catalog
from polyroute.config import Config, ProviderConfig
from polyroute.errors import NoCandidateError
from polyroute.errors import usd_text as usd
from polyroute.router.context import QUALITY_FLOOR, Candidate, Complexity, RoutingContext, Strategy
from polyroute.router.decision import Decision, Exclusions
from polyroute.router.hints import BudgetHints, Headroom
from polyroute.router.stats import LatencyStats
from polyroute.router.strategies import (
    BuiltinStrategy,
    CostColumn,
    Order,
    Pool,
    below_floor,
    floor_reason,
    load_strategy,
)
from polyroute.router.targets import candidate_models
from polyroute.types import Capability, Excluded, ExclusionKind, Target

if TYPE_CHECKING:
    from polyroute.router.measured import Measured

Check = Callable[[], Mapping[str, str]]
"""``check()``: the providers that cannot take a request now, each with why. Usually
empty: a check keeps its blocked set current, so a decision costs one call per check,
not one per provider."""

_NEEDED_BY: Mapping[Capability, str] = {
    "json_schema": "cannot honour response_format json_schema",
    "reasoning": "cannot honour reasoning_effort / thinking",
}
"""What a request asks that a pair lacking the capability cannot give, where a field needs it."""


def lacking(missing: Sequence[Capability]) -> str:
    """Why a pair lacking ``missing`` (sorted) is left out."""
    noun = "capability" if len(missing) == 1 else "capabilities"
    why = f"lacks {noun} {', '.join(missing)}"
    fields = [_NEEDED_BY[c] for c in missing if c in _NEEDED_BY]
    return f"{why} ({'; '.join(fields)})" if fields else why


class Router:
    """Decides where a request goes. Build once per config; ``decide()`` per request."""

    __slots__ = (
        "_basis",
        "_by_quality",
        "_carbon",
        "_columns",
        "_cost_ends",
        "_entries",
        "_entry",
        "_floor_cache",
        "_inactive",
        "_input",
        "_label",
        "_lacking_cache",
        "_latency",
        "_local",
        "_max_fallbacks",
        "_min_cost",
        "_model",
        "_model_rows",
        "_output",
        "_params",
        "_provider",
        "_provider_rows",
        "_ptype",
        "_quality",
        "_slots",
        "_strategies",
        "_target",
        "_win_reason",
        "_win_rows",
        "_windows",
        "budget",
        "catalog",
        "checks",
        "config",
        "fusion_weight",
        "health",
        "measured",
        "stats",
    )

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        stats: LatencyStats,
        checks: Sequence[Check] = (),
        budget: BudgetHints | None = None,
        health: Check | None = None,
        measured: Measured | None = None,
    ) -> None:
        """``checks``: who is unavailable now (keys, breakers); ``budget``: what budgets that
        refused lately had left; ``health``: who failed a health probe, which excludes a
        provider unless the caller pinned it (a pin is tried; its breaker may still refuse);
        ``measured``: a bench run's figures, used for quality and to seed latencies."""
        self.config = config
        self.catalog = catalog
        self.stats = stats
        self.checks, self.budget, self.health = tuple(checks), budget, health
        settings = config.settings
        self._max_fallbacks = max(0, settings.router.max_attempts - 1)
        self._strategies: dict[str, Strategy] = {}
        self._lacking_cache: dict[
            frozenset[Capability], tuple[tuple[int, ...], tuple[Excluded, ...]]
        ] = {}
        # per complexity: the floor's exclusion per row (None: meets it), and those of the
        # whole table in quality order
        self._floor_cache: dict[
            Complexity, tuple[tuple[Excluded | None, ...], tuple[Excluded, ...]]
        ] = {}

        pairs: list[tuple[str, str, ProviderConfig]] = []
        self._provider_rows: dict[str, range] = {}
        inactive: list[tuple[str, tuple[Excluded, ...]]] = []
        for pid, spec in settings.providers.items():
            models = candidate_models(spec, catalog)
            if not spec.enabled:
                off = tuple(Excluded(pid, m, "disabled", "unavailable") for m in models)
                inactive.append((pid, off))
            elif not models:
                why = f"no models: set providers.{pid}.models"
                inactive.append((pid, (Excluded(pid, "", why, "unavailable"),)))
            else:
                start = len(pairs)
                pairs.extend((pid, m, spec) for m in models)
                self._provider_rows[pid] = range(start, len(pairs))
        self._inactive = tuple(inactive)
        self.fusion_weight = {
            pid: settings.providers[pid].fusion_weight for pid in self._provider_rows
        }
        """Per enabled provider, from config."""

        # the columns: row i is the pair (self._provider[i], self._model[i])
        self._provider = tuple(pid for pid, _, _ in pairs)
        self._model = tuple(m for _, m, _ in pairs)
        self._ptype = tuple(spec.type for _, _, spec in pairs)
        self._carbon = tuple(spec.carbon_intensity for _, _, spec in pairs)
        entry = self._entry = tuple(catalog.get(spec.type, m) for _, m, spec in pairs)
        self._label = tuple(f"{pid}/{m}" for pid, m, _ in pairs)
        self._target = tuple(Target(pid, m) for pid, m, _ in pairs)
        self._slots = tuple(stats.slot(pid, m) for pid, m, _ in pairs)
        self._latency = stats.columns([(pid, m) for pid, m, _ in pairs])
        self._quality = tuple(e.quality if e.quality is not None else 0.5 for e in entry)
        self._params = tuple(e.params_b for e in entry)
        self._local = tuple(t in catalog.local_types for t in self._ptype)
        # USD per token (not per million): the cost column is then two products and a sum
        self._input = tuple(e.price.input / 1e6 if e.price else None for e in entry)
        self._output = tuple(e.price.output / 1e6 if e.price else 0.0 for e in entry)
        self._cost_ends, self._min_cost = (
            _cost_ends(self._input, self._output),
            _min_costs(self._input, self._output),
        )
        self._learn(measured)
        model_rows: dict[str, list[int]] = {}
        for i, m in enumerate(self._model):
            model_rows.setdefault(m, []).append(i)
        self._model_rows = {m: tuple(r) for m, r in model_rows.items()}
        sized = sorted((w, i) for i, e in enumerate(entry) if (w := e.context_window) is not None)
        self._windows = tuple(w for w, _ in sized)
        self._win_rows = tuple(i for _, i in sized)
        self._win_reason = tuple(f"context window {w:,} < " for w, _ in sized)

    def _learn(self, measured: Measured | None) -> None:
        """The quality columns: the catalog's in quality order, and per complexity the bench
        run's where it has graded answers (with each row's basis; ``None``: catalog); the
        run's latencies seed the learned ones."""
        quality = self._quality
        # stable: equal quality keeps config order
        self._by_quality = tuple(sorted(range(len(quality)), key=lambda i: -quality[i]))
        self.measured = measured
        self._columns: dict[Complexity, tuple[tuple[float, ...], tuple[int, ...]]] = {
            c: (quality, self._by_quality) for c in QUALITY_FLOOR
        }
        self._basis: dict[Complexity, tuple[str | None, ...]] = {}
        # the catalog entries custom strategies get, with the measured quality where known
        self._entries = dict.fromkeys(QUALITY_FLOOR, self._entry)
        if measured is None:
            return
        pairs = list(zip(self._provider, self._model, strict=True))
        _seed(self.stats, measured, pairs)
        for c in QUALITY_FLOOR:
            seen = [measured.quality_of(p, m, c) for p, m in pairs]
            q = tuple(x.score if x else quality[i] for i, x in enumerate(seen))
            self._columns[c] = (q, tuple(sorted(range(len(q)), key=lambda i: -q[i])))
            self._basis[c] = tuple(measured.basis(x) if x else None for x in seen)
            self._entries[c] = tuple(
                replace(e, quality=x.score) if x else e
                for e, x in zip(self._entry, seen, strict=True)
            )

    @property
    def pairs(self) -> tuple[Target, ...]:
        """Every candidate (provider, model) of the enabled providers, in config order."""
        return self._target

    def strategy(self, name: str) -> Strategy:
        """The strategy ``name`` (loaded once per router)."""
        s = self._strategies.get(name)
        if s is None:
            s = load_strategy(name, self.config.settings.router.balanced_weights)
            self._strategies[name] = s
        return s

    def decide(self, ctx: RoutingContext) -> Decision:
        """Where ``ctx`` should go, and where next if that fails (see module docs).

        Raises :class:`NoCandidateError` when no pair is eligible.
        """
        strategy = self.strategy(ctx.strategy)
        builtin = strategy if isinstance(strategy, BuiltinStrategy) else None
        self.stats.expire()  # aged-out latencies become "no data" (explored again)
        excluded = Exclusions()
        drop = self._out_of_scope(ctx, excluded)
        pinned = ctx.pinned
        if self.checks or (self.health is not None and not pinned):
            self._check(drop, excluded, pinned)
        if self.budget is not None:
            self._exclude_spent(self.budget.headroom(), drop, excluded)
        if ctx.required:
            lacking_rows, lacking = self._lacking(ctx.required)
            if not drop:  # the usual case: the cached exclusions as they are
                excluded.extend(lacking)
                drop.update(lacking_rows)
            else:
                for i, e in zip(lacking_rows, lacking, strict=True):
                    if i not in drop:
                        excluded.append(e)
                        drop.add(i)
        if ctx.refused:
            self._exclude_refused(ctx.refused, drop, excluded)
        self._exclude_small(ctx.needed_context, drop, excluded)

        p, o = float(ctx.prompt_tokens), float(ctx.output_tokens)
        column = CostColumn(p, o, self._input, self._output)
        cost: Sequence[float | None] = column  # each computed when read, or all at once:
        if builtin is None or builtin.uses_cost or ctx.max_cost_usd is not None:
            cost = column.values()
        if ctx.max_cost_usd is not None:
            self._exclude_costly(cost, ctx.max_cost_usd, drop, excluded)
        if ctx.max_latency_ms is not None:
            self._exclude_slow(ctx.max_latency_ms, drop, excluded)

        by_quality = self._columns[ctx.complexity][1]
        rows: Sequence[int] = [i for i in by_quality if i not in drop] if drop else by_quality
        if not rows:
            raise NoCandidateError(excluded)
        if builtin is None:
            order = self._rank_custom(strategy, rows, cost, ctx)
        else:
            if builtin.uses_floor:
                rows = self._apply_floor(rows, ctx.complexity, excluded)
            order = builtin.order(self._pool(builtin, rows, cost, ctx), ctx)
        if order.excluded:
            self._exclude(order.excluded, None, excluded)
        if not order.rows:
            raise NoCandidateError(excluded, detail=f"strategy {ctx.strategy!r} ranked none")

        best = order.rows[0]
        out = "max_tokens" if ctx.max_tokens else f"typical for {ctx.complexity}"
        basis = (
            f"{ctx.prompt_tokens:,} prompt tokens "
            f"({'counted' if ctx.prompt_tokens_counted else 'estimated'}) "
            f"+ {ctx.output_tokens:,} output tokens ({out})"
        )
        return Decision.new(
            strategy=ctx.strategy,
            provider=self._provider[best],
            model=self._model[best],
            reasoning=(
                order.reasoning
                if self.measured is None
                else f"{order.reasoning}; {self._quality_basis(best, ctx.complexity)}"
            ),
            estimated_cost_usd=cost[best],
            fallbacks=self._fallbacks(order.rows),
            confidence=order.confidence,
            excluded=excluded,
            cost_basis=basis,
        )

    def _quality_basis(self, row: int, complexity: Complexity) -> str:
        """Where the quality of ``row`` for ``complexity`` came from (bench mode)."""
        basis = self._basis[complexity][row]
        if basis is not None:
            return basis
        run = self.measured.run_id if self.measured else "?"
        q = self._columns[complexity][0][row]
        return f"quality {q:.2f} from the catalog (bench run {run} graded no {complexity} answer of it)"

    def _out_of_scope(self, ctx: RoutingContext, excluded: Exclusions) -> set[int]:
        """Rows outside ``ctx.providers``/``ctx.models``; lists disabled pairs in scope."""
        providers, models = ctx.providers, ctx.models
        drop: set[int] = set()
        for pid, items in self._inactive:
            if providers is None or pid in providers:
                excluded.extend([e for e in items if models is None or e.model in models])
        if providers is not None:
            for pid, r in self._provider_rows.items():
                if pid not in providers:
                    drop.update(r)
        if models is not None:
            for m, same_model in self._model_rows.items():
                if m not in models:
                    drop.update(same_model)
        if len(drop) == len(self._model):
            raise NoCandidateError(excluded, detail=_scope(ctx))
        return drop

    def _check(self, drop: set[int], excluded: Exclusions, pinned: bool) -> None:
        """Providers the checks block, each with the first check's reason, in config order."""
        why_of: dict[str, str] = {}
        checks = self.checks if pinned or self.health is None else (*self.checks, self.health)
        for check in checks:
            blocked = check()
            if blocked:
                for pid, reason in blocked.items():
                    why_of.setdefault(pid, reason)
        if not why_of:
            return
        for pid, r in self._provider_rows.items():
            why = why_of.get(pid)
            if why is not None:
                live: Sequence[int] = [i for i in r if i not in drop] if drop else r
                excluded.defer(live, partial(self._excluded, why, "unavailable"))
                drop.update(live)

    def _exclude_spent(
        self, hints: Mapping[str, Headroom], drop: set[int], excluded: Exclusions
    ) -> None:
        """Priced pairs whose cheapest request does not fit what a budget had left when it
        last refused (the global one, ``"*"``, or their provider's; see :mod:`.hints`)."""
        if not hints:
            return
        everyone, min_cost = hints.get("*"), self._min_cost
        for pid, r in self._provider_rows.items():
            for h in (hints.get(pid), everyone):
                if h is None:
                    continue
                left = h.left_usd
                out = [
                    i for i in r if (c := min_cost[i]) is not None and c > left and i not in drop
                ]
                excluded.defer(out, partial(self._excluded, h.reason, "over_budget"))
                drop.update(out)

    # The exclusions below are built per request (their reasons carry its numbers): the rows
    # are found in one comprehension, then each gets its Excluded, reasons from parts made once.

    def _exclude_refused(
        self, refused: Mapping[str, str], drop: set[int], excluded: Exclusions
    ) -> None:
        """Pairs of providers that cannot carry a field the request sets, with the adapter's
        reason (it names the field)."""
        for pid, why in refused.items():
            for i in self._provider_rows.get(pid, ()):
                if i not in drop:
                    excluded.append(Excluded(self._provider[i], self._model[i], why))
                    drop.add(i)

    def _exclude_small(self, need: int, drop: set[int], excluded: Exclusions) -> None:
        k = bisect_left(self._windows, need)  # windows sorted: the first k are too small
        if not k:
            return
        rows, prefix = self._win_rows, self._win_reason
        small = [j for j in range(k) if rows[j] not in drop]
        provider, model = self._provider, self._model

        def make(j: int) -> Excluded:
            i = rows[j]
            return Excluded(provider[i], model[i], f"{prefix[j]}{need:,} needed")

        excluded.defer(small, make)
        drop.update([rows[j] for j in small])

    def _exclude_costly(
        self, cost: Sequence[float | None], cap: float, drop: set[int], excluded: Exclusions
    ) -> None:
        """Over ``cap`` or unpriced (an unpriced pair cannot be held to a cap)."""
        over = [i for i, c in enumerate(cost) if (c is None or c > cap) and i not in drop]
        if not over:
            return
        provider, model = self._provider, self._model

        def make(i: int) -> Excluded:
            c = cost[i]
            why = (
                f"unpriced: its cost cannot be held to the cost cap {usd(cap)}"
                if c is None
                else f"estimated {usd(c)} over the cost cap {usd(cap)}"
            )
            return Excluded(provider[i], model[i], why)

        excluded.defer(over, make)
        drop.update(over)

    def _exclude_slow(self, max_ms: float, drop: set[int], excluded: Exclusions) -> None:
        """A learned latency over ``max_ms`` (no data: kept)."""
        slow = [
            (i, x)
            for i, x in enumerate(self._latency.latency)
            if x is not None and x > max_ms and i not in drop
        ]
        if not slow:
            return
        provider, model = self._provider, self._model

        def make(k: int) -> Excluded:  # the latency as it was (the column moves on)
            i, x = slow[k]
            why = f"learned latency {x:,.0f} ms over the latency cap {max_ms:g} ms"
            return Excluded(provider[i], model[i], why)

        excluded.defer(range(len(slow)), make)
        drop.update([i for i, _ in slow])

    def _excluded(self, why: str, kind: ExclusionKind, i: int) -> Excluded:
        return Excluded(self._provider[i], self._model[i], why, kind)

    def _exclude(
        self, reasons: Iterable[tuple[int, str]], drop: set[int] | None, excluded: Exclusions
    ) -> None:
        """Rows not yet dropped become excluded with their reason, and dropped."""
        provider, model = self._provider, self._model
        out = []
        for i, why in reasons:
            if drop is not None:
                if i in drop:
                    continue
                drop.add(i)
            out.append(Excluded(provider[i], model[i], why))
        excluded.extend(out)

    def _apply_floor(
        self, rows: Sequence[int], complexity: Complexity, excluded: Exclusions
    ) -> Sequence[int]:
        """The strategy's quality floor, with exclusions built once per (row, complexity).

        When no row meets the floor, all stay (the strategy says so in its reasoning).
        """
        floor = QUALITY_FLOOR[complexity]
        quality, by_quality = self._columns[complexity]
        if quality[rows[0]] < floor or quality[rows[-1]] >= floor:
            return rows
        cached = self._floor_cache.get(complexity)
        if cached is None:
            by_row = tuple(
                Excluded(self._provider[i], self._model[i], floor_reason(q, complexity))
                if q < floor
                else None
                for i, q in enumerate(quality)
            )
            whole = tuple(e for i in by_quality if (e := by_row[i]) is not None)
            cached = self._floor_cache[complexity] = (by_row, whole)
        by_row, whole = cached
        cut = below_floor(rows, quality, floor)
        if rows is by_quality:
            excluded.extend(whole)
        else:
            excluded.extend([e for i in rows[cut:] if (e := by_row[i]) is not None])
        return rows[:cut]

    def _pool(
        self,
        strategy: BuiltinStrategy,
        rows: Sequence[int],
        cost: Sequence[float | None],
        ctx: RoutingContext,
    ) -> Pool:
        learned, stream = self._latency, ctx.stream
        quality, by_quality = self._columns[ctx.complexity]
        cost_span = latency_span = None
        latency_key: object = None
        if strategy.uses_spans and rows is by_quality:  # every row: spans at hand
            latency_span = learned.span(first_token=stream)
            latency_key = (learned, learned.version, stream)
            cheapest, priciest = self._cost_ends
            if cheapest and ctx.prompt_tokens >= 0 and ctx.output_tokens >= 0:
                low = [c for i in cheapest if (c := cost[i]) is not None]
                high = [c for i in priciest if (c := cost[i]) is not None]
                cost_span = (min(low), max(high))  # of a few rows: see _cost_ends
        return Pool.new(
            rows=rows,
            label=self._label,
            provider=self._provider,
            quality=quality,
            cost=cost,
            latency=learned.first_token if stream else learned.latency,
            samples=learned.samples,
            local=self._local,
            carbon_intensity=self._carbon,
            params_b=self._params,
            floor_applied=strategy.uses_floor,
            cost_span=cost_span,
            latency_span=latency_span,
            latency_key=latency_key,
            quality_source="catalog" if self.measured is None else "bench",
        )

    def _fallbacks(self, ranked: Sequence[int]) -> tuple[Target, ...]:
        """Up to ``max_attempts - 1`` after the winner: first the best pair of each provider
        not yet in the list, in rank order; then, if short, the rest in rank order."""
        limit = self._max_fallbacks
        if limit == 0 or len(ranked) < 2:
            return ()
        provider, target = self._provider, self._target
        rest = iter(ranked)  # read as far as needed: a ranking may complete itself lazily
        used = {provider[next(rest)]}
        first: list[int] = []
        again: list[int] = []
        for i in rest:
            pid = provider[i]
            if pid in used:
                again.append(i)
            else:
                used.add(pid)
                first.append(i)
                if len(first) == limit:
                    break
        first.extend(again[: limit - len(first)])
        return tuple(target[i] for i in first)

    def _lacking(
        self, required: frozenset[Capability]
    ) -> tuple[tuple[int, ...], tuple[Excluded, ...]]:
        """Rows lacking some of ``required``, and their exclusions, row by row (static: built
        once per capability set)."""
        hit = self._lacking_cache.get(required)
        if hit is None:
            rows, out = [], []
            for i, e in enumerate(self._entry):
                missing = sorted(required - e.capabilities)
                if missing:
                    rows.append(i)
                    out.append(Excluded(self._provider[i], self._model[i], lacking(missing)))
            hit = self._lacking_cache[required] = (tuple(rows), tuple(out))
        return hit

    def _rank_custom(
        self,
        strategy: Strategy,
        rows: Sequence[int],
        cost: Sequence[float | None],
        ctx: RoutingContext,
    ) -> Order:
        """A custom strategy: real :class:`Candidate` objects, its ranking mapped back to rows."""
        candidates = []
        index: dict[tuple[str, str], int] = {}
        entries = self._entries[ctx.complexity]
        for i in rows:
            s = self._slots[i]
            pid = self._provider[i]
            candidates.append(
                Candidate(
                    provider=pid,
                    provider_type=self._ptype[i],
                    model=self._model[i],
                    entry=entries[i],
                    est_cost_usd=cost[i],
                    latency_ms=s.latency_ms,
                    ttft_ms=s.ttft_ms,
                    samples=s.samples,
                    local=self._local[i],
                    carbon_intensity=self._carbon[i],
                    fusion_weight=self.fusion_weight[pid],
                )
            )
            index[(pid, self._model[i])] = i
        ranking = strategy.rank(candidates, ctx)
        ranked = [
            row for sc in ranking.ranked if (row := index.get(_pair(sc.candidate))) is not None
        ]
        excluded = [
            (row, why) for c, why in ranking.excluded if (row := index.get(_pair(c))) is not None
        ]
        return Order(ranked, (), ranking.reasoning, ranking.confidence, excluded)


def _cost_ends(
    input: Sequence[float | None], output: Sequence[float]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Priced rows among which the cheapest and the priciest of any request are found.

    A cost is ``p x input + o x output`` with ``p, o >= 0``, and rounding is monotonic: a
    pair priced no higher than another on both never costs more. So the cheapest is one of
    the rows no other undercuts on both prices, the priciest one of those none exceeds."""
    priced = sorted(
        (a, b, i) for i, (a, b) in enumerate(zip(input, output, strict=True)) if a is not None
    )
    cheapest, priciest = [], []
    low = math.inf
    for _, b, i in priced:
        if b < low:
            cheapest.append(i)
            low = b
    high = -math.inf
    for _, b, i in reversed(priced):
        if b > high:
            priciest.append(i)
            high = b
    return tuple(cheapest), tuple(priciest)


def _min_costs(input: Sequence[float | None], output: Sequence[float]) -> tuple[float | None, ...]:
    """The cheapest request each pair can take: one input and one output token (``None``:
    unpriced)."""
    return tuple(None if i is None else i + o for i, o in zip(input, output, strict=True))


def _seed(stats: LatencyStats, measured: Measured, pairs: Sequence[tuple[str, str]]) -> None:
    """The run's latencies stand for the pairs it measured until live calls are known."""
    for pid, m in pairs:
        timed = measured.latency.get((pid, m))
        if timed is not None:
            stats.seed(pid, m, timed.latency_ms, timed.ttft_ms)


def _pair(c: Candidate) -> tuple[str, str]:
    return (c.provider, c.model)


def _scope(ctx: RoutingContext) -> str:
    parts = []
    if ctx.providers is not None:
        parts.append(f"providers {', '.join(sorted(ctx.providers)) or 'none'}")
    if ctx.models is not None:
        parts.append(f"models {', '.join(sorted(ctx.models)) or 'none'}")
    what = " and ".join(parts)
    return f"no enabled provider matches {what}" if what else "no enabled provider has a model"
