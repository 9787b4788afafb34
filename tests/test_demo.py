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
        "9. Fusion",
        "10. A benchmark",
        "11. The budget optimizer",
    ):
        assert scene in r.stdout, scene
    assert "refused: BudgetExceeded" in r.stdout
    assert "breaker open, retry in" in r.stdout
    scene = r.stdout[r.stdout.index("10. A benchmark") :]
    assert "bench run 1 (finished, 2 runs per case)" in scene and "• use " in scene
    fusion = r.stdout[r.stdout.index("9. Fusion") :]
    assert "majority: agreement 2/3 (0.67)" in fusion
    assert "so '41' wins with confidence 0.60" in fusion  # weighted flips the result
    rows = {line.split("│")[1].strip(): line for line in fusion.splitlines() if "│" in line}
    assert "The answer is 42." in rows["majority"] and "41" in rows["weighted"]
