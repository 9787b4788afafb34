"""``[budget.optimizer] auto = true``: the gateway's task re-applies the optimizer each
interval (a clock and a sleep injected: no waiting for hours), one worker per interval."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from budget_optimizer.synthetic import Profile, days_of, record
from polyroute.budgeting import AutoOptimizer, HistoryEntry, history
from polyroute.client import Polyroute
from polyroute.config import OptimizerConfig, load
from polyroute.gateway import create_app
from polyroute.hub import BudgetChanged, HubEvent
from polyroute.ledger import Ledger

NOW = datetime(2026, 3, 20, 15, tzinfo=UTC).timestamp()
HOUR = 3600.0
OPT = OptimizerConfig(auto=True, interval_h=6, total_monthly_usd=90, min_usd=10, max_usd=70)


class FakeTime:
    """A clock that a sleep moves on; after ``rounds`` sleeps, sleeping blocks."""

    def __init__(self, now: float, rounds: int) -> None:
        self.now = now
        self.rounds = rounds
        self.slept: list[float] = []
        self.done = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if len(self.slept) >= self.rounds:
            self.done.set()
            await asyncio.Event().wait()  # until the task is cancelled
        self.now += seconds


async def filled(path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{path}")
    today = datetime.fromtimestamp(NOW, UTC).date()
    profiles = {"a": Profile(base=2.0, slope=0.05), "b": Profile(base=1.0)}
    await record(ledger, days_of(profiles, today - timedelta(days=30), 30))
    return ledger


async def test_each_interval_applies_once_with_an_event_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = await filled(tmp_path / "l.db")
    events: list[HubEvent] = []
    ledger.hub.subscribe(events.append, "budget_changed")
    fake = FakeTime(NOW, rounds=3)
    auto = AutoOptimizer(ledger, ["a", "b", "c"], OPT, clock=fake.clock, sleep=fake.sleep)
    with caplog.at_level(logging.WARNING, logger="polyroute.budget"):
        auto.start()
        assert auto.running
        await asyncio.wait_for(fake.done.wait(), 30)
        await auto.stop()
    assert not auto.running
    assert fake.slept == [6 * HOUR] * 3
    entries = await history(ledger)
    assert [(e.source, e.ts) for e in entries] == [("auto", NOW + i * 6 * HOUR) for i in range(3)]
    first = entries[0]
    assert round(sum(c.new_usd for c in first.changes), 2) == 90
    assert {c.provider: c.new_usd for c in first.changes}["c"] == 10  # no history: the floor
    # the first round set three budgets; later rounds only what the forecast moved
    assert len(events) >= 3 and all(isinstance(e, BudgetChanged) for e in events)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(events)
    assert lines[0].startswith("budget optimizer: a monthly budget none -> $")
    await ledger.aclose()


async def test_two_workers_apply_once_per_interval(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    one = await filled(db)
    two = Ledger(f"sqlite:///{db}")  # another worker process's ledger on the same database
    fake = FakeTime(NOW, rounds=10**6)
    workers = [
        AutoOptimizer(led, ["a", "b"], OPT, clock=fake.clock, sleep=fake.sleep)
        for led in (one, two)
    ]
    applied = []
    for step in range(4):  # both wake each interval, in either order
        order = workers if step % 2 else workers[::-1]
        applied.append([await w.run_once() is not None for w in order])
        fake.now += 6 * HOUR
    assert all(sorted(a) == [False, True] for a in applied)
    assert len(await history(one)) == 4
    await one.aclose()
    await two.aclose()


async def test_a_failed_round_is_logged_and_the_next_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = await filled(tmp_path / "l.db")
    fake = FakeTime(NOW, rounds=2)
    # 3 providers cannot share 90 with at least 40 each: every round fails, none stops the loop
    bad = OptimizerConfig(total_monthly_usd=90, min_usd=40, max_usd=70)
    auto = AutoOptimizer(ledger, ["a", "b", "c"], bad, clock=fake.clock, sleep=fake.sleep)
    with caplog.at_level(logging.WARNING, logger="polyroute.budget"):
        auto.start()
        await asyncio.wait_for(fake.done.wait(), 30)
        await auto.stop()
    failures = [r.getMessage() for r in caplog.records]
    assert (
        failures
        == [
            "budget optimizer: this round failed: min $40 x 3 providers is $120, over the total $90"
        ]
        * 2
    )
    assert await history(ledger) == []
    await ledger.aclose()


def test_the_gateway_runs_it_with_its_life(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    asyncio.run(_seed(db))
    path = tmp_path / "polyroute.toml"
    path.write_text(
        f'[storage]\nurl = "sqlite:///{db}"\n[health]\ninterval_s = 0\n'
        "[budget.optimizer]\nauto = true\ninterval_h = 24\n"
        "total_monthly_usd = 50\nmin_usd = 5\nmax_usd = 45\n"
        '[providers.a]\ntype = "openai"\napi_key = "env:NONE"\n'
        '[providers.b]\ntype = "anthropic"\napi_key = "env:NONE"\n'
    )
    app = create_app(Polyroute(load(str(path))), admin_key=None, lifecycle=True)
    with TestClient(app):
        deadline = time.monotonic() + 20
        while not asyncio.run(_history(db)) and time.monotonic() < deadline:
            time.sleep(0.05)
    [entry] = asyncio.run(_history(db))
    assert entry.source == "auto" and entry.total_usd == 50
    assert [c.provider for c in entry.changes] == ["a", "b"]
    # without auto the gateway leaves budgets alone
    path.write_text(path.read_text().replace("auto = true", "auto = false"))
    with TestClient(create_app(Polyroute(load(str(path))), admin_key=None, lifecycle=True)):
        pass
    assert len(asyncio.run(_history(db))) == 1


async def _seed(db: Path) -> None:
    ledger = await filled(db)
    await ledger.aclose()


async def _history(db: Path) -> list[HistoryEntry]:
    ledger = Ledger(f"sqlite:///{db}")
    try:
        return list(await history(ledger))
    finally:
        await ledger.aclose()
