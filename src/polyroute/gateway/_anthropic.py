"""The Anthropic Messages API, served: ``POST /v1/messages`` (JSON and SSE).

Inbound counterpart of :mod:`polyroute.providers.anthropic`, and its mirror:

- ``system`` (a string or text blocks) becomes a system message; a user
  turn's ``tool_result`` blocks become tool messages, placed before the turn's
  text (the order OpenAI-style upstreams need: results right after the calls);
  an assistant turn's ``tool_use`` blocks become its tool calls (their ``input``
  as JSON text).
- ``max_tokens`` is required, as the API requires it; ``top_k`` is carried
  where the vendor has it (refused by name elsewhere). Any field polyroute does
  not carry, at any depth, is a 400 naming it; fields the SDK dumps back as
  ``null`` (``citations``, ``toolset_name``) are unset, and a tool call's
  ``caller`` may say ``direct`` (the model's own call, as every call here is).
- ``thinking`` (a budget) is the request's reasoning; an assistant turn's
  ``thinking`` / ``redacted_thinking`` blocks are kept first in its content,
  signatures unchanged, for an Anthropic upstream (others leave them out).
  Answers carry thinking blocks first (JSON, and ``thinking_delta`` /
  ``signature_delta`` in streams).
- Streams are the API's events: ``message_start``, ``ping``, per content block
  ``content_block_start`` / ``content_block_delta`` (``text_delta``,
  ``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (stop
  reason, usage) and ``message_stop``. Input tokens are known only at the end
  (OpenAI-style upstreams report usage last), so ``message_start`` says 0 and
  ``message_delta`` carries the totals, which the SDK reads as cumulative.
- A failure after the first token is an ``event: error`` frame.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from polyroute.errors import GatewayError
from polyroute.events import StreamEnd, StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta
from polyroute.gateway._wire import (
    MAX_TOKENS,
    Body,
    Hints,
    Inbound,
    Null,
    Problem,
    ProblemKind,
    Reply,
    StreamEncoder,
    compact,
    dumps,
    invalid,
    new_id,
    sse,
    tool_arguments,
)
from polyroute.types import (
    CacheControl,
    ChatRequest,
    DocumentPart,
    ImagePart,
    JsonSchema,
    Message,
    Part,
    Reasoning,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCall,
    Usage,
)

# -- the request body ------------------------------------------------------------


class _CacheControl(Body):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] = "5m"


class _Text(Body):
    type: Literal["text"]
    text: str
    cache_control: _CacheControl | None = None
    citations: Null = None


class _Source(Body):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class _Image(Body):
    type: Literal["image"]
    source: _Source
    cache_control: _CacheControl | None = None


class _DocumentSource(Body):
    type: Literal["base64", "url", "text"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class _Citations(Body):
    enabled: bool = False


class _Document(Body):
    type: Literal["document"]
    source: _DocumentSource
    title: str | None = None
    context: str | None = None
    citations: _Citations | None = None
    cache_control: _CacheControl | None = None


class _Caller(Body):
    type: Literal["direct"]


class _ToolUse(Body):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    cache_control: _CacheControl | None = None
    caller: _Caller | None = None
    toolset_name: Null = None


_ResultPart = Annotated[_Text | _Image, Field(discriminator="type")]


class _Thinking(Body):
    type: Literal["thinking"]
    thinking: str
    signature: str


class _RedactedThinking(Body):
    type: Literal["redacted_thinking"]
    data: str


class _ToolResult(Body):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[_ResultPart] = ""
    is_error: bool = False
    cache_control: _CacheControl | None = None


_Block = Annotated[
    _Text | _Image | _Document | _ToolUse | _ToolResult | _Thinking | _RedactedThinking,
    Field(discriminator="type"),
]


class _Message(Body):
    role: Literal["user", "assistant"]
    content: str | list[_Block]


class _Tool(Body):
    name: str = Field(min_length=1)
    description: str = ""
    input_schema: dict[str, Any]
    cache_control: _CacheControl | None = None
    strict: bool | None = None
    type: Literal["custom"] | None = None
    eager_input_streaming: bool | None = None
    """The Vercel AI SDK's default with tools in a stream: carried to Anthropic upstreams."""


