"""The Ledger on a temporary SQLite file: reports, durability, budgets, alerts, failure paths."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import OperationalError

from polyroute.errors import BudgetExceeded, LedgerError
from polyroute.hub import BudgetAlert, HubEvent, UsageRecorded
from polyroute.ledger import (
    GLOBAL,
    KEEP,
    BudgetLimits,
    BudgetStatus,
    Ledger,
    Reservation,
    UsageRecord,
    provider_scope,
)
from polyroute.ledger import _ledger as ledger_module
from polyroute.ledger._records import MAX_USD, to_nusd
from polyroute.ledger._schema import MIGRATIONS, leases, spend, usage
from polyroute.ledger._store import Store

PA = provider_scope("a")
PB = provider_scope("b")


def ts_of(day: str, hour: int = 12) -> float:
    """Unix time of ``hour`` o'clock UTC on ``day`` (YYYY-MM-DD)."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC).timestamp()


T0 = ts_of("2026-03-10")


class Clock:
    """An injectable clock: ``now`` is what the ledger sees."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


DAY = 86_400.0


def rec(
    ts: float = T0,
    provider: str = "a",
    model: str = "m1",
    *,
    prompt: int = 10,
    completion: int = 20,
    cost: float | None = 0.001,
    status: Any = "ok",
    **kw: Any,
) -> UsageRecord:
    return UsageRecord(
        ts=ts,
        provider=provider,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        status=status,
        **kw,
    )


Make = Callable[..., Ledger]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's database: a SQLite file, or a fresh PostgreSQL database (semantics are
    the same on both; tests about SQLite's file are marked ``SQLITE_FILE``)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/l.db"


SQLITE_FILE = pytest.mark.parametrize("url", ["sqlite"], indirect=True)
"""For a test about SQLite's file (opened with sqlite3, its query plan, a spill beside it)."""


@pytest.fixture
async def make(url: str) -> AsyncIterator[Make]:
    """Open ledgers on the test's file (or another URL); every one is closed at the end."""
    opened: list[Ledger] = []

    def _make(target: str | None = None, **kw: Any) -> Ledger:
        kw.setdefault("clock", Clock())
        ledger = Ledger(target or url, **kw)
        opened.append(ledger)
        return ledger

    yield _make
    for ledger in opened:
        await ledger.aclose()


async def reserve(
    ledger: Ledger, amount: float | None, provider: str = "a", ts: float | None = None
) -> Reservation:
    when = ledger.clock() if ts is None else ts
    return await ledger.reserve(provider=provider, model="m1", amount_usd=amount, ts=when)


def status_of(statuses: list[BudgetStatus], scope: str) -> BudgetStatus:
    [hit] = [s for s in statuses if s.scope == scope]
    return hit


def spend_row(store: Store, scope: str, period: str) -> tuple[int, int]:
    with store.read() as c:
        row = c.execute(
            select(spend.c.spent_nusd, spend.c.reserved_nusd).where(
                spend.c.scope == scope, spend.c.period == period
            )
        ).one()
    return int(row.spent_nusd), int(row.reserved_nusd)


def usage_rows(store: Store) -> list[dict[str, Any]]:
    with store.read() as c:
        return [dict(r) for r in c.execute(select(usage).order_by(usage.c.id)).mappings()]


# -- usage reports -------------------------------------------------------------


async def test_usage_by_provider_and_model_counts_failures_tokens_and_costs(make: Make) -> None:
    ledger = make()
    for r in (
        rec(provider="a", model="m1", prompt=10, completion=20, cost=0.001),
        rec(provider="a", model="m1", prompt=5, completion=0, cost=0.0, status="error"),
        rec(provider="a", model="m2", prompt=7, completion=3, cost=0.0005, status="cancelled"),
        rec(provider="b", model="m1", prompt=100, completion=50, cost=0.01),
        rec(provider="c", model="m3", prompt=1, completion=2, cost=None),  # unpriced
    ):
        ledger.record(r)

    by_provider = await ledger.usage(by="provider")
    assert by_provider.as_dict() == {
        "total_cost_usd": 0.0115,
        "total_carbon_g": 0.0,  # these records carry no estimate
        "requests": 5,
        "rows": [  # most expensive first; the unpriced provider adds no cost
            {
                "provider": "b",
                "requests": 1,
                "failed": 0,
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "cost_usd": 0.01,
                "carbon_g": 0.0,
            },
            {
                "provider": "a",
                "requests": 3,
                "failed": 2,
                "prompt_tokens": 22,
                "completion_tokens": 23,
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "cost_usd": 0.0015,
                "carbon_g": 0.0,
            },
            {
                "provider": "c",
                "requests": 1,
                "failed": 0,
                "prompt_tokens": 1,
                "completion_tokens": 2,
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "cost_usd": 0.0,
                "carbon_g": 0.0,
            },
        ],
    }

    by_model = await ledger.usage(by="model")
    assert [(r.key, r.requests, r.failed, r.cost_usd) for r in by_model.rows] == [
        ("m1", 3, 1, pytest.approx(0.011)),
        ("m2", 1, 1, pytest.approx(0.0005)),
        ("m3", 1, 0, 0.0),
    ]
    assert by_model.requests == 5 and by_model.total_cost_usd == pytest.approx(0.0115)

    only_a = await ledger.usage(by="model", provider="a")
    assert [(r.key, r.requests) for r in only_a.rows] == [("m1", 2), ("m2", 1)]
    assert only_a.as_dict()["total_cost_usd"] == 0.0015


async def test_usage_ties_in_cost_are_ordered_by_key(make: Make) -> None:
    ledger = make()
    for p in ("zeta", "alpha", "mid"):
        ledger.record(rec(provider=p, cost=0.002))
    report = await ledger.usage(by="provider")
    assert [r.key for r in report.rows] == ["alpha", "mid", "zeta"]


