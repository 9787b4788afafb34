"""Learned latencies age: a slow sample is not held against a pair for ever."""

from __future__ import annotations

import pytest

from polyroute.config import Config, validate
from polyroute.router._router import Router
from polyroute.router.context import RoutingContext
from polyroute.router.stats import LatencyStats
from polyroute.types import Message


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_without_time_passing_the_mean_is_the_plain_ewma() -> None:
    stats = LatencyStats(clock=Clock())
    stats.record("a", "x", 1_000.0)
    stats.record("a", "x", 100.0)
    assert stats.get("a", "x") == (pytest.approx(820.0), None, 2)


def test_one_sample_is_forgotten_after_one_half_life() -> None:
    clock = Clock()
    stats = LatencyStats(half_life_s=60.0, clock=clock)
    columns = stats.columns([("a", "x"), ("b", "x")])
    stats.record("a", "x", 9_000.0)  # a cold first call
    clock.now += 59.0
    assert stats.get("a", "x") == (9_000.0, None, 1)
    clock.now += 2.0
    assert stats.get("a", "x") == (None, None, 0)
    assert columns.latency == [None, None] and columns.samples == [0, 0]
    assert columns.span() is None and stats.snapshot() == {}


def test_well_measured_pairs_are_kept_longer_and_a_sample_after_a_quiet_spell_counts_more() -> None:
    clock = Clock()
    stats = LatencyStats(half_life_s=60.0, clock=clock)
    for _ in range(10):
        stats.record("a", "x", 500.0)
    clock.now += 180.0  # weight 5 (at most 1 / alpha) -> 0.625: still known
    assert stats.get("a", "x")[0] == 500.0
    clock.now += 20.0  # 3.33 half-lives: below one half
    assert stats.get("a", "x") == (None, None, 0)
    for _ in range(10):
        stats.record("a", "x", 500.0)
    clock.now += 60.0  # the past now weighs 0.8 / 2: the new sample moves the mean by 0.6
    stats.record("a", "x", 100.0)
    assert stats.get("a", "x")[0] == pytest.approx(500.0 - 0.6 * 400.0)


def test_refreshed_pairs_are_not_forgotten_on_their_first_schedule() -> None:
    clock = Clock()
    stats = LatencyStats(half_life_s=60.0, clock=clock)
    stats.record("a", "x", 100.0)
    for _ in range(30):
        clock.now += 30.0
        stats.record("a", "x", 100.0)
        assert stats.get("a", "x")[0] == 100.0
    assert len(stats._expiries) == 1  # one entry per pair, however many records


def test_a_slow_first_call_does_not_keep_a_provider_out_of_auto_for_ever() -> None:
    models = {
        "fast-cheap": {
            "provider_type": "openai",
            "quality": 0.8,
            "context_window": 100_000,
            "input_usd_per_mtok": 0.1,
            "output_usd_per_mtok": 0.4,
        },
        "pricey": {
            "provider_type": "anthropic",
            "quality": 0.8,
            "context_window": 100_000,
            "input_usd_per_mtok": 0.2,
            "output_usd_per_mtok": 0.8,
        },
    }
    providers = {
        "a": {"type": "openai", "api_key": "env:K", "models": ["fast-cheap"]},
        "b": {"type": "anthropic", "api_key": "env:K", "models": ["pricey"]},
    }
    router = {"balanced_weights": {"cost": 0.2, "quality": 0.3, "performance": 0.5}}
    config = Config(
        validate({"providers": providers, "models": models, "router": router}, "t"), "t", {"K": "x"}
    )
    clock = Clock()
    stats = LatencyStats(half_life_s=60.0, clock=clock)
    decider = Router(config, config.catalog(), stats)
    ctx = RoutingContext(messages=[Message.user("hi")], prompt_tokens=10, strategy="balanced")
    assert decider.decide(ctx).provider == "a"
    stats.record("a", "fast-cheap", 30_000.0)  # cold start
    stats.record("b", "pricey", 400.0)
    for _ in range(10):  # b serves for a while: its data stays fresh, a's one sample ages
        clock.now += 5.0
        stats.record("b", "pricey", 400.0)
    assert decider.decide(ctx).provider == "b"
    clock.now += 11.0  # a's sample is now over a half-life old: a is explored again
    assert decider.decide(ctx).provider == "a"
