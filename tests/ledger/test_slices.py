"""Budget slices (``_slices.py``): requests reserve in memory against a process's leased share
of a budget, and no interleaving of processes, requests, renewals, kills and sweeps spends past
a limit (DESIGN.md section 7). On SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from polyroute.errors import BudgetExceeded
from polyroute.ledger import BudgetLimits, Ledger, Reservation, UsageRecord, provider_scope
from polyroute.ledger._ledger import Governing
from polyroute.ledger._records import period_key, to_nusd, to_usd
from polyroute.ledger._schema import reservations, spend
from polyroute.ledger._slices import MIN_WORST, SHARE, Slices, is_slice, slice_key
from polyroute.ledger._store import SettleItem, Store

PA = provider_scope("a")
T0 = 1_800_000_000.0  # a fake clock: mid-day UTC, far from a period's edge
LEASE_S = 10.0
TTL_S = 900.0


def totals(store: Store, ts: float) -> tuple[int, int]:
    """(spent, reserved) in nano-USD of PA's day at ``ts``."""
    with store.read() as c:
        row = c.execute(
            select(spend.c.spent_nusd, spend.c.reserved_nusd).where(
                spend.c.scope == PA, spend.c.period == period_key("daily", ts)
            )
        ).first()
    return (row.spent_nusd, row.reserved_nusd) if row else (0, 0)


def rec(ts: float, cost: float, rid: str = "") -> UsageRecord:
    return UsageRecord(ts=ts, provider="a", model="m", cost_usd=cost, request_id=rid)


@dataclass
class _Process:
    store: Store
    slices: Slices
    inflight: list[tuple[Reservation, float]] = field(default_factory=list)
    queued: list[SettleItem] = field(default_factory=list)  # settled in memory, not written
    alive: bool = True


@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_of_processes_never_pass_the_limit(db_url: str, seed: int) -> None:
    rnd = random.Random(seed)
    limit_usd = 1.0
    limits = {PA: BudgetLimits(daily_usd=limit_usd)}
    limit = to_nusd(limit_usd)
    procs = [
        _Process(Store(db_url), Slices(reservation_ttl_s=TTL_S, lease_ttl_s=LEASE_S))
        for _ in range(4)
    ]

    def sweeper() -> Store:  # a live process's (one never sweeps its own holds)
        return next(p.store for p in procs if p.alive)

    now = T0
    admitted_cost = 0  # nano-USD every admitted request spends (or will, once written)
    refused = sliced = 0
    try:
        for _ in range(1500):
            now += rnd.uniform(0.0, 0.05)
            live = [p for p in procs if p.alive]
            p = rnd.choice(live)
            op = rnd.random()
            if op < 0.5:  # a request starts
                worst = rnd.choice((0.001, 0.002, 0.005, 0.02))
                key, _ = slice_key(limits, now)
                taken = p.slices.take(key, worst, now)
                res = None if taken is None else taken[0]
                if taken is not None and taken[1] is not None and rnd.random() < 0.5:
                    p.slices.top_up(p.store, taken[1], limits, worst, now)
                if res is None:
                    res = p.slices.refill(p.store, limits, worst, now)
                if res is None:
                    try:
                        res = p.store.reserve(limits, worst, now, TTL_S, "m", LEASE_S)
                    except BudgetExceeded:
                        refused += 1
                        if rnd.random() < 0.5:
                            sweeper().sweep(now)
                        continue
                sliced += is_slice(res.id)
                cost = worst * rnd.choice((0.0, 0.3, 1.0))
                admitted_cost += to_nusd(cost)
                p.inflight.append((res, cost))
            elif op < 0.85 and p.inflight:  # a request ends: settled in memory, written later
                res, cost = p.inflight.pop(rnd.randrange(len(p.inflight)))
                if is_slice(res.id):
                    p.slices.settled(res, cost)
                p.queued.append((rec(now, cost), res))
            elif op < 0.93 and p.queued:  # a batch is written
                p.store.settle(p.queued, limits, now)
                p.slices.written([r for _, r in p.queued if r is not None and is_slice(r.id)])
                p.queued = []
            elif op < 0.97:  # a lease renewal
                p.store.renew(now, LEASE_S)
                p.slices.tick(p.store, now, limits)
            elif op < 0.98 and len(live) > 1:  # kill -9: its holds lapse with its lease
                p.alive = False
                admitted_cost -= sum(to_nusd(c) for _, c in p.inflight)  # never answered
                admitted_cost -= sum(to_nusd(r.cost_usd or 0) for r, _ in p.queued)  # lost
            spent, held = totals(procs[0].store, now)
            assert spent + held <= limit
            assert admitted_cost <= limit
            if rnd.random() < 0.02:  # well past every dead lease
                now += LEASE_S + 1
                for q in procs:
                    if q.alive:
                        q.store.renew(now, LEASE_S)
                sweeper().sweep(now)
        for p in procs:
            if p.alive:
                for res, cost in p.inflight:
                    if is_slice(res.id):
                        p.slices.settled(res, cost)
                    p.queued.append((rec(now, cost), res))
                p.store.settle(p.queued, limits, now)
                p.slices.release_all(p.store)
        now += LEASE_S + 1
        sweeper().renew(now, LEASE_S)
        sweeper().sweep(now)
        spent, held = totals(procs[0].store, now)
        assert held == 0
        assert spent == admitted_cost <= limit
        assert sliced > 100 and refused > 0  # slices were used, and the limit was reached
    finally:
        for p in procs:
            p.store.close()


