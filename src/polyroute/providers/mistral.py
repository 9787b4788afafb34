"""Mistral La Plateforme: Chat Completions, Models, Embeddings.

Wire format: https://docs.mistral.ai/api/ (and the official ``mistralai`` SDK).
It is OpenAI's chat shape with Mistral's own names and rules:

- ``base_url`` is the host root, as the SDK's ``server_url``; paths carry ``/v1``.
- ``max_tokens``, ``random_seed``, ``tool_choice: "any"`` (OpenAI: ``required``).
- The request schema is strict: an unknown field is a 422 ``extra_forbidden``,
  so OpenAI-only fields are never sent: ``stream_options`` is left out (usage
  comes unasked), ``seed`` is ``random_seed``, ``store``, ``logit_bias`` and
  ``top_k`` are refused by name and ``user`` (an end-user id, no answer changes
  with it) is ignored. ``n``, ``logprobs``, ``parallel_tool_calls``, ``metadata``,
  the penalties and ``service_tier`` (``auto`` / ``standard_only``) are Mistral's
  too. Documents go by URL
  (``document_url``).
- Tool call ids must be exactly 9 ASCII letters or digits; ids minted by other
  vendors are mapped to such ids, the same way on both sides of a tool turn.
- Streams are SSE ending in ``data: [DONE]``; usage rides on the last chunk
  unasked; cached input is ``usage.prompt_tokens_details.cached_tokens``.
- Reasoning models send ``content`` as a list of chunks (``text``, ``thinking``: a list
  of text chunks, maybe a ``signature``), read as ThinkingParts / ThinkingDeltas; a
  stream sends thinking as such lists, then the answer as plain strings. Reasoning is
  ``reasoning_effort`` for adjustable models (Mistral Small 4, Medium 3.5); Magistral
  models always reason and take ``prompt_mode: "reasoning"`` (their reasoning system
  prompt) instead: no dial, so an effort or budget is a hint there. Thinking in history
  is left out (Mistral documents dropping it as valid).
- Error bodies are ``{"object": "error", "message", "type", "param", "code"}``
  (``message`` may hold a validation ``{"detail": [...]}``), or the gateway's
  ``{"message": "Unauthorized", "request_id": ...}`` for a bad key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from polyroute.errors import ErrorKind, status_error
from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from polyroute.providers import openai
from polyroute.providers._base import (
    HttpCall,
    StreamDecoder,
    VendorError,
    refuse_field,
    refuse_fields,
    standard_tier,
    text_inputs,
)
from polyroute.providers._http import loads_event
from polyroute.providers.openai import OpenAIProtocol, OpenAIStreamDecoder
from polyroute.types import (
    Alternative,
    Capability,
    ChatRequest,
    ChatResponse,
    DocumentPart,
    EmbeddingRequest,
    FinishReason,
    ModelInfo,
    ThinkingPart,
    ToolCall,
    Usage,
)

FINISH_REASONS: dict[str, FinishReason] = {
    **openai.FINISH_REASONS,
    "model_length": "length",  # hit the model's context window
    "error": "error",
}

# Mistral's numeric error codes that name a more precise failure than its `type`
# (and than the status): the name shown, and the kind of failure.
_CODES: Mapping[str, tuple[str, ErrorKind]] = {
    "3051": ("context_length_exceeded", "context_length")
}

_ERROR_OBJECTS = frozenset({"error", "Error"})
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def finish_reason(raw: str | None) -> FinishReason:
    return FINISH_REASONS.get(raw or "", "other")


def content_text(content: Any) -> str:
    """A message's text: a string, or the ``text`` chunks of a chunk list (thinking left out)."""
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "".join(
        c.get("text") or ""
        for c in content
        if isinstance(c, dict) and c.get("type", "text") == "text"
    )


def _thinking_text(chunk: Mapping[str, Any]) -> str:
    inner = chunk.get("thinking")
    if isinstance(inner, str):
        return inner
    return "".join(c.get("text") or "" for c in inner or () if isinstance(c, dict) and "text" in c)


def thinking_parts(content: Any) -> tuple[ThinkingPart, ...]:
    """The ``thinking`` chunks of a message's content, each a block."""
    if not isinstance(content, list):
        return ()
    return tuple(
        ThinkingPart(_thinking_text(c), c.get("signature") or None)
        for c in content
        if isinstance(c, dict) and c.get("type") == "thinking"
    )


def is_native_reasoner(model: str) -> bool:
    """Magistral models always reason; they take ``prompt_mode``, not an effort."""
    return model.startswith("magistral")


