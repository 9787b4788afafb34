"""USD amounts are bounded where they enter: a budget past $1 billion (its nano-dollars
would overflow the database's 64-bit integers) is refused by name, never a 500 later."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from polyroute.cli import cli
from polyroute.config import load
from polyroute.errors import ConfigError


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["budget", "set", "global", "--daily", "1e10"], "--daily"),
        (["budget", "set", "global", "--monthly", "9.3e9"], "--monthly"),
        (["budget", "set", "global", "--daily", "inf"], "--daily"),
        (["keys", "create", "--name", "ci", "--daily-usd", "1e10"], "--daily-usd"),
        (["keys", "create", "--name", "ci", "--monthly-usd", "1e19"], "--monthly-usd"),
    ],
)
def test_an_amount_past_the_maximum_is_exit_2_naming_the_option(
    args: list[str], option: str
) -> None:
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert option in r.stderr
    assert "up to 1,000,000,000" in r.stderr


def test_the_maximum_itself_is_accepted_and_works() -> None:
    r = invoke("budget", "set", "global", "--daily", "1e9")
    assert r.exit_code == 0, r.stderr
    r = invoke("budget", "show", "--json")
    assert r.exit_code == 0, r.stderr
    assert '"limit_usd": 1000000000.0' in r.stdout


@pytest.mark.parametrize("value", ["1e10", "-1", "nan"])
def test_a_config_budget_past_the_maximum_is_refused_by_name(tmp_path: Path, value: str) -> None:
    path = tmp_path / "polyroute.toml"
    path.write_text(f"[budget]\ndaily_usd = {value}\n")
    with pytest.raises(ConfigError, match=r"budget\.daily_usd"):
        load(path)
