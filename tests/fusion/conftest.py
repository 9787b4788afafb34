"""Fusion tests: a fleet of simulators and clients on it, scripts reset after every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fusion.support import PANEL, MakeClient, settings
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.testing import Fleet


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic", "google", "mistral", "ollama")) as f:
        yield f


@pytest.fixture(autouse=True)
def _reset(fleet: Fleet) -> Iterator[None]:
    yield
    for sim in fleet.sims.values():
        sim.script.recover()
        sim.script.reply = None
        sim.script.latency_s = 0.0
        sim.script.embedding = None


@pytest.fixture
def answers(fleet: Fleet) -> None:
    """The issue's panel: "42", "42", "41"."""
    for pid, reply in zip(PANEL, ("42", "42", "41"), strict=True):
        fleet[pid].script.reply = reply


@pytest.fixture
async def make(fleet: Fleet) -> AsyncIterator[MakeClient]:
    """``make(weights={...}, providers={...}, **fusion)``: a client on the fleet (``router=``
    and ``[fusion]`` keys as keyword arguments); closed after the test."""
    made: list[Polyroute] = []

    def build(
        *,
        weights: dict[str, float] | None = None,
        providers: dict[str, dict[str, Any]] | None = None,
        router: dict[str, Any] | None = None,
        **fusion: Any,
    ) -> Polyroute:
        s = settings(fleet, **fusion)
        if router is not None:
            s["router"] = router
        for pid, w in (weights or {}).items():
            s["providers"][pid]["fusion_weight"] = w
        for pid, extra in (providers or {}).items():
            s["providers"][pid] = {**s["providers"].get(pid, {}), **extra}
        pr = Polyroute(Config(validate(s, "test"), "test", fleet.env()))
        made.append(pr)
        return pr

    yield build
    for pr in made:
        await pr.aclose()
