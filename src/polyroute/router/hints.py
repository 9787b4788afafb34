"""Budget hints: what recent budget refusals tell routing.

A refusal speaks for its own request. All it says about the next one is how much its
budget had left (neither spent nor held): routing leaves a pair out only when even the
cheapest request it could take (one input and one output token at its prices) would not fit
in that. A large request refused by a budget with room left keeps nobody out; a refusal of
an unpriced model (no amount was asked) says nothing. The reservation at call time is what
enforces; a hint only spares calls bound to be refused, for :data:`HINT_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

from polyroute.errors import AllProvidersFailedError, BudgetExceeded

HINT_S = 10.0
"""How long a refusal's word on what is left holds (the budget may be raised, holds settle)."""


@dataclass(frozen=True, slots=True)
class Headroom:
    """What a budget had left when it refused, and the refusal, as the exclusion's reason."""

    left_usd: float
    reason: str


class BudgetHints:
    """The latest refusal per budget that routing reads: ``"*"`` for the global budget
    (every provider that costs money), else a provider id. Virtual keys' budgets are not
    hinted: a decision is not made for one key."""

    __slots__ = ("_clock", "_hints")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hints: dict[str, tuple[float, Headroom]] = {}

    def note(self, refusals: Iterable[BudgetExceeded]) -> None:
        for exc in refusals:
            if exc.requested_usd is None:
                continue
            kind, _, pid = exc.scope.partition(":")
            key = "*" if kind == "global" else pid if kind == "provider" else None
            if key is not None:
                self._hints[key] = (self._clock(), Headroom(exc.left_usd, f"over budget: {exc}"))

    def noting(self) -> BudgetHints:
        """A context that notes the budget refusals of a call that raises, before its error
        goes on (these hints themselves: no generator-based context per request)."""
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, BudgetExceeded):
            self.note([exc])
        elif isinstance(exc, AllProvidersFailedError):
            self.note(exc.refusals)

    def forget(self, budget: str) -> None:
        """``budget`` (``"*"``: the global one, else a provider id) changed: its hint goes."""
        self._hints.pop(budget, None)

    def headroom(self) -> Mapping[str, Headroom]:
        """The live hints (usually none: then a decision pays one call and no lookup)."""
        hints = self._hints
        if not hints:
            return {}
        now = self._clock()
        for key in [k for k, (at, _) in hints.items() if now - at >= HINT_S]:
            del hints[key]
        return {key: h for key, (_, h) in hints.items()}
