"""Every earlier version of the database upgrades to the current one, and a database built
by the migrations is the schema the queries use (each migration carries its own DDL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from polyroute.errors import BudgetExceeded
from polyroute.ledger import BudgetLimits, Ledger, UsageRecord, provider_scope
from polyroute.ledger._schema import INDEXES, MIGRATIONS, metadata, migrate

T0 = 1_773_144_000.0  # 2026-03-10 12:00 UTC
PA = provider_scope("a")

# What a database at each version may already hold: inserted after that migration ran.
ROWS: dict[str, list[str]] = {
    "0001_initial": [
        "INSERT INTO usage (ts, day, month, provider, model, prompt_tokens, completion_tokens,"
        " cached_tokens, cost_nusd, latency_ms, status) VALUES"
        f" ({T0}, '2026-03-10', '2026-03', 'a', 'm1', 1, 2, 0, 1000, 5.0, 'ok')",
        "INSERT INTO budgets (scope, daily_usd, monthly_usd, alert_percents, updated_at)"
        f" VALUES ('{PA}', 1.0, NULL, '[50]', {T0})",
        # a hold made before leases: released by its own expiry, one minute on
        "INSERT INTO budget_spend (scope, period, spent_nusd, reserved_nusd)"
        f" VALUES ('{PA}', 'day:2026-03-10', 0, 300000000)",
        "INSERT INTO budget_reservations (id, created, expires, amount_nusd, targets) VALUES"
        f" ('old', {T0}, {T0 + 60}, 300000000, '{json.dumps([[PA, 'day:2026-03-10']])}')",
    ],
    "0002_virtual_keys": [
        "INSERT INTO virtual_keys (id, name, secret_hash, prefix, models, created_at)"
        f" VALUES ('vk_old', 'old', '{'0' * 64}', 'sk-pr-abcdef', '[]', {T0})",
    ],
}


NewDatabase = Callable[[str], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> NewDatabase:
    """The URL of a new empty database (named, for SQLite's file): the same migrations
    run on both backends."""
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        return lambda _name: str(server.create_database())
    return lambda name: f"sqlite:///{tmp_path / name}"


def build(url: str, upto: int) -> None:
    """A database as the release with the first ``upto`` migrations left it."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        migrate(conn, MIGRATIONS[:upto])
        for name, _ in MIGRATIONS[:upto]:
            for sql in ROWS.get(name, []):
                conn.exec_driver_sql(sql)
    engine.dispose()


def schema(url: str) -> dict[str, Any]:
    """Tables with their columns (name, type, nullable, primary key) and indexes."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        insp = inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            cols = [
                (c["name"], str(c["type"]), c["nullable"], c.get("primary_key", 0))
                for c in insp.get_columns(table)
            ]
            idx = sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            )
            out[table] = (sorted(cols), idx)
        return out
    finally:
        engine.dispose()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("upto", range(len(MIGRATIONS)))
async def test_a_database_at_every_earlier_version_upgrades_and_works(
    new_db: NewDatabase, upto: int
) -> None:
    old, fresh = new_db("old.db"), new_db("fresh.db")
    build(old, upto)
    clock = Clock(T0 + 1)
    ledger = Ledger(old, clock=clock)
    try:
        applied = await ledger.run(lambda s: s.applied)
        assert applied == [name for name, _ in MIGRATIONS[upto:]]
        report = await ledger.usage()
        assert report.requests == (1 if upto >= 1 else 0)  # the old rows are still there
        if upto >= 2:
            assert [k.id for k in await ledger.keys()] == ["vk_old"]
        # it works: a reservation (leased, in the new columns), a record, a key
        if upto >= 1:
            assert await ledger.set_budget(PA, daily_usd=1.0) == BudgetLimits(1.0, None, (50,))
            with pytest.raises(BudgetExceeded):  # the old hold still counts
                await ledger.reserve(provider="a", model="m1", amount_usd=0.8, ts=clock.now)
            clock.now = T0 + 61  # the old hold expired: swept, and the reservation fits
        else:
            await ledger.set_budget(PA, daily_usd=1.0)
        held = await ledger.reserve(provider="a", model="m1", amount_usd=0.8, ts=clock.now)
        ledger.record(UsageRecord(ts=clock.now, provider="a", model="m1", cost_usd=0.5), held)
        await ledger.flush()
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert (status.daily.spent_usd, status.daily.reserved_usd) == (0.5, 0.0)
        key, secret = await ledger.create_key("after the upgrade", daily_usd=1.0)
        assert await ledger.verify_key(secret) == key
    finally:
        await ledger.aclose()

    Ledger(fresh).close()
    assert schema(old) == schema(fresh)


def test_the_migrations_build_the_tables_the_queries_use(new_db: NewDatabase) -> None:
    db = new_db("fresh.db")
    build(db, len(MIGRATIONS))
    built = schema(db)
    for table in metadata.sorted_tables:
        cols, idx = built[table.name]
        assert [c[0] for c in cols] == sorted(c.name for c in table.columns), table.name
        assert [c[2] for c in cols] == [table.c[name].nullable for name, *_ in cols], (
            f"{table.name}: nullability"
        )
        assert idx == sorted(
            (i.name, tuple(c.name for c in i.columns), i.unique)
            for i in INDEXES
            if i.table is table
        )
    assert set(built) == {t.name for t in metadata.sorted_tables}