async def test_the_last_cents_are_admitted_one_by_one(db_url: str) -> None:
    worst = 0.001
    allowed = 1000  # a budget of $1: slices first, then one request at a time
    ledger = Ledger(db_url, budgets={PA: BudgetLimits(daily_usd=allowed * worst)}, slices=True)
    admitted: list[Reservation] = []
    refused = 0
    try:

        async def one() -> None:
            nonlocal refused
            try:
                res = await ledger.reserve(
                    provider="a", model="m", amount_usd=worst, ts=time.time()
                )
            except BudgetExceeded:
                refused += 1
                return
            admitted.append(res)
            await asyncio.sleep(0)
            ledger.record(rec(time.time(), worst), res)

        for _ in range(12):
            await asyncio.gather(*(one() for _ in range(100)))
        assert len(admitted) == allowed
        assert refused == 200
        assert sum(is_slice(r.id) for r in admitted) > allowed // 2
        assert not all(is_slice(r.id) for r in admitted)  # the end went one at a time
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert status.daily.spent_usd == pytest.approx(allowed * worst)
        assert status.daily.reserved_usd == 0
    finally:
        await ledger.aclose()


async def test_budget_show_holds_what_requests_in_flight_hold(db_url: str) -> None:
    ledger = Ledger(db_url, budgets={PA: BudgetLimits(daily_usd=10.0)}, slices=True)
    try:
        res = await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=time.time())
        assert is_slice(res.id)
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert status.daily.reserved_usd == pytest.approx(0.01)  # not the slice's unused part
        ledger.record(rec(time.time(), 0.004), res)
        await ledger.flush()
        await ledger.run(lambda s: ledger._slices.tick(s, time.time(), ledger._limits_all(s)))
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert (status.daily.spent_usd, status.daily.reserved_usd) == (pytest.approx(0.004), 0)
    finally:
        await ledger.aclose()


