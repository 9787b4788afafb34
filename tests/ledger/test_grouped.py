"""Reservations that queue behind one database transaction go to the database together
(``Ledger`` without slices: PostgreSQL's default, or ``slices=False``): one transaction for
the group when every hold fits, each alone as before when one does not."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from polyroute.errors import BudgetExceeded, LedgerError
from polyroute.ledger import GLOBAL, BudgetLimits, Ledger, Reservation, provider_scope
from polyroute.ledger._records import period_key, to_nusd
from polyroute.ledger._schema import reservations, spend
from polyroute.ledger._store import Store

PA = provider_scope("a")
WORST = 0.01


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[Ledger]:
    budgets = {GLOBAL: BudgetLimits(daily_usd=5 * WORST), PA: BudgetLimits(monthly_usd=1.0)}
    ledger = Ledger(db_url, budgets=budgets, slices=False)
    yield ledger
    await ledger.aclose()


def groups_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """(size, committed) of every :meth:`Store.reserve_group` from now on."""
    seen: list[tuple[int, bool]] = []
    original = Store.reserve_group

    def spy(store: Store, requests: Any, ttl_s: float, lease_s: float) -> Any:
        held = original(store, requests, ttl_s, lease_s)
        seen.append((len(requests), held is not None))
        return held

    monkeypatch.setattr(Store, "reserve_group", spy)
    return seen


async def queued_behind_a_busy_thread(
    ledger: Ledger,
    n: int,
    then: Callable[[list[asyncio.Future[Reservation]]], None] = lambda tasks: None,
) -> list[Reservation | BaseException]:
    """``n`` reservations of WORST, all queued while the database thread is busy; ``then``
    is called with their tasks before the thread goes on."""
    busy, release = threading.Event(), threading.Event()

    def hold(store: object) -> None:
        busy.set()
        release.wait(5)

    held = asyncio.ensure_future(ledger.run(hold))
    await asyncio.to_thread(busy.wait, 5)
    now = time.time()
    tasks = [
        asyncio.ensure_future(
            ledger.reserve(provider="a", model="m", amount_usd=WORST, ts=now + i / 1000)
        )
        for i in range(n)
    ]
    await asyncio.sleep(0.01)  # every one of them on the queue
    then(tasks)
    await asyncio.sleep(0.01)  # and what ``then`` queued, behind them
    release.set()
    await held
    return await asyncio.gather(*tasks, return_exceptions=True)


async def reserved(ledger: Ledger) -> tuple[dict[str, int], int]:
    """Nano-USD held per scope, and how many reservation rows there are."""

    def read(store: Store) -> tuple[dict[str, int], int]:
        with store.read() as c:
            held = {s: r for s, r in c.execute(select(spend.c.scope, spend.c.reserved_nusd))}
            rows = len(c.execute(select(reservations.c.id)).all())
        return held, rows

    return await ledger.run(read)


async def test_reservations_queued_together_share_one_transaction(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = groups_seen(monkeypatch)
    got = await queued_behind_a_busy_thread(ledger, 4)
    assert all(isinstance(r, Reservation) for r in got)
    assert seen == [(4, True)]
    assert await reserved(ledger) == ({GLOBAL: 4 * to_nusd(WORST), PA: 4 * to_nusd(WORST)}, 4)
    ids = {r.id for r in got if isinstance(r, Reservation)}
    assert len(ids) == 4
    r0 = got[0]
    assert isinstance(r0, Reservation)
    day = period_key("daily", time.time())
    assert sorted(r0.targets) == sorted([(GLOBAL, day), (PA, period_key("monthly", time.time()))])


async def test_a_group_one_of_which_would_pass_the_limit_is_reserved_one_by_one(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for 5 and 7 queued: the group is rolled back whole, then each runs alone, so
    the first 5 hold and the last 2 are refused by name, exactly as without groups."""
    seen = groups_seen(monkeypatch)
    got = await queued_behind_a_busy_thread(ledger, 7)
    assert seen == [(7, False)]
    assert [isinstance(r, Reservation) for r in got] == [True] * 5 + [False] * 2
    assert all(isinstance(r, BudgetExceeded) and r.scope == GLOBAL for r in got[5:])
    assert await reserved(ledger) == ({GLOBAL: 5 * to_nusd(WORST), PA: 5 * to_nusd(WORST)}, 5)


async def test_a_caller_cancelled_in_the_queue_holds_nothing(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = groups_seen(monkeypatch)
    got = await queued_behind_a_busy_thread(ledger, 3, lambda tasks: tasks[1].cancel())
    assert isinstance(got[1], asyncio.CancelledError)
    assert seen == [(2, True)]
    assert await reserved(ledger) == ({GLOBAL: 2 * to_nusd(WORST), PA: 2 * to_nusd(WORST)}, 2)


async def test_a_database_error_in_the_group_leaves_each_to_run_alone(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(store: Store, requests: Any, ttl_s: float, lease_s: float) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("the server went away"))

    monkeypatch.setattr(Store, "reserve_group", failing)
    got = await queued_behind_a_busy_thread(ledger, 3)
    assert all(isinstance(r, Reservation) for r in got)
    assert await reserved(ledger) == ({GLOBAL: 3 * to_nusd(WORST), PA: 3 * to_nusd(WORST)}, 3)


async def test_the_job_queued_behind_a_group_still_runs(ledger: Ledger) -> None:
    """A job other than a reservation, taken off the queue to close the group, is served
    next, in its turn."""
    flushed: asyncio.Future[None] | None = None

    def then(tasks: object) -> None:
        nonlocal flushed
        flushed = asyncio.ensure_future(ledger.flush())

    got = await queued_behind_a_busy_thread(ledger, 3, then)
    assert flushed is not None
    await asyncio.wait_for(flushed, 5)
    assert all(isinstance(r, Reservation) for r in got)


async def test_a_group_over_what_is_left_after_earlier_holds_is_refused_whole(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget's rows exist already (3 held of 5): 4 queued together would pass it, so the
    group holds nothing and each runs alone: 2 more hold, 2 are refused."""
    for _ in range(3):
        await ledger.reserve(provider="a", model="m", amount_usd=WORST, ts=time.time())
    seen = groups_seen(monkeypatch)
    got = await queued_behind_a_busy_thread(ledger, 4)
    assert seen == [(4, False)]
    assert [isinstance(r, Reservation) for r in got] == [True, True, False, False]
    assert await reserved(ledger) == ({GLOBAL: 5 * to_nusd(WORST), PA: 5 * to_nusd(WORST)}, 5)


async def test_a_bug_in_the_group_answers_its_callers_and_the_job_behind_it(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a database error but a bug: every caller of the group gets a LedgerError, and
    the flush taken off the queue behind the group is answered too, nobody waits forever."""

    def broken(store: Store, requests: Any, ttl_s: float, lease_s: float) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Store, "reserve_group", broken)
    flushed: asyncio.Future[None] | None = None

    def then(tasks: object) -> None:
        nonlocal flushed
        flushed = asyncio.ensure_future(ledger.flush())

    got = await queued_behind_a_busy_thread(ledger, 3, then)
    assert all(isinstance(r, LedgerError) for r in got)
    assert flushed is not None
    done, _ = await asyncio.wait([flushed], timeout=5)
    assert done  # answered (with the ledger's error), not left waiting
