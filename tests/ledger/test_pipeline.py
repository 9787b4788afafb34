"""The driver's write transaction (``Store.driver_write``): on PostgreSQL one libpq pipeline
(``_pgpipe.Pipe``) with its own BEGIN and COMMIT, its statements queued and sent together
when a result is first read."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError

from polyroute.errors import BudgetExceeded
from polyroute.ledger import GLOBAL, BudgetLimits, Reservation, UsageRecord, provider_scope
from polyroute.ledger._records import period_key, to_nusd
from polyroute.ledger._schema import budgets, reservations, spend
from polyroute.ledger._store import FiredAlert, Store

PA = provider_scope("a")


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each write of a pipeline to the server (``Pipe._send``), counted."""
    from polyroute.ledger import _pgpipe

    counted: list[int] = []
    send = _pgpipe.Pipe._send
    monkeypatch.setattr(_pgpipe.Pipe, "_send", lambda pipe: counted.append(1) or send(pipe))
    return counted


def _daily(store: Store, scope: str, now: float) -> tuple[int, int]:
    """(spent, reserved) nano-USD of ``scope``'s day."""
    day = spend.c.period == period_key("daily", now)
    row = store.conn.execute(
        select(spend.c.spent_nusd, spend.c.reserved_nusd).where(spend.c.scope == scope, day)
    ).one()
    return row[0], row[1]


def _settled_exactly(store: Store, now: float, spent_usd: float) -> None:
    """``PA``'s day has spent ``spent_usd``, holds nothing, and no reservation is left."""
    spent, held = _daily(store, PA, now)
    assert (spent, held) == (to_nusd(spent_usd), 0)
    assert store.conn.execute(select(reservations.c.id)).all() == []


def test_a_failing_statement_rolls_back_what_was_sent_before_it(db_url: str) -> None:
    """A statement the database refuses, sent after others in the same transaction: the
    error comes out as SQLAlchemy's, nothing of the transaction stays, and the connection
    goes on working, its SQLAlchemy transactions atomic again."""
    store = Store(db_url)
    try:
        now = time.time()
        hold = {"b_scope": GLOBAL, "b_period": period_key("daily", now), "b_amount": 5}
        with pytest.raises(DBAPIError), store.driver_write() as cur:
            made = store.fast.hold.plain.sent(cur, {**hold, "b_limit": 100})
            cur.execute("SELECT * FROM no_such_table")
            made()  # on PostgreSQL the error comes with the first result read
        assert store.conn.execute(select(spend)).all() == []
        store.conn.rollback()

        with store.driver_write() as cur:  # the connection is usable again
            assert store.fast.hold.plain.sent(cur, {**hold, "b_limit": 100})()
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


def test_a_refusal_by_a_later_hold_names_its_budget_and_holds_nothing(db_url: str) -> None:
    """The global hold fits and the provider's is refused: the refusal names the provider's
    budget with its own figures, and the global hold made before it is rolled back."""
    store = Store(db_url)
    try:
        now = time.time()
        limits = {GLOBAL: BudgetLimits(daily_usd=5.0), PA: BudgetLimits(daily_usd=1.0)}
        store.reserve(limits, 0.8, now, 60.0, "m1")
        with pytest.raises(BudgetExceeded) as info:
            store.reserve(limits, 0.5, now + 1, 60.0, "m1")
        refused = info.value
        assert (refused.scope, refused.limit_usd, refused.reserved_usd) == (PA, 1.0, 0.8)
        assert refused.requested_usd == 0.5
        rows = store.conn.execute(select(spend.c.scope, spend.c.reserved_nusd)).all()
        assert dict(rows) == {GLOBAL: to_nusd(0.8), PA: to_nusd(0.8)}
        assert len(store.conn.execute(select(reservations.c.id)).all()) == 1
        store.conn.rollback()
    finally:
        store.close()


