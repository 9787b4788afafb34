"""What routing decides from: the request's context and the (provider, model) candidates.

These are plain values. The router (``router/_router.py``) builds candidates
from the config, catalog, learned latencies, breakers, health and budgets;
strategies (``router/strategies.py``) only rank them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, runtime_checkable

from polyroute._frozen import fast_init
from polyroute.catalog import CatalogModel
from polyroute.types import Capability, Message

Complexity = Literal["simple", "medium", "complex"]
BUILTIN_STRATEGIES = ("cost", "quality", "performance", "balanced", "carbon")

# Output tokens a request of each complexity typically produces, when it sets no max_tokens:
# the basis of the estimated cost a decision shows (the budget reserves the worst case).
TYPICAL_OUTPUT_TOKENS: dict[Complexity, int] = {"simple": 150, "medium": 500, "complex": 1500}

# The least catalog quality a model needs for each complexity (quality and carbon strategies).
QUALITY_FLOOR: dict[Complexity, float] = {"simple": 0.0, "medium": 0.6, "complex": 0.8}


@fast_init
@dataclass(frozen=True, slots=True)
class RoutingContext:
    """One request, as routing sees it."""

    new: ClassVar[type[RoutingContext]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    messages: Sequence[Message]
    prompt_tokens: int
    """Estimated input tokens."""
    max_tokens: int | None = None
    complexity: Complexity = "medium"
    strategy: str = "balanced"
    """A built-in name, an installed strategy's (``polyroute.strategies`` entry point) or
    ``"pkg.module:Class"``."""
    max_cost_usd: float | None = None
    max_latency_ms: float | None = None
    required: frozenset[Capability] = frozenset()
    providers: frozenset[str] | None = None
    """Only these provider ids (``None``: any enabled one)."""
    pinned: bool = False
    """The caller named the provider (not routing narrowing its choice, as fusion does)."""
    models: frozenset[str] | None = None
    """Only these models (``None``: any the providers serve)."""
    stream: bool = False
    """The answer streams: the performance strategy ranks by time to first token."""
    prompt_tokens_counted: bool = False
    """``prompt_tokens`` came from a real tokenizer rather than an estimate."""
    refused: Mapping[str, str] = field(default_factory=dict)
    """Providers whose adapter cannot carry a field the request sets, and why
    (:func:`polyroute.router.fields.refusals`): their pairs are excluded."""

    @property
    def output_tokens(self) -> int:
        """Expected output: ``max_tokens`` if set, else typical for the complexity."""
        return self.max_tokens or TYPICAL_OUTPUT_TOKENS[self.complexity]

    @property
    def needed_context(self) -> int:
        """Prompt plus the output asked for: what the context window must hold."""
        return self.prompt_tokens + (self.max_tokens or 0)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A (provider, model) pair that could serve the request, with what is known of it."""

    provider: str
    provider_type: str
    model: str
    entry: CatalogModel
    est_cost_usd: float | None
    """Estimated cost of this request here (``None``: unpriced)."""
    latency_ms: float | None = None
    """Learned from real traffic (an exponentially weighted mean); ``None``: no data yet."""
    ttft_ms: float | None = None
    samples: int = 0
    local: bool = False
    """Runs on this machine or network (Ollama): wins performance ties while nothing is learned."""
    carbon_intensity: float | None = None
    """gCO2e/kWh of the provider's electricity, from config."""
    fusion_weight: float = 1.0

    @property
    def quality(self) -> float:
        return self.entry.quality if self.entry.quality is not None else 0.5


@dataclass(frozen=True, slots=True)
class Scored:
    """A strategy's verdict on one candidate: higher ``score`` is better."""

    candidate: Candidate
    score: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ranking:
    """Candidates best first, and one line on why the first won."""

    ranked: Sequence[Scored]
    reasoning: str
    confidence: float = 1.0
    excluded: Sequence[tuple[Candidate, str]] = field(default_factory=tuple)
    """Candidates the strategy itself ruled out (e.g. below a quality floor), with why."""


@runtime_checkable
class Strategy(Protocol):
    """Ranks eligible candidates. Built-ins live in ``router/strategies.py``; a custom one
    is any class with this method, made with no arguments, named in config as
    ``"pkg.module:Class"`` or, declared under the ``polyroute.strategies`` entry point, by
    its entry point name."""

    name: str

    def rank(self, candidates: Sequence[Candidate], ctx: RoutingContext) -> Ranking: ...
