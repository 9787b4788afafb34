"""``kill -9`` in the middle of a load loses nothing the ledger had flushed or journaled.

The simulator keeps its own list of answered requests (with the vendor's
request id) in this process, which the kill does not touch. Every request
answered well before the kill (ten flush intervals: the ledger writes every
50 ms) must be in the ledger, and the ledger holds nothing the upstream did
not answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyroute.testing import Fleet

WORKERS = Path(__file__).parent / "workers"
MARGIN_S = 0.5


def test_sigkill_mid_load_keeps_every_flushed_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Fleet(("openai",), reply="ok") as fleet:
        monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
        db = tmp_path / "ledger.db"
        config = tmp_path / "polyroute.toml"
        config.write_text(fleet.toml() + f'\n[storage]\nurl = "sqlite:///{db}"\n')
        sim = fleet["openai"]
        proc = subprocess.Popen(
            [sys.executable, str(WORKERS / "load_worker.py"), str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
            deadline = time.monotonic() + 60
            # 300 answers, and load for a while: answers from the last MARGIN_S don't count
            while time.monotonic() < deadline and (
                len(sim.answered) < 300 or time.monotonic() - sim.answered[0][0] < 4 * MARGIN_S
            ):
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
        finally:
            proc.kill()
            proc.wait()
        answered = list(sim.answered)

    assert proc.returncode == -signal.SIGKILL
    before = {h["x-request-id"] for t, h in answered if t < killed_at - MARGIN_S}
    everything = {h["x-request-id"] for _, h in answered}
    assert len(before) > 100

    # the next open of the ledger works on the crashed file, and writes back what the
    # killed process had journaled but not yet written (durability "answered")
    from polyroute.ledger import Ledger

    async def reopen() -> int:
        ledger = Ledger(f"sqlite:///{db}")
        try:
            return (await ledger.usage(by="provider")).requests
        finally:
            await ledger.aclose()

    requests = asyncio.run(reopen())
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = [r[0] for r in con.execute("SELECT request_id FROM usage")]
    finally:
        con.close()
    in_ledger = set(rows)
    assert requests == len(rows)
    assert len(rows) == len(in_ledger)  # no record written twice
    assert before <= in_ledger, f"{len(before - in_ledger)} answered requests missing"
    assert in_ledger <= everything  # nothing the upstream did not answer
