"""Daily spend forecasts with a prediction interval for the total of the days ahead.

The method, per provider, on complete UTC days, oldest first (a day of an outage is
missing, ``None``: neither demand nor its absence is known):

1. Weekly pattern (14 days or more): each weekday's factor is the median ratio of its
   days to their centred 7-day mean (missing days left out), normalised to average 1.
   With fewer days, or a weekday seen fewer than twice, the factors are 1.
2. Holt's damped linear trend on the deseasonalised days (spend / factor): level ``l``,
   trend ``b``, damping ``phi``; ``alpha``, ``beta`` and ``phi`` are the grid point with
   the smallest one-step squared error. Robust to bursts (traffic another provider's
   outage sent here, a one-off batch): a one-step error counts at most 2.5 running scales
   (the scale an exponentially weighted RMS of the clipped errors; Gelper, Fried and
   Croux's robust Holt-Winters, 2010), so a burst barely moves level and trend while a
   lasting shift, its errors growing the scale, is followed within days. A missing day
   carries level and trend forward unchanged. Day ``h`` ahead is
   ``(l + (phi + ... + phi^h) b) x factor``, at least 0.
   With 2 to 6 days: the mean, no trend, no pattern.
3. Interval: ``sigma``, the RMS of the clipped one-step errors (scaled up for the three
   fitted parameters). In Holt's state-space form a shock on day ``k`` moves day
   ``j > k`` by ``c(j-k) = alpha (1 + beta (phi + ... + phi^(j-k)))``, so the total of
   days ``1..H`` has variance ``sigma^2 sum_k (f_k + sum_{j>k} c(j-k) f_j)^2`` (``f``:
   the weekday factors), and the 95 % interval is the total +- 1.96 of its square root,
   floored at 0. The mean model's total has variance ``sigma^2 (H + H^2 / n)`` (the
   days' own noise and the mean's uncertainty); with one day, ``sigma`` is that day's
   spend (nothing better is known).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

Z95 = 1.959964
ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
BETAS = (0.01, 0.05, 0.1, 0.2)
PHIS = (0.8, 0.9, 0.98)
CLIP = 2.5
SCALE_RATE = 0.2
MIN_FACTOR = 0.1
"""A weekday factor is at least this: a near-empty weekday must not blow up its days."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """The total expected over the days ahead and its 95 % prediction interval."""

    total_usd: float
    low_usd: float
    high_usd: float
    daily_usd: tuple[float, ...]
    """Each day ahead (the first one scaled by the part of it still to come)."""
    trend_per_week: float
    """Change in daily spend over a week, relative to the level (0.1: +10 % a week)."""
    method: str


def weekday_factors(start: date, days: Sequence[float | None]) -> tuple[float, ...]:
    """Monday-first factors averaging 1 (all 1 when the days cannot tell)."""
    n = len(days)
    if n < 14:
        return (1.0,) * 7
    ratios: list[list[float]] = [[] for _ in range(7)]
    for i in range(3, n - 3):
        y = days[i]
        window = [v for v in days[i - 3 : i + 4] if v is not None]
        if y is None or len(window) < 5:
            continue
        mean = sum(window) / len(window)
        if mean > 0:
            ratios[(start + timedelta(days=i)).weekday()].append(y / mean)
    if any(len(r) < 2 for r in ratios):
        return (1.0,) * 7
    raw = [max(MIN_FACTOR, statistics.median(r)) for r in ratios]
    norm = sum(raw) / 7
    return tuple(f / norm for f in raw)


def _holt(
    z: Sequence[float | None], alpha: float, beta: float, phi: float
) -> tuple[float, float, float, int]:
    """Run the recursion; returns level, trend, the clipped one-step errors' sum of
    squares, and their count."""
    seen = [v for v in z if v is not None]
    first = seen[:7]
    level = sum(first) / len(first)
    trend = 0.0
    if len(seen) >= 14:
        trend = (sum(seen[7:14]) - sum(first)) / 49
    scale = max(1.25 * sum(abs(v - level) for v in first) / len(first), 0.01 * abs(level), 1e-9)
    sse, count = 0.0, 0
    for v in z:
        guess = level + phi * trend
        if v is None:
            level, trend = guess, phi * trend
            continue
        bound = CLIP * scale
        err = min(bound, max(-bound, v - guess))
        scale = math.sqrt((1 - SCALE_RATE) * scale * scale + SCALE_RATE * err * err)
        sse += err * err
        count += 1
        new_level = guess + alpha * err
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        level = new_level
    return level, trend, sse, count


def forecast(
    start: date, days: Sequence[float | None], horizon: int, *, first_fraction: float = 1.0
) -> Forecast | None:
    """The total of the ``horizon`` days after ``days`` (which begin on ``start``);
    ``first_fraction``: the part of the first of them still to come. ``None`` without a
    single known day."""
    known = [v for v in days if v is not None]
    if not known or horizon <= 0:
        return None
    first = start + timedelta(days=len(days))
    weights = [first_fraction, *([1.0] * (horizon - 1))]
    if len(known) < 7:
        return _mean_forecast(known, weights)
    factors = weekday_factors(start, days)
    z = [
        None if v is None else v / factors[(start + timedelta(days=i)).weekday()]
        for i, v in enumerate(days)
    ]
    best = min(
        ((a, b, p, *_holt(z, a, b, p)) for a in ALPHAS for b in BETAS for p in PHIS),
        key=lambda r: r[5],
    )
    alpha, beta, phi, level, trend, sse, count = best
    sigma = math.sqrt(sse / max(1, count - 3))
    ahead = [factors[(first + timedelta(days=h)).weekday()] for h in range(horizon)]
    daily, damp = [], 0.0
    for h in range(horizon):
        damp += phi ** (h + 1)
        daily.append(max(0.0, (level + damp * trend) * ahead[h]) * weights[h])
    # c[m]: how much a shock m days earlier still moves a day
    c, acc = [1.0], 0.0
    for m in range(1, horizon):
        acc += phi**m
        c.append(alpha * (1 + beta * acc))
    var = 0.0
    for k in range(horizon):
        reach = sum(c[j - k] * ahead[j] * weights[j] for j in range(k, horizon))
        var += reach * reach
    total = sum(daily)
    spread = Z95 * sigma * math.sqrt(var)
    return Forecast(
        total,
        max(0.0, total - spread),
        total + spread,
        tuple(daily),
        7 * trend / level if level > 0 else 0.0,
        "holt-damped-weekly" if factors != (1.0,) * 7 else "holt-damped",
    )


def _mean_forecast(known: Sequence[float], weights: Sequence[float]) -> Forecast:
    n = len(known)
    mean = sum(known) / n
    sigma = mean if n == 1 else math.sqrt(sum((v - mean) ** 2 for v in known) / (n - 1))
    h = sum(weights)
    total = mean * h
    spread = Z95 * sigma * math.sqrt(h + h * h / n)
    return Forecast(
        total,
        max(0.0, total - spread),
        total + spread,
        tuple(mean * w for w in weights),
        0.0,
        "mean",
    )
