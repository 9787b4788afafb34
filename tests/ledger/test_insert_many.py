"""A batch of rows goes in as a few multi-row statements (``_store._InsertMany``)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError

from polyroute.ledger import GLOBAL, UsageRecord
from polyroute.ledger._records import to_nusd
from polyroute.ledger._schema import spend, usage
from polyroute.ledger._store import Store, _InsertMany

KEYS = [c.name for c in usage.c if c.name != "id"]


def row(i: int) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(KEYS)
    return values | {
        "ts": 1_700_000_000.0 + i,
        "day": "2026-12-06",
        "month": "2026-12",
        "provider": f"p{i % 3}",
        "model": "m",
        "prompt_tokens": i,
        "completion_tokens": 2 * i,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_nusd": 10 * i,
        "latency_ms": 1.5,
        "status": "ok",
    }


class Counting:
    """A cursor that counts statements and passes them on."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur
        self.statements = 0

    def execute(self, sql: str, params: Any) -> Any:
        self.statements += 1
        return self.cur.execute(sql, params)


@pytest.mark.parametrize("n", [0, 1, 7, 512, 1100])
def test_every_row_goes_in_once_in_a_few_statements(db_url: str, n: int) -> None:
    store = Store(db_url)
    try:
        with store.driver_write() as cur:
            counting = Counting(cur)
            store.fast.add_usage.many(counting, [row(i) for i in range(n)])
        assert counting.statements == bin(n % 512).count("1") + n // 512
        query = select(usage.c.prompt_tokens, usage.c.completion_tokens, usage.c.provider)
        got = [tuple(r) for r in store.conn.execute(query)]
        assert sorted(got) == [(i, 2 * i, f"p{i % 3}") for i in range(n)]
    finally:
        store.close()


def test_an_older_sqlite_gets_statements_under_its_999_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    insert = _InsertMany(usage, sqlite_dialect.dialect(), KEYS)
    assert insert.max_rows * len(KEYS) <= 999
    assert insert.max_rows == 32


def test_a_row_without_a_column_is_refused_and_nothing_goes_in(db_url: str) -> None:
    store = Store(db_url)
    try:
        broken = row(1)
        del broken["model"]
        with pytest.raises(KeyError), store.driver_write() as cur:
            store.fast.add_usage.many(cur, [row(0), broken])
        assert store.conn.execute(select(usage.c.id)).all() == []
    finally:
        store.close()


def test_one_batch_across_days_providers_and_keys_moves_each_spend_row_by_its_own(
    db_url: str,
) -> None:
    """Records of a batch share their (scope, period) rows by day, provider and key: each
    row gets the sum of its own records, none of another day's, provider's or key's."""
    day1 = 1_767_225_000.0  # 2025-12-31, late
    day2 = day1 + 3_600  # 2026-01-01: another day and another month
    batch = [
        (UsageRecord(ts=ts, provider=p, model="m", cost_usd=usd, virtual_key=k), None)
        for ts, p, k, usd in [
            (day1, "a", None, 0.001),
            (day2, "a", None, 0.002),
            (day1, "b", "k1", 0.004),
            (day1, "a", "k1", 0.008),
            (day2, "b", "k1", 0.016),
            (day1, "a", None, 0.032),
            (day2, "b", None, None),  # unpriced: a row, no spend
        ]
    ]
    store = Store(db_url)
    try:
        store.settle(batch, {}, day2)
        got = {(r.scope, r.period): r.spent_nusd for r in store.conn.execute(select(spend))}
    finally:
        store.close()
    n = to_nusd
    assert got == {
        (GLOBAL, "day:2025-12-31"): n(0.001) + n(0.004) + n(0.008) + n(0.032),
        (GLOBAL, "month:2025-12"): n(0.001) + n(0.004) + n(0.008) + n(0.032),
        (GLOBAL, "day:2026-01-01"): n(0.002) + n(0.016),
        (GLOBAL, "month:2026-01"): n(0.002) + n(0.016),
        ("provider:a", "day:2025-12-31"): n(0.001) + n(0.008) + n(0.032),
        ("provider:a", "month:2025-12"): n(0.001) + n(0.008) + n(0.032),
        ("provider:a", "day:2026-01-01"): n(0.002),
        ("provider:a", "month:2026-01"): n(0.002),
        ("provider:b", "day:2025-12-31"): n(0.004),
        ("provider:b", "month:2025-12"): n(0.004),
        ("provider:b", "day:2026-01-01"): n(0.016),
        ("provider:b", "month:2026-01"): n(0.016),
        ("key:k1", "day:2025-12-31"): n(0.004) + n(0.008),
        ("key:k1", "month:2025-12"): n(0.004) + n(0.008),
        ("key:k1", "day:2026-01-01"): n(0.016),
        ("key:k1", "month:2026-01"): n(0.016),
    }


def test_rows_with_nulls_in_different_columns_go_in_as_they_were(db_url: str) -> None:
    """Each row reads back as written and in its order, ``None`` as NULL, whichever nullable
    columns it left empty (on SQLite those are left out of its statement: one statement
    per run of rows that leave the same ones empty)."""
    keyed = {"virtual_key": "k1", "request_id": "req-1"}
    rows = [
        row(0),  # no key, no first token, no error, no request id, no carbon
        row(1),
        row(2) | keyed,
        row(3) | {"ttft_ms": 12.5, "carbon_g": 0.25, "cost_nusd": None},
        row(4) | {"error_type": "timeout", "status": "error"},
        row(5) | keyed,
    ]
    store = Store(db_url)
    try:
        with store.driver_write() as cur:
            counting = Counting(cur)
            store.fast.add_usage.many(counting, rows)
        query = select(*(usage.c[k] for k in KEYS)).order_by(usage.c.id)
        got = [dict(r._mapping) for r in store.conn.execute(query)]
    finally:
        store.close()
    assert got == rows
    # SQLite: the runs 0-1, 2, 3, 4, 5; PostgreSQL: the six rows as four and two
    assert counting.statements == (5 if db_url.startswith("sqlite") else 2)


def test_a_none_where_a_column_refuses_null_is_refused_not_defaulted(db_url: str) -> None:
    """``cache_write_tokens`` is NOT NULL with a default of 0: a ``None`` there is bound
    and refused, never left out to take the default."""
    store = Store(db_url)
    try:
        with pytest.raises(IntegrityError), store.driver_write() as cur:
            store.fast.add_usage.many(cur, [row(0), row(1) | {"cache_write_tokens": None}])
        assert store.conn.execute(select(usage.c.id)).all() == []
    finally:
        store.close()
