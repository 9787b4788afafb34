"""Simulated Ollama server: ``/api/chat``, ``/api/tags``, ``/api/embed``.

Keyless by default, like a local Ollama (``api_key=None`` accepts anything);
give a key to play Ollama behind a proxy or Ollama cloud (``Bearer``). Errors
are ``{"error": "..."}`` with no request id. :meth:`OllamaSimulator.error_mid_stream`
scripts the ``{"error": ...}`` line Ollama sends when a stream fails after its 200.

Thinking: ``think`` is ``true``/``false`` or a level (``low``/``medium``/``high``);
anything else is Ollama's 400. With thinking on, the answer carries
``message.thinking`` (the simulator's ``thinking`` text, or a line about the question),
streamed as chunks of ``thinking`` before the content; its tokens count in ``eval_count``.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from polyroute.testing._sim import (
    Replier,
    Script,
    SimChat,
    SimReply,
    Simulator,
    bearer_ok,
    count_tokens,
    ndjson,
    sim_logprobs,
)

# (families, parameter size, quantization) for the default models' /api/tags details
_DETAILS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "llama3.2:latest": (("llama",), "3.2B", "Q4_K_M"),
    "qwen2.5:7b": (("qwen2",), "7.6B", "Q4_K_M"),
    "llava:latest": (("llama", "clip"), "7B", "Q4_0"),
    "nomic-embed-text:latest": (("nomic-bert",), "137M", "F16"),
}
_NS_PER_TOKEN = 20_000_000  # 50 tokens/s, for believable durations


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _tag(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


_THINK_LEVELS = frozenset({"low", "medium", "high"})


@dataclass(frozen=True, slots=True)
class OllamaChat(SimChat):
    thinking: str | None = None
    """The thinking the answer carries (``think`` asked), if any."""


class OllamaSimulator(Simulator):
    vendor: ClassVar[str] = "ollama"
    default_models: ClassVar[tuple[str, ...]] = tuple(_DETAILS)
    stream_media_type: ClassVar[str] = "application/x-ndjson"
    head_frames: ClassVar[int] = 0  # the first line already carries content

    def __init__(
        self,
        *,
        reply: str | Replier | None = None,
        api_key: str | None = None,
        models: tuple[str, ...] | None = None,
        script: Script | None = None,
        thinking: str | None = None,
    ) -> None:
        super().__init__(reply=reply, api_key=api_key, models=models, script=script)
        self._inband: deque[tuple[str, int]] = deque()
        self.thinking = thinking
        """The thinking text answers carry when ``think`` is on (``None``: a line about
        the question)."""

    def error_mid_stream(
        self, message: str = "an error was encountered", after_chunks: int = 1
    ) -> None:
        """The next stream sends ``after_chunks`` content lines, then ``{"error": message}``."""
        with self._lock:
            self._inband.append((message, after_chunks))

    @property
    def base_url(self) -> str:
        return self.root_url

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.handle_root, methods=["GET", "HEAD"]),
            Route("/api/version", self.handle_version, methods=["GET"]),
            Route("/api/chat", self.handle_chat, methods=["POST"]),
            Route("/api/tags", self.handle_tags, methods=["GET"]),
            Route("/api/embed", self.handle_embed, methods=["POST"]),
        ]

    def authorized(self, request: Request) -> bool:
        return bearer_ok(request, self.api_key)

    def error_response(self, status: int, message: str, error_type: str | None) -> Response:
        # Ollama's only error shape; it has no error type field to honour.
        return JSONResponse({"error": message}, status)

    def parse_chat(self, request: Request, body: Any) -> SimChat:
        if not body.get("model"):
            raise ValueError("model is required")
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise TypeError("messages must be an array")
        texts = [str(m.get("content") or "") for m in messages]
        users = [t for m, t in zip(messages, texts, strict=True) if m.get("role") == "user"]
        options = body.get("options") or {}
        think = body.get("think")
        if think is not None and not isinstance(think, bool) and think not in _THINK_LEVELS:
            raise ValueError(
                f"invalid think value: {json.dumps(think)} "
                '(must be "high", "medium", "low", true, or false)'
            )
        question = users[-1] if users else ""
        return OllamaChat(
            model=body["model"],
            prompt="\n".join(texts),
            last_user=users[-1] if users else "",
            max_tokens=options.get("num_predict"),
            stream=body.get("stream", True) is not False,  # Ollama streams unless told not to
            schema=body["format"] if isinstance(body.get("format"), dict) else None,
            logprobs=(body.get("top_logprobs") or 0) if body.get("logprobs") else None,
            thinking=(
                (self.thinking if self.thinking is not None else f"The user asks: {question}")
                if think not in (None, False)
                else None
            ),
        )

    def _final(self, chat: SimChat, reply: SimReply) -> dict[str, Any]:
        """The fields of the ``done: true`` object: reason, counts, durations (ns)."""
        out: dict[str, Any] = {"done": True, "done_reason": "length" if reply.truncated else "stop"}
        prompt_eval = reply.prompt_tokens - reply.cached_tokens
        load_ns, prompt_ns = 2_000_000, max(prompt_eval, 1) * 1_000_000
        evaluated = reply.completion_tokens + count_tokens(_thinking(chat) or "")
        eval_ns = evaluated * _NS_PER_TOKEN
        out["total_duration"] = load_ns + prompt_ns + eval_ns + 500_000
        out["load_duration"] = load_ns
        if prompt_eval > 0:  # omitted when the whole prompt was cached
            out["prompt_eval_count"] = prompt_eval
        out["prompt_eval_duration"] = prompt_ns
        out["eval_count"] = evaluated
        out["eval_duration"] = eval_ns
        return out

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        message = {"role": "assistant", "content": reply.text}
        thinking = _thinking(chat)
        if thinking is not None:
            message["thinking"] = thinking
        return {
            "model": chat.model,
            "created_at": _now(),
            "message": message,
            **self._final(chat, reply),
        }

    def more_answers(self, chat: SimChat, reply: SimReply, body: Any) -> Any:
        """``logprobs``, when asked (Ollama has no ``n``)."""
        if chat.logprobs is not None:
            body["logprobs"] = [
                {
                    "token": t,
                    "logprob": lp,
                    "top_logprobs": [{"token": a, "logprob": b} for a, b in alts],
                }
                for t, lp, alts in sim_logprobs(reply.text, chat.logprobs)
            ]
        return body

    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        with self._lock:
            inband = self._inband.popleft() if self._inband else None
        thinking = _thinking(chat) or ""
        words = thinking.split(" ") if thinking else []
        for i, word in enumerate(words):
            piece = word + (" " if i < len(words) - 1 else "")
            yield ndjson(
                {
                    "model": chat.model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": "", "thinking": piece},
                    "done": False,
                }
            )
        for i, piece in enumerate(reply.chunks()):
            if inband is not None and i >= inband[1]:
                yield ndjson({"error": inband[0]})
                return
            yield ndjson(
                {
                    "model": chat.model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            )
        if inband is not None:
            yield ndjson({"error": inband[0]})
            return
        yield ndjson(
            {
                "model": chat.model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                **self._final(chat, reply),
            }
        )

    async def handle_root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def handle_version(self, request: Request) -> Response:
        return JSONResponse({"version": "0.12.0"})

    async def handle_tags(self, request: Request) -> Response:
        self.record(request, None)
        if not self.authorized(request):
            return self.error_response(401, "unauthorized", None)
        return JSONResponse({"models": [self._tag_entry(m) for m in self.models]})

    def _tag_entry(self, model: str) -> dict[str, Any]:
        name = _tag(model)
        families, size, quant = _DETAILS.get(name, (("llama",), "8.0B", "Q4_K_M"))
        digest = hashlib.sha256(name.encode()).hexdigest()
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-15T10:00:00.000000000Z",
            "size": 2_019_393_189,
            "digest": digest,
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": families[0],
                "families": list(families),
                "parameter_size": size,
                "quantization_level": quant,
            },
        }

    async def handle_embed(self, request: Request) -> Response:
        body = await self.read_json(request)
        self.record(request, body)
        if not self.authorized(request):
            return self.error_response(401, "unauthorized", None)
        if body is None or not body.get("model"):
            return self.error_response(400, "model is required", None)
        _, instead = await self.play_fault()
        if instead is not None:
            return instead
        raw = body.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        dims = body.get("dimensions") or 8
        tokens = sum(count_tokens(str(t)) for t in inputs)
        return JSONResponse(
            {
                "model": body["model"],
                "embeddings": [self.script.vector(str(t), dims) for t in inputs],
                "total_duration": 14_000_000 + tokens * 100_000,
                "load_duration": 1_000_000,
                "prompt_eval_count": tokens,
            }
        )


def _thinking(chat: SimChat) -> str | None:
    return chat.thinking if isinstance(chat, OllamaChat) else None
