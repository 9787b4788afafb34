"""The OpenAI API, served: Chat Completions (JSON and SSE), Embeddings, Models.

Inbound counterpart of :mod:`polyroute.providers.openai`. Request bodies are
checked with pydantic (``model_validate_json`` parses and checks in one pass);
a field polyroute does not carry, at any depth, is a 400 naming it (DESIGN.md
§9). An answer sent back as the SDK returned it is taken: its
``reasoning_content`` is the turn's reasoning (an unsigned thinking part, which
no upstream takes back), a ``refusal`` is what it said, fields the SDK dumps as
``null`` are unset, and its own parse of the content and of tool arguments
(``parsed``, ``parsed_arguments``) goes with what it parsed. ``n`` > 1 renders
as ``choices[i]``, ``logprobs`` as each choice's ``logprobs.content``; neither
streams (refused by name). A ``file`` part is a document (its ``file_data``; a
``file_id`` names a file only OpenAI has, refused). Streams are
``chat.completion.chunk`` frames ending ``data: [DONE]``; with
``stream_options.include_usage`` the last chunk before it has empty ``choices``
and the usage. A failure after the first token is a ``data: {"error": ...}``
frame and no ``[DONE]``: the official SDK raises on it. ``reasoning_effort`` is
the request's reasoning; an answer's reasoning goes back as ``reasoning_content``
(message and deltas), as DeepSeek, vLLM and LiteLLM send it.
"""

from __future__ import annotations

import base64
import sys
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from polyroute.errors import GatewayError
from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
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
)
from polyroute.types import (
    CacheControl,
    ChatRequest,
    DocumentPart,
    EmbeddingRequest,
    ImagePart,
    JsonSchema,
    Message,
    Part,
    Reasoning,
    TextPart,
    ThinkingPart,
    TokenLogprob,
    ToolCall,
    Usage,
)
from polyroute.types import Tool as OurTool

# -- the request body ------------------------------------------------------------


class _CacheControl(Body):
    """Anthropic's prompt-cache breakpoint, taken on parts and tools as LiteLLM and
    OpenRouter take it, so an OpenAI client can cache on an Anthropic upstream."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] = "5m"

    def mark(self) -> CacheControl:
        return CacheControl(self.ttl)


class _Text(Body):
    type: Literal["text"]
    text: str
    cache_control: _CacheControl | None = None


class _ImageURL(Body):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class _Image(Body):
    type: Literal["image_url"]
    image_url: _ImageURL
    cache_control: _CacheControl | None = None


class _FileData(Body):
    file_data: str | None = None
    """A data URL: ``data:application/pdf;base64,...``."""
    file_id: str | None = None
    filename: str | None = None


class _File(Body):
    type: Literal["file"]
    file: _FileData
    cache_control: _CacheControl | None = None


_Part = Annotated[_Text | _Image | _File, Field(discriminator="type")]


class _Function(Body):
    name: str
    arguments: str = ""
    parsed_arguments: Any = None
    """The SDK's own parse of ``arguments`` (``pydantic_function_tool``), sent back with it:
    ``arguments`` are carried."""


class _Call(Body):
    id: str
    type: Literal["function"] = "function"
    function: _Function


class _Message(Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None
    name: str | None = None
    tool_calls: list[_Call] | None = None
    tool_call_id: str | None = None
    cache_control: _CacheControl | None = None
    """LiteLLM's form: a breakpoint on the message's last block."""
    refusal: str | None = None
    reasoning_content: str | None = None
    """An answer's reasoning as polyroute (and DeepSeek, vLLM) sends it, sent back."""
    audio: Null = None
    function_call: Null = None
    annotations: Null = None
    parsed: Any = None
    """The SDK's own parse of ``content`` (``chat.completions.parse``), sent back with the
    message: the content is carried."""


class _FunctionDef(Body):
    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


class _Tool(Body):
    type: Literal["function"] = "function"
    function: _FunctionDef
    cache_control: _CacheControl | None = None


class _Named(Body):
    name: str = Field(min_length=1)


class _ToolChoice(Body):
    type: Literal["function"] = "function"
    function: _Named