async def test_usage_by_day_and_month_with_since_and_provider_filters(make: Make) -> None:
    ledger = make()
    for r in (
        rec(ts_of("2026-02-27"), "a", cost=0.001),
        rec(ts_of("2026-02-28", hour=0), "a", cost=0.002),
        rec(ts_of("2026-02-28", hour=23), "b", cost=0.004, status="error"),
        rec(ts_of("2026-03-01"), "a", cost=0.008),
        rec(ts_of("2026-03-10"), "b", cost=0.016),
    ):
        ledger.record(r)

    by_day = await ledger.usage(by="day")
    assert [(r.key, r.requests, r.failed) for r in by_day.rows] == [
        ("2026-02-27", 1, 0),
        ("2026-02-28", 2, 1),
        ("2026-03-01", 1, 0),
        ("2026-03-10", 1, 0),
    ]
    assert by_day.rows[1].cost_usd == pytest.approx(0.006)
    assert by_day.as_dict()["rows"][0] == {
        "day": "2026-02-27",
        "requests": 1,
        "failed": 0,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.001,
        "carbon_g": 0.0,
    }

    by_month = await ledger.usage(by="month")
    assert [(r.key, r.requests) for r in by_month.rows] == [("2026-02", 3), ("2026-03", 2)]
    assert [r.cost_usd for r in by_month.rows] == [
        pytest.approx(0.007),
        pytest.approx(0.024),
    ]

    # since: from that UTC day on (the whole day, even before the given hour)
    since = await ledger.usage(by="day", since=ts_of("2026-02-28", hour=23))
    assert [r.key for r in since.rows] == ["2026-02-28", "2026-03-01", "2026-03-10"]
    assert since.requests == 4

    a_since = await ledger.usage(by="month", provider="a", since=ts_of("2026-02-28"))
    assert [(r.key, r.requests) for r in a_since.rows] == [("2026-02", 1), ("2026-03", 1)]
    assert a_since.total_cost_usd == pytest.approx(0.010)

    nothing = await ledger.usage(by="provider", provider="nobody")
    assert nothing.as_dict() == {
        "total_cost_usd": 0,
        "total_carbon_g": 0,
        "requests": 0,
        "rows": [],
    }


@SQLITE_FILE
async def test_usage_query_by_provider_and_since_uses_an_index(make: Make) -> None:
    ledger = make()
    for i in range(20):
        ledger.record(rec(T0 + i * DAY, provider="ab"[i % 2]))
    await ledger.flush()
    compiled = (
        select(usage.c.day, usage.c.cost_nusd, usage.c.status)
        .where(usage.c.provider == "a", usage.c.day >= "2026-03-15")
        .compile(compile_kwargs={"literal_binds": True})
    )
    by_hand = (
        "SELECT day, count(*), sum(cost_nusd), sum(prompt_tokens) FROM usage "
        "WHERE provider = 'a' AND day >= '2026-03-15' GROUP BY day ORDER BY day"
    )
    for sql in (str(compiled), by_hand):
        plan = await ledger.run(partial(Store.explain, sql=sql))
        text = " | ".join(plan)
        assert "USING INDEX ix_usage_provider_day" in text, text
        assert not re.search(r"\bSCAN usage\b(?! USING)", text), text


# -- durability ----------------------------------------------------------------


async def test_records_handed_over_are_all_there_after_aclose(make: Make) -> None:
    ledger = make(flush_interval_s=30)  # nothing is written before the close
    for i in range(250):
        ledger.record(rec(T0 + i, cost=0.001))
    await ledger.aclose()

    again = make()
    assert await again.run(lambda s: s.count()) == 250
    report = await again.usage(by="provider")
    assert report.requests == 250 and report.total_cost_usd == pytest.approx(0.25)


@SQLITE_FILE
async def test_flush_makes_records_visible_to_another_connection(make: Make, url: str) -> None:
    ledger = make(flush_interval_s=30)
    path = url.removeprefix("sqlite:///")
    ledger.record(rec(status="error", error_type="rate_limit", request_id="req-1", ttft_ms=12.5))
    ledger.record(rec(virtual_key="k1", latency_ms=99.0))
    await ledger.flush()
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT status, error_type, request_id, ttft_ms, virtual_key, latency_ms, day, month "
            "FROM usage ORDER BY id"
        ).fetchall()
    assert rows == [
        ("error", "rate_limit", "req-1", 12.5, None, 0.0, "2026-03-10", "2026-03"),
        ("ok", None, None, None, "k1", 99.0, "2026-03-10", "2026-03"),
    ]


async def test_records_are_written_in_batches_without_a_flush(make: Make) -> None:
    ledger = make(flush_interval_s=0.02)
    seen: list[HubEvent] = []
    ledger.hub.bind(asyncio.get_running_loop())
    ledger.hub.subscribe(seen.append, "usage_recorded")
    ledger.record(rec())
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert [type(e) for e in seen] == [UsageRecorded]
    assert await ledger.run(lambda s: s.count()) == 1


@SQLITE_FILE
async def test_a_full_batch_is_written_without_waiting_for_the_timer(make: Make, url: str) -> None:
    ledger = make(flush_interval_s=30, max_batch=50, durability="batched")
    busy, release = threading.Event(), threading.Event()

    def hold(store: object) -> None:  # the thread finds the whole burst waiting
        busy.set()
        release.wait(5)

    held = asyncio.ensure_future(ledger.run(hold))
    await asyncio.to_thread(busy.wait, 5)
    for i in range(120):
        ledger.record(rec(T0 + i))
    release.set()
    await held

    def written() -> int:  # read from outside: a call to the ledger would flush first
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return int(db.execute("SELECT count(*) FROM usage").fetchone()[0])

    for _ in range(200):  # a full batch goes at once, with what else is pending by then
        if written() == 120:
            break
        await asyncio.sleep(0.01)
    assert written() == 120  # long before the 30 s timer, with no flush asked


