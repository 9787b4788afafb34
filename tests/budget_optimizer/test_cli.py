"""``polyroute budget analyze / optimize / history`` end to end on a synthetic ledger."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from budget_optimizer.synthetic import Profile, days_of, record
from polyroute.cli import cli
from polyroute.ledger import Ledger

PROFILES = {"alpha": Profile(base=4.0, slope=0.05), "beta": Profile(base=1.0, weekly=True)}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    db = tmp_path / "ledger.db"
    path = tmp_path / "polyroute.toml"
    path.write_text(
        f'[storage]\nurl = "sqlite:///{db}"\n'
        "[budget.optimizer]\ntotal_monthly_usd = 300\nmin_usd = 10\nmax_usd = 250\n"
        '[providers.alpha]\ntype = "openai"\napi_key = "env:NONE"\n'
        '[providers.beta]\ntype = "anthropic"\napi_key = "env:NONE"\n'
        '[providers.gamma]\ntype = "mistral"\napi_key = "env:NONE"\n'
    )
    today = datetime.fromtimestamp(time.time(), UTC).date()
    ledger = Ledger(f"sqlite:///{db}")
    await record(ledger, days_of(PROFILES, today - timedelta(days=45), 45))
    await ledger.aclose()
    return path


def test_analyze_json_and_table(config: Path) -> None:
    out = invoke("budget", "analyze", "--json", "--config", str(config))
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["period"] == datetime.now(UTC).strftime("%Y-%m")
    rows = {p["provider"]: p for p in data["providers"]}
    assert list(rows) == ["alpha", "beta", "gamma"]
    assert rows["alpha"]["forecast_usd"] > rows["beta"]["forecast_usd"] > 0
    assert rows["alpha"]["forecast_low_usd"] <= rows["alpha"]["forecast_usd"]
    assert rows["alpha"]["success_rate"] == 1.0 and rows["alpha"]["limit_usd"] is None
    assert rows["gamma"]["forecast_usd"] is None
    assert any("gamma: no complete day" in r for r in data["recommendations"])
    table = invoke("budget", "analyze", "--since", "30d", "--config", str(config))
    assert table.exit_code == 0
    assert "forecast" in table.output and "alpha" in table.output and "/wk" in table.output


def test_optimize_proposes_applies_and_records(config: Path) -> None:
    out = invoke("budget", "optimize", "--json", "--config", str(config))
    assert out.exit_code == 0, out.output
    proposal = json.loads(out.output)
    assert proposal["total_usd"] == 300 and proposal["applied"] is False
    got = {a["provider"]: a["proposed_usd"] for a in proposal["allocations"]}
    assert round(sum(got.values()), 2) == 300
    assert got["gamma"] == 10 and got["alpha"] > got["beta"] >= 10
    assert json.loads(invoke("budget", "history", "--json", "--config", str(config)).output) == {
        "history": []
    }
    assert (
        "no budget changes recorded" in invoke("budget", "history", "--config", str(config)).output
    )

    out = invoke(
        "budget", "optimize", "--total", "120", "--min", "5", "--max", "100", "--apply",
        "--config", str(config),
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "applied" in out.output
    shown = json.loads(invoke("budget", "show", "--json", "--config", str(config)).output)
    monthly = {
        b["scope"]: b["monthly"]["limit_usd"] for b in shown["budgets"] if b["source"] == "cli"
    }
    assert set(monthly) == {"provider:alpha", "provider:beta", "provider:gamma"}
    assert round(sum(monthly.values()), 2) == 120 and monthly["provider:gamma"] == 5
    [entry] = json.loads(invoke("budget", "history", "--json", "--config", str(config)).output)[
        "history"
    ]
    assert entry["source"] == "cli" and entry["total_usd"] == 120
    assert [c["provider"] for c in entry["changes"]] == ["alpha", "beta", "gamma"]
    assert all(c["previous_usd"] is None for c in entry["changes"])
    table = invoke("budget", "history", "--config", str(config))
    assert "gamma" in table.output and "cli" in table.output
    again = json.loads(invoke("budget", "optimize", "--json", "--total", "120", "--min", "5",
                              "--max", "100", "--config", str(config)).output)  # fmt: skip
    assert [a["current_usd"] for a in again["allocations"]] == [
        monthly[f"provider:{p}"] for p in ("alpha", "beta", "gamma")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--total", "-5"], "the total must be 0 or more, not -5"),
        (["--min", "60", "--max", "50"], "min $60 is over max $50"),
        (["--total", "100", "--min", "40"], "min $40 x 3 providers is $120, over the total $100"),
        (
            ["--total", "1000", "--max", "100"],
            "max $100 x 3 providers is $300, under the total $1000: it cannot all be placed",
        ),
    ],
)
def test_bad_bounds_are_one_line_exit_2(config: Path, args: list[str], message: str) -> None:
    out = CliRunner().invoke(cli, ["budget", "optimize", *args, "--apply", "--config", str(config)])
    assert out.exit_code == 2
    assert out.output.strip() == f"polyroute: error: {message}"
    history = json.loads(invoke("budget", "history", "--json", "--config", str(config)).output)
    assert history == {"history": []}


def test_a_bad_amount_or_since_is_a_usage_error(config: Path) -> None:
    assert CliRunner().invoke(cli, ["budget", "optimize", "--total", "lots"]).exit_code == 2
    assert CliRunner().invoke(cli, ["budget", "analyze", "--since", "yesterday"]).exit_code == 2