class _JsonSchema(Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class _ResponseFormat(Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _StreamOptions(Body):
    include_usage: bool = False


_TokenId = Annotated[str, Field(pattern=r"^[0-9]+$")]
_Bias = Annotated[float, Field(ge=-100, le=100)]


class ChatBody(Body):
    """``POST /v1/chat/completions``: the fields polyroute carries."""

    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    tools: list[_Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | _ToolChoice | None = None
    response_format: _ResponseFormat | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI's
    user: str | None = None
    n: int | None = Field(None, ge=1, le=128)  # null as "unset", as OpenAI takes it
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[_TokenId, _Bias] | None = None
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    polyroute: Hints | None = None


def _marked(message: Message, cache_control: _CacheControl | None) -> Message:
    """A message-level ``cache_control`` (LiteLLM's form): a breakpoint on its last block."""
    if cache_control is None:
        return message
    return replace(message, cache_control=cache_control.mark())


def _content(content: str | list[_Part] | None, where: str) -> str | tuple[Part, ...]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return compact(tuple(_part(p, f"{where}.{j}") for j, p in enumerate(content)))


def _part(p: _Part, where: str) -> Part:
    cache = None if p.cache_control is None else p.cache_control.mark()
    if isinstance(p, _Text):
        return TextPart(p.text, cache)
    if isinstance(p, _File):
        return _document(p.file, cache, f"{where}.file")
    return ImagePart(url=p.image_url.url, detail=p.image_url.detail, cache_control=cache)


def _document(f: _FileData, cache: CacheControl | None, where: str) -> DocumentPart:
    """A ``file`` part's data URL as a document; a ``file_id`` (OpenAI's Files API) is
    refused by name: no other upstream can read it."""
    if f.file_id is not None:
        raise GatewayError(
            f"{where}.file_id: files by id are not carried; send file_data",
            param=f"{where}.file_id",
        )
    head, comma, data = (f.file_data or "").partition(",")
    if not (head.startswith("data:") and head.endswith(";base64") and comma and data):
        raise GatewayError(
            f"{where}.file_data: a base64 data URL is required (data:<type>;base64,...)",
            param=f"{where}.file_data",
        )
    media_type = head[5:-7] or "application/pdf"
    return DocumentPart(data=data, media_type=media_type, filename=f.filename, cache_control=cache)


def _message(m: _Message, i: int) -> Message:
    if m.role != "assistant":
        for name in ("refusal", "reasoning_content"):
            if getattr(m, name) is not None:
                raise GatewayError(
                    f"messages.{i}.{name}: only an assistant message has one",
                    param=f"messages.{i}.{name}",
                )
    if m.role == "tool":
        if not m.tool_call_id:
            raise GatewayError(
                f"messages.{i}.tool_call_id: required for role 'tool'",
                param=f"messages.{i}.tool_call_id",
            )
        content = _content(m.content, f"messages.{i}.content")
        return Message("tool", content, tool_call_id=m.tool_call_id, name=m.name)
    if m.role == "assistant":
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()
        )
        return Message("assistant", _assistant_content(m, i), tool_calls=calls, name=m.name)
    if m.content is None:
        raise GatewayError(
            f"messages.{i}.content: required for role {m.role!r}", param=f"messages.{i}.content"
        )
    role = "system" if m.role == "developer" else m.role
    return Message.new(role, _content(m.content, f"messages.{i}.content"), name=m.name)


def _assistant_content(m: _Message, i: int) -> str | tuple[Part, ...]:
    """An assistant turn's content; a ``refusal`` is what it said, and its
    ``reasoning_content`` leads as a thinking part (unsigned: no upstream gets it back)."""
    content = _content(m.content, f"messages.{i}.content")
    if m.refusal is not None:
        if content:
            raise GatewayError(
                f"messages.{i}.refusal: give content or refusal, not both",
                param=f"messages.{i}.refusal",
            )
        content = m.refusal
    if not m.reasoning_content:
        return content
    parts = (TextPart(content),) if isinstance(content, str) and content else content or ()
    return (ThinkingPart(m.reasoning_content), *parts)


def _response_format(fmt: _ResponseFormat | None) -> Literal["text", "json"] | JsonSchema:
    if fmt is None or fmt.type == "text":
        return "text"
    if fmt.type == "json_object":
        return "json"
    spec = fmt.json_schema
    if spec is None:
        raise GatewayError(
            "response_format.json_schema: required for type 'json_schema'",
            param="response_format.json_schema",
        )
    return JsonSchema(spec.name, spec.schema_, spec.strict, spec.description)


def _request(body: ChatBody) -> ChatRequest:
    choice = body.tool_choice
    stop = body.stop
    return ChatRequest.new(
        model=body.model,
        messages=tuple(
            _marked(_message(m, i), m.cache_control) for i, m in enumerate(body.messages)
        ),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        tools=_tools(body.tools),
        tool_choice=choice if choice is None or isinstance(choice, str) else choice.function.name,
        response_format=_response_format(body.response_format),
        seed=body.seed,
        user=body.user,
        parallel_tool_calls=body.parallel_tool_calls,
        n=body.n or 1,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs,
        metadata=body.metadata,
        store=body.store,
        service_tier=body.service_tier,
        reasoning=None if body.reasoning_effort is None else Reasoning(body.reasoning_effort),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias,
    )


def _tools(tools: list[_Tool] | None) -> tuple[OurTool, ...]:
    if not tools:
        return ()
    return tuple(
        OurTool(
            t.function.name,
            t.function.description,
            t.function.parameters,
            strict=t.function.strict,
            cache_control=None if t.cache_control is None else t.cache_control.mark(),
        )
        for t in tools
    )


# -- rendering ---------------------------------------------------------------------

# our finish reasons -> OpenAI's ("error" and "other" have no counterpart: "stop")
_FINISH: Mapping[str, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}

# problem families -> OpenAI error types
_TYPES: Mapping[ProblemKind, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "too_large": "invalid_request_error",
    "budget": "budget_exceeded",
    "rate_limit": "rate_limit_error",
    "upstream": "server_error",
    "timeout": "timeout_error",
    "internal": "server_error",
}


def error_object(problem: Problem) -> dict[str, Any]:
    return {
        "message": problem.message,
        "type": _TYPES[problem.kind],
        "param": problem.param,
        "code": problem.code,
    }


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage; cache writes have no field of their own (OpenAI bills none)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _tool_call(c: ToolCall) -> dict[str, Any]:
    return {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}


def _refuse_streamed(body: ChatBody) -> None:
    """Stream chunks carry one answer's text: ``n`` > 1 and ``logprobs`` are refused there."""
    if body.n is not None and body.n > 1:
        raise GatewayError("n: more than one choice cannot stream; drop stream or n", param="n")
    if body.logprobs:
        raise GatewayError(
            "logprobs: log probabilities are not streamed; drop stream or logprobs",
            param="logprobs",
        )


def _logprobs(items: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    """Our log probabilities as a choice's ``logprobs`` (bytes: the token's UTF-8)."""
    if items is None:
        return None
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.token.encode()),
                "top_logprobs": [
                    {"token": tok, "logprob": lp, "bytes": list(tok.encode())} for tok, lp in t.top
                ],
            }
            for t in items
        ],
        "refusal": None,
    }


