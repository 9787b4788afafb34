"""BenchStore: runs and samples kept in the ledger's database."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyroute.benchmark import BenchStore, Sample
from polyroute.errors import UnknownRunError
from polyroute.ledger import Ledger


def sample(run_id: int, case: str, repeat: int, *, ok: bool = True) -> Sample:
    return Sample(
        run_id=run_id,
        case_id=case,
        task_type="simple",
        provider="openai",
        model="gpt-4o-mini",
        repeat=repeat,
        ok=ok,
        error=None if ok else "RateLimitError: slow down",
        latency_ms=12.5 if ok else None,
        ttft_ms=3.0 if ok else None,
        prompt_tokens=10,
        completion_tokens=5 if ok else 0,
        cost_usd=0.001 if ok else None,
        carbon_g=None,
        retries=1,
        score=1.0 if ok else None,
        passed=True if ok else None,
    )


async def test_runs_and_samples_round_trip_and_survive_a_reopen(db_url: str) -> None:
    url = db_url
    ledger = Ledger(url)
    try:
        store = BenchStore(ledger)
        assert await store.latest_run() is None
        run = await store.start_run(
            suites=["simple"],
            runs=2,
            concurrency=3,
            pairs=[("openai", "gpt-4o-mini")],
            max_cost_usd=0.5,
        )
        assert (run.status, run.runs, run.concurrency, run.max_cost_usd) == ("running", 2, 3, 0.5)
        assert run.pairs == (("openai", "gpt-4o-mini"),) and run.finished_at is None
        await store.add([sample(run.id, "a", 0), sample(run.id, "a", 1, ok=False)])
        await store.add([sample(run.id, "a", 1)])  # a retried sample replaces the failed one
        await store.finish(run.id, "interrupted")
    finally:
        await ledger.aclose()
    ledger = Ledger(url)
    try:
        store = BenchStore(ledger)
        again = await store.run(run.id)
        assert again.status == "interrupted" and again.finished_at is not None
        assert await store.done(run.id) == {
            ("openai", "gpt-4o-mini", "a", 0),
            ("openai", "gpt-4o-mini", "a", 1),
        }
        assert await store.samples(run.id) == [sample(run.id, "a", 0), sample(run.id, "a", 1)]
        second = await store.start_run(
            suites=["x.toml"], runs=1, concurrency=1, pairs=[], max_cost_usd=None
        )
        assert [r.id for r in await store.runs()] == [run.id, second.id]
        assert await store.latest_run() == second
    finally:
        await ledger.aclose()


async def test_an_unknown_run_is_its_own_error(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        store = BenchStore(ledger)
        with pytest.raises(UnknownRunError, match="no benchmark run 42"):
            await store.run(42)
        with pytest.raises(UnknownRunError):
            await store.samples(42)
        with pytest.raises(UnknownRunError):
            await store.finish(42, "finished")
    finally:
        await ledger.aclose()
