"""Stream events: what a streaming completion yields, one vendor-neutral union.

Every event has a ``kind`` literal, so ``match event.kind`` (or
``isinstance``) tells them apart and type checkers narrow on it::

    async for event in client.stream(request):
        match event:
            case TextDelta(text=text):
                print(text, end="")
            case StreamEnd(finish_reason=reason, usage=usage):
                ...

A well-formed stream is ``StreamStart``, then any number of ``ThinkingDelta``,
``TextDelta`` and ``ToolCallDelta``, then exactly one ``StreamEnd``. A stream that breaks off
raises :class:`polyroute.errors.StreamInterruptedError` instead of ending:
a truncated answer never looks complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from polyroute._frozen import fast_init
from polyroute.types import FinishReason, Usage


@fast_init
@dataclass(frozen=True, slots=True)
class StreamStart:
    id: str
    model: str
    kind: Literal["start"] = "start"


@fast_init
@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    kind: Literal["text"] = "text"


@fast_init
@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of the model's reasoning, never answer text; pieces with the same ``index``
    form one thinking block. ``signature`` (Anthropic's, sent last) must go back with the
    block unchanged; ``redacted``: ``text`` is the vendor's encrypted data, sent whole."""

    index: int
    text: str = ""
    signature: str | None = None
    redacted: bool = False
    kind: Literal["thinking"] = "thinking"


@fast_init
@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call; pieces with the same ``index`` belong together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    kind: Literal["tool_call"] = "tool_call"


@fast_init
@dataclass(frozen=True, slots=True)
class StreamEnd:
    finish_reason: FinishReason
    usage: Usage
    raw_finish_reason: str | None = None
    server_ms: float | None = None
    """Time the vendor says it spent, where it reports one (Ollama's ``total_duration``)."""
    stop_sequence: str | None = None
    """The stop sequence that ended the answer, where the vendor says which."""
    refusal: str | None = None
    """The model declined to answer (OpenAI's ``refusal``): why, whole."""
    kind: Literal["end"] = "end"


StreamEvent: TypeAlias = StreamStart | ThinkingDelta | TextDelta | ToolCallDelta | StreamEnd