def thinking_text(thinking: Sequence[ThinkingPart]) -> str:
    """Reasoning as OpenAI-style clients read it: ``reasoning_content``, the field DeepSeek,
    vLLM and LiteLLM use (Chat Completions has none; the SDK keeps unknown fields). Redacted
    blocks are encrypted data, not text: left out."""
    if not thinking:  # the usual reply: no generator for nothing
        return ""
    return "\n\n".join(t.text for t in thinking if not t.redacted and t.text)


def _choice(
    index: int,
    content: str,
    calls: Sequence[ToolCall],
    finish: str,
    logprobs: Sequence[TokenLogprob] | None,
    refusal: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if refusal is not None and not content:
        message["content"] = None  # as OpenAI sends a refusal
    if calls:
        message["tool_calls"] = [_tool_call(c) for c in calls]
        message["content"] = content or None
    return {
        "index": index,
        "message": message,
        "logprobs": _logprobs(logprobs),
        "finish_reason": _FINISH.get(finish, "stop"),
    }


class OpenAIChat:
    """``/v1/chat/completions``: see the module docs."""

    def parse(self, raw: bytes) -> Inbound:
        try:
            body = ChatBody.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid(exc, raw) from None
        options = body.stream_options
        if body.stream:
            _refuse_streamed(body)
        return Inbound.new(
            _request(body),
            stream=bool(body.stream),
            hints=body.polyroute,
            include_usage=options is not None and options.include_usage,
        )

    def render(self, reply: Reply) -> bytes:
        choices = [
            _choice(
                0,
                reply.content,
                reply.tool_calls,
                reply.finish_reason,
                reply.logprobs,
                reply.refusal,
            )
        ]
        if reply.alternatives:
            choices.extend(
                _choice(i, a.content, a.tool_calls, a.finish_reason, a.logprobs)
                for i, a in enumerate(reply.alternatives, 1)
            )
        reasoning = thinking_text(reply.thinking)
        if reasoning:
            choices[0]["message"]["reasoning_content"] = reasoning
        return dumps(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": reply.model,
                "choices": choices,
                "usage": usage_body(reply.usage),
            }
        )

    def encoder(self, inbound: Inbound, model: str) -> StreamEncoder:
        return _Chunks(model, inbound.include_usage)

    def error_body(self, problem: Problem) -> bytes:
        return dumps({"error": error_object(problem)})


_TEXT_END = b'},"logprobs":null,"finish_reason":null}]}\n\n'


