"""Anthropic Messages API.

Wire format: https://platform.claude.com/docs/en/api/messages
``base_url`` is the host root (``https://api.anthropic.com``), as in the
official SDK; paths carry ``/v1``. The key travels in ``x-api-key``.

Choices worth knowing:

- ``anthropic-version`` is pinned to ``2023-06-01``: version ``2026-10-21``
  rejects ``temperature`` and ``top_p`` with a 400, and polyroute passes them
  through. A provider's ``headers`` may override the version.
- ``max_tokens`` is required by the API; a request without one gets
  :attr:`AnthropicProtocol.DEFAULT_MAX_TOKENS`.
- System messages, wherever they sit, go to the top-level ``system`` field.
  Consecutive same-role turns are merged; tool results become ``tool_result``
  blocks in a user turn.
- JSON mode: the API's own structured output needs a JSON schema, and
  ``response_format="json"`` has none. So JSON mode forces a call to one tool,
  :data:`JSON_TOOL`, whose input schema is any object; its input comes back as
  the answer's text (finish reason ``stop``). It cannot be combined with the
  request's own tools (:class:`UnsupportedError`).
- A JSON schema goes to ``output_config.format`` (structured outputs) on models
  that have it; older ones get the same forced tool with the schema as its input
  schema, so the answer is still text in the caller's schema.
- ``n``, ``logprobs``, ``top_logprobs``, ``seed``, ``metadata`` (beyond
  ``user``), ``store``, the penalties and ``logit_bias`` have no equivalent:
  refused by name; ``top_k`` is carried. ``service_tier``
  is ``auto`` or ``standard_only``; ``parallel_tool_calls: false`` is
  ``tool_choice.disable_parallel_tool_use``; a failed tool's result carries
  ``is_error``. Documents are ``document`` blocks (plain text as a text source).
- Reasoning is extended ``thinking`` with a budget (an effort becomes one:
  :mod:`polyroute.reasoning`); ``max_tokens`` must exceed it, and a temperature,
  a low ``top_p``, ``top_k`` or a forced tool cannot go with it (refused by name). Thinking
  blocks come back in :attr:`ChatResponse.thinking` (streams: ``ThinkingDelta``)
  and go back first in their assistant turn, signatures unchanged; one without a
  signature (another vendor's) stays out. ``output_tokens`` includes thinking.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal

from polyroute.errors import BadRequestError, ErrorKind, status_error
from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from polyroute.providers._base import (
    HttpCall,
    StreamDecoder,
    UnsupportedError,
    VendorError,
    WireProtocol,
    refuse_field,
    refuse_fields,
    refuse_part,
    sampling,
    standard_tier,
)
from polyroute.providers._http import loads_event
from polyroute.providers._json import loads_bounded
from polyroute.reasoning import ANSWER_TOKENS, MIN_BUDGET, budget_of
from polyroute.types import (
    CacheControl,
    Capability,
    ChatRequest,
    ChatResponse,
    DocumentPart,
    FinishReason,
    ImagePart,
    JsonSchema,
    Message,
    ModelInfo,
    Part,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCall,
    Usage,
)

API_VERSION = "2023-06-01"

JSON_TOOL = "polyroute_json_answer"
"""The tool JSON mode forces; its input is the answer."""

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # "pause_turn" (a server tool paused the turn) -> "other"
}

COUNTED_FIELDS = frozenset(
    ("model", "messages", "system", "tools", "tool_choice", "thinking", "output_config")
)
"""The chat body's fields ``/v1/messages/count_tokens`` takes."""

# Error type -> HTTP status, for errors sent in-band in a stream (status 200).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


# Error types and details.error_codes that name a more precise failure than the status.
ERROR_KINDS: dict[str, ErrorKind] = {
    "overloaded_error": "overloaded",  # also sent as a 503, or in a stream
    "enforced_spend_limit_reached": "quota",
}


def finish_reason(raw: str | None, *, json_mode: bool = False) -> FinishReason:
    if json_mode and raw == "tool_use":
        return "stop"
    return FINISH_REASONS.get(raw or "", "other")


