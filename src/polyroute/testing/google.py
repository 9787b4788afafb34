"""Simulated Gemini API (``v1beta`` and ``v1``): generateContent, streamGenerateContent (SSE),
models.list with paging, batchEmbedContents, and google.rpc.Status error bodies.

Like the real service it reads the key from ``x-goog-api-key``: a wrong key is
a 400 ``INVALID_ARGUMENT`` with an ``API_KEY_INVALID`` ErrorInfo, a missing one
a 403 ``PERMISSION_DENIED``. Gemini sends no request-id header, so neither
does this. A scripted ``retry_after`` on a 429 travels as a ``RetryInfo``
detail (``retryDelay``), as Gemini sends it, not as a header.

A request that forces a tool (``functionCallingConfig.mode == "ANY"``) is
answered with a ``functionCall`` to the first allowed function, args ``{}``.

``generationConfig.thinkingConfig`` is checked as the API checks it (a
``thinkingBudget`` or a ``thinkingLevel``, not both); with ``includeThoughts``
the answer starts with a thought summary part (``thought: true``), whose tokens
are ``thoughtsTokenCount``, apart from the candidates'.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from polyroute.testing._sim import (
    Fault,
    SimChat,
    SimReply,
    Simulator,
    alternative,
    count_tokens,
    sim_logprobs,
    sse,
)

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_LOCALIZED = "type.googleapis.com/google.rpc.LocalizedMessage"
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_SIGNATURE = base64.b64encode(b"simulated thought signature").decode()

# HTTP status -> google.rpc.Code name, as Google's front end pairs them
_STATUS: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _logprobs_result(text: str, top: int) -> dict[str, Any]:
    made_up = sim_logprobs(text, top)
    return {
        "topCandidates": [
            {"candidates": [{"token": a, "logProbability": b} for a, b in alts]}
            for _, _, alts in made_up
        ],
        "chosenCandidates": [{"token": t, "logProbability": lp} for t, lp, _ in made_up],
    }


@dataclass(frozen=True, slots=True)
class GoogleChat(SimChat):
    call: str | None = None
    """The function the request forces (mode ANY), answered with a functionCall."""
    thought: str | None = None
    """The thought summary the answer starts with (``includeThoughts``), if any."""


_LEVELS = ("minimal", "low", "medium", "high")


def _thought(config: Any, question: str) -> str | None:
    """The thought summary to answer with, after checking ``thinkingConfig`` (proto JSON:
    camelCase or snake_case names, as the API takes both and google-genai sends the latter)."""
    thinking = config.get("thinkingConfig", config.get("thinking_config"))
    if thinking is None:
        return None
    if not isinstance(thinking, dict):
        raise TypeError("generation_config.thinking_config: must be an object")
    named = {k.replace("_", "").lower(): v for k, v in thinking.items()}
    if "thinkingbudget" in named and "thinkinglevel" in named:
        raise ValueError("You can only set only one of thinking budget and thinking level.")
    budget = named.get("thinkingbudget", -1)
    if not isinstance(budget, int) or not -1 <= budget <= 32768:
        raise ValueError("thinking_budget: must be -1 (dynamic) or between 0 and 32768")
    if str(named.get("thinkinglevel", "high")).lower() not in _LEVELS:
        raise ValueError(f"thinking_level: must be one of {', '.join(_LEVELS)}")
    return f"**Weighing it** The user asks: {question}" if named.get("includethoughts") else None


def _with_thought(usage: dict[str, Any], thought: str | None) -> dict[str, Any]:
    """``usage`` with the thought summary's tokens, counted apart from the candidates'."""
    if thought:
        spent = count_tokens(thought)
        usage["thoughtsTokenCount"] = usage.get("thoughtsTokenCount", 0) + spent
        usage["totalTokenCount"] += spent
    return usage


def _texts(parts: Any) -> list[str]:
    if not isinstance(parts, list) or not parts:
        raise ValueError("contents.parts must not be empty")
    out = []
    for p in parts:
        if "text" in p:
            out.append(str(p["text"]))
        elif "functionResponse" in p:
            out.append(json.dumps(p["functionResponse"].get("response")))
        elif "functionCall" in p:
            out.append(json.dumps(p["functionCall"].get("args")))
    return out


def _forced_call(body: Mapping[str, Any]) -> str | None:
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if config.get("mode") != "ANY":
        return None
    allowed = config.get("allowedFunctionNames")
    if allowed:
        return str(allowed[0])
    for tool in body.get("tools") or ():
        for decl in tool.get("functionDeclarations") or ():
            return str(decl["name"])
    return None


class GoogleSimulator(Simulator):
    vendor: ClassVar[str] = "google"
    default_models: ClassVar[tuple[str, ...]] = (
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-2.5-flash-lite",
        "gemini-embedding-001",
    )
    head_frames: ClassVar[int] = 0  # the first chunk already carries text

    @property
    def base_url(self) -> str:
        return self.root_url  # the SDK and polyroute add the API version themselves

    def routes(self) -> list[BaseRoute]:
        # the real service answers on both; google-genai 3.x defaults to v1, polyroute uses v1beta
        return [
            route
            for version in ("v1beta", "v1")
            for route in (
                Route(f"/{version}/models", self.handle_models, methods=["GET"]),
                Route(f"/{version}/{{name:path}}", self.handle_method, methods=["POST"]),
            )
        ]

    def authorized(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("x-goog-api-key") == self.api_key

    def key_error(self, request: Request) -> Response:
        if not request.headers.get("x-goog-api-key"):
            return self.error_response(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
                None,
            )
        return self.error_response(
            400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
        )

    def error_response(self, status: int, message: str, error_type: str | None) -> Response:
        code = _STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        error: dict[str, Any] = {"code": status, "message": message, "status": code}
        if error_type in _KEY_REASONS:
            error["details"] = [
                {
                    "@type": _ERROR_INFO,
                    "reason": error_type,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {"@type": _LOCALIZED, "locale": "en-US", "message": message},
            ]
        elif error_type is not None:
            error["status"] = error_type
        return JSONResponse({"error": error}, status)

    def fault_response(self, fault: Fault) -> Response:
        # Gemini sends the delay as a RetryInfo detail in the body, not as a header
        response = super().fault_response(fault)
        delay = fault.retry_after
        return response if delay is None else _with_retry_info(response, delay)

    async def handle_method(self, request: Request) -> Response:
        """``POST /v1beta/models/{model}:{method}``: route by the custom method."""
        method = request.path_params["name"].rpartition(":")[2]
        if not self.authorized(request):
            self.record(request, await self.read_json(request))
            return self.key_error(request)
        if method in ("generateContent", "streamGenerateContent"):
            return await self.handle_chat(request)
        if method == "batchEmbedContents":
            return await self.handle_embed(request)
        self.record(request, await self.read_json(request))
        return self.error_response(404, f"Method not found: {method}", None)

    def parse_chat(self, request: Request, body: Any) -> SimChat:
        name, _, method = request.path_params["name"].rpartition(":")
        stream = method == "streamGenerateContent"
        if stream and request.query_params.get("alt") != "sse":
            raise ValueError("this simulator streams only with alt=sse")
        contents = body["contents"]
        if not isinstance(contents, list) or not contents:
            raise ValueError("contents is not specified")
        texts: list[str] = []
        system = body.get("systemInstruction")
        if system is not None:
            texts.extend(_texts(system.get("parts")))
        last_user = ""
        for c in contents:
            role = c.get("role", "user")
            if role not in ("user", "model"):
                raise ValueError("Please use a valid role: user, model.")
            part_texts = _texts(c.get("parts"))
            texts.extend(part_texts)
            if role == "user":
                last_user = "".join(part_texts)
        config = body.get("generationConfig") or {}
        return GoogleChat(
            model=name.removeprefix("models/"),
            prompt="\n".join(texts),
            last_user=last_user,
            max_tokens=config.get("maxOutputTokens"),
            stream=stream,
            call=_forced_call(body),
            thought=_thought(config, last_user),
            schema=config.get("responseJsonSchema") or config.get("responseSchema"),
            n=config.get("candidateCount") or 1,
            logprobs=(config.get("logprobs") or 0) if config.get("responseLogprobs") else None,
        )

    def _usage(self, reply: SimReply) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "promptTokenCount": reply.prompt_tokens,
            "candidatesTokenCount": reply.completion_tokens - reply.reasoning_tokens,
            "totalTokenCount": reply.prompt_tokens + reply.completion_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}],
        }
        if reply.reasoning_tokens:  # thinking, counted apart from the candidates
            usage["thoughtsTokenCount"] = reply.reasoning_tokens
        if reply.cached_tokens:  # proto3 JSON leaves zero counts out
            usage["cachedContentTokenCount"] = reply.cached_tokens
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.cached_tokens}]
        return usage

    def _response(
        self, chat: SimChat, rid: str, candidate: dict[str, Any], usage: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "candidates": [{**candidate, "index": 0}],
            "usageMetadata": usage,
            "modelVersion": chat.model,
            "responseId": rid,
        }

    def _call_part(self, chat: SimChat) -> dict[str, Any] | None:
        if isinstance(chat, GoogleChat) and chat.call is not None:
            return {"functionCall": {"name": chat.call, "args": {}}, "thoughtSignature": _SIGNATURE}
        return None

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        call = self._call_part(chat)
        parts: list[dict[str, Any]] = [call] if call is not None else [{"text": reply.text}]
        thought = chat.thought if isinstance(chat, GoogleChat) else None
        if thought:
            parts.insert(0, {"text": thought, "thought": True})
        candidate = {
            "content": {"parts": parts, "role": "model"},
            "finishReason": "MAX_TOKENS" if reply.truncated else "STOP",
        }
        return self._response(chat, _rid(), candidate, _with_thought(self._usage(reply), thought))

    def more_answers(self, chat: SimChat, reply: SimReply, body: Any) -> Any:
        """``candidateCount`` candidates, each with its ``logprobsResult`` when asked."""
        first = body["candidates"][0]
        for i in range(chat.n):
            candidate = first if i == 0 else {**first, "index": i}
            text = alternative(reply.text, i)
            if i:
                candidate["content"] = {"parts": [{"text": text}], "role": "model"}
                body["candidates"].append(candidate)
            if chat.logprobs is not None:
                candidate["logprobsResult"] = _logprobs_result(text, chat.logprobs)
        return body

    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        rid = _rid()
        running = {"promptTokenCount": reply.prompt_tokens, "totalTokenCount": reply.prompt_tokens}
        call = self._call_part(chat)
        pieces: list[dict[str, Any]] = (
            [call] if call is not None else [{"text": p} for p in reply.chunks()]
        )
        thought = chat.thought if isinstance(chat, GoogleChat) else None
        if thought:
            pieces.insert(0, {"text": thought, "thought": True})
        for part in pieces:
            candidate = {"content": {"parts": [part], "role": "model"}}
            yield sse(self._response(chat, rid, candidate, running))
        end = {
            "content": {"parts": [{"text": ""}], "role": "model"},
            "finishReason": "MAX_TOKENS" if reply.truncated else "STOP",
        }
        yield sse(self._response(chat, rid, end, _with_thought(self._usage(reply), thought)))

    async def handle_models(self, request: Request) -> Response:
        self.record(request, None)
        if not self.authorized(request):
            return self.key_error(request)
        try:
            size = int(request.query_params.get("pageSize") or 50)
            start = int(request.query_params.get("pageToken") or 0)
        except ValueError:
            return self.error_response(400, "Invalid page size or page token.", None)
        size = max(1, min(size, 1000))
        page = self.models[start : start + size]
        body: dict[str, Any] = {"models": [_model(m) for m in page]}
        if start + size < len(self.models):
            body["nextPageToken"] = str(start + size)
        return JSONResponse(body)

    async def handle_embed(self, request: Request) -> Response:
        body = await self.read_json(request)
        self.record(request, body)
        if body is None or not isinstance(body.get("requests"), list):
            return self.error_response(400, "Invalid JSON payload: requests is required.", None)
        _, instead = await self.play_fault()
        if instead is not None:
            return instead
        path_model = request.path_params["name"].rpartition(":")[0]
        embeddings = []
        for item in body["requests"]:
            if item.get("model") != path_model:
                return self.error_response(
                    400, "Model in each request must match the model in the URL.", None
                )
            text = "".join(_texts((item.get("content") or {}).get("parts")))
            dims = item.get("outputDimensionality") or 8
            embeddings.append({"values": self.script.vector(text, dims)})
        return JSONResponse({"embeddings": embeddings})


def _model(name: str) -> dict[str, Any]:
    if "embedding" in name:
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": name.replace("-", " ").title(),
            "description": "Simulated embedding model",
            "inputTokenLimit": 2048,
            "outputTokenLimit": 1,
            "supportedGenerationMethods": ["embedContent", "countTextTokens", "countTokens"],
        }
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name.replace("-", " ").title(),
        "description": "Simulated Gemini model",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


def _with_retry_info(response: Response, delay: float) -> Response:
    """The error body again, with a RetryInfo detail and no header (Gemini sends none)."""
    body = json.loads(bytes(response.body))
    body["error"].setdefault("details", []).append(
        {"@type": _RETRY_INFO, "retryDelay": f"{delay:g}s"}
    )
    return JSONResponse(body, response.status_code)


def _rid() -> str:
    return uuid.uuid4().hex[:22]
