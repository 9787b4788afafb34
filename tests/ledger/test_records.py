"""Periods: a record's UTC day and month, at their edges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyroute.ledger._records import NANO, day_of, period_key, to_nusd


@pytest.mark.parametrize(
    ("ts", "day"),
    [
        (0.0, "1970-01-01"),
        (86_399.999, "1970-01-01"),
        (86_400.0, "1970-01-02"),
        (-0.5, "1969-12-31"),
        (datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC).timestamp(), "2026-11-26"),
        (datetime(2026, 12, 1, tzinfo=UTC).timestamp(), "2026-12-01"),
    ],
)
def test_day_of_is_the_utc_day(ts: float, day: str) -> None:
    assert day_of(ts) == day


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**6))
def test_day_of_agrees_with_datetime(micros: int) -> None:
    ts = micros / 1e6  # microseconds, as datetime keeps them (it rounds finer ones)
    assert day_of(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def test_period_keys() -> None:
    ts = datetime(2026, 2, 28, 12, tzinfo=UTC).timestamp()
    assert (period_key("daily", ts), period_key("monthly", ts)) == (
        "day:2026-02-28",
        "month:2026-02",
    )


@pytest.mark.parametrize(
    ("usd", "nusd"),
    [
        (0.001, 1_000_000),  # 1000000.0000000001 in floats: float noise, not a nano-dollar
        (0.1 + 0.2, 300_000_000),
        (2.0004e-9, 2),
        (2.0006e-9, 3),
        (2.5e-9, 3),
        (0.0, 0),
    ],
)
def test_a_reservation_rounds_up_past_float_noise(usd: float, nusd: int) -> None:
    assert to_nusd(usd, up=True) == nusd


@given(st.floats(min_value=0, max_value=1_000.0))
def test_a_reservation_is_never_less_than_its_amount_by_more_than_float_noise(usd: float) -> None:
    held = to_nusd(usd, up=True)
    assert usd * NANO - 0.0005 <= held < usd * NANO + 1
