"""``polyroute bench`` end to end on the simulators: JSON, table, compare, resume, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from polyroute.cli import cli
from polyroute.testing import Fleet

SUITE = """
[[case]]
id = "capital"
task_type = "simple"
prompt = "What is the capital of France?"
expected_tokens = 10
grader = { contains = "Paris" }

[[case]]
id = "explain"
task_type = "medium"
prompt = "Explain why Paris is the capital."
expected_tokens = 40
grader = { regex = "Paris" }
"""
PAIRS = ("--providers", "openai,ollama", "--models", "gpt-4o-mini,llama3.2:latest")


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "ollama"), reply="Paris, of course.") as f:
        yield f


@pytest.fixture
def config(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = tmp_path / "polyroute.toml"
    path.write_text(fleet.toml(price=(2.0, 8.0)))
    (tmp_path / "suite.toml").write_text(SUITE)
    yield path
    for sim in fleet.sims.values():
        sim.script.recover()


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), "bench", *args])


def bench_json(config: Path, *args: str) -> dict[str, object]:
    r = invoke(config, *args, "--json")
    assert r.exit_code == 0, r.stderr
    data: dict[str, object] = json.loads(r.stdout)
    return data


def test_bench_json_has_designs_shape(config: Path) -> None:
    out = bench_json(config, "suite.toml", *PAIRS, "--runs", "2", "--concurrency", "3")
    assert out["suite"] == "suite.toml" and out["runs"] == 2 and out["status"] == "finished"
    assert out["measured"] == 8 and out["skipped"] == 0 and out["report"] is None
    results = out["results"]
    assert isinstance(results, list) and len(results) == 4  # 2 pairs x 2 task types
    row = results[0]
    for key in ("provider", "model", "task_type", "samples", "output_tokens_per_s"):
        assert key in row
    assert set(row["latency_ms"]) >= {"p50", "p95", "stddev"} and "p50" in row["ttft_ms"]
    assert row["quality"]["score"] == 1.0 and row["error_rate"] == 0 and row["samples"] == 2
    assert row["cost_usd_per_task"] is not None
    assert isinstance(out["recommendations"], list) and out["recommendations"]


def test_bench_prints_a_table_and_recommendations_and_compares_runs(config: Path) -> None:
    first = bench_json(config, "suite.toml", *PAIRS, "--runs", "1")
    r = invoke(config, "suite.toml", *PAIRS, "--runs", "1", "--compare", str(first["run_id"]))
    assert r.exit_code == 0, r.stderr
    assert f"bench run {int(str(first['run_id'])) + 1}" in r.stdout
    assert "•" in r.stdout
    assert f"against run {first['run_id']}" in r.stdout
    again = bench_json(
        config, "suite.toml", *PAIRS, "--runs", "1", "--compare", str(first["run_id"])
    )
    compared = again["compare"]
    assert isinstance(compared, dict) and compared["run_id"] == first["run_id"]
    assert len(compared["rows"]) == 4
    assert {"run", "baseline", "change"} == set(compared["rows"][0]["quality"])


def test_a_run_stopped_by_max_cost_resumes_with_a_new_cap(config: Path) -> None:
    # a worst case (256 tokens at $8/Mtok) is over $0.001: nothing fits
    stopped = bench_json(config, "suite.toml", *PAIRS, "--runs", "2", "--max-cost", "0.001")
    assert (stopped["measured"], stopped["skipped"], stopped["status"]) == (0, 8, "interrupted")
    r = invoke(config, "suite.toml", *PAIRS, "--runs", "2", "--max-cost", "0.001")
    assert "--max-cost: 8 samples not run" in r.stderr and "--resume" in r.stderr
    resumed = bench_json(config, "--resume", str(stopped["run_id"]), "--max-cost", "1")
    assert resumed["run_id"] == stopped["run_id"]
    assert (resumed["measured"], resumed["status"]) == (8, "finished")
    again = bench_json(config, "--resume", str(stopped["run_id"]))
    assert again["measured"] == 0  # nothing left to measure


def test_a_run_where_nothing_answers_exits_4(fleet: Fleet, config: Path) -> None:
    fleet["openai"].script.fail_always(401)
    r = invoke(
        config, "suite.toml", "--providers", "openai", "--models", "gpt-4o-mini", "--runs", "1"
    )
    assert r.exit_code == 4
    assert "no sample was answered" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bad.toml",), "bad.toml: case 1 ('x'): grader: needs exactly one of"),
        (("nope.toml",), "nope.toml: no such suite file"),
        (("suite.toml", "--providers", "nope"), "--providers: no provider 'nope'"),
        (("suite.toml", "--compare", "99"), "no benchmark run 99"),
        (("--resume", "99"), "no benchmark run 99"),
        (("suite.toml", "--resume", "1"), "SUITE cannot be given with it"),
        (("suite.toml", "--max-cost", "lots"), "'lots' is not an amount in USD"),
        (("suite.toml", "--runs", "0"), "0 is not in the range x>=1"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(
    config: Path, args: tuple[str, ...], message: str
) -> None:
    (config.parent / "bad.toml").write_text(
        '[[case]]\nid = "x"\ntask_type = "simple"\nprompt = "p"\nexpected_tokens = 5\ngrader = {}\n'
    )
    r = invoke(config, *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr


async def test_an_interrupted_run_says_how_to_resume_it(capsys: pytest.CaptureFixture[str]) -> None:
    from polyroute.benchmark import RunInfo
    from polyroute.cli._bench import _Bar, _execute

    class Engine:
        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            raise asyncio.CancelledError  # as Ctrl-C delivers it to the running command

    class Store:
        async def done(self, run_id: int) -> set[Any]:
            return set()

    info = RunInfo(3, ("simple",), datetime.now(UTC), None, 1, 1, (), None, "running")
    bar = _Bar(True)
    with pytest.raises(asyncio.CancelledError):
        await _execute(Engine(), Store(), info, [], None, bar)  # type: ignore[arg-type]
    assert bar._progress is None  # the bar is gone before the message
    err = capsys.readouterr().err
    assert "bench run 3 interrupted; `polyroute bench --resume 3` continues it" in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_leaves_a_run_that_resume_completes(fleet: Fleet, config: Path) -> None:
    fleet["openai"].script.latency_s = 0.1  # slow enough to be interrupted midway
    database = config.parent / "bench.db"
    config.write_text(config.read_text() + f'\n[storage]\nurl = "sqlite:///{database}"\n')
    args = ["suite.toml", "--providers", "openai", "--models", "gpt-4o-mini", "--runs", "20"]
    # the CLI with Python's own SIGINT handler, whatever this process passes down (a
    # shell's background job ignores SIGINT, and children inherit that)
    main = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from polyroute.cli import main; main()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", main, "--config", str(config), "bench", *args, "--concurrency", "1"],
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _stored(database) < 3:  # some samples in: interrupt it
            assert child.poll() is None and time.monotonic() < deadline, child.stderr
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130
    assert "bench run 1 interrupted; `polyroute bench --resume 1` continues it" in err
    stored = _stored(database)
    assert 3 <= stored < 40
    fleet["openai"].script.latency_s = 0.0
    calls = fleet["openai"].calls
    resumed = bench_json(config, "--resume", "1")
    assert (resumed["measured"], resumed["status"]) == (40 - stored, "finished")
    assert fleet["openai"].calls - calls == 40 - stored  # nothing measured twice


def _stored(database: Path) -> int:
    import sqlite3

    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
        try:
            return int(db.execute("SELECT count(*) FROM bench_samples").fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return 0
