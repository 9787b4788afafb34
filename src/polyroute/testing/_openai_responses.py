"""The OpenAI simulator's Responses API (``POST /v1/responses``): the Response object and
its typed stream events, as OpenAI sends them.

A ``tool_choice`` that forces a function (or ``required``: the first tool) makes the
answer a ``function_call`` to it: its arguments are the reply text when that is a JSON
object, else a sample of the tool's schema, streamed in three pieces. With
``reasoning`` the output starts with a ``reasoning`` item, its summary filled when
``reasoning.summary`` is asked and its ``encrypted_content`` when ``include`` asks for
it. Every stream event carries a ``sequence_number``; a truncated answer ends
``incomplete`` (``max_output_tokens``). With a hosted web search tool (and no function
forced, ``max_tool_calls`` not 0) the answer searches first: a ``web_search_call`` item
(streamed as ``response.web_search_call.in_progress``/``searching``/``completed``), then
the message with a ``url_citation`` annotation over its text.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from polyroute.testing._sim import SimChat, SimReply, sample_json, sse


@dataclass(frozen=True, slots=True)
class ResponsesChat(SimChat):
    """A ``POST /responses`` request as the simulator understood it."""

    tool: Mapping[str, Any] | None = None
    """The function tool the answer calls, where ``tool_choice`` forces one."""
    reasoning: bool = False
    summary: bool = False
    encrypted: bool = False
    body: Mapping[str, Any] | None = None
    search: bool = False
    """The answer calls the hosted web search tool first."""


SEARCH_TOOLS = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)
CITED_URL = "https://example.org/simulated-source"
"""Where the simulator's web search 'found' its answer."""


def _text(value: Any) -> str:
    """The text of an input item's content or output (a string, or parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(p.get("text", "")) for p in value if isinstance(p, dict))
    return ""


def responses_chat(body: Any) -> ResponsesChat:
    raw = body["input"]
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise TypeError("input must be a string or an array")
    texts = [body.get("instructions") or ""]
    users = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            texts.append(_text(item.get("content")))
            if item.get("role") == "user":
                users.append(texts[-1])
        elif kind == "function_call":
            texts.append(str(item["arguments"]))
        elif kind == "function_call_output":
            texts.append(_text(item["output"]))
        elif kind not in ("reasoning", "web_search_call"):
            raise ValueError(f"unsupported input item type {kind!r}")
    fmt = (body.get("text") or {}).get("format") or {}
    reasoning = body.get("reasoning") or {}
    return ResponsesChat(
        model=body["model"],
        prompt="\n".join(t for t in texts if t),
        last_user=users[-1] if users else "",
        max_tokens=body.get("max_output_tokens"),
        stream=bool(body.get("stream")),
        schema=fmt.get("schema") if fmt.get("type") == "json_schema" else None,
        tool=_forced(body),
        reasoning=bool(reasoning.get("effort")) and reasoning.get("effort") != "none",
        summary=bool(reasoning.get("summary")),
        encrypted="reasoning.encrypted_content" in (body.get("include") or ()),
        body=body,
        search=_searches(body),
    )


def _searches(body: Mapping[str, Any]) -> bool:
    tools = {t.get("type") for t in body.get("tools") or ()}
    return bool(tools & SEARCH_TOOLS) and body.get("max_tool_calls") != 0 and not _forced(body)


def _forced(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tools = [t for t in body.get("tools") or () if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if choice == "required" and tools:
        first: Mapping[str, Any] = tools[0]
        return first
    if isinstance(choice, dict) and choice.get("type") == "function":
        named = [t for t in tools if t.get("name") == choice.get("name")]
        if not named:
            raise ValueError(f"tool_choice names no tool: {choice.get('name')!r}")
        chosen: Mapping[str, Any] = named[0]
        return chosen
    return None


def pieces(text: str, n: int = 3) -> list[str]:
    """``text`` in ``n`` pieces (fewer when shorter), as arguments and refusals stream."""
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class SimResponse:
    """One answer as a Response object, or as its stream of events."""

    def __init__(self, chat: ResponsesChat, reply: SimReply, refusal: str | None) -> None:
        self.chat = chat
        self.reply = reply
        self.refusal = refusal
        self.id = _id("resp")
        self.created_at = int(time.time())
        self._seq = 0
        self.thought = f"Thinking about: {chat.last_user[:60]}"
        self.call = None if chat.tool is None else self._call(chat.tool)
        self.search = None if not chat.search else self._search()

    def _search(self) -> dict[str, Any]:
        return {
            "id": "ws_" + self.id[5:],
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "search", "query": self.chat.last_user[:100]},
        }

    def _citations(self) -> list[dict[str, Any]]:
        if self.search is None:
            return []
        end = len(self.reply.text)
        cited = {"start_index": 0, "end_index": end, "title": "A simulated source"}
        return [{"type": "url_citation", **cited, "url": CITED_URL}]

    def _call(self, tool: Mapping[str, Any]) -> dict[str, Any]:
        try:
            given = json.loads(self.reply.text)
        except ValueError:
            given = None
        if not isinstance(given, dict):
            given = sample_json(tool.get("parameters") or {"type": "object"})
        return {
            "id": _id("fc"),
            "type": "function_call",
            "status": "completed",
            "call_id": _id("call"),
            "name": tool["name"],
            "arguments": json.dumps(given, ensure_ascii=False),
        }

    # -- the items -------------------------------------------------------------------

    def _reasoning(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": "rs_" + self.id[5:], "type": "reasoning", "summary": []}
        if self.chat.summary:
            item["summary"] = [{"type": "summary_text", "text": self.thought}]
        if self.chat.encrypted:
            digest = hashlib.sha256(self.thought.encode()).hexdigest()
            item["encrypted_content"] = "gAAAAsim" + digest
        return item

    def _content(self) -> dict[str, Any]:
        if self.refusal is not None:
            return {"type": "refusal", "refusal": self.refusal}
        annotations = self._citations()
        return {
            "type": "output_text",
            "text": self.reply.text,
            "annotations": annotations,
            "logprobs": [],
        }

    def _message(self, status: str = "completed", content: list[Any] | None = None) -> Any:
        return {
            "id": "msg_" + self.id[5:],
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [self._content()] if content is None else content,
        }

    def output(self) -> list[dict[str, Any]]:
        out = [self._reasoning()] if self.chat.reasoning else []
        if self.search is not None:
            out.append(self.search)
        out.append(self.call if self.call is not None else self._message(self._status()))
        return out

    def _status(self) -> str:
        return "incomplete" if self.reply.truncated and self.call is None else "completed"

    def _usage(self) -> dict[str, Any]:
        r = self.reply
        return {
            "input_tokens": r.prompt_tokens,
            "input_tokens_details": {
                "cached_tokens": r.cached_tokens,
                "cache_write_tokens": r.cache_write_tokens,
            },
            "output_tokens": r.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": r.reasoning_tokens},
            "total_tokens": r.prompt_tokens + r.completion_tokens,
        }

    def body(self, status: str | None = None, output: list[Any] | None = None) -> dict[str, Any]:
        """The Response object; ``status`` other than the final one: a snapshot without usage."""
        b = self.chat.body or {}
        final = status is None
        status = self._status() if status is None else status
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": b.get("max_tool_calls"),
            "model": self.chat.model,
            "output": self.output() if output is None else output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": (b.get("reasoning") or {}).get("effort"), "summary": None},
            "service_tier": b.get("service_tier") or "default",
            "store": b.get("store", True),
            "temperature": b.get("temperature", 1.0),
            "text": b.get("text") or {"format": {"type": "text"}},
            "tool_choice": b.get("tool_choice") or "auto",
            "tools": b.get("tools") or [],
            "top_p": b.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self._usage() if final else None,
            "user": b.get("user"),
            "metadata": b.get("metadata") or {},
        }

    # -- the stream ------------------------------------------------------------------

    def _event(self, kind: str, **data: Any) -> str:
        frame = sse({"type": kind, "sequence_number": self._seq, **data}, event=kind)
        self._seq += 1
        return frame

    def events(self, error_code: str | None = None) -> Iterator[str]:
        """created, in_progress, each output item's events, then completed (or incomplete,
        or ``error`` and ``failed`` when ``error_code`` is scripted)."""
        yield self._event("response.created", response=self.body("in_progress", []))
        yield self._event("response.in_progress", response=self.body("in_progress", []))
        index = 0
        if self.chat.reasoning:
            yield from self._reasoning_events(index)
            index += 1
        if self.search is not None:
            yield from self._search_events(index, self.search)
            index += 1
        if self.call is not None:
            yield from self._call_events(index, self.call)
        else:
            yield from self._message_events(index)
        if error_code is not None:
            message = "The server had an error while processing your request."
            yield self._event("error", code=error_code, message=message, param=None)
            failed = self.body("failed")
            failed["error"] = {"code": error_code, "message": message}
            yield self._event("response.failed", response=failed)
            return
        kind = "response.completed" if self._status() == "completed" else "response.incomplete"
        yield self._event(kind, response=self.body())

    def _reasoning_events(self, index: int) -> Iterator[str]:
        item = self._reasoning()
        at = {"item_id": item["id"], "output_index": index}
        yield self._event(
            "response.output_item.added", output_index=index, item={**item, "summary": []}
        )
        if self.chat.summary:
            part = {"type": "summary_text", "text": ""}
            yield self._event(
                "response.reasoning_summary_part.added", **at, summary_index=0, part=part
            )
            for piece in pieces(self.thought):
                yield self._event(
                    "response.reasoning_summary_text.delta", **at, summary_index=0, delta=piece
                )
            yield self._event(
                "response.reasoning_summary_text.done", **at, summary_index=0, text=self.thought
            )
            done = {"type": "summary_text", "text": self.thought}
            yield self._event(
                "response.reasoning_summary_part.done", **at, summary_index=0, part=done
            )
        yield self._event("response.output_item.done", output_index=index, item=item)

    def _search_events(self, index: int, item: dict[str, Any]) -> Iterator[str]:
        at = {"item_id": item["id"], "output_index": index}
        added = {**item, "status": "in_progress"}
        yield self._event("response.output_item.added", output_index=index, item=added)
        for step in ("in_progress", "searching", "completed"):
            yield self._event(f"response.web_search_call.{step}", **at)
        yield self._event("response.output_item.done", output_index=index, item=item)

    def _call_events(self, index: int, call: dict[str, Any]) -> Iterator[str]:
        at = {"item_id": call["id"], "output_index": index}
        added = {**call, "status": "in_progress", "arguments": ""}
        yield self._event("response.output_item.added", output_index=index, item=added)
        for piece in pieces(call["arguments"]):
            yield self._event("response.function_call_arguments.delta", **at, delta=piece)
        yield self._event(
            "response.function_call_arguments.done",
            **at,
            name=call["name"],
            arguments=call["arguments"],
        )
        yield self._event("response.output_item.done", output_index=index, item=call)

    def _message_events(self, index: int) -> Iterator[str]:
        at = {"item_id": "msg_" + self.id[5:], "output_index": index, "content_index": 0}
        added = self._message("in_progress", [])
        yield self._event("response.output_item.added", output_index=index, item=added)
        if self.refusal is not None:
            empty: dict[str, Any] = {"type": "refusal", "refusal": ""}
            yield self._event("response.content_part.added", **at, part=empty)
            for piece in pieces(self.refusal):
                yield self._event("response.refusal.delta", **at, delta=piece)
            yield self._event("response.refusal.done", **at, refusal=self.refusal)
        else:
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield self._event("response.content_part.added", **at, part=empty)
            for piece in self.reply.chunks():
                yield self._event("response.output_text.delta", **at, delta=piece, logprobs=[])
            for i, annotation in enumerate(self._citations()):
                yield self._event(
                    "response.output_text.annotation.added",
                    **at,
                    annotation_index=i,
                    annotation=annotation,
                )
            yield self._event("response.output_text.done", **at, text=self.reply.text, logprobs=[])
        yield self._event("response.content_part.done", **at, part=self._content())
        yield self._event(
            "response.output_item.done", output_index=index, item=self._message(self._status())
        )
