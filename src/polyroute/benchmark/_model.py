"""The benchmark's plain values: one sample, one run (shared by the engine, its store and
the analysis)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

RunStatus: TypeAlias = Literal["running", "finished", "interrupted"]
SampleKey: TypeAlias = tuple[str, str, str, int]
"""(provider, model, case_id, repeat): what a resumed run skips when it is already stored."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One run of one case on one (provider, model)."""

    run_id: int
    case_id: str
    task_type: str  # "simple" | "medium" | "complex" | "coding" | a suite's own
    provider: str
    model: str
    repeat: int  # 0 .. runs-1
    ok: bool  # the call answered
    error: str | None  # not ok: the call's error (class name: message); ok: why grading failed
    latency_ms: float | None  # whole answer
    ttft_ms: float | None  # first content token (the bench streams)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: (
        float | None
    )  # None: unpriced model; a failed call: 0 (a cut stream's bill is in the ledger)
    carbon_g: float | None  # from polyroute's carbon estimate; None when there is none
    retries: int  # same-pair retries the call needed
    score: float | None  # 0..1 from the grader; None when the call failed (or grading did)
    passed: bool | None  # pass/fail graders; None for graded scores (judge, python -> float)

    @property
    def key(self) -> SampleKey:
        return (self.provider, self.model, self.case_id, self.repeat)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One ``polyroute bench`` run: what it measured and how far it got."""

    id: int
    suites: tuple[str, ...]
    started_at: datetime
    finished_at: datetime | None
    runs: int
    concurrency: int
    pairs: tuple[tuple[str, str], ...]
    max_cost_usd: float | None
    status: RunStatus
