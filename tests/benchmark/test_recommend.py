"""benchmark/_recommend.py: the Pareto front and the plain-words advice."""

from __future__ import annotations

from benchmark.analysis_support import pair_samples
from polyroute.benchmark._recommend import pareto, recommend, recommendations
from polyroute.benchmark._stats import summarize


def _pairs(*specs: tuple[str, str, str, int, float, float | None]) -> list:
    samples = []
    for provider, model, task, passes, latency, cost in specs:
        samples += pair_samples(
            provider, model, task, n=40, passes=passes, latency_ms=latency, cost_usd=cost
        )
    return summarize(samples)


def test_front_keeps_pairs_no_other_beats_on_cost_and_quality() -> None:
    summaries = _pairs(
        ("ollama", "qwen", "simple", 30, 300, 0.0),  # free, 0.75
        ("openai", "mini", "simple", 34, 900, 0.001),  # 0.85
        ("mistral", "small", "simple", 32, 800, 0.002),  # dearer and worse than mini: off
        ("openai", "gpt-4o", "simple", 38, 1500, 0.01),  # 0.95
        ("anthropic", "opus", "simple", 38, 2500, 0.05),  # as good, dearer: off
        ("x", "unpriced", "simple", 39, 500, None),  # best quality, unknown cost: last
        ("openai", "gpt-4o", "complex", 20, 1500, 0.02),
    )
    front = pareto(summaries)
    assert [s.pair for s in front["simple"]] == [
        "ollama/qwen",
        "openai/mini",
        "openai/gpt-4o",
        "x/unpriced",
    ]
    assert [s.pair for s in front["complex"]] == ["openai/gpt-4o"]
    # costs ascend and qualities strictly rise along the front
    q = [s.quality.score for s in front["simple"] if s.quality]
    assert q == sorted(q)
    assert len(set(q)) == len(q)


def test_a_cheaper_faster_pair_within_the_interval_is_recommended() -> None:
    summaries = _pairs(
        ("ollama", "qwen2.5-coder", "simple", 37, 400, 0.0),  # 0.925
        ("openai", "gpt-4o", "simple", 38, 1280, 0.004),  # 0.95, interval ~0.83-0.99
    )
    (r,) = recommendations(summaries)
    assert r.best.pair == "openai/gpt-4o"
    assert r.alternative is not None
    assert r.alternative.pair == "ollama/qwen2.5-coder"
    assert r.text.startswith(
        "use ollama/qwen2.5-coder for simple tasks: 3.1x faster, free, quality 0.93 vs 0.95"
    )
    assert "openai/gpt-4o" in r.text


def test_no_alternative_when_cheaper_pairs_fall_outside_the_interval() -> None:
    summaries = _pairs(
        ("ollama", "qwen", "complex", 10, 300, 0.0),  # 0.25: far below
        ("openai", "gpt-4o", "complex", 39, 1500, 0.02),
    )
    (line,) = recommend(summaries)
    assert line.startswith("use openai/gpt-4o for complex tasks: quality 0.97 (")
    assert "$0.02 per task" in line
    assert "p50 1,520 ms" in line


def test_a_cheaper_pair_says_how_much_cheaper() -> None:
    summaries = _pairs(
        ("openai", "mini", "medium", 36, 1500, 0.001),
        ("openai", "gpt-4o", "medium", 38, 1500, 0.01),
    )
    (line,) = recommend(summaries)
    assert line.startswith("use openai/mini for medium tasks: 10.0x cheaper, quality 0.90 vs 0.95")


def test_errors_show_and_ungraded_task_types_get_no_advice() -> None:
    samples = pair_samples("a", "m", "simple", n=10, failures=2)
    samples += pair_samples("b", "m", "medium", n=4, failures=4)
    lines = recommend(summarize(samples))
    assert len(lines) == 1
    assert "20% errors" in lines[0]
    assert pareto(summarize(samples))["medium"] == []
    assert recommend([]) == []
