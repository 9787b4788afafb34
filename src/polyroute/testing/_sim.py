"""The simulator framework: a vendor's HTTP API on loopback, with scripted faults.

A :class:`Simulator` subclass knows one vendor's wire format (paths, bodies,
stream framing, error bodies). This base runs it on ``127.0.0.1`` with
uvicorn in a background thread and plays the :class:`Script`: fixed replies,
latency, the next N calls failing, sticky failure, garbage bodies, streams
cut mid-way. Tests assert on ``calls`` and ``requests`` (what arrived, headers
included).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute

FaultKind = Literal["status", "garbage", "cut", "hang"]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    error_type: str | None = None
    """The vendor's error type/code to put in the body; default: the vendor's usual one."""
    message: str = ""
    after_chunks: int = 2
    """``cut``: how many content chunks go out before the stream stops."""
    abort: bool = False
    """``cut``: drop the connection (``True``) or end the body cleanly without the end marker."""
    seconds: float = 0.0
    """``hang``: how long to wait before answering normally."""


def count_tokens(text: str) -> int:
    """About four characters a token: the simulators' deterministic tokenizer."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


@dataclass(frozen=True, slots=True)
class SimChat:
    """A chat request as the simulator understood it."""

    model: str
    prompt: str
    """All input text (system and messages), for token counting and replies."""
    last_user: str
    max_tokens: int | None
    stream: bool
    include_usage: bool = True
    schema: Mapping[str, Any] | None = None
    """The JSON schema the answer must match, where the request gave one: the default
    reply is then a JSON object in it (:func:`sample_json`)."""
    n: int = 1
    """Answers asked for (OpenAI and Mistral ``n``, Gemini ``candidateCount``)."""
    logprobs: int | None = None
    """``None``: no log probabilities asked; else how many top tokens each position lists."""


def alternative(text: str, i: int) -> str:
    """The ``i``-th answer (0: the reply itself) of a request for several."""
    return text if i == 0 else f"{text} (choice {i + 1})"


def sim_logprobs(text: str, top: int) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """Made-up log probabilities of ``text``'s word-sized tokens: (token, logprob, the
    ``top`` likeliest tokens at its place, itself first)."""
    words = text.split(" ")
    tokens = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    return [
        (t, -0.25, [(t, -0.25)] + [(f"{t.strip()}~{j}", -1.0 - j) for j in range(1, top)])
        for t in tokens
    ]


@dataclass(frozen=True, slots=True)
class SimReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    truncated: bool
    """True when ``max_tokens`` cut the reply (finish reason: length)."""
    cache_write_tokens: int = 0
    """Of the prompt, tokens written to the cache (1-hour ones included)."""
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    """Of ``completion_tokens``, those spent reasoning."""

    def chunks(self) -> list[str]:
        """The reply in word-sized pieces, as vendors stream it."""
        words = self.text.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any


Replier = Callable[[SimChat], str]
Embedder = Callable[[str], Sequence[float]]


def embed_text(text: str, dims: int = 8) -> list[float]:
    """A deterministic unit vector from the text's character trigrams (not semantic)."""
    import hashlib

    vec = [0.0] * dims
    t = f"  {text.lower()} "
    for i in range(len(t) - 2):
        h = int.from_bytes(hashlib.blake2b(t[i : i + 3].encode(), digest_size=4).digest(), "big")
        vec[h % dims] += 1.0 if (h >> 16) & 1 else -1.0
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]


