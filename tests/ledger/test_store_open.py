"""Opening a ledger: several openers of a new file, or of a new PostgreSQL database, at once
all get it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from polyroute.errors import LedgerError
from polyroute.ledger._store import Store, _wal
from servers.postgres import PostgresServer


class BusyCursor:
    """Answers SQLITE_BUSY ``busy`` times, then switches."""

    def __init__(self, busy: int, code: int = sqlite3.SQLITE_BUSY) -> None:
        self.busy, self.code, self.calls = busy, code, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.busy:
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = self.code
            raise exc


def test_switching_to_wal_waits_out_another_opener() -> None:
    cur = BusyCursor(busy=3)
    _wal(cur)  # type: ignore[arg-type]
    assert cur.calls == 4


def test_other_errors_and_endless_contention_are_raised() -> None:
    with pytest.raises(sqlite3.OperationalError):
        _wal(BusyCursor(busy=1, code=sqlite3.SQLITE_IOERR))  # type: ignore[arg-type]
    cur = BusyCursor(busy=10**9)
    with pytest.raises(sqlite3.OperationalError):
        _wal(cur, patience_s=0.05)  # type: ignore[arg-type]
    assert cur.calls > 1


def test_three_openers_of_a_new_file_all_open_it(tmp_path: Path) -> None:
    errors: list[LedgerError] = []

    def open_close(url: str) -> None:
        try:
            Store(url).close()
        except LedgerError as exc:
            errors.append(exc)

    for k in range(20):
        url = f"sqlite:///{tmp_path}/race-{k}.db"
        threads = [threading.Thread(target=open_close, args=(url,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_openers_of_a_new_postgresql_database_migrate_it_once(
    postgres_server: PostgresServer,
) -> None:
    """Hosts opening one new database at once: an advisory lock lets one migrate it, and
    the others find it migrated."""
    from sqlalchemy import func, select

    from polyroute.ledger._schema import MIGRATIONS, migrations_table

    errors: list[LedgerError] = []
    applied: list[list[str]] = []

    def open_close(url: str) -> None:
        try:
            store = Store(url)
            applied.append(store.applied)
            store.close()
        except LedgerError as exc:
            errors.append(exc)

    for _ in range(5):
        url = postgres_server.create_database()
        threads = [threading.Thread(target=open_close, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store = Store(url)
        with store.read() as c:
            count = c.scalar(select(func.count()).select_from(migrations_table))
        store.close()
        assert count == len(MIGRATIONS)
    assert errors == []
    assert sorted(len(a) for a in applied).count(len(MIGRATIONS)) == 5  # one migrator each
