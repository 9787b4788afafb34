"""``polyroute fuse``: the JSON shape, the table, and every error's one line and exit code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fusion.support import PANEL
from polyroute.cli import cli
from polyroute.cli._fuse import METHODS as CLI_METHODS
from polyroute.fusion import METHODS
from polyroute.testing import Fleet

PANEL_FLAG = ",".join(PANEL)


@pytest.fixture
def config(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    for pid, reply in zip(PANEL, ("The answer is 42.", "42", "41"), strict=True):
        fleet[pid].script.reply = reply
    path = tmp_path / "polyroute.toml"
    path.write_text(fleet.toml(price=(2.0, 8.0)) + '\n[fusion]\nsynthesizer = "mistral"\n')
    yield path


def invoke(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        cli, ["fuse", *args, "--config", str(config)], input=input, catch_exceptions=False
    )


def test_fuse_json_is_the_design_shape(config: Path) -> None:
    r = invoke(config, "What is 6 x 7?", "--providers", PANEL_FLAG, "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    design = {"result", "method", "confidence", "agreement", "total_cost_usd", "responses"}
    assert design <= set(out)
    assert out["result"] == "The answer is 42."
    assert out["method"] == "majority"
    assert out["agreement"] == pytest.approx(2 / 3) == out["confidence"]
    assert out["total_cost_usd"] == pytest.approx(sum(m["cost_usd"] for m in out["responses"]))
    member = {"provider", "model", "content", "confidence", "cost_usd", "ok", "error"}
    for m, pid in zip(out["responses"], PANEL, strict=True):
        assert member <= set(m)
        assert m["provider"] == pid and m["ok"] is True and m["error"] is None
    assert [m["content"] for m in out["responses"]] == ["The answer is 42.", "42", "41"]


def test_fuse_table_and_result(config: Path) -> None:
    r = invoke(config, "What is 6 x 7?", "--providers", PANEL_FLAG, "--method", "weighted")
    assert r.exit_code == 0, r.stderr
    for pid in PANEL:
        assert f"{pid}/" in r.stdout
    assert "weighted: agreement 2/3 (0.67), confidence 0.67" in r.stdout
    assert r.stdout.rstrip().endswith("result\nThe answer is 42.")


def test_fuse_reads_stdin_and_takes_every_flag(config: Path, fleet: Fleet) -> None:
    fleet["mistral"].script.reply = "Forty-two."
    r = invoke(
        config,
        "-",
        "--providers",
        PANEL_FLAG,
        "--method",
        "synthesis",
        "--min-agreement",
        "0.9",
        "--max-tokens",
        "50",
        "--system",
        "Be brief.",
        "--max-cost",
        "1",
        "--member-timeout",
        "5",
        "--json",
        input="What is 6 x 7?\n",
    )
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["result"] == "Forty-two." and out["synthesizer"]["provider"] == "mistral"
    assert out["min_agreement"] == 0.9 and out["agreed"] is False
    body = fleet["openai"].last_request().body
    assert body["max_completion_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_low_agreement_is_flagged(config: Path) -> None:
    r = invoke(config, "q", "--providers", PANEL_FLAG, "--min-agreement", "0.9")
    assert r.exit_code == 0
    assert "agreement is below min_agreement 0.90" in r.stdout


def test_early_stop_flag(config: Path, fleet: Fleet) -> None:
    fleet["openai"].script.reply = "42"
    fleet["google"].script.latency_s = 3.0
    r = invoke(config, "q", "--providers", PANEL_FLAG, "--early-stop", "--json")
    out = json.loads(r.stdout)
    assert out["early_stopped"] is True
    assert out["responses"][2]["error"].startswith("cancelled")


def test_fewer_than_two_answers_exits_4(config: Path, fleet: Fleet) -> None:
    fleet["anthropic"].script.fail_next(1, 503)
    fleet["google"].script.fail_next(1, 500)
    r = invoke(config, "q", "--providers", PANEL_FLAG)
    assert r.exit_code == 4
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("polyroute: error: fusion needs at least 2 answers, got 1 of 3: ")


def test_the_cost_cap_exits_3_before_any_call(config: Path, fleet: Fleet) -> None:
    calls = fleet["openai"].calls
    r = invoke(config, "q", "--providers", PANEL_FLAG, "--max-cost", "0.000001")
    assert r.exit_code == 3
    assert r.stderr.startswith("polyroute: error: fusion refused before any call: its worst-case")
    assert fleet["openai"].calls == calls


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--providers", "openai"], "name at least two providers"),
        (["--providers", "openai,openai"], "listed twice: openai"),
        (["--providers", "openai,openai/gpt-4o-mini"], "is listed twice"),
        (["--method", "vote"], "'vote' is not one of"),
        (["--min-agreement", "2"], "2.0 is not in the range"),
    ],
)
def test_usage_errors_exit_2(config: Path, args: list[str], error: str) -> None:
    r = invoke(config, "q", *args)
    assert r.exit_code == 2
    assert error in r.stderr


def test_config_errors_exit_2(config: Path) -> None:
    r = invoke(config, "q", "--providers", PANEL_FLAG, "--method", "semantic")
    assert r.exit_code == 2
    assert "fusion.embedding_provider: semantic fusion needs a provider" in r.stderr
    r = invoke(config, "q", "--providers", "openai,nope")
    assert r.exit_code == 2 and "no provider 'nope'" in r.stderr


def test_empty_prompt(config: Path) -> None:
    r = invoke(config, " ")
    assert r.exit_code == 2 and "the prompt is empty" in r.stderr


def test_cli_methods_are_the_library_methods() -> None:
    assert CLI_METHODS == METHODS