@dataclass
class Script:
    """What the simulator does with the next calls. Safe to change from any thread."""

    reply: str | Replier | None = None
    """A fixed reply, or a function of the request; default: a short deterministic answer."""
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    cached_tokens: int = 0
    """Reported as cached input on every call (cache-read pricing tests)."""
    cache_write_tokens: int = 0
    """Reported as input written to the cache on every call, 1-hour writes included (where
    the vendor reports writes: Anthropic)."""
    cache_write_1h_tokens: int = 0
    """Of ``cache_write_tokens``, those cached for an hour."""
    reasoning_tokens: int = 0
    """Reported as reasoning on every call, on top of the reply's own tokens."""
    embedding: Embedder | None = None
    """The vector of each text sent to the embeddings endpoint; default: :func:`embed_text`
    (character trigrams, so paraphrases are *not* close: script this for semantic tests)."""
    error_rate: float = 0.0
    """Each call that no queued or sticky fault takes fails with ``error_status`` with this
    probability, drawn from ``rng`` (seeded: the same calls fail on every run)."""
    error_status: int = 500
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    _queue: deque[Fault] = field(default_factory=deque)
    _sticky: Fault | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        retry_after: float | None = None,
        error_type: str | None = None,
        message: str = "",
    ) -> Script:
        """The next ``n`` calls answer ``status`` with the vendor's error body."""
        return self._push(n, Fault("status", status, retry_after, error_type, message))

    def fail_always(
        self, status: int = 500, *, error_type: str | None = None, message: str = ""
    ) -> Script:
        """Every chat call fails until :meth:`recover`."""
        with self._lock:
            self._sticky = Fault("status", status, None, error_type, message)
        return self

    def garbage_next(self, n: int = 1) -> Script:
        """The next ``n`` calls answer 200 with a body that is not JSON."""
        return self._push(n, Fault("garbage"))

    def cut_stream(self, after_chunks: int = 2, *, n: int = 1, abort: bool = False) -> Script:
        """The next ``n`` streams stop after ``after_chunks`` content chunks, no end marker."""
        return self._push(n, Fault("cut", after_chunks=after_chunks, abort=abort))

    def hang_next(self, seconds: float, n: int = 1) -> Script:
        """The next ``n`` calls wait ``seconds`` before answering (timeout tests)."""
        return self._push(n, Fault("hang", seconds=seconds))

    def recover(self) -> Script:
        """Clear every pending and sticky fault."""
        with self._lock:
            self._queue.clear()
            self._sticky = None
        return self

    def _push(self, n: int, fault: Fault) -> Script:
        with self._lock:
            self._queue.extend([fault] * n)
        return self

    def take(self) -> Fault | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._sticky is None and self.error_rate and self.rng.random() < self.error_rate:
                return Fault("status", self.error_status)
            return self._sticky

    def vector(self, text: str, dims: int) -> list[float]:
        """The embedding the simulator sends for ``text``."""
        embedder = self.embedding
        return list(embedder(text)) if embedder is not None else embed_text(text, dims)

    def answer(self, chat: SimChat, default: str) -> SimReply:
        reply = self.reply
        text = reply(chat) if callable(reply) else (reply if reply is not None else default)
        completion = count_tokens(text)
        truncated = chat.max_tokens is not None and completion > chat.max_tokens
        if truncated and chat.max_tokens is not None:
            text = text[: chat.max_tokens * 4]
            completion = chat.max_tokens
        prompt = count_tokens(chat.prompt)
        cached = min(self.cached_tokens, prompt)
        written = min(self.cache_write_tokens, prompt - cached)
        return SimReply(
            text,
            prompt,
            completion + self.reasoning_tokens,
            cached,
            truncated,
            written,
            min(self.cache_write_1h_tokens, written),
            self.reasoning_tokens,
        )


