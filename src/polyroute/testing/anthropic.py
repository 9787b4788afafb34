"""Simulated Anthropic API: ``/v1/messages`` (JSON and SSE) and ``/v1/models``.

What it checks, as the real API does: the key (``x-api-key``, or
``Authorization: Bearer`` as SDK 2.x sends it; ``x-api-key`` wins when both
are there), the ``anthropic-version`` header, a ``max_tokens``, user/assistant
roles only, and no ``temperature``/``top_p``/``top_k`` under version
``2026-10-21``. Errors are ``{"type": "error", "error": {"type", "message"},
"request_id"}`` with a ``request-id`` header; 529 is ``overloaded_error``.

When ``tool_choice`` forces a tool (``tool`` or ``any``), the reply is a
``tool_use`` of that tool: its input is the reply text when that is a JSON
object, else ``{"answer": text}``. Stop sequences cut the reply as the API
would. :meth:`AnthropicSimulator.error_mid_stream` scripts the ``event: error``
the API sends when a stream fails after its 200.

Extended thinking: with ``thinking: {type: enabled, budget_tokens}`` (at least
1,024, below ``max_tokens``, no temperature but 1) the answer starts with a
``thinking`` block (the simulator's ``thinking`` text, or a line about the
question) signed by :func:`sign`; streamed as ``thinking_delta`` pieces and one
``signature_delta``. Its tokens count in ``output_tokens``. A ``thinking`` block
sent back must carry the signature the simulator gave it, and come first in its
assistant turn, as the API checks; :attr:`AnthropicSimulator.thinking_seen`
keeps the blocks received.

Prompt caching: ``cache_control`` breakpoints are checked as the API checks them
(at most four, 1-hour ones first); the script's ``cached_tokens``,
``cache_write_tokens`` and ``cache_write_1h_tokens`` come back as
``cache_read_input_tokens``, ``cache_creation_input_tokens`` and the
``cache_creation`` split, with ``input_tokens`` the rest of the prompt.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from polyroute.testing._sim import (
    Replier,
    Script,
    SimChat,
    SimReply,
    Simulator,
    count_tokens,
    sse,
)

VERSIONS = ("2023-06-01", "2026-10-21")
_COUNTED = frozenset(
    (
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "output_format",
        "cache_control",
        "context_management",
        "mcp_servers",
        "speed",
    )
)  # what /v1/messages/count_tokens takes
_MESSAGES = _COUNTED | {
    "max_tokens",
    "metadata",
    "service_tier",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "container",
    "inference_geo",
}  # what /v1/messages takes: anything else is refused, as the API refuses it
_NO_SAMPLING_VERSION = "2026-10-21"  # removed temperature, top_p and top_k

# status -> error type, as the API documents them; other 4xx are invalid_request_error
_ERRORS: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_MODEL_LIMITS: Mapping[str, tuple[str, int, int]] = {
    # id -> (display name, max input tokens, max output tokens); simulated values
    "claude-sonnet-4-6": ("Claude Sonnet 4.6", 200_000, 64_000),
    "claude-haiku-4-5": ("Claude Haiku 4.5", 200_000, 64_000),
    "claude-opus-4-7": ("Claude Opus 4.7", 200_000, 128_000),
}


@dataclass(frozen=True, slots=True)
class AnthropicChat(SimChat):
    """A Messages request as the simulator understood it."""

    tool: str | None = None
    """The tool ``tool_choice`` forces, if any: the reply is a call to it."""
    stop_sequences: tuple[str, ...] = ()
    thinking: str | None = None
    """The thinking the answer starts with (extended thinking asked), if any."""


def sign(thinking: str) -> str:
    """The simulator's signature of a thinking block (opaque to clients, as the API's)."""
    return "sig" + hashlib.sha256(b"sim-thinking:" + thinking.encode()).hexdigest()


def _text(content: Any) -> str:
    """The text of a message's content, tool results included."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            out.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            out.append(_text(block.get("content")))
    return "".join(out)


MAX_BREAKPOINTS = 4


