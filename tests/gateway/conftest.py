"""Fixtures: a fleet of simulated vendors and a gateway over it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.support import Gateway, start
from polyroute.testing import Fleet


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic")) as f:
        yield f


@pytest.fixture
def gateway(fleet: Fleet) -> Iterator[Gateway]:
    gw = start(fleet)
    yield gw
    gw.server.stop()
