"""A simulated Cohere v2 Chat API (``POST /v2/chat``, ``GET /v1/models``) for tests.

Built on :class:`polyroute.testing.Simulator`, so a test scripts its faults like the
built-in ones' (``sim.script.fail_next(2, 503)``). Checked as the real API checks: the
bearer key, a ``model`` and ``messages``, and only the fields of the SDK's
``V2ChatRequest`` (any other is a 400). Usage has ``billed_units`` and ``tokens`` (the
latter with :data:`TEMPLATE_TOKENS` more input: the model's prompt template).

With ``tool_choice: "REQUIRED"`` the answer calls the first tool: its arguments are the
reply text when that is a JSON object, else a sample of the tool's parameters. With a
``response_format`` JSON schema, the default reply is a sample of it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from polyroute.testing import SimChat, SimReply, Simulator, sample_json, sse

_FIELDS = frozenset(
    {
        "model", "messages", "tools", "strict_tools", "documents", "citation_options",
        "response_format", "safety_mode", "max_tokens", "stop_sequences", "temperature",
        "seed", "frequency_penalty", "presence_penalty", "k", "p", "logprobs",
        "tool_choice", "thinking", "priority", "stream",
    }
)  # fmt: skip
_ROLES = frozenset({"system", "user", "assistant", "tool"})
TEMPLATE_TOKENS = 10
"""Input tokens of the model's prompt template: counted in ``tokens``, not billed."""


