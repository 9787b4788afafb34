"""What a fusion gives back (DESIGN.md §5 ``fuse`` shape), and the metrics kept across fusions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

FusionMethod: TypeAlias = Literal["majority", "weighted", "semantic", "synthesis"]
METHODS: tuple[FusionMethod, ...] = ("majority", "weighted", "semantic", "synthesis")

HIGH_AGREEMENT = 0.8
MEDIUM_AGREEMENT = 0.5


@dataclass(frozen=True, slots=True)
class MemberResponse:
    """One panel member's outcome.

    ``ok`` is true when the member gave a non-empty answer; otherwise ``error``
    says why (a provider error, a timeout, a budget refusal, an open breaker,
    ``cancelled`` by an early stop). ``confidence`` is the member's own
    (:func:`~polyroute.fusion.member_confidence`: 1.0 for a clean finish), 0 when
    it did not answer. ``group`` is the index of its answer group in
    :attr:`FusionResult.groups`, ``None`` without an answer.
    """

    provider: str
    model: str
    content: str
    confidence: float
    cost_usd: float | None
    """``None``: the model is unpriced. A failed call that used nothing costs 0."""
    ok: bool
    error: str | None = None
    latency_ms: float = 0.0
    group: int | None = None
    finish_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "content": self.content,
            "confidence": self.confidence,
            "cost_usd": self.cost_usd,
            "ok": self.ok,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 1),
            "group": self.group,
        }


@dataclass(frozen=True, slots=True)
class AuxiliaryCall:
    """A call a fusion made besides the panel: the synthesizer's, or the embeddings'."""

    provider: str
    model: str
    cost_usd: float | None
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class FusionResult:
    """A fused answer.

    - ``result``: the winning group's best answer (its highest-confidence member,
      the earliest in panel order on a tie); for ``synthesis``, the synthesizer's answer.
    - ``agreement``: the winning group's size / the number of answers. For
      ``synthesis`` there is no winning group: it is the largest answer group's
      (by the same grouping as ``majority``), a measure of how much the panel agreed.
    - ``confidence``: the winning group's agreement in the method's own terms: by
      count for ``majority``, ``semantic`` and ``synthesis`` (so equal to
      ``agreement``), by score for ``weighted`` (its share of the sum of
      ``fusion_weight`` x member confidence over all answers).
    - ``total_cost_usd``: every call the fusion made (members, synthesizer,
      embeddings); ``None`` if any of them is unpriced.
    """

    result: str
    method: FusionMethod
    confidence: float
    agreement: float
    total_cost_usd: float | None
    responses: Sequence[MemberResponse]
    groups: Sequence[Sequence[int]]
    """Answer groups as indices into ``responses``; ``winner`` indexes this."""
    winner: int | None
    """The winning group (``None`` for synthesis, which has none)."""
    min_agreement: float
    early_stopped: bool = False
    """Enough members agreed before the rest answered; the rest were cancelled."""
    synthesizer: AuxiliaryCall | None = None
    embeddings: AuxiliaryCall | None = None

    @property
    def answers(self) -> int:
        """How many members answered."""
        return sum(1 for r in self.responses if r.ok)

    @property
    def agreed(self) -> bool:
        """Whether ``agreement`` reached ``min_agreement`` (below it: treat with care)."""
        return self.agreement >= self.min_agreement

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "result": self.result,
            "method": self.method,
            "confidence": self.confidence,
            "agreement": self.agreement,
            "total_cost_usd": self.total_cost_usd,
            "responses": [r.as_dict() for r in self.responses],
            "answers": self.answers,
            "groups": [list(g) for g in self.groups],
            "min_agreement": self.min_agreement,
            "agreed": self.agreed,
            "early_stopped": self.early_stopped,
        }
        if self.synthesizer is not None:
            out["synthesizer"] = self.synthesizer.as_dict()
        if self.embeddings is not None:
            out["embeddings"] = self.embeddings.as_dict()
        return out


def band(agreement: float) -> Literal["high", "medium", "low"]:
    """``high`` from 0.8, ``medium`` from 0.5, else ``low``."""
    if agreement >= HIGH_AGREEMENT:
        return "high"
    return "medium" if agreement >= MEDIUM_AGREEMENT else "low"


@dataclass(frozen=True, slots=True)
class FusionMetrics:
    """Fusions made by one client so far (failed fusions are not counted)."""

    fusions: int = 0
    average_agreement: float | None = None
    high: int = 0
    """Fusions with agreement >= 0.8."""
    medium: int = 0
    """Agreement >= 0.5 and < 0.8."""
    low: int = 0
    average_cost_usd: float | None = None
    """Over the fusions whose cost is known (``None`` if there are none)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "fusions": self.fusions,
            "average_agreement": self.average_agreement,
            "agreement": {"high": self.high, "medium": self.medium, "low": self.low},
            "average_cost_usd": self.average_cost_usd,
        }


class FusionTally:
    """Accumulates :class:`FusionMetrics` (one per client: no module-level state)."""

    __slots__ = ("_agreement", "_bands", "_cost", "_costed", "_count")

    def __init__(self) -> None:
        self._count = 0
        self._agreement = 0.0
        self._cost = 0.0
        self._costed = 0
        self._bands = {"high": 0, "medium": 0, "low": 0}

    def add(self, result: FusionResult) -> None:
        self._count += 1
        self._agreement += result.agreement
        self._bands[band(result.agreement)] += 1
        if result.total_cost_usd is not None:
            self._cost += result.total_cost_usd
            self._costed += 1

    def snapshot(self) -> FusionMetrics:
        if not self._count:
            return FusionMetrics()
        return FusionMetrics(
            fusions=self._count,
            average_agreement=self._agreement / self._count,
            high=self._bands["high"],
            medium=self._bands["medium"],
            low=self._bands["low"],
            average_cost_usd=self._cost / self._costed if self._costed else None,
        )
