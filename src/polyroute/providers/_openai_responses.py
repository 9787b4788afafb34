"""OpenAI's Responses API (``POST /responses``), for the models served only there.

Wire format: https://platform.openai.com/docs/api-reference/responses
System messages become ``instructions``; the rest become input items (messages,
``function_call``, ``function_call_output``, ``reasoning``). ``store`` is
false unless the caller asked for it, and with ``reasoning`` the reasoning
comes back as ``encrypted_content`` so a tool loop can send it back. Streams are typed SSE
events; ``response.completed`` (or ``response.incomplete``) ends them.

Reasoning items round-trip as a :class:`ThinkingPart` whose ``signature`` is
``"<item id>|<encrypted content>"`` (the API wants both back); thinking
signed otherwise is another vendor's and is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from polyroute.errors import ErrorKind, status_error
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
    error_marked,
    refuse_field,
    refuse_part,
)
from polyroute.providers._http import loads_event
from polyroute.reasoning import effort_of
from polyroute.types import (
    ChatRequest,
    ChatResponse,
    DocumentPart,
    FinishReason,
    ImagePart,
    JsonSchema,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolCall,
    Usage,
)

VENDOR = "openai (Responses API)"
_SEP = "|"

# The ``code`` of a failed response -> the HTTP status it stands for.
_FAILED_STATUS: Mapping[str, int] = {
    "rate_limit_exceeded": 429,
    "invalid_prompt": 400,
    "server_error": 500,
}
_KINDS: Mapping[str, ErrorKind] = {
    "context_length_exceeded": "context_length",
    "insufficient_quota": "quota",
}


def signature(item_id: str, encrypted: str | None) -> str | None:
    """A reasoning item's id and encrypted content as one :class:`ThinkingPart` signature."""
    return None if encrypted is None else f"{item_id}{_SEP}{encrypted}"


def _reasoning_item(p: ThinkingPart) -> dict[str, Any] | None:
    """The reasoning item a thinking part came from, if it came from the Responses API."""
    # with no summary, a Responses client sends it back as redacted thinking
    item_id, sep, encrypted = (p.text if p.redacted else p.signature or "").partition(_SEP)
    if not sep or not item_id.startswith("rs_"):
        return None  # another vendor's reasoning: left out
    summary = [{"type": "summary_text", "text": p.text}] if p.text and not p.redacted else []
    return {"type": "reasoning", "id": item_id, "summary": summary, "encrypted_content": encrypted}


# -- request -------------------------------------------------------------------------


def _content_part(p: Part) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "input_text", "text": p.text}
    if isinstance(p, ImagePart):
        url = p.url if p.url is not None else f"data:{p.media_type};base64,{p.data}"
        return {"type": "input_image", "image_url": url, "detail": p.detail or "auto"}
    if isinstance(p, DocumentPart):
        name = p.filename or ("document.pdf" if p.media_type == "application/pdf" else "document")
        if p.data is not None:
            return {
                "type": "input_file",
                "file_data": f"data:{p.media_type};base64,{p.data}",
                "filename": name,
            }
        if (p.url or "").startswith("data:"):
            return {"type": "input_file", "file_data": p.url, "filename": name}
        return {"type": "input_file", "file_url": p.url}
    refuse_part(VENDOR, p)


