"""``polyroute bench``: the provider benchmark (DESIGN.md §5, §10)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from polyroute.cli._common import (
    EXIT_NO_PROVIDER,
    common_options,
    console,
    emit_json,
    json_option,
    run,
    state,
    usd_amount,
)

if TYPE_CHECKING:
    from polyroute.benchmark import BenchStore, RunInfo, Sample, Suite
    from polyroute.benchmark._runner import Bench, Delta, Outcome


def _names(value: str | None, option: str) -> list[str]:
    if value is None:
        return []
    names = [v.strip() for v in value.split(",")]
    if not all(names):
        raise click.BadParameter(f"{value!r}: an empty name in the list", param_hint=option)
    return names


def _max_cost(value: str | None) -> float | None:
    return None if value is None else usd_amount(value, option="--max-cost")


@click.command()
@click.argument("suites", nargs=-1, metavar="[SUITE]...")
@click.option(
    "--providers", metavar="A,B", help="Only these providers (default: every enabled one)."
)
@click.option("--models", metavar="M,N", help="Only these models.")
@click.option(
    "--runs", type=click.IntRange(min=1), help="Runs of each case per pair [default: 10]."
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), help="Samples in flight at once [default: 4]."
)
@click.option("--max-cost", metavar="USD", help="Spend at most this (held for the whole run).")
@click.option("--report", "report_dir", metavar="DIR", help="Write an HTML report with charts.")
@click.option("--resume", "resume_id", type=int, metavar="RUN", help="Continue an interrupted run.")
@click.option(
    "--compare", "compare_id", type=int, metavar="RUN", help="Compare with an earlier run."
)
@click.option(
    "--evaluate-routing",
    "evaluate",
    is_flag=True,
    help="Replay a stored run through each strategy: quality kept and cost saved against "
    "always using the best single pair.",
)
@click.option(
    "--run",
    "run_id",
    type=int,
    metavar="RUN",
    help="The run --evaluate-routing replays [default: the latest finished].",
)
@json_option
@common_options
def bench(
    suites: tuple[str, ...],
    providers: str | None,
    models: str | None,
    runs: int | None,
    concurrency: int | None,
    max_cost: str | None,
    report_dir: str | None,
    resume_id: int | None,
    compare_id: int | None,
    evaluate: bool,
    run_id: int | None,
    as_json: bool,
) -> None:
    """Benchmark providers: latency, TTFT, throughput, cost, errors and graded quality per
    task type. SUITE: a .toml or .jsonl file, or a built-in (simple, medium, complex,
    coding); none: every built-in."""
    if evaluate or run_id is not None:
        given = [
            name
            for name, value in (
                ("SUITE", suites),
                ("--providers", providers),
                ("--models", models),
                ("--runs", runs),
                ("--concurrency", concurrency),
                ("--max-cost", max_cost),
                ("--report", report_dir),
                ("--resume", resume_id),
                ("--compare", compare_id),
            )
            if value is not None and value != ()
        ]
        _evaluate_routing(evaluate, run_id, given, as_json)
    if resume_id is not None:
        given = [
            name
            for name, value in (
                ("SUITE", suites),
                ("--providers", providers),
                ("--models", models),
                ("--runs", runs),
                ("--concurrency", concurrency),
            )
            if value
        ]
        if given:
            raise click.UsageError(
                f"--resume continues run {resume_id} as it was started: {', '.join(given)} "
                "cannot be given with it"
            )
    provider_names, model_names = _names(providers, "--providers"), _names(models, "--models")
    cap = _max_cost(max_cost)
    config_path = state().config
    show_progress = not as_json and sys.stderr.isatty()

    async def main() -> int:
        from polyroute.benchmark import BenchStore, load_suites
        from polyroute.benchmark._runner import (
            DEFAULT_CONCURRENCY,
            DEFAULT_RUNS,
            Bench,
            bench_pairs,
        )
        from polyroute.client import Polyroute
        from polyroute.config import load

        pr = Polyroute(load(config_path))
        try:
            store = BenchStore(pr.ledger)
            if compare_id is not None:
                await store.run(compare_id)  # an unknown run: exit 2 before any call
            with _Bar(show_progress) as progress:
                engine = Bench(pr, store, progress=progress.advance)
                if resume_id is not None:
                    info, loaded = await engine.resume(resume_id)
                else:
                    loaded = load_suites(list(suites))
                    pairs = bench_pairs(pr, provider_names, model_names)
                    info = await engine.start(
                        loaded,
                        pairs,
                        runs=runs or DEFAULT_RUNS,
                        concurrency=concurrency or DEFAULT_CONCURRENCY,
                        max_cost_usd=cap,
                    )
                outcome = await _execute(engine, store, info, loaded, cap, progress)
            samples = await store.samples(info.id)
            baseline = None if compare_id is None else await store.samples(compare_id)
            return _show(outcome, samples, baseline, compare_id, report_dir, as_json)
        finally:
            await pr.aclose()

    run(main)


def _evaluate_routing(evaluate: bool, run_id: int | None, given: list[str], as_json: bool) -> None:
    """``--evaluate-routing [--run RUN]``: the replay of a stored run (benchmark/_learn.py)."""
    if not evaluate:
        raise click.UsageError("--run names the run that --evaluate-routing replays: add it")
    if given:
        raise click.UsageError(
            f"--evaluate-routing replays a stored run: {', '.join(given)} cannot be given with it"
        )
    config_path = state().config

    async def main() -> int:
        from polyroute.benchmark._learn import evaluate_stored, evaluation_table
        from polyroute.client import Polyroute
        from polyroute.config import load

        pr = Polyroute(load(config_path))
        try:
            evaluation = await evaluate_stored(pr, run_id)
        finally:
            await pr.aclose()
        if as_json:
            emit_json(evaluation.as_dict())
        else:
            console().print(evaluation_table(evaluation))
        return 0

    run(main)


async def _execute(
    engine: Bench,
    store: BenchStore,
    info: RunInfo,
    suites: list[Suite],
    cap: float | None,
    progress: _Bar,
) -> Outcome:
    from polyroute.benchmark._runner import plan

    total = len(plan(suites, info.pairs, info.runs))
    progress.start(total, len(await store.done(info.id)), info.id)
    try:
        return await engine.execute(info, suites, max_cost_usd=cap)
    except (asyncio.CancelledError, KeyboardInterrupt):
        progress.stop()
        click.echo(
            f"polyroute: bench run {info.id} interrupted; "
            f"`polyroute bench --resume {info.id}` continues it",
            err=True,
        )
        raise


def _show(
    outcome: Outcome,
    samples: list[Sample],
    baseline: list[Sample] | None,
    compare_id: int | None,
    report_dir: str | None,
    as_json: bool,
) -> int:
    from polyroute.benchmark import recommend, summarize
    from polyroute.benchmark._report import table, write_report
    from polyroute.benchmark._runner import compare

    info = outcome.run
    summaries = summarize(samples)
    advice = recommend(summaries)
    report = None
    if report_dir is not None:
        report = write_report(Path(report_dir), info, samples, summaries)
    deltas = None if baseline is None else compare(summaries, summarize(baseline))
    if as_json:
        data: dict[str, Any] = {
            "run_id": info.id,
            "suite": ",".join(info.suites),
            "runs": info.runs,
            "status": info.status,
            "measured": outcome.measured,
            "skipped": outcome.skipped,
            "spent_usd": outcome.spent_usd,
            "results": [s.as_dict() for s in summaries],
            "recommendations": advice,
            "report": None if report is None else str(report),
        }
        if deltas is not None:
            data["compare"] = {"run_id": compare_id, "rows": [d.as_dict() for d in deltas]}
        emit_json(data)
    else:
        out = console()
        out.print(table(info, summaries))
        for line in advice:
            out.print(f"• {line}", markup=False, highlight=False)
        if deltas is not None and compare_id is not None:
            _print_compare(out, info.id, compare_id, deltas)
        if outcome.skipped:
            click.echo(
                f"--max-cost: {outcome.skipped} samples not run (their worst case did not fit); "
                f"`polyroute bench --resume {info.id} --max-cost USD` runs them",
                err=True,
            )
        if report is not None:
            click.echo(f"report: {report}")
    if samples and not any(s.ok for s in samples):
        click.echo("polyroute: error: no sample was answered", err=True)
        return EXIT_NO_PROVIDER
    return 0


def _print_compare(out: Any, run_id: int, compare_id: int, deltas: list[Delta]) -> None:
    from polyroute.cli._common import table

    def cell(values: tuple[float | None, float | None], fmt: str) -> str:
        now, before = values
        if now is None or before is None:
            return "-" if now is None else format(now, fmt) + " (new)"
        return f"{now:{fmt}} ({now - before:+{fmt}})"

    rows = [
        [
            f"{d.provider}/{d.model}",
            d.task_type,
            cell(d.latency_p50_ms, ".0f"),
            cell(d.cost_usd_per_task, ".6f"),
            cell(d.quality, ".2f"),
            cell(d.error_rate, ".0%"),
        ]
        for d in deltas
    ]
    columns = ["pair", "task", "p50 ms", "cost/task USD", "quality", "errors"]
    table(f"run {run_id} against run {compare_id} (change)", columns, rows, out=out)


class _Bar:
    """The progress bar on stderr (none when ``--json`` or stderr is not a terminal)."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, total: int, done: int, run_id: int) -> None:
        if not self.show:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(f"bench run {run_id}", total=total, completed=done)

    def advance(self, _sample: Sample) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