class Simulator(ABC):
    """One vendor's API on loopback. Subclasses translate; this base serves and scripts.

    Use as a context manager (sync or async)::

        with OpenAISimulator(reply="hi") as sim:
            client = openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key)
    """

    vendor: ClassVar[str]
    default_models: ClassVar[tuple[str, ...]]
    stream_media_type: ClassVar[str] = "text/event-stream"

    def __init__(
        self,
        *,
        reply: str | Replier | None = None,
        api_key: str | None = "sim-key",
        models: tuple[str, ...] | None = None,
        script: Script | None = None,
    ) -> None:
        self.script = script or Script(reply=reply)
        self.api_key = api_key
        """The key the simulator expects; ``None`` accepts any (or none)."""
        self.models = models or self.default_models
        self.calls = 0
        self.requests: list[RecordedRequest] = []
        self.answered: list[tuple[float, Mapping[str, str]]] = []
        """Successful non-streamed answers: (``time.monotonic()``, response headers)."""
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- what a vendor subclass provides ---------------------------------

    @abstractmethod
    def routes(self) -> list[BaseRoute]: ...

    @abstractmethod
    def authorized(self, request: Request) -> bool:
        """Whether the request carries ``api_key`` in the vendor's own header."""

    @abstractmethod
    def error_response(self, status: int, message: str, error_type: str | None) -> Response:
        """The vendor's error body and headers for this status."""

    @abstractmethod
    def parse_chat(self, request: Request, body: Any) -> SimChat: ...

    @abstractmethod
    def chat_body(self, chat: SimChat, reply: SimReply) -> Any: ...

    def more_answers(self, chat: SimChat, reply: SimReply, body: Any) -> Any:
        """``body`` with the further answers (``chat.n``) and log probabilities asked for,
        in the vendors that have them."""
        return body

    @abstractmethod
    def stream_frames(self, chat: SimChat, reply: SimReply) -> Iterator[str]:
        """The stream, framed (SSE or NDJSON), end marker last."""

    @property
    @abstractmethod
    def base_url(self) -> str:
        """The ``base_url`` the vendor's official SDK (and polyroute) should use."""

    def response_headers(self) -> dict[str, str]:
        """Headers on every successful answer (the vendor's request id, say)."""
        return {}

    def default_reply(self, chat: SimChat) -> str:
        if chat.schema is not None:
            return json.dumps(sample_json(chat.schema), ensure_ascii=False)
        return f"Simulated {self.vendor} reply from {chat.model}."

    # -- shared request handling ------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, request: Request, body: Any) -> None:
        with self._lock:
            self.calls += 1
            self.requests.append(
                RecordedRequest(request.method, request.url.path, dict(request.headers), body)
            )

    async def read_json(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    async def handle_chat(self, request: Request) -> Response:
        """The whole chat flow: record, auth, faults, latency, reply or stream."""
        body = await self.read_json(request)
        self.record(request, body)
        if not self.authorized(request):
            return self.error_response(401, "invalid or missing API key", None)
        if body is None:
            return self.error_response(400, "request body is not valid JSON", None)
        fault, instead = await self.play_fault()
        if instead is not None:
            return instead
        try:
            chat = self.parse_chat(request, body)
        except (KeyError, TypeError, ValueError) as exc:
            return self.error_response(400, f"invalid request: {exc}", None)
        reply = self.script.answer(chat, self.default_reply(chat))
        headers = self.response_headers()
        if not chat.stream:
            body = self.more_answers(chat, reply, self.chat_body(chat, reply))
            response = JSONResponse(body, headers=headers)
            with self._lock:
                self.answered.append((time.monotonic(), headers))
            return response
        cut = fault if fault is not None and fault.kind == "cut" else None
        return StreamingResponse(
            self._paced(chat, reply, cut), media_type=self.stream_media_type, headers=headers
        )

    async def play_fault(self) -> tuple[Fault | None, Response | None]:
        """Wait the scripted latency and play the next fault, for any endpoint that takes
        faults: returns the fault and, for a status or garbage fault, the response to send."""
        fault = self.script.take()
        if self.script.latency_s:
            await asyncio.sleep(self.script.latency_s)
        if fault is None:
            return None, None
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
        elif fault.kind == "status":
            return fault, self.fault_response(fault)
        elif fault.kind == "garbage":
            return fault, PlainTextResponse("<html><body>502 Bad Gateway</body></html>", 200)
        return fault, None

    def fault_response(self, fault: Fault) -> Response:
        """The vendor's error for a scripted status fault; ``retry_after`` as the header."""
        message = fault.message or _REASONS.get(fault.status, "error")
        response = self.error_response(fault.status, message, fault.error_type)
        if fault.retry_after is not None:
            response.headers["retry-after"] = f"{fault.retry_after:g}"
        return response

    async def _paced(self, chat: SimChat, reply: SimReply, cut: Fault | None) -> AsyncIterator[str]:
        frames = list(self.stream_frames(chat, reply))
        # frames: a head (start events), one per content chunk, then the tail
        limit = None if cut is None else self.head_frames + cut.after_chunks
        for i, frame in enumerate(frames):
            if limit is not None and i >= limit:
                if cut is not None and cut.abort:
                    raise ConnectionAbortedError("simulated connection drop")
                return
            if self.script.chunk_delay_s and i:
                await asyncio.sleep(self.script.chunk_delay_s)
            yield frame

    head_frames: ClassVar[int] = 0
    """How many frames of ``stream_frames`` come before the first content chunk."""

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Self:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit it: uvicorn writes a response's head and body apart, and
        # with Nagle the body waited for the client's delayed ACK (40 ms a call on Linux)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(), lifespan="off", log_level="critical", access_log=False, loop="asyncio"
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"sim-{self.vendor}"
        )
        self._thread.start()
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise RuntimeError(f"{self.vendor} simulator did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]


def sample_json(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A value matching ``schema`` (the JSON Schema that structured outputs use: types,
    properties, items, enum, const, anyOf/oneOf, local ``$ref``), every property filled."""
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target[key]
        return sample_json(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample_json(schema[key][0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: sample_json(sub, root) for name, sub in props.items()}
    if kind == "array":
        items = schema.get("items") or {}
        return [sample_json(items, root) for _ in range(max(1, schema.get("minItems", 1)))]
    samples = {"string": "sample", "integer": 1, "number": 1.5, "boolean": True, "null": None}
    return samples.get(kind, "sample")


def sse(data: Any, event: str | None = None) -> str:
    """One SSE frame."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


def ndjson(data: Any) -> str:
    return json.dumps(data, separators=(",", ":")) + "\n"


def bearer_ok(request: Request, key: str | None) -> bool:
    return key is None or request.headers.get("authorization") == f"Bearer {key}"


_REASONS: Mapping[int, str] = {
    400: "bad request",
    401: "invalid api key",
    403: "permission denied",
    404: "model not found",
    408: "request timeout",
    409: "conflict",
    413: "request too large",
    422: "unprocessable entity",
    429: "rate limit exceeded",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    529: "overloaded",
}
