"""Per (provider, model, task type) figures of a bench run: pure functions over samples.

Latency, time to first token and throughput count answered calls only; cost,
carbon, error and retry rates count every sample. Quality is the mean grade of
answered calls with a 95 % interval: Wilson's score interval when every grade
is pass/fail, else a percentile bootstrap of the mean (seeded: the same samples
always give the same interval).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from polyroute.benchmark._model import Sample

Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20260
QualityMethod = Literal["wilson", "bootstrap"]


@dataclass(frozen=True, slots=True)
class Quality:
    """A mean grade in 0..1 with its 95 % interval, over ``n`` graded answers."""

    score: float
    low: float
    high: float
    n: int
    method: QualityMethod


@dataclass(frozen=True, slots=True)
class PairSummary:
    """What a run measured of one (provider, model) on one task type."""

    provider: str
    model: str
    task_type: str
    samples: int
    ok: int
    """Samples whose call answered."""
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_stddev_ms: float | None
    ttft_p50_ms: float | None
    output_tokens_per_s: float | None
    """Completion tokens over the seconds spent answering them (answered calls)."""
    cost_usd_per_task: float | None
    """Mean cost of a sample (``None``: unpriced)."""
    error_rate: float
    retry_rate: float
    """Share of samples whose call needed at least one same-pair retry."""
    carbon_g_per_task: float | None
    quality: Quality | None
    """``None``: no answer was graded."""
    prompt_tokens: float
    """Mean per sample."""
    completion_tokens: float

    @property
    def pair(self) -> str:
        return f"{self.provider}/{self.model}"

    def as_dict(self) -> dict[str, Any]:
        """One row of the bench JSON's ``results`` (DESIGN.md §5), with a few extra fields."""
        q = self.quality
        return {
            "provider": self.provider,
            "model": self.model,
            "task_type": self.task_type,
            "samples": self.samples,
            "latency_ms": {
                "p50": self.latency_p50_ms,
                "p95": self.latency_p95_ms,
                "stddev": self.latency_stddev_ms,
            },
            "ttft_ms": {"p50": self.ttft_p50_ms},
            "output_tokens_per_s": self.output_tokens_per_s,
            "cost_usd_per_task": self.cost_usd_per_task,
            "error_rate": self.error_rate,
            "quality": {
                "score": q.score if q else None,
                "low": q.low if q else None,
                "high": q.high if q else None,
                "n": q.n if q else 0,
                "method": q.method if q else None,
            },
            "retry_rate": self.retry_rate,
            "carbon_g_per_task": self.carbon_g_per_task,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def wilson(passes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion of ``passes`` in ``n`` trials."""
    if n <= 0:
        raise ValueError("wilson interval of no trials")
    p = passes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """The percentile bootstrap 95 % interval of the mean of ``values`` (seeded)."""
    if not values:
        raise ValueError("bootstrap of no values")
    n = len(values)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return percentile(means, 2.5), percentile(means, 97.5)


def quality(samples: Iterable[Sample]) -> Quality | None:
    """The mean grade of the graded samples, with its 95 % interval."""
    graded = [s for s in samples if s.score is not None]
    if not graded:
        return None
    scores = [s.score for s in graded if s.score is not None]
    mean = sum(scores) / len(scores)
    if all(s.passed is not None for s in graded):
        passes = sum(1 for s in graded if s.passed)
        low, high = wilson(passes, len(graded))
        return Quality(passes / len(graded), low, high, len(graded), "wilson")
    low, high = bootstrap_mean(scores)
    return Quality(mean, low, high, len(scores), "bootstrap")


def summarize_pair(samples: Sequence[Sample]) -> PairSummary:
    """The figures of one group of samples (one provider, model and task type)."""
    if not samples:
        raise ValueError("summary of no samples")
    first = samples[0]
    n = len(samples)
    answered = [s for s in samples if s.ok]
    latencies = [s.latency_ms for s in answered if s.latency_ms is not None]
    ttfts = [s.ttft_ms for s in answered if s.ttft_ms is not None]
    timed = [s for s in answered if s.latency_ms]
    seconds = sum((s.latency_ms or 0.0) for s in timed) / 1000
    tokens = sum(s.completion_tokens for s in timed)
    costs = [s.cost_usd for s in samples if s.cost_usd is not None]
    carbon = [s.carbon_g for s in samples if s.carbon_g is not None]
    return PairSummary(
        provider=first.provider,
        model=first.model,
        task_type=first.task_type,
        samples=n,
        ok=len(answered),
        latency_p50_ms=percentile(latencies, 50) if latencies else None,
        latency_p95_ms=percentile(latencies, 95) if latencies else None,
        latency_stddev_ms=(
            statistics.stdev(latencies) if len(latencies) > 1 else 0.0 if latencies else None
        ),
        ttft_p50_ms=percentile(ttfts, 50) if ttfts else None,
        output_tokens_per_s=tokens / seconds if seconds > 0 else None,
        # a pair is priced when any of its samples is: unpriced samples then count as free
        cost_usd_per_task=sum(costs) / n if costs else None,
        error_rate=(n - len(answered)) / n,
        retry_rate=sum(1 for s in samples if s.retries > 0) / n,
        carbon_g_per_task=sum(carbon) / len(carbon) if carbon else None,
        quality=quality(answered),
        prompt_tokens=sum(s.prompt_tokens for s in samples) / n,
        completion_tokens=sum(s.completion_tokens for s in samples) / n,
    )


def summarize(samples: Iterable[Sample]) -> list[PairSummary]:
    """One summary per (provider, model, task type), in the order each first appears."""
    groups: dict[tuple[str, str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.provider, s.model, s.task_type), []).append(s)
    return [summarize_pair(g) for g in groups.values()]
