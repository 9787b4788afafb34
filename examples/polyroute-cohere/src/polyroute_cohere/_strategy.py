"""``frugal``: an example routing strategy shipped as a plugin (``polyroute.strategies``).

The cheapest priced pair first, ties to the better quality; unpriced pairs last (their
cost is unknown, not zero). Unlike the built-in ``cost`` strategy it has no quality floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from polyroute import Candidate, Ranking, RoutingContext, Scored


class FrugalStrategy:
    name: ClassVar[str] = "frugal"

    def rank(self, candidates: Sequence[Candidate], ctx: RoutingContext) -> Ranking:
        def key(c: Candidate) -> tuple[float, float]:
            cost = math.inf if c.est_cost_usd is None else c.est_cost_usd
            return (cost, -c.quality)

        ordered = sorted(candidates, key=key)
        ranked = [
            Scored(c, -key(c)[0], "unpriced" if c.est_cost_usd is None else "priced")
            for c in ordered
        ]
        if not ordered:
            return Ranking((), "frugal: no candidate")
        best = ordered[0]
        cost = "unpriced" if best.est_cost_usd is None else f"${best.est_cost_usd:.6f}"
        return Ranking(ranked, f"frugal: {best.provider}/{best.model} is the cheapest ({cost})")
