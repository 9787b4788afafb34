"""``polyroute bench --evaluate-routing [--run RUN]``: a stored run replayed through each
strategy, end to end on the simulators (the run made by ``polyroute bench`` itself)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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
task_type = "complex"
prompt = "Explain why Paris is the capital."
expected_tokens = 40
grader = { regex = "Paris" }
"""
PAIRS = ("--providers", "openai,ollama", "--models", "gpt-4o-mini,llama3.2:latest")


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "ollama"), reply="Paris, of course.") as f:
        f["ollama"].script.reply = "Lyon, I think."  # the local model answers wrong
        yield f


@pytest.fixture
def config(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = tmp_path / "polyroute.toml"
    path.write_text(fleet.toml())
    (tmp_path / "suite.toml").write_text(SUITE)
    return path


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), "bench", *args])


def test_the_replay_scores_each_strategy_against_the_best_single_pair(config: Path) -> None:
    made = invoke(config, "suite.toml", *PAIRS, "--runs", "2", "--json")
    assert made.exit_code == 0, made.stderr
    run_id = json.loads(made.stdout)["run_id"]

    r = invoke(config, "--evaluate-routing", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["run_id"] == run_id  # the latest finished run
    assert out["baseline"]["pair"] == "openai/gpt-4o-mini"  # the only one that answers right
    assert out["baseline"]["quality"] == 1.0
    by = {s["strategy"]: s for s in out["strategies"]}
    assert set(by) == {"cost", "quality", "performance", "balanced", "carbon"}
    for s in by.values():
        assert s["cases"] == 2
        kept = s["picks"].get("openai/gpt-4o-mini", 0) / 2
        assert s["quality_retained"] == pytest.approx(kept)  # ollama's answers score 0
    # the quality strategy learns from the run: ollama's measured 0.00 keeps it out
    assert by["quality"]["picks"] == {"openai/gpt-4o-mini": 2}
    assert by["quality"]["cost_saved"] == pytest.approx(0.0)
    # the cost strategy sends both cases to the free local model: all cost saved, no quality
    assert by["cost"]["picks"] == {"ollama/llama3.2:latest": 2}
    assert (by["cost"]["quality_retained"], by["cost"]["cost_saved"]) == (0.0, 1.0)
    assert set(out["cases"]) == {"capital", "explain"}

    table = invoke(config, "--evaluate-routing", "--run", str(run_id))
    assert table.exit_code == 0, table.stderr
    assert f"bench run {run_id} replayed through each strategy" in table.stdout
    assert "quality kept" in table.stdout and "100.0%" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--run", "1"), "--run names the run that --evaluate-routing replays"),
        (("--evaluate-routing", "suite.toml"), "SUITE cannot be given with it"),
        (("--evaluate-routing", "--report", "out"), "--report cannot be given with it"),
        (("--evaluate-routing", "--run", "99"), "no benchmark run 99"),
        (("--evaluate-routing",), "no finished benchmark run to replay"),
    ],
)
def test_bad_evaluate_arguments_exit_2_naming_the_problem(
    config: Path, args: tuple[str, ...], message: str
) -> None:
    r = invoke(config, *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr


def test_bench_report_writes_the_page_and_its_charts(config: Path, tmp_path: Path) -> None:
    r = invoke(config, "suite.toml", *PAIRS, "--runs", "1", "--report", "out", "--json")
    assert r.exit_code == 0, r.stderr
    report = Path(json.loads(r.stdout)["report"])
    assert report.resolve() == (tmp_path / "out" / "index.html").resolve()
    page = report.read_text(encoding="utf-8")
    assert "openai/gpt-4o-mini" in page and "ollama/llama3.2:latest" in page
    for name in ("latency_cost", "quality_cost", "error_rates", "carbon"):
        assert (report.parent / f"{name}.png").stat().st_size > 1000
        assert f'<figure id="chart-{name}"><svg' in page
    (tmp_path / "taken").write_text("a file, not a directory")
    bad = invoke(config, "suite.toml", *PAIRS, "--runs", "1", "--report", "taken")
    assert bad.exit_code == 2
    assert "bench --report taken:" in bad.stderr