def _count_wakes(ledger: Ledger) -> list[object]:
    """The jobs put on ``ledger``'s queue from now on (they still reach its thread)."""
    woken: list[object] = []
    jobs = ledger._jobs

    class Counting:
        def put(self, job: Any) -> None:
            woken.append(job)
            jobs.put(job)

        def get(self, timeout: float | None = None) -> Any:
            return jobs.get(timeout=timeout)

    ledger._jobs = Counting()  # type: ignore[assignment]
    return woken


async def test_records_wake_the_thread_once_per_batch(make: Make) -> None:
    ledger = make(flush_interval_s=30, max_batch=50, durability="batched")
    busy, release = threading.Event(), threading.Event()

    def hold(store: object) -> None:  # keeps the database thread away from the records
        busy.set()
        release.wait(5)

    held = asyncio.ensure_future(ledger.run(hold))
    await asyncio.to_thread(busy.wait, 5)
    woken = _count_wakes(ledger)
    for i in range(120):
        ledger.record(rec(T0 + i))
    release.set()
    await held
    assert len(woken) == 2  # the first record and the 50th (a full batch), not one per record
    await ledger.flush()
    assert await ledger.run(lambda s: s.count()) == 120


async def test_records_arriving_one_by_one_to_an_idle_thread_wake_it_once(make: Make) -> None:
    ledger = make(flush_interval_s=30, durability="batched")
    await ledger.run(lambda s: None)  # open, and idle
    woken = _count_wakes(ledger)
    for i in range(20):  # as a gateway at one connection hands them over
        ledger.record(rec(T0 + i))
        await asyncio.sleep(0.002)
    assert len(woken) == 1  # the batch's first record; the thread waits for its timer
    await ledger.flush()
    assert await ledger.run(lambda s: s.count()) == 20


@SQLITE_FILE
async def test_a_steady_stream_of_calls_does_not_hold_back_the_records(
    make: Make, url: str
) -> None:
    ledger = make(flush_interval_s=0.02)
    await ledger.run(lambda s: None)
    ledger.record(rec())

    def written() -> int:  # read from outside: a call to the ledger would flush first
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return int(db.execute("SELECT count(*) FROM usage").fetchone()[0])

    calls = [ledger.run(lambda s: time.sleep(0.002)) for _ in range(200)]  # ~0.4 s of calls
    queued = asyncio.gather(*calls)
    for _ in range(100):
        if written():
            break
        await asyncio.sleep(0.01)
    assert written() == 1 and not queued.done()  # written while the calls still queue
    await queued


@SQLITE_FILE
async def test_migrations_are_applied_once_across_reopenings(make: Make, url: str) -> None:
    first = make()
    assert await first.run(lambda s: s.applied) == [name for name, _ in MIGRATIONS]
    await first.aclose()
    for _ in range(2):
        again = make()
        assert await again.run(lambda s: s.applied) == []
        await again.aclose()
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        names = db.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
        mode = db.execute("PRAGMA journal_mode").fetchone()
    assert names == [(name,) for name, _ in MIGRATIONS]
    assert mode == ("wal",)


# -- budgets -------------------------------------------------------------------


async def test_cli_budget_overrides_config_keep_leaves_and_none_removes(make: Make) -> None:
    config = {PA: BudgetLimits(daily_usd=1.0, monthly_usd=10.0, alert_percents=(50,))}
    ledger = make(budgets=config)
    [a] = await ledger.budgets()
    assert (a.scope, a.source, a.limits) == (PA, "config", config[PA])

    with pytest.raises(BudgetExceeded):
        await reserve(ledger, 1.5)  # the config's daily $1 refuses it

    limits = await ledger.set_budget(PA, daily_usd=2.0)
    assert limits == BudgetLimits(2.0, 10.0, (50,))  # monthly and alerts kept from the config
    status = status_of(await ledger.budgets(), PA)
    assert status.source == "cli" and status.limits == limits
    held = await reserve(ledger, 1.5)  # the CLI's $2 now applies
    assert held.targets

    limits = await ledger.set_budget(PA, monthly_usd=None, alert_percents=KEEP)
    assert limits == BudgetLimits(2.0, None, (50,))
    limits = await ledger.set_budget(PA, daily_usd=None, alert_percents=(80.0,))
    assert limits == BudgetLimits(None, None, (80.0,)) and limits.empty
    # no limit is left for provider a: anything is admitted, with nothing held
    free = await reserve(ledger, 500.0)
    assert free.targets == ()

    g = await ledger.set_budget(GLOBAL, daily_usd=3.0)
    assert g == BudgetLimits(3.0, None, (50, 75, 90))  # a new scope starts from no limits
    await ledger.aclose()

    # the CLI's budgets are in the database: a new ledger with the same config sees them
    reopened = make(budgets=config)
    statuses = {s.scope: s for s in await reopened.budgets([PB])}
    assert statuses[PA].source == "cli" and statuses[PA].limits.empty
    assert statuses[GLOBAL].source == "cli" and statuses[GLOBAL].limits.daily_usd == 3.0
    assert statuses[PB].source == "none" and statuses[PB].daily.left_usd is None


