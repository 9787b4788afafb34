"""OpenAI's Responses API, served: ``POST /v1/responses`` (JSON and SSE), and ``GET`` /
``DELETE /v1/responses/{id}`` of stored ones (DESIGN.md §9).

A request (``_responses_in.py``) becomes our :class:`~polyroute.types.ChatRequest`
and takes the chat endpoints' flow (``_chat.py``); this module adds the rest of the
API: the Response object, its typed SSE events (each with a ``sequence_number``), and
state. With ``store`` (the default, as OpenAI's) the conversation up to the answer
and the Response itself are kept in the ledger database (``ledger/_responses.py``),
so ``previous_response_id`` works on every provider; a virtual key sees only its own.
A failure after the first token ends the stream with ``error`` and
``response.failed``, never with ``response.completed``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from polyroute.errors import PolyrouteError, UnknownResponseError
from polyroute.events import StreamEnd, StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta
from polyroute.gateway._chat import JSON, ChatEndpoint, problem_response
from polyroute.gateway._observe import Note, note_of
from polyroute.gateway._openai import error_object
from polyroute.gateway._problems import problem_of
from polyroute.gateway._relay import Relayer
from polyroute.gateway._responses_in import (
    ResponsesBody,
    ResponsesInbound,
    body_of,
    inbound_of,
    input_items,
    parse,
    references,
)
from polyroute.gateway._wire import Inbound, Problem, Reply, StreamEncoder, dumps, new_id, sse
from polyroute.ledger._responses import ResponseStore, StoredResponse, holder, item_id
from polyroute.types import ChatRequest, ThinkingPart, ToolCall, Usage

if TYPE_CHECKING:
    from polyroute.gateway._auth import Caller
    from polyroute.gateway._chat import Calls


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


def _message_item(
    item_id: str, text: str, status: str, refusal: str | None = None
) -> dict[str, Any]:
    content = [_text_part(text)] if status != "in_progress" else []
    if refusal is not None and status != "in_progress":
        content = [*(content if text else []), _refusal_part(refusal)]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


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


def _reasoning_item(item_id: str, part: ThinkingPart, status: str) -> dict[str, Any]:
    """A thinking block as a reasoning item: its text as the summary, its signature as the
    ``encrypted_content`` (redacted thinking: the encrypted data, no summary). Sent back as
    input, ``_responses_in`` reads it into the same block."""
    summary: list[dict[str, Any]] = [] if part.redacted else [_summary_part(part.text)]
    encrypted = part.text if part.redacted else part.signature
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": summary,
        "encrypted_content": encrypted,
        "status": status,
    }


def _summary_part(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def _output(reply: Reply, response_id: str) -> list[dict[str, Any]]:
    status = "incomplete" if reply.finish_reason in _INCOMPLETE else "completed"
    out = (  # tested first: a comprehension over nothing still costs a call
        [
            _reasoning_item(item_id("rs_", response_id, i), t, "completed")
            for i, t in enumerate(reply.thinking)
        ]
        if reply.thinking
        else []
    )
    if reply.content or reply.refusal is not None or not reply.tool_calls:
        at = item_id("msg_", response_id, len(out))
        out.append(_message_item(at, reply.content, status, reply.refusal))
    if reply.tool_calls:
        out.extend(
            _call_item(item_id("fc_", response_id, len(out) + i), c, "completed")
            for i, c in enumerate(reply.tool_calls)
        )
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
        self.thought: int | None = None  # the open reasoning item's output_index
        self.thought_block = 0  # its thinking block's index
        self.thought_text: list[str] = []
        self.signature: str | None = None
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
        item = _message_item(item_id("msg_", self.inbound.id, index), "", "in_progress")
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

    def _refusal(self, refusal: str) -> bytes:
        """A message whose one part is the refusal (it comes whole, at the end)."""
        index = len(self.output)
        item = _message_item(item_id("msg_", self.inbound.id, index), "", "in_progress")
        self.output.append(item)
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        done = self.output[index] = _message_item(item["id"], "", "completed", refusal)
        return (
            self._frame("response.output_item.added", output_index=index, item=item)
            + self._frame("response.content_part.added", part=_refusal_part(""), **where)
            + self._frame("response.refusal.delta", delta=refusal, **where)
            + self._frame("response.refusal.done", refusal=refusal, **where)
            + self._frame("response.content_part.done", part=_refusal_part(refusal), **where)
            + self._frame("response.output_item.done", output_index=index, item=done)
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

    def _think(self, event: ThinkingDelta) -> bytes:
        out = b""
        if self.thought is not None and event.index != self.thought_block:
            out += self._close_thought()
        if self.thought is None:
            out += self._close_message() + self._close_calls()
            index = self.thought = len(self.output)
            self.thought_block = event.index
            part = ThinkingPart("", redacted=True)
            item = _reasoning_item(item_id("rs_", self.inbound.id, index), part, "in_progress")
            item["encrypted_content"] = None  # until the block's end
            self.output.append(item)
            out += self._frame("response.output_item.added", output_index=index, item=item)
            if not event.redacted:
                out += self._frame(
                    "response.reasoning_summary_part.added",
                    summary_index=0,
                    part=_summary_part(""),
                    **self._thought_at(),
                )
        if event.signature is not None:
            self.signature = event.signature
        if event.redacted:
            self.output[self.thought]["encrypted_content"] = event.text
        elif event.text:
            self.thought_text.append(event.text)
            out += self._frame(
                "response.reasoning_summary_text.delta",
                summary_index=0,
                delta=event.text,
                **self._thought_at(),
            )
        return out

    def _thought_at(self) -> dict[str, Any]:
        assert self.thought is not None
        return {"item_id": self.output[self.thought]["id"], "output_index": self.thought}

    def _close_thought(self) -> bytes:
        index = self.thought
        if index is None:
            return b""
        where = self._thought_at()
        self.thought = None
        item = self.output[index]
        if item["encrypted_content"] is not None and not self.thought_text:  # redacted
            item["status"] = "completed"
            return self._frame("response.output_item.done", output_index=index, item=item)
        text = "".join(self.thought_text)
        self.thought_text.clear()
        part = ThinkingPart(text, signature=self.signature)
        self.signature = None
        item = self.output[index] = _reasoning_item(item["id"], part, "completed")
        return (
            self._frame("response.reasoning_summary_text.done", summary_index=0, text=text, **where)
            + self._frame(
                "response.reasoning_summary_part.done",
                summary_index=0,
                part=_summary_part(text),
                **where,
            )
            + self._frame("response.output_item.done", output_index=index, item=item)
        )

    def event(self, event: StreamEvent) -> bytes:
        out = b"" if self.started else self._start()
        if isinstance(event, ThinkingDelta):
            return out + self._think(event)
        if isinstance(event, TextDelta | ToolCallDelta | StreamEnd):
            out += self._close_thought()
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
                item = _call_item(item_id("fc_", self.inbound.id, index), call, "in_progress")
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
            if event.refusal is not None:
                out += self._close_message() + self._refusal(event.refusal)
            if not any(o["type"] != "reasoning" for o in self.output):
                out += self._open_message()  # an empty answer is still a message, as in JSON
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
            _output(reply, inbound.id),
            reply.usage,
            finish_reason=reply.finish_reason,
        )

    def encoder(self, inbound: Inbound, model: str) -> StreamEncoder:
        assert isinstance(inbound, ResponsesInbound)
        return _Events(inbound, model)

    def error_body(self, problem: Problem) -> bytes:
        return dumps({"error": error_object(problem)})


# -- the endpoints ---------------------------------------------------------------------


RELAYED_ELSEWHERE = (
    " (a response to a request relayed with hosted tools is kept by OpenAI, not here)"
)


class ResponsesEndpoint(ChatEndpoint):
    """``POST /v1/responses`` (the chat flow, with state), and ``GET``/``DELETE`` of one."""

    fmt: ResponsesFormat

    def __init__(self, calls: Calls) -> None:
        super().__init__(calls, ResponsesFormat())
        self.store = ResponseStore(calls.pr.ledger)
        self.relayer = Relayer(calls.pr, calls.selector)

    async def aclose(self) -> None:
        """Commit what is queued (before the ledger closes)."""
        await self.store.flush()

    async def relayed(self, raw: bytes, caller: Caller, note: Note) -> Response | None:
        """Hosted tools pinned to an ``openai`` provider: relayed (``_relay.py``)."""
        relay = self.relayer.plan(raw, caller)
        return None if relay is None else await self.relayer.answer(relay, caller, note)

    async def inbound(self, raw: bytes, caller: Caller) -> Inbound:
        body = body_of(raw)
        items = input_items(body)
        refs = references(items)
        if refs:
            items = await self._dereferenced(items, refs, caller)
        previous = body.previous_response_id
        if previous is None:
            return inbound_of(body, items)
        stored = await self.store.get(previous, caller.key_id)
        if stored is None:
            raise UnknownResponseError(previous, param="previous_response_id")
        output = json.loads(stored.response)["output"]
        return inbound_of(body, items, [*json.loads(stored.input), *output])

    async def _dereferenced(
        self, items: list[dict[str, Any]], refs: list[tuple[int, str]], caller: Caller
    ) -> list[dict[str, Any]]:
        """``items`` with each ``item_reference`` replaced by the stored output item it names
        (stored, the conversation then holds the item itself, not the reference)."""
        items = list(items)
        outputs: dict[str, list[dict[str, Any]]] = {}
        for i, ref in refs:
            response_id = holder(ref)
            if response_id is not None and response_id not in outputs:
                stored = await self.store.get(response_id, caller.key_id)
                held = [] if stored is None else json.loads(stored.response)["output"]
                outputs[response_id] = held
            found = [o for o in outputs.get(response_id or "", ()) if o["id"] == ref]
            if not found:
                raise UnknownResponseError(ref, param=f"input.{i}.id", item=True)
            items[i] = found[0]
        return items

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
        self.store.put(stored)

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
            if delete:
                if not await self.store.delete(response_id, caller.key_id):
                    raise UnknownResponseError(response_id, hint=RELAYED_ELSEWHERE)
                body = dumps({"id": response_id, "object": "response", "deleted": True})
            else:
                stored = await self.store.get(response_id, caller.key_id)
                if stored is None:
                    raise UnknownResponseError(response_id, hint=RELAYED_ELSEWHERE)
                body = stored.response.encode()
        except PolyrouteError as exc:
            problem = problem_of(exc)
            return problem_response(self.fmt.error_body(problem), problem, note)
        return Response(body, 200, media_type=JSON)