async def test_a_lowered_limit_takes_effect_at_once(db_url: str) -> None:
    ledger = Ledger(db_url, slices=True)
    other = Ledger(db_url, budget_refresh_s=0.05, slices=True)  # another process
    try:
        await ledger.set_budget(PA, daily_usd=10.0)
        for lg in (ledger, other):
            res = await lg.reserve(provider="a", model="m", amount_usd=0.01, ts=time.time())
            assert is_slice(res.id)  # both hold a slice with room for hundreds more
            lg.record(rec(time.time(), 0.01), res)
            await lg.flush()
        await ledger.set_budget(PA, daily_usd=0.035)  # $0.02 spent: room for one more cent
        await asyncio.sleep(0.1)  # the other process's budget refresh
        res = await other.reserve(provider="a", model="m", amount_usd=0.01, ts=time.time())
        assert not is_slice(res.id)  # near the limit: reserved in the database
        for lg in (ledger, other):
            with pytest.raises(BudgetExceeded) as caught:
                await lg.reserve(provider="a", model="m", amount_usd=0.01, ts=time.time())
            assert caught.value.limit_usd == pytest.approx(0.035)
        other.record(rec(time.time(), 0.01), res)
        await other.flush()
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert status.daily.spent_usd == pytest.approx(0.03)
    finally:
        await other.aclose()
        await ledger.aclose()


def test_a_killed_process_slice_comes_back_within_the_lease(db_url: str) -> None:
    limits = {PA: BudgetLimits(daily_usd=1.0)}
    dead, alive = Store(db_url), Store(db_url)
    try:
        leased = dead.lease_slice(
            limits, T0, min_nusd=1, max_nusd=to_nusd(0.5), share=SHARE, ttl_s=TTL_S, lease_s=LEASE_S
        )
        assert leased is not None
        assert totals(alive, T0) == (0, leased[1])
        assert alive.sweep(T0 + LEASE_S - 1) == 0  # still alive
        assert alive.sweep(T0 + LEASE_S + 0.1) == 1  # its lease lapsed: the slice comes back
        assert totals(alive, T0) == (0, 0)
        # the dead process's top-up finds its slice gone: it takes nothing
        grow = dead.lease_slice(
            limits,
            T0 + LEASE_S + 1,
            min_nusd=1,
            max_nusd=to_nusd(0.5),
            share=SHARE,
            ttl_s=TTL_S,
            lease_s=LEASE_S,
            grow=leased[0],
        )
        assert grow is None
        assert totals(alive, T0) == (0, 0)
    finally:
        dead.close()
        alive.close()


def test_slices_shrink_with_the_headroom_and_the_live_processes(db_url: str) -> None:
    limits = {PA: BudgetLimits(daily_usd=1.0)}
    a, b = Store(db_url), Store(db_url)
    kw = {"min_nusd": MIN_WORST * to_nusd(0.001), "max_nusd": to_nusd(1.0), "share": SHARE}
    try:
        first = a.lease_slice(limits, T0, ttl_s=TTL_S, lease_s=LEASE_S, **kw)
        assert first is not None and first[1] == to_nusd(1.0) // SHARE  # one live process
        second = b.lease_slice(limits, T0, ttl_s=TTL_S, lease_s=LEASE_S, **kw)
        assert second is not None and second[1] == (to_nusd(1.0) - first[1]) // (SHARE * 2)
        while (more := a.lease_slice(limits, T0, ttl_s=TTL_S, lease_s=LEASE_S, **kw)) is not None:
            assert more[1] >= kw["min_nusd"]
        spent, held = totals(a, T0)
        assert held <= to_nusd(1.0)
        # below MIN_WORST worst cases x SHARE x live left: per-request reservations only
        assert to_nusd(1.0) - held < kw["min_nusd"] * SHARE * 2
        with a.read() as c:
            rows = c.execute(select(reservations.c.id)).scalars().all()
        assert all(is_slice(r) for r in rows)
        assert to_usd(spent) == 0
    finally:
        a.close()
        b.close()


