"""A hold belongs to a live process: ``kill -9`` the holder and its budget comes back
within seconds (its lease lapses), not after the reservation's own expiry."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from polyroute.errors import BudgetExceeded
from polyroute.ledger import BudgetLimits, Ledger, provider_scope

WORKER = Path(__file__).parent.parent / "workers" / "ledger.py"
PA = provider_scope("a")
LEASE_TTL_S = 1.0


async def test_holds_of_a_killed_process_are_freed_when_its_lease_lapses(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    url = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), url, str(LEASE_TTL_S), "0.9"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "held"
        with sqlite3.connect(db) as con:
            [(owner,)] = con.execute("SELECT owner FROM budget_reservations").fetchall()
            assert con.execute(
                "SELECT count(*) FROM ledger_leases WHERE owner = ?", (owner,)
            ).fetchone() == (1,)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # the reservation's own expiry is 15 minutes away: only the lease can free it
    ledger = Ledger(url, budgets={PA: BudgetLimits(daily_usd=1.0)}, lease_ttl_s=LEASE_TTL_S)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                held = await ledger.reserve(provider="a", model="m", amount_usd=0.9, ts=time.time())
                break
            except BudgetExceeded:
                assert time.monotonic() < deadline, "the dead process's hold was never freed"
                await asyncio.sleep(0.1)
        assert held.targets
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert status.daily.reserved_usd == 0.9  # ours alone
    finally:
        await ledger.aclose()
