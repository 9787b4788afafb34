"""The driver's write transaction (``Store.driver_write``): on PostgreSQL one pipeline with
its own BEGIN and COMMIT, its statements sent before their results are read."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from polyroute.errors import BudgetExceeded
from polyroute.ledger import GLOBAL, BudgetLimits, UsageRecord, provider_scope
from polyroute.ledger._records import period_key, to_nusd
from polyroute.ledger._schema import budgets, reservations, spend
from polyroute.ledger._store import Store

PA = provider_scope("a")


def test_a_failing_statement_rolls_back_what_was_sent_before_it(db_url: str) -> None:
    """A statement the database refuses, sent after others in the same transaction: the
    error comes out as SQLAlchemy's, nothing of the transaction stays, and the connection
    goes on working, its SQLAlchemy transactions atomic again."""
    store = Store(db_url)
    try:
        now = time.time()
        hold = {"b_scope": GLOBAL, "b_period": period_key("daily", now), "b_amount": 5}
        with pytest.raises(DBAPIError), store.driver_write() as cur:
            made = store.fast.hold.sent(cur, {**hold, "b_limit": 100})
            cur.execute("SELECT * FROM no_such_table")
            made()  # on PostgreSQL the error comes with the first result read
        assert store.conn.execute(select(spend)).all() == []
        store.conn.rollback()

        with store.driver_write() as cur:  # the connection is usable again
            assert store.fast.hold.sent(cur, {**hold, "b_limit": 100})()
        assert store.conn.execute(select(spend.c.reserved_nusd)).scalars().all() == [5]
        store.conn.rollback()

        # a SQLAlchemy transaction that fails still rolls back as a whole
        with pytest.raises(ZeroDivisionError), store.write() as c:
            c.execute(budgets.insert().values(scope="x", alert_percents="[]", updated_at=now))
            raise ZeroDivisionError
        assert store.conn.execute(select(budgets.c.scope)).all() == []
        store.conn.rollback()
    finally:
        store.close()


def test_a_refusal_among_holds_sent_together_leaves_no_hold_and_no_lease(db_url: str) -> None:
    """The global hold is refused, the provider's (sent with it) would fit: the refusal names
    the global budget, and neither hold, the reservation nor a lease stays."""
    store = Store(db_url)
    try:
        now = time.time()
        limits = {GLOBAL: BudgetLimits(daily_usd=1.0), PA: BudgetLimits(daily_usd=5.0)}
        kept = store.reserve(limits, 0.8, now, 60.0, "m1")
        lease = store.leased_until
        with pytest.raises(BudgetExceeded) as info:
            store.reserve(limits, 0.5, now + 1, 60.0, "m1")
        assert (info.value.scope, info.value.spent_usd, info.value.reserved_usd) == (
            GLOBAL,
            0.0,
            0.8,
        )
        assert store.leased_until == lease
        day = period_key("daily", now)
        rows = store.conn.execute(select(spend.c.scope, spend.c.reserved_nusd)).all()
        held = {scope: nusd for scope, nusd in rows}
        assert held == {GLOBAL: to_nusd(0.8), PA: to_nusd(0.8)}
        ids = store.conn.execute(select(reservations.c.id)).scalars().all()
        assert ids == [kept.id]
        assert sorted(kept.targets) == sorted([(GLOBAL, day), (PA, day)])
        store.conn.rollback()
    finally:
        store.close()


def test_a_fresh_store_refused_at_once_takes_no_lease(db_url: str) -> None:
    """Over a limit on its own, and nothing held before: no hold, no reservation, no lease."""
    store = Store(db_url)
    try:
        with pytest.raises(BudgetExceeded) as info:
            store.reserve({PA: BudgetLimits(daily_usd=0.1)}, 0.5, time.time(), 60.0, "m1")
        assert (info.value.scope, info.value.requested_usd) == (PA, 0.5)
        assert store.leased_until is None
        assert store.conn.execute(select(reservations.c.id)).all() == []
        store.conn.rollback()
    finally:
        store.close()


def test_a_driver_without_pipelines_reserves_settles_and_refuses_alike(postgres_url: str) -> None:
    """psycopg on a libpq older than 14 has no pipeline mode: each statement is then a
    round trip of its own, with the same results."""
    store = Store(postgres_url)
    try:
        assert store.pipelines  # this machine's psycopg has it; the older one is simulated
        store.pipelines = False
        now = time.time()
        limits = {GLOBAL: BudgetLimits(daily_usd=1.0), PA: BudgetLimits(daily_usd=5.0)}
        kept = store.reserve(limits, 0.8, now, 60.0, "m1")
        with pytest.raises(BudgetExceeded) as info:
            store.reserve(limits, 0.5, now + 1, 60.0, "m1")
        assert info.value.scope == GLOBAL
        store.settle(
            [(UsageRecord(ts=now, provider="a", model="m1", cost_usd=0.5), kept)], limits, now
        )
        rows = store.conn.execute(
            select(spend.c.scope, spend.c.spent_nusd, spend.c.reserved_nusd)
        ).all()
        assert {scope: (s, r) for scope, s, r in rows} == {
            GLOBAL: (to_nusd(0.5), 0),
            PA: (to_nusd(0.5), 0),
        }
        store.conn.rollback()
        with pytest.raises(DBAPIError), store.driver_write() as cur:
            cur.execute("SELECT * FROM no_such_table")
        assert store.conn.execute(select(reservations.c.id)).all() == []
        store.conn.rollback()
    finally:
        store.close()
