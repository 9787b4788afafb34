"""What a routing decision and an attempt look like (the JSON shapes of DESIGN.md §5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    """A (provider, model) pair: the unit of routing and of fallback."""

    provider: str
    model: str

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model}


@dataclass(frozen=True, slots=True)
class Excluded:
    provider: str
    model: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Decision:
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


@dataclass(frozen=True, slots=True)
class Attempt:
    provider: str
    model: str
    ok: bool
    latency_ms: float
    error: str | None = None
    error_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "ok": self.ok,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 1),
        }
