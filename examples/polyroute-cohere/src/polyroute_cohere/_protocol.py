"""Cohere's v2 Chat API as a polyroute wire protocol.

Wire format: https://docs.cohere.com/reference/chat and the official ``cohere`` SDK
(``cohere.ClientV2``: ``src/cohere/v2/types``). What differs from OpenAI's shape:

- ``POST /v2/chat`` on ``https://api.cohere.com``; the key is ``Authorization: Bearer``.
- Sampling is ``max_tokens``, ``temperature``, ``p`` (top_p), ``k`` (top_k), ``seed``,
  ``stop_sequences``, the two penalties. ``tool_choice`` is ``REQUIRED`` or ``NONE`` (no
  forcing of one named tool); ``strict_tools`` is per request, not per tool.
  ``response_format`` is ``{"type": "json_object"}``, with ``json_schema`` for a schema.
- The answer's ``message.content`` is a list of ``text`` (and ``thinking``) blocks,
  ``message.tool_calls`` OpenAI-shaped; ``finish_reason`` is ``COMPLETE``,
  ``STOP_SEQUENCE``, ``MAX_TOKENS``, ``TOOL_CALL``, ``ERROR`` or ``TIMEOUT``. The body
  names no model. Usage is ``usage.billed_units`` (what is charged) and ``usage.tokens``
  (what the model saw, its prompt template included); cost is billed units.
- Streams are SSE events named by their ``type``: ``message-start``, ``content-start``,
  ``content-delta``, ``content-end``, ``tool-plan-delta``, ``tool-call-start``,
  ``tool-call-delta``, ``tool-call-end``, ``citation-*``, ``message-end`` (finish reason,
  usage, or an ``error``). The tool plan (the model's note on why it calls a tool) is
  not answer text and is left out.
- Errors are ``{"id", "message"}``; a prompt over the context window is a 400
  ``too many tokens``; 402 is a billing block, 429 a trial key's limit.

Not translated, refused by name: ``n > 1``, log probabilities, a named ``tool_choice``,
reasoning settings, ``metadata``, ``store``, ``service_tier``, ``logit_bias``, documents,
``parallel_tool_calls: false``. Embeddings (``/v2/embed``) are not part of this example.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NoReturn

from polyroute.catalog import CatalogModel, Price
from polyroute.errors import ErrorKind, InvalidResponseError, status_error
from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from polyroute.providers import HttpCall, StreamDecoder, UnsupportedError, VendorError, WireProtocol
from polyroute.types import (
    Capability,
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    JsonSchema,
    Message,
    ModelInfo,
    Part,
    TextPart,
    ThinkingPart,
    ToolCall,
    Usage,
)

FINISH_REASONS: Mapping[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "error",
    "TIMEOUT": "error",
}

_CAPS: tuple[Capability, ...] = ("chat", "stream", "tools", "json", "json_schema")

CATALOG: tuple[CatalogModel, ...] = (
    # https://cohere.com/pricing and https://docs.cohere.com/docs/models (2025 prices)
    CatalogModel(
        "command-a-03-2025",
        "cohere",
        context_window=256_000,
        max_output_tokens=8_000,
        capabilities=frozenset(_CAPS),
        quality=0.8,
        params_b=111,
        price=Price(2.5, 10.0, source="catalog"),
    ),
    CatalogModel(
        "command-r7b-12-2024",
        "cohere",
        context_window=128_000,
        max_output_tokens=4_000,
        capabilities=frozenset(_CAPS),
        quality=0.55,
        params_b=7,
        price=Price(0.0375, 0.15, source="catalog"),
    ),
)

ERROR_PREFIX = "Error: "
"""Starts a failed tool's result: Cohere's tool messages have no error flag."""


def refuse(name: str, why: str = "Cohere's v2 Chat API has no equivalent") -> NoReturn:
    raise UnsupportedError(f"cohere cannot take {name}: {why}")


def finish_reason(raw: str | None) -> FinishReason:
    return FINISH_REASONS.get(raw or "", "other")


def usage_from_wire(u: Mapping[str, Any] | None) -> Usage:
    """Billed units where the body has them (what Cohere charges), else tokens seen."""
    if not u:
        return Usage()
    counts = u.get("billed_units") or u.get("tokens") or {}
    return Usage(
        prompt_tokens=int(counts.get("input_tokens") or 0),
        completion_tokens=int(counts.get("output_tokens") or 0),
        cached_tokens=int(u.get("cached_tokens") or 0),
    )


def _text(content: str | Sequence[Part]) -> str:
    if isinstance(content, str):
        return content
    out = []
    for p in content:
        if isinstance(p, TextPart):
            out.append(p.text)
        elif not isinstance(p, ThinkingPart):  # thinking in history is left out
            refuse(f"a {p.kind} part in this message")
    return "".join(out)


def _user_content(content: str | Sequence[Part]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    out: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            url = p.url or f"data:{p.media_type};base64,{p.data}"
            image: dict[str, Any] = {"url": url}
            if p.detail is not None:
                image["detail"] = p.detail
            out.append({"type": "image_url", "image_url": image})
        else:
            refuse(f"a {p.kind} part in a message")
    return out


def message_to_wire(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        text = _text(m.content)
        return {
            "role": "tool",
            "tool_call_id": m.tool_call_id or "",
            "content": ERROR_PREFIX + text if m.is_error else text,
        }
    if m.role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = _text(m.content)
        if text:
            out["content"] = text
        if m.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments or "{}"},
                }
                for c in m.tool_calls
            ]
        return out
    if m.role == "system":
        return {"role": "system", "content": _text(m.content)}
    return {"role": "user", "content": _user_content(m.content)}


def _refuse_unsupported(request: ChatRequest) -> None:
    if request.n > 1:
        refuse("n > 1", "it gives one answer a request")
    if request.logprobs or request.top_logprobs is not None:
        refuse("logprobs", "this adapter does not translate them")
    if request.reasoning is not None:
        refuse("reasoning", "this adapter does not translate Cohere's thinking settings")
    if request.parallel_tool_calls is False:
        refuse("parallel_tool_calls: false")
    for name in ("metadata", "service_tier", "logit_bias"):
        if getattr(request, name) is not None:
            refuse(name)
    if request.store:
        refuse("store")
    if request.betas:
        refuse("betas", "they are Anthropic's")


def tool_calls_from_wire(calls: Sequence[Mapping[str, Any]] | None) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(
            id=c.get("id") or "",
            name=c["function"]["name"],
            arguments=c["function"].get("arguments") or "",
        )
        for c in calls or ()
    )


def _capabilities(card: Mapping[str, Any]) -> frozenset[Capability]:
    features = set(card.get("features") or ())
    caps: set[Capability] = {"chat", "stream"}
    if "tool_use" in features or "tools" in features:
        caps.add("tools")
    if "json_mode" in features:
        caps.add("json")
    if "json_schema" in features:
        caps.add("json_schema")
    if "vision" in features:
        caps.add("vision")
    return frozenset(caps)


class CohereProtocol(WireProtocol):
    """Cohere's ``/v2/chat``: messages, tools, ``response_format``, SSE streams."""

    type: ClassVar[str] = "cohere"
    default_base_url: ClassVar[str] = "https://api.cohere.com"
    list_models_path: ClassVar[str] = "/v1/models"
    catalog_models: ClassVar[tuple[CatalogModel, ...]] = CATALOG

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        _refuse_unsupported(request)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [message_to_wire(m) for m in request.messages],
            "stream": stream,
        }
        sampling = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "p": request.top_p,
            "k": request.top_k,
            "seed": request.seed,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
        }
        body.update({k: v for k, v in sampling.items() if v is not None})
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in request.tools
            ]
            if any(t.strict for t in request.tools):
                body["strict_tools"] = True
        choice = request.tool_choice
        if choice in ("required", "none"):
            body["tool_choice"] = choice.upper()
        elif choice not in (None, "auto"):
            refuse(f"tool_choice {choice!r}", "it can require a tool call, not name the tool")
        if request.response_format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(request.response_format, JsonSchema):
            body["response_format"] = {
                "type": "json_object",
                "json_schema": dict(request.response_format.schema),
            }
        return HttpCall("POST", "/v2/chat", json=body)

    def parse_chat(self, body: Any) -> ChatResponse:
        message = body["message"]
        content = message.get("content") or []
        raw = body.get("finish_reason")
        return ChatResponse(
            content="".join(c.get("text") or "" for c in content if c.get("type") == "text"),
            model=body.get("model") or "",  # Cohere's answer names no model
            finish_reason=finish_reason(raw),
            raw_finish_reason=raw,
            usage=usage_from_wire(body.get("usage")),
            id=body.get("id") or "",
            tool_calls=tool_calls_from_wire(message.get("tool_calls")),
            thinking=tuple(
                ThinkingPart(c.get("thinking") or "")
                for c in content
                if c.get("type") == "thinking"
            ),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return CohereStreamDecoder(request.model)

    def list_models(self) -> HttpCall:
        return HttpCall("GET", self.list_models_path, params={"endpoint": "chat"})

    def parse_models(self, body: Any) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=m["name"],
                provider_type=self.type,
                context_window=int(m["context_length"]) if m.get("context_length") else None,
                capabilities=_capabilities(m),
            )
            for m in body["models"]
        ]

    def parse_error(self, status: int, body: Any) -> VendorError:
        if not isinstance(body, dict):
            return VendorError(str(body)[:500])
        message = str(body.get("message") or "")
        kind: ErrorKind | None = None
        if status == 400 and message.startswith("too many tokens"):
            kind = "context_length"
        elif status == 402:
            kind = "quota"
        return VendorError(message, kind=kind)


