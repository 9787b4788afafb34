"""What a bench run measured, as routing reads it (``[router] quality_source = "bench"``).

Plain values, built once from a finished run (:mod:`polyroute.benchmark._learn`)
and handed to the router when it is built: quality per (provider, model, task
type), pooled per (model, task type) for providers the run did not measure, and
latency per (provider, model) to seed the learned latencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeasuredQuality:
    score: float
    """Mean grade of the answers, 0..1."""
    samples: int
    """Graded answers behind ``score``."""


@dataclass(frozen=True, slots=True)
class MeasuredLatency:
    latency_ms: float
    """Median total latency of the answered calls."""
    ttft_ms: float | None
    """Median time to first token."""
    samples: int


@dataclass(frozen=True, slots=True)
class Measured:
    """One bench run's figures, keyed as routing looks them up."""

    run_id: int
    quality: Mapping[tuple[str, str, str], MeasuredQuality]
    """By (provider, model, task type)."""
    model_quality: Mapping[tuple[str, str], MeasuredQuality]
    """By (model, task type): every provider's answers for that model pooled."""
    latency: Mapping[tuple[str, str], MeasuredLatency]
    """By (provider, model)."""

    def quality_of(self, provider: str, model: str, task_type: str) -> MeasuredQuality | None:
        """The pair's measured quality, else its model's on other providers (``None``: the
        run has no graded answer of this model for this task type)."""
        q = self.quality.get((provider, model, task_type))
        return q if q is not None else self.model_quality.get((model, task_type))

    def basis(self, q: MeasuredQuality) -> str:
        """How a decision names a measured quality: ``quality 0.92 from bench run 7, 40 samples``."""
        return f"quality {q.score:.2f} from bench run {self.run_id}, {q.samples} samples"
