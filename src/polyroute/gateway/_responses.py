"""OpenAI's Responses API, served: ``POST /v1/responses`` (JSON and SSE), and ``GET`` /
``DELETE /v1/responses/{id}`` of stored ones (DESIGN.md §9).

A request becomes our :class:`~polyroute.types.ChatRequest` and takes the chat
endpoints' flow (``_chat.py``); this module adds what is the Responses API's own:
``input`` items, the Response object and its typed SSE events (each with a
``sequence_number``), and state. With ``store`` (the default, as OpenAI's) the
conversation up to the answer and the Response itself are kept in the ledger
database before the answer's last byte leaves, so ``previous_response_id`` works on
every provider, from any worker; a virtual key sees only its own.

Fields the API defines but we cannot honour (hosted tools, ``include`` of outputs we
do not produce, ``background``, ``conversation``...) are a 400 naming them, as are
fields nobody defines. A failure after the first token ends the stream with
``error`` and ``response.failed``, never with ``response.completed``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from polyroute.errors import GatewayError, PolyrouteError, UnknownResponseError
from polyroute.events import StreamEnd, StreamEvent, TextDelta, ToolCallDelta
from polyroute.gateway._chat import JSON, ChatEndpoint, problem_response
from polyroute.gateway._observe import note_of
from polyroute.gateway._openai import error_object
from polyroute.gateway._problems import problem_of
from polyroute.gateway._wire import (
    MAX_TOKENS,
    Hints,
    Inbound,
    Problem,
    Reply,
    StreamEncoder,
    dumps,
    invalid,
    new_id,
    sse,
)
from polyroute.ledger._responses import (
    StoredResponse,
    delete_response,
    get_response,
    put_response,
)
from polyroute.types import (
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

if TYPE_CHECKING:
    from polyroute.gateway._auth import Caller
    from polyroute.gateway._chat import Calls

# -- the request body --------------------------------------------------------------


class _Strict(BaseModel):
    """Every field of the Responses API's is either read or refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _InputText(_Strict):
    type: Literal["input_text"]
    text: str


class _InputImage(_Strict):
    type: Literal["input_image"]
    image_url: str | None = Field(None, min_length=1)
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class _InputFile(_Strict):
    type: Literal["input_file"]
    file_data: str | None = Field(None, min_length=1)
    file_url: str | None = Field(None, min_length=1)
    file_id: str | None = None
    filename: str | None = None


class _OutputText(_Strict):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] | None = None


class _Refusal(_Strict):
    type: Literal["refusal"]
    refusal: str


_Content = Annotated[
    _InputText | _InputImage | _InputFile | _OutputText | _Refusal, Field(discriminator="type")
]
_Status = Literal["in_progress", "completed", "incomplete"]


class _MessageItem(_Strict):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[_Content]
    id: str | None = None
    status: _Status | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class _FunctionCallItem(_Strict):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: _Status | None = None


class _FunctionOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[_Content]
    id: str | None = None
    status: _Status | None = None


class _Summary(_Strict):
    type: Literal["summary_text"]
    text: str


class _ReasoningText(_Strict):
    type: Literal["reasoning_text"]
    text: str


class _ReasoningItem(_Strict):
    type: Literal["reasoning"]
    summary: list[_Summary] = Field(default_factory=list)
    id: str | None = None
    content: list[_ReasoningText] | None = None
    encrypted_content: str | None = None
    status: _Status | None = None


_Item = _MessageItem | _FunctionCallItem | _FunctionOutputItem | _ReasoningItem
_ITEMS: Mapping[str, type[_Item]] = {
    "message": _MessageItem,
    "function_call": _FunctionCallItem,
    "function_call_output": _FunctionOutputItem,
    "reasoning": _ReasoningItem,
}


class _FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _ToolChoiceFunction(_Strict):
    type: Literal["function"]
    name: str = Field(min_length=1)


