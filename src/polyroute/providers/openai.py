"""OpenAI Chat Completions, and every server that speaks it (``openai-compatible``).

Wire format: https://platform.openai.com/docs/api-reference/chat
``base_url`` includes ``/v1``, as in the official SDK. Streams are SSE ending
in ``data: [DONE]``; with ``stream_options.include_usage`` the last chunk
before it has empty ``choices`` and the usage. Models the provider marks
``responses_models`` (catalog ``api = "responses"``) go to the Responses API
instead (:mod:`polyroute.providers._openai_responses`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal

from polyroute.errors import ErrorKind, status_error
from polyroute.events import StreamEnd, StreamEvent, StreamStart, TextDelta, ToolCallDelta
from polyroute.providers import _openai_responses as responses
from polyroute.providers._base import (
    HttpCall,
    Provider,
    StreamDecoder,
    VendorError,
    WireProtocol,
    error_marked,
    refuse_field,
    refuse_part,
    refuse_streamed,
    sampling,
)
from polyroute.providers._http import loads_event
from polyroute.reasoning import effort_of
from polyroute.types import (
    Alternative,
    CacheControl,
    ChatRequest,
    ChatResponse,
    DocumentPart,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    ImagePart,
    JsonSchema,
    Message,
    ModelInfo,
    Part,
    TextPart,
    ThinkingPart,
    TokenLogprob,
    Tool,
    ToolCall,
    Usage,
)

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


# Error codes (or types) that name a more precise failure than the status.
ERROR_KINDS: Mapping[str, ErrorKind] = {
    "context_length_exceeded": "context_length",  # OpenAI and compatible servers
    "insufficient_quota": "quota",
    "content_filter": "content_filter",  # compatible servers
    "content_policy_violation": "content_filter",
}


def finish_reason(raw: str | None) -> FinishReason:
    return FINISH_REASONS.get(raw or "", "other")


def error_kind(code: str | None) -> ErrorKind | None:
    """What an OpenAI-style error ``code`` or ``type`` says beyond the status."""
    return ERROR_KINDS.get(code or "")


def matched_stop(choice: Mapping[str, Any]) -> str | None:
    """The stop sequence that ended a choice, where the server says which: vLLM's
    ``stop_reason`` (a string; an int is a stop token id). OpenAI itself does not say."""
    matched = choice.get("stop_reason")
    return matched if isinstance(matched, str) and choice.get("finish_reason") == "stop" else None


def message_to_wire(
    m: Message, document: Callable[[DocumentPart], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``document``: how the vendor takes a document part (default: a ``file`` part)."""
    m = error_marked(m)  # tool results have no error flag here
    out: dict[str, Any] = {"role": m.role}
    if isinstance(m.content, str):
        out["content"] = m.content
    else:
        out["content"] = [
            document(p) if document is not None and isinstance(p, DocumentPart) else _part(p)
            for p in m.content
            if not isinstance(p, ThinkingPart)  # another vendor's reasoning: left out
        ] or ""
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
        if not m.content:
            out["content"] = None
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    elif m.name is not None:  # a participant's name (a tool message has none here)
        out["name"] = m.name
    return out


def _part(p: Part) -> dict[str, Any]:
    if isinstance(p, ImagePart):
        url = p.url if p.url is not None else f"data:{p.media_type};base64,{p.data}"
        image: dict[str, Any] = {"url": url}
        if p.detail is not None:
            image["detail"] = p.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(p, DocumentPart):
        return {"type": "file", "file": _file(p)}
    if not isinstance(p, TextPart):
        refuse_part("openai", p)
    return {"type": "text", "text": p.text}


def _file(p: DocumentPart) -> dict[str, Any]:
    """A document as a ``file`` part: its data as a data URL (Chat Completions takes no URL)."""
    if p.data is not None:
        data = f"data:{p.media_type};base64,{p.data}"
    elif (p.url or "").startswith("data:"):
        data = p.url or ""
    else:
        refuse_field("openai", "a document by URL", "Chat Completions takes a file's data only")
    name = p.filename or ("document.pdf" if p.media_type == "application/pdf" else "document")
    return {"file_data": data, "filename": name}