class _ToolChoice(Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class _OutputFormat(Body):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class _OutputConfig(Body):
    format: _OutputFormat | None = None


class _Metadata(Body):
    user_id: str | None = None


class _ThinkingConfig(Body):
    type: Literal["enabled", "disabled"]
    budget_tokens: int | None = Field(None, ge=1024, le=MAX_TOKENS)


class MessagesBody(Body):
    """``POST /v1/messages``: the fields polyroute carries."""

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=MAX_TOKENS)
    messages: list[_Message] = Field(min_length=1)
    system: str | list[_Text] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1, le=MAX_TOKENS)
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    metadata: _Metadata | None = None
    thinking: _ThinkingConfig | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    output_config: _OutputConfig | None = None
    output_format: _OutputFormat | None = None
    """The structured-outputs beta's name for ``output_config.format``."""
    stream: bool = False
    polyroute: Hints | None = None


def mark(cache_control: _CacheControl | None) -> CacheControl | None:
    """A block's ``cache_control`` as our breakpoint."""
    return None if cache_control is None else CacheControl(cache_control.ttl)


def _image(source: _Source, where: str, cache_control: _CacheControl | None = None) -> ImagePart:
    cache = mark(cache_control)
    if source.type == "url":
        if not source.url:
            raise GatewayError(f"{where}.source.url: field required", param=f"{where}.source.url")
        return ImagePart(url=source.url, cache_control=cache)
    if not source.data or not source.media_type:
        raise GatewayError(
            f"{where}.source: a base64 image needs data and media_type", param=f"{where}.source"
        )
    return ImagePart(data=source.data, media_type=source.media_type, cache_control=cache)


def _document(b: _Document, where: str) -> DocumentPart:
    """A ``document`` block: a PDF by data or URL, or plain text (carried as base64 data).
    Citations and ``context`` have no counterpart elsewhere: refused by name."""
    if b.citations is not None and b.citations.enabled:
        raise GatewayError(
            f"{where}.citations: citations are not carried", param=f"{where}.citations"
        )
    if b.context is not None:
        raise GatewayError(f"{where}.context: not carried", param=f"{where}.context")
    source, cache = b.source, mark(b.cache_control)
    if source.type == "url":
        if not source.url:
            raise GatewayError(f"{where}.source.url: field required", param=f"{where}.source.url")
        return DocumentPart(url=source.url, filename=b.title, cache_control=cache)
    if source.data is None:
        raise GatewayError(f"{where}.source.data: field required", param=f"{where}.source.data")
    if source.type == "text":
        data = base64.b64encode(source.data.encode()).decode()
        return DocumentPart(
            data=data, media_type="text/plain", filename=b.title, cache_control=cache
        )
    return DocumentPart(
        data=source.data,
        media_type=source.media_type or "application/pdf",
        filename=b.title,
        cache_control=cache,
    )


def _parts(blocks: Sequence[_Text | _Image | _Document], where: str) -> str | tuple[Part, ...]:
    out: list[Part] = []
    for i, b in enumerate(blocks):
        if isinstance(b, _Text):
            out.append(TextPart(b.text, mark(b.cache_control)))
        elif isinstance(b, _Document):
            out.append(_document(b, f"{where}.{i}"))
        else:
            out.append(_image(b.source, f"{where}.{i}", b.cache_control))
    return compact(tuple(out))


