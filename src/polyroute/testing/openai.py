"""Simulated OpenAI API: Chat Completions, Models, Embeddings.

It also stands in for any OpenAI-compatible server; a scripted ``cache_write_tokens``
is reported as OpenRouter does (``prompt_tokens_details.cache_write_tokens``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from polyroute.testing._openai_responses import ResponsesChat, SimResponse, pieces, responses_chat
from polyroute.testing._sim import (
    Replier,
    Script,
    SimChat,
    SimReply,
    Simulator,
    alternative,
    bearer_ok,
    count_tokens,
    sim_logprobs,
    sse,
)

# status -> (type, code), as OpenAI sends them
_ERRORS: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    413: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _schema(fmt: Any) -> Any:
    """``response_format``'s JSON schema (Structured Outputs), if it has one."""
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema") or {}
    return None


class OpenAISimulator(Simulator):
    """Chat Completions, and the Responses API (:mod:`polyroute.testing._openai_responses`).
    ``refusal``: every chat answer is that refusal (``message.refusal``, streamed as
    ``delta.refusal``; a ``refusal`` content part in the Responses API). ``stream_error``:
    Responses streams fail after the text with that error code."""

    vendor: ClassVar[str] = "openai"
    default_models: ClassVar[tuple[str, ...]] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
    head_frames: ClassVar[int] = 1  # the role chunk (Responses streams: created, in_progress)

    def __init__(
        self,
        *,
        reply: str | Replier | None = None,
        api_key: str | None = "sim-key",
        models: tuple[str, ...] | None = None,
        script: Script | None = None,
        refusal: str | None = None,
        stream_error: str | None = None,
    ) -> None:
        super().__init__(reply=reply, api_key=api_key, models=models, script=script)
        self.refusal = refusal
        self.stream_error = stream_error

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": _rid()}

    def routes(self) -> list[BaseRoute]:
        # the Responses API is OpenAI's alone (not Mistral's, whose simulator is this one's)
        responses = [Route("/v1/responses", self.handle_chat, methods=["POST"])]
        return [
            Route("/v1/chat/completions", self.handle_chat, methods=["POST"]),
            *(responses if self.vendor == "openai" else []),
            Route("/v1/models", self.handle_models, methods=["GET"]),
            Route("/v1/embeddings", self.handle_embeddings, methods=["POST"]),
        ]

    def authorized(self, request: Request) -> bool:
        return bearer_ok(request, self.api_key)

    def error_response(self, status: int, message: str, error_type: str | None) -> Response:
        etype, code = _ERRORS.get(status, ("server_error", None))
        if error_type is not None:
            code = error_type
        body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        return JSONResponse(body, status, headers={"x-request-id": _rid()})

    def parse_chat(self, request: Request, body: Any) -> SimChat:
        if request.url.path.endswith("/responses"):
            return responses_chat(body)
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty array")
        texts = [_text(m.get("content")) for m in messages]
        users = [t for m, t in zip(messages, texts, strict=True) if m.get("role") == "user"]
        options = body.get("stream_options") or {}
        return SimChat(
            model=body["model"],
            prompt="\n".join(texts),
            last_user=users[-1] if users else "",
            max_tokens=body.get("max_completion_tokens", body.get("max_tokens")),
            stream=bool(body.get("stream")),
            include_usage=bool(options.get("include_usage")),
            schema=_schema(body.get("response_format")),
            n=body.get("n") or 1,
            logprobs=(body.get("top_logprobs") or 0) if body.get("logprobs") else None,
        )

    def _usage(self, reply: SimReply) -> dict[str, Any]:
        details = {"cached_tokens": reply.cached_tokens, "audio_tokens": 0}
        if reply.cache_write_tokens:  # OpenRouter's count of writes (OpenAI reports none)
            details["cache_write_tokens"] = reply.cache_write_tokens
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": details,
            "completion_tokens_details": {
                "reasoning_tokens": reply.reasoning_tokens,
                "audio_tokens": 0,
            },
        }

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        if isinstance(chat, ResponsesChat):
            return SimResponse(chat, reply, self.refusal).body()
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if self.refusal is not None:
            message = {"role": "assistant", "content": None, "refusal": self.refusal}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "length" if reply.truncated else "stop",
                }
            ],
            "usage": self._usage(reply),
            "system_fingerprint": "fp_sim",
        }

    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        if isinstance(chat, ResponsesChat):
            yield from SimResponse(chat, reply, self.refusal).events(self.stream_error)
            return
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": chat.model,
            "system_fingerprint": "fp_sim",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        if self.refusal is not None:
            for piece in pieces(self.refusal):
                yield chunk({"refusal": piece})
        for piece in reply.chunks() if self.refusal is None else ():
            yield chunk({"content": piece})
        yield chunk({}, "length" if reply.truncated else "stop")
        if chat.include_usage:
            yield sse({**base, "choices": [], "usage": self._usage(reply)})
        yield sse("[DONE]")

    def more_answers(self, chat: SimChat, reply: SimReply, body: Any) -> Any:
        """``n`` choices (each with its ``logprobs.content`` when asked), Mistral's too."""
        if isinstance(chat, ResponsesChat) or self.refusal is not None:
            return body
        first = body["choices"][0]
        for i in range(chat.n):
            choice = first if i == 0 else {**first, "index": i}
            text = alternative(reply.text, i)
            choice["message"] = {**first["message"], "content": text}
            if chat.logprobs is not None:
                choice["logprobs"] = {"content": _logprobs(text, chat.logprobs)}
            if i:
                body["choices"].append(choice)
        return body

    async def handle_models(self, request: Request) -> Response:
        self.record(request, None)
        if not self.authorized(request):
            return self.error_response(401, "invalid or missing API key", None)
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "sim"}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def handle_embeddings(self, request: Request) -> Response:
        body = await self.read_json(request)
        self.record(request, body)
        if not self.authorized(request):
            return self.error_response(401, "invalid or missing API key", None)
        if body is None or "input" not in body:
            return self.error_response(400, "'input' is required", None)
        fault = self.script.take()
        if fault is not None and fault.kind == "status":
            return self.error_response(fault.status, fault.message or "error", fault.error_type)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions") or 8
        data = [
            {"object": "embedding", "index": i, "embedding": self.script.vector(str(t), dims)}
            for i, t in enumerate(inputs)
        ]
        tokens = sum(count_tokens(str(t)) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _logprobs(text: str, top: int) -> list[dict[str, Any]]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return [
        {**entry(t, lp), "top_logprobs": [entry(a, b) for a, b in alts]}
        for t, lp, alts in sim_logprobs(text, top)
    ]


def _rid() -> str:
    return f"req_{uuid.uuid4().hex}"