@dataclass(frozen=True, slots=True)
class CohereChat(SimChat):
    tool: Mapping[str, Any] | None = None
    """The function the answer calls (``tool_choice: "REQUIRED"``), if any."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise TypeError("content: must be a string or a list of content blocks")
    return "".join(str(c.get("text") or "") for c in content if c.get("type") == "text")


class CohereSimulator(Simulator):
    vendor: ClassVar[str] = "cohere"
    default_models: ClassVar[tuple[str, ...]] = ("command-a-03-2025", "command-r7b-12-2024")
    head_frames: ClassVar[int] = 2  # message-start, then content-start (or the tool call's)

    @property
    def base_url(self) -> str:
        return self.root_url  # the SDK's base_url: paths carry /v2 (chat) or /v1 (models)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v2/chat", self.handle_chat, methods=["POST"]),
            Route("/v1/models", self.handle_models, methods=["GET"]),
        ]

    def authorized(self, request: Request) -> bool:
        return self.api_key is None or (
            request.headers.get("authorization") == f"Bearer {self.api_key}"
        )

    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": uuid.uuid4().hex}

    def error_response(self, status: int, message: str, error_type: str | None) -> Response:
        return JSONResponse({"id": str(uuid.uuid4()), "message": message}, status)

    async def handle_models(self, request: Request) -> Response:
        self.record(request, None)
        if not self.authorized(request):
            return self.error_response(401, "invalid api token", None)
        cards = [
            {
                "name": m,
                "endpoints": ["chat"],
                "finetuned": False,
                "context_length": 256000 if m.startswith("command-a") else 128000,
                "features": ["tool_use", "json_mode", "json_schema", "strict_tools"],
            }
            for m in self.models
        ]
        return JSONResponse({"models": cards})

    def parse_chat(self, request: Request, body: Any) -> SimChat:
        if not isinstance(body, dict):
            raise TypeError("body: must be an object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise ValueError(f"unknown field: {unknown[0]}")
        model = body["model"]
        if model not in self.models:
            raise ValueError(f"model '{model}' not found")
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages: must be a non-empty list")
        texts: list[str] = []
        last_user = ""
        for m in messages:
            if m.get("role") not in _ROLES:
                raise ValueError(f"messages: unknown role {m.get('role')!r}")
            if m["role"] == "tool" and not m.get("tool_call_id"):
                raise ValueError("messages: a tool message needs tool_call_id")
            text = _text(m.get("content"))
            texts.append(text)
            if m["role"] == "user":
                last_user = text
        fmt = body.get("response_format") or {}
        schema = fmt.get("json_schema") if fmt.get("type") == "json_object" else None
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if choice not in (None, "REQUIRED", "NONE"):
            raise ValueError("tool_choice: must be REQUIRED or NONE")
        return CohereChat(
            model=model,
            prompt="\n".join(texts),
            last_user=last_user,
            max_tokens=body.get("max_tokens"),
            stream=bool(body.get("stream")),
            schema=schema,
            tool=tools[0]["function"] if choice == "REQUIRED" and tools else None,
        )

    def _arguments(self, chat: SimChat, reply: SimReply) -> str:
        tool = chat.tool if isinstance(chat, CohereChat) else None
        assert tool is not None
        try:
            value = json.loads(reply.text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            value = sample_json(tool.get("parameters") or {"type": "object"})
        return json.dumps(value)

    def _usage(self, reply: SimReply) -> dict[str, Any]:
        billed = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}
        usage: dict[str, Any] = {
            "billed_units": billed,
            "tokens": {**billed, "input_tokens": reply.prompt_tokens + TEMPLATE_TOKENS},
        }
        if reply.cached_tokens:
            usage["cached_tokens"] = reply.cached_tokens
        return usage

    def _finish(self, chat: SimChat, reply: SimReply) -> str:
        if reply.truncated:
            return "MAX_TOKENS"
        return "TOOL_CALL" if isinstance(chat, CohereChat) and chat.tool else "COMPLETE"

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        message: dict[str, Any] = {"role": "assistant"}
        if isinstance(chat, CohereChat) and chat.tool is not None:
            message["tool_plan"] = f"I will call {chat.tool['name']}."
            message["tool_calls"] = [
                {
                    "id": f"{chat.tool['name']}_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {
                        "name": chat.tool["name"],
                        "arguments": self._arguments(chat, reply),
                    },
                }
            ]
        else:
            message["content"] = [{"type": "text", "text": reply.text}]
        return {
            "id": str(uuid.uuid4()),
            "finish_reason": self._finish(chat, reply),
            "message": message,
            "usage": self._usage(reply),
        }

    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        rid = str(uuid.uuid4())
        start = {
            "id": rid,
            "type": "message-start",
            "delta": {
                "message": {
                    "role": "assistant",
                    "content": [],
                    "tool_plan": "",
                    "tool_calls": [],
                    "citations": [],
                }
            },
        }
        yield sse(start, "message-start")
        tool = chat.tool if isinstance(chat, CohereChat) else None
        if tool is not None:
            call_id = f"{tool['name']}_{uuid.uuid4().hex[:12]}"
            fn = {"name": tool["name"], "arguments": ""}
            call = {"id": call_id, "type": "function", "function": fn}
            yield sse(
                {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": call}}},
                "tool-call-start",
            )
            args = self._arguments(chat, reply)
            for piece in (args[i : i + 12] for i in range(0, len(args), 12)):
                delta = {"message": {"tool_calls": {"function": {"arguments": piece}}}}
                yield sse(
                    {"type": "tool-call-delta", "index": 0, "delta": delta}, "tool-call-delta"
                )
            yield sse({"type": "tool-call-end", "index": 0}, "tool-call-end")
        else:
            block = {"message": {"content": {"type": "text", "text": ""}}}
            yield sse({"type": "content-start", "index": 0, "delta": block}, "content-start")
            for piece in reply.chunks() if reply.text else ():
                text = {"message": {"content": {"text": piece}}}
                yield sse({"type": "content-delta", "index": 0, "delta": text}, "content-delta")
            yield sse({"type": "content-end", "index": 0}, "content-end")
        end = {
            "type": "message-end",
            "delta": {"finish_reason": self._finish(chat, reply), "usage": self._usage(reply)},
        }
        yield sse(end, "message-end")


__all__ = ["TEMPLATE_TOKENS", "CohereChat", "CohereSimulator"]
