"""``budget optimize``: share a monthly total across providers by forecast need.

Each provider with a forecast gets ``clip(k x forecast, min, max)``, with the one ``k``
that makes the shares add up to the total (what clipping takes from or gives to one is
spread over the others in proportion to their need). Providers with nothing to weigh by
hold the minimum: one with no complete day of usage (a reserve until it has some), one
whose latest requests are failing (its traffic falls back to the others, which need the
room; the reserve is there when it recovers), one forecast to spend nothing. A held
provider's minimum comes on top of what it spent this month (a limit under that would
refuse it at once) when the total covers it and every other provider's forecast. When the
weighted providers all reach the maximum, those others share what is left evenly; when
nobody has a forecast, everyone gets an even share. Amounts are whole cents that add up
exactly to the total (largest remainders get the odd cents).

Applying writes every provider's monthly limit and a history entry in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from polyroute.budgeting._model import (
    Allocation,
    Analysis,
    Change,
    HistoryEntry,
    Proposal,
    Source,
)
from polyroute.errors import BudgetBoundsError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from polyroute.ledger import Ledger

METHOD = "forecast-weighted: month-end forecast shares, clipped to [min, max] per provider"


class _NotDue(Exception):
    """Raised inside the apply transaction to roll it back: another worker applied an
    allocation within the interval (never leaves this module)."""


def check_bounds(total_usd: float, min_usd: float, max_usd: float, providers: int) -> None:
    """Raise :class:`BudgetBoundsError` (one line) for bounds no allocation can meet."""
    if not total_usd >= 0:
        raise BudgetBoundsError(f"the total must be 0 or more, not {total_usd:g}")
    if min_usd > max_usd:
        raise BudgetBoundsError(f"min ${min_usd:g} is over max ${max_usd:g}")
    if providers == 0:
        raise BudgetBoundsError("no enabled provider to share the total between")
    lo, hi, total = _cents_bounds(min_usd, max_usd, total_usd)
    if providers * lo > total:
        raise BudgetBoundsError(
            f"min ${min_usd:g} x {providers} providers is ${providers * min_usd:g}, "
            f"over the total ${total_usd:g}"
        )
    if providers * hi < total:
        raise BudgetBoundsError(
            f"max ${max_usd:g} x {providers} providers is ${providers * max_usd:g}, "
            f"under the total ${total_usd:g}: it cannot all be placed"
        )


def _cents_bounds(min_usd: float, max_usd: float, total_usd: float) -> tuple[int, int, int]:
    return (
        math.ceil(round(min_usd * 100, 6)),
        math.floor(round(max_usd * 100, 6)),
        round(total_usd * 100),
    )


def allocate(
    needs: Mapping[str, float | None],
    total_usd: float,
    min_usd: float,
    max_usd: float,
    spent: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Cents per provider: ``clip(k x need, min, max)`` summing exactly to the total;
    ``None`` or 0 need holds the minimum, on top of what it ``spent`` this month if the
    total covers that and every other provider's need (see the module's docstring)."""
    check_bounds(total_usd, min_usd, max_usd, len(needs))
    lo, hi, total = _cents_bounds(min_usd, max_usd, total_usd)
    weighted = {p: w for p, w in needs.items() if w}
    rest = [p for p in needs if not needs[p]]
    held = {p: min(hi, lo + math.ceil(round((spent or {}).get(p, 0.0) * 100, 6))) for p in rest}
    wanted = sum(min(hi, max(lo, math.ceil(w * 100))) for w in weighted.values())
    if sum(held.values()) + wanted > total:
        held = dict.fromkeys(rest, lo)  # the serving providers' needs come first
    shares: dict[str, float] = {}
    if not weighted:
        shares = {p: total / len(needs) for p in needs}
    elif total - sum(held.values()) >= hi * len(weighted):
        shares = {p: float(hi) for p in weighted}
        spare = (total - hi * len(weighted) - sum(held.values())) / len(rest) if rest else 0.0
        shares |= {p: min(float(hi), held[p] + spare) for p in rest}
    else:
        target = total - sum(held.values())

        def placed(k: float) -> float:
            return sum(min(hi, max(lo, k * w)) for w in weighted.values())

        low_k, high_k = 0.0, 1.0
        while placed(high_k) < target:
            high_k *= 2
        for _ in range(200):
            mid = (low_k + high_k) / 2
            low_k, high_k = (mid, high_k) if placed(mid) < target else (low_k, mid)
        shares = {p: min(hi, max(lo, high_k * w)) for p, w in weighted.items()}
        shares |= {p: float(held[p]) for p in rest}
    return _whole_cents(shares, total, lo, hi)


