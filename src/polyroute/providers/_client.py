"""ProviderClient: a configured provider, its wire protocol and the HTTP pool, as one object."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any, TypeVar

from polyroute.errors import InvalidResponseError, ProviderError, StreamInterruptedError
from polyroute.events import StreamEnd, StreamEvent
from polyroute.providers._base import HttpCall, Provider, UnsupportedError, WireProtocol
from polyroute.providers._http import Exchange, HttpPool
from polyroute.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
)

T = TypeVar("T")

# What a malformed-but-JSON body raises inside a parser.
_SHAPE_ERRORS = (KeyError, TypeError, IndexError, AttributeError, ValueError)

_RESPONSE_FIELDS = tuple(f.name for f in fields(ChatResponse))
_response_values = attrgetter(*_RESPONSE_FIELDS)
_PROVIDER = _RESPONSE_FIELDS.index("provider")
_REQUEST_ID = _RESPONSE_FIELDS.index("request_id")


def _served(response: ChatResponse, provider: str, request_id: str | None) -> ChatResponse:
    """``replace(response, provider=provider, request_id=request_id)`` at half its cost
    (every field passed positionally, not looked up and checked one by one)."""
    values = list(_response_values(response))
    values[_PROVIDER] = provider
    values[_REQUEST_ID] = request_id
    return ChatResponse.new(*values)


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """The result of :meth:`ProviderClient.test_connection`."""

    provider: str
    ok: bool
    latency_ms: float
    models: int = 0
    error: str | None = None
    error_type: str | None = None


class ProviderClient:
    """Talks to one configured provider. Raises only :class:`ProviderError` subclasses."""

    __slots__ = ("_x", "protocol", "provider")

    def __init__(self, provider: Provider, protocol: WireProtocol, pool: HttpPool) -> None:
        self.provider = provider
        self.protocol = protocol
        self._x = Exchange(provider, protocol, pool)

    @property
    def id(self) -> str:
        return self.provider.id

    def __repr__(self) -> str:
        return f"ProviderClient(id={self.provider.id!r}, type={self.protocol.type!r})"

    def _model(self, request: ChatRequest) -> ChatRequest:
        if request.model:
            return request
        model = self.provider.default_model or (
            self.provider.models[0] if self.provider.models else ""
        )
        if not model:
            raise UnsupportedError(f"provider {self.id!r}: no model given and no default_model")
        return replace(request, model=model)

    def _translate(self, request: ChatRequest, *, stream: bool) -> HttpCall:
        try:
            return self.protocol.chat(request, stream=stream)
        except ProviderError as exc:  # e.g. UnsupportedError: name who could not take it
            exc.provider = exc.provider or self.id
            raise

    def _parse(self, parse: Callable[..., T], request_id: str | None, *args: Any) -> T:
        try:
            return parse(*args)
        except ProviderError as exc:
            self._complete(exc, request_id)
            raise
        except _SHAPE_ERRORS as exc:
            raise self._shape(exc, request_id) from None

    def _complete(self, exc: ProviderError, request_id: str | None) -> None:
        """Add to an in-band vendor error what its decoder cannot know."""
        exc.provider = exc.provider or self.id
        exc.request_id = exc.request_id or request_id

    def _shape(self, exc: Exception, request_id: str | None) -> InvalidResponseError:
        return InvalidResponseError(
            f"unexpected response shape ({type(exc).__name__}: {exc})",
            provider=self.id,
            request_id=request_id,
        )

    async def complete(
        self, request: ChatRequest, *, timeout_s: float | None = None
    ) -> ChatResponse:
        request = self._model(request)
        body, rid = await self._x.send_json(self._translate(request, stream=False), timeout_s)
        response = self._parse(self.protocol.parse_chat, rid, body)
        return _served(response, self.id, rid)

    async def stream(
        self, request: ChatRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Yield stream events; raise :class:`StreamInterruptedError` if the end marker never comes."""
        request = self._model(request)
        response = await self._x.open_stream(self._translate(request, stream=True), timeout_s)
        rid = self._x.request_id(response)
        decoder = self.protocol.stream_decoder(request)
        ended = False
        feed = decoder.feed
        try:
            async with aclosing(self._x.message_batches(response)) as batches:
                async for batch in batches:
                    for data, event in batch:
                        try:  # what _parse does, inline: a call less per event
                            events = feed(data, event)
                        except ProviderError as exc:
                            self._complete(exc, rid)
                            raise
                        except _SHAPE_ERRORS as exc:
                            raise self._shape(exc, rid) from None
                        for ev in events:
                            ended = ended or isinstance(ev, StreamEnd)
                            yield ev
                        if decoder.done:
                            break
                    if decoder.done:
                        break
        finally:
            await response.aclose()
        if not (decoder.done and ended):
            raise StreamInterruptedError(
                "stream ended without the vendor's end marker: the answer is truncated",
                provider=self.id,
                request_id=rid,
            )

    async def relay(
        self, call: HttpCall, *, timeout_s: float | None = None
    ) -> tuple[Any, str | None]:
        """``call`` as the caller wrote it, in the vendor's own API (the gateway's relay of
        hosted tools): ``(its JSON answer, the vendor's request id)``."""
        return await self._x.send_json(call, timeout_s)

    async def relay_stream(
        self, call: HttpCall, *, timeout_s: float | None = None
    ) -> AsyncGenerator[tuple[str, str | None], None]:
        """``call``'s SSE stream as ``(data, event)`` pairs, unread; its status is checked
        before the first."""
        response = await self._x.open_stream(call, timeout_s)
        try:
            async with aclosing(self._x.messages(response)) as items:
                async for item in items:
                    yield item
        finally:
            await response.aclose()

    async def count_tokens(self, request: ChatRequest, *, timeout_s: float | None = None) -> int:
        """``request``'s input tokens as the vendor counts them (where it can:
        ``protocol.counts_tokens``; else :class:`UnsupportedError`)."""
        request = self._model(request)
        try:
            call = self.protocol.count_tokens(request)
        except ProviderError as exc:  # name who could not take it
            exc.provider = exc.provider or self.id
            raise
        body, rid = await self._x.send_json(call, timeout_s)
        return self._parse(self.protocol.parse_count_tokens, rid, body)

    async def list_models(self, *, timeout_s: float | None = None) -> list[ModelInfo]:
        body, rid = await self._x.send_json(self.protocol.list_models(), timeout_s)
        return self._parse(self.protocol.parse_models, rid, body)

    async def embed(
        self, request: EmbeddingRequest, *, timeout_s: float | None = None
    ) -> EmbeddingResponse:
        body, rid = await self._x.send_json(self.protocol.embed(request), timeout_s)
        response = self._parse(self.protocol.parse_embed, rid, body)
        return replace(response, provider=self.id, request_id=rid)

    async def test_connection(self, *, timeout_s: float = 10.0) -> ConnectionCheck:
        """List models as a cheap authenticated probe: checks reachability and the key."""
        start = time.perf_counter()
        try:
            models = await self.list_models(timeout_s=timeout_s)
        except ProviderError as exc:
            return ConnectionCheck(
                self.id,
                ok=False,
                latency_ms=(time.perf_counter() - start) * 1000,
                error=str(exc),
                error_type=exc.type,
            )
        return ConnectionCheck(
            self.id, ok=True, latency_ms=(time.perf_counter() - start) * 1000, models=len(models)
        )