def test_a_request_over_a_limit_alone_is_refused_by_an_earlier_full_budget_first(
    db_url: str,
) -> None:
    """The provider's limit is below the request's worst case, so it is refused unasked; but
    the global budget, checked first, is full already: the refusal names the global one, as
    checking one budget after another would. With room in the global budget, it names the
    provider's. Neither leaves a hold."""
    store = Store(db_url)
    try:
        now = time.time()
        store.reserve({GLOBAL: BudgetLimits(daily_usd=1.0)}, 0.9, now, 60.0, "m1")
        with pytest.raises(BudgetExceeded) as info:
            limits = {GLOBAL: BudgetLimits(daily_usd=1.0), PA: BudgetLimits(daily_usd=0.1)}
            store.reserve(limits, 0.5, now + 1, 60.0, "m1")
        assert (info.value.scope, info.value.reserved_usd) == (GLOBAL, 0.9)
        with pytest.raises(BudgetExceeded) as info:
            limits = {GLOBAL: BudgetLimits(daily_usd=9.0), PA: BudgetLimits(daily_usd=0.1)}
            store.reserve(limits, 0.5, now + 2, 60.0, "m1")
        assert (info.value.scope, info.value.limit_usd) == (PA, 0.1)
        rows = store.conn.execute(select(spend.c.scope, spend.c.reserved_nusd)).all()
        assert dict(rows) == {GLOBAL: to_nusd(0.9)}
        store.conn.rollback()
    finally:
        store.close()


def test_a_reservation_waits_for_postgresql_once(postgres_url: str, sends: list[int]) -> None:
    """A reservation's holds, lease and row go out with its commit, and a group's too: one
    write to the server and one wait each, a refused hold aborting the transaction there."""
    store = Store(postgres_url)
    try:
        now = time.time()
        limits = {GLOBAL: BudgetLimits(daily_usd=5.0), PA: BudgetLimits(daily_usd=5.0)}
        store.reserve(limits, 0.5, now, 60.0, "m1")
        assert len(sends) == 1
        group = store.reserve_group([(limits, 0.5, now), (limits, 0.7, now)], 60.0, 600.0)
        assert group is not None
        assert len(sends) == 2
        rows = store.conn.execute(select(spend.c.scope, spend.c.reserved_nusd)).all()
        assert dict(rows) == {GLOBAL: to_nusd(1.7), PA: to_nusd(1.7)}
        store.conn.rollback()
    finally:
        store.close()


def test_a_settle_waits_for_postgresql_once(postgres_url: str, sends: list[int]) -> None:
    """A settle releases its reservations as they were held, with the moves and the commit,
    and a move that alerts watch fires them in the same statement: one write and one wait,
    with alerts or without."""
    store = Store(postgres_url)
    try:
        now = time.time()
        for alerts, settled in (((), 1), ((50.0,), 1)):
            limits = {PA: BudgetLimits(daily_usd=5.0, alert_percents=alerts)}
            kept = store.reserve(limits, 0.8, now, 60.0, "m1")
            sends.clear()
            record = UsageRecord(ts=now, provider="a", model="m1", cost_usd=0.5)
            store.settle([(record, kept)], limits, now)
            assert len(sends) == settled
        _settled_exactly(store, now, 1.0)
        store.conn.rollback()
    finally:
        store.close()


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipeline", "no pipeline"])
def test_a_settle_fires_each_alert_it_crosses_once(
    db_url: str, sends: list[int], pipelined: bool
) -> None:
    """Spend crossing two thresholds fires both, in the configured order and numbers, with
    the new spend; the next crossing fires the third alone. On PostgreSQL the moves fire
    them in the same statement (a pipeline's settle writes to the server once), with libpq's
    pipeline mode or without it."""
    store = Store(db_url)
    if not pipelined:
        if not store.pipelines:
            store.close()
            pytest.skip("no pipeline to do without")
        store.pipelines = False  # a libpq older than 14, simulated
    try:
        now = time.time()
        limits = {PA: BudgetLimits(daily_usd=1.0, alert_percents=(50, 75, 90))}
        day = period_key("daily", now)
        fired = []
        for cost in (0.8, 0.15):
            kept = store.reserve(limits, cost, now, 60.0, "m1")
            sends.clear()
            record = UsageRecord(ts=now, provider="a", model="m1", cost_usd=cost)
            fired.append(store.settle([(record, kept)], limits, now))
            assert len(sends) == (1 if store.pipelines else 0)
        assert fired == [
            [
                FiredAlert(PA, "daily", day, 50, 0.8, 1.0),
                FiredAlert(PA, "daily", day, 75, 0.8, 1.0),
            ],
            [FiredAlert(PA, "daily", day, 90, 0.95, 1.0)],
        ]
        assert [type(a.percent) for a in fired[0]] == [int, int]
        store.conn.rollback()
    finally:
        store.close()


