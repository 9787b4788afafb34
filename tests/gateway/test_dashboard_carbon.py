"""The dashboard's emissions card: the 30 days' gCO2e from ``/usage``, and what routing saved
against ``[router] carbon_baseline`` (or that none is set), as headless Chromium renders it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.support import ADMIN, Gateway, running
from gateway.test_dashboard import dom
from polyroute.carbon import grams_co2e
from polyroute.ledger import UsageRecord
from polyroute.testing import Fleet


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "ollama")) as f:
        yield f


def spent(gw: Gateway) -> float:
    """Two records of the day: 2,000 tokens through a 3B model, 1,000 through gpt-4o-mini."""
    now = time.time()
    small, mini = grams_co2e(3, 2000, None), grams_co2e(8, 1000, None)
    gw.pr.ledger.record(UsageRecord(now, "ollama", "llama3.2", 1500, 500, carbon_g=small))
    gw.pr.ledger.record(UsageRecord(now, "openai", "gpt-4o-mini", 800, 200, carbon_g=mini))
    asyncio.run(gw.pr.ledger.flush())
    return small + mini


def card(page: str) -> tuple[str, str]:
    total = re.search(r'<output id="carbon-total"[^>]*>([^<]*)</output>', page)
    note = re.search(r'<span class="note" id="carbon-note"[^>]*>([^<]*)</span>', page)
    assert total and note, page[:2000]
    return total.group(1), note.group(1)


def test_the_dashboard_shows_emissions_and_savings_against_the_baseline(
    fleet: Fleet, tmp_path: Path
) -> None:
    sections = {"router": {"carbon_baseline": "openai"}}
    with running(fleet, sections=sections, admin_key=ADMIN) as gw:
        actual = spent(gw)
        page = dom(tmp_path / "a", f"{gw.url}/#key={ADMIN}")
    baseline = grams_co2e(8, 3000, None)  # the same tokens through openai's gpt-4o-mini
    total, note = card(page)
    assert total == f"{actual * 1000:.2g} mg CO2e".replace("e+0", "")
    share = (baseline - actual) / baseline * 100
    assert (
        note
        == f"saved {(baseline - actual) * 1000:.2g} mg ({share:.1f} %) against openai/gpt-4o-mini"
    )
    assert re.search(r'id="carbon-total"[^>]*data-grams="0\.0', page)


def test_without_a_baseline_the_card_says_how_to_set_one(fleet: Fleet, tmp_path: Path) -> None:
    with running(fleet, admin_key=ADMIN) as gw:
        spent(gw)
        page = dom(tmp_path / "a", f"{gw.url}/#key={ADMIN}")
    total, note = card(page)
    assert total.endswith(" mg CO2e") and note == "no baseline set ([router] carbon_baseline)"


def test_usage_with_a_baseline_of_unknown_size_is_the_gateways_config_error(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # a compatible server's made-up model: no size the catalog knows
    mystery = {"type": "openai-compatible", "base_url": "http://127.0.0.1:9", "models": ["m1"]}
    sections = {"router": {"carbon_baseline": "mystery"}}
    with running(
        fleet, sections=sections, extra_providers={"mystery": mystery}, admin_key=ADMIN
    ) as gw:
        r = gw.http(authorization=f"Bearer {ADMIN}").get("/usage")
    assert r.status_code == 500 and "configuration" in r.json()["error"]["message"]
    assert "no model of 'mystery' has a known size" in caplog.text  # the operator's log says why
