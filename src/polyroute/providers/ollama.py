"""Ollama's native API: ``/api/chat``, ``/api/tags``, ``/api/embed``.

Wire format: https://github.com/ollama/ollama/blob/main/docs/api.md
``base_url`` is the host root (``http://localhost:11434``). Keyless by default;
a key (Ollama behind a proxy, Ollama cloud) travels as ``Authorization: Bearer``.
``stream`` defaults to true server-side, so it is always sent. Streams are
NDJSON: chunks carry ``done: false``; the object with ``done: true`` is the end
marker and carries the counts and durations (nanoseconds). An error after the
200 arrives as a ``{"error": "..."}`` line. Tool-call arguments are JSON
objects on the wire (JSON text in our types), and calls may have no id.

``logprobs`` / ``top_logprobs``, and ``seed``, ``top_k`` and the penalties (options)
are carried; ``logit_bias`` is refused by name; a failed
tool's result starts ``Error: ``; image ``detail`` and ``user`` (an end-user id)
are hints it has no equivalent for (ignored). ``n``, documents, ``metadata``,
``store``, a ``service_tier`` other than ``auto`` and ``parallel_tool_calls: false``
are refused by name. Reasoning is ``think``: a level (``low``/``medium``/``high``,
``minimal`` sent as ``low``) for gpt-oss, ``true`` for other thinking models; the
reasoning comes back as ``message.thinking`` (a ThinkingPart / ThinkingDelta).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from polyroute.errors import status_error
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
    UnsupportedError,
    VendorError,
    WireProtocol,
    error_marked,
    refuse_field,
    refuse_fields,
    refuse_part,
    refuse_streamed,
    sampling,
    text_inputs,
)
from polyroute.providers._http import loads_event
from polyroute.providers._json import loads_bounded
from polyroute.providers.openai import error_kind
from polyroute.reasoning import effort_of
from polyroute.types import (
    Capability,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    ImagePart,
    JsonSchema,
    Message,
    ModelInfo,
    Reasoning,
    TextPart,
    ThinkingPart,
    ToolCall,
    Usage,
)

# done_reason -> ours. "load"/"unload" answer an empty-messages request;
# older servers said "connection_closed" or nothing for a cut generation.
FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}

# /api/tags has no capabilities; these families are embedding-only or add vision.
_EMBEDDING_FAMILIES = frozenset({"bert", "nomic-bert"})
_VISION_FAMILIES = frozenset({"clip", "mllama"})


def finish_reason(raw: str | None, tool_calls: bool) -> FinishReason:
    if tool_calls:  # Ollama says "stop" when the model called tools
        return "tool_calls"
    if raw is None:  # servers before done_reason existed
        return "stop"
    return FINISH_REASONS.get(raw, "other")


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def think_value(model: str, reasoning: Reasoning) -> bool | str:
    """``think`` for a request that asks reasoning: gpt-oss takes a level and ignores
    true/false; other thinking models take only true (an effort or budget is a hint
    they have no dial for)."""
    if model.rpartition("/")[2].startswith("gpt-oss"):
        effort = effort_of(reasoning)
        return "low" if effort == "minimal" else effort
    return True


def _image(p: ImagePart) -> str:
    if p.data is not None:
        return p.data
    url = p.url or ""
    if url.startswith("data:") and ";base64," in url:
        return url.partition(";base64,")[2]
    raise UnsupportedError(
        "ollama takes images only as inline base64 data, not URLs: "
        "fetch the image and pass ImagePart(data=...)"
    )


def _arguments(call: ToolCall) -> Any:
    if not call.arguments.strip():
        return {}
    try:
        args = loads_bounded(call.arguments)
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise UnsupportedError(
            f"ollama needs tool call arguments as a JSON object (call {call.id!r} to {call.name!r})"
        )
    return args


def message_to_wire(m: Message, tool_names: dict[str, str]) -> dict[str, Any]:
    m = error_marked(m)  # tool results have no error flag here
    out: dict[str, Any] = {"role": m.role, "content": m.text}
    if not isinstance(m.content, str):
        for p in m.content:
            if not isinstance(p, TextPart | ImagePart | ThinkingPart):  # thinking: left out
                refuse_part("ollama", p)
        images = [_image(p) for p in m.content if isinstance(p, ImagePart)]
        if images:
            out["images"] = images
    if m.tool_calls:
        calls = []
        for c in m.tool_calls:
            fn = {"name": c.name, "arguments": _arguments(c)}
            calls.append({"id": c.id, "function": fn} if c.id else {"function": fn})
            tool_names[c.id] = c.name
        out["tool_calls"] = calls
    if m.role == "tool":
        # the server reads tool_name; tool_call_id is accepted by newer servers
        name = m.name or tool_names.get(m.tool_call_id or "")
        if name:
            out["tool_name"] = name
        if m.tool_call_id:
            out["tool_call_id"] = m.tool_call_id
    return out


def _options(request: ChatRequest, stream: bool) -> dict[str, Any]:
    """``logprobs`` / ``top_logprobs`` as the API names them; one answer, one tier, no
    stored tags: ``n``, ``metadata``, ``store``, a ``service_tier`` but ``auto`` and
    ``parallel_tool_calls: false`` (with tools) are refused by name, as is ``logit_bias``."""
    names = ["n", "metadata", "store", "logit_bias"]  # user: an abuse-monitoring id, ignored
    if request.tools:
        names.append("parallel_tool_calls")
    refuse_fields("ollama", request, names)
    if request.service_tier not in (None, "auto"):
        refuse_field("ollama", "service_tier", "it has one tier")
    if stream:
        refuse_streamed("ollama", request)
    out: dict[str, Any] = {}
    if request.logprobs:
        out["logprobs"] = True
    if request.top_logprobs is not None:
        out["top_logprobs"] = request.top_logprobs
    return out


def tool_calls_from_wire(calls: list[dict[str, Any]] | None) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(
            id=c.get("id") or new_call_id(),
            name=c["function"]["name"],
            arguments=_arguments_text(c["function"].get("arguments")),
        )
        for c in calls or ()
    )


def _arguments_text(args: Any) -> str:
    if args is None:
        return "{}"
    if isinstance(args, str):  # some proxies re-encode them as text
        return args
    return json.dumps(args, ensure_ascii=False)


def usage_from_wire(body: dict[str, Any]) -> Usage:
    # prompt_eval_count is left out when the whole prompt came from the cache
    return Usage.new(
        prompt_tokens=body.get("prompt_eval_count") or 0,
        completion_tokens=body.get("eval_count") or 0,
    )


def server_ms(body: dict[str, Any]) -> float | None:
    ns = body.get("total_duration")
    return ns / 1e6 if isinstance(ns, int | float) else None


class OllamaProtocol(WireProtocol):
    type: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str] = "http://localhost:11434"
    stream_format: ClassVar[Literal["sse", "ndjson"]] = "ndjson"
    list_models_path: ClassVar[str] = "/api/tags"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        tool_names: dict[str, str] = {}
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [message_to_wire(m, tool_names) for m in request.messages],
            "stream": stream,
        }
        options = sampling(request, max_tokens="num_predict")
        for name in ("presence_penalty", "frequency_penalty", "top_k"):  # Ollama's names too
            if getattr(request, name) is not None:
                options[name] = getattr(request, name)
        if options:
            body["options"] = options
        body.update(_options(request, stream))
        if request.reasoning is not None:
            body["think"] = think_value(request.model, request.reasoning)
        if request.response_format == "json":
            body["format"] = "json"
        elif isinstance(request.response_format, JsonSchema):
            body["format"] = dict(request.response_format.schema)  # a JSON schema
        tools = request.tools
        # No tool_choice on the wire: "none" drops the tools, a name narrows them
        # to that one; "required" cannot be enforced and is sent as "auto".
        if request.tool_choice == "none":
            tools = ()
        elif request.tool_choice not in (None, "auto", "required"):
            tools = [t for t in tools if t.name == request.tool_choice]
        for i, t in enumerate(tools):
            if t.strict:
                raise UnsupportedError(
                    f"ollama cannot hold tool calls to their schema: tools.{i}.function.strict "
                    f"({t.name})"
                )
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in tools
            ]
        return HttpCall("POST", "/api/chat", json=body)

    def parse_chat(self, body: Any) -> ChatResponse:
        message = body["message"]
        logprobs = openai.logprobs_from_wire(body.get("logprobs"))
        calls = tool_calls_from_wire(message.get("tool_calls"))
        raw = body.get("done_reason")
        return ChatResponse.new(
            content=message.get("content") or "",
            model=body.get("model", ""),
            finish_reason=finish_reason(raw, bool(calls)),
            raw_finish_reason=raw,
            usage=usage_from_wire(body),
            tool_calls=calls,
            server_ms=server_ms(body),
            logprobs=logprobs,
            thinking=(ThinkingPart(message["thinking"]),) if message.get("thinking") else (),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return OllamaStreamDecoder(self.type)

    def parse_models(self, body: Any) -> list[ModelInfo]:
        return [self._model_info(m) for m in body["models"]]

    def _model_info(self, m: dict[str, Any]) -> ModelInfo:
        name: str = m.get("name") or m["model"]
        details = m.get("details") or {}
        families = set(details.get("families") or ()) | {details.get("family") or ""}
        caps: frozenset[Capability]
        if families & _EMBEDDING_FAMILIES:
            caps = frozenset({"embeddings"})
        elif families & _VISION_FAMILIES:
            caps = frozenset({"chat", "stream", "vision"})
        else:
            caps = frozenset({"chat", "stream"})
        size = " ".join(
            s for s in (details.get("parameter_size"), details.get("quantization_level")) if s
        )
        # "library" for official models, as Ollama's own OpenAI layer reports it
        path = name.partition(":")[0].split("/")
        return ModelInfo(
            id=name,
            provider_type=self.type,
            capabilities=caps,
            display_name=f"{name} ({size})" if size else name,
            owned_by=path[-2] if len(path) > 1 else "library",
        )

    def embed(self, request: EmbeddingRequest) -> HttpCall:
        body: dict[str, Any] = {"model": request.model, "input": text_inputs(self.type, request)}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        return HttpCall("POST", "/api/embed", json=body)

    def parse_embed(self, body: Any) -> EmbeddingResponse:
        return EmbeddingResponse(
            model=body.get("model", ""),
            vectors=body["embeddings"],
            usage=Usage(prompt_tokens=body.get("prompt_eval_count") or 0),
        )

    def parse_error(self, status: int, body: Any) -> VendorError:
        # {"error": "model \"x\" not found, try pulling it first"}: no type field
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, str):
                return VendorError(message=err)
            if isinstance(err, dict):  # an OpenAI-style proxy in front: OpenAI's codes
                code = err.get("code") or err.get("type")
                return VendorError(str(err.get("message") or ""), code, kind=error_kind(code))
        return VendorError(message=str(body)[:500])


class OllamaStreamDecoder(StreamDecoder):
    """NDJSON chat chunks -> events; the ``done: true`` object ends the stream."""

    __slots__ = ("_provider", "_started", "_tool_calls", "done")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._started = False
        self._tool_calls = 0
        self.done = False

    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]:
        chunk = loads_event(data, self._provider)
        err = chunk.get("error")
        if err is not None:  # the server's in-band error line carries no status
            raise status_error(500, str(err), body=chunk)
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(StreamStart("", chunk.get("model", "")))
        message = chunk.get("message")
        if message:
            thought = message.get("thinking")
            if thought:  # a thinking model's reasoning (``think``): never answer text
                out.append(ThinkingDelta(0, thought))
            text = message.get("content")
            if text:
                out.append(TextDelta(text))
            calls = message.get("tool_calls")
            if calls:
                for call in tool_calls_from_wire(calls):
                    out.append(ToolCallDelta(self._tool_calls, call.id, call.name, call.arguments))
                    self._tool_calls += 1
        if chunk.get("done"):
            self.done = True
            raw = chunk.get("done_reason")
            out.append(
                StreamEnd(
                    finish_reason(raw, self._tool_calls > 0),
                    usage_from_wire(chunk),
                    raw,
                    server_ms(chunk),
                )
            )
        return out
