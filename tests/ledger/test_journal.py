"""Durability "answered": a record is in the journal before ``durable()`` returns, so a
killed process loses no answered record, and a replay writes exactly what the database lacks."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import fields, replace
from pathlib import Path

import pytest

from polyroute.ledger import BudgetLimits, Ledger, UsageRecord, provider_scope
from polyroute.ledger._journal import decode, encode, journal_dir
from polyroute.ledger._records import Reservation

WORKER = Path(__file__).parent.parent / "workers" / "journal.py"
PA = provider_scope("a")


def rec(i: int = 0, cost: float | None = 0.01) -> UsageRecord:
    return UsageRecord(ts=time.time(), provider="a", model="m", cost_usd=cost, request_id=f"r{i}")


def rows(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r for (r,) in con.execute("SELECT request_id FROM usage ORDER BY id")]


def journal_files(db: Path) -> list[str]:
    d = journal_dir(str(db))
    return sorted(os.listdir(d)) if d.exists() else []


def kill_after_answers(url: str, written: int, answered: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), url, str(written), str(answered)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "answered"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_a_line_round_trips() -> None:
    item = (rec(7, cost=None), Reservation("id1", 0.5, (("provider:a", "day:2026-12-06"),)))
    assert decode(encode(item, 42)) == (42, item)
    with pytest.raises(ValueError, match="not a ledger journal line"):
        decode('[1, "torn')
    with pytest.raises(ValueError, match="not a ledger journal line"):
        decode('{"record": {}}')


def stdlib_line(item: tuple[UsageRecord, Reservation | None], seq: int) -> str:
    """The line as the journal wrote it before msgspec (json.dumps)."""
    r, res = item
    held = None if res is None else [res.id, res.amount_usd, res.targets]
    values = [seq, *(getattr(r, f.name) for f in fields(r)), held]
    return json.dumps(values, separators=(",", ":"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cost_usd", float("nan")),  # msgspec would write null: unpriced
        ("latency_ms", float("inf")),
        ("model", "m\u2028x"),  # raw, splitlines would cut the line in two on replay
        ("model", "é"),
        ("request_id", "r\ud800"),  # a lone surrogate: not UTF-8
        ("request_id", "null"),
    ],
)
def test_a_line_msgspec_cannot_write_alike_is_the_stdlibs(field: str, value: object) -> None:
    item = (replace(rec(1), **{field: value}), None)
    line = encode(item, 5)
    assert line == stdlib_line(item, 5)
    assert len(line.splitlines()) == 1
    _, (back, _) = decode(line)
    got = getattr(back, field)
    assert got == value or (math.isnan(got) and math.isnan(value))  # type: ignore[arg-type]


def test_a_line_reads_back_as_the_stdlibs_did() -> None:
    r = UsageRecord(1.7e9, "a", "m", 9, 6, 0, 5.15e-06, 1e16, None, request_id="x", carbon_g=1e-7)
    item = (r, Reservation("id1", 0.000512, (("global", "day:2026-12-06"),)))
    line = encode(item, 3)
    assert "5.15e-6" in line  # msgspec's (the stdlib's is 5.15e-06): the same number
    assert decode(line) == decode(stdlib_line(item, 3)) == (3, item)


async def test_answered_records_of_a_killed_process_are_written_back_exactly_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    url = f"sqlite:///{db}"
    # 30 reached the database before the kill, 20 were answered but only journaled
    await asyncio.to_thread(kill_after_answers, url, 30, 20)
    assert len(rows(db)) == 30
    assert journal_files(db)  # the dead process's lock and segment

    ledger = Ledger(url, budgets={PA: BudgetLimits(daily_usd=100.0)}, lease_ttl_s=0.5)
    try:
        report = await ledger.usage()
        assert report.requests == 50
        assert rows(db) == [f"r{i}" for i in range(50)]  # each once, in order
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert status.daily.spent_usd == pytest.approx(0.5)  # 50 x $0.01
        assert status.daily.reserved_usd == 0  # the replay settled the dead holds
    finally:
        await ledger.aclose()
    assert journal_files(db) == []  # replayed, then removed with its mark
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM ledger_journal").fetchone() == (0,)


async def test_durable_returns_once_journaled_even_while_the_database_is_busy(
    tmp_path: Path,
) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    await ledger.run(lambda s: None)
    busy, release = threading.Event(), threading.Event()

    def hold(store: object) -> None:  # keeps the database thread away from the records
        busy.set()
        release.wait(10)

    held = asyncio.ensure_future(ledger.run(hold))
    await asyncio.to_thread(busy.wait, 5)
    try:
        ledger.record(rec())
        await asyncio.wait_for(ledger.durable(), 5)  # the commit could not have happened
        assert ledger._committed == 0
    finally:
        release.set()
        await held
    await ledger.aclose()


async def test_without_a_journal_durable_waits_for_the_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "l.db"
    journal_dir(str(db)).write_text("not a directory")  # the journal cannot be made
    with caplog.at_level(logging.WARNING, "polyroute.ledger"):
        ledger = Ledger(f"sqlite:///{db}", flush_interval_s=3600)
    assert "no journal" in caplog.text
    ledger.record(rec())
    await asyncio.wait_for(ledger.durable(), 5)  # written at once, not on the hour's timer
    assert rows(db) == ["r0"]
    await ledger.aclose()


async def test_a_journal_the_disk_refuses_falls_back_to_waiting_for_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.db"
    ledger = Ledger(f"sqlite:///{db}", flush_interval_s=3600)
    await ledger.run(lambda s: None)

    def full(*_: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    ledger.record(rec(1))
    monkeypatch.undo()
    await asyncio.wait_for(ledger.durable(), 5)
    assert rows(db) == ["r1"]
    ledger.record(rec(2))  # from now on every reply waits for its commit
    await asyncio.wait_for(ledger.durable(), 5)
    assert rows(db) == ["r1", "r2"]
    await ledger.aclose()


async def test_segments_roll_over_and_go_once_written(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    ledger = Ledger(f"sqlite:///{db}", flush_interval_s=3600, segment_bytes=2000)
    for i in range(100):
        ledger.record(rec(i))
    assert len([f for f in journal_files(db) if f.endswith(".jsonl")]) >= 3
    await ledger.flush()
    segments = [f for f in journal_files(db) if f.endswith(".jsonl")]
    assert len(segments) == 1  # only the one still being appended to
    await ledger.aclose()
    assert journal_files(db) == []
    assert len(rows(db)) == 100


async def test_a_live_ledgers_journal_is_not_replayed_by_another(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    first = Ledger(url, flush_interval_s=3600)
    first.record(rec(1))
    await first.durable()
    second = Ledger(url)
    assert (await second.usage()).requests == 0  # first's record is its own to write
    await first.flush()
    assert (await second.usage()).requests == 1
    await first.aclose()
    await second.aclose()
    assert rows(tmp_path / "l.db") == ["r1"]


async def test_records_the_database_refuses_at_close_stay_in_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyroute.ledger._store import Store

    db = tmp_path / "l.db"
    url = f"sqlite:///{db}"
    ledger = Ledger(url, flush_interval_s=3600)
    await ledger.run(lambda s: None)

    def refuse(*_: object, **__: object) -> None:
        from sqlalchemy.exc import OperationalError

        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    with monkeypatch.context() as m:
        m.setattr(Store, "settle", refuse)
        for i in range(3):
            ledger.record(rec(i))
        await ledger.aclose()
    assert not Path(f"{db}.spill.jsonl").exists()  # not spilled twice: the journal has them
    assert rows(db) == []
    again = Ledger(url)
    assert (await again.usage()).requests == 3
    await again.aclose()
    assert journal_files(db) == []