def test_a_draw_never_moves_more_than_the_slice_holds(db_url: str) -> None:
    limits = {PA: BudgetLimits(daily_usd=1.0)}
    store = Store(db_url)
    try:
        leased = store.lease_slice(
            limits, T0, min_nusd=1, max_nusd=to_nusd(0.01), share=1, ttl_s=TTL_S, lease_s=LEASE_S
        )
        assert leased is not None
        res = Reservation(leased[0], 0.01, ((PA, period_key("daily", T0)),))
        store.settle([(rec(T0, 0.004), res), (rec(T0, 0.009), res)], limits, T0)  # > the slice
        assert totals(store, T0) == (to_nusd(0.013), 0)
        store.release([leased[0]])
        assert totals(store, T0) == (to_nusd(0.013), 0)
    finally:
        store.close()


def test_a_limit_changed_elsewhere_retires_the_slice_at_the_next_renewal(db_url: str) -> None:
    limits = {PA: BudgetLimits(daily_usd=1.0)}
    store = Store(db_url)
    slices = Slices(reservation_ttl_s=TTL_S, lease_ttl_s=LEASE_S)
    try:
        res = slices.refill(store, limits, 0.001, T0)
        assert res is not None and is_slice(res.id)
        slices.settled(res, 0.001)
        store.settle([(rec(T0, 0.001), res)], limits, T0)
        slices.written([res])
        assert totals(store, T0)[1] > 0
        slices.tick(store, T0 + 0.1, {PA: BudgetLimits(daily_usd=0.5)})  # not idle, but lowered
        assert totals(store, T0) == (to_nusd(0.001), 0)
        key, _ = slice_key(limits, T0)
        assert slices.take(key, 0.001, T0 + 0.2) is None
        store.shrink_slice(res.id, 1)  # gone already: nothing to hand back
        assert totals(store, T0) == (to_nusd(0.001), 0)
    finally:
        store.close()


def test_a_failed_top_up_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from concurrent.futures import Future

    from polyroute.ledger._ledger import _log_top_up

    future: Future[None] = Future()
    future.add_done_callback(_log_top_up)
    future.set_exception(RuntimeError("disk I/O error"))
    assert "topping up a budget slice failed" in caplog.text
    assert "disk I/O error" in caplog.text


async def test_budgets_due_a_reread_still_serve_the_slice_while_it_runs(db_url: str) -> None:
    """The moment the cached budgets expire, requests reserve against their slice and one
    re-read is queued; they do not queue behind the database thread (here: held busy)."""
    from concurrent.futures import Future
    from threading import Event

    from polyroute.ledger._ledger import _Call

    now = [T0]
    ledger = Ledger(db_url, clock=lambda: now[0], budget_refresh_s=1.0, slices=True)
    other = Ledger(db_url, slices=True)  # another process
    busy = Event()
    try:
        await other.set_budget(PA, daily_usd=10.0)
        res = await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0)
        assert is_slice(res.id)
        await other.set_budget(PA, daily_usd=0.01)  # lowered elsewhere: seen after the re-read
        held: Future[object] = Future()
        ledger._jobs.put(_Call(lambda s: busy.wait(30), held))
        now[0] = T0 + 1.5  # due a re-read, not yet past two refreshes
        for _ in range(3):
            more = await asyncio.wait_for(
                ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0), 5
            )
            assert more.id == res.id  # from the slice, in memory
        assert ledger._rereading  # one re-read queued for the three
        busy.set()
        await ledger.flush()
        assert not ledger._rereading
        with pytest.raises(BudgetExceeded):  # the lowered limit, read by the re-read
            await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0)
    finally:
        busy.set()
        await other.aclose()
        await ledger.aclose()


async def test_budgets_two_refreshes_old_are_read_before_reserving(db_url: str) -> None:
    now = [T0]
    ledger = Ledger(db_url, clock=lambda: now[0], budget_refresh_s=1.0, slices=True)
    other = Ledger(db_url, slices=True)
    try:
        await other.set_budget(PA, daily_usd=10.0)
        res = await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0)
        assert is_slice(res.id)
        await other.set_budget(PA, daily_usd=0.01)
        now[0] = T0 + 2.0  # the database thread never re-read them: it decides now
        with pytest.raises(BudgetExceeded):
            await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0)
    finally:
        await other.aclose()
        await ledger.aclose()