def options(request: ChatRequest) -> dict[str, Any]:
    """``n``, ``logprobs``, ``top_logprobs``, ``parallel_tool_calls``, ``metadata``,
    ``store``, ``service_tier``, the penalties and ``logit_bias``: each carried as OpenAI
    names it, when set."""
    out: dict[str, Any] = {}
    if request.n > 1:
        out["n"] = request.n
    if request.logprobs:
        out["logprobs"] = True
    if request.top_logprobs is not None:
        out["top_logprobs"] = request.top_logprobs
    if request.parallel_tool_calls is not None and request.tools:  # the API wants tools with it
        out["parallel_tool_calls"] = request.parallel_tool_calls
    if request.metadata is not None:
        out["metadata"] = dict(request.metadata)
    if request.store is not None:
        out["store"] = request.store
    if request.service_tier is not None:
        out["service_tier"] = request.service_tier
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None:
            out[name] = value
    if request.logit_bias is not None:
        out["logit_bias"] = dict(request.logit_bias)
    return out


def logprobs_from_wire(items: Any) -> tuple[TokenLogprob, ...] | None:
    """OpenAI's ``logprobs.content`` (Mistral's and Ollama's ``logprobs`` have its shape)."""
    if not isinstance(items, list):
        return None
    return tuple(
        TokenLogprob(
            i["token"],
            i["logprob"],
            tuple((t["token"], t["logprob"]) for t in i.get("top_logprobs") or ()),
        )
        for i in items
    )


def choice_logprobs(choice: Mapping[str, Any]) -> tuple[TokenLogprob, ...] | None:
    return logprobs_from_wire((choice.get("logprobs") or {}).get("content"))


def response_format(fmt: Literal["json"] | JsonSchema) -> dict[str, Any]:
    """JSON mode, or Structured Outputs: ``json_schema`` with the caller's schema as it is."""
    if not isinstance(fmt, JsonSchema):
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": fmt.name, "schema": dict(fmt.schema)}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    if fmt.description is not None:
        spec["description"] = fmt.description
    return {"type": "json_schema", "json_schema": spec}


def _function(t: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name,
        "description": t.description,
        "parameters": dict(t.parameters),
    }
    if t.strict is not None:
        out["strict"] = t.strict
    return out


def usage_from_wire(u: dict[str, Any] | None) -> Usage:
    """Cached input is part of ``prompt_tokens``, reasoning part of ``completion_tokens``.
    OpenAI caches prompts by itself: it reports reads, and writes cost nothing extra;
    OpenRouter reports writes too (``prompt_tokens_details.cache_write_tokens``)."""
    if not u:
        return Usage()
    details = u.get("prompt_tokens_details") or {}
    output = u.get("completion_tokens_details") or {}
    return Usage.new(
        prompt_tokens=u.get("prompt_tokens") or 0,
        completion_tokens=u.get("completion_tokens") or 0,
        cached_tokens=details.get("cached_tokens") or 0,
        cache_write_tokens=details.get("cache_write_tokens") or 0,
        reasoning_tokens=output.get("reasoning_tokens") or 0,
    )


def tool_calls_from_wire(calls: list[dict[str, Any]] | None) -> tuple[ToolCall, ...]:
    if not calls:
        return ()
    return tuple(
        ToolCall(
            id=c.get("id", ""),
            name=c["function"]["name"],
            arguments=c["function"].get("arguments") or "",
        )
        for c in calls
    )


