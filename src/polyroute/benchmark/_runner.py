"""The benchmark engine: every case N times on every (provider, model), metered.

Each sample is one streamed request pinned to its pair, sent through
:meth:`Polyroute.send_stream` like any other request: budgets hold, the ledger
records it, same-pair retries follow ``[router]``. Time to first token and
the whole answer's latency are measured around the stream; the answer is then
graded. A failure is a sample (``ok=False``), never the end of the run.
Samples are stored as they come, so an interrupted run resumes where it
stopped (:meth:`Bench.resume`).

``max_cost_usd`` is held against the global budget for the run's lifetime
(when one is set), so concurrent requests elsewhere cannot take it: each
sample draws its worst case from the hold just before it reserves that
worst case itself. A sample is scheduled only while its worst case (with a
judge's call) fits what the run has left; what the run did not use is
released at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyroute.benchmark._graders import JUDGE_PROMPT, Grade, JudgeGrader
from polyroute.benchmark._model import RunInfo, RunStatus, Sample, SampleKey
from polyroute.benchmark._store import BenchStore
from polyroute.benchmark._suite import Case, Suite, load_suites
from polyroute.errors import BenchError, PolyrouteError
from polyroute.events import TextDelta
from polyroute.types import ChatRequest, Message

if TYPE_CHECKING:
    from polyroute.client import Polyroute
    from polyroute.ledger import Ledger, Reservation
    from polyroute.ledger._store import Store

DEFAULT_RUNS = 10
DEFAULT_CONCURRENCY = 4
JUDGE_MAX_TOKENS = 512
HOLD_TTL_S = 30 * 86400.0
"""The run's hold lives as long as its process (its lease); this only bounds a forgotten one."""

Pair = tuple[str, str]
Progress = Callable[[Sample], None]


@dataclass(frozen=True, slots=True)
class Job:
    pair: Pair
    case: Case
    repeat: int

    @property
    def key(self) -> SampleKey:
        return (self.pair[0], self.pair[1], self.case.id, self.repeat)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`Bench.execute` did."""

    run: RunInfo
    measured: int
    """Samples taken (and stored) by this call."""
    skipped: int
    """Samples not taken: over ``max_cost_usd``, or unpriced under it."""
    spent_usd: float
    """What this call's samples and judge calls cost (known costs only)."""


def bench_pairs(
    pr: Polyroute, providers: Sequence[str] = (), models: Sequence[str] = ()
) -> list[Pair]:
    """The pairs to measure: every enabled provider's chat models, narrowed to
    ``providers`` and ``models``. :class:`BenchError` names an unknown or disabled
    provider, and a model no chosen provider serves."""
    from polyroute.router.targets import candidate_models

    settings = pr.config.settings
    for pid in providers:
        if pid not in settings.providers:
            raise BenchError(f"--providers: no provider {pid!r} in the config")
        if not settings.providers[pid].enabled:
            raise BenchError(f"--providers: provider {pid!r} is disabled")
    chosen = list(providers) or pr.config.enabled()
    pairs = [
        (pid, m) for pid in chosen for m in candidate_models(settings.providers[pid], pr.catalog)
    ]
    if models:
        served = {m for _, m in pairs}
        for m in models:
            if m not in served:
                raise BenchError(f"--models: no chosen provider serves {m!r}")
        pairs = [(pid, m) for pid, m in pairs if m in models]
    if not pairs:
        raise BenchError("no (provider, model) pair to measure: enable a provider that can chat")
    return pairs


def plan(suites: Sequence[Suite], pairs: Sequence[Pair], runs: int) -> list[Job]:
    """Every sample, interleaved (repeat, then case, then pair) so that a run stopped early
    (by ``max_cost_usd`` or an interrupt) has measured every pair about equally."""
    cases = [c for s in suites for c in s.cases]
    return [Job(pair, case, r) for r in range(runs) for case in cases for pair in pairs]


def request_of(case: Case, model: str) -> ChatRequest:
    system = (Message("system", case.system),) if case.system else ()
    return ChatRequest(
        model=model, messages=[*system, *case.messages], max_tokens=case.request_max_tokens
    )


def judge_request(case: Case, grader: JudgeGrader, answer: str) -> ChatRequest:
    prompt = JUDGE_PROMPT.format(
        task=case.task_text,
        reference=case.reference or "(none given)",
        rubric=grader.rubric,
        answer=answer,
    )
    return ChatRequest(
        model=grader.model,
        messages=[Message("user", prompt)],
        max_tokens=JUDGE_MAX_TOKENS,
        temperature=0.0,
    )


