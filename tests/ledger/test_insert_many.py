"""A batch of rows goes in as a few multi-row statements (``_store._InsertMany``)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite as sqlite_dialect

from polyroute.ledger._schema import usage
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