async def test_budget_status_spent_reserved_left_and_release_on_settle(make: Make) -> None:
    ledger = make(budgets={PA: BudgetLimits(daily_usd=1.0, monthly_usd=5.0)})
    held = await reserve(ledger, 0.3)
    assert held.amount_usd == 0.3
    assert set(held.targets) == {(PA, "day:2026-03-10"), (PA, "month:2026-03")}

    s = status_of(await ledger.budgets(), PA)
    assert (s.daily.spent_usd, s.daily.reserved_usd, s.daily.left_usd) == (0.0, 0.3, 0.7)
    assert (s.monthly.spent_usd, s.monthly.reserved_usd) == (0.0, 0.3)
    assert s.monthly.left_usd == pytest.approx(4.7)
    assert s.as_dict()["daily"] == {
        "period": "2026-03-10",
        "limit_usd": 1.0,
        "spent_usd": 0.0,
        "reserved_usd": 0.3,
        "left_usd": 0.7,
    }

    ledger.record(rec(cost=0.1), held)
    s = status_of(await ledger.budgets(), PA)
    assert (s.daily.spent_usd, s.daily.reserved_usd) == (0.1, 0.0)
    assert s.daily.left_usd == pytest.approx(0.9)
    assert s.monthly.period == "month:2026-03" and s.monthly.as_dict()["period"] == "2026-03"
    rows = await ledger.run(lambda st: spend_row(st, PA, "day:2026-03-10"))
    assert rows == (to_nusd(0.1), 0)
    # unbudgeted scopes are tracked too (for `budget show`), with nothing held
    g = status_of(await ledger.budgets([GLOBAL]), GLOBAL)
    assert g.source == "none" and g.daily.spent_usd == 0.1 and g.daily.reserved_usd == 0.0


async def test_budget_exceeded_names_scope_period_and_amounts(make: Make) -> None:
    ledger = make(budgets={PA: BudgetLimits(daily_usd=1.0)})
    first = await reserve(ledger, 0.25)
    ledger.record(rec(cost=0.25), first)
    await ledger.flush()
    await reserve(ledger, 0.5)  # held, not settled
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.3)
    e = info.value
    assert (e.scope, e.period, e.limit_usd) == (PA, "daily", 1.0)
    assert (e.spent_usd, e.reserved_usd, e.requested_usd) == (0.25, 0.5, 0.3)
    assert e.model == "m1"
    msg = str(e)
    assert msg.startswith(f"daily budget for {PA} ($1.00)")
    for amount in ("0.25", "0.5", "0.3"):
        assert f"${amount}" in msg, msg
    # the refused request held nothing
    s = status_of(await ledger.budgets(), PA)
    assert (s.daily.spent_usd, s.daily.reserved_usd) == (0.25, 0.5)


async def test_unpriced_request_is_refused_under_a_budget_and_admitted_without(
    make: Make,
) -> None:
    ledger = make(budgets={PB: BudgetLimits(monthly_usd=100.0)})
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, None, provider="b")
    e = info.value
    assert (e.scope, e.period, e.limit_usd, e.requested_usd) == (PB, "monthly", 100.0, None)
    assert "m1" in str(e) and "no price" in str(e)

    free = await reserve(ledger, None, provider="a")  # no budget applies to provider a
    assert free.targets == () and free.amount_usd == 0.0
    ledger.record(rec(provider="a", cost=None), free)
    report = await ledger.usage()
    assert report.requests == 1 and report.total_cost_usd == 0.0


async def test_settling_below_the_reservation_frees_budget(make: Make) -> None:
    ledger = make(budgets={PA: BudgetLimits(daily_usd=1.0)})
    held = await reserve(ledger, 0.6)
    with pytest.raises(BudgetExceeded):
        await reserve(ledger, 0.6)
    ledger.record(rec(cost=0.1), held)
    await ledger.flush()
    second = await reserve(ledger, 0.6)  # 0.1 spent + 0.6 held fits $1
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.4)
    assert (info.value.spent_usd, info.value.reserved_usd) == (0.1, 0.6)
    ledger.record(rec(cost=0.0, status="error"), second)
    s = status_of(await ledger.budgets(), PA)
    assert (s.daily.spent_usd, s.daily.reserved_usd) == (0.1, 0.0)


async def test_global_and_provider_budgets_both_apply(make: Make) -> None:
    ledger = make(budgets={GLOBAL: BudgetLimits(daily_usd=1.0), PA: BudgetLimits(daily_usd=0.5)})
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.6, provider="a")
    assert info.value.scope == PA
    # the global hold taken before the provider refused was rolled back
    g = status_of(await ledger.budgets(), GLOBAL)
    assert g.daily.reserved_usd == 0.0

    on_b = await reserve(ledger, 0.6, provider="b")  # only the global budget applies to b
    assert [t[0] for t in on_b.targets] == [GLOBAL]
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.5, provider="a")  # a's own budget fits, the global does not
    assert info.value.scope == GLOBAL and info.value.reserved_usd == 0.6
    on_a = await reserve(ledger, 0.4, provider="a")
    assert {t[0] for t in on_a.targets} == {GLOBAL, PA}
    statuses = {s.scope: s for s in await ledger.budgets()}
    assert statuses[GLOBAL].daily.reserved_usd == pytest.approx(1.0)
    assert statuses[GLOBAL].daily.left_usd == pytest.approx(0.0)
    assert statuses[PA].daily.reserved_usd == 0.4


async def test_monthly_limit_across_days(make: Make) -> None:
    clock = Clock(ts_of("2026-03-01"))
    ledger = make(budgets={PA: BudgetLimits(monthly_usd=1.0)}, clock=clock)
    for _ in range(2):
        held = await reserve(ledger, 0.4)
        ledger.record(rec(clock.now, cost=0.4), held)
        await ledger.flush()
        clock.advance(DAY)
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.4)
    e = info.value
    assert (e.period, e.spent_usd, e.reserved_usd, e.limit_usd) == ("monthly", 0.8, 0.0, 1.0)
    await reserve(ledger, 0.2)  # what is left still fits
    clock.now = ts_of("2026-04-01", hour=0)  # a new month starts from nothing
    await reserve(ledger, 0.9)
    s = status_of(await ledger.budgets(), PA)
    assert s.monthly.period == "month:2026-04" and s.monthly.spent_usd == 0.0
    assert s.monthly.reserved_usd == 0.9


