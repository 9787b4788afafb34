"""``budget analyze``: spend per provider, its forecast to the month's end, and how well
each monthly budget fits it.

- Spend: today, the last 7 days and this month (UTC), from the ledger.
- Forecast: ``_forecast.py`` on the complete days of the window (default the last 90),
  for the rest of the month (today counted for the part still to come), plus what is
  spent already. A day whose requests mostly failed is an outage day: left out of the
  forecast, which then says what the provider needs when it serves.
- Utilisation: spent this month / monthly limit.
- Efficiency (0..1): how well the limit fits the forecast, times the success rate. With
  ``u = forecast / limit``, the fit is ``min(u / 0.85, 0.85 / u)``: 1 when the forecast
  uses 85 % of the limit (headroom without idle money), 0.5 at 42.5 % or 170 %.
- Underused: forecast under half of the limit. Overused: forecast over the limit.
- Trend: the forecast's weekly change in daily spend, relative to its level.
"""

from __future__ import annotations

import asyncio
import calendar
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from polyroute.budgeting._forecast import forecast
from polyroute.budgeting._model import Analysis, DayUsage, ProviderAnalysis

if TYPE_CHECKING:
    from polyroute.ledger import Ledger

WINDOW_DAYS = 90
FIT_TARGET = 0.85
UNDERUSED_BELOW = 0.5
OUTAGE_FAILED = 0.5
"""A day with at least this share of its requests failed is an outage day."""


def month_bounds(today: date) -> tuple[date, date]:
    last = calendar.monthrange(today.year, today.month)[1]
    return today.replace(day=1), today.replace(day=last)


def analyze(
    days: Iterable[DayUsage],
    providers: Sequence[str],
    limits: Mapping[str, float | None],
    now: float,
    *,
    since: date | None = None,
) -> Analysis:
    """The analysis of ``providers`` from their ``days`` of usage, at Unix time ``now``;
    ``limits``: monthly limits in force; ``since``: the window's first day."""
    today = datetime.fromtimestamp(now, UTC).date()
    start = since or today - timedelta(days=WINDOW_DAYS)
    by_provider: dict[str, dict[date, DayUsage]] = defaultdict(dict)
    for d in days:
        by_provider[d.provider][d.day] = d
    rows = tuple(
        _provider(p, by_provider.get(p, {}), limits.get(p), now, today, start) for p in providers
    )
    underused = tuple(
        r.provider
        for r in rows
        if r.limit_usd
        and r.forecast_usd is not None
        and r.forecast_usd < UNDERUSED_BELOW * r.limit_usd
    )
    overused = tuple(
        r.provider
        for r in rows
        if r.limit_usd is not None and r.forecast_usd is not None and r.forecast_usd > r.limit_usd
    )
    return Analysis(
        today.strftime("%Y-%m"),
        rows,
        underused,
        overused,
        tuple(_recommend(rows, underused, overused)),
    )


def _provider(
    provider: str,
    days: Mapping[date, DayUsage],
    limit: float | None,
    now: float,
    today: date,
    start: date,
) -> ProviderAnalysis:
    month_start, month_end = month_bounds(today)
    window = sorted(d for d in days if start <= d <= today)
    spent = sum(days[d].cost_usd for d in days if month_start <= d <= today)
    spent_today = days[today].cost_usd if today in days else 0.0
    spent_week = sum(days[d].cost_usd for d in days if today - timedelta(days=6) <= d <= today)
    outages = tuple(d for d in window if _outage(days[d]))
    requests = sum(days[d].requests for d in window)
    ok = requests - sum(days[d].failed for d in window)
    cost = sum(days[d].cost_usd for d in window)
    complete = [d for d in window if d < today]
    fc = None
    if complete:
        first = complete[0]
        series: list[float | None] = []
        for i in range((today - first).days):
            d = first + timedelta(days=i)
            series.append(None if d in outages else (days[d].cost_usd if d in days else 0.0))
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()
        left_today = max(0.0, 1 - (now - midnight) / 86_400)
        fc = forecast(first, series, (month_end - today).days + 1, first_fraction=left_today)
    forecast_usd = low = high = trend = efficiency = None
    if fc is not None:
        forecast_usd, low, high = spent + fc.total_usd, spent + fc.low_usd, spent + fc.high_usd
        trend = fc.trend_per_week
    success = ok / requests if requests else None
    if limit and forecast_usd is not None:
        u = forecast_usd / limit
        fit = min(u / FIT_TARGET, FIT_TARGET / u) if u > 0 else 0.0
        efficiency = fit * (1.0 if success is None else success)
    return ProviderAnalysis(
        provider=provider,
        spent_usd=spent,
        spent_today_usd=spent_today,
        spent_week_usd=spent_week,
        limit_usd=limit,
        forecast_usd=forecast_usd,
        forecast_low_usd=low,
        forecast_high_usd=high,
        utilisation=spent / limit if limit else None,
        efficiency=efficiency,
        success_rate=success,
        cost_per_success_usd=cost / ok if ok else None,
        trend=trend,
        history_days=len(complete),
        outage_days=outages,
        outage_since=_outage_since(days, window),
        method=None if fc is None else fc.method,
    )