class RunHold:
    """The run's ``max_cost_usd``: what it may still commit, and the part of it held
    against the global budget. Committed = known costs + the worst case of calls in flight."""

    def __init__(self, ledger: Ledger, limit_usd: float | None) -> None:
        self.ledger = ledger
        self.limit_usd = limit_usd
        self.committed_usd = 0.0
        self.spent_usd = 0.0
        self._hold: Reservation | None = None
        self._held_usd = 0.0

    @property
    def held_usd(self) -> float:
        return self._held_usd

    async def open(self) -> None:
        """Hold the whole limit against the global budget (if one is set); raises
        :class:`BudgetExceeded` when that budget cannot take it."""
        from polyroute.ledger import GLOBAL

        if self.limit_usd is None or self.limit_usd <= 0:
            return
        ledger, amount = self.ledger, self.limit_usd
        await ledger.budgets()  # reads the budgets set with `polyroute budget set` afresh
        limits, _ = ledger.budget_scopes([GLOBAL])[GLOBAL]
        if limits.empty:
            return  # no global budget: nothing to keep from others; the run's cap still holds

        def hold(store: Store) -> Reservation:
            scoped = {GLOBAL: limits}
            return store.reserve(
                scoped, amount, time.time(), HOLD_TTL_S, "polyroute bench", ledger.lease_ttl_s
            )

        self._hold = await ledger.run(hold)
        self._held_usd = amount

    def fits(self, worst_usd: float | None) -> bool:
        """Whether a sample of this worst case may start (``None``: unbounded)."""
        if self.limit_usd is None:
            return True
        return worst_usd is not None and self.committed_usd + worst_usd <= self.limit_usd + 1e-12

    async def draw(self, worst_usd: float | None) -> None:
        """Commit a starting sample's worst case and give that much of the hold back to the
        budget, for the sample's own reservation to take."""
        self.committed_usd += worst_usd or 0.0
        give = min(self._held_usd, worst_usd or 0.0)
        if give > 0:
            await self._shrink(give)

    def settle(self, worst_usd: float | None, cost_usd: float | None) -> None:
        """A sample ended: its known cost replaces its worst case (an unknown cost keeps
        the worst case committed)."""
        if cost_usd is not None and worst_usd is not None:
            self.committed_usd += cost_usd - worst_usd
        self.spent_usd += cost_usd or 0.0

    async def close(self) -> None:
        """Release what is still held."""
        hold, self._hold = self._hold, None
        if hold is not None and hold.targets:
            await self.ledger.run(lambda store: store.release([hold.id]))
        self._held_usd = 0.0

    async def _shrink(self, usd: float) -> None:
        from polyroute.ledger._records import to_nusd

        hold = self._hold
        if hold is None or not hold.targets:
            return
        self._held_usd -= usd
        nusd = to_nusd(usd)

        def shrink(store: Store) -> None:
            from sqlalchemy import select, update

            from polyroute.ledger._schema import reservations, spend

            with store.write() as c:
                row = c.execute(
                    select(reservations.c.amount_nusd).where(reservations.c.id == hold.id)
                ).first()
                if row is None:  # swept (its process was taken for dead): nothing held
                    return
                give = min(nusd, int(row.amount_nusd))
                c.execute(
                    update(reservations)
                    .where(reservations.c.id == hold.id)
                    .values(amount_nusd=reservations.c.amount_nusd - give)
                )
                for scope, period in hold.targets:
                    c.execute(
                        update(spend)
                        .where(spend.c.scope == scope, spend.c.period == period)
                        .values(reserved_nusd=spend.c.reserved_nusd - give)
                    )

        await self.ledger.run(shrink)