class _Format(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class _Text(_Strict):
    format: _Format | None = None


class _Reasoning(_Strict):
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class _StreamOptions(_Strict):
    include_obfuscation: Literal[False] = False
    """Padding of deltas against size side channels: we send none, so only ``false``."""


class ResponsesBody(_Strict):
    """``POST /v1/responses``: every field polyroute reads."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = None
    previous_response_id: str | None = Field(None, min_length=1)
    text: _Text | None = None
    reasoning: _Reasoning | None = None
    include: list[Literal["reasoning.encrypted_content"]] | None = None
    """Reasoning items always carry their ``encrypted_content`` (the signature)."""
    truncation: Literal["disabled"] | None = None
    """``auto`` would drop input silently; ``disabled`` (OpenAI's default) is what we do."""
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    polyroute: Hints | None = None


def _checked(model: type[_Strict], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = invalid(exc)
        if error.param is None:
            raise GatewayError(f"{where}: {error}", param=where) from None
        raise GatewayError(f"{where}.{error}", param=f"{where}.{error.param}") from None


def _items(raw: Sequence[Any], where: str = "input") -> list[_Item]:
    items = []
    for i, data in enumerate(raw):
        at = f"{where}.{i}"
        if not isinstance(data, dict):
            raise GatewayError(f"{at}: an input item is an object", param=at)
        kind = data.get("type", "message")
        model = _ITEMS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise GatewayError(
                f"{at}: input items of type {kind!r} are not supported "
                f"(supported: {', '.join(_ITEMS)})",
                param=f"{at}.type",
            )
        items.append(_checked(model, data, at))
    return items


# -- items -> our messages -------------------------------------------------------------


def _part(p: _InputText | _InputImage | _InputFile | _OutputText | _Refusal, at: str) -> Part:
    if isinstance(p, _InputText | _OutputText):
        return TextPart(p.text)
    if isinstance(p, _Refusal):
        return TextPart(p.refusal)
    if isinstance(p, _InputImage):
        if p.image_url is None:
            raise GatewayError(
                f"{at}: images by file_id are not supported (no files API): send image_url",
                param=f"{at}.file_id",
            )
        return ImagePart(url=p.image_url, detail=p.detail)
    if p.file_data is not None:
        media, data = _data_url(p.file_data)
        return DocumentPart(data=data, media_type=media, filename=p.filename)
    if p.file_url is not None:
        return DocumentPart(url=p.file_url, filename=p.filename)
    raise GatewayError(
        f"{at}: files by file_id are not supported (no files API): send file_data or file_url",
        param=f"{at}.file_id",
    )


def _data_url(value: str) -> tuple[str, str]:
    """``data:<media>;base64,<data>`` as (media, data); bare base64 is a PDF."""
    if value.startswith("data:"):
        head, _, data = value[5:].partition(",")
        return head.split(";")[0] or "application/pdf", data
    return "application/pdf", value


def _content(content: str | list[Any], at: str) -> str | tuple[Part, ...]:
    if isinstance(content, str):
        return content
    parts = tuple(_part(p, f"{at}.{j}") for j, p in enumerate(content))
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return parts


def _messages(items: Sequence[_Item]) -> list[Message]:
    """Items in order as messages: an assistant's text, reasoning and function calls in a
    row are one assistant turn; a function's output is a tool message."""
    out: list[Message] = []
    names: dict[str, str] = {}
    turn: list[Part] = []  # the assistant turn being gathered
    calls: list[ToolCall] = []
    gathering = False

    def close() -> None:
        nonlocal gathering
        if gathering:
            out.append(Message("assistant", _compacted(turn), tool_calls=tuple(calls)))
            turn.clear()
            calls.clear()
            gathering = False

    for i, item in enumerate(items):
        at = f"input.{i}"
        if isinstance(item, _MessageItem) and item.role == "assistant":
            if calls:  # text after calls is the next turn
                close()
            gathering = True
            content = _content(item.content, f"{at}.content")
            turn.extend((TextPart(content),) if isinstance(content, str) else content)
        elif isinstance(item, _FunctionCallItem):
            gathering = True
            names[item.call_id] = item.name
            calls.append(ToolCall(item.call_id, item.name, item.arguments))
        elif isinstance(item, _ReasoningItem):
            if calls:
                close()
            gathering = True
            turn.append(_thinking(item))
        elif isinstance(item, _FunctionOutputItem):
            close()
            output = _content(item.output, f"{at}.output")
            out.append(
                Message("tool", output, tool_call_id=item.call_id, name=names.get(item.call_id))
            )
        else:
            assert isinstance(item, _MessageItem)
            close()
            content = _content(item.content, f"{at}.content")
            user = item.role == "user"
            out.append(Message("user", content) if user else Message("system", content))
    close()
    return out


def _compacted(parts: list[Part]) -> str | tuple[Part, ...]:
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return tuple(parts)


def _thinking(item: _ReasoningItem) -> ThinkingPart:
    """A reasoning item as the thinking it renders (``_reasoning_item``): its summary text
    and signature; with no summary, the encrypted content is redacted thinking."""
    text = "".join(s.text for s in item.summary)
    if not text and item.content:
        text = "".join(c.text for c in item.content)
    if not text and item.encrypted_content is not None:
        return ThinkingPart(item.encrypted_content, redacted=True)
    return ThinkingPart(text, signature=item.encrypted_content)


_HOSTED = "hosted tools run on OpenAI's servers, which this gateway's upstreams are not"


def _tools(raw: Sequence[Any]) -> tuple[list[Tool], list[dict[str, Any]]]:
    """Our tools, and the tools as the Response object echoes them."""
    tools, echo = [], []
    for i, data in enumerate(raw):
        at = f"tools.{i}"
        kind = data.get("type") if isinstance(data, dict) else None
        if kind != "function":
            raise GatewayError(
                f"{at}: tool type {kind!r} is not supported: {_HOSTED}; use function tools",
                param=f"{at}.type",
            )
        t: _FunctionTool = _checked(_FunctionTool, data, at)
        parameters = t.parameters if t.parameters is not None else {"type": "object"}
        tools.append(Tool(t.name, t.description or "", parameters, t.strict))
        echo.append(
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": t.strict,
            }
        )
    return tools, echo


def _tool_choice(raw: str | dict[str, Any] | None) -> str | None:
    """Ours: ``auto``/``none``/``required`` or the name of the function to call."""
    if raw is None or raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, str):
        raise GatewayError(
            f"tool_choice: {raw!r} is not one of 'auto', 'none', 'required'", param="tool_choice"
        )
    kind = raw.get("type")
    if kind != "function":
        raise GatewayError(
            f"tool_choice: type {kind!r} is not supported (a function, or auto/none/required)",
            param="tool_choice.type",
        )
    choice: _ToolChoiceFunction = _checked(_ToolChoiceFunction, raw, "tool_choice")
    return choice.name


def _format(text: _Text | None) -> Literal["text", "json"] | JsonSchema:
    fmt = None if text is None else text.format
    if fmt is None or fmt.type == "text":
        return "text"
    if fmt.type == "json_object":
        return "json"
    if fmt.name is None or fmt.schema_ is None:
        missing = "name" if fmt.name is None else "schema"
        raise GatewayError(
            f"text.format.{missing}: required for json_schema", param=f"text.format.{missing}"
        )
    return JsonSchema(fmt.name, fmt.schema_, fmt.strict, fmt.description)


@dataclass(frozen=True, slots=True)
class ResponsesInbound(Inbound):
    """A parsed Responses request: ours, and what its Response echoes and keeps."""

    body: ResponsesBody | None = None
    items: Sequence[dict[str, Any]] = ()
    """This request's input items, as sent (a string input as one user message)."""
    history: Sequence[dict[str, Any]] = ()
    """The stored conversation ``previous_response_id`` continues."""
    tools: Sequence[dict[str, Any]] = ()
    created_at: int = 0
    id: str = field(default_factory=lambda: new_id("resp_"))


def parse(raw: bytes) -> ResponsesInbound:
    """The request, not yet continuing a stored conversation (see :func:`continued`)."""
    try:
        body = ResponsesBody.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc) from None
    if isinstance(body.input, str):
        return _inbound(body, [{"type": "message", "role": "user", "content": body.input}], ())
    return _inbound(body, body.input, ())


