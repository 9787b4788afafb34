"""What every inbound wire format provides, and what they share.

An inbound format (``_openai.py``, ``_anthropic.py``) is a translation, like a
provider adapter but facing the other way: a caller's request body becomes an
:class:`Inbound` (our :class:`~polyroute.types.ChatRequest` and how to answer),
and our :class:`Reply`, stream events and :class:`Problem` become that API's
own JSON, SSE frames and error body. The endpoint code (``_chat.py``) is the
same for every format: it never branches on one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, TypeAlias

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from polyroute._frozen import fast_init
from polyroute.errors import GatewayError, JSONTooDeepError
from polyroute.events import StreamEvent
from polyroute.gateway._plain import NOT_SUPPORTED, refusal
from polyroute.providers import loads_bounded
from polyroute.types import (
    Alternative,
    Capability,
    ChatRequest,
    FinishReason,
    Part,
    TextPart,
    ThinkingPart,
    TokenLogprob,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    from polyroute.client import Answer

ProblemKind: TypeAlias = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "too_large",
    "budget",
    "rate_limit",
    "upstream",
    "timeout",
    "internal",
]
"""A refusal's family, independent of wire format; each format names it its own way."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A request that ends in an error: status, family, a message for the caller."""

    status: int
    kind: ProblemKind
    message: str
    param: str | None = None
    code: str | None = None
    """A finer, stable reason (``budget_exceeded``, ``model_not_found``...)."""
    retry_after: float | None = None
    """Seconds, for a ``retry-after`` header (upstream rate limits)."""


class Hints(BaseModel):
    """The body's optional ``polyroute`` object: routing hints (DESIGN.md §9)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: str | None = None
    complexity: Literal["simple", "medium", "complex", "auto"] | None = None
    max_cost_usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_latency_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    require: tuple[Capability, ...] = ()


MAX_TOKENS = 2**31 - 1
"""The largest token count a caller may ask for: no vendor takes more (Gemini's and
llama.cpp's are 32-bit), and the worst-case cost of more overflows the ledger's integers."""


class Body(BaseModel):
    """Base of inbound request models: every field, at any depth, is read or refused by
    name (DESIGN.md §9): an option dropped in silence would change the answer unseen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _null(value: Any) -> None:
    if value is not None and value != []:
        raise ValueError(NOT_SUPPORTED)


Null: TypeAlias = Annotated[None, BeforeValidator(_null)]
"""A vendor's field that polyroute does not carry, taken unset only (``null``, or an empty
list): SDKs dump their own response objects back with every field, unset ones as ``null``
(the anthropic SDK's ``block.model_dump()``: ``citations: null``); a value is refused by
name."""


@fast_init
@dataclass(frozen=True, slots=True)
class Inbound:
    """A parsed chat request: ours (``request.model`` is the name the caller asked for)."""

    new: ClassVar[type[Inbound]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    request: ChatRequest
    stream: bool
    hints: Hints | None = None
    include_usage: bool = False
    """OpenAI ``stream_options.include_usage``: a last chunk with the usage."""


@fast_init
@dataclass(frozen=True, slots=True)
class Reply:
    """A finished answer as the formats render it (a routed answer or a fusion)."""

    new: ClassVar[type[Reply]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    content: str
    model: str
    usage: Usage
    finish_reason: FinishReason | str = "stop"
    """One of :data:`~polyroute.types.FinishReason`'s values."""
    raw_finish_reason: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    stop_sequence: str | None = None
    """The stop sequence that ended the answer, where the upstream said which."""
    alternatives: Sequence[Alternative] = ()
    """With ``n > 1``: the other answers."""
    logprobs: Sequence[TokenLogprob] | None = None
    thinking: Sequence[ThinkingPart] = ()
    """The model's reasoning blocks, with their signatures."""
    refusal: str | None = None
    """The model declined to answer: why (OpenAI's ``refusal``)."""

    @classmethod
    def of(cls, answer: Answer) -> Reply:
        response = answer.response
        return cls.new(
            answer.content,
            answer.model,
            answer.usage,
            answer.finish_reason,
            None if response is None else response.raw_finish_reason,
            () if response is None else response.tool_calls,
            None if response is None else response.stop_sequence,
            alternatives=() if response is None else response.alternatives,
            logprobs=None if response is None else response.logprobs,
            thinking=() if response is None else response.thinking,
            refusal=None if response is None else response.refusal,
        )


class StreamEncoder(Protocol):
    """Our stream events as one API's SSE frames (bytes; empty when an event has none)."""

    def event(self, event: StreamEvent) -> bytes: ...

    def error(self, problem: Problem) -> bytes:
        """The frame that ends a stream that failed after its first token."""
        ...


class ChatFormat(Protocol):
    """One inbound API: parse its requests, render our answers and errors its way."""

    def parse(self, raw: bytes) -> Inbound:
        """Raises :class:`GatewayError` (400) for a body the API would refuse."""
        ...

    def render(self, reply: Reply) -> bytes: ...

    def encoder(self, inbound: Inbound, model: str) -> StreamEncoder: ...

    def error_body(self, problem: Problem) -> bytes: ...


_encode = msgspec.json.encode


def dumps(data: Any) -> bytes:
    """Compact JSON, UTF-8: msgspec's encoder (a tenth of the stdlib's cost on our bodies and
    SSE frames, ``bench/json_codecs.py``); a NaN or infinity is written ``null``, not the
    stdlib's ``NaN`` that JSON parsers refuse."""
    return _encode(data)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    payload = dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def invalid(exc: ValidationError, raw: bytes | None = None) -> GatewayError:
    """A pydantic refusal of the body ``raw`` as one 400 line in the caller's words: the
    field's path in that body (no union branch names), and what is wrong (``_plain``)."""
    return refusal(exc, raw)


def compact(parts: tuple[Part, ...]) -> str | tuple[Part, ...]:
    """A message's content parts, as one string when they are all text (without a cache
    breakpoint, which only a part can carry)."""
    if all(isinstance(p, TextPart) and p.cache_control is None for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return parts


def tool_arguments(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object (APIs that want one); text that is not a
    JSON object is kept whole under ``"arguments"`` rather than lost."""
    if not arguments.strip():
        return {}
    try:
        value = loads_bounded(arguments)
    except (ValueError, JSONTooDeepError):
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def new_id(prefix: str) -> str:
    """``prefix`` and 96 random bits, as the vendors' response and call ids look. Not a
    secret, so not from ``os.urandom``: a system call per request costs more here."""
    return f"{prefix}{random.getrandbits(96):024x}"
