"""What the fusion tests share: the panel, prices and the settings of a client on the fleet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyroute.client import Polyroute
from polyroute.testing import Fleet

PANEL = ["openai", "anthropic", "google"]
PRICE = (2.0, 8.0)  # USD per Mtok, input and output, for each simulator's first model

MakeClient = Callable[..., Polyroute]


def settings(fleet: Fleet, **fusion: Any) -> dict[str, Any]:
    """The fleet's config with ``[fusion]`` set and every chat model priced at PRICE."""
    s = fleet.settings(storage={"url": "sqlite://"}, fusion=fusion)
    s["models"] = {
        sim.models[0]: {
            "provider_type": t,
            "input_usd_per_mtok": PRICE[0],
            "output_usd_per_mtok": PRICE[1],
        }
        for t, sim in fleet.sims.items()
        if t != "ollama"
    }
    return s
