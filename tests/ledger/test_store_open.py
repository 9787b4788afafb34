"""Opening a ledger file: several openers of a new file at once all get it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from polyroute.errors import LedgerError
from polyroute.ledger._store import Store, _wal


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
