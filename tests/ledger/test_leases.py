"""A hold belongs to a live process: ``kill -9`` the holder and its budget comes back
within seconds (its lease lapses), not after the reservation's own expiry."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from polyroute.errors import BudgetExceeded
from polyroute.ledger import BudgetLimits, Ledger, provider_scope
from polyroute.ledger._schema import leases, reservations
from polyroute.ledger._store import database_url

WORKER = Path(__file__).parent.parent / "workers" / "ledger.py"
PA = provider_scope("a")
LEASE_TTL_S = 1.0


async def test_holds_of_a_killed_process_are_freed_when_its_lease_lapses(db_url: str) -> None:
    """On a SQLite file, and on PostgreSQL (the holder as another host would be)."""
    url = db_url
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), url, str(LEASE_TTL_S), "0.9"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "held"
        engine = create_engine(database_url(url))
        try:
            with engine.connect() as con:
                [owner] = con.scalars(select(reservations.c.owner)).all()
                live = select(func.count()).where(leases.c.owner == owner)
                assert con.scalar(live) == 1
        finally:
            engine.dispose()
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


async def test_a_live_ledger_frees_a_killed_process_holds_without_being_asked(
    db_url: str,
) -> None:
    """No reservation refused, no minute's sweep: an idle ledger's lease renewals find the
    lapsed hold, so budgets stop showing it held within seconds of the lease lapsing.
    (Leases of 3 s: a loaded machine must not delay the live holder's renewals past it.)"""
    url = db_url
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), url, "3", "0.9"],
        stdout=subprocess.PIPE,
        text=True,
    )
    ledger = None
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "held"
        # opened while the holder lives: its own opening sweep finds nothing to free
        ledger = Ledger(url, budgets={PA: BudgetLimits(daily_usd=1.0)}, lease_ttl_s=3)
        [status] = [b for b in await ledger.budgets() if b.scope == PA]
        assert status.daily.reserved_usd == 0.9
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        deadline = time.monotonic() + 20
        while True:
            [status] = [b for b in await ledger.budgets() if b.scope == PA]
            if status.daily.reserved_usd == 0:
                break
            assert time.monotonic() < deadline, "the dead process's hold is still shown held"
            await asyncio.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
        if ledger is not None:
            await ledger.aclose()
