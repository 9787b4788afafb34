"""Samples made by hand for the analysis tests (stats, recommendations, report, learning)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from polyroute.benchmark import RunInfo, Sample


def sample(
    provider: str = "openai",
    model: str = "gpt-4o-mini",
    task_type: str = "simple",
    *,
    repeat: int = 0,
    case_id: str = "c1",
    ok: bool = True,
    latency_ms: float | None = 1000.0,
    ttft_ms: float | None = 200.0,
    prompt_tokens: int = 20,
    completion_tokens: int = 50,
    cost_usd: float | None = 0.001,
    carbon_g: float | None = 0.1,
    retries: int = 0,
    score: float | None = 1.0,
    passed: bool | None = True,
    run_id: int = 1,
) -> Sample:
    return Sample(
        run_id=run_id,
        case_id=case_id,
        task_type=task_type,
        provider=provider,
        model=model,
        repeat=repeat,
        ok=ok,
        error=None if ok else "UpstreamError: 500",
        latency_ms=latency_ms if ok else None,
        ttft_ms=ttft_ms if ok else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens if ok else 0,
        cost_usd=cost_usd if ok else (0.0 if cost_usd is not None else None),
        carbon_g=carbon_g,
        retries=retries,
        score=score if ok else None,
        passed=passed if ok else None,
    )


def pair_samples(
    provider: str,
    model: str,
    task_type: str,
    *,
    n: int = 10,
    passes: int | None = None,
    scores: Iterable[float] | None = None,
    failures: int = 0,
    latency_ms: float = 1000.0,
    cost_usd: float | None = 0.001,
    case_ids: Iterable[str] | None = None,
    run_id: int = 1,
) -> list[Sample]:
    """``n`` samples of one pair and task type: ``passes`` of them pass (pass/fail grading), or
    graded ``scores``; the last ``failures`` of them failed calls. Cases cycle through
    ``case_ids`` (default: one case per sample)."""
    graded = list(scores) if scores is not None else None
    cases = list(case_ids) if case_ids is not None else [f"{task_type}-{i}" for i in range(n)]
    out = []
    for i in range(n):
        ok = i < n - failures
        if graded is not None:
            score, passed = graded[i % len(graded)], None
        else:
            p = i < (passes if passes is not None else n)
            score, passed = (1.0 if p else 0.0), p
        out.append(
            sample(
                provider,
                model,
                task_type,
                case_id=cases[i % len(cases)],
                repeat=i // len(cases),
                ok=ok,
                latency_ms=latency_ms + i,
                cost_usd=cost_usd,
                score=score,
                passed=passed,
                run_id=run_id,
            )
        )
    return out


def run_info(run_id: int = 1, status: str = "finished") -> RunInfo:
    started = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    return RunInfo(
        id=run_id,
        suites=("simple", "medium"),
        started_at=started,
        finished_at=started if status == "finished" else None,
        runs=10,
        concurrency=4,
        pairs=(("openai", "gpt-4o-mini"), ("ollama", "qwen2.5-coder")),
        max_cost_usd=None,
        status=status,  # type: ignore[arg-type]
    )