class _Chunks:
    """Stream events -> ``chat.completion.chunk`` frames. Every chunk shares its head and
    tail bytes, so a text delta costs one small JSON encoding."""

    __slots__ = ("_head", "_include_usage", "_started", "_text", "_tools", "_usage_head")

    def __init__(self, model: str, include_usage: bool) -> None:
        common = dumps(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
            }
        )[:-1]  # without the closing brace: the rest follows
        self._usage_head = b"data: " + common
        tail = b',"usage":null' if include_usage else b""
        self._head = self._usage_head + tail + b',"choices":[{"index":0,"delta":'
        self._text = self._head + b'{"content":'  # a text delta's chunk up to its text
        self._include_usage = include_usage
        self._started = False
        self._tools: set[int] = set()

    def _chunk(self, delta: Any, finish: str | None = None) -> bytes:
        end = b',"logprobs":null,"finish_reason":null}]}\n\n'
        if finish is not None:
            end = b',"logprobs":null,"finish_reason":"' + finish.encode() + b'"}]}\n\n'
        return self._head + dumps(delta) + end

    def event(self, event: StreamEvent) -> bytes:
        if self._started and type(event) is TextDelta:  # the common case, at once
            return self._text + dumps(event.text) + _TEXT_END if event.text else b""
        out = b""
        if not self._started:
            self._started = True
            out = self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, TextDelta):
            return out + self._chunk({"content": event.text}) if event.text else out
        if isinstance(event, ThinkingDelta):
            if not event.text or event.redacted:
                return out
            return out + self._chunk({"reasoning_content": event.text})
        if isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            if event.index not in self._tools:  # the first piece names the call
                self._tools.add(event.index)
                call["id"] = event.id or new_id("call_")
                call["type"] = "function"
                call["function"] = {"name": event.name or "", "arguments": event.arguments}
            else:
                call["function"] = {"arguments": event.arguments}
            return out + self._chunk({"tool_calls": [call]})
        if isinstance(event, StreamEnd):
            if event.refusal is not None:
                out += self._chunk({"refusal": event.refusal})
            out += self._chunk({}, _FINISH.get(event.finish_reason, "stop"))
            if self._include_usage:
                usage = dumps(usage_body(event.usage))
                out += self._usage_head + b',"choices":[],"usage":' + usage + b"}\n\n"
            return out + b"data: [DONE]\n\n"
        assert isinstance(event, StreamStart)
        return out

    def error(self, problem: Problem) -> bytes:
        return sse({"error": error_object(problem)})


# -- embeddings and models -----------------------------------------------------------


MAX_DIMENSIONS = 65536
"""Past any embedding model's width (the widest are 4096): a larger ``dimensions`` is a
caller's mistake, refused before an upstream is paid to refuse it."""


class EmbeddingsBody(Body):
    """``POST /v1/embeddings``: texts, or token ids (one array, or one per input: LangChain's
    default), carried to OpenAI-type upstreams and refused by name by the others."""

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    dimensions: int | None = Field(None, ge=1, le=MAX_DIMENSIONS)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


def _inputs(
    given: str | list[str] | list[int] | list[list[int]],
) -> tuple[str, ...] | tuple[tuple[int, ...], ...]:
    if isinstance(given, str):
        return (given,)
    texts = tuple(i for i in given if isinstance(i, str))
    if len(texts) == len(given):
        return texts
    ids = tuple(i for i in given if isinstance(i, int))
    if len(ids) == len(given):  # one input's token ids
        return (ids,)
    return tuple(tuple(i) for i in given if isinstance(i, list))


def parse_embeddings(raw: bytes) -> tuple[EmbeddingRequest, bool]:
    """The request, and whether vectors go back as base64 (the SDK asks for it)."""
    try:
        body = EmbeddingsBody.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc, raw) from None
    request = EmbeddingRequest(body.model, _inputs(body.input), body.dimensions)
    return request, body.encoding_format == "base64"


def _vector(v: Sequence[float], b64: bool) -> list[float] | str:
    if not b64:
        return list(v)
    floats = array("f", v)
    if sys.byteorder == "big":  # OpenAI's base64 embeddings are little-endian float32
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode()


def render_embeddings(
    model: str, vectors: Sequence[Sequence[float]], usage: Usage, b64: bool
) -> bytes:
    return dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _vector(v, b64)}
                for i, v in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        }
    )


def _model(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def render_models(models: Sequence[tuple[str, str]]) -> bytes:
    """``(id, owner)`` pairs as the models list."""
    return dumps({"object": "list", "data": [_model(mid, owner) for mid, owner in models]})


def render_model(model_id: str, owner: str) -> bytes:
    """One model object (``GET /v1/models/{id}``)."""
    return dumps(_model(model_id, owner))
