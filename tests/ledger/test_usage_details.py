"""The ledger keeps cache writes and reasoning tokens (migration 0006_usage_details): in the
usage table, in journal lines (older lines still read), and in `polyroute usage` totals."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import create_engine, select

from polyroute.ledger import Ledger, UsageRecord
from polyroute.ledger._journal import decode, encode
from polyroute.ledger._records import Reservation
from polyroute.ledger._schema import MIGRATIONS, migrate, usage
from polyroute.ledger._store import database_url

T0 = 1_773_144_000.0  # 2026-03-10 12:00 UTC


def detailed(request_id: str = "r1") -> UsageRecord:
    return UsageRecord(
        ts=T0,
        provider="anthropic",
        model="claude-haiku-4-5",
        prompt_tokens=23_050,
        completion_tokens=400,
        cached_tokens=20_000,
        cost_usd=0.00855,
        request_id=request_id,
        cache_write_tokens=3_000,
        reasoning_tokens=120,
    )


def test_journal_lines_carry_the_details_and_older_lines_still_read() -> None:
    item = (detailed(), Reservation("h1", 0.5, (("provider:anthropic", "day:2026-03-10"),)))
    assert decode(encode(item, 3)) == (3, item)
    # a line as the journal wrote it before 0006: no cache writes, no reasoning (nor carbon)
    old = json.loads(encode(item, 4))
    del old[14:17]
    seq, (rec, res) = decode(json.dumps(old))
    assert (seq, res) == (4, item[1])
    assert (rec.cache_write_tokens, rec.reasoning_tokens) == (0, 0)
    assert rec.cached_tokens == 20_000 and rec.request_id == "r1"


async def test_usage_totals_report_cached_written_and_reasoning_tokens(db_url: str) -> None:
    ledger = Ledger(db_url, clock=lambda: T0)
    try:
        ledger.record(detailed("r1"))
        ledger.record(detailed("r2"))
        report = await ledger.usage(by="model")
    finally:
        await ledger.aclose()
    [row] = report.as_dict()["rows"]
    assert row["model"] == "claude-haiku-4-5" and row["requests"] == 2
    assert (row["cached_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == (
        40_000,
        6_000,
        240,
    )
    engine = create_engine(database_url(db_url))
    try:
        with engine.connect() as con:
            stored = con.execute(select(usage.c.cache_write_tokens, usage.c.reasoning_tokens)).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in stored] == [(3_000, 120), (3_000, 120)]


async def test_rows_from_before_0006_count_zero_details(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    upto = [name for name, _ in MIGRATIONS].index("0006_usage_details")
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        migrate(conn, MIGRATIONS[:upto])
        conn.exec_driver_sql(
            "INSERT INTO usage (ts, day, month, provider, model, prompt_tokens,"
            " completion_tokens, cached_tokens, cost_nusd, latency_ms, status) VALUES"
            f" ({T0}, '2026-03-10', '2026-03', 'a', 'm1', 10, 2, 4, 1000, 5.0, 'ok')"
        )
    engine.dispose()
    ledger = Ledger(f"sqlite:///{db}", clock=time.time)
    try:
        assert "0006_usage_details" in await ledger.run(lambda s: s.applied)
        ledger.record(detailed())
        rows = {r.key: r for r in (await ledger.usage(by="provider")).rows}
    finally:
        await ledger.aclose()
    old, new = rows["a"], rows["anthropic"]
    assert (old.cached_tokens, old.cache_write_tokens, old.reasoning_tokens) == (4, 0, 0)
    assert (new.cache_write_tokens, new.reasoning_tokens) == (3_000, 120)