def test_a_reservation_no_longer_as_held_is_settled_by_what_the_database_holds(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settled after a sweep released it, a reservation moves nothing back; settled with an
    amount that is not the one held, the held amount goes back. The spend stays exact: on
    PostgreSQL the settle as held fails, and the batch is settled again, reading what each
    release took back (as it always is on a driver's cursor)."""
    store = Store(db_url)
    tries: list[bool] = []
    settle = Store._settle
    monkeypatch.setattr(
        Store, "_settle", lambda *a, as_held: tries.append(as_held) or settle(*a, as_held=as_held)
    )
    try:
        now = time.time()
        limits = {PA: BudgetLimits(daily_usd=5.0)}
        swept = store.reserve(limits, 0.8, now, 60.0, "m1")
        kept = store.reserve(limits, 0.4, now, 60.0, "m1")
        store.release([swept.id])  # as a sweep does
        changed = Reservation(kept.id, 0.7, kept.targets)
        record = UsageRecord(ts=now, provider="a", model="m1", cost_usd=0.25)
        store.settle([(record, swept), (record, changed)], limits, now)
        assert tries == ([True, False] if store.pipelines else [False])
        _settled_exactly(store, now, 0.5)
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


def test_a_statement_whose_prepare_failed_is_prepared_again(db_url: str) -> None:
    """A statement the server refused to prepare (its table did not exist yet) is not
    taken for prepared: once the table exists, the same SQL runs."""
    store = Store(db_url)
    try:
        sql = "SELECT count(*) FROM later_table"
        with pytest.raises(DBAPIError), store.driver_write() as cur:
            store_rows(cur, sql)
        store.conn.rollback()
        with store.driver_write() as cur:
            cur.execute("CREATE TABLE later_table (n INTEGER)")
        with store.driver_write() as cur:
            assert store_rows(cur, sql) == [(0,)]
    finally:
        store.close()


def test_an_error_in_the_caller_rolls_back_statements_never_read(db_url: str) -> None:
    """Statements queued, none read, then the caller fails: nothing of them stays."""
    store = Store(db_url)
    try:
        hold = {"b_scope": GLOBAL, "b_period": "day:2026-12-07", "b_amount": 5, "b_limit": 9}
        with pytest.raises(ZeroDivisionError), store.driver_write() as cur:
            store.fast.hold.plain.run(cur, hold)
            raise ZeroDivisionError
        assert store.conn.execute(select(spend)).all() == []
        store.conn.rollback()
    finally:
        store.close()


def test_a_failed_transaction_leaves_the_prepared_statements_in_place(postgres_url: str) -> None:
    """psycopg prepares a query of its own once it has run it five times, and its rollback
    of a transaction deallocates every prepared statement on the connection (``DEALLOCATE
    ALL``), the pipeline's too. The ledger's connection has psycopg prepare nothing: after a
    refusal and after a failed transaction, reservations go on as before."""
    store = Store(postgres_url)
    try:
        for _ in range(6):  # psycopg's default prepare_threshold is 5
            store.conn.execute(select(spend.c.scope).where(spend.c.scope == GLOBAL)).all()
        store.conn.commit()  # a rollback would deallocate them already
        now = time.time()
        limits = {GLOBAL: BudgetLimits(daily_usd=1.0)}
        store.reserve(limits, 0.8, now, 60.0, "m1")
        with pytest.raises(BudgetExceeded):
            store.reserve(limits, 0.5, now, 60.0, "m1")
        store.reserve(limits, 0.1, now, 60.0, "m1")  # its statements: still prepared
        with pytest.raises(DBAPIError), store.driver_write() as cur:
            cur.execute("SELECT * FROM no_such_table")()
        store.conn.rollback()
        store.reserve(limits, 0.1, now, 60.0, "m1")
        held = store.conn.execute(select(spend.c.reserved_nusd)).scalar()
        assert held == to_nusd(1.0)
        store.conn.rollback()
    finally:
        store.close()


def test_statements_deallocated_behind_the_pipelines_back_are_prepared_again(
    postgres_url: str,
) -> None:
    """Something else deallocates the pipeline's statements: the transaction that meets it
    fails, as SQLAlchemy's error, and the next one prepares its statements anew."""
    store = Store(postgres_url)
    try:
        now = time.time()
        limits = {GLOBAL: BudgetLimits(daily_usd=1.0)}
        store.reserve(limits, 0.1, now, 60.0, "m1")
        store.conn.exec_driver_sql("DEALLOCATE ALL")
        store.conn.commit()
        with pytest.raises(DBAPIError, match="does not exist"):
            store.reserve(limits, 0.1, now, 60.0, "m1")
        store.reserve(limits, 0.1, now, 60.0, "m1")
        held = store.conn.execute(select(spend.c.reserved_nusd)).scalar()
        assert held == to_nusd(0.2)
        store.conn.rollback()
    finally:
        store.close()


def test_a_connection_lost_mid_transaction_is_replaced(postgres_url: str) -> None:
    """The server ends the ledger's connection between two transactions: the next one fails
    as unreachable (SQLAlchemy's OperationalError), and the one after runs on a new
    connection, its statements prepared there again."""
    store = Store(postgres_url)
    try:
        hold = {"b_scope": GLOBAL, "b_period": "day:2026-12-07", "b_amount": 5, "b_limit": 90}
        with store.driver_write() as cur:
            assert store.fast.hold.plain.rows(cur, hold) == [(5,)]
        pid = store.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        store.conn.rollback()
        with psycopg.connect(postgres_url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(OperationalError), store.driver_write() as cur:
            store.fast.hold.plain.rows(cur, hold)
        with store.driver_write() as cur:
            assert store.fast.hold.plain.rows(cur, hold) == [(10,)]
        assert store.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
        store.conn.rollback()
    finally:
        store.close()


def test_a_value_or_column_type_it_does_not_know_is_a_clear_error(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        with pytest.raises(TypeError, match="no bytes"), store.driver_write() as cur:
            cur.execute("SELECT %s::TEXT", [b"raw"])
        with pytest.raises(TypeError, match="no PostgreSQL type 1082"), store.driver_write() as cur:
            cur.execute("SELECT current_date")()
        with store.driver_write() as cur:  # and the connection goes on
            assert cur.execute("SELECT %s::BIGINT, %s, %s::TEXT", [7, None, "é"])() == [
                (7, None, "é")
            ]
    finally:
        store.close()


def test_placeholders_are_numbered_as_postgresql_wants() -> None:
    from polyroute.ledger._pgpipe import numbered

    assert numbered("SELECT %(a)s, %(b)s, %(a)s, '%%'") == ("SELECT $1, $2, $1, '%'", ("a", "b"))
    assert numbered("VALUES (%s, %s)") == ("VALUES ($1, $2)", None)
    with pytest.raises(ValueError, match="named and positional"):
        numbered("SELECT %(a)s, %s")


def store_rows(cur: object, sql: str) -> list[tuple[object, ...]]:
    """``sql``'s rows on a driver's cursor or a pipe alike."""
    if hasattr(cur, "fetchall"):
        cur.execute(sql)  # type: ignore[attr-defined]
        return list(cur.fetchall())
    return cur.execute(sql)()  # type: ignore[attr-defined,no-any-return]
