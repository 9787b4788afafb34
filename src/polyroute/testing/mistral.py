"""Simulated Mistral La Plateforme: Chat Completions, Models, Embeddings.

Mistral's wire format, as the official ``mistralai`` SDK reads it: the host
root is the base URL (paths carry ``/v1``), usage rides on the last stream
chunk, model cards carry capabilities, and the request schema is strict like
the real API's: an unknown field (``stream_options``, ``max_completion_tokens``,
``seed``...) is a 422 ``extra_forbidden``, and a tool call id that is not 9
letters or digits is a 400.

Reasoning: Magistral models always think; other models think when
``reasoning_effort`` is set and not ``none``. The answer's ``content`` is then a
list: a ``thinking`` chunk (the simulator's ``thinking`` text, or a line about the
question) and a ``text`` chunk; a stream sends the thinking as chunk lists, then the
answer as strings. Thinking tokens count in ``completion_tokens``. ``prompt_mode``
other than ``reasoning`` and an unknown ``reasoning_effort`` are 422s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from polyroute.testing._sim import Replier, Script, SimChat, SimReply, count_tokens, sse
from polyroute.testing.openai import OpenAISimulator

# The fields Mistral's chat and embeddings endpoints accept (SDK request models).
_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop",
        "random_seed", "metadata", "response_format", "tools", "tool_choice",
        "presence_penalty", "frequency_penalty", "min_tokens", "repetition_penalty",
        "top_k", "logprobs", "top_logprobs", "prompt_logprobs", "top_prompt_logprobs",
        "n", "prediction", "parallel_tool_calls", "reasoning_effort", "prompt_mode",
        "guardrails", "prompt_cache_key", "service_tier", "safe_prompt",
    }
)  # fmt: skip
_EMBED_FIELDS = frozenset(
    {"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"}
)

# status -> (type, code), as Mistral sends them
_ERRORS: Mapping[int, tuple[str, str | None]] = {
    404: ("invalid_model", "1500"),
    429: ("rate_limited", "1300"),
}
# code -> type, for codes a test scripts through `error_type`
_CODE_TYPES: Mapping[str, str] = {
    "3051": "invalid_request_invalid_args",  # prompt over the context window
    "3280": "invalid_function_call",
}


_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})


@dataclass(frozen=True, slots=True)
class MistralChat(SimChat):
    thinking: str | None = None
    """The thinking the answer starts with (a reasoning model, or effort asked), if any."""


def _valid_call_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 9 and value.isascii() and value.isalnum()


class MistralSimulator(OpenAISimulator):
    vendor: ClassVar[str] = "mistral"
    default_models: ClassVar[tuple[str, ...]] = (
        "mistral-small-latest",
        "mistral-large-latest",
        "mistral-embed",
    )
    head_frames: ClassVar[int] = 1  # the role chunk

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
        self.thinking = thinking
        """The thinking text reasoning answers start with (``None``: a line about the
        question)."""

    @property
    def base_url(self) -> str:
        return self.root_url  # the SDK's `server_url`: paths carry /v1

    def response_headers(self) -> dict[str, str]:
        rid = str(uuid.uuid4())
        return {"mistral-correlation-id": rid, "x-kong-request-id": rid}

    def error_response(self, status: int, message: str, error_type: str | None) -> Response:
        if status == 401:  # the gateway refuses the key before the API sees the call
            rid = uuid.uuid4().hex
            body = {"message": "Unauthorized", "request_id": rid}
            return JSONResponse(body, 401, headers={"x-kong-request-id": rid})
        if status == 422:
            detail = {"type": error_type or "value_error", "loc": ["body"], "msg": message}
            return self._validation_error([detail])
        etype, code = _ERRORS.get(
            status, ("invalid_request_error" if status < 500 else "server_error", None)
        )
        if error_type is not None:
            code, etype = error_type, _CODE_TYPES.get(error_type, etype)
        error = {
            "object": "error",
            "message": message,
            "type": etype,
            "param": None,
            "code": code,
            "raw_status_code": status,
        }
        return JSONResponse(error, status, headers=self.response_headers())

    def _validation_error(self, detail: list[dict[str, Any]]) -> Response:
        body = {
            "object": "error",
            "message": {"detail": detail},
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return JSONResponse(body, 422, headers=self.response_headers())

    def _extra_fields(self, body: Any, allowed: frozenset[str]) -> Response | None:
        if not isinstance(body, dict):
            return None
        extra = [
            {
                "type": "extra_forbidden",
                "loc": ["body", k],
                "msg": "Extra inputs are not permitted",
                "input": v,
            }
            for k, v in body.items()
            if k not in allowed
        ]
        return self._validation_error(extra) if extra else None

    async def handle_chat(self, request: Request) -> Response:
        if self.authorized(request):
            body = await self.read_json(request)  # starlette caches the body for the base
            refused = self._extra_fields(body, _CHAT_FIELDS) or self._bad_reasoning(body)
            if refused is not None:
                self.record(request, body)
                return refused
        return await super().handle_chat(request)

    def _bad_reasoning(self, body: Any) -> Response | None:
        if not isinstance(body, dict):
            return None
        checks = (("prompt_mode", {"reasoning"}), ("reasoning_effort", _EFFORTS))
        detail = [
            {
                "type": "enum",
                "loc": ["body", name],
                "msg": f"Input should be one of {sorted(allowed)}",
                "input": body[name],
            }
            for name, allowed in checks
            if body.get(name) is not None and body[name] not in allowed
        ]
        return self._validation_error(detail) if detail else None

    def parse_chat(self, request: Request, body: Any) -> SimChat:
        chat = super().parse_chat(request, body)
        for m in body["messages"]:
            ids = [c.get("id") for c in m.get("tool_calls") or ()]
            if m.get("role") == "tool":
                ids.append(m.get("tool_call_id"))
            for cid in ids:
                if not _valid_call_id(cid):
                    raise ValueError(
                        f"Tool call id was {cid} but must be a-z, A-Z, 0-9, with a length of 9."
                    )
        effort = body.get("reasoning_effort")
        thinks = chat.model.startswith("magistral") or effort not in (None, "none")
        thinking = None
        if thinks:
            thinking = self.thinking or f"The user asks: {chat.last_user}"
        fields = {**asdict(chat), "include_usage": True}  # usage always comes last
        return MistralChat(**fields, thinking=thinking)

    def _usage(self, reply: SimReply, chat: SimChat | None = None) -> dict[str, Any]:
        completion = reply.completion_tokens + count_tokens(_thinking(chat) or "")
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": reply.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        }

    def more_answers(self, chat: SimChat, reply: SimReply, body: Any) -> Any:
        """OpenAI's choices and log probabilities, each token with Mistral's ``token_id``."""
        body = super().more_answers(chat, reply, body)
        thinking = _thinking(chat)
        for choice in body["choices"]:
            if thinking is not None:
                text = choice["message"]["content"]
                choice["message"]["content"] = [
                    _think_chunk(thinking),
                    {"type": "text", "text": text},
                ]
            for token in (choice.get("logprobs") or {}).get("content") or ():
                for entry in (token, *token["top_logprobs"]):
                    entry["token_id"] = sum(entry["bytes"]) % 32768  # made up, stable
        return body

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        return {
            "id": uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "tool_calls": None, "content": reply.text},
                    "finish_reason": "length" if reply.truncated else "stop",
                }
            ],
            "usage": self._usage(reply, chat),
        }

    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        base = {
            "id": uuid.uuid4().hex,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": chat.model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield sse(chunk({"role": "assistant", "content": ""}))
        thinking = _thinking(chat)
        if thinking:
            words = thinking.split(" ")
            for i, word in enumerate(words):
                piece = word + (" " if i < len(words) - 1 else "")
                yield sse(chunk({"content": [_think_chunk(piece)]}))
        for piece in reply.chunks():
            yield sse(chunk({"content": piece}))
        last = chunk({"content": ""}, "length" if reply.truncated else "stop")
        yield sse({**last, "usage": self._usage(reply, chat)})
        yield sse("[DONE]")

    async def handle_models(self, request: Request) -> Response:
        self.record(request, None)
        if not self.authorized(request):
            return self.error_response(401, "Unauthorized", None)
        return JSONResponse(
            {"object": "list", "data": [_card(m) for m in self.models]},
            headers=self.response_headers(),
        )

    async def handle_embeddings(self, request: Request) -> Response:
        body = await self.read_json(request)
        self.record(request, body)
        if not self.authorized(request):
            return self.error_response(401, "Unauthorized", None)
        if not isinstance(body, dict) or "input" not in body:
            missing = {"type": "missing", "loc": ["body", "input"], "msg": "Field required"}
            return self._validation_error([missing])
        refused = self._extra_fields(body, _EMBED_FIELDS)
        if refused is not None:
            return refused
        fault = self.script.take()
        if fault is not None and fault.kind == "status":
            return self.error_response(fault.status, fault.message or "error", fault.error_type)
        if fault is not None and fault.kind == "garbage":
            return PlainTextResponse("<html><body>502 Bad Gateway</body></html>", 200)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("output_dimension") or 8
        data = [
            {"object": "embedding", "embedding": self.script.vector(str(t), dims), "index": i}
            for i, t in enumerate(inputs)
        ]
        tokens = sum(count_tokens(str(t)) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        return JSONResponse(
            {
                "id": uuid.uuid4().hex,
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": usage,
            },
            headers=self.response_headers(),
        )


def _card(model: str) -> dict[str, Any]:
    """A model card as ``GET /v1/models`` lists it."""
    embed = "embed" in model
    return {
        "id": model,
        "object": "model",
        "created": 1700000000,
        "owned_by": "mistralai",
        "capabilities": {
            "completion_chat": not embed,
            "function_calling": not embed,
            "completion_fim": False,
            "fine_tuning": False,
            "vision": not embed,
            "classification": False,
        },
        "name": model,
        "description": f"Simulated {model}",
        "max_context_length": 8192 if embed else 131072,
        "aliases": [],
        "deprecation": None,
        "default_model_temperature": None if embed else 0.3,
        "type": "base",
    }


def _thinking(chat: SimChat | None) -> str | None:
    return chat.thinking if isinstance(chat, MistralChat) else None


def _think_chunk(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}