def _marks(blocks: Any) -> Iterator[Any]:
    """The ``cache_control`` of each block (and of a tool result's blocks), in order."""
    if not isinstance(blocks, list):
        return
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            yield from _marks(block.get("content"))
        if "cache_control" in block:
            yield block["cache_control"]


def _check_cache_control(body: Any) -> None:
    """As the API checks breakpoints: ``ephemeral`` with a ``5m``/``1h`` ttl, at most four,
    and the 1-hour ones before any 5-minute one (tools, then system, then messages)."""
    marks = [*_marks(body.get("tools")), *_marks(body.get("system"))]
    for m in body.get("messages") or ():
        if isinstance(m, dict):
            marks.extend(_marks(m.get("content")))
    ttls = []
    for mark in marks:
        if not isinstance(mark, dict) or mark.get("type") != "ephemeral":
            raise ValueError("cache_control.type: Input should be 'ephemeral'")
        ttl = mark.get("ttl", "5m")
        if ttl not in ("5m", "1h"):
            raise ValueError("cache_control.ttl: Input should be '5m' or '1h'")
        ttls.append(ttl)
    if len(ttls) > MAX_BREAKPOINTS:
        raise ValueError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(ttls)}."
        )
    if "1h" in ttls and "5m" in ttls[: len(ttls) - ttls[::-1].index("1h")]:
        raise ValueError("a ttl='1h' cache_control block must not come after a ttl='5m' one")


def _id(prefix: str) -> str:
    return f"{prefix}_01{uuid.uuid4().hex[:22]}"


