"""The forecast on synthetic days: trend, weekly pattern, outages, short histories."""

from __future__ import annotations

from datetime import date

import pytest

from budget_optimizer.synthetic import Profile, days_of, series
from polyroute.budgeting import forecast, weekday_factors

START = date(2026, 1, 5)  # a Monday
HISTORY, AHEAD = 90, 30

PROFILES = {
    "trend": Profile(base=5.0, slope=0.1),
    "weekly": Profile(base=8.0, weekly=True),
    "trend+weekly": Profile(base=4.0, slope=0.05, weekly=True, noise=0.08),
    "outage": Profile(base=6.0, outages=frozenset(range(60, 72))),
}


@pytest.mark.parametrize("name", list(PROFILES))
def test_the_next_30_days_fall_within_the_interval_and_near_the_forecast(name: str) -> None:
    covered, errors = 0, []
    seeds = range(20)
    for seed in seeds:
        days = days_of({name: PROFILES[name]}, START, HISTORY + AHEAD, seed=seed)
        ys = series(days, name)
        f = forecast(START, ys[:HISTORY], AHEAD)
        assert f is not None
        actual = sum(v or 0.0 for v in ys[HISTORY:])
        covered += f.low_usd <= actual <= f.high_usd
        errors.append(abs(f.total_usd - actual) / actual)
    assert covered >= 17  # a 95 % interval: at most 3 misses in 20
    assert sum(errors) / len(errors) < 0.08


def test_a_trend_is_followed_and_reported() -> None:
    days = days_of({"t": Profile(base=5.0, slope=0.2, noise=0.02)}, START, 60)
    f = forecast(START, series(days, "t"), 7)
    assert f is not None
    assert f.trend_per_week > 0.05  # 0.2 a day on ~17: +8 % a week
    assert f.daily_usd[-1] > f.daily_usd[0]
    flat = forecast(START, series(days_of({"f": Profile(base=5.0)}, START, 60), "f"), 7)
    assert flat is not None and abs(flat.trend_per_week) < 0.03


def test_the_weekly_pattern_is_found_and_forecast() -> None:
    days = days_of({"w": Profile(base=8.0, weekly=True, noise=0.03)}, START, 56)
    ys = series(days, "w")
    factors = weekday_factors(START, ys)
    assert factors[5] < 0.6 and factors[6] < 0.6 and factors[0] > 1.1
    assert sum(factors) == pytest.approx(7)
    f = forecast(START, ys, 7)  # the 7 days after 8 whole weeks: Monday to Sunday
    assert f is not None and f.method == "holt-damped-weekly"
    assert f.daily_usd[5] < 0.6 * f.daily_usd[0]


def test_outage_days_are_left_out_not_counted_as_no_demand() -> None:
    healthy = series(days_of({"h": Profile(base=10.0)}, START, 40), "h")
    with_outage = healthy[:30] + [None] * 10
    with_zeros = healthy[:30] + [0.0] * 10
    f_missing = forecast(START, with_outage, 10)
    f_zero = forecast(START, with_zeros, 10)
    assert f_missing is not None and f_zero is not None
    assert f_missing.total_usd == pytest.approx(100, rel=0.05)
    assert f_zero.total_usd < 50  # ten days of nothing: a lasting change, followed


def test_short_histories_use_the_mean_with_a_wide_interval() -> None:
    assert forecast(START, [], 10) is None
    assert forecast(START, [None, None], 10) is None
    one = forecast(START, [3.0], 10)
    assert one is not None and one.method == "mean"
    assert one.total_usd == pytest.approx(30)
    assert one.low_usd == 0.0 and one.high_usd > 60
    few = forecast(START, [3.0, 4.0, 5.0], 10)
    assert few is not None and few.low_usd < 40 < few.high_usd


def test_the_first_day_counts_only_the_part_still_to_come() -> None:
    ys = [10.0 + (i % 3) - 1 for i in range(21)]  # 9, 10, 11, ...: the next is 9
    whole = forecast(START, ys, 3)
    half = forecast(START, ys, 3, first_fraction=0.5)
    assert whole is not None and half is not None
    assert half.total_usd == pytest.approx(whole.total_usd - whole.daily_usd[0] / 2)
    assert half.high_usd - half.low_usd < whole.high_usd - whole.low_usd


def test_the_interval_widens_with_the_horizon() -> None:
    ys = series(days_of({"n": Profile(base=5.0, noise=0.2)}, START, 60), "n")
    widths = []
    for h in (7, 14, 30):
        f = forecast(START, ys, h)
        assert f is not None
        widths.append(f.high_usd - f.low_usd)
    assert widths[0] < widths[1] < widths[2]


def test_a_short_burst_barely_moves_the_forecast() -> None:
    ys = series(days_of({"b": Profile(base=10.0)}, START, 40), "b")
    calm = forecast(START, ys, 30)
    burst = forecast(START, [*ys[:-3], 40.0, 45.0, ys[-1]], 30)  # another provider's fallback
    assert calm is not None and burst is not None
    assert burst.total_usd == pytest.approx(calm.total_usd, rel=0.1)