def _turn(m: _Message, i: int, names: dict[str, str]) -> list[Message]:
    """One turn as our messages (a user turn with tool results gives several)."""
    if isinstance(m.content, str):
        return [Message(m.role, m.content)]
    where = f"messages.{i}.content"
    if m.role == "assistant":
        texts: list[TextPart] = []
        thoughts: list[ThinkingPart] = []  # kept first, with their signatures, for the way back
        calls: list[ToolCall] = []
        last: CacheControl | None = None  # a breakpoint on the turn's last tool_use
        for j, b in enumerate(m.content):
            if isinstance(b, _Text):
                texts.append(TextPart(b.text, mark(b.cache_control)))
            elif isinstance(b, _Thinking):
                thoughts.append(ThinkingPart(b.thinking, b.signature))
            elif isinstance(b, _RedactedThinking):
                thoughts.append(ThinkingPart(b.data, redacted=True))
            elif isinstance(b, _ToolUse):
                names[b.id] = b.name
                calls.append(ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False)))
                if b.cache_control is not None:
                    if j != len(m.content) - 1:
                        raise GatewayError(
                            f"{where}.{j}.cache_control: on a tool_use block, only the "
                            "turn's last block can carry a cache breakpoint",
                            param=f"{where}.{j}.cache_control",
                        )
                    last = mark(b.cache_control)
            else:
                raise GatewayError(
                    f"{where}.{j}: an assistant turn takes text and tool_use blocks",
                    param=f"{where}.{j}",
                )
        content: str | tuple[Part, ...] = (*thoughts, *texts) if thoughts else compact(tuple(texts))
        return [Message("assistant", content, tuple(calls), cache_control=last)]
    out: list[Message] = []
    rest: list[_Text | _Image | _Document] = []
    for j, b in enumerate(m.content):
        if isinstance(b, _ToolResult):
            content = b.content if isinstance(b.content, str) else _parts(b.content, where)
            out.append(
                Message(
                    "tool",
                    content,
                    tool_call_id=b.tool_use_id,
                    name=names.get(b.tool_use_id),
                    cache_control=mark(b.cache_control),
                    is_error=b.is_error,
                )
            )
        elif isinstance(b, _ToolUse | _Thinking | _RedactedThinking):
            raise GatewayError(
                f"{where}.{j}: {b.type} blocks belong in assistant turns", param=f"{where}.{j}"
            )
        else:
            rest.append(b)
    if rest or not out:
        out.append(Message("user", _parts(rest, where)))
    return out


def _tool_choice(choice: _ToolChoice | None) -> str | None:
    if choice is None:
        return None
    if choice.type == "tool":
        if not choice.name:
            raise GatewayError(
                "tool_choice.name: required for type 'tool'", param="tool_choice.name"
            )
        return choice.name
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def _output_format(body: MessagesBody) -> Literal["text"] | JsonSchema:
    """Structured outputs: Anthropic's schemas are always enforced, so ``strict``."""
    config = body.output_config.format if body.output_config is not None else None
    if config is not None and body.output_format is not None:
        raise GatewayError(
            "output_format: give output_config.format or output_format, not both",
            param="output_format",
        )
    fmt = config or body.output_format
    if fmt is None:
        return "text"
    return JsonSchema("output", fmt.schema_, strict=True)


def _reasoning(body: MessagesBody) -> Reasoning | None:
    """``thinking``: a budget, checked as the API checks it; ``disabled`` is the default."""
    config = body.thinking
    if config is None or config.type == "disabled":
        return None
    budget = config.budget_tokens
    if budget is None:
        raise GatewayError("thinking.budget_tokens: field required", param="thinking.budget_tokens")
    if body.max_tokens is not None and budget >= body.max_tokens:
        raise GatewayError(
            "thinking.budget_tokens: must be less than max_tokens",
            param="thinking.budget_tokens",
        )
    return Reasoning(budget_tokens=budget)


def _request(body: MessagesBody) -> ChatRequest:
    messages: list[Message] = []
    system = body.system
    if isinstance(system, list) and any(b.cache_control for b in system):
        # kept as blocks: each breakpoint stays where it was
        parts = tuple(TextPart(b.text, mark(b.cache_control)) for b in system)
        messages.append(Message("system", parts))
    elif system:
        text = system if isinstance(system, str) else "\n\n".join(b.text for b in system)
        messages.append(Message.system(text))
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results that answer them
    for i, m in enumerate(body.messages):
        messages.extend(_turn(m, i, names))
    return ChatRequest.new(
        model=body.model,
        messages=tuple(messages),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=tuple(body.stop_sequences or ()),
        tools=tuple(
            Tool(
                t.name,
                t.description,
                t.input_schema,
                strict=t.strict,
                cache_control=mark(t.cache_control),
                eager_input_streaming=t.eager_input_streaming,
            )
            for t in body.tools or ()
        ),
        response_format=_output_format(body),
        tool_choice=_tool_choice(body.tool_choice),
        user=body.metadata.user_id if body.metadata is not None else None,
        reasoning=_reasoning(body),
        parallel_tool_calls=_parallel(body.tool_choice),
        # in OpenAI's words, as ChatRequest keeps it: "standard_only" is its "default"
        service_tier="default" if body.service_tier == "standard_only" else body.service_tier,
        top_k=body.top_k,
    )


def _parallel(choice: _ToolChoice | None) -> bool | None:
    """``disable_parallel_tool_use`` as ``parallel_tool_calls`` (unset stays unset)."""
    if choice is None or choice.disable_parallel_tool_use is None:
        return None
    return not choice.disable_parallel_tool_use


