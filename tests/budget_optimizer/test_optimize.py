"""Analysis and allocation on synthetic days (no database): shapes, bounds, reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budget_optimizer.synthetic import Profile, days_of
from polyroute.budgeting import allocate, analyze, check_bounds, propose
from polyroute.errors import BudgetBoundsError, ConfigError

NOW = datetime(2026, 3, 20, 15, tzinfo=UTC).timestamp()  # 3/8 of the 20th still to come
TODAY = date(2026, 3, 20)
START = TODAY - timedelta(days=100)

PROFILES = {
    "rising": Profile(base=2.0, slope=0.05),
    "weekly": Profile(base=4.0, weekly=True),
    "was-down": Profile(base=3.0, outages=frozenset(range(70, 80))),
    "down": Profile(base=3.0, outages=frozenset(range(97, 101))),
}
ANALYZE_KEYS = {
    "provider",
    "spent_usd",
    "limit_usd",
    "forecast_usd",
    "forecast_low_usd",
    "forecast_high_usd",
    "utilisation",
    "efficiency",
    "success_rate",
    "cost_per_success_usd",
    "trend",
}


def fleet() -> tuple[list[str], dict[str, float | None]]:
    providers = [*PROFILES, "fresh"]
    limits: dict[str, float | None] = {
        "rising": 50.0,
        "weekly": 400.0,
        "was-down": 90.0,
        "down": 100.0,
        "fresh": None,
    }
    return providers, limits


def test_analyze_has_design_shape_and_reads_each_provider() -> None:
    providers, limits = fleet()
    days = days_of(PROFILES, START, 101)  # through today
    a = analyze(days, providers, limits, NOW)
    d = a.as_dict()
    assert set(d) == {"period", "providers", "underused", "overused", "recommendations"}
    assert d["period"] == "2026-03"
    assert [p["provider"] for p in d["providers"]] == providers
    assert all(set(p) == ANALYZE_KEYS for p in d["providers"])
    rows = {p.provider: p for p in a.providers}
    rising = rows["rising"]
    march = [x for x in days if x.provider == "rising" and x.day >= date(2026, 3, 1)]
    assert rising.spent_usd == pytest.approx(sum(x.cost_usd for x in march))
    assert rising.utilisation == pytest.approx(rising.spent_usd / 50)
    assert rising.forecast_low_usd < rising.forecast_usd < rising.forecast_high_usd  # type: ignore[operator]
    assert rising.trend is not None and rising.trend > 0
    assert rising.success_rate == 1.0
    assert "rising" in a.overused  # ~7/day: ~200 in March against 50
    assert "weekly" in a.underused  # ~4/day against 400
    assert rows["was-down"].outage_days and rows["was-down"].outage_since is None
    assert rows["was-down"].success_rate is not None and rows["was-down"].success_rate < 1
    assert rows["down"].outage_since == TODAY - timedelta(days=3)
    assert rows["fresh"].forecast_usd is None and rows["fresh"].spent_usd == 0
    assert any("down: failing since" in r for r in a.recommendations)
    assert any(r.startswith("fresh: no complete day") for r in a.recommendations)


def test_efficiency_is_fit_times_success() -> None:
    days = days_of({"p": Profile(base=10.0, noise=0.0)}, START, 100)  # through yesterday
    for limit, expected in ((None, None), (0.0, None)):
        assert analyze(days, ["p"], {"p": limit}, NOW).providers[0].efficiency == expected
    row = analyze(days, ["p"], {"p": 1000.0}, NOW).providers[0]
    forecast = row.forecast_usd
    assert forecast == pytest.approx(10 * (19 + 3 / 8 + 11), rel=0.01)  # spent + the rest
    u = forecast / 1000
    assert row.efficiency == pytest.approx(u / 0.85)
    row = analyze(days, ["p"], {"p": forecast / 0.85}, NOW).providers[0]
    assert row.efficiency == pytest.approx(1.0)


def test_the_proposal_follows_forecasts_within_bounds() -> None:
    providers, limits = fleet()
    a = analyze(days_of(PROFILES, START, 101), providers, limits, NOW)
    p = propose(a, 600.0, 20.0, 300.0)
    got = {x.provider: x for x in p.allocations}
    assert round(sum(x.proposed_usd for x in p.allocations) * 100) == 60000
    assert all(20 <= x.proposed_usd <= 300 for x in p.allocations)
    down = {r.provider: r for r in a.providers}["down"]
    assert down.spent_usd > 0  # before it failed; the reserve comes on top, so it can serve
    assert got["down"].proposed_usd == pytest.approx(20 + down.spent_usd, abs=0.01)
    assert "outage" in got["down"].reason and "it spent this month and the minimum" in (
        got["down"].reason
    )
    assert got["fresh"].proposed_usd == 20 and "no complete day" in got["fresh"].reason
    assert "outage day(s) left out" in got["was-down"].reason
    # rising (~190 in March) needs more than weekly (~124) than was-down (~93)
    assert got["rising"].proposed_usd > got["weekly"].proposed_usd > got["was-down"].proposed_usd
    assert got["rising"].current_usd == 50.0
    assert set(p.as_dict()) == {"total_usd", "method", "allocations", "applied"}
    assert set(p.as_dict()["allocations"][0]) == {
        "provider",
        "current_usd",
        "proposed_usd",
        "reason",
    }
    tight = {x.provider: x for x in propose(a, 600.0, 20.0, 200.0).allocations}
    assert tight["rising"].proposed_usd == 200 and "capped at the maximum" in tight["rising"].reason


def test_without_any_forecast_the_total_is_shared_evenly() -> None:
    cents = allocate({"a": None, "b": None, "c": None}, 100.0, 0.0, 100.0)
    assert cents == {"a": 3334, "b": 3333, "c": 3333}


def test_when_the_weighted_reach_the_max_the_others_share_the_rest() -> None:
    cents = allocate({"a": 50.0, "b": 10.0, "new": None}, 300.0, 10.0, 120.0)
    assert cents == {"a": 12000, "b": 12000, "new": 6000}


def test_a_held_provider_keeps_what_it_spent_plus_the_minimum_if_the_total_allows() -> None:
    needs = {"a": 50.0, "down": None}
    assert allocate(needs, 100.0, 10.0, 90.0, {"down": 30.0}) == {"a": 6000, "down": 4000}
    # 10 + 95 spent cannot fit beside a's minimum in 100: both minimums, the rest to a
    assert allocate(needs, 100.0, 10.0, 90.0, {"down": 95.0}) == {"a": 9000, "down": 1000}


@given(
    needs=st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
            st.floats(0, 1e3, allow_nan=False),
        ),
        min_size=1,
        max_size=8,
    ),
    lo=st.integers(0, 5000),
    span=st.integers(0, 50_000),
    fill=st.floats(0, 1),
)
def test_allocations_are_within_bounds_and_sum_to_the_total_in_cents(
    needs: list[tuple[float | None, float]], lo: int, span: int, fill: float
) -> None:
    n = len(needs)
    hi = lo + span
    total = n * lo + round(fill * n * span)
    weights = {f"p{i}": w for i, (w, _) in enumerate(needs)}
    spent = {f"p{i}": s for i, (_, s) in enumerate(needs)}
    cents = allocate(weights, total / 100, lo / 100, hi / 100, spent)
    assert sum(cents.values()) == total
    assert all(lo <= c <= hi for c in cents.values())


@pytest.mark.parametrize(
    ("total", "lo", "hi", "n", "message"),
    [
        (-1.0, 0.0, 10.0, 2, "the total must be 0 or more"),
        (100.0, 30.0, 20.0, 2, "min $30 is over max $20"),
        (100.0, 40.0, 90.0, 3, "min $40 x 3 providers is $120, over the total $100"),
        (100.0, 0.0, 30.0, 3, "max $30 x 3 providers is $90, under the total $100"),
        (100.0, 0.0, 30.0, 0, "no enabled provider"),
    ],
)
def test_bad_bounds_are_one_clear_line(
    total: float, lo: float, hi: float, n: int, message: str
) -> None:
    with pytest.raises(BudgetBoundsError) as err:
        check_bounds(total, lo, hi, n)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ConfigError)  # CLI exit 2