class Bench:
    """Runs suites against pairs through ``pr`` and stores samples in ``store``."""

    def __init__(
        self, pr: Polyroute, store: BenchStore | None = None, *, progress: Progress | None = None
    ) -> None:
        self.pr = pr
        self.store = store or BenchStore(pr.ledger)
        self.progress = progress

    async def start(
        self,
        suites: Sequence[Suite],
        pairs: Sequence[Pair],
        *,
        runs: int = DEFAULT_RUNS,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_cost_usd: float | None = None,
    ) -> RunInfo:
        """Record a new run (nothing measured yet); :meth:`execute` measures it."""
        if runs < 1:
            raise BenchError("--runs must be 1 or more")
        if concurrency < 1:
            raise BenchError("--concurrency must be 1 or more")
        return await self.store.start_run(
            suites=[s.name for s in suites],
            runs=runs,
            concurrency=concurrency,
            pairs=pairs,
            max_cost_usd=max_cost_usd,
        )

    async def resume(self, run_id: int) -> tuple[RunInfo, list[Suite]]:
        """An earlier run, ``running`` again, with its suites loaded as they are now."""
        run = await self.store.run(run_id)
        suites = load_suites(run.suites)
        for pid, _ in run.pairs:
            if pid not in self.pr.config.settings.providers:
                raise BenchError(f"run {run_id} measured provider {pid!r}, not in this config")
        return await self.store.finish(run.id, "running"), suites

    async def execute(
        self, run: RunInfo, suites: Sequence[Suite], *, max_cost_usd: float | None = None
    ) -> Outcome:
        """Measure what ``run`` has not stored yet, within ``max_cost_usd`` (default: what
        the run's own cap leaves after its stored samples). An interrupt (cancel, Ctrl-C)
        keeps what finished, marks the run ``interrupted`` and re-raises."""
        done = await self.store.done(run.id)
        todo = [j for j in plan(suites, run.pairs, run.runs) if j.key not in done]
        if max_cost_usd is None:
            max_cost_usd = _left(run.max_cost_usd, await self._spent(run))
        budget = RunHold(self.pr.ledger, max_cost_usd)
        await budget.open()
        measured = skipped = 0
        semaphore = asyncio.Semaphore(run.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        status: RunStatus = "interrupted"

        async def one(job: Job, worst: float | None) -> None:
            nonlocal measured
            try:
                sample, cost = await self._sample(run.id, job)
                budget.settle(worst, cost)
                await self.store.add([sample])
                measured += 1
                if self.progress is not None:
                    self.progress(sample)
            finally:
                semaphore.release()

        try:
            for i, job in enumerate(todo):
                await semaphore.acquire()
                worst = self._worst_case(job)
                if not budget.fits(worst):
                    semaphore.release()
                    if worst is None:  # unpriced under a cost cap: never bounded
                        skipped += 1
                        continue
                    skipped += len(todo) - i
                    break
                await budget.draw(worst)
                task = asyncio.create_task(one(job, worst))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
            status = "finished" if not skipped else "interrupted"
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await budget.close()
            run = await self.store.finish(run.id, status)
        return Outcome(run, measured, skipped, budget.spent_usd)

    async def _spent(self, run: RunInfo) -> float:
        """What the run's stored samples cost (a resumed run's cap counts them)."""
        if run.max_cost_usd is None:
            return 0.0
        return sum(s.cost_usd or 0.0 for s in await self.store.samples(run.id))

    def _worst_case(self, job: Job) -> float | None:
        from polyroute.ledger import worst_case_usd

        provider, model = job.pair
        ptype = self.pr.config.settings.providers[provider].type
        worst = worst_case_usd(self.pr.catalog.get(ptype, model), request_of(job.case, model))
        grader = job.case.grader
        if worst is None or not isinstance(grader, JudgeGrader):
            return worst
        spec = self.pr.config.settings.providers.get(grader.provider)
        if spec is None:
            return worst  # the judge call fails before any spend: a grading error
        longest = "x" * (4 * job.case.request_max_tokens)
        judge = worst_case_usd(
            self.pr.catalog.get(spec.type, grader.model), judge_request(job.case, grader, longest)
        )
        return None if judge is None else worst + judge

    async def _sample(self, run_id: int, job: Job) -> tuple[Sample, float | None]:
        """One measured sample, and what it cost in all (the answer and any judge call)."""
        provider, model = job.pair
        case = job.case
        started = time.perf_counter()
        ttft: float | None = None
        stream = None
        try:
            stream = self.pr.send_stream(request_of(case, model), provider=provider, model=model)
            async for event in stream:
                if ttft is None and isinstance(event, TextDelta) and event.text:
                    ttft = (time.perf_counter() - started) * 1000
            answer = stream.answer
            if answer is None:
                raise BenchError("the stream ended without an answer")
        except PolyrouteError as exc:
            attempts = stream.attempts if stream is not None else ()
            sample = Sample(
                run_id=run_id,
                case_id=case.id,
                task_type=case.task_type,
                provider=provider,
                model=model,
                repeat=job.repeat,
                ok=False,
                error=f"{type(exc).__name__}: {exc}",
                latency_ms=None,
                ttft_ms=None,
                prompt_tokens=0,
                completion_tokens=0,
                cost_usd=0.0 if self._priced(provider, model) else None,
                carbon_g=None,
                retries=max(0, len(attempts) - 1),
                score=None,
                passed=None,
            )
            return sample, None
        latency = (time.perf_counter() - started) * 1000
        judged: list[float | None] = []
        grade = await self._grade(answer.content, case, judged)
        sample = Sample(
            run_id=run_id,
            case_id=case.id,
            task_type=case.task_type,
            provider=provider,
            model=model,
            repeat=job.repeat,
            ok=True,
            error=grade.error,
            latency_ms=latency,
            ttft_ms=ttft,
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=answer.usage.completion_tokens,
            cost_usd=answer.cost_usd,
            carbon_g=self.pr.meter.carbon_g(provider, self._type(provider), model, answer.usage),
            retries=max(0, len(answer.attempts) - 1),
            score=grade.score,
            passed=grade.passed,
        )
        total = answer.cost_usd
        for cost in judged:
            total = None if total is None or cost is None else total + cost
        return sample, total

    async def _grade(self, content: str, case: Case, judged: list[float | None]) -> Grade:
        async def judge(provider: str, model: str, prompt: str) -> str:
            request = ChatRequest(
                model=model,
                messages=[Message("user", prompt)],
                max_tokens=JUDGE_MAX_TOKENS,
                temperature=0.0,
            )
            answer = await self.pr.send(request, provider=provider, model=model)
            judged.append(answer.cost_usd)
            return answer.content

        return await case.grader.grade(content, case, judge)

    def _type(self, provider: str) -> str:
        return self.pr.config.settings.providers[provider].type

    def _priced(self, provider: str, model: str) -> bool:
        return self.pr.catalog.get(self._type(provider), model).price is not None


def _left(limit: float | None, spent: float) -> float | None:
    return None if limit is None else max(0.0, limit - spent)


# -- comparing runs ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delta:
    """One (provider, model, task type) of this run against the same in a baseline run."""

    provider: str
    model: str
    task_type: str
    latency_p50_ms: tuple[float | None, float | None]
    cost_usd_per_task: tuple[float | None, float | None]
    quality: tuple[float | None, float | None]
    error_rate: tuple[float | None, float | None]

    def as_dict(self) -> dict[str, Any]:
        def pair(values: tuple[float | None, float | None]) -> dict[str, float | None]:
            now, before = values
            change = None if now is None or before is None else now - before
            return {"run": now, "baseline": before, "change": change}

        return {
            "provider": self.provider,
            "model": self.model,
            "task_type": self.task_type,
            "latency_p50_ms": pair(self.latency_p50_ms),
            "cost_usd_per_task": pair(self.cost_usd_per_task),
            "quality": pair(self.quality),
            "error_rate": pair(self.error_rate),
        }


def compare(current: Iterable[Any], baseline: Iterable[Any]) -> list[Delta]:
    """Each (provider, model, task type) of either run (``PairSummary`` values), with its
    figure in each (``None`` where a run did not measure it)."""
    now = {(s.provider, s.model, s.task_type): s for s in current}
    before = {(s.provider, s.model, s.task_type): s for s in baseline}
    out = []
    for key in [*now, *(k for k in before if k not in now)]:
        a, b = now.get(key), before.get(key)

        def figure(s: Any, name: str) -> float | None:
            if s is None:
                return None
            if name == "quality":
                return None if s.quality is None else float(s.quality.score)
            value = getattr(s, name)
            return None if value is None else float(value)

        out.append(
            Delta(
                *key,
                latency_p50_ms=(figure(a, "latency_p50_ms"), figure(b, "latency_p50_ms")),
                cost_usd_per_task=(figure(a, "cost_usd_per_task"), figure(b, "cost_usd_per_task")),
                quality=(figure(a, "quality"), figure(b, "quality")),
                error_rate=(figure(a, "error_rate"), figure(b, "error_rate")),
            )
        )
    return out