class CountTokensBody(MessagesBody):
    """``POST /v1/messages/count_tokens``: ``/v1/messages``'s body; ``max_tokens`` is
    optional (what shapes an answer does not change the count)."""

    # optional here (a count has no answer to bound); _request reads it as unset
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)  # type: ignore[assignment]


def parse_count_tokens(raw: bytes) -> Inbound:
    """A count request as a chat request (nothing is generated from it)."""
    try:
        body = CountTokensBody.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc, raw) from None
    return Inbound.new(_request(body), stream=False, hints=body.polyroute)


# -- rendering ---------------------------------------------------------------------

# problem families -> Anthropic error types (the SDK picks its exception by status)
_TYPES: Mapping[ProblemKind, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "budget": "rate_limit_error",
    "rate_limit": "rate_limit_error",
    "upstream": "api_error",
    "timeout": "timeout_error",
    "internal": "api_error",
}

_STOP: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def _stop_reason(finish: str, raw: str | None, stop_sequence: str | None, tools: bool) -> str:
    """Tool calls make it ``tool_use`` whatever the upstream called the end (OpenAI-style
    upstreams may say ``stop``): an agent loop reads ``end_turn`` as done."""
    if stop_sequence is not None or raw == "stop_sequence":
        return "stop_sequence"
    if tools and finish in ("stop", "tool_calls"):
        return "tool_use"
    return _STOP.get(finish, "end_turn")


def _usage(u: Usage, *, split: bool = True) -> dict[str, Any]:
    """``input_tokens`` excludes cache reads and writes, as the API counts them; ``split``:
    with ``cache_creation``, the writes by lifetime (a stream's ``message_delta`` has none)."""
    out: dict[str, Any] = {
        "input_tokens": max(0, u.prompt_tokens - u.cached_tokens - u.cache_write_tokens),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
    }
    if split:
        out["cache_creation"] = {
            "ephemeral_5m_input_tokens": u.cache_write_tokens - u.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens,
        }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def error_object(problem: Problem) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _TYPES[problem.kind], "message": problem.message}}


_BETA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def with_betas(inbound: Inbound, values: Sequence[str]) -> Inbound:
    """The request with the ``anthropic-beta`` header's features (comma-separated, the header
    repeatable), forwarded to Anthropic upstreams whatever API the caller speaks."""
    if not values:
        return inbound
    betas = [b.strip() for v in values for b in v.split(",") if b.strip()]
    if not betas:
        return inbound
    for b in betas:
        if not _BETA.fullmatch(b):
            raise GatewayError(
                f"anthropic-beta: {b[:40]!r} is not a beta feature name", param="anthropic-beta"
            )
    request = replace(inbound.request, betas=tuple(dict.fromkeys(betas)))
    return replace(inbound, request=request)


class AnthropicMessages:
    """``/v1/messages``: see the module docs."""

    def parse(self, raw: bytes) -> Inbound:
        try:
            body = MessagesBody.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid(exc, raw) from None
        return Inbound.new(_request(body), stream=body.stream, hints=body.polyroute)

    def render(self, reply: Reply) -> bytes:
        content: list[dict[str, Any]] = [_thinking_block(t) for t in reply.thinking]
        text = reply.content + (reply.refusal or "")  # Messages has no refusal: it is text
        if text or not reply.tool_calls:
            content.append({"type": "text", "text": text})
        content.extend(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": tool_arguments(c.arguments)}
            for c in reply.tool_calls
        )
        return dumps(
            {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": reply.model,
                "content": content,
                "stop_reason": _stop_reason(
                    reply.finish_reason,
                    reply.raw_finish_reason,
                    reply.stop_sequence,
                    bool(reply.tool_calls),
                ),
                "stop_sequence": reply.stop_sequence,
                "usage": _usage(reply.usage),
            }
        )

    def encoder(self, inbound: Inbound, model: str) -> StreamEncoder:
        return _Events(model)

    def error_body(self, problem: Problem) -> bytes:
        return dumps(error_object(problem))


def _thinking_block(t: ThinkingPart) -> dict[str, Any]:
    """A thinking block; another vendor's reasoning has no signature, so its is empty (an
    Anthropic upstream would refuse it, and polyroute leaves such blocks out)."""
    if t.redacted:
        return {"type": "redacted_thinking", "data": t.text}
    return {"type": "thinking", "thinking": t.text, "signature": t.signature or ""}


