"""Backtest of the budget optimizer on a synthetic 120-day ledger.

Run: ./dev python bench/optimizer_backtest.py [--seeds N]

The generator (seeded): four providers over 120 days of history and the 31 days after,
each a daily request count x a price per request. Requests per day are
``base + slope x day``, times a weekday factor (business traffic: weekdays up to 1.25,
weekends 0.55) where the provider has one, times ``1 + N(0, noise)``:

    openai-main      600 + 3/day, weekly, noise 10 %, $0.0020 a request (growing)
    anthropic-main   350,         weekly, noise 10 %, $0.0040 (steady)
    mistral-main     900 - 3/day,         noise 15 %, $0.0010 (shrinking)
    gemini-main      800,         weekly, noise 10 %, $0.0008; an outage on days 80-89:
                     its requests fail (no cost) and the router sends them to openai-main

The ledger (SQLite, through polyroute's Ledger) gets each day's records at noon UTC;
day 120 is 1 July 2026, so the month ahead is the whole of July.

1. Forecast error: from every origin day 28..(120-H), the forecast of the next H days'
   total (the method of ``polyroute.budgeting``, outage days left out) against the
   generated truth, per provider; MAPE over providers and origins, for H = 7 and 30, and
   how often the truth fell within the 95 % interval. Reported for all windows, and
   apart for those clear of the outage and those touching it (whose last week of history
   or days ahead overlap days 80-89: the outage and its fallback burst, which no forecast
   made before them can know).
2. Refused requests: ``budget analyze`` + ``budget optimize`` on the ledger at 00:00 of
   day 120 propose July's monthly budgets for a total; the static split gives each
   provider total / 4. July is then played day by day with both: a provider serves a day's
   requests while its monthly budget lasts, and refuses the rest (as the ledger's
   reservations do). Totals: 90 %, 100 % and 110 % of July's true spend; min 5 % and
   max 60 % of the total per provider.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from polyroute.budgeting import analyze_ledger, forecast, propose
from polyroute.ledger import Ledger, UsageRecord

HISTORY = 120
AHEAD = 31
START = date(2026, 3, 3)  # + 120 days = 2026-07-01
WEEKLY = (1.2, 1.25, 1.2, 1.15, 1.1, 0.55, 0.55)
OUTAGE = range(80, 90)
FIRST_ORIGIN = 28  # four weeks of history at least


@dataclass(frozen=True)
class Provider:
    name: str
    base: float
    slope: float
    weekly: bool
    noise: float
    usd_per_request: float
    outage: range = range(0)


PROVIDERS = (
    Provider("openai-main", 600, 3, True, 0.10, 0.0020),
    Provider("anthropic-main", 350, 0, True, 0.10, 0.0040),
    Provider("mistral-main", 900, -3, False, 0.15, 0.0010),
    Provider("gemini-main", 800, 0, True, 0.10, 0.0008, OUTAGE),
)
FALLBACK = "openai-main"


@dataclass(frozen=True)
class Day:
    requests: int
    failed: int
    cost_usd: float


def generate(seed: int) -> dict[str, list[Day]]:
    """Every provider's days 0 .. HISTORY + AHEAD - 1 (outages: failed, moved to FALLBACK)."""
    rng = random.Random(seed)
    demand: dict[str, list[int]] = {}
    for p in PROVIDERS:
        row = []
        for i in range(HISTORY + AHEAD):
            season = WEEKLY[(START + timedelta(days=i)).weekday()] if p.weekly else 1.0
            level = max(0.0, p.base + p.slope * i) * season * (1 + rng.gauss(0, p.noise))
            row.append(max(0, round(level)))
        demand[p.name] = row
    price = {p.name: p.usd_per_request for p in PROVIDERS}
    days = {p.name: [Day(n, 0, n * p.usd_per_request) for n in demand[p.name]] for p in PROVIDERS}
    for p in PROVIDERS:
        for i in p.outage:
            n = demand[p.name][i]
            days[p.name][i] = Day(n, n, 0.0)
            fb = days[FALLBACK][i]
            days[FALLBACK][i] = Day(fb.requests + n, 0, fb.cost_usd + n * price[FALLBACK])
    return days


def series(days: list[Day]) -> list[float | None]:
    return [None if d.failed and d.failed == d.requests else d.cost_usd for d in days]


def forecast_errors(
    all_days: dict[str, list[Day]], horizon: int
) -> dict[bool, tuple[list[float], int]]:
    """Relative errors of the H-day totals and how many fell in the interval, split by
    whether the window (history's last week or the days ahead) touches the outage."""
    out: dict[bool, tuple[list[float], int]] = {True: ([], 0), False: ([], 0)}
    for days in all_days.values():
        ys = series(days)
        for origin in range(FIRST_ORIGIN, HISTORY - horizon + 1):
            f = forecast(START, ys[:origin], horizon)
            truth = sum(v or 0.0 for v in ys[origin : origin + horizon])
            if f is None or truth <= 0:
                continue
            touched = origin - 7 < OUTAGE.stop and origin + horizon > OUTAGE.start
            errors, covered = out[touched]
            errors.append(abs(f.total_usd - truth) / truth)
            out[touched] = (errors, covered + (f.low_usd <= truth <= f.high_usd))
    return out