class OpenAIProtocol(WireProtocol):
    type: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def __init__(self, responses_models: frozenset[str] = frozenset()) -> None:
        self.responses_models = responses_models
        """Models called through the Responses API."""

    def for_provider(self, provider: Provider) -> OpenAIProtocol:
        return type(self)(provider.responses_models) if provider.responses_models else self

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        if request.model in self.responses_models:
            return responses.call(request, stream=stream)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [message_to_wire(m, self.document) for m in request.messages],
        }
        body.update(sampling(request, max_tokens=self.max_tokens_field))
        if request.user is not None:
            body["user"] = request.user
        if stream:
            refuse_streamed(self.type, request)
        if request.top_k is not None:  # Chat Completions has none
            refuse_field(self.type, "top_k")
        body.update(options(request))
        if request.reasoning is not None:  # reasoning models only: routing checks the catalog
            body["reasoning_effort"] = effort_of(request.reasoning)
        if request.response_format != "text":
            body["response_format"] = response_format(request.response_format)
        if request.tools:
            body["tools"] = [{"type": "function", "function": _function(t)} for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = self._tool_choice(request.tool_choice)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return HttpCall("POST", "/chat/completions", json=body)

    def document(self, p: DocumentPart) -> dict[str, Any]:
        """A document part as this vendor takes it: a ``file`` part with its data."""
        return {"type": "file", "file": _file(p)}

    def _tool_choice(self, choice: str) -> Any:
        if choice in ("auto", "none", "required"):
            return choice
        return {"type": "function", "function": {"name": choice}}

    def parse_chat(self, body: Any) -> ChatResponse:
        if body.get("object") == "response":
            return responses.parse(body)
        choices = body["choices"]
        choice = choices[0]
        message = choice["message"]
        raw = choice.get("finish_reason")
        return ChatResponse.new(
            content=message.get("content") or "",
            model=body.get("model", ""),
            finish_reason=finish_reason(raw),
            raw_finish_reason=raw,
            usage=usage_from_wire(body.get("usage")),
            id=body.get("id", ""),
            tool_calls=tool_calls_from_wire(message.get("tool_calls")),
            stop_sequence=matched_stop(choice),
            alternatives=tuple(
                Alternative(
                    c["message"].get("content") or "",
                    finish_reason(c.get("finish_reason")),
                    tool_calls_from_wire(c["message"].get("tool_calls")),
                    c.get("finish_reason"),
                    choice_logprobs(c),
                )
                for c in choices[1:]
            )
            if len(choices) > 1
            else (),
            logprobs=choice_logprobs(choice),
            refusal=message.get("refusal"),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        if request.model in self.responses_models:
            return responses.ResponsesStreamDecoder(self.type)
        return OpenAIStreamDecoder(self.type)

    def parse_models(self, body: Any) -> list[ModelInfo]:
        return [
            ModelInfo(id=m["id"], provider_type=self.type, owned_by=m.get("owned_by"))
            for m in body["data"]
        ]

    def embed(self, request: EmbeddingRequest) -> HttpCall:
        # texts, or token-id arrays as they came
        body: dict[str, Any] = {
            "model": request.model,
            "input": [i if isinstance(i, str) else list(i) for i in request.inputs],
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        body["encoding_format"] = "float"
        return HttpCall("POST", "/embeddings", json=body)

    def parse_embed(self, body: Any) -> EmbeddingResponse:
        rows = sorted(body["data"], key=lambda d: d.get("index", 0))
        u = body.get("usage") or {}
        return EmbeddingResponse(
            model=body.get("model", ""),
            vectors=[r["embedding"] for r in rows],
            usage=Usage(prompt_tokens=u.get("prompt_tokens") or 0),
        )

    def parse_error(self, status: int, body: Any) -> VendorError:
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                # `code` is the precise one (context_length_exceeded); `type` the family.
                code = err.get("code") or err.get("type")
                return VendorError(
                    message=str(err.get("message") or ""),
                    vendor_type=code,
                    kind=error_kind(code),
                )
            if isinstance(err, str):  # some compatible servers: {"error": "..."}
                return VendorError(message=err)
            if "message" in body:
                kind = error_kind(body.get("type"))
                return VendorError(str(body["message"]), body.get("type"), kind=kind)
        return VendorError(message=str(body)[:500])


class OpenAICompatibleProtocol(OpenAIProtocol):
    """vLLM, llama.cpp, LM Studio, Together, Groq, DeepSeek, OpenRouter...

    Same wire format; ``base_url`` is required, and ``max_tokens`` is the
    field these servers read (OpenAI itself now wants ``max_completion_tokens``).
    Cache breakpoints go as Anthropic's ``cache_control`` on text parts, as OpenRouter
    and LiteLLM read them for upstreams that cache explicitly (a whole message's mark on
    its last text part; string content becomes one text part). OpenAI's own API is
    never sent them: it caches prefixes by itself.
    """

    type: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str] = ""
    max_tokens_field: ClassVar[str] = "max_tokens"

    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        call = super().chat(request, stream=stream)
        if call.json is None or "messages" not in call.json or not _text_marks(request):
            return call
        body = dict(call.json)
        body["messages"] = [
            cache_marked(wire, m)
            for wire, m in zip(body["messages"], request.messages, strict=True)
        ]
        return replace(call, json=body)


def _text_marks(request: ChatRequest) -> bool:
    return any(
        m.cache_control is not None
        or (
            not isinstance(m.content, str)
            and any(isinstance(p, TextPart) and p.cache_control for p in m.content)
        )
        for m in request.messages
    )


def cache_control(mark: CacheControl) -> dict[str, str]:
    return {"type": "ephemeral"} if mark.ttl == "5m" else {"type": "ephemeral", "ttl": mark.ttl}


def cache_marked(wire: dict[str, Any], m: Message) -> dict[str, Any]:
    """A wire message with ``cache_control`` on its marked text parts, and a whole
    message's mark on its last text part."""
    m = error_marked(m)  # as message_to_wire sent it
    content = wire.get("content")
    if isinstance(content, str):
        if m.cache_control is None or not content:
            return wire
        return {**wire, "content": [{"type": "text", "text": content, **_mark(m.cache_control)}]}
    if not content:
        return wire
    parts = [p for p in m.content if not isinstance(p, ThinkingPart)]  # as message_to_wire
    out = [
        {**w, **_mark(p.cache_control)} if isinstance(p, TextPart) and p.cache_control else w
        for w, p in zip(content, parts, strict=True)
    ]
    if m.cache_control is not None:
        last = max((i for i, w in enumerate(out) if w.get("type") == "text"), default=None)
        if last is not None:
            out[last] = {**out[last], **_mark(m.cache_control)}
    return {**wire, "content": out}


def _mark(mark: CacheControl) -> dict[str, Any]:
    return {"cache_control": cache_control(mark)}


class OpenAIStreamDecoder(StreamDecoder):
    """Chat completion chunks -> events. Usage arrives in a last chunk with no choices."""

    __slots__ = (
        "_finish",
        "_provider",
        "_raw_finish",
        "_refusal",
        "_started",
        "_stop_sequence",
        "_usage",
        "done",
    )

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._started = False
        self._finish: FinishReason | None = None
        self._raw_finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage = Usage()
        self._refusal: list[str] = []
        self.done = False

    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]:
        if data == "[DONE]":
            self.done = True
            finish = self._finish or "stop"
            refusal = "".join(self._refusal) if self._refusal else None
            return [
                StreamEnd(
                    finish,
                    self._usage,
                    self._raw_finish,
                    stop_sequence=self._stop_sequence,
                    refusal=refusal,
                )
            ]
        chunk = loads_event(data, self._provider)
        err = chunk.get("error")
        if err is not None:  # in-band error after a 200 (OpenAI, vLLM)
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            code = err.get("code") if isinstance(err, dict) else None
            status = code if isinstance(code, int) else 500
            vendor = err.get("type") if isinstance(err, dict) else None
            raise status_error(
                status, message, kind=error_kind(vendor), vendor_type=vendor, body=chunk
            )
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(StreamStart(chunk.get("id", ""), chunk.get("model", "")))
        usage = chunk.get("usage")
        if usage:
            self._usage = usage_from_wire(usage)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                out.append(TextDelta(text))
            if delta.get("refusal"):
                self._refusal.append(delta["refusal"])
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") or {}
                out.append(
                    ToolCallDelta(
                        index=tc.get("index", 0),
                        id=tc.get("id"),
                        name=fn.get("name"),
                        arguments=fn.get("arguments") or "",
                    )
                )
            raw = choice.get("finish_reason")
            if raw:
                self._raw_finish = raw
                self._finish = finish_reason(raw)
                self._stop_sequence = matched_stop(choice)
        return out