class AnthropicSimulator(Simulator):
    vendor: ClassVar[str] = "anthropic"
    default_models: ClassVar[tuple[str, ...]] = tuple(_MODEL_LIMITS)
    head_frames: ClassVar[int] = 3  # message_start, content_block_start, ping

    def __init__(
        self,
        *,
        reply: str | Replier | None = None,
        api_key: str | None = "sim-key",
        models: tuple[str, ...] | None = None,
        script: Script | None = None,
        thinking: str | None = None,
    ) -> None:
        super().__init__(reply=reply, api_key=api_key, models=models, script=script)
        self._inband: deque[tuple[str, str, int]] = deque()
        self.thinking = thinking
        """The thinking text answers start with when thinking is asked (``None``: one line
        about the question)."""
        self.thinking_seen: list[dict[str, Any]] = []
        """Thinking and redacted thinking blocks received in assistant turns, in order."""

    def error_mid_stream(
        self,
        error_type: str = "overloaded_error",
        message: str = "Overloaded",
        after_chunks: int = 1,
    ) -> None:
        """The next stream sends ``after_chunks`` deltas, then ``event: error``."""
        with self._lock:
            self._inband.append((error_type, message, after_chunks))

    @property
    def base_url(self) -> str:
        return self.root_url  # the SDK and polyroute add /v1 themselves

    def response_headers(self) -> dict[str, str]:
        return {"request-id": _id("req")}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/messages", self.handle_chat, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.handle_count_tokens, methods=["POST"]),
            Route("/v1/models", self.handle_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.handle_model, methods=["GET"]),
        ]

    def authorized(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        key = request.headers.get("x-api-key")
        if key is None:
            auth = request.headers.get("authorization", "")
            key = auth[7:] if auth.startswith("Bearer ") else None
        return key == self.api_key

    def error_response(self, status: int, message: str, error_type: str | None) -> Response:
        etype = error_type or _ERRORS.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        rid = _id("req")
        body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": rid}
        return JSONResponse(body, status, headers={"request-id": rid})

    def _version_error(self, request: Request) -> str | None:
        version = request.headers.get("anthropic-version")
        if version is None:
            return "anthropic-version: header is required"
        if version not in VERSIONS:
            return f"anthropic-version: unknown version {version!r}"
        return None

    def parse_chat(self, request: Request, body: Any) -> SimChat:
        problem = self._version_error(request)
        if problem:
            raise ValueError(problem)
        if request.headers["anthropic-version"] == _NO_SAMPLING_VERSION:
            for name in ("temperature", "top_p", "top_k"):
                if name in body:
                    raise ValueError(f"{name}: Extra inputs are not permitted")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                raise ValueError(f"{name}: Field required")
        extra = sorted(set(body) - _MESSAGES)
        if extra:  # an OpenAI-only field (seed, presence_penalty...) never reaches it
            raise ValueError(f"{extra[0]}: Extra inputs are not permitted")
        _check_cache_control(body)
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages: at least one message is required")
        for m in messages:
            if not isinstance(m, dict):
                raise TypeError("messages: each message must be an object")
            if m.get("role") not in ("user", "assistant"):
                raise ValueError(f"messages: Unexpected role {m.get('role')!r}")
            if m["role"] == "assistant":
                self._check_thinking(m.get("content"))
        texts = [_text(m.get("content")) for m in messages]
        users = [t for m, t in zip(messages, texts, strict=True) if m["role"] == "user"]
        system = body.get("system")
        return AnthropicChat(
            model=body["model"],
            prompt="\n".join([_text(system), *texts] if system else texts),
            last_user=users[-1] if users else "",
            max_tokens=int(body["max_tokens"]),
            stream=bool(body.get("stream")),
            tool=self._forced_tool(body),
            stop_sequences=tuple(body.get("stop_sequences") or ()),
            thinking=self._thinking(body, users[-1] if users else ""),
            schema=self._schema(body),
        )

    def _schema(self, body: Any) -> Any:
        """The answer's JSON schema: structured outputs (``output_config.format``, or the
        beta's ``output_format``), else the input schema of the tool a call is forced to."""
        fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema") or {}
        forced = self._forced_tool(body)
        for tool in body.get("tools") or ():
            if forced is not None and tool.get("name") == forced:
                return tool.get("input_schema")
        return None

    def _check_thinking(self, content: Any) -> None:
        """Thinking blocks come first in their turn, each with the signature it was given."""
        if not isinstance(content, list):
            return
        seen_other = False
        for i, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in ("thinking", "redacted_thinking"):
                seen_other = True
                continue
            if seen_other:
                raise ValueError(f"messages: content.{i}: thinking blocks must come first")
            if kind == "thinking" and block.get("signature") != sign(block.get("thinking", "")):
                raise ValueError(f"messages: content.{i}: Invalid `signature` in `thinking` block")
            with self._lock:
                self.thinking_seen.append(block)

    def _thinking(self, body: Any, question: str) -> str | None:
        config = body.get("thinking")
        if not isinstance(config, dict) or config.get("type") != "enabled":
            return None
        budget = config.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise ValueError("thinking.enabled.budget_tokens: Input should be >= 1024")
        if budget >= int(body["max_tokens"]):
            raise ValueError("`max_tokens` must be greater than `thinking.budget_tokens`")
        if body.get("temperature", 1) != 1:
            raise ValueError("`temperature` may only be set to 1 when thinking is enabled")
        return self.thinking if self.thinking is not None else f"The user asks: {question}"

    def _forced_tool(self, body: Any) -> str | None:
        choice = body.get("tool_choice") or {}
        tools = body.get("tools") or []
        if not isinstance(choice, dict):
            raise TypeError("tool_choice: must be an object")
        if choice.get("type") == "tool":
            return str(choice["name"])
        if choice.get("type") == "any" and tools:
            return str(tools[0]["name"])
        return None

    # -- the answer ---------------------------------------------------------

    def _outcome(self, chat: SimChat, reply: SimReply) -> tuple[SimReply, str, str | None]:
        """The reply as the API ends it: (reply, stop_reason, stop_sequence)."""
        if isinstance(chat, AnthropicChat) and chat.tool is not None:
            return reply, "max_tokens" if reply.truncated else "tool_use", None
        stops = chat.stop_sequences if isinstance(chat, AnthropicChat) else ()
        hits = [(reply.text.find(s), s) for s in stops if s and s in reply.text]
        if hits:
            at, seq = min(hits)
            text = reply.text[:at]
            cut = replace(reply, text=text, completion_tokens=count_tokens(text), truncated=False)
            return cut, "stop_sequence", seq
        return reply, "max_tokens" if reply.truncated else "end_turn", None

    def _tool_input(self, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        return value if isinstance(value, dict) else {"answer": text}

    def _usage(self, reply: SimReply, thinking: str | None = None) -> dict[str, Any]:
        # input_tokens excludes the tokens read from (or written to) the cache; output_tokens
        # includes thinking.
        written, written_1h = reply.cache_write_tokens, reply.cache_write_1h_tokens
        usage: dict[str, Any] = {
            "input_tokens": reply.prompt_tokens - reply.cached_tokens - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written - written_1h,
                "ephemeral_1h_input_tokens": written_1h,
            },
            "output_tokens": reply.completion_tokens + count_tokens(thinking or ""),
            "service_tier": "standard",
        }
        thought = reply.reasoning_tokens + count_tokens(thinking or "")
        if thought:
            usage["output_tokens_details"] = {"thinking_tokens": thought}
        return usage

    def _message(self, chat: SimChat, content: list[Any], usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": _id("msg"),
            "type": "message",
            "role": "assistant",
            "model": chat.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "stop_details": None,
            "usage": usage,
        }

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        reply, stop_reason, stop_sequence = self._outcome(chat, reply)
        tool = chat.tool if isinstance(chat, AnthropicChat) else None
        thinking = chat.thinking if isinstance(chat, AnthropicChat) else None
        content: list[Any] = []
        if thinking is not None:
            content.append({"type": "thinking", "thinking": thinking, "signature": sign(thinking)})
        if tool is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": _id("toolu"),
                    "name": tool,
                    "input": self._tool_input(reply.text),
                }
            )
        elif reply.text:
            content.append({"type": "text", "text": reply.text})
        message = self._message(chat, content, self._usage(reply, thinking))
        message["stop_reason"] = stop_reason
        message["stop_sequence"] = stop_sequence
        return message

    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        with self._lock:
            inband = self._inband.popleft() if self._inband else None
        reply, stop_reason, stop_sequence = self._outcome(chat, reply)
        tool = chat.tool if isinstance(chat, AnthropicChat) else None
        thinking = chat.thinking if isinstance(chat, AnthropicChat) else None
        start_usage = {**self._usage(reply), "output_tokens": 1}
        yield sse(
            {"type": "message_start", "message": self._message(chat, [], start_usage)},
            "message_start",
        )
        at = 0  # the answer block's index
        if thinking is not None:
            yield from self._thinking_frames(thinking)
            at = 1
        if tool is not None:
            block: dict[str, Any] = {"type": "tool_use", "id": _id("toolu"), "name": tool}
            block["input"] = {}
            args = json.dumps(self._tool_input(reply.text))
            pieces = [args[i : i + 12] for i in range(0, len(args), 12)]
        else:
            block = {"type": "text", "text": ""}
            pieces = reply.chunks() if reply.text else []
        yield sse(
            {"type": "content_block_start", "index": at, "content_block": block},
            "content_block_start",
        )
        yield sse({"type": "ping"}, "ping")
        for i, piece in enumerate(pieces):
            if inband is not None and i >= inband[2]:
                break
            delta = (
                {"type": "input_json_delta", "partial_json": piece}
                if tool is not None
                else {"type": "text_delta", "text": piece}
            )
            yield sse(
                {"type": "content_block_delta", "index": at, "delta": delta}, "content_block_delta"
            )
        if inband is not None:
            error = {"type": inband[0], "message": inband[1]}
            yield sse({"type": "error", "error": error}, "error")
            return
        yield sse({"type": "content_block_stop", "index": at}, "content_block_stop")
        end: dict[str, Any] = {
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "stop_details": None,
        }
        usage = self._usage(reply, thinking)
        usage.pop("service_tier")
        usage.pop("cache_creation")  # message_delta's usage has no split
        yield sse({"type": "message_delta", "delta": end, "usage": usage}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    def _thinking_frames(self, thinking: str) -> Iterator[str]:
        """Block 0: the thinking in pieces, then its signature, as the API streams them."""
        block = {"type": "thinking", "thinking": "", "signature": ""}
        start = {"type": "content_block_start", "index": 0, "content_block": block}
        yield sse(start, "content_block_start")
        pieces = [thinking[i : i + 16] for i in range(0, len(thinking), 16)]
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
        deltas.append({"type": "signature_delta", "signature": sign(thinking)})
        for delta in deltas:
            frame = {"type": "content_block_delta", "index": 0, "delta": delta}
            yield sse(frame, "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")

    # -- token counting -----------------------------------------------------

    async def handle_count_tokens(self, request: Request) -> Response:
        """``POST /v1/messages/count_tokens``: the prompt's tokens as a chat call counts
        them, plus the tools' JSON; fields that shape an answer (``max_tokens``,
        ``stream``...) are refused, as the API refuses them."""
        body = await self.read_json(request)
        self.record(request, body)
        if not self.authorized(request):
            return self.error_response(401, "invalid x-api-key", None)
        problem = self._version_error(request)
        if problem:
            return self.error_response(400, problem, None)
        if not isinstance(body, dict):
            return self.error_response(400, "the body must be a JSON object", None)
        extra = sorted(set(body) - _COUNTED)
        if extra:
            return self.error_response(400, f"{extra[0]}: Extra inputs are not permitted", None)
        messages = body.get("messages")
        if "model" not in body or not isinstance(messages, list) or not messages:
            return self.error_response(400, "model and messages: Field required", None)
        system = body.get("system")
        texts = [_text(m.get("content")) for m in messages if isinstance(m, dict)]
        prompt = "\n".join([_text(system), *texts] if system else texts)
        tools = json.dumps(body["tools"]) if body.get("tools") else ""
        tokens = count_tokens(prompt) + count_tokens(tools)
        return JSONResponse({"input_tokens": tokens}, headers=self.response_headers())

    # -- models -------------------------------------------------------------

    def _model(self, model_id: str) -> dict[str, Any]:
        name, max_input, max_output = _MODEL_LIMITS.get(model_id, (model_id, 200_000, 64_000))
        supported = {"supported": True}
        return {
            "type": "model",
            "id": model_id,
            "display_name": name,
            "created_at": "2025-09-29T00:00:00Z",
            "lifecycle": "active",
            "deprecated_at": None,
            "retires_at": None,
            "max_input_tokens": max_input,
            "max_tokens": max_output,
            "capabilities": {
                "batch": supported,
                "citations": supported,
                "image_input": supported,
                "pdf_input": supported,
                "structured_outputs": supported,
            },
        }

    async def _models_gate(self, request: Request) -> Response | None:
        self.record(request, None)
        if not self.authorized(request):
            return self.error_response(401, "invalid x-api-key", None)
        problem = self._version_error(request)
        if problem:
            return self.error_response(400, problem, None)
        return None

    async def handle_models(self, request: Request) -> Response:
        """``GET /v1/models``: cursor pages (``limit``, ``after_id``, ``before_id``)."""
        denied = await self._models_gate(request)
        if denied is not None:
            return denied
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            return self.error_response(400, "limit: Input should be a valid integer", None)
        if not 1 <= limit <= 1000:
            return self.error_response(400, "limit: must be between 1 and 1000", None)
        ids = list(self.models)
        after = request.query_params.get("after_id")
        before = request.query_params.get("before_id")
        if before in ids:
            stop = ids.index(before)
            page = ids[max(0, stop - limit) : stop]
            more = stop - limit > 0
        else:
            start = ids.index(after) + 1 if after in ids else 0
            page = ids[start : start + limit]
            more = start + limit < len(ids)
        return JSONResponse(
            {
                "data": [self._model(m) for m in page],
                "has_more": more,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            },
            headers=self.response_headers(),
        )

    async def handle_model(self, request: Request) -> Response:
        """``GET /v1/models/{model_id}``."""
        denied = await self._models_gate(request)
        if denied is not None:
            return denied
        model_id = request.path_params["model_id"]
        if model_id not in self.models:
            return self.error_response(404, f"model: {model_id}", None)
        return JSONResponse(self._model(model_id), headers=self.response_headers())