def arguments_text(args: Any) -> str:
    """Tool arguments as JSON text; Mistral may send them as an object."""
    if isinstance(args, str):
        return args
    return json.dumps(args) if args else ""


def tool_calls_from_wire(calls: list[dict[str, Any]] | None) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(
            id=c.get("id") or "",
            name=c["function"]["name"],
            arguments=arguments_text(c["function"].get("arguments")),
        )
        for c in calls or ()
    )


def usage_from_wire(u: dict[str, Any] | None) -> Usage:
    usage = openai.usage_from_wire(u)
    if u and not usage.cached_tokens and u.get("num_cached_tokens"):
        # an older spelling of the cached-prompt count
        usage = replace(usage, cached_tokens=u["num_cached_tokens"])
    return usage


def tool_call_id(value: str) -> str:
    """The id itself if Mistral accepts it, else a stable 9-character id derived from it."""
    if len(value) == 9 and value.isascii() and value.isalnum():
        return value
    n = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")
    chars = []
    for _ in range(9):
        n, i = divmod(n, 62)
        chars.append(_ID_ALPHABET[i])
    return "".join(chars)


def vendor_error(body: Mapping[str, Any]) -> VendorError:
    """Read any of Mistral's error bodies (API, validation, gateway)."""
    code = body.get("code")
    code = str(code) if code is not None else None  # a string, or an int in some bodies
    message = body.get("message")
    if message is None:
        message = body.get("detail")  # {"detail": [...]} or {"detail": "Unauthorized"}
    known = _CODES.get(code or "")
    if known is not None:
        return VendorError(_error_text(message), known[0], kind=known[1])
    return VendorError(_error_text(message), body.get("type") or code)


def _error_text(message: Any) -> str:
    if isinstance(message, dict):
        message = message.get("detail", message)
    if isinstance(message, list):  # pydantic validation errors
        return "; ".join(_validation_text(d) for d in message)
    return "" if message is None else str(message)


def _validation_text(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = ".".join(str(p) for p in item.get("loc") or ())
    msg = str(item.get("msg") or item.get("type") or "invalid")
    return f"{loc}: {msg}" if loc else msg


def _capabilities(card: Mapping[str, Any]) -> frozenset[Capability]:
    flags = card.get("capabilities") or {}
    caps: set[Capability] = set()
    if flags.get("completion_chat"):
        caps |= {"chat", "stream", "json"}  # JSON mode works on every chat model
    if flags.get("function_calling"):
        caps.add("tools")
    if flags.get("vision"):
        caps.add("vision")
    if "embed" in card["id"]:  # model cards have no embeddings flag
        caps.add("embeddings")
    return frozenset(caps)


class MistralProtocol(OpenAIProtocol):
    type: ClassVar[str] = "mistral"
    default_base_url: ClassVar[str] = "https://api.mistral.ai"
    max_tokens_field: ClassVar[str] = "max_tokens"
    path_prefix: ClassVar[str] = "/v1"
    """OpenAI's paths are relative to a base ending in ``/v1``; Mistral's base is the host."""
    list_models_path: ClassVar[str] = "/v1/models"
    # The API sets both to one value; the gateway alone (a bad key) sends only the second.
    request_id_headers: ClassVar[tuple[str, ...]] = ("mistral-correlation-id", "x-kong-request-id")

    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        call = super().chat(request, stream=stream)
        body = dict(call.json or {})
        body.pop("stream_options", None)  # usage comes unasked; the field would be a 422
        refuse_fields(self.type, request, ("store", "logit_bias"))  # no such fields
        body.pop("user", None)  # an abuse-monitoring id: ignored, no equivalent
        if request.service_tier is not None:
            body["service_tier"] = standard_tier(self.type, request.service_tier)
        if "seed" in body:
            body["random_seed"] = body.pop("seed")
        if request.reasoning is not None and is_native_reasoner(request.model):
            body.pop("reasoning_effort", None)
            body["prompt_mode"] = "reasoning"
        for wire, m in zip(body["messages"], request.messages, strict=True):
            if m.tool_calls:
                for wc in wire["tool_calls"]:
                    wc["id"] = tool_call_id(wc["id"])
            if m.tool_call_id is not None:
                wire["tool_call_id"] = tool_call_id(m.tool_call_id)
                if m.name:
                    wire["name"] = m.name
            else:  # only its tool messages have a name: a participant's is ignored
                wire.pop("name", None)
        return replace(call, path=self.path_prefix + call.path, json=body)

    def document(self, p: DocumentPart) -> dict[str, Any]:
        """Mistral reads documents by URL (``document_url``), not inline."""
        if p.url is None or p.url.startswith("data:"):
            refuse_field(self.type, "a document's data", "it takes documents by URL only")
        out: dict[str, Any] = {"type": "document_url", "document_url": p.url}
        if p.filename:
            out["document_name"] = p.filename
        return out

    def _tool_choice(self, choice: str) -> Any:
        return "any" if choice == "required" else super()._tool_choice(choice)

    def parse_chat(self, body: Any) -> ChatResponse:
        choice = body["choices"][0]
        message = choice["message"]
        raw = choice.get("finish_reason")
        return ChatResponse.new(
            content=content_text(message.get("content")),
            model=body.get("model", ""),
            finish_reason=finish_reason(raw),
            raw_finish_reason=raw,
            usage=usage_from_wire(body.get("usage")),
            id=body.get("id", ""),
            tool_calls=tool_calls_from_wire(message.get("tool_calls")),
            alternatives=tuple(
                Alternative(
                    content_text(c["message"].get("content")),
                    finish_reason(c.get("finish_reason")),
                    tool_calls_from_wire(c["message"].get("tool_calls")),
                    c.get("finish_reason"),
                    openai.choice_logprobs(c),
                )
                for c in body["choices"][1:]
            ),
            logprobs=openai.choice_logprobs(choice),
            thinking=thinking_parts(message.get("content")),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return MistralStreamDecoder(self.type)

    def parse_models(self, body: Any) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=m["id"],
                provider_type=self.type,
                context_window=m.get("max_context_length"),
                capabilities=_capabilities(m),
                display_name=m.get("name"),
                owned_by=m.get("owned_by"),
            )
            for m in body["data"]
        ]

    def embed(self, request: EmbeddingRequest) -> HttpCall:
        text_inputs(self.type, request)  # token-id inputs are OpenAI's
        call = super().embed(request)
        body = dict(call.json or {})
        if "dimensions" in body:
            body["output_dimension"] = body.pop("dimensions")
        return replace(call, path=self.path_prefix + call.path, json=body)

    def parse_error(self, status: int, body: Any) -> VendorError:
        if isinstance(body, dict):
            return vendor_error(body)
        return VendorError(message=str(body)[:500])