def _outage(d: DayUsage) -> bool:
    return d.requests > 0 and d.failed >= OUTAGE_FAILED * d.requests


def _outage_since(days: Mapping[date, DayUsage], window: Sequence[date]) -> date | None:
    """The first day of the outage its latest days with requests are in, if they are."""
    since = None
    for d in reversed(window):
        if not days[d].requests:
            continue
        if not _outage(days[d]):
            break
        since = d
    return since


def _recommend(
    rows: Sequence[ProviderAnalysis], underused: Sequence[str], overused: Sequence[str]
) -> list[str]:
    out = []
    for r in rows:
        if r.outage_since is not None:
            out.append(
                f"{r.provider}: failing since {r.outage_since} (outage); its requests fall back "
                "to others, which need the room"
            )
        if r.forecast_usd is None:
            out.append(f"{r.provider}: no complete day of usage yet, nothing to forecast")
            continue
        if r.provider in overused and r.limit_usd is not None:
            out.append(
                f"{r.provider}: forecast ${r.forecast_usd:.2f} is over its ${r.limit_usd:.2f} "
                "monthly limit: requests will be refused; raise it or move traffic"
            )
        elif r.provider in underused and r.limit_usd:
            out.append(
                f"{r.provider}: forecast ${r.forecast_usd:.2f} uses "
                f"{r.forecast_usd / r.limit_usd:.0%} of its ${r.limit_usd:.2f} limit: "
                "room to give to others"
            )
        elif r.limit_usd is None:
            out.append(
                f"{r.provider}: no monthly limit (forecast ${r.forecast_usd:.2f}); "
                "`polyroute budget optimize --total USD` proposes one"
            )
        if r.success_rate is not None and r.success_rate < 0.9 and r.outage_since is None:
            out.append(
                f"{r.provider}: {1 - r.success_rate:.0%} of its requests failed; cost per "
                "successful request counts them"
            )
    if underused and overused:
        out.append(
            f"move budget from {', '.join(underused)} to {', '.join(overused)}: "
            "`polyroute budget optimize` proposes how much"
        )
    return out


async def read_days(ledger: Ledger, first: date) -> list[DayUsage]:
    """Every provider's usage per UTC day from ``first`` on (records handed over so far
    included)."""
    from polyroute.budgeting._sql import daily_usage

    await ledger.flush()
    return await ledger.run(lambda store: daily_usage(store, first.isoformat()))


async def analyze_ledger(
    ledger: Ledger, providers: Sequence[str], now: float, *, since: date | None = None
) -> Analysis:
    """:func:`analyze` over ``ledger``'s records and the monthly limits in force."""
    from polyroute.ledger import provider_scope

    today = datetime.fromtimestamp(now, UTC).date()
    start = since or today - timedelta(days=WINDOW_DAYS)
    days = await read_days(ledger, min(start, month_bounds(today)[0]))
    statuses = await ledger.budgets(provider_scope(p) for p in providers)
    monthly = {s.scope: s.limits.monthly_usd for s in statuses}
    limits = {p: monthly.get(provider_scope(p)) for p in providers}
    # the forecasts' grid search is CPU work: off the event loop a gateway serves on
    return await asyncio.to_thread(analyze, days, providers, limits, now, since=start)
