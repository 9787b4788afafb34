"""``polyroute usage``, ``budget set/show``, ``providers``' budget column, and exit code 3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from polyroute.cli import cli
from polyroute.cli._accounts import parse_since
from polyroute.testing import Fleet

PRICE = (2.0, 8.0)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply="Accounted for") as f:
        yield f


def write(tmp_path: Path, fleet: Fleet, extra: str = "") -> Path:
    path = tmp_path / "polyroute.toml"
    path.write_text(fleet.toml(price=PRICE) + extra)
    return path


@pytest.fixture
def config(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    return write(tmp_path, fleet)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ask(config: Path, provider: str, *more: str) -> Result:
    return invoke("ask", "count me", "--provider", provider, "--config", str(config), *more)


def test_usage_totals_by_provider_model_and_day(fleet: Fleet, config: Path) -> None:
    costs = []
    for provider in ("openai", "openai", "anthropic"):
        r = ask(config, provider, "--json")
        assert r.exit_code == 0, r.stderr
        costs.append(json.loads(r.stdout)["cost_usd"])
    fleet["openai"].script.fail_next(2, 500)  # an attempt and its retry: two failed rows
    assert ask(config, "openai").exit_code == 4

    r = invoke("usage", "--json", "--config", str(config))
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["requests"] == 5
    assert out["total_cost_usd"] == pytest.approx(sum(costs))
    rows = {row["provider"]: row for row in out["rows"]}
    assert set(rows["openai"]) == {
        "provider",
        "requests",
        "failed",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost_usd",
        "carbon_g",
    }
    assert (rows["openai"]["requests"], rows["openai"]["failed"]) == (4, 2)
    assert rows["openai"]["cost_usd"] == pytest.approx(costs[0] + costs[1])
    assert rows["anthropic"]["completion_tokens"] > 0

    by_model = json.loads(
        invoke("usage", "--by", "model", "--json", "--config", str(config)).stdout
    )
    assert {row["model"] for row in by_model["rows"]} == {
        fleet["openai"].models[0],
        fleet["anthropic"].models[0],
    }
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    by_day = json.loads(invoke("usage", "--by", "day", "--json", "--config", str(config)).stdout)
    assert [row["day"] for row in by_day["rows"]] == [today]
    by_month = json.loads(
        invoke("usage", "--by", "month", "--json", "--config", str(config)).stdout
    )
    assert [row["month"] for row in by_month["rows"]] == [today[:7]]
    only = json.loads(
        invoke("usage", "--provider", "anthropic", "--json", "--config", str(config)).stdout
    )
    assert [row["provider"] for row in only["rows"]] == ["anthropic"]
    recent = json.loads(invoke("usage", "--since", "1d", "--json", "--config", str(config)).stdout)
    assert recent["requests"] == 5
    future = json.loads(
        invoke("usage", "--since", "2999-01-01", "--json", "--config", str(config)).stdout
    )
    assert future == {"total_cost_usd": 0.0, "total_carbon_g": 0, "requests": 0, "rows": []}

    table = invoke("usage", "--config", str(config))
    assert "openai" in table.stdout and "total" in table.stdout


def test_usage_with_nothing_recorded_says_so(config: Path) -> None:
    r = invoke("usage", "--config", str(config))
    assert r.exit_code == 0
    assert "no usage recorded" in r.stdout


@pytest.mark.parametrize("since", ["yesterday", "0d", "2026-13-01", "99999999999d"])
def test_a_bad_since_is_a_usage_error(config: Path, since: str) -> None:
    r = invoke("usage", "--since", since, "--config", str(config))
    assert r.exit_code == 2
    assert "--since" in r.stderr


def test_parse_since() -> None:
    now = datetime(2026, 11, 26, 15, 30, tzinfo=UTC).timestamp()
    assert parse_since("1d", now) == datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert parse_since("7d", now) == datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    assert parse_since("2026-01-02", now) == datetime(2026, 1, 2, tzinfo=UTC).timestamp()


def test_budget_set_show_and_refusal_exit_3(fleet: Fleet, config: Path) -> None:
    c = ("--config", str(config))
    r = invoke(
        "budget", "set", "openai", "--daily", "5", "--monthly", "50", "--alerts", "90,50", *c
    )
    assert r.exit_code == 0, r.stderr
    assert "daily $5.00, monthly $50.00, alerts at 50%, 90%" in r.stdout
    assert ask(config, "openai").exit_code == 0

    shown = json.loads(invoke("budget", "show", "--json", *c).stdout)["budgets"]
    openai = next(b for b in shown if b["scope"] == "provider:openai")
    assert openai["source"] == "cli"
    assert openai["alert_percents"] == [50, 90]
    assert openai["daily"]["limit_usd"] == 5.0
    assert 0 < openai["daily"]["spent_usd"] < 0.01
    assert openai["daily"]["reserved_usd"] == 0
    assert openai["daily"]["left_usd"] == pytest.approx(5.0 - openai["daily"]["spent_usd"])
    assert openai["monthly"]["limit_usd"] == 50.0
    anthropic = next(b for b in shown if b["scope"] == "provider:anthropic")
    assert anthropic["source"] == "none"

    providers = json.loads(invoke("providers", "--json", *c).stdout)["providers"]
    by_id = {p["id"]: p for p in providers}
    assert by_id["openai"]["budget"]["daily"]["limit_usd"] == 5.0
    assert by_id["anthropic"]["budget"] is None
    assert "this month" in invoke("providers", *c).stdout

    # a limit below one request's worst case: refused before any call, exit 3, one line
    calls = fleet["openai"].calls
    assert invoke("budget", "set", "openai", "--daily", "0.000001", *c).exit_code == 0
    r = ask(config, "openai")
    assert r.exit_code == 3
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("polyroute: error: daily budget for provider:openai ($0.000001)")
    assert fleet["openai"].calls == calls
    # 'none' lifts the daily limit; the monthly one stays
    assert invoke("budget", "set", "openai", "--daily", "none", *c).exit_code == 0
    assert ask(config, "openai").exit_code == 0
    table = invoke("budget", "show", *c).stdout
    assert "$50.00" in table and "none" in table


def test_a_global_budget_in_the_config_applies_to_every_provider(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    config = write(tmp_path, fleet, "\n[budget]\ndaily_usd = 0.0000001\n")
    for provider in ("openai", "anthropic"):
        r = ask(config, provider)
        assert r.exit_code == 3, r.stderr
        assert "daily budget for global" in r.stderr
    shown = json.loads(invoke("budget", "show", "--json", "--config", str(config)).stdout)
    assert shown["budgets"][0]["scope"] == "global"
    assert shown["budgets"][0]["source"] == "config"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--daily", "1"], "no provider 'nope' to budget"),
        (["openai"], "give at least one of --daily, --monthly, --alerts"),
        (["openai", "--daily", "-1"], "must be 0 or more"),
        (["openai", "--daily", "lots"], "is not an amount"),
        (["openai", "--alerts", "50,150"], "percents are in (0, 100]"),
    ],
)
def test_bad_budget_set_is_exit_2(config: Path, args: list[str], message: str) -> None:
    r = invoke("budget", "set", *args, "--config", str(config))
    assert r.exit_code == 2
    assert message in r.stderr