class MistralStreamDecoder(OpenAIStreamDecoder):
    """Chat completion chunks -> events. The last chunk carries the finish reason and usage."""

    __slots__ = ("_thinking_block", "_thinking_open")

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self._thinking_block = 0  # the index of the thinking block now (or next) streamed
        self._thinking_open = False

    def _content(self, content: Any) -> list[StreamEvent]:
        """A delta's content: a string of answer text, or a list of text and thinking
        chunks; thinking interrupted by text starts a new block when it resumes."""
        out: list[StreamEvent] = []
        for c in [content] if isinstance(content, str) else content:
            if isinstance(c, dict) and c.get("type") == "thinking":
                self._thinking_open = True
                text = _thinking_text(c)
                if text or c.get("signature"):
                    out.append(ThinkingDelta(self._thinking_block, text, c.get("signature")))
                continue
            text = c if isinstance(c, str) else content_text([c])
            if text:
                if self._thinking_open:
                    self._thinking_open = False
                    self._thinking_block += 1
                out.append(TextDelta(text))
        return out

    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]:
        if data == "[DONE]":
            self.done = True
            return [StreamEnd(self._finish or "stop", self._usage, self._raw_finish)]
        chunk = loads_event(data, self._provider)
        choices = chunk.get("choices")
        if choices is None and (chunk.get("object") in _ERROR_OBJECTS or "error" in chunk):
            _raise_in_band(chunk)
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(StreamStart(chunk.get("id", ""), chunk.get("model", "")))
        usage = chunk.get("usage")
        if usage:
            self._usage = usage_from_wire(usage)
        for choice in choices or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                out.extend(self._content(content))
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") or {}
                out.append(
                    ToolCallDelta(
                        index=tc.get("index") or 0,
                        id=tc.get("id"),
                        name=fn.get("name"),
                        arguments=arguments_text(fn.get("arguments")),
                    )
                )
            raw = choice.get("finish_reason")
            if raw:
                self._raw_finish = raw
                self._finish = finish_reason(raw)
        return out


def _raise_in_band(chunk: dict[str, Any]) -> None:
    """An error event instead of a chunk: raise it as the status it names (500 if none)."""
    err = chunk.get("error")
    payload = err if isinstance(err, dict) else chunk
    vendor = VendorError(err) if isinstance(err, str) else vendor_error(payload)
    status = payload.get("raw_status_code")
    raise status_error(
        status if isinstance(status, int) and status >= 400 else 500,
        vendor.message or "stream error",
        kind=vendor.kind,
        vendor_type=vendor.vendor_type,
        body=chunk,
    )