def continued(inbound: ResponsesInbound, history: Sequence[dict[str, Any]]) -> ResponsesInbound:
    assert inbound.body is not None
    return _inbound(inbound.body, inbound.items, history)


def _inbound(
    body: ResponsesBody, items: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]]
) -> ResponsesInbound:
    conversation = _items([*history, *items]) if history else _items(items)
    messages = _messages(conversation)
    if body.instructions:
        messages.insert(0, Message.system(body.instructions))
    if not messages:
        raise GatewayError("input: no messages to answer", param="input")
    tools, echo = _tools(body.tools or ())
    effort = None if body.reasoning is None else body.reasoning.effort
    reasoning = None if effort is None or effort == "none" else Reasoning(effort)
    request = ChatRequest(
        model=body.model,
        messages=tuple(messages),
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        tools=tuple(tools),
        tool_choice=_tool_choice(body.tool_choice),
        response_format=_format(body.text),
        user=body.user,
        parallel_tool_calls=body.parallel_tool_calls,
        metadata=body.metadata,
        reasoning=reasoning,
    )
    return ResponsesInbound(
        request,
        stream=bool(body.stream),
        hints=body.polyroute,
        body=body,
        items=items,
        history=history,
        tools=echo,
        created_at=int(time.time()),
    )


# -- the Response object ---------------------------------------------------------------


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text)] if status != "in_progress" else [],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call_item(item_id: str, call: ToolCall, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


# finish reasons that end a response short of complete -> OpenAI's incomplete reason
_INCOMPLETE: Mapping[str, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(
    inbound: ResponsesInbound,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    *,
    finish_reason: str = "stop",
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = inbound.body
    assert body is not None
    incomplete = _INCOMPLETE.get(finish_reason) if status == "completed" else None
    if incomplete is not None:
        status = "incomplete"
    fmt: dict[str, Any] = {"type": "text"}
    if body.text is not None and body.text.format is not None:
        fmt = body.text.format.model_dump(by_alias=True, exclude_none=True)
    reasoning = body.reasoning
    return {
        "id": inbound.id,
        "object": "response",
        "created_at": inbound.created_at,
        "status": status,
        "error": error,
        "incomplete_details": None if incomplete is None else {"reason": incomplete},
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {
            "effort": None if reasoning is None else reasoning.effort,
            "summary": None if reasoning is None else reasoning.summary,
        },
        "store": body.store is not False,
        "temperature": body.temperature,
        "text": {"format": fmt},
        "tool_choice": body.tool_choice or "auto",
        "tools": list(inbound.tools),
        "top_p": body.top_p,
        "truncation": "disabled",
        "usage": None if usage is None else usage_object(usage),
        "user": body.user,
        "metadata": body.metadata or {},
    }


def _output(reply: Reply) -> list[dict[str, Any]]:
    status = "incomplete" if reply.finish_reason in _INCOMPLETE else "completed"
    out = []
    if reply.content or not reply.tool_calls:
        out.append(_message_item(new_id("msg_"), reply.content, status))
    out.extend(_call_item(new_id("fc_"), c, "completed") for c in reply.tool_calls)
    return out


def _error(problem: Problem) -> dict[str, Any]:
    code = "rate_limit_exceeded" if problem.kind in ("rate_limit", "budget") else "server_error"
    return {"code": code, "message": problem.message}


# -- the stream -----------------------------------------------------------------------


class _Events:
    """Our stream events as the Responses API's typed SSE events. Items are opened as
    their first piece arrives and closed (``*.done``, ``output_item.done``) at the end,
    or when text follows tool calls; ``response`` is the final Response once the end
    has been seen."""

    def __init__(self, inbound: ResponsesInbound, model: str) -> None:
        self.inbound = inbound
        self.model = model
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # every item, in output_index order
        self.text: list[str] = []  # the open message's text
        self.message: int | None = None  # its output_index
        self.calls: dict[int, int] = {}  # our tool-call index -> output_index
        self.args: dict[int, list[str]] = {}  # output_index -> its argument pieces
        self.started = False
        self.response: dict[str, Any] | None = None

    def _frame(self, kind: str, **data: Any) -> bytes:
        data["type"] = kind
        data["sequence_number"] = self.seq
        self.seq += 1
        return sse(data, kind)

    def _snapshot(self, status: str, usage: Usage | None = None, **kw: Any) -> dict[str, Any]:
        return response_object(self.inbound, self.model, status, self.output, usage, **kw)

    def _start(self) -> bytes:
        self.started = True
        head = self._frame("response.created", response=self._snapshot("in_progress"))
        return head + self._frame("response.in_progress", response=self._snapshot("in_progress"))

    def _open_message(self) -> bytes:
        index = self.message = len(self.output)
        item = _message_item(new_id("msg_"), "", "in_progress")
        self.output.append(item)
        return self._frame(
            "response.output_item.added", output_index=index, item=item
        ) + self._frame(
            "response.content_part.added",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part=_text_part(""),
        )

    def _close_message(self, status: str = "completed") -> bytes:
        index = self.message
        if index is None:
            return b""
        self.message = None
        text = "".join(self.text)
        self.text.clear()
        item = self.output[index] = _message_item(self.output[index]["id"], text, status)
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return (
            self._frame("response.output_text.done", text=text, logprobs=[], **where)
            + self._frame("response.content_part.done", part=_text_part(text), **where)
            + self._frame("response.output_item.done", output_index=index, item=item)
        )

    def _close_calls(self) -> bytes:
        out = b""
        for index in self.calls.values():
            item = self.output[index]
            item["arguments"] = "".join(self.args.pop(index))
            item["status"] = "completed"
            out += self._frame(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            ) + self._frame("response.output_item.done", output_index=index, item=item)
        self.calls.clear()
        return out

    def event(self, event: StreamEvent) -> bytes:
        out = b"" if self.started else self._start()
        if isinstance(event, TextDelta):
            if not event.text:
                return out
            index = self.message
            if index is None:
                out += self._close_calls() + self._open_message()
                index = len(self.output) - 1
            self.text.append(event.text)
            return out + self._frame(
                "response.output_text.delta",
                item_id=self.output[index]["id"],
                output_index=index,
                content_index=0,
                delta=event.text,
                logprobs=[],
            )
        if isinstance(event, ToolCallDelta):
            index = self.calls.get(event.index)
            if index is None:
                out += self._close_message()
                index = self.calls[event.index] = len(self.output)
                call = ToolCall(event.id or new_id("call_"), event.name or "", "")
                item = _call_item(new_id("fc_"), call, "in_progress")
                self.output.append(item)
                self.args[index] = []
                out += self._frame("response.output_item.added", output_index=index, item=item)
            if not event.arguments:
                return out
            self.args[index].append(event.arguments)
            return out + self._frame(
                "response.function_call_arguments.delta",
                item_id=self.output[index]["id"],
                output_index=index,
                delta=event.arguments,
            )
        if isinstance(event, StreamEnd):
            short = event.finish_reason in _INCOMPLETE
            if not self.output:  # an empty answer is still a message, as in JSON
                out += self._open_message()
            out += self._close_message("incomplete" if short else "completed")
            out += self._close_calls()
            response = self._snapshot("completed", event.usage, finish_reason=event.finish_reason)
            self.response = response
            kind = (
                "response.completed"
                if response["status"] == "completed"
                else ("response.incomplete")
            )
            return out + self._frame(kind, response=response)
        return out  # StreamStart: the head went out above

    def error(self, problem: Problem) -> bytes:
        error = _error(problem)
        return self._frame(
            "error", code=error["code"], message=problem.message, param=problem.param
        ) + self._frame("response.failed", response=self._snapshot("failed", error=error))


class ResponsesFormat:
    """The Responses API as a chat format (see :class:`~polyroute.gateway._wire.ChatFormat`).
    Its endpoint renders finished answers itself (they echo the request): ``render``
    renders one for a request that asked for nothing but input."""

    def parse(self, raw: bytes) -> Inbound:
        return parse(raw)

    def render(self, reply: Reply) -> bytes:
        body = ResponsesBody(model=reply.model or "unknown", input=[])
        return dumps(
            self.response(ResponsesInbound(ChatRequest(body.model, ()), False, body=body), reply)
        )

    def response(self, inbound: ResponsesInbound, reply: Reply) -> dict[str, Any]:
        return response_object(
            inbound,
            reply.model,
            "completed",
            _output(reply),
            reply.usage,
            finish_reason=reply.finish_reason,
        )

    def encoder(self, inbound: Inbound, model: str) -> StreamEncoder:
        assert isinstance(inbound, ResponsesInbound)
        return _Events(inbound, model)

    def error_body(self, problem: Problem) -> bytes:
        return dumps({"error": error_object(problem)})


# -- the endpoints ---------------------------------------------------------------------


class ResponsesEndpoint(ChatEndpoint):
    """``POST /v1/responses`` (the chat flow, with state), and ``GET``/``DELETE`` of one."""

    fmt: ResponsesFormat

    def __init__(self, calls: Calls) -> None:
        super().__init__(calls, ResponsesFormat())

    async def inbound(self, raw: bytes, caller: Caller) -> Inbound:
        inbound = parse(raw)
        body = inbound.body
        assert body is not None
        previous = body.previous_response_id
        if previous is None:
            return inbound
        stored = await self.calls.pr.ledger.run(get_response(previous, caller.key_id))
        if stored is None:
            raise UnknownResponseError(previous, param="previous_response_id")
        output = json.loads(stored.response)["output"]
        return continued(inbound, [*json.loads(stored.input), *output])

    async def rendered(self, inbound: Inbound, reply: Reply, caller: Caller) -> bytes:
        assert isinstance(inbound, ResponsesInbound)
        response = self.fmt.response(inbound, reply)
        body = dumps(response)
        await self._keep(inbound, response, body, caller)
        return body

    def ending(
        self, inbound: Inbound, encoder: StreamEncoder, caller: Caller
    ) -> Callable[[], Awaitable[None]]:
        assert isinstance(inbound, ResponsesInbound) and isinstance(encoder, _Events)
        durable = self.calls.pr.ledger.durable

        async def end() -> None:
            await durable()
            if encoder.response is not None:
                response = encoder.response
                await self._keep(inbound, response, dumps(response), caller)

        return end

    async def _keep(
        self, inbound: ResponsesInbound, response: dict[str, Any], body: bytes, caller: Caller
    ) -> None:
        """Store the answer unless the request said ``store: false``."""
        assert inbound.body is not None
        if inbound.body.store is False:
            return
        stored = StoredResponse(
            inbound.id,
            caller.key_id,
            float(inbound.created_at),
            response["model"],
            dumps([*inbound.history, *inbound.items]).decode(),
            body.decode(),
        )
        await self.calls.pr.ledger.run(put_response(stored))

    async def retrieve(self, request: Request) -> Response:
        return await self._stored(request, delete=False)

    async def delete(self, request: Request) -> Response:
        return await self._stored(request, delete=True)

    async def _stored(self, request: Request, *, delete: bool) -> Response:
        note = note_of(request.scope)
        response_id = request.path_params["response_id"]
        try:
            caller = await self.calls.auth.caller(request.headers)
            note.key = caller.key_id
            ledger = self.calls.pr.ledger
            if delete:
                if not await ledger.run(delete_response(response_id, caller.key_id)):
                    raise UnknownResponseError(response_id)
                body = dumps({"id": response_id, "object": "response", "deleted": True})
            else:
                stored = await ledger.run(get_response(response_id, caller.key_id))
                if stored is None:
                    raise UnknownResponseError(response_id)
                body = stored.response.encode()
        except PolyrouteError as exc:
            problem = problem_of(exc)
            return problem_response(self.fmt.error_body(problem), problem, note)
        return Response(body, 200, media_type=JSON)