_PING = sse({"type": "ping"}, "ping")


class _Events:
    """Stream events -> Messages stream events, one content block open at a time."""

    __slots__ = ("_model", "_next", "_open", "_started", "_text", "_thinking", "_tools")

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._open: int | None = None  # the open block's index
        self._next = 0  # the next block's index
        self._tools: dict[int, int] = {}  # tool call index -> its block's index
        self._thinking: dict[int, int] = {}  # thinking block index -> its block's index
        self._text: bytes | None = None  # a text delta's frame up to its text, while one is open

    def _start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse({"type": "message_start", "message": message}, "message_start") + _PING

    def _close(self) -> bytes:
        self._text = None
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return sse({"type": "content_block_stop", "index": index}, "content_block_stop")

    def _block(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._open = self._next
        self._next += 1
        start = {"type": "content_block_start", "index": self._open, "content_block": block}
        return out + sse(start, "content_block_start")

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse(
            {"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"
        )

    def event(self, event: StreamEvent) -> bytes:
        if self._text is not None and type(event) is TextDelta:  # the common case, at once
            return self._text + dumps(event.text) + b"}}\n\n" if event.text else b""
        out = b"" if self._started else self._start()
        if isinstance(event, TextDelta):
            if not event.text:
                return out
            if (
                self._open is None
                or (self._tools and self._open in self._tools.values())
                or (self._thinking and self._open in self._thinking.values())
            ):
                out += self._block({"type": "text", "text": ""})
            assert self._open is not None
            # what _delta writes for text, up to the text itself
            self._text = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                + str(self._open).encode()
                + b',"delta":{"type":"text_delta","text":'
            )
            return out + self._delta(self._open, {"type": "text_delta", "text": event.text})
        if isinstance(event, ThinkingDelta):
            return out + self._thought(event)
        if isinstance(event, ToolCallDelta):
            index = self._tools.get(event.index)
            if index is None:
                out += self._block(
                    {
                        "type": "tool_use",
                        "id": event.id or new_id("toolu_"),
                        "name": event.name or "",
                        "input": {},
                    }
                )
                assert self._open is not None
                index = self._tools[event.index] = self._open
            if event.arguments:
                delta = {"type": "input_json_delta", "partial_json": event.arguments}
                out += self._delta(index, delta)
            return out
        if isinstance(event, StreamEnd):
            if event.refusal:  # Messages has no refusal: it is text
                out += self.event(TextDelta(event.refusal))
            end: dict[str, Any] = {
                "type": "message_delta",
                "delta": {
                    "stop_reason": _stop_reason(
                        event.finish_reason,
                        event.raw_finish_reason,
                        event.stop_sequence,
                        bool(self._tools),
                    ),
                    "stop_sequence": event.stop_sequence,
                },
                "usage": _usage(event.usage, split=False),
            }
            return (
                out
                + self._close()
                + sse(end, "message_delta")
                + sse({"type": "message_stop"}, "message_stop")
            )
        return out  # StreamStart: message_start is already out

    def _thought(self, event: ThinkingDelta) -> bytes:
        out = b""
        index = self._thinking.get(event.index)
        if index is None:
            if event.redacted:  # the API sends redacted data whole, in the block's start
                out += self._block({"type": "redacted_thinking", "data": event.text})
                assert self._open is not None
                self._thinking[event.index] = self._open
                return out
            out += self._block({"type": "thinking", "thinking": "", "signature": ""})
            assert self._open is not None
            index = self._thinking[event.index] = self._open
        if event.text and not event.redacted:
            out += self._delta(index, {"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            out += self._delta(index, {"type": "signature_delta", "signature": event.signature})
        return out

    def error(self, problem: Problem) -> bytes:
        return sse(error_object(problem), "error")


def _model(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": "1970-01-01T00:00:00Z",
    }


def render_model(model_id: str) -> bytes:
    """One model object (``GET /v1/models/{id}``)."""
    return dumps(_model(model_id))


def render_models(models: Sequence[tuple[str, str]]) -> bytes:
    """``(id, owner)`` pairs as the Models API's list page (one page, every model)."""
    data = [_model(mid) for mid, _ in models]
    return dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )
