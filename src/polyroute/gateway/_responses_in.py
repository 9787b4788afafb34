"""The Responses API's requests (``POST /v1/responses``) as our :class:`ChatRequest`.

``input`` (a string, or items: messages with text, image and file parts,
``function_call``, ``function_call_output``, ``reasoning``), ``instructions``,
function tools, ``tool_choice``, ``text.format``, ``reasoning.effort`` and the
sampling fields are carried or translated; every other field, hosted tools and
other item types are a 400 naming them (hosted tools pinned to an ``openai`` provider
never get here: the endpoint relays them whole, ``_relay.py``). An assistant's text, reasoning and
function calls in a row are one assistant turn. ``item_reference`` items name output
items of stored responses: the endpoint puts those in their place (:func:`references`)
before the items are read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polyroute._frozen import fast_init
from polyroute.errors import GatewayError
from polyroute.gateway._wire import MAX_TOKENS, Hints, Inbound, invalid
from polyroute.ledger._responses import new_response_id
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
)

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


class _ItemReference(_Strict):
    type: Literal["item_reference"]
    id: str = Field(min_length=1)


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


_HOSTED = (
    "hosted tools run only in OpenAI's Responses API: pin a provider of type openai "
    '("<provider id>/<model>") to have the request relayed there'
)


def _tools(raw: Sequence[Any]) -> tuple[list[Tool], list[dict[str, Any]]]:
    """Our tools, and the tools as the Response object echoes them."""
    tools, echo = [], []
    for i, data in enumerate(raw):
        at = f"tools.{i}"
        kind = data.get("type") if isinstance(data, dict) else None
        if kind != "function":
            raise GatewayError(
                f"{at}: tool type {kind!r} is not supported here: {_HOSTED}",
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


@fast_init
@dataclass(frozen=True, slots=True)
class ResponsesInbound(Inbound):
    """A parsed Responses request: ours, and what its Response echoes and keeps."""

    new: ClassVar[type[ResponsesInbound]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    body: ResponsesBody | None = None
    items: Sequence[dict[str, Any]] = ()
    """This request's input items, as sent (a string input as one user message)."""
    history: Sequence[dict[str, Any]] = ()
    """The stored conversation ``previous_response_id`` continues."""
    tools: Sequence[dict[str, Any]] = ()
    created_at: int = 0
    id: str = field(default_factory=new_response_id)


def parse(raw: bytes) -> ResponsesInbound:
    """The request, when it refers to nothing stored (else see :func:`inbound_of`)."""
    body = body_of(raw)
    return inbound_of(body, input_items(body))


def body_of(raw: bytes) -> ResponsesBody:
    try:
        return ResponsesBody.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(exc) from None


def input_items(body: ResponsesBody) -> list[dict[str, Any]]:
    """``input`` as items (a string as one user message)."""
    if isinstance(body.input, str):
        return [{"type": "message", "role": "user", "content": body.input}]
    return body.input


def references(items: Sequence[Any]) -> list[tuple[int, str]]:
    """The ``item_reference`` items: (index, the id of the item referred to)."""
    refs = []
    for i, data in enumerate(items):
        if isinstance(data, dict) and data.get("type") == "item_reference":
            ref: _ItemReference = _checked(_ItemReference, data, f"input.{i}")
            refs.append((i, ref.id))
    return refs


def inbound_of(
    body: ResponsesBody,
    items: Sequence[dict[str, Any]],
    history: Sequence[dict[str, Any]] = (),
) -> ResponsesInbound:
    """The request with ``items`` as its input (references resolved) after ``history``,
    the stored conversation ``previous_response_id`` continues."""
    if isinstance(body.input, str) and not history:
        messages = [Message.user(body.input)]
    else:
        messages = _messages(_items([*history, *items]))
    if body.instructions:
        messages.insert(0, Message.system(body.instructions))
    if not messages:
        raise GatewayError("input: no messages to answer", param="input")
    tools, echo = _tools(body.tools or ())
    effort = None if body.reasoning is None else body.reasoning.effort
    reasoning = None if effort is None or effort == "none" else Reasoning(effort)
    request = ChatRequest.new(
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
        # metadata tags the Response object (echoed, stored here), not the upstream's call
        reasoning=reasoning,
    )
    return ResponsesInbound.new(
        request,
        stream=bool(body.stream),
        hints=body.polyroute,
        body=body,
        items=items,
        history=history,
        tools=echo,
        created_at=int(time.time()),
    )
