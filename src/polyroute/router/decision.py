"""What a routing decision and an attempt look like (the JSON shapes of DESIGN.md §5)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, overload

from polyroute._frozen import fast_init
from polyroute.types import Attempt, Excluded, ExclusionKind, Target

__all__ = [
    "RECENT_DECISIONS",
    "Attempt",
    "Decision",
    "Excluded",
    "ExclusionKind",
    "Exclusions",
    "Routed",
    "Target",
]


class Exclusions(Sequence[Excluded]):
    """A decision's excluded pairs, in the order found. Some are made as found; others are
    rows with the function that makes theirs, called when the list is first read: a request
    whose filters rule out most of a large table pays for reason texts only if read."""

    __slots__ = ("_len", "_made", "_parts")

    def __init__(self, items: Sequence[Excluded] = ()) -> None:
        self._parts: list[Excluded | tuple[Sequence[int], Callable[[int], Excluded]]] = [*items]
        self._len = len(self._parts)
        self._made: tuple[Excluded, ...] | None = None

    def append(self, e: Excluded) -> None:
        self._parts.append(e)
        self._len += 1
        self._made = None

    def extend(self, items: Sequence[Excluded]) -> None:
        self._parts.extend(items)
        self._len += len(items)
        self._made = None

    def defer(self, rows: Sequence[int], make: Callable[[int], Excluded]) -> None:
        """``make(row)`` for each of ``rows``, when first read."""
        if rows:
            self._parts.append((rows, make))
            self._len += len(rows)
            self._made = None

    def _all(self) -> tuple[Excluded, ...]:
        if self._made is None:
            out: list[Excluded] = []
            for part in self._parts:
                if isinstance(part, Excluded):
                    out.append(part)
                else:
                    rows, make = part
                    out.extend(map(make, rows))
            self._made = tuple(out)
            self._parts = [*self._made]  # made once: later appends keep them
        return self._made

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> Excluded: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Excluded]: ...
    def __getitem__(self, i: int | slice) -> Excluded | Sequence[Excluded]:
        return self._all()[i]

    def __iter__(self) -> Iterator[Excluded]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Exclusions | tuple | list):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return f"Exclusions({list(self._all())!r})"


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    new: ClassVar[type[Decision]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    strategy: str
    provider: str
    model: str
    reasoning: str
    estimated_cost_usd: float | None
    fallbacks: Sequence[Target] = ()
    confidence: float = 1.0
    excluded: Sequence[Excluded] = ()
    cost_basis: str = ""
    """What the estimate assumed: "412 prompt tokens (estimated) + 500 output tokens
    (typical for medium)"."""

    @property
    def targets(self) -> list[Target]:
        """The winner, then the fallbacks, in order."""
        return [Target(self.provider, self.model), *self.fallbacks]

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "provider": self.provider,
            "model": self.model,
            "reasoning": self.reasoning,
            "estimated_cost_usd": self.estimated_cost_usd,
            "estimated_cost_basis": self.cost_basis,
            "fallbacks": [f.as_dict() for f in self.fallbacks],
            "confidence": self.confidence,
            "excluded": [e.as_dict() for e in self.excluded],
        }


RECENT_DECISIONS = 50
"""How many decisions ``Polyroute.recent`` keeps (the gateway's ``/router/state``)."""


@fast_init
@dataclass(frozen=True, slots=True)
class Routed:
    """A decision a request was sent with (``Polyroute.recent``)."""

    new: ClassVar[type[Routed]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    at: float
    """Unix time of the decision."""
    decision: Decision
    stream: bool
    virtual_key: str | None = None
    """The gateway key's id the request was billed to, if any."""
