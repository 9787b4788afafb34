"""benchmark/_stats.py: per-pair figures and quality intervals."""

from __future__ import annotations

import math

import pytest

from benchmark.analysis_support import pair_samples, sample
from polyroute.benchmark._stats import (
    bootstrap_mean,
    percentile,
    quality,
    summarize,
    summarize_pair,
    wilson,
)


def test_percentile_interpolates_between_order_statistics() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0], 95) == 10.0
    assert percentile([0.0, 100.0], 95) == pytest.approx(95.0)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_wilson_matches_the_textbook_figures() -> None:
    # 8 passes in 10 (Newcombe 1998's method 3 gives 0.4902..0.9433)
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # every pass: the interval stays below 1 with few samples, reaches 1 at its top
    low, high = wilson(10, 10)
    assert high == pytest.approx(1.0)
    assert low == pytest.approx(0.7225, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0
    with pytest.raises(ValueError, match="no trials"):
        wilson(0, 0)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = [0.2, 0.5, 0.9, 0.7, 0.6, 0.8, 0.4, 1.0]
    first = bootstrap_mean(values)
    assert bootstrap_mean(values) == first  # deterministic
    mean = sum(values) / len(values)
    assert first[0] < mean < first[1]
    assert bootstrap_mean([0.5] * 5) == (0.5, 0.5)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean([])


def test_quality_uses_wilson_for_pass_fail_and_bootstrap_for_scores() -> None:
    q = quality(pair_samples("p", "m", "simple", n=10, passes=8))
    assert q is not None
    assert q.method == "wilson"
    assert q.score == 0.8
    assert q.n == 10
    assert (q.low, q.high) == pytest.approx(wilson(8, 10))
    g = quality(pair_samples("p", "m", "simple", n=10, scores=[0.5, 0.9]))
    assert g is not None
    assert g.method == "bootstrap"
    assert g.score == pytest.approx(0.7)
    assert g.low < 0.7 < g.high
    assert quality([]) is None
    assert quality([sample(score=None, passed=None)]) is None


def test_summary_of_a_pair() -> None:
    samples = [
        sample(latency_ms=1000, ttft_ms=100, completion_tokens=100, cost_usd=0.002, retries=1),
        sample(latency_ms=2000, ttft_ms=300, completion_tokens=100, cost_usd=0.004),
        sample(
            latency_ms=3000,
            ttft_ms=200,
            completion_tokens=100,
            cost_usd=0.006,
            passed=False,
            score=0.0,
        ),
        sample(ok=False, cost_usd=0.001, carbon_g=None),
    ]
    s = summarize_pair(samples)
    assert (s.provider, s.model, s.task_type, s.samples, s.ok) == (
        "openai",
        "gpt-4o-mini",
        "simple",
        4,
        3,
    )
    assert s.latency_p50_ms == 2000
    assert s.latency_p95_ms == pytest.approx(2900)
    assert s.latency_stddev_ms == pytest.approx(1000)
    assert s.ttft_p50_ms == 200
    assert s.output_tokens_per_s == pytest.approx(300 / 6)
    assert s.cost_usd_per_task == pytest.approx(0.012 / 4)  # the failed call cost nothing
    assert s.error_rate == 0.25
    assert s.retry_rate == 0.25
    assert s.carbon_g_per_task == pytest.approx(0.1)
    assert s.quality is not None
    assert s.quality.score == pytest.approx(2 / 3)
    d = s.as_dict()
    assert d["latency_ms"] == {
        "p50": 2000,
        "p95": pytest.approx(2900),
        "stddev": pytest.approx(1000),
    }
    assert d["ttft_ms"] == {"p50": 200}
    assert d["quality"]["score"] == pytest.approx(2 / 3)
    for key in (
        "provider",
        "model",
        "task_type",
        "samples",
        "output_tokens_per_s",
        "cost_usd_per_task",
        "error_rate",
        "retry_rate",
        "carbon_g_per_task",
    ):
        assert key in d


def test_a_pair_that_never_answered() -> None:
    s = summarize_pair([sample(ok=False, cost_usd=None, carbon_g=None)] * 3)
    assert s.error_rate == 1.0
    assert s.latency_p50_ms is s.ttft_p50_ms is s.output_tokens_per_s is None
    assert s.cost_usd_per_task is None  # unpriced
    assert s.carbon_g_per_task is None
    assert s.quality is None
    d = s.as_dict()
    assert d["quality"] == {"score": None, "low": None, "high": None, "n": 0, "method": None}
    assert math.isclose(summarize_pair([sample()]).latency_stddev_ms or 0.0, 0.0)
    with pytest.raises(ValueError, match="no samples"):
        summarize_pair([])


def test_summarize_groups_by_provider_model_and_task_type() -> None:
    samples = [
        *pair_samples("a", "m1", "simple", n=3),
        *pair_samples("b", "m2", "simple", n=4),
        *pair_samples("a", "m1", "complex", n=5),
    ]
    out = summarize(reversed(samples))
    assert [(s.provider, s.model, s.task_type, s.samples) for s in out] == [
        ("a", "m1", "complex", 5),
        ("b", "m2", "simple", 4),
        ("a", "m1", "simple", 3),
    ]
    assert summarize([]) == []
