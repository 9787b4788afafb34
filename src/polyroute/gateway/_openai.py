"""The OpenAI API, served: Chat Completions (JSON and SSE), Embeddings, Models.

Inbound counterpart of :mod:`polyroute.providers.openai`. Request bodies are
checked with pydantic (``model_validate_json`` parses and checks in one pass);
options we do not carry (``logprobs``, ``presence_penalty``...) are ignored as
compatible servers do, and ``n`` above 1 is refused. Streams are
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
    EmbeddingRequest,
    ImagePart,
    JsonSchema,
    Message,
    Part,
    Reasoning,
    TextPart,
    ThinkingPart,
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


class _Image(Body):
    type: Literal["image_url"]
    image_url: _ImageURL
    cache_control: _CacheControl | None = None


_Part = Annotated[_Text | _Image, Field(discriminator="type")]


class _Function(Body):
    name: str
    arguments: str = ""


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
    n: int | None = Field(None, ge=1, le=1)  # null as "unset", as OpenAI takes it
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    polyroute: Hints | None = None


def _marked(message: Message, cache_control: _CacheControl | None) -> Message:
    """A message-level ``cache_control`` (LiteLLM's form): a breakpoint on its last block."""
    if cache_control is None:
        return message
    return replace(message, cache_control=cache_control.mark())


def _content(content: str | list[_Part] | None) -> str | tuple[Part, ...]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return compact(tuple(_part(p) for p in content))


def _part(p: _Part) -> Part:
    cache = None if p.cache_control is None else p.cache_control.mark()
    if isinstance(p, _Text):
        return TextPart(p.text, cache)
    return ImagePart(url=p.image_url.url, cache_control=cache)


def _message(m: _Message, i: int) -> Message:
    if m.role == "tool":
        if not m.tool_call_id:
            raise GatewayError(
                f"messages.{i}.tool_call_id: required for role 'tool'",
                param=f"messages.{i}.tool_call_id",
            )
        return Message("tool", _content(m.content), tool_call_id=m.tool_call_id, name=m.name)
    if m.role == "assistant":
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()
        )
        return Message("assistant", _content(m.content), tool_calls=calls)
    if m.content is None:
        raise GatewayError(
            f"messages.{i}.content: required for role {m.role!r}", param=f"messages.{i}.content"
        )
    return Message("system" if m.role == "developer" else m.role, _content(m.content))


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
    return ChatRequest(
        model=body.model,
        messages=tuple(
            _marked(_message(m, i), m.cache_control) for i, m in enumerate(body.messages)
        ),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        tools=tuple(
            OurTool(
                t.function.name,
                t.function.description,
                t.function.parameters,
                strict=t.function.strict,
                cache_control=None if t.cache_control is None else t.cache_control.mark(),
            )
            for t in body.tools or ()
        ),
        tool_choice=choice if choice is None or isinstance(choice, str) else choice.function.name,
        response_format=_response_format(body.response_format),
        seed=body.seed,
        user=body.user,
        reasoning=None if body.reasoning_effort is None else Reasoning(body.reasoning_effort),
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


def thinking_text(thinking: Sequence[ThinkingPart]) -> str:
    """Reasoning as OpenAI-style clients read it: ``reasoning_content``, the field DeepSeek,
    vLLM and LiteLLM use (Chat Completions has none; the SDK keeps unknown fields). Redacted
    blocks are encrypted data, not text: left out."""
    return "\n\n".join(t.text for t in thinking if not t.redacted and t.text)


class OpenAIChat:
    """``/v1/chat/completions``: see the module docs."""

    def parse(self, raw: bytes) -> Inbound:
        try:
            body = ChatBody.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid(exc, raw) from None
        options = body.stream_options
        return Inbound(
            _request(body),
            stream=bool(body.stream),
            hints=body.polyroute,
            include_usage=options is not None and options.include_usage,
        )

    def render(self, reply: Reply) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        reasoning = thinking_text(reply.thinking)
        if reasoning:
            message["reasoning_content"] = reasoning
        if reply.tool_calls:
            message["tool_calls"] = [_tool_call(c) for c in reply.tool_calls]
            message["content"] = reply.content or None
        return dumps(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": reply.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": _FINISH.get(reply.finish_reason, "stop"),
                    }
                ],
                "usage": usage_body(reply.usage),
            }
        )

    def encoder(self, inbound: Inbound, model: str) -> StreamEncoder:
        return _Chunks(model, inbound.include_usage)

    def error_body(self, problem: Problem) -> bytes:
        return dumps({"error": error_object(problem)})


class _Chunks:
    """Stream events -> ``chat.completion.chunk`` frames. Every chunk shares its head and
    tail bytes, so a text delta costs one small JSON encoding."""

    __slots__ = ("_head", "_include_usage", "_started", "_tools", "_usage_head")

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
        self._include_usage = include_usage
        self._started = False
        self._tools: set[int] = set()

    def _chunk(self, delta: Any, finish: str | None = None) -> bytes:
        end = b',"logprobs":null,"finish_reason":null}]}\n\n'
        if finish is not None:
            end = b',"logprobs":null,"finish_reason":"' + finish.encode() + b'"}]}\n\n'
        return self._head + dumps(delta) + end

    def event(self, event: StreamEvent) -> bytes:
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
    """``POST /v1/embeddings``: text inputs (token-id inputs are refused)."""

    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    dimensions: int | None = Field(None, ge=1, le=MAX_DIMENSIONS)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


def parse_embeddings(raw: bytes) -> tuple[EmbeddingRequest, bool]:
    """The request, and whether vectors go back as base64 (the SDK asks for it)."""
    try:
        body = EmbeddingsBody.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc, raw) from None
    inputs = (body.input,) if isinstance(body.input, str) else tuple(body.input)
    request = EmbeddingRequest(body.model, inputs, body.dimensions)
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
