"""Synthetic usage for the optimizer's tests: daily spend with a trend, a weekly pattern,
noise and outages, as DayUsage rows or as ledger records at realistic times."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from polyroute.budgeting import DayUsage
from polyroute.ledger import Ledger, UsageRecord

WEEKLY = (1.2, 1.25, 1.2, 1.15, 1.1, 0.55, 0.55)  # Monday first; averages 1


@dataclass(frozen=True)
class Profile:
    """Daily spend ``base + slope x day``, times the weekday factor if ``weekly``, times
    1 + noise; ``outages``: day numbers whose requests all fail (and cost nothing)."""

    base: float
    slope: float = 0.0
    weekly: bool = False
    noise: float = 0.05
    outages: frozenset[int] = frozenset()
    requests_per_usd: float = 4.0

    def spend(self, i: int, day: date, rng: random.Random) -> float:
        level = max(0.0, self.base + self.slope * i)
        season = WEEKLY[day.weekday()] if self.weekly else 1.0
        return max(0.0, level * season * (1 + rng.gauss(0, self.noise)))


def days_of(profiles: dict[str, Profile], start: date, n: int, seed: int = 7) -> list[DayUsage]:
    """``n`` days from ``start`` of each profile (outage days: failed requests, no cost)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        day = start + timedelta(days=i)
        for name, p in profiles.items():
            cost = p.spend(i, day, rng)
            requests = max(1, round(cost * p.requests_per_usd))
            if i in p.outages:
                out.append(DayUsage(name, day, requests, requests, 0.0))
            else:
                out.append(DayUsage(name, day, requests, 0, cost))
    return out


def series(days: Iterable[DayUsage], provider: str) -> list[float | None]:
    """A provider's daily spend, outage days as None."""
    return [
        None if d.requests and d.failed == d.requests else d.cost_usd
        for d in days
        if d.provider == provider
    ]


def noon(day: date) -> float:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()


async def record(ledger: Ledger, days: Iterable[DayUsage], *, per_day: int = 3) -> None:
    """Write ``days`` into ``ledger`` as usage records: ``per_day`` successful ones sharing
    the day's cost, and one failed record per failed request, at the day's noon."""
    for d in days:
        ts = noon(d.day)
        ok = d.requests - d.failed
        for j in range(min(per_day, ok)):
            ledger.record(
                UsageRecord(
                    ts=ts + j,
                    provider=d.provider,
                    model="m",
                    cost_usd=d.cost_usd / min(per_day, ok),
                )
            )
        for j in range(min(d.failed, per_day)):
            ledger.record(
                UsageRecord(
                    ts=ts + 100 + j,
                    provider=d.provider,
                    model="m",
                    cost_usd=0.0,
                    status="error",
                    error_type="api_connection",
                )
            )
    await ledger.flush()


Clock = Callable[[], float]
