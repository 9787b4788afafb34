"""``[storage] durability``: with "answered", :meth:`Ledger.durable` returns once the
records handed over are in the journal (``test_journal.py``) or, where there is no journal,
committed, and concurrent waiters share commits (group commit); with "batched" it returns
at once and records wait for the timer."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from polyroute.config import load
from polyroute.errors import ConfigError, LedgerError
from polyroute.ledger import Ledger, UsageRecord, ledger_for
from polyroute.ledger._journal import journal_dir
from polyroute.ledger._ledger import BATCH_S, JOURNALED_BATCH_S
from polyroute.ledger._store import Store

SLOW_TIMER = 30.0  # the batch timer never fires during a test: only durable() writes


def rows(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("SELECT count(*) FROM usage").fetchone()[0])


def rec(i: int = 0) -> UsageRecord:
    return UsageRecord(ts=1_773_144_000.0, provider="a", model="m", request_id=f"r{i}")


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Ledger]]:
    opened: list[Ledger] = []

    def _make(journal: bool = True, **kw: Any) -> Ledger:
        kw.setdefault("flush_interval_s", SLOW_TIMER)
        if not journal:  # a file where its directory would go: durable() waits for commits
            journal_dir(str(tmp_path / "l.db")).write_text("")
        ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", **kw)
        opened.append(ledger)
        return ledger

    yield _make
    for ledger in opened:
        await ledger.aclose()


async def test_answered_without_a_journal_returns_once_the_record_is_committed(
    make: Callable[..., Ledger], tmp_path: Path
) -> None:
    ledger = make(journal=False)
    await ledger.run(lambda s: None)  # open (and migrate) first
    ledger.record(rec())
    await ledger.durable()
    assert rows(tmp_path / "l.db") == 1  # another connection sees it: committed


async def test_concurrent_waiters_share_commits(
    make: Callable[..., Ledger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make(journal=False)
    await ledger.run(lambda s: None)
    batches: list[int] = []
    settle = Store.settle

    def counting(self: Store, batch: Any, *a: Any) -> Any:
        batches.append(len(batch))
        return settle(self, batch, *a)

    monkeypatch.setattr(Store, "settle", counting)

    async def request(i: int) -> None:
        await asyncio.sleep(0)
        ledger.record(rec(i))
        await ledger.durable()

    await asyncio.gather(*(request(i) for i in range(200)))
    assert rows(tmp_path / "l.db") == 200
    assert sum(batches) == 200
    assert len(batches) < 200  # records queued during a commit went into the next one


async def test_batched_returns_at_once_and_leaves_the_write_to_the_timer(
    make: Callable[..., Ledger], tmp_path: Path
) -> None:
    ledger = make(durability="batched")
    await ledger.run(lambda s: None)
    ledger.record(rec())
    await ledger.durable()
    assert rows(tmp_path / "l.db") == 0
    await ledger.flush()
    assert rows(tmp_path / "l.db") == 1


async def test_a_refused_commit_is_an_error_and_the_record_is_kept(
    make: Callable[..., Ledger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make(journal=False)
    await ledger.run(lambda s: None)

    def refuse(*_: Any, **__: Any) -> Any:
        raise OperationalError("INSERT INTO usage ...", {}, Exception("database is locked"))

    with monkeypatch.context() as m:
        m.setattr(Store, "settle", refuse)
        ledger.record(rec())
        with pytest.raises(LedgerError, match="refused the records"):
            await ledger.durable()
    ledger.record(rec(1))
    await ledger.durable()  # the kept record goes with the next commit
    assert rows(tmp_path / "l.db") == 2


async def test_nothing_handed_over_returns_at_once(make: Callable[..., Ledger]) -> None:
    await asyncio.wait_for(make().durable(), 5)


def test_durability_comes_from_the_config_and_a_bad_value_is_refused_by_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "polyroute.toml"
    path.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "c.db"}"\n')
    ledger = ledger_for(load(path))
    assert ledger.durability == "answered"
    ledger.close()
    path.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "c.db"}"\ndurability = "batched"\n')
    ledger = ledger_for(load(path))
    assert ledger.durability == "batched"
    ledger.close()
    path.write_text('[storage]\ndurability = "fsync"\n')
    with pytest.raises(ConfigError, match=r"storage\.durability"):
        load(path)


async def test_batches_wait_longer_where_the_journal_holds_their_records(tmp_path: Path) -> None:
    """A kill loses a "batched" ledger's batch, so it is written within 50 ms; an "answered"
    one's records are in the journal, so its batch may wait 250 ms (fewer transactions and
    fewer waits for the interpreter lock); where there is no journal, 50 ms again. A value
    given is kept."""
    journal_dir(str(tmp_path / "none.db")).write_text("")  # a file where its directory goes
    made = [
        (Ledger(f"sqlite:///{tmp_path / 'a.db'}"), JOURNALED_BATCH_S),
        (Ledger(f"sqlite:///{tmp_path / 'b.db'}", durability="batched"), BATCH_S),
        (Ledger(f"sqlite:///{tmp_path / 'none.db'}"), BATCH_S),
        (Ledger(f"sqlite:///{tmp_path / 'c.db'}", flush_interval_s=1.5), 1.5),
    ]
    try:
        assert [ledger.flush_interval_s for ledger, _ in made] == [want for _, want in made]
        assert (JOURNALED_BATCH_S, BATCH_S) == (0.25, 0.05)
    finally:
        for ledger, _ in made:
            await ledger.aclose()
