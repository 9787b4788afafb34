"""Response fusion: ask a panel of providers at once and fuse their answers (DESIGN.md §8).

Use it through the client::

    async with Polyroute.from_config() as pr:
        fused = await pr.fuse("What is 6 x 7?", providers=["openai", "anthropic", "google"])
        print(fused.result, fused.agreement, fused.total_cost_usd)

The pieces, each usable alone: :func:`comparison_key` (what an answer is
compared on: its final answer, or its normalised text), :func:`group_texts`
and :func:`group_vectors` (deterministic complete-link grouping by rapidfuzz
similarity or embedding cosine), :class:`Fuser` (the panel, the four methods,
early stop and the cost cap) and the result types.
"""

from polyroute.fusion._fuse import (
    MEMBER_CONFIDENCE,
    SYNTHESIS_INSTRUCTIONS,
    Fuser,
    early_stop_rule,
    member_confidence,
    synthesis_messages,
)
from polyroute.fusion._group import (
    Groups,
    complete_link,
    cosine,
    group_texts,
    group_vectors,
    largest,
    similarity,
)
from polyroute.fusion._normalize import (
    CONCLUSION_CHARS,
    MAX_FINAL_ANSWER_CHARS,
    SHORT_ANSWER_CHARS,
    canonical,
    comparison_key,
    extract_final_answer,
)
from polyroute.fusion._panel import (
    CANCELLED_EARLY,
    GUARD_GRACE_S,
    Caller,
    Outcome,
    ask_panel,
    named_panel,
    routed_panel,
)
from polyroute.fusion._result import (
    METHODS,
    AuxiliaryCall,
    FusionMethod,
    FusionMetrics,
    FusionResult,
    FusionTally,
    MemberResponse,
    band,
)
from polyroute.router.targets import resolve_target  # where "provider/model" is parsed

__all__ = [
    "CANCELLED_EARLY",
    "CONCLUSION_CHARS",
    "GUARD_GRACE_S",
    "MAX_FINAL_ANSWER_CHARS",
    "MEMBER_CONFIDENCE",
    "METHODS",
    "SHORT_ANSWER_CHARS",
    "SYNTHESIS_INSTRUCTIONS",
    "AuxiliaryCall",
    "Caller",
    "Fuser",
    "FusionMethod",
    "FusionMetrics",
    "FusionResult",
    "FusionTally",
    "Groups",
    "MemberResponse",
    "Outcome",
    "ask_panel",
    "band",
    "canonical",
    "comparison_key",
    "complete_link",
    "cosine",
    "early_stop_rule",
    "extract_final_answer",
    "group_texts",
    "group_vectors",
    "largest",
    "member_confidence",
    "named_panel",
    "resolve_target",
    "routed_panel",
    "similarity",
    "synthesis_messages",
]