def _items(m: Message) -> list[dict[str, Any]]:
    """One message as input items."""
    if m.role == "tool":
        m = error_marked(m)  # function outputs have no error flag
        output: Any = m.content
        if not isinstance(output, str):
            output = [_content_part(p) for p in output]
        return [{"type": "function_call_output", "call_id": m.tool_call_id or "", "output": output}]
    if m.role == "assistant":
        out: list[dict[str, Any]] = []
        text: list[str] = []
        for p in m.parts:
            if isinstance(p, ThinkingPart):
                item = _reasoning_item(p)
                if item is not None:
                    out.append(item)
            elif isinstance(p, TextPart):
                text.append(p.text)
            else:
                refuse_part(VENDOR, p)
        if text:
            out.append({"type": "message", "role": "assistant", "content": "".join(text)})
        out.extend(
            {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
            for c in m.tool_calls
        )
        return out
    content: Any = m.content
    if not isinstance(content, str):
        content = [_content_part(p) for p in content]
    return [{"type": "message", "role": m.role, "content": content}]


def _format(fmt: str | JsonSchema) -> dict[str, Any]:
    if not isinstance(fmt, JsonSchema):
        return {"type": "json_object"}
    out: dict[str, Any] = {"type": "json_schema", "name": fmt.name, "schema": dict(fmt.schema)}
    if fmt.strict is not None:
        out["strict"] = fmt.strict
    if fmt.description is not None:
        out["description"] = fmt.description
    return out


def _refuse_unsupported(request: ChatRequest) -> None:
    if request.stop:
        refuse_field(VENDOR, "stop", "the Responses API has no stop sequences")
    if request.seed is not None:
        refuse_field(VENDOR, "seed", "the Responses API has no seed")
    if request.n > 1:
        refuse_field(VENDOR, "n > 1", "the Responses API gives one answer")
    if request.logprobs or request.top_logprobs is not None:
        refuse_field(VENDOR, "logprobs", "polyroute does not read the Responses API's")
    for name in ("presence_penalty", "frequency_penalty", "logit_bias", "top_k"):
        if getattr(request, name) is not None:
            refuse_field(VENDOR, name, "the Responses API has no such setting")


def request_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """Our request as a ``POST /responses`` body."""
    _refuse_unsupported(request)
    items: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role != "system":
            items.extend(_items(m))
    body: dict[str, Any] = {"model": request.model, "input": items}
    if request.system_text:
        body["instructions"] = request.system_text
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        # the Responses API's default is strict: a tool that did not ask for it is not
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
                "strict": bool(t.strict),
            }
            for t in request.tools
        ]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            choice
            if choice in ("auto", "none", "required")
            else {"type": "function", "name": choice}
        )
    if request.response_format != "text":
        body["text"] = {"format": _format(request.response_format)}
    if request.reasoning is not None:
        body["reasoning"] = {"effort": effort_of(request.reasoning)}
    if request.user is not None:
        body["user"] = request.user
    if request.metadata is not None:
        body["metadata"] = dict(request.metadata)
    if request.service_tier is not None:
        body["service_tier"] = request.service_tier
    body["store"] = bool(request.store)
    # not kept upstream: the reasoning comes back with the answer, to go back next turn;
    # asked of reasoning models only (a request with reasoning routes only to those), as
    # OpenAI refuses it for the others ("Encrypted content is not supported")
    if not request.store and request.reasoning is not None:
        body["include"] = ["reasoning.encrypted_content"]
    if stream:
        body["stream"] = True
    return body


def call(request: ChatRequest, *, stream: bool) -> HttpCall:
    return HttpCall("POST", "/responses", json=request_body(request, stream=stream))


# -- answer --------------------------------------------------------------------------


