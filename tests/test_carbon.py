"""Carbon accounting: one estimate (polyroute.carbon) used by the carbon strategy and by every
ledger record; ``usage`` totals it, with the savings against ``[router] carbon_baseline``;
migration 0009 back-fills an existing database from its tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, select

from polyroute.carbon import Baseline, baseline_of, estimate_g, grams_co2e, with_savings
from polyroute.cli import cli
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import ConfigError
from polyroute.ledger import Ledger, UsageRecord
from polyroute.ledger._journal import decode, encode
from polyroute.ledger._schema import MIGRATIONS, migrate, usage
from polyroute.ledger._store import Store
from polyroute.router import strategies
from polyroute.testing import Fleet
from polyroute.types import Message

T0 = 1_773_144_000.0  # 2026-03-10 12:00 UTC
INTENSITY = 300.0  # the openai provider's grid; ollama sets none (the default, 475)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic", "ollama"), reply="Counted in grams") as f:
        yield f


def settings(fleet: Fleet, **router: Any) -> dict[str, Any]:
    out = fleet.settings(router=router)
    out["providers"]["openai"]["carbon_intensity"] = INTENSITY
    return out


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[Ledger]:
    led = Ledger(db_url)
    yield led
    await led.aclose()


@pytest.fixture
async def pr(fleet: Fleet, ledger: Ledger) -> AsyncIterator[Polyroute]:
    sized = settings(fleet, strategy="carbon")
    sized["models"] = {"llama3.2:latest": {"provider_type": "ollama", "params_b": 3}}
    config = Config(validate(sized, "test"), "test", fleet.env())
    p = Polyroute(config, ledger=ledger)
    yield p
    await p.aclose()


async def rows(ledger: Ledger) -> list[dict[str, Any]]:
    await ledger.flush()

    def read(store: Store) -> list[dict[str, Any]]:
        with store.read() as c:
            return [dict(r) for r in c.execute(select(usage).order_by(usage.c.id)).mappings()]

    return await ledger.run(read)


def test_the_strategy_and_the_ledger_share_one_estimate() -> None:
    assert strategies.grams_co2e is grams_co2e
    # 8B params, 1,000 tokens, 300 g/kWh: 0.02 J x 8 x 1,000 = 160 J = 0.0444 Wh -> 13.3 mg
    assert grams_co2e(8, 1000, 300) == pytest.approx(160 / 3.6e6 * 300)
    assert grams_co2e(8, 1000, None) == grams_co2e(8, 1000, 475)
    assert estimate_g(None, 1000, 300) is None and estimate_g(None, 0, 300) == 0.0


async def test_each_record_carries_what_the_carbon_strategy_estimates(
    pr: Polyroute, ledger: Ledger
) -> None:
    ctx = pr.context([Message.user("hi")], 16, {"priority": "carbon"})
    decision = pr.decide(ctx)
    params = pr.catalog.get(pr.config.settings.providers[decision.provider].type, decision.model)
    grid = pr.config.settings.providers[decision.provider].carbon_intensity
    assert params.params_b is not None
    tokens = ctx.prompt_tokens + ctx.output_tokens
    expected = grams_co2e(params.params_b, tokens, grid)
    assert f"~{expected:.3g} gCO2e for {tokens:,} tokens" in decision.reasoning
    await pr.complete("hi", provider="openai", model="gpt-4o-mini")  # 8B, on a 300 g grid
    await pr.complete("hi", provider="ollama", model="llama3.2:latest")  # 3B (config), default grid
    await pr.complete("hi", provider="anthropic")  # size unknown
    openai, ollama, anthropic = await rows(ledger)
    used = openai["prompt_tokens"] + openai["completion_tokens"]
    assert openai["carbon_g"] == pytest.approx(grams_co2e(8, used, INTENSITY))
    used = ollama["prompt_tokens"] + ollama["completion_tokens"]
    assert ollama["carbon_g"] == pytest.approx(grams_co2e(3, used, None))
    assert anthropic["carbon_g"] is None  # unknown, never 0


def record(provider: str, model: str, prompt: int, completion: int, carbon: float | None) -> Any:
    return UsageRecord(T0, provider, model, prompt, completion, carbon_g=carbon)


async def scripted(ledger: Ledger) -> None:
    ledger.record(record("ollama", "llama3.2", 1000, 500, grams_co2e(3, 1500, None)))
    ledger.record(record("ollama", "llama3.2", 300, 200, grams_co2e(3, 500, None)))
    ledger.record(record("openai", "gpt-4o-mini", 2000, 1000, grams_co2e(8, 3000, 300)))
    ledger.record(record("anthropic", "claude-haiku-4-5", 400, 100, None))  # unknown size
    await ledger.flush()


async def test_usage_totals_carbon_and_the_savings_against_a_baseline(ledger: Ledger) -> None:
    await scripted(ledger)
    report = await ledger.usage(by="provider")
    by = {r.key: r for r in report.rows}
    assert by["ollama"].carbon_g == pytest.approx(grams_co2e(3, 2000, None))
    assert by["anthropic"].carbon_g == 0 and by["anthropic"].carbon_tokens == 0
    actual = grams_co2e(3, 2000, None) + grams_co2e(8, 3000, 300)
    assert report.total_carbon_g == pytest.approx(actual)
    assert report.carbon_tokens == 5000  # the tokens with an estimate: what a baseline gets
    out = report.as_dict()
    assert out["total_carbon_g"] == pytest.approx(actual)
    assert "carbon_saved_g" not in out and "carbon_baseline" not in out

    big = Baseline("openai", "gpt-4o", 200, 300)
    saved = with_savings(report, big).as_dict()
    assert saved["carbon_baseline"] == "openai/gpt-4o"
    assert saved["carbon_saved_g"] == pytest.approx(grams_co2e(200, 5000, 300) - actual)
    small = with_savings(report, Baseline("ollama", "llama3.2", 3, None))
    assert small.carbon_saved_g is not None and small.carbon_saved_g < 0  # emitted more


def test_the_baseline_is_a_configured_provider_with_a_sized_model(fleet: Fleet) -> None:
    config = Config(validate(settings(fleet, carbon_baseline="openai"), "t.toml"), "t.toml", {})
    b = baseline_of(config, config.catalog())
    assert b == Baseline("openai", "gpt-4o-mini", 8, INTENSITY)  # its default model
    none = Config(validate(settings(fleet), "t.toml"), "t.toml", {})
    assert baseline_of(none, none.catalog()) is None
    with pytest.raises(ConfigError, match=r"t\.toml: router\.carbon_baseline: 'nobody'"):
        validate(settings(fleet, carbon_baseline="nobody"), "t.toml")
    unsized = Config(validate(settings(fleet, carbon_baseline="anthropic"), "t"), "t", {})
    with pytest.raises(ConfigError, match="no model of 'anthropic' has a known size"):
        baseline_of(unsized, unsized.catalog())


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_cli_usage_prints_the_savings_line_and_json_fields(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "u.db"

    async def prepare() -> None:
        led = Ledger(f"sqlite:///{db}")
        try:
            await scripted(led)
        finally:
            await led.aclose()

    asyncio.run(prepare())
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = tmp_path / "polyroute.toml"
    base = fleet.toml() + f'\n[storage]\nurl = "sqlite:///{db}"\n'
    path.write_text('[router]\ncarbon_baseline = "openai"\n\n' + base)
    actual = grams_co2e(3, 2000, None) + grams_co2e(8, 3000, 300)  # as recorded
    baseline = grams_co2e(8, 5000, None)  # openai's default model; the TOML sets no grid

    r = invoke("usage", "--json", "--config", str(path))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["carbon_baseline"] == "openai/gpt-4o-mini"
    assert out["total_carbon_g"] == pytest.approx(actual, rel=1e-5)
    assert out["carbon_saved_g"] == pytest.approx(baseline - actual, rel=1e-5)
    assert {row["provider"]: row["carbon_g"] for row in out["rows"]}["anthropic"] == 0

    text = invoke("usage", "--config", str(path))
    assert text.exit_code == 0, text.output
    pct = (baseline - actual) / baseline * 100
    assert f"({pct:.1f} %) against openai/gpt-4o-mini" in text.stdout
    assert "saved " in text.stdout and "gCO2e" in text.stdout

    path.write_text('[router]\ncarbon_baseline = "anthropic"\n\n' + base)
    bad = invoke("usage", "--config", str(path))
    assert bad.exit_code == 2 and "no model of 'anthropic' has a known size" in bad.stderr


def old_database(path: Path) -> None:
    """A database as release 0006 left it, with usage rows in it."""
    engine = create_engine(f"sqlite:///{path}")
    upto = [m for m in MIGRATIONS if m[0] <= "0006_usage_details"]
    with engine.begin() as conn:
        migrate(conn, tuple(upto))
        for model, prompt, completion in (
            ("gpt-4o-mini", 100, 50),
            ("llama3.2", 40, 0),
            ("gpt-4o-mini-2024-07-18", 10, 5),  # not a catalog id: size unknown, as when live
            ("claude-haiku-4-5", 30, 30),  # size unknown
            ("mystery", 0, 0),  # nothing used
        ):
            conn.exec_driver_sql(
                "INSERT INTO usage (ts, day, month, provider, model, prompt_tokens,"
                " completion_tokens, cached_tokens, cost_nusd, latency_ms, status) VALUES"
                f" ({T0}, '2026-03-10', '2026-03', 'p', '{model}', {prompt}, {completion},"
                " 0, 0, 1.0, 'ok')"
            )
    engine.dispose()


async def test_migration_0009_backfills_existing_rows_from_their_tokens(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    old_database(db)
    ledger = Ledger(f"sqlite:///{db}")
    try:
        got = {r["model"]: r["carbon_g"] for r in await rows(ledger)}
    finally:
        await ledger.aclose()
    assert got["gpt-4o-mini"] == pytest.approx(grams_co2e(8, 150, None))  # the default grid
    assert got["llama3.2"] == pytest.approx(grams_co2e(3, 40, None))
    assert got["gpt-4o-mini-2024-07-18"] is None
    assert got["claude-haiku-4-5"] is None and got["mystery"] == 0


def test_journal_lines_carry_carbon_and_lines_from_before_it_still_read() -> None:
    rec = UsageRecord(T0, "openai", "gpt-4o-mini", 10, 5, carbon_g=0.25)
    assert decode(encode((rec, None), 1)) == (1, (rec, None))
    line = json.loads(encode((rec, None), 2))
    del line[-2]  # a line written before 0009: no carbon_g
    _, (old, _) = decode(json.dumps(line))
    assert old.carbon_g is None and old.completion_tokens == 5
