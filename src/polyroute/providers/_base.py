"""What a provider is, and what a wire protocol must do.

A :class:`Provider` is an endpoint you configured: an id, a vendor type, a
base URL, a key. A :class:`WireProtocol` is a translation between our types
and one vendor's HTTP format. It does no I/O: it builds :class:`HttpCall`
descriptions and parses bodies, so each translation can be tested and timed
alone. :class:`polyroute.providers.ProviderClient` joins the two over the
shared HTTP pool.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

from polyroute._frozen import fast_init
from polyroute.errors import ErrorKind, UnsupportedError
from polyroute.events import StreamEvent
from polyroute.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelInfo,
    Part,
    TextPart,
)

if TYPE_CHECKING:
    from polyroute.catalog import CatalogModel

MB = 1024 * 1024

__all__ = [
    "HttpCall",
    "Provider",
    "Secret",
    "StreamDecoder",
    "UnsupportedError",  # re-exported: adapters raise it
    "VendorError",
    "WireProtocol",
    "sampling",
]


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, slots=True)
class Provider:
    """A configured endpoint of one vendor type."""

    id: str
    type: str
    base_url: str
    api_key: Secret | None = None
    models: tuple[str, ...] = ()
    default_model: str | None = None
    timeout_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    max_connections: int = 100
    """Open upstream connections at most; calls beyond wait up to their pool timeout."""
    max_response_bytes: int = 50 * MB
    """An answer (or a stream's total) larger than this is an error, never read whole."""
    responses_models: frozenset[str] = frozenset()
    """Models called through OpenAI's Responses API (catalog ``api = "responses"``)."""


@fast_init
@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request to make, relative to the provider's base URL."""

    method: Literal["GET", "POST"]
    path: str
    json: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    """Headers of this request alone (``anthropic-beta``), over the provider's."""


@dataclass(frozen=True, slots=True)
class VendorError:
    """What a vendor's error body says, before it becomes a typed error."""

    message: str
    vendor_type: str | None = None
    retry_after: float | None = None
    kind: ErrorKind | None = None
    """What the vendor's codes say beyond the status (the adapter knows its vendor's)."""


def sampling(
    request: ChatRequest,
    *,
    max_tokens: str | None,
    temperature: str = "temperature",
    top_p: str = "top_p",
    stop: str = "stop",
    seed: str | None = "seed",
) -> dict[str, Any]:
    """The request's sampling settings under one vendor's field names.

    Unset settings are left out; a field name of ``None`` means the vendor has
    no such setting, and it is dropped.
    """
    out: dict[str, Any] = {}
    if max_tokens is not None and request.max_tokens is not None:
        out[max_tokens] = request.max_tokens
    if request.temperature is not None:
        out[temperature] = request.temperature
    if request.top_p is not None:
        out[top_p] = request.top_p
    if request.stop:
        out[stop] = list(request.stop)
    if seed is not None and request.seed is not None:
        out[seed] = request.seed
    return out


class StreamDecoder(ABC):
    """Turns one vendor stream, message by message, into stream events.

    ``feed`` takes one SSE event (its ``data`` and ``event`` name) or one NDJSON
    line (``event`` is ``None``). It may raise a :class:`ProviderError` for an
    error the vendor sends in-band. ``done`` turns true when the vendor's end
    marker has been seen; a stream that stops before that is truncated.
    """

    done: bool = False

    @abstractmethod
    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]: ...


