"""Google Gemini API (``generativelanguage.googleapis.com``), the ``v1beta`` REST surface.

Wire format: https://ai.google.dev/api/generate-content
``base_url`` is the host root, as in the official ``google-genai`` SDK; paths
carry the API version. The key travels in ``x-goog-api-key``, never in the URL.
Streams are SSE (``:streamGenerateContent?alt=sse``): every ``data:`` is a full
GenerateContentResponse, there is no ``[DONE]``, and the end is the chunk
whose candidate carries a ``finishReason`` (with the final usage).

Gemini sends no request-id header: a response's id is its ``responseId``.

Fields in Gemini's words: ``n`` is ``candidateCount`` (the other candidates are
``ChatResponse.alternatives``), ``logprobs`` / ``top_logprobs`` are
``responseLogprobs`` / ``logprobs`` (``logprobsResult`` read back), image
``detail`` is the part's ``mediaResolution``, ``service_tier`` is ``serviceTier``,
a document is ``inlineData`` / ``fileData``, a failed tool's result goes under
``response.error``, the penalties and ``top_k`` are ``presencePenalty``,
``frequencyPenalty`` and ``topK``; ``metadata``, ``store``, ``logit_bias`` and
``parallel_tool_calls: false`` have no equivalent and are refused by name. ``user`` (an end-user id for the
vendor's abuse monitoring, which Claude Code sends with every request as
``metadata.user_id``) has no equivalent and changes no answer: ignored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from polyroute.errors import (
    ContentFilterError,
    ErrorKind,
    InvalidResponseError,
    UnsupportedError,
    status_error,
)
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
    VendorError,
    WireProtocol,
    refuse_field,
    refuse_fields,
    refuse_part,
    refuse_streamed,
    sampling,
    text_inputs,
)
from polyroute.providers._http import loads_event, path_segment
from polyroute.providers._json import loads_bounded
from polyroute.reasoning import budget_of, effort_of
from polyroute.types import (
    Alternative,
    Capability,
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
    Reasoning,
    TextPart,
    ThinkingPart,
    TokenLogprob,
    ToolCall,
    Usage,
)

API_VERSION = "v1beta"

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "CONTINUATION": "length",  # per-request token limit hit; the answer is incomplete
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "ESCALATION": "content_filter",
    "PUP_LIMITED_DISABLED": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
    "MALFORMED_RESPONSE": "error",
    # LANGUAGE, OTHER, NO_IMAGE, IMAGE_OTHER, FINISH_REASON_UNSPECIFIED: "other"
}

# ErrorInfo reasons that say the key itself is bad (sent as 400 INVALID_ARGUMENT).
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"

# Our history holds no thought signatures (ToolCall has no slot for one), so a
# replayed functionCall carries Google's documented "no signature" value;
# without it Gemini 3 rejects the history with a 400.
SKIP_SIGNATURE = "skip_thought_signature_validator"


def finish_reason(raw: str | None, has_calls: bool) -> FinishReason:
    reason = FINISH_REASONS.get(raw or "", "other")
    # Gemini ends a function-calling turn with STOP.
    return "tool_calls" if has_calls and reason == "stop" else reason


def usage_from_wire(u: Mapping[str, Any] | None) -> Usage:
    """``promptTokenCount`` includes cached tokens; thinking is billed as output."""
    if not u:
        return Usage()
    return Usage.new(
        prompt_tokens=(u.get("promptTokenCount") or 0) + (u.get("toolUsePromptTokenCount") or 0),
        completion_tokens=(u.get("candidatesTokenCount") or 0) + (u.get("thoughtsTokenCount") or 0),
        cached_tokens=u.get("cachedContentTokenCount") or 0,
        reasoning_tokens=u.get("thoughtsTokenCount") or 0,
    )


_COLLECTIONS = ("models/", "tunedModels/")


def model_path(model: str) -> str:
    """A model's resource name: ``gemini-2.5-flash`` -> ``models/gemini-2.5-flash``;
    ``models/x`` and ``tunedModels/x`` keep their collection. The Gemini API names a
    model by a collection and one id, so the rest is one path segment, encoded (a
    ``/``, ``..``, ``?`` or ``#`` in it cannot reach another path): any other name
    goes under ``models/`` whole, and the API answers that it has no such model."""
    for collection in _COLLECTIONS:
        if model.startswith(collection):
            return collection + path_segment(model[len(collection) :])
    return "models/" + path_segment(model)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# OpenAI's image detail -> Gemini's per-part media resolution ("auto": the API's default)
_RESOLUTION = {"low": "MEDIA_RESOLUTION_LOW", "high": "MEDIA_RESOLUTION_HIGH"}


def _media(p: ImagePart | DocumentPart) -> dict[str, Any]:
    """An image or a document (a PDF): inline data, or a file by URI."""
    if p.data is not None:
        return {"inlineData": {"mimeType": p.media_type, "data": p.data}}
    url = p.url or ""
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        mime = head[5:].split(";", 1)[0] or p.media_type
        return {"inlineData": {"mimeType": mime, "data": data}}
    return {"fileData": {"mimeType": p.media_type, "fileUri": url}}


def _part(p: Part) -> dict[str, Any]:
    if isinstance(p, DocumentPart):
        return _media(p)
    if isinstance(p, ImagePart):
        out = _media(p)
        level = _RESOLUTION.get(p.detail or "")
        if level is not None:
            out["mediaResolution"] = {"level": level}
        return out
    if not isinstance(p, TextPart):
        refuse_part("google", p)
    return {"text": p.text}


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = loads_bounded(arguments) if arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_response(text: str, is_error: bool = False) -> dict[str, Any]:
    """A tool result as Gemini's ``response`` object: JSON objects as they are, else
    ``output``; a failed tool's result under ``error``, as the API documents."""
    try:
        value: Any = loads_bounded(text)
    except ValueError:
        value = text
    if is_error:
        return {"error": value}
    return value if isinstance(value, dict) else {"output": value}


def contents_to_wire(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Our messages (system left out) as Gemini ``contents`` with roles ``user``/``model``."""
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> tool name, for tool messages without a name
    previous_tool = False
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            call_id = m.tool_call_id or ""
            name = m.name or names.get(call_id) or call_id
            response = _tool_response(m.text, m.is_error)
            part = {"functionResponse": {"name": name, "response": response}}
            if previous_tool:  # answers to parallel calls go back in one content
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
            previous_tool = True
            continue
        previous_tool = False
        # another vendor's reasoning is left out (its signature means nothing here)
        parts = [_part(p) for p in m.parts if not isinstance(p, ThinkingPart)]
        for i, call in enumerate(m.tool_calls):
            names[call.id] = call.name
            fc: dict[str, Any] = {
                "functionCall": {"name": call.name, "args": _args(call.arguments)}
            }
            if i == 0:
                fc["thoughtSignature"] = SKIP_SIGNATURE
            parts.append(fc)
        role = "model" if m.role == "assistant" else "user"
        contents.append({"role": role, "parts": parts or [{"text": ""}]})
    return contents


def _generation_options(request: ChatRequest, stream: bool) -> dict[str, Any]:
    """``n`` as ``candidateCount``, ``logprobs`` / ``top_logprobs`` as ``responseLogprobs`` /
    ``logprobs``, the penalties and ``top_k`` in Gemini's names; ``metadata``, ``store``,
    ``logit_bias`` and ``parallel_tool_calls: false`` (with tools) have no equivalent and
    are refused by name; ``user`` is ignored (see the module docs)."""
    names = ["metadata", "store", "logit_bias"]  # user: an abuse-monitoring id, ignored
    if request.tools:
        names.append("parallel_tool_calls")
    refuse_fields("google", request, names)
    if stream:
        refuse_streamed("google", request)
    out: dict[str, Any] = {}
    if request.n > 1:
        out["candidateCount"] = request.n
    if request.logprobs:
        out["responseLogprobs"] = True
    if request.top_logprobs is not None:
        out["logprobs"] = request.top_logprobs
    if request.presence_penalty is not None:
        out["presencePenalty"] = request.presence_penalty
    if request.frequency_penalty is not None:
        out["frequencyPenalty"] = request.frequency_penalty
    if request.top_k is not None:
        out["topK"] = request.top_k
    return out


def _service_tier(tier: str) -> str:
    """OpenAI's ``service_tier`` as Gemini's ``serviceTier`` (``standard``, ``flex``,
    ``priority``)."""
    if tier in ("default", "standard_only"):
        return "standard"
    if tier in ("flex", "priority"):
        return tier
    refuse_field("google", f"service_tier {tier!r}", "it offers default, flex and priority")


def logprobs_from_wire(result: Any) -> tuple[TokenLogprob, ...] | None:
    """A candidate's ``logprobsResult``: the chosen tokens, and the top ones at each step."""
    if not isinstance(result, dict):
        return None
    tops = result.get("topCandidates") or ()
    out: list[TokenLogprob] = []
    for i, chosen in enumerate(result.get("chosenCandidates") or ()):
        top = tops[i].get("candidates") or () if i < len(tops) else ()
        out.append(
            TokenLogprob(
                chosen.get("token", ""),
                chosen.get("logProbability", 0.0),
                tuple((t.get("token", ""), t.get("logProbability", 0.0)) for t in top),
            )
        )
    return tuple(out)


def _alternative(candidate: Mapping[str, Any]) -> Alternative:
    """A candidate after the first (``candidateCount`` > 1)."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        elif "functionCall" in part:
            fc = part["functionCall"]
            args = json.dumps(fc.get("args") or {})
            calls.append(ToolCall(fc.get("id") or new_call_id(), fc["name"], args))
    raw = candidate.get("finishReason")
    return Alternative(
        "".join(texts),
        finish_reason(raw, bool(calls)),
        tuple(calls),
        raw,
        logprobs_from_wire(candidate.get("logprobsResult")),
    )


THINKING_BUDGET_MAX = 24_576
"""Gemini 2.5 Flash's largest thinking budget (Pro's is 32,768): a budget above it is cut
to it, so one number fits every Gemini 2.5 model."""


def thinking_config(model: str, reasoning: Reasoning) -> dict[str, Any]:
    """``thinkingConfig``: Gemini 3 takes a level (Pro only ``low`` and ``high``), 2.5 a
    budget (polyroute.reasoning maps one to the other); thought summaries come back."""
    out: dict[str, Any] = {"includeThoughts": True}
    if model.startswith("gemini-3"):
        level = effort_of(reasoning)
        if "flash" not in model:
            level = "low" if level in ("minimal", "low") else "high"
        out["thinkingLevel"] = level
    else:
        out["thinkingBudget"] = min(budget_of(reasoning), THINKING_BUDGET_MAX)
    return out


def read_error(err: Mapping[str, Any]) -> VendorError:
    """A google.rpc.Status: ``status`` is the type, unless an ErrorInfo says the key is bad."""
    vendor_type = err.get("status") or None
    retry_after = None
    kind: ErrorKind | None = None
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        info = detail.get("@type")
        if info == _ERROR_INFO and detail.get("reason") in AUTH_REASONS:
            vendor_type = detail["reason"]
            kind = "authentication"
        elif info == _RETRY_INFO:
            retry_after = parse_duration(detail.get("retryDelay"))
    return VendorError(
        message=str(err.get("message") or ""),
        vendor_type=str(vendor_type) if vendor_type else None,
        retry_after=retry_after,
        kind=kind,
    )


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration in JSON (``"30s"``, ``"3.957s"``) as seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None


def _error_object(body: Any) -> dict[str, Any] | None:
    if isinstance(body, list) and len(body) == 1:  # streamed errors may come wrapped in a list
        body = body[0]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return err
    return None


def raise_in_band(err: Mapping[str, Any], body: Any) -> None:
    vendor = read_error(err)
    code = err.get("code")
    raise status_error(
        code if isinstance(code, int) and code >= 400 else 500,
        vendor.message or "error in stream",
        kind=vendor.kind,
        vendor_type=vendor.vendor_type,
        retry_after=vendor.retry_after,
        body=body,
    )


def blocked(body: Mapping[str, Any]) -> ContentFilterError:
    """The prompt itself was refused: ``promptFeedback.blockReason`` and no candidates."""
    reason = str((body.get("promptFeedback") or {}).get("blockReason") or "")
    return ContentFilterError(f"prompt blocked by Gemini ({reason})", vendor_type=reason, body=body)


# JSON Schema keywords that constrain a value but that responseJsonSchema does not enforce
# (it takes: type, format, enum, items, prefixItems, min/maxItems, minimum, maximum, anyOf,
# oneOf, properties, additionalProperties, required, $ref/$defs; annotations pass as they are)
_UNENFORCED = frozenset(
    {
        "pattern", "minLength", "maxLength", "exclusiveMinimum", "exclusiveMaximum",
        "multipleOf", "allOf", "not", "if", "then", "else", "uniqueItems", "contains",
        "minContains", "maxContains", "minProperties", "maxProperties", "patternProperties",
        "propertyNames", "dependentRequired", "dependentSchemas", "unevaluatedProperties",
        "unevaluatedItems", "additionalItems",
    }
)  # fmt: skip
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")


def response_schema(schema: Mapping[str, Any], where: str = "schema") -> dict[str, Any]:
    """A caller's JSON schema as Gemini takes it: ``const`` becomes the one-value ``enum`` it
    means; a constraint Gemini would not enforce is refused by name, never silently lost."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _UNENFORCED:
            raise UnsupportedError(
                f"google: response_format json_schema: {where}.{key} is not enforced by "
                "Gemini's responseJsonSchema"
            )
        if key == "const":
            out["enum"] = [value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: response_schema(v, f"{where}.{key}.{k}") for k, v in value.items()}
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [response_schema(v, f"{where}.{key}.{i}") for i, v in enumerate(value)]
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = response_schema(value, f"{where}.{key}")
        else:
            out[key] = value
    return out


class GoogleProtocol(WireProtocol):
    type: ClassVar[str] = "google"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    request_id_headers: ClassVar[tuple[str, ...]] = ()
    list_models_path: ClassVar[str] = f"/{API_VERSION}/models"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def chat(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        body: dict[str, Any] = {"contents": contents_to_wire(request.messages)}
        system = request.system_text
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config = sampling(request, max_tokens="maxOutputTokens", top_p="topP", stop="stopSequences")
        if request.response_format != "text":
            config["responseMimeType"] = "application/json"
        if isinstance(request.response_format, JsonSchema):
            # full JSON Schema (``responseSchema`` takes an OpenAPI subset)
            config["responseJsonSchema"] = response_schema(request.response_format.schema)
        config.update(_generation_options(request, stream))
        if request.reasoning is not None:
            config["thinkingConfig"] = thinking_config(request.model, request.reasoning)
        if request.service_tier not in (None, "auto"):  # auto: the API's default tier
            body["serviceTier"] = _service_tier(request.service_tier or "")
        if config:
            body["generationConfig"] = config
        if request.tools:
            # parametersJsonSchema takes full JSON Schema (``parameters`` takes an OpenAPI subset)
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {
                            "name": t.name,
                            "description": t.description,
                            "parametersJsonSchema": dict(t.parameters),
                        }
                        for t in request.tools
                    ]
                }
            ]
        strict = any(t.strict for t in request.tools)
        if request.tool_choice is not None or strict:
            calling = self._tool_choice(request.tool_choice or "auto")
            if strict and calling["mode"] == "AUTO":
                # strict tools: calls held to their schemas (ANY, a forced call, already is)
                calling = {"mode": "VALIDATED"}
            body["toolConfig"] = {"functionCallingConfig": calling}
        path = f"/{API_VERSION}/{model_path(request.model)}"
        if stream:
            return HttpCall(
                "POST", path + ":streamGenerateContent", json=body, params={"alt": "sse"}
            )
        return HttpCall("POST", path + ":generateContent", json=body)

    def _tool_choice(self, choice: str) -> dict[str, Any]:
        if choice == "auto":
            return {"mode": "AUTO"}
        if choice == "none":
            return {"mode": "NONE"}
        if choice == "required":
            return {"mode": "ANY"}
        return {"mode": "ANY", "allowedFunctionNames": [choice]}

    def parse_chat(self, body: Any) -> ChatResponse:
        candidates = body.get("candidates")
        if not candidates:
            if (body.get("promptFeedback") or {}).get("blockReason"):
                raise blocked(body)
            raise InvalidResponseError("Gemini answered with no candidates", body=body)
        candidate = candidates[0]
        texts: list[str] = []
        thoughts: list[ThinkingPart] = []
        calls: list[ToolCall] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "text" in part:
                if part.get("thought"):  # a thought summary (includeThoughts)
                    thoughts.append(ThinkingPart(part["text"]))
                else:
                    texts.append(part["text"])
            elif "functionCall" in part:
                fc = part["functionCall"]
                calls.append(
                    ToolCall(
                        id=fc.get("id") or new_call_id(),
                        name=fc["name"],
                        arguments=json.dumps(fc.get("args") or {}),
                    )
                )
        raw = candidate.get("finishReason")
        return ChatResponse.new(
            content="".join(texts),
            model=body.get("modelVersion", ""),
            finish_reason=finish_reason(raw, bool(calls)),
            raw_finish_reason=raw,
            usage=usage_from_wire(body.get("usageMetadata")),
            id=body.get("responseId", ""),
            tool_calls=tuple(calls),
            alternatives=tuple(_alternative(c) for c in candidates[1:]),
            logprobs=logprobs_from_wire(candidate.get("logprobsResult")),
            thinking=tuple(thoughts),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return GoogleStreamDecoder(self.type)

    def list_models(self) -> HttpCall:
        # One page only; 1000 is the API's page maximum, so in practice it is every model.
        return HttpCall("GET", self.list_models_path, params={"pageSize": "1000"})

    def parse_models(self, body: Any) -> list[ModelInfo]:
        out: list[ModelInfo] = []
        for m in body.get("models") or ():
            methods = m.get("supportedGenerationMethods") or ()
            caps: set[Capability] = set()
            if "generateContent" in methods:
                caps.update(("chat", "stream"))
            if "embedContent" in methods or "batchEmbedContents" in methods:
                caps.add("embeddings")
            out.append(
                ModelInfo(
                    id=m["name"].removeprefix("models/"),
                    provider_type=self.type,
                    context_window=m.get("inputTokenLimit"),
                    max_output_tokens=m.get("outputTokenLimit"),
                    capabilities=frozenset(caps),
                    display_name=m.get("displayName"),
                    owned_by="google",
                )
            )
        return out

    def embed(self, request: EmbeddingRequest) -> HttpCall:
        name = model_path(request.model)
        requests: list[dict[str, Any]] = []
        for text in text_inputs(self.type, request):
            item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
            if request.dimensions is not None:
                item["outputDimensionality"] = request.dimensions
            requests.append(item)
        return HttpCall(
            "POST", f"/{API_VERSION}/{name}:batchEmbedContents", json={"requests": requests}
        )

    def parse_embed(self, body: Any) -> EmbeddingResponse:
        # The Gemini API reports no token usage for embeddings (Vertex AI does): 0 unless sent.
        u = body.get("usageMetadata") or {}
        return EmbeddingResponse(
            model="",
            vectors=[e["values"] for e in body["embeddings"]],
            usage=Usage(prompt_tokens=u.get("promptTokenCount") or 0),
        )

    def parse_error(self, status: int, body: Any) -> VendorError:
        err = _error_object(body)
        if err is not None:
            return read_error(err)
        return VendorError(message=str(body)[:500])


class GoogleStreamDecoder(StreamDecoder):
    """GenerateContentResponse chunks -> events. The chunk with a ``finishReason`` ends it."""

    __slots__ = ("_calls", "_provider", "_started", "_usage", "done")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._started = False
        self._calls = 0
        self._usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]:
        chunk = loads_event(data, self._provider)
        err = _error_object(chunk)
        if err is not None:  # in-band error after a 200
            raise_in_band(err, chunk)
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(StreamStart(chunk.get("responseId", ""), chunk.get("modelVersion", "")))
        usage = chunk.get("usageMetadata")
        if usage:
            self._usage = usage
        candidates = chunk.get("candidates")
        if not candidates:
            if (chunk.get("promptFeedback") or {}).get("blockReason"):
                raise blocked(chunk)
            return out
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            text = part.get("text")
            if text is not None:
                if text and part.get("thought"):  # one thinking block: summaries are text
                    out.append(ThinkingDelta(0, text))
                elif text:
                    out.append(TextDelta(text))
                continue
            fc = part.get("functionCall")
            if fc is not None:  # Gemini streams each call whole
                out.append(
                    ToolCallDelta(
                        index=self._calls,
                        id=fc.get("id") or new_call_id(),
                        name=fc["name"],
                        arguments=json.dumps(fc.get("args") or {}),
                    )
                )
                self._calls += 1
        raw = candidate.get("finishReason")
        if raw:
            self.done = True
            out.append(
                StreamEnd(finish_reason(raw, self._calls > 0), usage_from_wire(self._usage), raw)
            )
        return out