class CohereStreamDecoder(StreamDecoder):
    """v2 chat stream events -> stream events; ``message-end`` carries finish and usage."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False

    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]:
        if data == "[DONE]":
            return ()
        try:
            chunk = json.loads(data)
        except ValueError:
            raise InvalidResponseError(f"stream message is not JSON: {data[:120]!r}") from None
        kind = chunk.get("type") or event
        delta = chunk.get("delta") or {}
        message = delta.get("message") or {}
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(StreamStart(chunk.get("id") or "", self._model))
        if kind == "content-delta":
            content = message.get("content") or {}
            if content.get("text"):
                out.append(TextDelta(content["text"]))
            elif content.get("thinking"):
                out.append(ThinkingDelta(0, content["thinking"]))
        elif kind in ("tool-call-start", "tool-call-delta"):
            call = message.get("tool_calls") or {}
            fn = call.get("function") or {}
            out.append(
                ToolCallDelta(
                    index=chunk.get("index") or 0,
                    id=call.get("id"),
                    name=fn.get("name"),
                    arguments=fn.get("arguments") or "",
                )
            )
        elif kind == "message-end":
            if delta.get("error"):
                raise status_error(500, str(delta["error"]), body=chunk)
            self.done = True
            raw = delta.get("finish_reason")
            out.append(StreamEnd(finish_reason(raw), usage_from_wire(delta.get("usage")), raw))
        return out
