"""``polyroute demo`` runs offline on the embedded default and shows every scene."""

from __future__ import annotations

from click.testing import CliRunner

from polyroute.cli import cli


def test_demo_runs_every_scene() -> None:
    r = CliRunner().invoke(cli, ["demo"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    for scene in (
        "1. One question to each vendor",
        "3. Failures become typed errors",
        "4. Routing",
        "5. Fallback",
        "6. Circuit breaker",
        "7. A budget holds under concurrency",
        "8. The usage ledger",
    ):
        assert scene in r.stdout, scene
    assert "refused: BudgetExceeded" in r.stdout
    assert "breaker open, retry in" in r.stdout
