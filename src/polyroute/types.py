"""The shared vocabulary: messages, requests, responses, usage, model info.

Plain frozen dataclasses with slots: they sit on the hot path of every request
(translation to and from each vendor's wire format), so they cost no
validation at construction. Validation happens at the edges: config loading,
the CLI, the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias, get_args

from polyroute._frozen import fast_init

MAX_USD = 1_000_000_000.0
"""The largest amount a budget, key limit or other USD input may be: $1 billion (the
ledger's 10^18 nano-dollars, well inside a signed 64-bit integer). Here, not in the ledger,
so the CLI and config can check amounts without loading it."""

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]

FinishReason: TypeAlias = Literal[
    "stop", "length", "tool_calls", "content_filter", "error", "other"
]
"""Why generation ended, one vocabulary for every vendor.

- ``stop``: natural end or a stop sequence.
- ``length``: hit ``max_tokens`` or the context window.
- ``tool_calls``: the model asked to call tools.
- ``content_filter``: the vendor withheld or cut the answer for safety.
- ``error``: the vendor reported an error in-band.
- ``other``: anything else the vendor reports (kept in ``raw_finish_reason``).
"""

Capability: TypeAlias = Literal[
    "chat",
    "stream",
    "tools",
    "vision",
    "json",
    "json_schema",
    "pdf",
    "reasoning",
    "caching",
    "embeddings",
]
CAPABILITIES: tuple[Capability, ...] = get_args(Capability)


@fast_init
@dataclass(frozen=True, slots=True)
class CacheControl:
    """A prompt-cache breakpoint (Anthropic's ``cache_control``): the prompt up to and
    including the block it marks is cached, for 5 minutes or an hour."""

    ttl: Literal["5m", "1h"] = "5m"


@fast_init
@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    cache_control: CacheControl | None = None
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image, by URL or inline base64 data (``data`` without the ``data:`` prefix)."""

    url: str | None = None
    data: str | None = None
    media_type: str = "image/png"
    detail: Literal["auto", "low", "high"] | None = None
    """OpenAI's resolution hint; ``None``: not given."""
    cache_control: CacheControl | None = None
    kind: Literal["image"] = "image"

    def __post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("ImagePart needs exactly one of url or data")


@dataclass(frozen=True, slots=True)
class DocumentPart:
    """A document (a PDF, usually), by URL or inline base64 ``data``."""

    url: str | None = None
    data: str | None = None
    media_type: str = "application/pdf"
    filename: str | None = None
    cache_control: CacheControl | None = None
    kind: Literal["document"] = "document"

    def __post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("DocumentPart needs exactly one of url or data")


@fast_init
@dataclass(frozen=True, slots=True)
class ThinkingPart:
    """A model's visible reasoning in an assistant turn, with the vendor's ``signature``
    that must come back unchanged in the next turn to the same vendor. ``redacted``: the
    text is the vendor's opaque encrypted data, not readable reasoning."""

    text: str
    signature: str | None = None
    redacted: bool = False
    kind: Literal["thinking"] = "thinking"


Part: TypeAlias = TextPart | ImagePart | DocumentPart | ThinkingPart


@fast_init
@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """The arguments as JSON text, exactly as the model produced them."""


@fast_init
@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None
    """Arguments must match ``parameters`` exactly (OpenAI's strict mode); ``None``: not given."""
    cache_control: CacheControl | None = None
    eager_input_streaming: bool | None = None
    """Anthropic's: stream this tool's arguments unbuffered (others stream them as they come)."""


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    new: ClassVar[type[Message]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    role: Role
    content: str | Sequence[Part] = ""
    tool_calls: Sequence[ToolCall] = ()
    tool_call_id: str | None = None
    """For ``role="tool"``: the id of the call this message answers."""
    name: str | None = None
    """For ``role="tool"``: the name of the tool that answered (Gemini needs it); else
    OpenAI's participant name (LangGraph names each agent's turns so)."""
    is_error: bool = False
    """For ``role="tool"``: the tool failed, and ``content`` says how."""
    cache_control: CacheControl | None = None
    """A cache breakpoint on the message's last block: a tool result (Anthropic's
    ``tool_result`` block), an assistant turn's last tool call, or whatever block ends a
    message an OpenAI-format caller marked as a whole."""

    @property
    def text(self) -> str:
        """The message's text, parts joined; images are left out."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def parts(self) -> tuple[Part, ...]:
        if isinstance(self.content, str):
            return (TextPart(self.content),) if self.content else ()
        return tuple(self.content)

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", text)

    @classmethod
    def user(cls, content: str | Sequence[Part]) -> Message:
        return cls("user", content)

    @classmethod
    def assistant(cls, text: str, tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls("assistant", text, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str, name: str | None = None) -> Message:
        return cls("tool", content, tool_call_id=tool_call_id, name=name)


@fast_init
@dataclass(frozen=True, slots=True)
class JsonSchema:
    """Structured output: the answer must be JSON matching ``schema``."""

    name: str
    schema: Mapping[str, Any]
    strict: bool | None = None
    description: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Reasoning:
    """How hard a reasoning model should think: an ``effort`` (OpenAI, Gemini) or a
    budget of thinking tokens (Anthropic, Gemini); adapters translate one into the other."""

    effort: Literal["minimal", "low", "medium", "high"] | None = None
    budget_tokens: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request, vendor-neutral."""

    new: ClassVar[type[ChatRequest]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    model: str
    messages: Sequence[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] = ()
    tools: Sequence[Tool] = ()
    tool_choice: Literal["auto", "none", "required"] | str | None = None
    """``auto``/``none``/``required``, or a tool name to force that tool."""
    response_format: Literal["text", "json"] | JsonSchema = "text"
    seed: int | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    """``False``: at most one tool call per turn; ``None``: the vendor's default."""
    n: int = 1
    """How many alternative answers."""
    logprobs: bool = False
    top_logprobs: int | None = None
    metadata: Mapping[str, str] | None = None
    store: bool | None = None
    """OpenAI's: keep the completion in the vendor's dashboard (where ``metadata`` tags it)."""
    service_tier: str | None = None
    reasoning: Reasoning | None = None
    betas: Sequence[str] = ()
    """Anthropic beta features (``anthropic-beta``), forwarded to Anthropic upstreams."""
    presence_penalty: float | None = None
    """OpenAI's range, -2..2: penalise tokens already present."""
    frequency_penalty: float | None = None
    """OpenAI's range, -2..2: penalise tokens by how often they occurred."""
    top_k: int | None = None
    """Sample from the ``top_k`` likeliest tokens only."""
    logit_bias: Mapping[str, float] | None = None
    """Token id (as text) -> bias, -100..100 (OpenAI's)."""

    @property
    def system_text(self) -> str:
        """All system messages joined, for vendors that take system apart from messages."""
        return "\n\n".join(m.text for m in self.messages if m.role == "system")


@fast_init
@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens as the vendor reported them.

    ``prompt_tokens`` counts every input token, ``cached_tokens`` included
    (cached input is a subset of the prompt, billed at its own price).
    """

    new: ClassVar[type[Usage]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (a subset of the prompt, 1-hour ones included)."""
    cache_write_1h_tokens: int = 0
    """Of ``cache_write_tokens``, those cached for an hour (billed at their own rate)."""
    reasoning_tokens: int = 0
    """Of ``completion_tokens``, those spent thinking (billed as output)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


@fast_init
@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log probability, and the likeliest tokens at its place."""

    token: str
    logprob: float
    top: Sequence[tuple[str, float]] = ()


@fast_init
@dataclass(frozen=True, slots=True)
class Alternative:
    """Another answer to the same request (``n > 1``): OpenAI's ``choices[1:]``."""

    content: str
    finish_reason: FinishReason
    tool_calls: Sequence[ToolCall] = ()
    raw_finish_reason: str | None = None
    logprobs: Sequence[TokenLogprob] | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A completed answer, vendor-neutral."""

    new: ClassVar[type[ChatResponse]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    content: str
    model: str
    finish_reason: FinishReason
    usage: Usage
    id: str = ""
    tool_calls: Sequence[ToolCall] = ()
    raw_finish_reason: str | None = None
    provider: str = ""
    """The id of the configured provider that answered (set by the client)."""
    request_id: str | None = None
    """The vendor's request id, from its response headers, for support tickets."""
    server_ms: float | None = None
    """Time the vendor says it spent, where it reports one (Ollama's ``total_duration``)."""
    thinking: Sequence[ThinkingPart] = ()
    """The model's reasoning blocks, in order, to send back with the next turn."""
    stop_sequence: str | None = None
    """The stop sequence that ended the answer, where the vendor says which."""
    alternatives: Sequence[Alternative] = ()
    """With ``n > 1``: the answers after this first one, in the vendor's order."""
    logprobs: Sequence[TokenLogprob] | None = None
    """With ``logprobs``: the answer's tokens and their log probabilities."""
    refusal: str | None = None
    """The model declined to answer (OpenAI's ``refusal``, with structured outputs): why."""


@fast_init
@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: Sequence[str] | Sequence[Sequence[int]]
    """Texts, or token-id arrays (OpenAI-type upstreams only)."""
    dimensions: int | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    model: str
    vectors: Sequence[Sequence[float]]
    usage: Usage
    provider: str = ""
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model as a provider lists it (``list_models``) or the catalog knows it."""

    id: str
    provider_type: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    capabilities: frozenset[Capability] = frozenset({"chat", "stream"})
    display_name: str | None = None
    owned_by: str | None = None


# -- routing outcomes: what errors and decisions list -----------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Target:
    """A (provider, model) pair: the unit of routing and of fallback."""

    provider: str
    model: str

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model}


ExclusionKind = Literal["unsuitable", "unavailable", "over_budget"]
"""Why a pair was left out: it cannot serve this request (a capability, the context size, a
cap, the quality floor); its provider cannot take traffic now (disabled, no key, breaker
open, unhealthy); or a budget refused its provider lately."""


@fast_init
@dataclass(frozen=True, slots=True)
class Excluded:
    provider: str
    model: str
    reason: str
    kind: ExclusionKind = "unsuitable"

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model, "reason": self.reason}


@fast_init
@dataclass(frozen=True, slots=True)
class Attempt:
    new: ClassVar[type[Attempt]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

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