def _whole_cents(shares: Mapping[str, float], total: int, lo: int, hi: int) -> dict[str, int]:
    cents = {p: min(hi, max(lo, math.floor(s))) for p, s in shares.items()}
    by_fraction = sorted(shares, key=lambda p: (math.floor(shares[p]) - shares[p], p))
    left = total - sum(cents.values())
    while left != 0:
        step = 1 if left > 0 else -1
        order = by_fraction if step > 0 else by_fraction[::-1]
        movable = [p for p in order if lo <= cents[p] + step <= hi]
        for p in movable[: abs(left)]:
            cents[p] += step
            left -= step
    return cents


def propose(analysis: Analysis, total_usd: float, min_usd: float, max_usd: float) -> Proposal:
    """The reallocation of ``total_usd`` that follows ``analysis``'s forecasts."""
    needs: dict[str, float | None] = {}
    for r in analysis.providers:
        usable = r.forecast_usd is not None and r.outage_since is None
        needs[r.provider] = r.forecast_usd if usable else None
    spent = {r.provider: r.spent_usd for r in analysis.providers}
    cents = allocate(needs, total_usd, min_usd, max_usd, spent)
    lo, hi, total = _cents_bounds(min_usd, max_usd, total_usd)
    weight = sum(w for w in needs.values() if w)
    allocations = []
    for r in analysis.providers:
        amount = cents[r.provider]
        need = needs[r.provider]
        if r.outage_since is not None:
            reserve = "the minimum reserve"
            if r.spent_usd > 0 and amount > lo:
                reserve = f"the ${r.spent_usd:.2f} it spent this month and the minimum reserve"
            why = (
                f"failing since {r.outage_since} (outage): "
                + (
                    reserve
                    if amount <= lo + math.ceil(r.spent_usd * 100)
                    else "an even share of what is left"
                )
                + "; its requests fall back to the others until it recovers"
            )
        elif r.forecast_usd is None:
            why = "no complete day of usage yet: " + (
                "an even share (no provider has a forecast to weigh by)"
                if not weight
                else "the minimum reserve until it has some"
                if amount == lo
                else "an even share of what the others cannot take"
            )
        elif not need:
            why = f"forecast $0.00 for {analysis.period}: the minimum reserve"
        else:
            why = (
                f"forecast ${need:.2f} for {analysis.period} "
                f"(95 %: ${r.forecast_low_usd or 0:.2f} to ${r.forecast_high_usd or 0:.2f})"
            )
            if amount == hi:
                why += f": capped at the maximum ${hi / 100:.2f}"
            elif amount == lo:
                why += f": raised to the minimum ${lo / 100:.2f}"
            else:
                why += f": {need / weight:.0%} of the forecast need, share of the total"
            if r.outage_days:
                why += f"; {len(r.outage_days)} outage day(s) left out of the forecast"
        allocations.append(Allocation(r.provider, r.limit_usd, amount / 100, why))
    return Proposal(total / 100, METHOD, tuple(allocations))


async def apply(
    ledger: Ledger,
    proposal: Proposal,
    *,
    source: Source,
    now: float,
    not_before: float | None = None,
) -> Proposal | None:
    """Write every allocation as its provider's monthly limit and record the change, in
    one transaction (a failure changes nothing), each changed limit a ``budget_changed``
    event. ``not_before``: apply only if ``source`` applied nothing since (an allocation
    is due once per interval, whichever gateway worker gets there first); ``None`` if not
    due."""
    from polyroute.budgeting._sql import add_entry, last_applied
    from polyroute.ledger import provider_scope

    changes = [
        Change(a.provider, a.current_usd, a.proposed_usd, a.reason) for a in proposal.allocations
    ]

    def also(c: Connection) -> None:
        if not_before is not None:
            last = last_applied(c, source)
            if last is not None and last >= not_before:
                raise _NotDue
        add_entry(c, now, source, proposal.total_usd, proposal.method, changes)

    monthly = {provider_scope(a.provider): a.proposed_usd for a in proposal.allocations}
    reasons = {provider_scope(a.provider): a.reason for a in proposal.allocations}
    try:
        await ledger.set_monthly_budgets(monthly, reasons=reasons, also=also)
    except _NotDue:
        return None
    return replace(proposal, applied=True)


def bounds_from(
    total_usd: float | None, min_usd: float | None, max_usd: float | None, defaults: Sequence[float]
) -> tuple[float, float, float]:
    """Flags over the ``[budget.optimizer]`` defaults ``(total, min, max)``."""
    t, lo, hi = defaults
    return (
        t if total_usd is None else total_usd,
        lo if min_usd is None else min_usd,
        hi if max_usd is None else max_usd,
    )


async def history(ledger: Ledger) -> list[HistoryEntry]:
    """Every applied allocation, oldest first."""
    from polyroute.budgeting._sql import entries

    return await ledger.run(entries)