def usage_from_wire(u: Mapping[str, Any] | None) -> Usage:
    """Cached input is part of ``input_tokens``, reasoning part of ``output_tokens``."""
    if not u:
        return Usage()
    return Usage.new(
        prompt_tokens=u.get("input_tokens") or 0,
        completion_tokens=u.get("output_tokens") or 0,
        cached_tokens=(u.get("input_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning_tokens=(u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


def finish(response: Mapping[str, Any], tool_calls: bool) -> tuple[FinishReason, str | None]:
    """Ours and the raw reason: ``incomplete`` says why (``max_output_tokens``,
    ``content_filter``); a completed answer with function calls ends for them."""
    status = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        if reason == "max_output_tokens":
            return "length", reason
        if reason == "content_filter":
            return "content_filter", reason
        return "other", reason or status
    if status == "completed":
        return ("tool_calls" if tool_calls else "stop"), status
    return "other", status


def failed(response: Mapping[str, Any], body: Any) -> Exception:
    """A ``failed`` response's error (or an ``error`` event) as one of ours."""
    err = response.get("error") or {}
    code = err.get("code") if isinstance(err, Mapping) else None
    message = err.get("message") if isinstance(err, Mapping) else None
    code = code if isinstance(code, str) else None
    status = _FAILED_STATUS.get(code or "", 500)
    return status_error(
        status,
        str(message or "the response failed"),
        kind=_KINDS.get(code or ""),
        vendor_type=code,
        body=body,
    )


def parse(body: Any) -> ChatResponse:
    if body.get("status") == "failed":
        raise failed(body, body)
    text: list[str] = []
    refusal: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[ThinkingPart] = []
    for item in body.get("output") or ():
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif kind == "function_call":
            calls.append(ToolCall(item["call_id"], item["name"], item.get("arguments") or ""))
        elif kind == "reasoning":
            summary = "".join(s.get("text") or "" for s in item.get("summary") or ())
            sig = signature(item.get("id") or "", item.get("encrypted_content"))
            thinking.append(ThinkingPart(summary, signature=sig))
    reason, raw = finish(body, bool(calls))
    return ChatResponse.new(
        content="".join(text),
        model=body.get("model", ""),
        finish_reason=reason,
        raw_finish_reason=raw,
        usage=usage_from_wire(body.get("usage")),
        id=body.get("id", ""),
        tool_calls=tuple(calls),
        thinking=tuple(thinking),
        refusal="".join(refusal) if refusal else None,
    )


class ResponsesStreamDecoder(StreamDecoder):
    """The typed events -> ours. Function calls and reasoning items are numbered in the
    order they start (``ToolCallDelta.index``, ``ThinkingDelta.index``)."""

    __slots__ = ("_calls", "_provider", "_reasoning", "_refusal", "done")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._calls: dict[int, int] = {}  # output_index -> tool call index
        self._reasoning: dict[int, int] = {}  # output_index -> thinking index
        self._refusal: list[str] = []
        self.done = False

    def feed(self, data: str, event: str | None) -> Sequence[StreamEvent]:
        ev = loads_event(data, self._provider)
        kind = ev.get("type") or event
        if kind == "response.created":
            response = ev.get("response") or {}
            return [StreamStart(response.get("id", ""), response.get("model", ""))]
        if kind == "response.output_text.delta":
            return [TextDelta(ev.get("delta") or "")] if ev.get("delta") else []
        if kind == "response.refusal.delta":
            self._refusal.append(ev.get("delta") or "")
            return []
        if kind == "response.output_item.added":
            return self._added(ev)
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(ev.get("output_index", -1))
            if index is None or not ev.get("delta"):
                return []
            return [ToolCallDelta(index, arguments=ev["delta"])]
        if kind == "response.reasoning_summary_text.delta":
            index = self._reasoning.get(ev.get("output_index", -1))
            return [] if index is None else [ThinkingDelta(index, ev.get("delta") or "")]
        if kind == "response.output_item.done":
            item = ev.get("item") or {}
            index = self._reasoning.get(ev.get("output_index", -1))
            sig = signature(item.get("id") or "", item.get("encrypted_content"))
            if item.get("type") == "reasoning" and index is not None and sig is not None:
                return [ThinkingDelta(index, signature=sig)]
            return []
        if kind in ("response.completed", "response.incomplete"):
            return [self._end(ev.get("response") or {})]
        if kind == "response.failed":
            raise failed(ev.get("response") or {}, ev)
        if kind == "error":
            raise failed({"error": ev}, ev)
        return []  # in_progress, content_part, *.done and the like repeat what came

    def _added(self, ev: Mapping[str, Any]) -> list[StreamEvent]:
        item = ev.get("item") or {}
        at = ev.get("output_index", -1)
        if item.get("type") == "function_call":
            index = self._calls[at] = len(self._calls)
            return [
                ToolCallDelta(
                    index,
                    id=item.get("call_id"),
                    name=item.get("name"),
                    arguments=item.get("arguments") or "",
                )
            ]
        if item.get("type") == "reasoning":
            self._reasoning[at] = len(self._reasoning)
        return []

    def _end(self, response: Mapping[str, Any]) -> StreamEnd:
        self.done = True
        reason, raw = finish(response, bool(self._calls))
        refusal = "".join(self._refusal) if self._refusal else None
        return StreamEnd(reason, usage_from_wire(response.get("usage")), raw, refusal=refusal)
