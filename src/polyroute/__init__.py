"""polyroute: use many LLM providers as one.

The public names below load on first use, so ``import polyroute`` stays fast::

    import polyroute

    async with polyroute.Polyroute.from_config() as pr:
        answer = await pr.complete("hello")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Polyroute": "polyroute.client",
    "Answer": "polyroute.client",
    "AnswerStream": "polyroute.client",
    "Config": "polyroute.config",
    "load_config": "polyroute.config",
    "Catalog": "polyroute.catalog",
    "Decision": "polyroute.router.decision",
    "Attempt": "polyroute.types",
    "Target": "polyroute.types",
    "ChatRequest": "polyroute.types",
    "ChatResponse": "polyroute.types",
    "EmbeddingRequest": "polyroute.types",
    "EmbeddingResponse": "polyroute.types",
    "ImagePart": "polyroute.types",
    "DocumentPart": "polyroute.types",
    "Alternative": "polyroute.types",
    "TokenLogprob": "polyroute.types",
    "Message": "polyroute.types",
    "ModelInfo": "polyroute.types",
    "TextPart": "polyroute.types",
    "ThinkingPart": "polyroute.types",
    "Reasoning": "polyroute.types",
    "Tool": "polyroute.types",
    "ToolCall": "polyroute.types",
    "Usage": "polyroute.types",
    "StreamEvent": "polyroute.events",
    "StreamStart": "polyroute.events",
    "TextDelta": "polyroute.events",
    "ThinkingDelta": "polyroute.events",
    "ToolCallDelta": "polyroute.events",
    "StreamEnd": "polyroute.events",
    "Provider": "polyroute.providers",
    "ProviderClient": "polyroute.providers",
    "HttpPool": "polyroute.providers",
    "PolyrouteError": "polyroute.errors",
    "ConfigError": "polyroute.errors",
    "ProviderError": "polyroute.errors",
    "SyncPolyroute": "polyroute.sync",
    "Routing": "polyroute.client",
    "RoutingContext": "polyroute.router.context",
    "Candidate": "polyroute.router.context",
    "Ranking": "polyroute.router.context",
    "Scored": "polyroute.router.context",
    "Strategy": "polyroute.router.context",
    "Excluded": "polyroute.types",
    "Ledger": "polyroute.ledger",
    "UsageRecord": "polyroute.ledger",
    "UsageReport": "polyroute.ledger",
    "BudgetLimits": "polyroute.ledger",
    "BudgetStatus": "polyroute.ledger",
    "EventHub": "polyroute.hub",
    "HubEvent": "polyroute.hub",
    "RequestSucceeded": "polyroute.hub",
    "RequestFailed": "polyroute.hub",
    "UsageRecorded": "polyroute.hub",
    "BudgetAlert": "polyroute.hub",
    "BudgetChanged": "polyroute.hub",
    "BudgetExceededEvent": "polyroute.hub",
    "RoutingDecision": "polyroute.hub",
    "Fallback": "polyroute.hub",
    "HealthChanged": "polyroute.hub",
    "BreakerChanged": "polyroute.hub",
    "BudgetExceeded": "polyroute.errors",
    "CredentialError": "polyroute.errors",
    "LedgerError": "polyroute.errors",
    "LedgerUnavailableError": "polyroute.errors",
    "AllProvidersFailedError": "polyroute.errors",
    "NoCandidateError": "polyroute.errors",
    "RoutingError": "polyroute.errors",
    "RateLimitedError": "polyroute.errors",
    "ProviderLimitError": "polyroute.errors",
    "UnknownKeyError": "polyroute.errors",
    "VirtualKey": "polyroute.ledger",
    "FusionResult": "polyroute.fusion",
    "FusionMetrics": "polyroute.fusion",
    "MemberResponse": "polyroute.fusion",
    "FusionError": "polyroute.errors",
    "NotEnoughAnswersError": "polyroute.errors",
    "FusionCostCapError": "polyroute.errors",
}
_RENAMED = {"load_config": "load"}

__all__ = [
    "AllProvidersFailedError",
    "Alternative",
    "Answer",
    "AnswerStream",
    "Attempt",
    "BreakerChanged",
    "BudgetAlert",
    "BudgetChanged",
    "BudgetExceeded",
    "BudgetExceededEvent",
    "BudgetLimits",
    "BudgetStatus",
    "Candidate",
    "Catalog",
    "ChatRequest",
    "ChatResponse",
    "Config",
    "ConfigError",
    "CredentialError",
    "Decision",
    "DocumentPart",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EventHub",
    "Excluded",
    "Fallback",
    "FusionCostCapError",
    "FusionError",
    "FusionMetrics",
    "FusionResult",
    "HealthChanged",
    "HttpPool",
    "HubEvent",
    "ImagePart",
    "Ledger",
    "LedgerError",
    "LedgerUnavailableError",
    "MemberResponse",
    "Message",
    "ModelInfo",
    "NoCandidateError",
    "NotEnoughAnswersError",
    "Polyroute",
    "PolyrouteError",
    "Provider",
    "ProviderClient",
    "ProviderError",
    "ProviderLimitError",
    "Ranking",
    "RateLimitedError",
    "Reasoning",
    "RequestFailed",
    "RequestSucceeded",
    "Routing",
    "RoutingContext",
    "RoutingDecision",
    "RoutingError",
    "Scored",
    "Strategy",
    "StreamEnd",
    "StreamEvent",
    "StreamStart",
    "SyncPolyroute",
    "Target",
    "TextDelta",
    "TextPart",
    "ThinkingDelta",
    "ThinkingPart",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "UnknownKeyError",
    "Usage",
    "UsageRecord",
    "UsageRecorded",
    "UsageReport",
    "VirtualKey",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'polyroute' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from polyroute.catalog import Catalog
    from polyroute.client import Answer, AnswerStream, Polyroute, Routing
    from polyroute.config import Config
    from polyroute.config import load as load_config
    from polyroute.errors import (
        AllProvidersFailedError,
        BudgetExceeded,
        ConfigError,
        CredentialError,
        FusionCostCapError,
        FusionError,
        LedgerError,
        LedgerUnavailableError,
        NoCandidateError,
        NotEnoughAnswersError,
        PolyrouteError,
        ProviderError,
        ProviderLimitError,
        RateLimitedError,
        RoutingError,
        UnknownKeyError,
    )
    from polyroute.events import (
        StreamEnd,
        StreamEvent,
        StreamStart,
        TextDelta,
        ThinkingDelta,
        ToolCallDelta,
    )
    from polyroute.fusion import FusionMetrics, FusionResult, MemberResponse
    from polyroute.hub import (
        BreakerChanged,
        BudgetAlert,
        BudgetChanged,
        BudgetExceededEvent,
        EventHub,
        Fallback,
        HealthChanged,
        HubEvent,
        RequestFailed,
        RequestSucceeded,
        RoutingDecision,
        UsageRecorded,
    )
    from polyroute.ledger import (
        BudgetLimits,
        BudgetStatus,
        Ledger,
        UsageRecord,
        UsageReport,
        VirtualKey,
    )
    from polyroute.providers import HttpPool, Provider, ProviderClient
    from polyroute.router.context import Candidate, Ranking, RoutingContext, Scored, Strategy
    from polyroute.router.decision import Decision
    from polyroute.sync import SyncPolyroute
    from polyroute.types import (
        Alternative,
        Attempt,
        ChatRequest,
        ChatResponse,
        DocumentPart,
        EmbeddingRequest,
        EmbeddingResponse,
        Excluded,
        ImagePart,
        Message,
        ModelInfo,
        Reasoning,
        Target,
        TextPart,
        ThinkingPart,
        TokenLogprob,
        Tool,
        ToolCall,
        Usage,
    )
