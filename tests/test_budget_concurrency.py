"""Budgets under load: 200 concurrent requests, in one process and across 8, never pass a limit,
on a SQLite file and on PostgreSQL (where 300 from two processes stand for two hosts).

The upstream answers exactly ``max_tokens`` tokens and input is free, so the
actual cost of a request equals its reserved worst case: the budget then
admits exactly ``limit / worst_case`` requests, whatever the interleaving.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyroute.client import Answer, Polyroute
from polyroute.config import load
from polyroute.errors import BudgetExceeded
from polyroute.ledger import Ledger, provider_scope
from polyroute.testing import Fleet

MAX_TOKENS = 10
OUT_PRICE = 100.0  # USD per million output tokens; input is free
WORST = MAX_TOKENS * OUT_PRICE / 1e6  # $0.001, also the actual cost
ALLOWED = 50
LIMIT = ALLOWED * WORST
WORKERS = Path(__file__).parent / "workers"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai",), reply="spend " * 100) as f:  # long: every answer is cut at max_tokens
        yield f


def write_config(fleet: Fleet, tmp_path: Path, daily_usd: float, url: str) -> Path:
    model = fleet["openai"].models[0]
    text = fleet.toml() + (
        f'\n[providers."openai".budget]\ndaily_usd = {daily_usd}\n'
        f'\n[models."{model}"]\nprovider_type = "openai"\n'
        f"input_usd_per_mtok = 0\noutput_usd_per_mtok = {OUT_PRICE}\n"
        f'\n[storage]\nurl = "{url}"\n'
    )
    path = tmp_path / "polyroute.toml"
    path.write_text(text)
    return path


async def spent_and_held(config_path: Path) -> tuple[float, float]:
    config = load(config_path)
    ledger = Ledger(config.settings.storage.url)
    try:
        [status] = await ledger.budgets([provider_scope("openai")])
    finally:
        await ledger.aclose()
    return status.daily.spent_usd, status.daily.reserved_usd


async def test_200_concurrent_requests_in_one_process(
    fleet: Fleet, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = write_config(fleet, tmp_path, LIMIT, db_url)
    calls_before = fleet["openai"].calls
    async with Polyroute(load(path)) as pr:
        results = await asyncio.gather(
            *(pr.complete("spend", provider="openai", max_tokens=MAX_TOKENS) for _ in range(200)),
            return_exceptions=True,
        )
    answers = [r for r in results if isinstance(r, Answer)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(answers) + len(refused) == 200, [
        r for r in results if not isinstance(r, Answer | BudgetExceeded)
    ]
    assert abs(len(answers) - ALLOWED) <= 1
    assert all(a.cost_usd == pytest.approx(WORST) for a in answers)
    assert fleet["openai"].calls - calls_before == len(answers)  # refused ones never went out
    spent, held = await spent_and_held(path)
    assert spent <= LIMIT + 1e-12
    assert spent == pytest.approx(len(answers) * WORST)
    assert held == 0
    e = refused[0]
    assert (e.scope, e.period, e.limit_usd) == ("provider:openai", "daily", pytest.approx(LIMIT))
    assert e.requested_usd == pytest.approx(WORST)


def test_200_requests_from_8_processes_share_one_budget(
    fleet: Fleet, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    from_processes(fleet, write_config(fleet, tmp_path, LIMIT, db_url), 8, 25)


def test_300_requests_from_2_processes_share_one_budget_on_postgresql(
    fleet: Fleet, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ledgers (as on two hosts) on one PostgreSQL server: one budget, never overspent."""
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    from_processes(fleet, write_config(fleet, tmp_path, LIMIT, postgres_url), 2, 150)


def from_processes(fleet: Fleet, path: Path, processes: int, each: int) -> None:
    """``processes`` workers fire ``each`` concurrent requests at once; check the budget."""
    calls_before = fleet["openai"].calls
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKERS / "budget_worker.py"),
                str(path),
                str(each),
                str(MAX_TOKENS),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for p in procs:  # every process warm and holding its database connection
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", (line, p.stderr.read() if p.stderr else "")
        for p in procs:  # then all fire together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        tallies = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            tallies.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            p.kill()
    assert all(t["other"] == [] for t in tallies), tallies
    admitted = sum(t["admitted"] for t in tallies)
    assert admitted + sum(t["refused"] for t in tallies) == processes * each
    assert abs(admitted - ALLOWED) <= 1, tallies
    assert fleet["openai"].calls - calls_before == admitted
    spent, held = asyncio.run(spent_and_held(path))
    assert spent <= LIMIT + 1e-12
    assert spent == pytest.approx(admitted * WORST)
    assert held == 0


def test_concurrent_cli_asks_exit_3_once_the_budget_is_spent(
    fleet: Fleet, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = write_config(fleet, tmp_path, 3 * WORST, db_url)
    cmd = [
        sys.executable,
        "-m",
        "polyroute",
        "ask",
        "spend",
        "--provider",
        "openai",
        "--max-tokens",
        str(MAX_TOKENS),
        "--config",
        str(path),
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 0, 0, 3, 3, 3], results
    for code, _, err in results:
        if code == 3:
            [line] = err.strip().splitlines()
            assert line.startswith("polyroute: error: daily budget for provider:openai ($0.003)")
            assert line.endswith("this request needs up to $0.001")