def usage_from_wire(u: dict[str, Any] | None) -> Usage:
    """``input_tokens`` excludes cache reads and writes: add them back.
    ``cache_creation`` splits the writes by lifetime (5 minutes, 1 hour)."""
    if not u:
        return Usage()
    cache_read = u.get("cache_read_input_tokens") or 0
    cache_write = u.get("cache_creation_input_tokens") or 0
    return Usage.new(
        prompt_tokens=(u.get("input_tokens") or 0) + cache_read + cache_write,
        completion_tokens=u.get("output_tokens") or 0,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=_written_1h(u),
        reasoning_tokens=_thought(u),
    )


def _written_1h(u: dict[str, Any]) -> int:
    split = u.get("cache_creation")
    return (split.get("ephemeral_1h_input_tokens") or 0) if isinstance(split, dict) else 0


def _thought(u: dict[str, Any]) -> int:
    details = u.get("output_tokens_details")
    return (details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0


def _image(p: ImagePart) -> dict[str, Any]:
    source: dict[str, Any]
    if p.data is not None:
        source = {"type": "base64", "media_type": p.media_type, "data": p.data}
    elif p.url is not None and p.url.startswith("data:"):
        # data:<media type>;base64,<data>: the API takes it as a base64 source
        head, _, data = p.url.partition(",")
        media_type = head[5:].partition(";")[0] or p.media_type
        source = {"type": "base64", "media_type": media_type, "data": data}
    else:
        source = {"type": "url", "url": p.url}
    return {"type": "image", "source": source}


def _blocks(parts: Sequence[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, ImagePart):
            out.append(cached(_image(p), p.cache_control))
        elif isinstance(p, DocumentPart):
            out.append(cached(_document(p), p.cache_control))
        elif isinstance(p, ThinkingPart):
            continue  # an assistant turn sends them first (_thinking)
        elif not isinstance(p, TextPart):
            refuse_part("anthropic", p)
        elif p.text:  # the API rejects empty text blocks
            out.append(cached({"type": "text", "text": p.text}, p.cache_control))
    return out


def _document(p: DocumentPart) -> dict[str, Any]:
    """A ``document`` block: a PDF by base64 or URL, plain text as a text source."""
    source: dict[str, Any]
    if p.url is not None:
        source = {"type": "url", "url": p.url}
    elif p.media_type == "text/plain":
        try:
            text = base64.b64decode(p.data or "", validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            refuse_field("anthropic", "a text document", "its data is not base64 UTF-8 text")
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        source = {"type": "base64", "media_type": p.media_type, "data": p.data}
    out: dict[str, Any] = {"type": "document", "source": source}
    if p.filename:
        out["title"] = p.filename
    return out


def cached(block: dict[str, Any], mark: CacheControl | None) -> dict[str, Any]:
    """``block`` with its cache breakpoint, if it has one (5 minutes is the API's default)."""
    if mark is not None:
        block["cache_control"] = (
            {"type": "ephemeral"} if mark.ttl == "5m" else {"type": "ephemeral", "ttl": mark.ttl}
        )
    return block


def system_to_wire(messages: Sequence[Message]) -> str | list[dict[str, Any]]:
    """The system messages as the ``system`` field: one string, or text blocks when one of
    them carries a cache breakpoint (only blocks can)."""
    system = [m for m in messages if m.role == "system"]
    marked = any(
        m.cache_control or any(isinstance(p, TextPart) and p.cache_control for p in m.parts)
        for m in system
    )
    if not marked:
        return "\n\n".join(m.text for m in system)
    out: list[dict[str, Any]] = []
    for m in system:
        blocks = _blocks(m.parts)
        if m.cache_control is not None and blocks:
            cached(blocks[-1], m.cache_control)
        out.extend(blocks)
    return out


def _thinking(parts: Sequence[Part]) -> list[dict[str, Any]]:
    """An assistant turn's thinking blocks, signatures unchanged. A part without a signature
    came from another vendor (or was cut short): the API would refuse it, so it stays out."""
    out: list[dict[str, Any]] = []
    for p in parts:
        if not isinstance(p, ThinkingPart):
            continue
        if p.redacted:
            out.append({"type": "redacted_thinking", "data": p.text})
        elif p.signature:
            out.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
    return out


def thinking_to_wire(request: ChatRequest, max_tokens: int | None) -> tuple[dict[str, Any], int]:
    """The ``thinking`` field and the ``max_tokens`` to send with it. The API wants
    ``max_tokens`` above the budget: a request without one gets the budget plus
    :data:`~polyroute.reasoning.ANSWER_TOKENS`; one with a smaller one gets the budget cut
    to fit (never below the API's least, 1,024), as ``max_tokens`` bounds the bill."""
    assert request.reasoning is not None
    budget = max(budget_of(request.reasoning), MIN_BUDGET)
    if max_tokens is None:
        return {"type": "enabled", "budget_tokens": budget}, budget + ANSWER_TOKENS
    if max_tokens <= MIN_BUDGET:
        raise UnsupportedError(
            f"anthropic: thinking needs max_tokens above {MIN_BUDGET} (got {max_tokens})"
        )
    return {"type": "enabled", "budget_tokens": min(budget, max_tokens - 1)}, max_tokens


def _tool_input(call: ToolCall) -> dict[str, Any]:
    if not call.arguments.strip():
        return {}
    try:
        value = loads_bounded(call.arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BadRequestError(
            f"tool call {call.id!r} ({call.name}): anthropic needs its arguments as "
            f"a JSON object, got {call.arguments[:80]!r}"
        )
    return value


def _turn(m: Message) -> tuple[str, list[dict[str, Any]]]:
    """One of our messages as (Anthropic role, content blocks)."""
    if m.role == "tool":
        content: Any = m.content if isinstance(m.content, str) else _blocks(m.content)
        block = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": content}
        if m.is_error:
            block["is_error"] = True
        return "user", [cached(block, m.cache_control)]
    blocks = _blocks(m.parts)
    if m.role == "assistant":  # the API wants thinking first in the turn
        blocks[:0] = _thinking(m.parts)
    for call in m.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
        )
    if m.cache_control is not None and blocks:
        cached(blocks[-1], m.cache_control)
    return m.role, blocks


def messages_to_wire(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Our messages (system ones excluded) as alternating user/assistant turns."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role, blocks = _turn(m)
        if not blocks:
            continue  # the API rejects empty turns
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for turn in out:  # the compact form for a lone text block
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            turn["content"] = content[0]["text"]  # (no cache_control, citations...)
    return out


_NO_STRUCTURED_OUTPUTS = (
    "claude-3",
    "claude-2",
    "claude-instant",
    "claude-sonnet-4-0",
    "claude-sonnet-4-2025",
    "claude-opus-4-0",
    "claude-opus-4-2025",
)
"""Models older than structured outputs (Opus 4.1, Sonnet 4.5, Haiku 4.5 and later have them)."""


def structured_outputs(model: str) -> bool:
    """Whether ``model`` takes ``output_config.format`` (else a schema is a forced tool)."""
    return not model.startswith(_NO_STRUCTURED_OUTPUTS)


def _format_name(fmt: Literal["json"] | JsonSchema) -> str:
    return "json_schema" if isinstance(fmt, JsonSchema) else "'json'"


def _answer_tool(fmt: Literal["json"] | JsonSchema) -> dict[str, Any]:
    """The tool whose forced call is the answer: its input schema is the caller's schema."""
    if not isinstance(fmt, JsonSchema):
        schema: dict[str, Any] = {"type": "object"}
        about = "Give your complete answer as one JSON object."
    else:
        schema = dict(fmt.schema)
        about = fmt.description or f"Give your complete answer as one {fmt.name} object."
    return {"name": JSON_TOOL, "description": about, "input_schema": schema}


def _tool(t: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name,
        "description": t.description,
        "input_schema": dict(t.parameters),
    }
    if t.strict is not None:
        out["strict"] = t.strict
    if t.eager_input_streaming is not None:
        out["eager_input_streaming"] = t.eager_input_streaming
    return out


def _think(body: dict[str, Any], request: ChatRequest) -> None:
    """Extended thinking on ``body``: the API refuses it with a temperature other than 1,
    ``top_p`` below 0.95, ``top_k`` or a forced tool, so those are refused here by name."""
    if request.temperature is not None and request.temperature != 1:
        raise UnsupportedError("anthropic: temperature cannot be set with thinking (only 1)")
    if request.top_p is not None and request.top_p < 0.95:
        raise UnsupportedError("anthropic: top_p below 0.95 cannot be set with thinking")
    if request.top_k is not None:
        raise UnsupportedError("anthropic: top_k cannot be set with thinking")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise UnsupportedError(
            "anthropic: thinking cannot be combined with a forced tool "
            "(tool_choice, or response_format='json')"
        )
    body["thinking"], body["max_tokens"] = thinking_to_wire(request, request.max_tokens)


class AnthropicProtocol(WireProtocol):
    type: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    request_id_headers: ClassVar[tuple[str, ...]] = ("request-id",)
    list_models_path: ClassVar[str] = "/v1/models"
    counts_tokens: ClassVar[bool] = True

    DEFAULT_MAX_TOKENS: ClassVar[int] = 4096
    """Sent when a request has no ``max_tokens`` (the API requires one)."""

    def headers(self, api_key: str | None) -> dict[str, str]:
        out = {"anthropic-version": API_VERSION}
        if api_key:
            out["x-api-key"] = api_key
        return out

    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        refuse_fields(
            self.type,
            request,
            (
                "n",
                "logprobs",
                "top_logprobs",
                "seed",
                "metadata",
                "store",
                "presence_penalty",
                "frequency_penalty",
                "logit_bias",
            ),
        )
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens
            if request.max_tokens is not None
            else self.DEFAULT_MAX_TOKENS,
            "messages": messages_to_wire(request.messages),
        }
        system = system_to_wire(request.messages)
        if system:
            body["system"] = system
        # max_tokens is set above (required); the API has no seed
        body.update(sampling(request, max_tokens=None, stop="stop_sequences", seed=None))
        if request.top_k is not None:
            body["top_k"] = request.top_k
        if request.user is not None:
            body["metadata"] = {"user_id": request.user}
        if request.service_tier is not None:
            body["service_tier"] = standard_tier(self.type, request.service_tier)
        fmt = request.response_format
        if isinstance(fmt, JsonSchema) and structured_outputs(request.model):
            schema = {"type": "json_schema", "schema": dict(fmt.schema)}
            body.setdefault("output_config", {})["format"] = schema
            fmt = "text"  # answered as text: the tools below are the request's own
        if fmt != "text":
            if request.tools:
                raise UnsupportedError(
                    f"anthropic: response_format {_format_name(fmt)} cannot be combined with "
                    f"tools on {request.model} (it is a forced call to a tool of its own)"
                )
            body["tools"] = [_answer_tool(fmt)]
            body["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
        elif request.tools:
            body["tools"] = [cached(_tool(t), t.cache_control) for t in request.tools]
            if request.tool_choice is not None:
                body["tool_choice"] = self._tool_choice(request.tool_choice)
        elif request.tool_choice not in (None, "auto", "none"):
            # Forcing a tool with none declared: let the API say what is wrong.
            body["tool_choice"] = self._tool_choice(request.tool_choice or "")
        if request.parallel_tool_calls is False and request.tools:
            choice = body.setdefault("tool_choice", {"type": "auto"})
            if choice.get("type") != "none":
                choice["disable_parallel_tool_use"] = True
        if request.reasoning is not None:
            _think(body, request)
        if stream:
            body["stream"] = True
        betas = {"anthropic-beta": ",".join(request.betas)} if request.betas else None
        return HttpCall("POST", "/v1/messages", json=body, headers=betas)

    def count_tokens(self, request: ChatRequest) -> HttpCall:
        """``/v1/messages/count_tokens``: the request's chat body, without the fields that
        only shape the answer (the endpoint refuses them)."""
        call = self.chat(request, stream=False)
        body = {k: v for k, v in (call.json or {}).items() if k in COUNTED_FIELDS}
        return replace(call, path="/v1/messages/count_tokens", json=body)

    def parse_count_tokens(self, body: Any) -> int:
        return int(body["input_tokens"])

    def _tool_choice(self, choice: str) -> dict[str, Any]:
        if choice == "required":
            return {"type": "any"}
        if choice in ("auto", "none"):
            return {"type": choice}
        return {"type": "tool", "name": choice}

    def parse_chat(self, body: Any) -> ChatResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        thinking: list[ThinkingPart] = []
        json_mode = False
        for block in body["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block["text"])
            elif kind == "thinking":
                thinking.append(ThinkingPart(block.get("thinking") or "", block.get("signature")))
            elif kind == "redacted_thinking":
                thinking.append(ThinkingPart(block.get("data") or "", redacted=True))
            elif kind == "tool_use":
                if block["name"] == JSON_TOOL:
                    json_mode = True
                    texts.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
                else:
                    calls.append(
                        ToolCall(
                            id=block["id"],
                            name=block["name"],
                            arguments=json.dumps(block.get("input") or {}, ensure_ascii=False),
                        )
                    )
            # server tool blocks carry no answer text
        raw = body.get("stop_reason")
        return ChatResponse.new(
            content="".join(texts),
            model=body.get("model", ""),
            finish_reason=finish_reason(raw, json_mode=json_mode and not calls),
            raw_finish_reason=raw,
            usage=usage_from_wire(body.get("usage")),
            id=body.get("id", ""),
            tool_calls=tuple(calls),
            stop_sequence=body.get("stop_sequence"),
            thinking=tuple(thinking),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return AnthropicStreamDecoder(self.type)

    def list_models(self) -> HttpCall:
        # One page of up to 1000 (the API's maximum) covers every model.
        return HttpCall("GET", self.list_models_path, params={"limit": "1000"})

    def parse_models(self, body: Any) -> list[ModelInfo]:
        out = []
        for m in body["data"]:
            caps: set[Capability] = {"chat", "stream", "tools", "json"}
            image = (m.get("capabilities") or {}).get("image_input") or {}
            if image.get("supported"):
                caps.add("vision")
            out.append(
                ModelInfo(
                    id=m["id"],
                    provider_type=self.type,
                    context_window=m.get("max_input_tokens"),
                    max_output_tokens=m.get("max_tokens"),
                    capabilities=frozenset(caps),
                    display_name=m.get("display_name"),
                    owned_by="anthropic",
                )
            )
        return out

    def parse_error(self, status: int, body: Any) -> VendorError:
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                # details.error_code names the precise cause; type is the family.
                details = err.get("details")
                code = details.get("error_code") if isinstance(details, dict) else None
                vendor = code if isinstance(code, str) else err.get("type")
                return VendorError(
                    message=str(err.get("message") or ""),
                    vendor_type=vendor,
                    kind=ERROR_KINDS.get(vendor or ""),
                )
        return VendorError(message=str(body)[:500])


class AnthropicStreamDecoder(StreamDecoder):
    """Messages stream events -> our events. ``message_stop`` is the end marker.

    Usage: ``message_start`` has the input side, ``message_delta`` cumulative
    totals (fields it omits keep their ``message_start`` value).
    """

    __slots__ = (
        "_args_seen",
        "_cache_read",
        "_cache_write",
        "_cache_write_1h",
        "_input",
        "_json_block",
        "_output",
        "_provider",
        "_raw_finish",
        "_stop_sequence",
        "_thinking",
        "_thought",
        "_tools",
        "done",
    )

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._input = self._output = self._cache_read = self._cache_write = 0
        self._cache_write_1h = self._thought = 0
        self._raw_finish: str | None = None
        self._stop_sequence: str | None = None
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._thinking: dict[int, int] = {}  # content block index -> thinking block index
        self._args_seen: set[int] = set()
        self._json_block = -1
        self.done = False

    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]:
        chunk = loads_event(data, self._provider)
        kind = chunk.get("type") or event
        if kind == "content_block_delta":
            return self._delta(chunk)
        if kind == "content_block_start":
            return self._block_start(chunk)
        if kind == "content_block_stop":
            index = chunk.get("index", 0)
            tool = self._tools.get(index)
            if tool is not None and index not in self._args_seen:
                return [ToolCallDelta(index=tool, arguments="{}")]  # a call with no input
            return ()
        if kind == "message_delta":
            delta = chunk.get("delta") or {}
            self._raw_finish = delta.get("stop_reason") or self._raw_finish
            self._stop_sequence = delta.get("stop_sequence") or self._stop_sequence
            self._take_usage(chunk.get("usage"))
            return ()
        if kind == "message_start":
            message = chunk.get("message") or {}
            self._take_usage(message.get("usage"))
            return [StreamStart(message.get("id", ""), message.get("model", ""))]
        if kind == "message_stop":
            self.done = True
            json_mode = self._json_block >= 0 and not self._tools
            return [
                StreamEnd(
                    finish_reason(self._raw_finish, json_mode=json_mode),
                    Usage(
                        self._input + self._cache_read + self._cache_write,
                        self._output,
                        self._cache_read,
                        self._cache_write,
                        self._cache_write_1h,
                        self._thought,
                    ),
                    self._raw_finish,
                    stop_sequence=self._stop_sequence,
                )
            ]
        if kind == "error":
            err = chunk.get("error") or {}
            vendor = err.get("type")
            raise status_error(
                ERROR_STATUS.get(vendor or "", 500),
                str(err.get("message") or "error in stream"),
                kind=ERROR_KINDS.get(vendor or ""),
                vendor_type=vendor,
                request_id=chunk.get("request_id"),
                body=chunk,
            )
        return ()  # ping, and event types added later

    def _delta(self, chunk: dict[str, Any]) -> Sequence[StreamEvent]:
        delta = chunk["delta"]
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            return [TextDelta(text)] if text else ()
        if dtype == "input_json_delta":
            part = delta.get("partial_json")
            if not part:
                return ()
            index = chunk.get("index", 0)
            if index == self._json_block:
                return [TextDelta(part)]
            tool = self._tools.get(index)
            if tool is None:
                return ()  # a server tool's input
            self._args_seen.add(index)
            return [ToolCallDelta(index=tool, arguments=part)]
        if dtype in ("thinking_delta", "signature_delta"):
            block = self._thinking.get(chunk.get("index", 0))
            if block is None:
                return ()
            if dtype == "signature_delta":
                return [ThinkingDelta(block, signature=delta.get("signature") or "")]
            text = delta.get("thinking")
            return [ThinkingDelta(block, text)] if text else ()
        return ()  # citation deltas

    def _block_start(self, chunk: dict[str, Any]) -> Sequence[StreamEvent]:
        block = chunk.get("content_block") or {}
        btype = block.get("type")
        if btype == "text":
            text = block.get("text")
            return [TextDelta(text)] if text else ()
        if btype == "tool_use":
            index = chunk.get("index", 0)
            if block.get("name") == JSON_TOOL:
                self._json_block = index
                return ()
            tool = len(self._tools)
            self._tools[index] = tool
            return [ToolCallDelta(index=tool, id=block.get("id"), name=block.get("name"))]
        if btype in ("thinking", "redacted_thinking"):
            thinking = self._thinking[chunk.get("index", 0)] = len(self._thinking)
            if btype == "redacted_thinking":
                return [ThinkingDelta(thinking, block.get("data") or "", redacted=True)]
            text = block.get("thinking")
            return [ThinkingDelta(thinking, text)] if text else ()
        return ()

    def _take_usage(self, u: dict[str, Any] | None) -> None:
        if not u:
            return
        value = u.get("input_tokens")
        if value is not None:
            self._input = value
        value = u.get("cache_read_input_tokens")
        if value is not None:
            self._cache_read = value
        value = u.get("cache_creation_input_tokens")
        if value is not None:
            self._cache_write = value
        if isinstance(u.get("cache_creation"), dict):
            self._cache_write_1h = _written_1h(u)
        if isinstance(u.get("output_tokens_details"), dict):
            self._thought = _thought(u)
        value = u.get("output_tokens")
        if value is not None:
            self._output = value