class WireProtocol(ABC):
    """The translation for one vendor's HTTP API. Pure: no I/O, no state.

    This is the stable interface of provider plugins (README, "Writing a provider
    plugin"): a package declares a subclass under the ``polyroute.providers`` entry point,
    named by its :attr:`type`. Every method gets our types or a parsed body and returns
    our types or an :class:`HttpCall`; :class:`ProviderClient` does the HTTP, the
    retries, the timeouts and the size bounds. A request field the vendor cannot carry
    raises :class:`UnsupportedError` naming it (never dropped); a body that is not what
    the vendor documents may raise ``KeyError``/``TypeError``/``ValueError`` (the client
    turns them into :class:`polyroute.errors.InvalidResponseError`); an error the vendor
    sends inside a stream is raised by the decoder with :func:`polyroute.errors.status_error`.
    """

    type: ClassVar[str]
    """The provider type, as config's ``type = "..."`` names it (and the entry point)."""
    default_base_url: ClassVar[str]
    """The base URL when a provider sets none; :meth:`chat` paths are relative to it."""
    stream_format: ClassVar[Literal["sse", "ndjson"]] = "sse"
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id",)
    """Response headers carrying the vendor's request id, first found wins."""
    list_models_path: ClassVar[str] = "/models"
    counts_tokens: ClassVar[bool] = False
    """Whether the vendor counts a request's input tokens (:meth:`count_tokens`)."""
    local: ClassVar[bool] = False
    """A server on this machine or network (as Ollama is): its models are free by
    declaration and win performance ties while no latency is learned."""
    catalog_models: ClassVar[tuple[CatalogModel, ...]] = ()
    """A plugin's models with their context windows, capabilities, quality and published
    prices (``Price(..., source="catalog")``), each of this :attr:`type`; the catalog adds
    them when a configured provider is of this type. Built-ins list theirs in ``models.toml``."""

    @abstractmethod
    def headers(self, api_key: str | None) -> dict[str, str]:
        """Auth and version headers; the key travels in the vendor's own header.

        ``api_key`` is ``None`` for a keyless provider: send no auth header then."""

    @abstractmethod
    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        """The call for ``request`` (streamed or not). Raise :class:`UnsupportedError` for a
        field or content part the vendor cannot carry (:func:`refuse_field`)."""

    @abstractmethod
    def parse_chat(self, body: Any) -> ChatResponse:
        """A successful (2xx) non-streamed answer's JSON body as a :class:`ChatResponse`
        (text, tool calls, finish reason in our vocabulary and the vendor's raw one, usage)."""

    @abstractmethod
    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        """A fresh decoder for one stream of ``request`` (:class:`StreamDecoder`): it emits
        one :class:`~polyroute.events.StreamStart`, deltas, and one ``StreamEnd`` with usage."""

    def list_models(self) -> HttpCall:
        """The call listing the models of the key (health checks and ``polyroute models``)."""
        return HttpCall("GET", self.list_models_path)

    @abstractmethod
    def parse_models(self, body: Any) -> list[ModelInfo]:
        """The models listing's body as :class:`ModelInfo` entries of this :attr:`type`."""

    def embed(self, request: EmbeddingRequest) -> HttpCall:
        """The embeddings call; by default :class:`UnsupportedError` (no embeddings API)."""
        raise UnsupportedError(f"{self.type} has no embeddings API")

    def parse_embed(self, body: Any) -> EmbeddingResponse:
        """An embeddings answer's body, vectors in input order."""
        raise UnsupportedError(f"{self.type} has no embeddings API")

    def count_tokens(self, request: ChatRequest) -> HttpCall:
        """The call that counts ``request``'s input tokens, where :attr:`counts_tokens`."""
        raise UnsupportedError(f"{self.type} has no token counting API")

    def parse_count_tokens(self, body: Any) -> int:
        """The counting answer's input tokens."""
        raise UnsupportedError(f"{self.type} has no token counting API")

    @abstractmethod
    def parse_error(self, status: int, body: Any) -> VendorError:
        """Read the vendor's error body (JSON, or text when it was not JSON).

        The client raises the error class the status maps to (``status_error``); set
        :attr:`VendorError.kind` where the vendor's codes say more than the status (a
        context overflow sent as a 400 is ``"context_length"``)."""

    def for_provider(self, provider: Provider) -> WireProtocol:
        """This translation as ``provider``'s settings shape it (default: unchanged)."""
        return self


def refuse_field(vendor: str, name: str, why: str = "it has no equivalent") -> NoReturn:
    """A request field this vendor cannot honour: refused by name, never dropped."""
    raise UnsupportedError(f"{vendor} cannot take {name}: {why}")


def refuse_fields(vendor: str, request: ChatRequest, names: Sequence[str]) -> None:
    """Refuse the first of the OpenAI-named fields ``names`` that ``request`` sets (``n``,
    ``logprobs``, ``top_logprobs``, ``seed``, ``user``, ``metadata``, ``store``,
    ``service_tier``, ``parallel_tool_calls``: false), for a vendor that has none of them."""
    for name in names:
        if _set(request, name):
            refuse_field(vendor, name)


def _set(request: ChatRequest, name: str) -> bool:
    if name == "n":
        return request.n > 1
    if name == "logprobs":
        return request.logprobs
    if name == "parallel_tool_calls":  # true is every vendor's default
        return request.parallel_tool_calls is False
    if name == "store":
        return bool(request.store)
    value = getattr(request, name)
    return value is not None


def standard_tier(vendor: str, tier: str) -> str:
    """OpenAI's ``service_tier`` as Anthropic and Mistral name theirs (``auto`` or
    ``standard_only``); tiers they do not sell are refused by name."""
    if tier == "auto":
        return "auto"
    if tier in ("default", "standard_only"):
        return "standard_only"
    refuse_field(vendor, f"service_tier {tier!r}", "it offers 'auto' and 'default' only")


def refuse_streamed(vendor: str, request: ChatRequest) -> None:
    """``n > 1`` and ``logprobs`` come back with whole answers only: stream events carry one
    answer's text."""
    if request.n > 1:
        refuse_field(vendor, "n > 1 with stream", "a stream carries one answer")
    if request.logprobs:
        refuse_field(vendor, "logprobs with stream", "stream events carry no log probabilities")


ERROR_PREFIX = "Error: "
"""Starts a failed tool's result for vendors with no error flag on tool results."""


def error_marked(m: Message) -> Message:
    """A failed tool's result (``is_error``), its content starting with :data:`ERROR_PREFIX`,
    for a vendor whose tool results have no error flag."""
    if not m.is_error:
        return m
    if isinstance(m.content, str):
        return replace(m, content=ERROR_PREFIX + m.content, is_error=False)
    return replace(m, content=(TextPart(ERROR_PREFIX), *m.content), is_error=False)


def text_inputs(vendor: str, request: EmbeddingRequest) -> list[str]:
    """An embeddings request's inputs as texts; token-id inputs are refused by name."""
    out: list[str] = []
    for item in request.inputs:
        if not isinstance(item, str):
            refuse_field(vendor, "input as token ids", "it embeds text only")
        out.append(item)
    return out


def refuse_part(vendor: str, part: Part) -> NoReturn:
    """A content part this vendor's adapter does not translate: refused by name, never dropped."""
    raise UnsupportedError(f"{vendor} cannot take a {part.kind} part in a message")