async def write_ledger(path: Path, all_days: dict[str, list[Day]]) -> Ledger:
    ledger = Ledger(f"sqlite:///{path}")
    for name, days in all_days.items():
        for i, d in enumerate(days[:HISTORY]):
            day = START + timedelta(days=i)
            ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()
            if d.failed:  # a few failed attempts stand for the day's failures
                for j in range(3):
                    ledger.record(
                        UsageRecord(
                            ts + j,
                            name,
                            "m",
                            cost_usd=0.0,
                            status="error",
                            error_type="api_connection",
                        )
                    )
            else:  # the day's spend over a few records (the ledger sums them)
                for j in range(4):
                    ledger.record(UsageRecord(ts + j, name, "m", cost_usd=d.cost_usd / 4))
    await ledger.flush()
    return ledger


def refused(all_days: dict[str, list[Day]], budgets: dict[str, float]) -> tuple[int, int]:
    """Requests refused in the month ahead under ``budgets``, and all requests."""
    refused = total = 0
    for p in PROVIDERS:
        left = budgets[p.name]
        for d in all_days[p.name][HISTORY:]:
            served = min(d.requests, int(left // p.usd_per_request + 1e-9))
            left -= served * p.usd_per_request
            refused += d.requests - served
            total += d.requests
    return refused, total


async def run(seeds: int) -> None:
    # (horizon, touches the outage) -> errors, in the interval
    mape: dict[tuple[int, bool], tuple[list[float], int]] = {
        (h, t): ([], 0) for h in (7, 30) for t in (False, True)
    }
    shares = (0.9, 1.0, 1.1)
    results: dict[float, list[tuple[int, int, int]]] = {s: [] for s in shares}
    analysis_s = []
    for seed in range(seeds):
        all_days = generate(seed)
        for h in (7, 30):
            for touched, (errs, c) in forecast_errors(all_days, h).items():
                kept, covered = mape[h, touched]
                mape[h, touched] = (kept + errs, covered + c)
        july = sum(d.cost_usd for days in all_days.values() for d in days[HISTORY:])
        with tempfile.TemporaryDirectory() as tmp:
            ledger = await write_ledger(Path(tmp) / "ledger.db", all_days)
            day120 = START + timedelta(days=HISTORY)
            now = datetime(day120.year, day120.month, day120.day, tzinfo=UTC).timestamp() + 1
            t0 = time.perf_counter()
            analysis = await analyze_ledger(ledger, [p.name for p in PROVIDERS], now)
            analysis_s.append(time.perf_counter() - t0)
            await ledger.aclose()
        for share in shares:
            total = round(july * share, 2)
            proposal = propose(analysis, total, 0.05 * total, 0.6 * total)
            optimized = {a.provider: a.proposed_usd for a in proposal.allocations}
            static = {p.name: total / len(PROVIDERS) for p in PROVIDERS}
            r_opt, n = refused(all_days, optimized)
            r_static, _ = refused(all_days, static)
            results[share].append((r_opt, r_static, n))
        if seed == 0:
            print(f"seed 0: July's true spend ${july:.2f}; the proposal for 100 % of it:")
            proposal = propose(analysis, round(july, 2), 0.05 * july, 0.6 * july)
            for a in proposal.allocations:
                print(f"  {a.provider:15} ${a.proposed_usd:8.2f}  {a.reason}")
    print(f"\n{seeds} seeded ledgers of {HISTORY} days, 4 providers (generator in the docstring)")
    for h in (7, 30):
        for label, keys in (
            ("all windows", (False, True)),
            ("windows clear of the outage", (False,)),
            ("windows touching it", (True,)),
        ):
            errs = [e for t in keys for e in mape[h, t][0]]
            held = sum(mape[h, t][1] for t in keys)
            print(
                f"{h:2}-day spend forecast, {label:28}: MAPE {100 * sum(errs) / len(errs):5.1f} %"
                f" over {len(errs):4} forecasts, 95 % interval held the truth "
                f"{100 * held / len(errs):5.1f} %"
            )
    print("\nrequests refused in the 31 days after day 120 (sum over seeds):")
    print(f"  {'total budget':>22}  {'optimizer':>10}  {'equal split':>11}  {'requests':>9}")
    for share in shares:
        r_opt = sum(r[0] for r in results[share])
        r_static = sum(r[1] for r in results[share])
        n = sum(r[2] for r in results[share])
        print(
            f"  {f'{share:.0%} of true spend':>22}  {r_opt:>10,} ({100 * r_opt / n:4.1f} %)"
            f"  {r_static:>11,} ({100 * r_static / n:4.1f} %)  {n:>9,}"
        )
    print(
        f"\nbudget analyze on the 120-day ledger: median {1000 * sorted(analysis_s)[len(analysis_s) // 2]:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    asyncio.run(run(parser.parse_args().seeds))


if __name__ == "__main__":
    main()
