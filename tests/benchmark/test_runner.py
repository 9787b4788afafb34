"""The bench engine on the simulators: ranking, the cost cap and its hold, resuming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from polyroute.benchmark import BenchStore, Suite, load_suite, summarize
from polyroute.benchmark._runner import Bench, RunHold, bench_pairs, compare, plan
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import BenchError, BudgetExceeded
from polyroute.ledger import GLOBAL, Ledger
from polyroute.testing import Fleet, Profile, script_fleet

SUITE = """
[[case]]
id = "capital"
task_type = "simple"
prompt = "What is the capital of France?"
expected_tokens = 10
reference = "Paris is the capital of France."
grader = { contains = "Paris" }

[[case]]
id = "sum"
task_type = "simple"
prompt = "What is 6 x 7?"
expected_tokens = 10
reference = "6 x 7 = 42"
grader = { numeric = { value = 42 } }

[[case]]
id = "explain"
task_type = "medium"
prompt = "Which header carries a bearer token?"
expected_tokens = 20
reference = "The Authorization header: Authorization: Bearer <token>."
grader = { contains = ["Authorization", "Bearer"] }
"""

TYPES = ("openai", "anthropic", "ollama")


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    return load_suite(str(path))


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(TYPES) as f:
        yield f


def make_pr(
    fleet: Fleet, tmp_path: Path, providers: dict[str, Any] | None = None, **sections: Any
) -> Polyroute:
    """A client of the fleet, one model per provider; ``providers``: fields to change."""
    settings = fleet.settings(
        storage={"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        router={"circuit_breaker": {"failure_threshold": 10_000}},
        **sections,
    )
    for pid, spec in settings["providers"].items():
        spec["models"] = spec["models"][:1]
        spec.update((providers or {}).get(pid, {}))
    pr = Polyroute(Config(validate(settings, "test"), "test", fleet.env()))

    async def no_sleep(_: float) -> None:
        return None

    pr.executor.sleep = no_sleep
    return pr


@pytest.fixture
async def pr(fleet: Fleet, tmp_path: Path) -> AsyncIterator[Polyroute]:
    p = make_pr(fleet, tmp_path)
    yield p
    await p.aclose()


async def test_a_bench_ranks_pairs_as_their_latency_errors_and_quality_dictate(
    fleet: Fleet, pr: Polyroute, suite: Suite
) -> None:
    script_fleet(
        fleet,
        {
            "openai": Profile(latency_s=0.1, quality=0.0, seed=1),
            "anthropic": Profile(latency_s=0.3, quality=1.0, seed=2),
            "ollama": Profile(error_rate=0.6, quality=0.5, seed=3),
        },
        suite.cases,
    )
    bench = Bench(pr)
    pairs = bench_pairs(pr)
    assert [p for p, _ in pairs] == list(TYPES)
    run = await bench.start([suite], pairs, runs=4, concurrency=6)
    outcome = await bench.execute(run, [suite])
    assert (outcome.measured, outcome.skipped, outcome.run.status) == (36, 0, "finished")

    samples = await BenchStore(pr.ledger).samples(run.id)
    assert len(samples) == 36 and {s.run_id for s in samples} == {run.id}
    by_pair = {}
    for s in summarize([s for s in samples if s.task_type == "simple"]):
        by_pair[s.provider] = s
    oa, an, ol = by_pair["openai"], by_pair["anthropic"], by_pair["ollama"]
    # latency: the scripted delay is a floor, and the order follows it
    assert an.latency_p50_ms is not None and an.latency_p50_ms >= 300
    assert oa.latency_p50_ms is not None and oa.latency_p50_ms >= 100
    assert (
        ol.latency_p50_ms is not None and ol.latency_p50_ms < oa.latency_p50_ms < an.latency_p50_ms
    )
    # errors (and the retries they cause) only where scripted
    assert oa.error_rate == an.error_rate == 0 and ol.error_rate > 0 and ol.retry_rate > 0
    failed = [s for s in samples if not s.ok]
    assert failed and all(s.provider == "ollama" and s.score is None for s in failed)
    assert all(
        (s.error or "").startswith(("InternalServerError", "AllProvidersFailed")) for s in failed
    )

    # quality
    def mean_score(provider: str) -> float:
        scores = [s.score for s in samples if s.provider == provider and s.score is not None]
        return sum(scores) / len(scores)

    assert mean_score("anthropic") == 1.0 > mean_score("ollama") > mean_score("openai") == 0.0
    # every sample is a metered, streamed request: in the ledger, with its time to first token
    report = await pr.ledger.usage(by="provider")
    assert sum(r.requests for r in report.rows) >= 36
    assert all(s.ttft_ms is not None and s.ttft_ms <= (s.latency_ms or 0) for s in samples if s.ok)
    assert all(s.cost_usd is not None for s in samples)  # every simulated model is priced
    # emissions: the ledger's estimate, where the model's size is known (gpt-4o-mini's is)
    answered = [s for s in samples if s.ok]
    assert all((s.carbon_g or 0) > 0 for s in answered if s.provider == "openai")
    assert all(s.carbon_g is None for s in answered if s.provider == "anthropic")


async def test_max_cost_stops_scheduling_before_the_run_overspends(
    fleet: Fleet, tmp_path: Path, suite: Suite
) -> None:
    # output at $1000/Mtok: an answer costs about $0.01, its worst case (256 tokens) $0.26
    pricey = {"provider_type": "openai", "input_usd_per_mtok": 0.0, "output_usd_per_mtok": 1000.0}
    pr = make_pr(fleet, tmp_path, models={"gpt-4o-mini": pricey}, budget={"daily_usd": 5.0})
    try:
        script_fleet(fleet, {"openai": Profile(quality=1.0)}, suite.cases)
        bench = Bench(pr)
        pairs = bench_pairs(pr, providers=["openai"])
        run = await bench.start([suite], pairs, runs=10, concurrency=1, max_cost_usd=0.30)
        outcome = await bench.execute(run, [suite])
        assert 0 < outcome.measured < 30 and outcome.skipped == 30 - outcome.measured
        assert outcome.run.status == "interrupted"  # resumable, with what the cap leaves
        report = await pr.ledger.usage(by="provider")
        assert 0 < report.total_cost_usd <= 0.30
        assert outcome.spent_usd == pytest.approx(report.total_cost_usd)
        [status] = [b for b in await pr.ledger.budgets() if b.scope == GLOBAL]
        assert status.daily.reserved_usd == 0  # the hold's remainder went back
    finally:
        await pr.aclose()


async def test_the_hold_keeps_max_cost_from_other_requests_and_gives_it_back(
    tmp_path: Path,
) -> None:
    from polyroute.ledger import BudgetLimits

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", budgets={GLOBAL: BudgetLimits(daily_usd=1.0)})
    try:
        hold = RunHold(ledger, 0.8)
        await hold.open()
        with pytest.raises(BudgetExceeded):  # someone else, while the run holds $0.80
            await ledger.reserve(provider="x", model="m", amount_usd=0.3, ts=_now())
        assert hold.fits(0.5) and not hold.fits(0.9) and not hold.fits(None)
        await hold.draw(0.5)  # a sample takes its worst case out of the hold ...
        assert hold.held_usd == pytest.approx(0.3)
        mine = await ledger.reserve(provider="x", model="m", amount_usd=0.5, ts=_now())
        hold.settle(0.5, 0.1)  # ... and costs less
        assert hold.committed_usd == pytest.approx(0.1) and hold.spent_usd == pytest.approx(0.1)
        with pytest.raises(BudgetExceeded):
            await ledger.reserve(provider="x", model="m", amount_usd=0.3, ts=_now())
        await hold.close()
        await ledger.run(lambda store: store.release([mine.id]))
        await ledger.reserve(provider="x", model="m", amount_usd=0.9, ts=_now())
    finally:
        await ledger.aclose()


async def test_a_hold_the_global_budget_cannot_take_refuses_the_run(tmp_path: Path) -> None:
    from polyroute.ledger import BudgetLimits

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", budgets={GLOBAL: BudgetLimits(daily_usd=1.0)})
    try:
        with pytest.raises(BudgetExceeded):
            await RunHold(ledger, 2.0).open()
        free = RunHold(Ledger.__new__(Ledger), None)  # no cap: nothing is held, anything fits
        assert free.fits(None) and free.fits(1e9)
    finally:
        await ledger.aclose()


async def test_an_interrupted_run_resumes_without_repeating_finished_samples(
    fleet: Fleet, pr: Polyroute, suite: Suite
) -> None:
    script_fleet(fleet, {t: Profile(quality=1.0) for t in TYPES}, suite.cases)
    pairs = bench_pairs(pr, models=["gpt-4o-mini", "claude-sonnet-4-6"])
    assert pairs == [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6")]
    seen: list[Any] = []
    bench = Bench(pr, progress=lambda s: seen.append(s) or (len(seen) == 5 and task.cancel()))
    run = await bench.start([suite], pairs, runs=2, concurrency=1)
    task = asyncio.create_task(bench.execute(run, [suite]))
    with pytest.raises(asyncio.CancelledError):
        await task
    store = BenchStore(pr.ledger)
    assert (await store.run(run.id)).status == "interrupted"
    first = await store.done(run.id)
    assert len(first) == 5

    resumed, suites = await Bench(pr).resume(run.id)
    assert resumed.status == "running" and [s.name for s in suites] == [suite.name]
    outcome = await Bench(pr).execute(resumed, suites)
    assert (outcome.measured, outcome.run.status) == (12 - 5, "finished")
    assert len(await store.done(run.id)) == 12
    assert sum(fleet[t].calls for t in ("openai", "anthropic")) == 12  # none measured twice


async def test_pairs_are_checked_by_name(pr: Polyroute) -> None:
    with pytest.raises(BenchError, match="--providers: no provider 'nope'"):
        bench_pairs(pr, providers=["nope"])
    with pytest.raises(BenchError, match="--models: no chosen provider serves 'gpt-9'"):
        bench_pairs(pr, models=["gpt-9"])
    with pytest.raises(BenchError, match="--runs must be 1 or more"):
        await Bench(pr).start([], [], runs=0)


def test_the_plan_interleaves_pairs_and_cases(suite: Suite) -> None:
    jobs = plan([suite], [("a", "m"), ("b", "n")], 2)
    assert [(j.pair[0], j.case.id, j.repeat) for j in jobs[:4]] == [
        ("a", "capital", 0),
        ("b", "capital", 0),
        ("a", "sum", 0),
        ("b", "sum", 0),
    ]
    assert len(jobs) == 12


def test_compare_lines_up_both_runs(pr: Polyroute) -> None:
    from benchmark.analysis_support import pair_samples

    now = summarize(pair_samples("openai", "gpt-4o-mini", "simple", n=5, latency_ms=100.0))
    before = summarize(pair_samples("openai", "gpt-4o-mini", "simple", n=5, latency_ms=150.0))
    [delta] = compare(now, before)
    row = delta.as_dict()
    assert row["latency_p50_ms"]["change"] == pytest.approx(-50.0)
    [only_before] = compare([], before)
    assert only_before.as_dict()["latency_p50_ms"]["run"] is None


def _now() -> float:
    import time

    return time.time()


JUDGED = """
[[case]]
id = "plan"
task_type = "complex"
prompt = "Plan the migration."
expected_tokens = 50
reference = "Test first, then move one module at a time."
grader = { judge = "anthropic/claude-sonnet-4-6", rubric = "names tests and small steps" }
"""


async def test_a_judge_grades_through_the_metered_path_and_its_failure_is_counted(
    fleet: Fleet, pr: Polyroute, tmp_path: Path
) -> None:
    path = tmp_path / "judged.toml"
    path.write_text(JUDGED)
    suite = load_suite(str(path))
    # anthropic answers the case and, as judge, marks every answer 7/10
    script_fleet(fleet, {"openai": Profile(), "anthropic": Profile(quality=0.7)}, suite.cases)
    bench = Bench(pr)
    run = await bench.start([suite], [("openai", "gpt-4o-mini")], runs=2, concurrency=1)
    outcome = await bench.execute(run, [suite])
    samples = await BenchStore(pr.ledger).samples(run.id)
    assert [(s.ok, s.score, s.passed, s.error) for s in samples] == [(True, 0.7, None, None)] * 2
    assert fleet["anthropic"].calls == 2  # one judge call per answer ...
    report = await pr.ledger.usage(by="provider")
    assert {r.key: r.requests for r in report.rows} == {"openai": 2, "anthropic": 2}  # ... metered
    assert outcome.spent_usd == pytest.approx(report.total_cost_usd)

    fleet["anthropic"].script.fail_always(400)
    run = await bench.start([suite], [("openai", "gpt-4o-mini")], runs=1, concurrency=1)
    outcome = await bench.execute(run, [suite])
    [sample] = await BenchStore(pr.ledger).samples(run.id)
    assert sample.ok and sample.score is None and sample.passed is None
    assert (sample.error or "").startswith("judge anthropic/claude-sonnet-4-6 failed: ")
    assert outcome.run.status == "finished"


async def test_unpriced_pairs_are_skipped_under_a_cost_cap_and_disabled_ones_refused(
    fleet: Fleet, tmp_path: Path, suite: Suite
) -> None:
    # mystery-1: a model the catalog has no price for, so its worst case is unbounded
    changes = {"openai": {"models": ["gpt-4o-mini", "mystery-1"]}, "ollama": {"enabled": False}}
    pr = make_pr(fleet, tmp_path, changes)
    try:
        script_fleet(fleet, {"openai": Profile()}, suite.cases)
        bench = Bench(pr)
        pairs = [("openai", "gpt-4o-mini"), ("openai", "mystery-1")]
        run = await bench.start([suite], pairs, runs=1, concurrency=2, max_cost_usd=1.0)
        outcome = await bench.execute(run, [suite])
        assert (outcome.measured, outcome.skipped) == (3, 3)
        done = await BenchStore(pr.ledger).done(run.id)
        assert {model for _, model, _, _ in done} == {"gpt-4o-mini"}

        with pytest.raises(BenchError, match="--providers: provider 'ollama' is disabled"):
            bench_pairs(pr, providers=["ollama"])
    finally:
        await pr.aclose()
