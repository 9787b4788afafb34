"""Budget slices across processes: 4 processes fire 300 requests each at a budget that
allows 800, large enough that each reserves against a slice in memory (``_slices.py``).
However the slices interleave, the budget is never passed and every answer is paid for."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyroute.testing import Fleet
from test_budget_concurrency import MAX_TOKENS, WORKERS, WORST, spent_and_held, write_config

ALLOWED = 800
LIMIT = ALLOWED * WORST


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai",), reply="spend " * 100) as f:  # long: every answer is cut at max_tokens
        yield f


def run_workers(path: Path, processes: int, each: int) -> list[dict[str, Any]]:
    """``processes`` budget workers fire ``each`` concurrent requests at once; their tallies."""
    argv = [sys.executable, str(WORKERS / "budget_worker.py"), str(path), str(each)]
    procs = [
        subprocess.Popen(
            [*argv, str(MAX_TOKENS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", (line, p.stderr.read() if p.stderr else "")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        tallies = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            tallies.append(json.loads(out.strip().splitlines()[-1]))
        return tallies
    finally:
        for p in procs:
            p.kill()


def test_1200_requests_from_4_processes_with_slices_never_pass_the_limit(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = write_config(fleet, tmp_path, LIMIT, f"sqlite:///{tmp_path / 'l.db'}")
    calls_before = fleet["openai"].calls
    tallies = run_workers(path, 4, 300)
    assert all(t["other"] == [] for t in tallies), tallies
    admitted = sum(t["admitted"] for t in tallies)
    assert admitted + sum(t["refused"] for t in tallies) == 1200
    # never past the limit; under it only by slices another process had not handed back yet
    assert ALLOWED // 2 < admitted <= ALLOWED, tallies
    assert fleet["openai"].calls - calls_before == admitted
    spent, held = asyncio.run(spent_and_held(path))
    assert spent <= LIMIT + 1e-12
    assert spent == pytest.approx(admitted * WORST)
    assert held == 0