async def test_new_utc_day_resets_the_daily_period_but_not_the_monthly(make: Make) -> None:
    clock = Clock(ts_of("2026-03-10", hour=23))
    ledger = make(budgets={PA: BudgetLimits(daily_usd=1.0, monthly_usd=1.5)}, clock=clock)
    held = await reserve(ledger, 0.9)
    ledger.record(rec(clock.now, cost=0.9), held)
    await ledger.flush()
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.2)
    assert info.value.period == "daily"

    clock.advance(3600)  # 00:00 UTC the next day
    await reserve(ledger, 0.2)
    s = status_of(await ledger.budgets(), PA)
    assert s.daily.period == "day:2026-03-11"
    assert (s.daily.spent_usd, s.daily.reserved_usd) == (0.0, 0.2)
    assert (s.monthly.spent_usd, s.monthly.reserved_usd) == (0.9, 0.2)
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.5)  # fits the new day, not the month
    assert info.value.period == "monthly" and info.value.spent_usd == 0.9


async def test_concurrent_reserves_admit_exactly_the_limit(make: Make) -> None:
    worst = 0.01
    limit = 50 * worst
    ledger = make(budgets={GLOBAL: BudgetLimits(daily_usd=limit)})
    results = await asyncio.gather(
        *(reserve(ledger, worst, provider=f"p{i % 7}") for i in range(200)),
        return_exceptions=True,
    )
    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) == 50 and len(refused) == 150
    assert len({r.id for r in admitted}) == 50
    spent, reserved = await ledger.run(lambda s: spend_row(s, GLOBAL, "day:2026-03-10"))
    assert spent == 0 and reserved == to_nusd(limit)
    assert all(e.reserved_usd + e.requested_usd > limit for e in refused if e.requested_usd)

    for r in admitted:
        ledger.record(rec(provider="p0", cost=worst / 2), r)
    await ledger.flush()
    spent, reserved = await ledger.run(lambda s: spend_row(s, GLOBAL, "day:2026-03-10"))
    assert reserved == 0 and spent == to_nusd(limit / 2)


async def test_two_ledgers_on_one_file_share_the_limit(make: Make) -> None:
    """Two connections (as two processes would have) cannot together pass the limit."""
    budgets = {PA: BudgetLimits(daily_usd=0.5)}
    one, two = make(budgets=budgets), make(budgets=budgets)
    results = await asyncio.gather(
        *(reserve(one if i % 2 else two, 0.01) for i in range(200)), return_exceptions=True
    )
    assert sum(isinstance(r, Reservation) for r in results) == 50
    assert all(isinstance(r, Reservation | BudgetExceeded) for r in results), [
        r for r in results if not isinstance(r, Reservation | BudgetExceeded)
    ][:2]
    _, reserved = await one.run(lambda s: spend_row(s, PA, "day:2026-03-10"))
    assert reserved == to_nusd(0.5)


# -- alerts ----------------------------------------------------------------------


async def test_alerts_fire_once_per_threshold_per_period(make: Make) -> None:
    clock = Clock()
    alerts: list[HubEvent] = []

    def listen(ledger: Ledger) -> Ledger:
        ledger.hub.bind(asyncio.get_running_loop())
        ledger.hub.subscribe(alerts.append, "budget_alert")
        return ledger

    async def spend_(ledger: Ledger, usd: float) -> list[tuple[float, float]]:
        ledger.record(rec(clock.now, cost=usd), await reserve(ledger, usd))
        await ledger.flush()
        got = [(a.percent, a.spent_usd) for a in alerts if isinstance(a, BudgetAlert)]
        alerts.clear()
        return got

    first = listen(
        make(budgets={PA: BudgetLimits(daily_usd=1.0, alert_percents=(50, 75, 90))}, clock=clock)
    )
    assert await spend_(first, 0.3) == []
    assert await spend_(first, 0.25) == [(50, 0.55)]
    assert await spend_(first, 0.4) == [(75, 0.95), (90, 0.95)]
    assert await spend_(first, 0.04) == []  # further spend in the same day fires nothing again
    clock.advance(DAY)
    assert await spend_(first, 0.6) == [(50, 0.6)]  # the next day fires again
    assert await spend_(first, 0.01) == []
    await first.aclose()

    # another ledger on the same file remembers what fired, per threshold
    clock.advance(60)
    second = listen(
        make(budgets={PA: BudgetLimits(daily_usd=5.0, alert_percents=(10, 50))}, clock=clock)
    )
    assert await spend_(second, 0.0001) == [(10, 0.6101)]  # 50 fired today already
    assert await spend_(second, 2.0) == []


