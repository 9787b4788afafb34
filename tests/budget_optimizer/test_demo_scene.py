"""The demo's optimizer scene: a proposal on the simulators, every reason shown."""

from __future__ import annotations

from rich.console import Console

from polyroute.cli._demo import _optimizer_scene
from polyroute.testing import Fleet


async def test_the_demo_proposes_a_reallocation() -> None:
    console = Console(record=True, width=250)
    with Fleet() as fleet:
        await _optimizer_scene(console, fleet, fleet.settings(storage={"url": "sqlite://"}))
    out = console.export_text()
    assert "11. The budget optimizer" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert (
        "failing since" in rows["mistral"]
        and "spent this month and the minimum" in (rows["mistral"])
    )
    assert "the minimum reserve" in rows["ollama"]
    assert "of the forecast need" in rows["openai"]
    shares = [float(line.split("│")[3].strip().lstrip("$")) for line in rows.values()]
    assert round(sum(shares), 2) == 150.0