def test_a_failed_budget_reread_is_logged_and_can_run_again(
    caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    from concurrent.futures import Future

    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    try:
        ledger._rereading = True
        future: Future[object] = Future()
        future.add_done_callback(ledger._reread)
        future.set_exception(RuntimeError("disk I/O error"))
        assert "reading the budgets again failed" in caplog.text
        assert "disk I/O error" in caplog.text
        assert not ledger._rereading
    finally:
        ledger.close()


async def test_a_request_on_the_next_day_reserves_against_that_day(db_url: str) -> None:
    """The limits and slice key worked out for one read of the budgets are per day."""
    now = [T0]
    ledger = Ledger(db_url, clock=lambda: now[0], slices=True)
    try:
        await ledger.set_budget(PA, daily_usd=10.0)
        today = await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0)
        again = await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0 + 1)
        tomorrow = await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0 + 86_400)
        assert today.targets == again.targets == ((PA, period_key("daily", T0)),)
        assert tomorrow.targets == ((PA, period_key("daily", T0 + 86_400)),)
        assert is_slice(tomorrow.id) and tomorrow.id != today.id
    finally:
        await ledger.aclose()


def test_a_slice_key_is_worked_out_once_a_day_for_the_limits_of_one_read() -> None:
    day = 20_000 * 86_400.0
    limits = {"global": BudgetLimits(daily_usd=10), "key:k": BudgetLimits(monthly_usd=5)}
    governing = Governing(limits)
    first = governing.slice_key(day + 10)
    assert first == slice_key(limits, day + 10)[0]
    assert governing.slice_key(day + 80_000) is first  # the same day
    tomorrow = governing.slice_key(day + 86_400)
    assert tomorrow == slice_key(limits, day + 86_400)[0] != first
    assert governing.slice_key(day + 10) == first  # a clock set back: worked out again


async def test_governing_and_hold_answer_from_memory_or_leave_it_to_reserve(db_url: str) -> None:
    now = [T0]
    budgets = {PA: BudgetLimits(daily_usd=10.0)}
    ledger = Ledger(db_url, budgets=budgets, clock=lambda: now[0], slices=True)
    flat = Ledger(db_url, budgets=budgets, slices=False)  # another, reserving in the database
    try:
        assert ledger.governing("a", None) is None  # the budgets are not read yet
        first = await ledger.reserve(provider="a", model="m", amount_usd=0.01, ts=T0)
        governing = ledger.governing("a", None)
        assert governing is not None and set(governing.limits) == {PA}
        held = ledger.hold(governing, 0.01, T0)  # against the slice the first one leased
        assert held is not None and held.id == first.id and is_slice(held.id)
        assert ledger.hold(governing, None, T0) is None  # unpriced: the database refuses it
        free = ledger.governing("b", None)  # no budget governs provider b
        assert free is not None and not free.limits
        assert ledger.hold(free, 0.01, T0) == Reservation("", 0.01, ())
        flat.record(
            rec(T0, 0.0), await flat.reserve(provider="a", model="m", amount_usd=0.01, ts=T0)
        )
        flat_governing = flat.governing("a", None)
        assert flat_governing is not None and flat.hold(flat_governing, 0.01, T0) is None
        now[0] = T0 + 2 * ledger.budget_refresh_s  # budgets too old to decide by
        assert ledger.governing("a", None) is None
        for r in (first, held):
            ledger.record(rec(T0, 0.0), r)
        await ledger.aclose()
        assert ledger.governing("b", None) is None
        assert ledger.hold(governing, 0.01, T0) is None and ledger.hold(free, 0.01, T0) is None
    finally:
        await ledger.aclose()
        await flat.aclose()