async def test_alert_event_fields(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """The alert reaches its listener; the batch builds no usage_recorded event, which no
    one listens to (the gateway's case: an object a record, passed over by the loop)."""
    built: list[UsageRecord] = []
    monkeypatch.setattr(ledger_module, "UsageRecorded", built.append)
    ledger = make(budgets={GLOBAL: BudgetLimits(monthly_usd=2.0, alert_percents=(25,))})
    alerts: list[HubEvent] = []
    ledger.hub.bind(asyncio.get_running_loop())
    ledger.hub.subscribe(alerts.append, "budget_alert")
    ledger.record(rec(cost=0.6))
    await ledger.flush()
    assert alerts == [BudgetAlert(GLOBAL, "monthly", "month:2026-03", 25, 0.6, 2.0)]
    assert built == []


# -- stale reservations ------------------------------------------------------------


def _die(store: Store) -> None:
    """As if the process were killed: its lease stays as it is, never renewed nor dropped."""
    store.leased_until = None


async def test_hold_of_a_dead_process_is_released_when_its_lease_lapses(make: Make) -> None:
    clock = Clock()
    budgets = {PA: BudgetLimits(daily_usd=1.0)}
    holder = make(budgets=budgets, clock=clock, reservation_ttl_s=600, lease_ttl_s=10)
    await reserve(holder, 0.7)
    await holder.run(_die)
    await holder.aclose()

    clock.advance(5)  # the lease is still good: still held
    early = make(budgets=budgets, clock=clock)
    assert status_of(await early.budgets(), PA).daily.reserved_usd == 0.7
    with pytest.raises(BudgetExceeded):
        await reserve(early, 0.7)

    clock.advance(6)  # lapsed: the refused reservation sweeps it and is taken
    await reserve(early, 0.7)
    s = status_of(await early.budgets(), PA)
    assert (s.daily.spent_usd, s.daily.reserved_usd) == (0.0, 0.7)
    assert await early.run(lambda st: st.sweep(clock.now)) == 0  # early's own hold is live


async def test_a_clean_close_drops_the_lease_and_frees_its_holds(make: Make) -> None:
    clock = Clock()
    budgets = {PA: BudgetLimits(daily_usd=1.0)}
    holder = make(budgets=budgets, clock=clock, lease_ttl_s=600)
    await reserve(holder, 0.7)
    await holder.aclose()  # a request still in flight at shutdown will never settle
    other = make(budgets=budgets, clock=clock)
    assert status_of(await other.budgets(), PA).daily.reserved_usd == 0.0


async def test_a_live_process_keeps_its_holds_by_renewing_its_lease(make: Make) -> None:
    clock = Clock()
    budgets = {PA: BudgetLimits(daily_usd=1.0)}
    holder = make(budgets=budgets, clock=clock, lease_ttl_s=0.2)  # renewed every 50 ms
    await reserve(holder, 0.7)

    def lease_until(store: Store) -> float:
        return float(
            store.conn.execute(
                select(leases.c.expires_at).where(leases.c.owner == store.owner)
            ).scalar_one()
        )

    async def renewed() -> None:
        """Until the holder's thread has renewed its lease at the clock's time now."""
        for _ in range(500):
            if await holder.run(lease_until) >= clock.now + 0.2 - 1e-9:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the holder's lease was not renewed")

    # past the first lease, so only renewals keep the hold: in steps shorter than a lease,
    # each followed by a renewal (one jump past it could land between the holder's own
    # renewal and its sweep of lapsed leases, which would then take its own lease)
    for _ in range(2):
        clock.advance(0.15)
        await renewed()
    other = make(budgets=budgets, clock=clock)
    assert await other.run(lambda st: st.sweep(clock.now)) == 0
    assert status_of(await other.budgets(), PA).daily.reserved_usd == 0.7


async def test_a_live_process_whose_lease_lapsed_keeps_its_own_holds(make: Make) -> None:
    """Its renewal failed or came late, but it is alive: its own sweep (here, a refused
    reservation's) must not free what its requests hold, or together they could pass the
    limit. Another process's sweep may: it cannot tell a stalled process from a dead one."""
    clock = Clock()
    budgets = {PA: BudgetLimits(daily_usd=1.0)}
    holder = make(budgets=budgets, clock=clock, reservation_ttl_s=600, lease_ttl_s=10)
    await reserve(holder, 0.7)
    clock.advance(11)  # past its lease; its thread renews by the real clock, 2.5 s from now
    with pytest.raises(BudgetExceeded):
        await reserve(holder, 0.5)  # 0.7 in flight + 0.5 would pass $1
    assert await holder.run(lambda st: st.sweep(clock.now)) == 0
    assert status_of(await holder.budgets(), PA).daily.reserved_usd == 0.7

    other = make(budgets=budgets, clock=clock)  # its sweep at open frees the lapsed hold
    assert status_of(await other.budgets(), PA).daily.reserved_usd == 0.0


async def test_an_unowned_hold_from_before_leases_is_released_when_it_expires(
    make: Make,
) -> None:
    clock = Clock()
    budgets = {PA: BudgetLimits(daily_usd=1.0)}
    holder = make(budgets=budgets, clock=clock, reservation_ttl_s=600)
    await reserve(holder, 0.7)

    def unown(store: Store) -> None:
        with store.write() as c:
            c.exec_driver_sql("UPDATE budget_reservations SET owner = NULL")
        store.leased_until = None

    await holder.run(unown)
    await holder.aclose()
    clock.advance(300)  # not expired yet: still held
    early = make(budgets=budgets, clock=clock)
    assert status_of(await early.budgets(), PA).daily.reserved_usd == 0.7
    await early.aclose()
    clock.advance(301)
    late = make(budgets=budgets, clock=clock)
    s = status_of(await late.budgets(), PA)
    assert (s.daily.spent_usd, s.daily.reserved_usd) == (0.0, 0.0)


async def test_swept_reservation_settled_late_is_not_released_twice(make: Make) -> None:
    clock = Clock()
    budgets = {PA: BudgetLimits(daily_usd=1.0)}
    slow = make(budgets=budgets, clock=clock, reservation_ttl_s=1)
    held = await reserve(slow, 0.6)
    clock.advance(2)
    other = make(budgets=budgets, clock=clock)  # its sweep at open releases slow's hold
    assert status_of(await other.budgets(), PA).daily.reserved_usd == 0.0
    mine = await reserve(other, 0.3)

    slow.record(rec(cost=0.2), held)  # the slow holder settles after all
    await slow.flush()
    spent, reserved = await other.run(lambda s: spend_row(s, PA, "day:2026-03-10"))
    assert (spent, reserved) == (to_nusd(0.2), to_nusd(0.3))  # other's hold is intact
    other.record(rec(cost=0.3), mine)
    await other.flush()
    spent, reserved = await other.run(lambda s: spend_row(s, PA, "day:2026-03-10"))
    assert (spent, reserved) == (to_nusd(0.5), 0)


# -- failure paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("mysql://user@localhost/polyroute", "'mysql' is not supported"),
        ("postgresql+asyncpg://user@localhost/polyroute", "'postgresql+asyncpg' is not supported"),
        ("not a url", "is not a database URL"),
        ("sqlite:////nonexistent-dir/sub/l.db", "cannot open the ledger"),
    ],
)
async def test_bad_url_is_a_ledger_error_on_first_use(make: Make, bad: str, says: str) -> None:
    """(A server that cannot be reached is LedgerUnavailableError: tests/ledger/test_postgres.py.)"""
    ledger = make(bad)
    with pytest.raises(LedgerError, match=re.escape(says)):
        await ledger.usage()
    with pytest.raises(LedgerError, match=re.escape(says)):
        await reserve(ledger, 0.1)
    with pytest.raises(LedgerError, match=re.escape(says)):
        await ledger.budgets()


