"""What a request's ``model`` (and ``polyroute`` hints) select (DESIGN.md §9).

- ``"provider-id/model"``: pinned, when the first segment is a configured
  provider id; otherwise the whole string is a model name (names may contain
  slashes: ``meta-llama/Llama-3.3-70B``).
- a bare model name: routed among the providers that serve it.

A named model (pinned or bare) is not given a complexity estimate unless the
hints ask for one: the estimate only steers the choice of a model (``auto``),
and costs tens of microseconds a request. It counts as ``medium``.
- ``"auto"`` / ``"auto:<strategy>"``: routed by strategy among every served model;
  the request's needs become required capabilities (tools, vision, json), since
  the caller left the model to us.
- ``"fusion"`` / ``"fusion:<method>"``: a panel, fused.

A virtual key that lists models may use exactly those: a pin is allowed when
the key lists it or its bare model; ``auto`` routes among the bare models it
lists; fusion is refused to virtual keys (a panel cannot be billed to a key yet).
Strategies named by callers are the built-in ones and the configured one:
never an import path from a request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyroute._frozen import fast_init
from polyroute.errors import GatewayError
from polyroute.fusion import METHODS, FusionMethod
from polyroute.router.context import BUILTIN_STRATEGIES
from polyroute.router.decision import Target
from polyroute.router.targets import split_pin
from polyroute.types import Capability, ChatRequest, DocumentPart, ImagePart, JsonSchema

if TYPE_CHECKING:
    from polyroute.client import Polyroute, Routing
    from polyroute.gateway._auth import Caller
    from polyroute.gateway._wire import Hints
    from polyroute.ledger import VirtualKey

ALIASES = (
    "auto",
    *(f"auto:{s}" for s in BUILTIN_STRATEGIES),
    "fusion",
    *(f"fusion:{m}" for m in METHODS),
)
"""The routing aliases ``/v1/models`` lists."""


@fast_init
@dataclass(frozen=True, slots=True)
class Choice:
    """Where a request goes: routing options, or a fusion method (``fusion`` set)."""

    routing: Routing
    fusion: FusionMethod | None = None


def _needs(request: ChatRequest) -> set[Capability]:
    needs: set[Capability] = set()
    if request.tools:
        needs.add("tools")
    if request.response_format == "json":
        needs.add("json")
    if any(isinstance(p, ImagePart) for m in request.messages for p in m.parts):
        needs.add("vision")
    if any(isinstance(p, DocumentPart) for m in request.messages for p in m.parts):
        needs.add("pdf")
    if request.reasoning is not None:
        needs.add("reasoning")
    return needs


def _panel_fields(request: ChatRequest) -> tuple[tuple[str, bool], ...]:
    """The fields a fusion panel does not pass to its members (they get the messages and
    ``max_tokens`` alone), and whether ``request`` sets each."""
    return (
        ("n", request.n > 1),
        ("logprobs", request.logprobs),
        ("top_logprobs", request.top_logprobs is not None),
        ("seed", request.seed is not None),
        ("user", request.user is not None),
        ("metadata", request.metadata is not None),
        ("store", bool(request.store)),
        ("service_tier", request.service_tier is not None),
        ("presence_penalty", request.presence_penalty is not None),
        ("frequency_penalty", request.frequency_penalty is not None),
        ("top_k", request.top_k is not None),
        ("logit_bias", request.logit_bias is not None),
        ("temperature", request.temperature is not None),
        ("top_p", request.top_p is not None),
        ("stop", bool(request.stop)),
        ("response_format", request.response_format != "text"),
        ("tool_choice", request.tool_choice is not None),
        ("parallel_tool_calls", request.parallel_tool_calls is not None),
        ("reasoning", request.reasoning is not None),
    )


class Selector:
    """Turns a requested model name into routing options, checking it against the config
    and the caller's key."""

    def __init__(self, polyroute: Polyroute) -> None:
        self.pr = polyroute
        config = polyroute.config.settings
        self.strategies = frozenset((*BUILTIN_STRATEGIES, config.router.strategy))
        self._served: frozenset[str] | None = None

    @property
    def served(self) -> frozenset[str]:
        """The bare names of every chat model an enabled provider serves."""
        if self._served is None:
            self._served = frozenset(t.model for t in self.pr.router.pairs)
        return self._served

    def _strategy(self, name: str, where: str) -> str:
        if name not in self.strategies:
            known = ", ".join(sorted(self.strategies))
            raise GatewayError(f"{where}: unknown strategy {name!r} (known: {known})", param=where)
        return name

    def _hints(self, hints: Hints | None) -> Routing:
        routing: Routing = {}
        if hints is None:
            return routing
        if hints.priority is not None:
            routing["priority"] = self._strategy(hints.priority, "polyroute.priority")
        if hints.complexity is not None:
            routing["complexity"] = hints.complexity
        if hints.max_cost_usd is not None:
            routing["max_cost_usd"] = hints.max_cost_usd
        if hints.max_latency_ms is not None:
            routing["max_latency_ms"] = hints.max_latency_ms
        if hints.require:
            routing["require"] = hints.require
        return routing

    def pinned(self, model: str) -> Target | None:
        """``provider-id/model`` when the first segment is a configured provider id."""
        split = split_pin(model, self.pr.config.settings.providers)
        if split is None or not split[1]:
            return None
        pid, rest = split
        if not self.pr.config.settings.providers[pid].enabled:
            raise GatewayError(f"model {model!r}: provider {pid!r} is disabled", status=404)
        return Target(pid, rest)

    def chat(self, request: ChatRequest, hints: Hints | None, caller: Caller) -> Choice:
        model = request.model
        routing = self._hints(hints)
        key = caller.key
        head, colon, tail = model.partition(":")
        if head == "fusion" and (colon == "" or tail):
            return self._fusion(tail or None, request, caller, routing)
        if head == "auto" and (colon == "" or tail):
            if colon:
                routing["priority"] = self._strategy(tail, "model")
            needs = _needs(request) | set(routing.get("require", ()))
            if needs:
                routing["require"] = tuple(sorted(needs))
            if key is not None and key.models:
                allowed = sorted(m for m in self.served if key.allows(m))
                if not allowed:
                    raise GatewayError(
                        f"this key may use only {', '.join(key.models)}: name one", status=403
                    )
                routing["models"] = allowed
            return Choice(routing)
        target = self.pinned(model)
        if target is not None:
            _permit(key, model, target.model)
            if isinstance(request.response_format, JsonSchema):
                self._honours_schema(target)
            if request.reasoning is not None:
                self._reasons(target)
            routing["provider"], routing["model"] = target.provider, target.model
            routing.setdefault("complexity", "medium")
            return Choice(routing)
        if model not in self.served:
            raise GatewayError(
                f"unknown model {model!r}: GET /v1/models lists the served models and aliases",
                status=404,
                param="model",
            )
        _permit(key, model)
        routing["model"] = model
        routing.setdefault("complexity", "medium")
        return Choice(routing)

    def _fusion(
        self, method: str | None, request: ChatRequest, caller: Caller, routing: Routing
    ) -> Choice:
        """Fusion takes ``max_cost_usd`` of the hints (the panel's cost cap)."""
        if method is not None and method not in METHODS:
            raise GatewayError(
                f"unknown fusion method {method!r} (known: {', '.join(METHODS)})",
                status=404,
                param="model",
            )
        if caller.key is not None:
            raise GatewayError(
                "fusion is not available to virtual keys (a panel cannot be billed to one)",
                status=403,
            )
        if request.tools:
            raise GatewayError("fusion does not take tools", param="tools")
        if isinstance(request.response_format, JsonSchema):
            raise GatewayError(
                "fusion does not take response_format json_schema", param="response_format"
            )
        for name, given in _panel_fields(request):
            if given:
                raise GatewayError(f"fusion does not take {name}", param=name)
        chosen: FusionMethod = self.pr.config.settings.fusion.method
        for m in METHODS:  # narrowed to the literal type
            if m == method:
                chosen = m
        return Choice(routing, fusion=chosen)

    def _honours_schema(self, target: Target) -> None:
        """400 naming the field unless the pinned pair can answer in a JSON schema."""
        spec = self.pr.config.settings.providers[target.provider]
        if "json_schema" not in self.pr.catalog.get(spec.type, target.model).capabilities:
            raise GatewayError(
                f"{target.provider}/{target.model} cannot honour response_format json_schema "
                "(the catalog does not list capability json_schema for it)",
                param="response_format",
            )

    def _reasons(self, target: Target) -> None:
        """400 naming the field unless the pinned pair is a reasoning model."""
        spec = self.pr.config.settings.providers[target.provider]
        if "reasoning" not in self.pr.catalog.get(spec.type, target.model).capabilities:
            raise GatewayError(
                f"{target.provider}/{target.model} cannot honour reasoning "
                "(reasoning_effort, thinking or reasoning.effort): the catalog does not list "
                "capability reasoning for it",
                param="reasoning",
            )

    def embedding(self, model: str, caller: Caller) -> Target | None:
        """An embeddings request's pinned target, or ``None`` to use every provider that
        serves ``model``."""
        target = self.pinned(model)
        key = caller.key
        if target is not None:
            _permit(key, model, target.model)
            return target
        if not self.pr.embedding_targets(model):
            raise GatewayError(
                f"unknown embeddings model {model!r}: no enabled provider serves it",
                status=404,
                param="model",
            )
        _permit(key, model)
        return None


def _permit(key: VirtualKey | None, model: str, bare: str | None = None) -> None:
    """403 unless ``key`` (``None``: not a virtual key) may use ``model``, or, for a pin,
    the ``bare`` model it names."""
    if key is not None and not (key.allows(model) or (bare is not None and key.allows(bare))):
        raise GatewayError(f"this key may not use model {model!r}", status=403)