async def test_bad_url_with_records_pending_still_closes(make: Make, tmp_path: Path) -> None:
    ledger = make("not a url")
    ledger.record(rec())
    with pytest.raises(LedgerError, match="not a database URL"):
        await ledger.flush()
    await asyncio.wait_for(ledger.aclose(), 5)  # used to hang: the spill path was unparseable
    with pytest.raises(LedgerError, match="closed"):
        ledger.record(rec())


async def test_use_after_close_is_a_ledger_error(make: Make) -> None:
    ledger = make()
    ledger.record(rec())
    await ledger.aclose()
    await ledger.aclose()  # twice is fine
    ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        ledger.record(rec())
    with pytest.raises(LedgerError, match="closed"):
        await ledger.usage()
    with pytest.raises(LedgerError, match="closed"):
        await reserve(ledger, 0.1)


def _refuse(*_: Any, **__: Any) -> Any:
    raise OperationalError("INSERT INTO usage ...", {}, Exception("database is locked"))


@SQLITE_FILE
async def test_refused_records_are_kept_and_retried(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make(budgets={PA: BudgetLimits(daily_usd=1.0)}, flush_interval_s=30)
    held = await reserve(ledger, 0.5)
    with monkeypatch.context() as m:
        m.setattr(Store, "settle", _refuse)
        ledger.record(rec(cost=0.1), held)
        ledger.record(rec(cost=0.2))
        with pytest.raises(LedgerError, match="refused the records"):
            await ledger.flush()
    await ledger.flush()  # the database takes them now
    report = await ledger.usage()
    assert report.requests == 2 and report.total_cost_usd == pytest.approx(0.3)
    s = status_of(await ledger.budgets(), PA)
    assert s.daily.spent_usd == pytest.approx(0.3) and s.daily.reserved_usd == 0.0


@SQLITE_FILE
async def test_records_refused_at_close_are_spilled_and_written_back(
    make: Make, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Path(url.removeprefix("sqlite:///"))
    spill = Path(f"{db}.spill.jsonl")
    budgets = {PA: BudgetLimits(daily_usd=1.0)}
    # the spill is "batched"'s; "answered" keeps them in its journal (test_journal.py)
    ledger = make(budgets=budgets, flush_interval_s=30, durability="batched")
    held = await reserve(ledger, 0.5)
    with monkeypatch.context() as m:
        m.setattr(Store, "settle", _refuse)
        ledger.record(rec(cost=0.25, request_id="r1"), held)
        ledger.record(rec(provider="b", cost=None, status="error", error_type="timeout"))
        ledger.record(rec(ttft_ms=5.0, virtual_key="k"))
        await ledger.aclose()
    assert len(spill.read_text().splitlines()) == 3
    assert await asyncio.to_thread(_count_rows, db) == 0

    again = make(budgets=budgets)
    rows = await again.run(usage_rows)
    assert [(r["provider"], r["status"], r["request_id"]) for r in rows] == [
        ("a", "ok", "r1"),
        ("b", "error", None),
        ("a", "ok", None),
    ]
    assert rows[1]["cost_nusd"] is None and rows[1]["error_type"] == "timeout"
    assert rows[2]["ttft_ms"] == 5.0 and rows[2]["virtual_key"] == "k"
    assert not spill.exists()
    assert not list(db.parent.glob("*.taking"))
    s = status_of(await again.budgets(), PA)  # the spilled reservation was settled too
    assert s.daily.spent_usd == pytest.approx(0.251) and s.daily.reserved_usd == 0.0


@SQLITE_FILE
async def test_dropped_table_spills_and_the_repaired_file_takes_them_back(
    make: Make, url: str
) -> None:
    db = Path(url.removeprefix("sqlite:///"))
    ledger = make(flush_interval_s=30, durability="batched")

    def drop(store: Store) -> None:
        with store.write() as c:
            c.exec_driver_sql("DROP TABLE usage")

    await ledger.run(drop)
    for i in range(3):
        ledger.record(rec(cost=0.001 * (i + 1)))
    await ledger.aclose()
    assert len(Path(f"{db}.spill.jsonl").read_text().splitlines()) == 3

    engine = create_engine(url)  # repair: the migration is recorded, so recreate by hand
    usage.create(engine)
    engine.dispose()
    again = make()
    report = await again.usage()
    assert report.requests == 3 and report.total_cost_usd == pytest.approx(0.006)
    assert not Path(f"{db}.spill.jsonl").exists()


@SQLITE_FILE
async def test_spill_kept_while_the_database_still_refuses(
    make: Make, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill = Path(url.removeprefix("sqlite:///") + ".spill.jsonl")
    with monkeypatch.context() as m:
        m.setattr(Store, "settle", _refuse)
        first = make(flush_interval_s=30, durability="batched")
        first.record(rec())
        await first.aclose()
        second = make()  # cannot write them back either: the file is kept for later
        await second.aclose()
        assert len(spill.read_text().splitlines()) == 1
    third = make()
    assert await third.run(lambda s: s.count()) == 1
    assert not spill.exists()


def _count_rows(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT count(*) FROM usage").fetchone()[0])


@SQLITE_FILE
async def test_close_reports_records_it_could_neither_write_nor_spill(
    make: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "gone"
    home.mkdir()
    ledger = make(f"sqlite:///{home}/l.db", flush_interval_s=30, durability="batched")
    await ledger.flush()
    monkeypatch.setattr(Store, "settle", _refuse)
    ledger.record(rec())
    shutil.rmtree(home)  # nowhere left to put the spill file
    with pytest.raises(LedgerError, match="1 records lost"):
        await asyncio.wait_for(ledger.aclose(), 5)


@SQLITE_FILE
async def test_a_torn_spill_line_does_not_stop_the_ledger(
    make: Make, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill = Path(url.removeprefix("sqlite:///") + ".spill.jsonl")
    with monkeypatch.context() as m:
        m.setattr(Store, "settle", _refuse)
        first = make(flush_interval_s=30, durability="batched")
        first.record(rec(request_id="kept"))
        await first.aclose()
    torn = '{"record": {"ts": 1.0, "provider": "a", "mod'
    with spill.open("a") as f:
        f.write(torn + "\n" + '{"record": {"unknown_field": 1}, "reservation": null}\n')

    again = make()
    rows = await asyncio.wait_for(again.run(usage_rows), 5)  # used to hang: the thread died
    assert [r["request_id"] for r in rows] == ["kept"]
    assert spill.read_text().splitlines()[0] == torn  # unreadable lines are left for a person
    assert len(spill.read_text().splitlines()) == 2


@SQLITE_FILE
async def test_a_bug_on_the_database_thread_fails_calls_instead_of_hanging(
    make: Make, url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug, not a database error")

    db = Path(url.removeprefix("sqlite:///"))
    ledger = make(flush_interval_s=30, durability="batched")
    await ledger.usage()  # opened
    monkeypatch.setattr(Store, "settle", explode)
    ledger.record(rec(request_id="kept"))
    with pytest.raises(LedgerError, match="the ledger stopped on an error"):
        await ledger.flush()
    with pytest.raises(LedgerError, match="the ledger stopped on an error"):
        await ledger.usage()
    ledger.record(rec(request_id="also kept"))
    await ledger.aclose()  # returns: the records go to the spill file
    assert "the ledger's database thread failed" in caplog.text
    assert len(Path(f"{db}.spill.jsonl").read_text().splitlines()) == 2


async def test_a_reservation_cancelled_before_the_thread_reaches_it_is_skipped(
    make: Make,
) -> None:
    import time as _time

    ledger = make(budgets={PA: BudgetLimits(daily_usd=1.0)})
    await ledger.usage()
    busy = asyncio.ensure_future(ledger.run(lambda s: _time.sleep(0.2)))
    waiting = asyncio.ensure_future(reserve(ledger, 0.5))
    await asyncio.sleep(0.05)
    waiting.cancel()
    await busy
    with pytest.raises(asyncio.CancelledError):
        await waiting
    s = status_of(await ledger.budgets(), PA)  # the thread lives on, and nothing is held
    assert s.daily.reserved_usd == 0.0


async def test_a_reservation_cancelled_while_held_is_given_back(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as _time

    real = Store.reserve

    def slow(self: Store, *args: Any, **kwargs: Any) -> Reservation:
        _time.sleep(0.2)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "reserve", slow)
    ledger = make(budgets={PA: BudgetLimits(daily_usd=1.0)})
    task = asyncio.ensure_future(reserve(ledger, 0.5))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(Store, "reserve", real)
    for _ in range(100):  # the release is queued once the held reservation comes back
        s = status_of(await ledger.budgets(), PA)
        if s.daily.reserved_usd == 0.0:
            break
        await asyncio.sleep(0.02)
    assert s.daily.reserved_usd == 0.0
    held = await reserve(ledger, 1.0)  # the whole budget is free again
    assert held.targets


# -- amounts at their bounds ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"daily_usd": 1e10}, "daily_usd"),
        ({"monthly_usd": math.inf}, "monthly_usd"),
        ({"daily_usd": math.nan}, "daily_usd"),
        ({"daily_usd": -1.0}, "daily_usd"),
    ],
)
async def test_a_budget_out_of_bounds_is_refused_by_name(
    make: Make, kw: dict[str, float], field: str
) -> None:
    ledger = make()
    with pytest.raises(ValueError, match=f"{field} must be 0 or more, up to 1,000,000,000"):
        await ledger.set_budget(GLOBAL, **kw)
    assert [b.scope for b in await ledger.budgets()] == []  # nothing was written


async def test_huge_costs_and_the_largest_budget_never_overflow(make: Make) -> None:
    ledger = make(clock=Clock())
    await ledger.set_budget(GLOBAL, daily_usd=MAX_USD)
    held = await reserve(ledger, MAX_USD)  # the whole budget, in nano-dollars
    ledger.record(rec(cost=1e15), held)  # a broken price: counted as the most, not an error
    for _ in range(5):
        ledger.record(rec(cost=MAX_USD))
    await ledger.flush()
    [g] = [b for b in await ledger.budgets() if b.scope == GLOBAL]
    assert g.daily.spent_usd == 3 * MAX_USD  # capped, never wrapped or refused
    assert g.daily.reserved_usd == 0.0
    assert (await ledger.usage()).total_cost_usd == 6 * MAX_USD
    with pytest.raises(BudgetExceeded):
        await reserve(ledger, 1.0)
