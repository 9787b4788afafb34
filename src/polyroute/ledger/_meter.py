"""Accounting around one provider call: reserve, call, record, tell.

:class:`Meter` wraps a :class:`~polyroute.providers.ProviderClient` call
(it is not a branch inside one): it reserves the worst-case cost against the
budgets, makes the call, writes one ledger record for the attempt whatever
its outcome (settling the reservation to the actual cost), and emits the
request events. The router (Step 3) meters every attempt through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TypeVar

from polyroute._frozen import fast_init
from polyroute.carbon import estimate_g
from polyroute.catalog import Catalog, CatalogModel
from polyroute.errors import BudgetExceeded, ProviderError
from polyroute.events import StreamEnd, StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta
from polyroute.hub import BudgetExceededEvent, EventHub, RequestFailed, RequestSucceeded
from polyroute.ledger._ledger import Ledger
from polyroute.ledger._records import Reservation, Status, UsageRecord
from polyroute.limits import Hold, Limiter
from polyroute.providers import ProviderClient
from polyroute.reasoning import output_tokens_floor
from polyroute.tokens import embedding_token_bound, estimate_output_tokens, prompt_token_bound
from polyroute.types import (
    ChatRequest,
    ChatResponse,
    DocumentPart,
    EmbeddingRequest,
    EmbeddingResponse,
    ImagePart,
    TextPart,
    Usage,
)

log = logging.getLogger("polyroute.meter")

_Answered = TypeVar("_Answered", ChatResponse, EmbeddingResponse)

DEFAULT_OUTPUT_BOUND = 8192
"""Output tokens assumed when neither the request nor the catalog bounds them."""


def output_bound(entry: CatalogModel, max_tokens: int | None, floor: int = 0) -> int:
    """The most output tokens a call can bill: its ``max_tokens``, else the model's, and at
    least ``floor`` (what an adapter sends for a thinking budget: reasoning.py)."""
    return max(max_tokens or entry.max_output_tokens or DEFAULT_OUTPUT_BOUND, floor)


def worst_case(
    entry: CatalogModel, request: ChatRequest | EmbeddingRequest
) -> tuple[int, float | None]:
    """The most tokens a call can bill (what its rate limits hold) and the most they can
    cost (what its budgets hold; ``None`` when unpriced), from one walk of its bounds."""
    price = entry.price
    if isinstance(request, EmbeddingRequest):  # input only
        tokens = embedding_token_bound(request)
        return tokens, None if price is None else price.cost(Usage.new(tokens, 0))
    prompt = prompt_token_bound(request)
    out = output_bound(entry, request.max_tokens, output_tokens_floor(request)) * request.n
    if price is None:
        return prompt + out, None
    usage = Usage.new(prompt_tokens=prompt, completion_tokens=out)
    ttls = _cache_ttls(request)
    if not ttls:
        return prompt + out, price.cost(usage)
    # with breakpoints, every input token may be written to the cache, at a rate above input's
    one_hour = prompt if "1h" in ttls else 0
    written = replace(usage, cache_write_tokens=prompt, cache_write_1h_tokens=one_hour)
    return prompt + out, max(price.cost(usage), price.cost(written))


def worst_case_usd(entry: CatalogModel, request: ChatRequest) -> float | None:
    """Prompt bound x input price + max output x output price (for each of ``n`` answers);
    ``None`` when unpriced."""
    return worst_case(entry, request)[1]


def embedding_worst_case_usd(entry: CatalogModel, request: EmbeddingRequest) -> float | None:
    """The input bound x input price (embeddings have no output); ``None`` when unpriced."""
    return worst_case(entry, request)[1]


def _cache_ttls(request: ChatRequest) -> set[str]:
    """The lifetimes of the request's cache breakpoints (none: nothing is written)."""
    # loops: a request without breakpoints, the usual kind, makes no comprehension
    ttls: set[str] = set()
    for t in request.tools:
        if t.cache_control is not None:
            ttls.add(t.cache_control.ttl)
    for m in request.messages:
        if m.cache_control is not None:
            ttls.add(m.cache_control.ttl)
        if not isinstance(m.content, str):
            for p in m.content:
                if isinstance(p, _MARKABLE) and p.cache_control is not None:
                    ttls.add(p.cache_control.ttl)
    return ttls


_MARKABLE = (TextPart, ImagePart, DocumentPart)
"""The parts that take a cache breakpoint."""


@fast_init
@dataclass(frozen=True, slots=True)
class Metered:
    """A completed call and what it cost."""

    response: ChatResponse
    cost_usd: float | None
    latency_ms: float


@dataclass(frozen=True, slots=True)
class MeteredEmbedding:
    """A completed embeddings call and what it cost."""

    response: EmbeddingResponse
    cost_usd: float | None
    latency_ms: float


class Meter:
    """Budgets, ledger and events around provider calls."""

    def __init__(
        self,
        ledger: Ledger,
        catalog: Catalog,
        hub: EventHub,
        *,
        clock: Callable[[], float] = time.time,
        carbon_intensity: Mapping[str, float | None] = MappingProxyType({}),
        limits: Limiter | None = None,
    ) -> None:
        self.ledger = ledger
        self.limits = limits
        """Rate limits (``None`` or none configured: no admission at all)."""
        self.catalog = catalog
        self.hub = hub
        self.clock = clock
        self.carbon_intensity = carbon_intensity
        """gCO2e/kWh per provider id (config ``carbon_intensity``; absent: the default grid)."""

    def carbon_g(
        self, provider_id: str, provider_type: str, model: str, usage: Usage
    ) -> float | None:
        """Estimated gCO2e of ``usage`` (``None``: the model's size is unknown)."""
        tokens = usage.prompt_tokens + usage.completion_tokens
        if not tokens:
            return 0.0
        params = self.catalog.get(provider_type, model).params_b
        return estimate_g(params, tokens, self.carbon_intensity.get(provider_id))

    def cost(self, provider_type: str, model: str, usage: Usage) -> float | None:
        """What ``usage`` cost; nothing used costs nothing, priced or not."""
        if not usage.total_tokens:
            return 0.0
        return self.catalog.cost(provider_type, model, usage).usd

    async def held(
        self,
        client: ProviderClient,
        request: ChatRequest | EmbeddingRequest,
        ts: float,
        virtual_key: str | None,
    ) -> tuple[Reservation, Hold | None]:
        """Hold the call's worst-case tokens in its rate limits' windows, then reserve its
        worst-case cost against its budgets. Raises :class:`RateLimitedError` or
        :class:`ProviderLimitError` (a limit), or :class:`BudgetExceeded`."""
        pid, ledger = client.id, self.ledger
        limits = self.limits
        if limits is not None and not limits.applies(pid, virtual_key):
            limits = None  # none of them limits this call
        governing = None if limits is not None else ledger.governing(pid, virtual_key)
        if governing is not None and not governing.limits:
            return NOTHING_HELD, None  # nothing to hold, so no worst case to price
        tokens, amount = worst_case(self.catalog.get(client.provider.type, request.model), request)
        hold = None
        if limits is not None:
            hold = await limits.admit(pid, virtual_key, tokens)
            governing = ledger.governing(pid, virtual_key)  # after the wait: as read now
        try:
            reservation = None if governing is None else ledger.hold(governing, amount, ts)
            if reservation is None:  # the database decides
                reservation = await ledger.reserve(
                    provider=pid,
                    model=request.model,
                    amount_usd=amount,
                    ts=ts,
                    virtual_key=virtual_key,
                )
        except BaseException as exc:
            if hold is not None:
                hold.release()
            if isinstance(exc, BudgetExceeded):
                self.hub.emit(BudgetExceededEvent.of(exc, client.id, request.model))
            raise
        return reservation, hold

    async def complete(
        self,
        client: ProviderClient,
        request: ChatRequest,
        *,
        virtual_key: str | None = None,
        timeout_s: float | None = None,
    ) -> Metered:
        """``timeout_s``: this call's HTTP timeout (default: the provider's own)."""
        response, cost, latency = await self._call(
            client, request, virtual_key, lambda: client.complete(request, timeout_s=timeout_s)
        )
        return Metered(response, cost, latency)

    async def embed(
        self,
        client: ProviderClient,
        request: EmbeddingRequest,
        *,
        virtual_key: str | None = None,
        timeout_s: float | None = None,
    ) -> MeteredEmbedding:
        """An embeddings call, reserved and recorded like a chat call (input tokens only)."""
        response, cost, latency = await self._call(
            client, request, virtual_key, lambda: client.embed(request, timeout_s=timeout_s)
        )
        return MeteredEmbedding(response, cost, latency)

    async def _call(
        self,
        client: ProviderClient,
        request: ChatRequest | EmbeddingRequest,
        virtual_key: str | None,
        send: Callable[[], Awaitable[_Answered]],
    ) -> tuple[_Answered, float | None, float]:
        """Reserve, ``send()``, and record the one attempt whatever its outcome:
        ``(response, cost, latency_ms)``."""
        started = self.clock()
        reservation, hold = await self.held(client, request, started, virtual_key)
        t0 = time.perf_counter()
        attempt = _Attempt(self, client, request, started, reservation, virtual_key, hold)
        try:
            response = await send()
        except BaseException as exc:
            attempt.failed(exc, (time.perf_counter() - t0) * 1000)
            raise
        latency = (time.perf_counter() - t0) * 1000
        cost = attempt.succeeded(
            response.model or request.model, response.usage, latency, None, response.request_id
        )
        return response, cost, latency

    async def stream(
        self, client: ProviderClient, request: ChatRequest, *, virtual_key: str | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """The provider's stream, metered: time to first token, usage from its end event.

        A stream that fails or is abandoned after content was delivered is
        charged for the delivered text (vendors bill generated tokens).
        """
        started = self.clock()
        reservation, hold = await self.held(client, request, started, virtual_key)
        attempt = _Attempt(self, client, request, started, reservation, virtual_key, hold)
        t0 = time.perf_counter()
        ttft: float | None = None
        delivered = 0
        try:
            async with aclosing(client.stream(request)) as events:
                async for event in events:
                    if isinstance(event, _DELIVERED):
                        if ttft is None:
                            ttft = (time.perf_counter() - t0) * 1000
                        # thinking is billed as output too
                        delivered += len(
                            event.arguments if isinstance(event, ToolCallDelta) else event.text
                        )
                    elif isinstance(event, StreamEnd):
                        latency = (time.perf_counter() - t0) * 1000
                        attempt.succeeded(request.model, event.usage, latency, ttft, None)
                    yield event
        except BaseException as exc:
            if not attempt.done:
                attempt.failed(exc, (time.perf_counter() - t0) * 1000, ttft, delivered)
            raise
        finally:
            if not attempt.done:  # the consumer stopped reading before the end
                attempt.failed(None, (time.perf_counter() - t0) * 1000, ttft, delivered)


NOTHING_HELD = Reservation("", 0.0, ())
"""The reservation of a call that no budget governs."""

_DELIVERED = (TextDelta, ToolCallDelta, ThinkingDelta)
"""Events of delivered output (a tuple: ``isinstance`` on a union builds it per call)."""


class _Attempt:
    """One attempt's record; written exactly once."""

    def __init__(
        self,
        meter: Meter,
        client: ProviderClient,
        request: ChatRequest | EmbeddingRequest,
        started: float,
        reservation: Reservation,
        virtual_key: str | None,
        hold: Hold | None = None,
    ) -> None:
        self.meter = meter
        self.hold = hold
        self.client = client
        self.request = request
        self.started = started
        self.reservation = reservation
        self.virtual_key = virtual_key
        self.done = False

    def _write(
        self,
        model: str,
        usage: Usage,
        latency_ms: float,
        ttft_ms: float | None,
        request_id: str | None,
        status: Status = "ok",
        error_type: str | None = None,
    ) -> float | None:
        """Record the attempt (settling its reservation); return its cost."""
        self.done = True
        provider = self.client.provider
        cost = self.meter.cost(provider.type, self.request.model, usage)
        carbon = self.meter.carbon_g(provider.id, provider.type, self.request.model, usage)
        record = UsageRecord.new(
            ts=self.started,
            provider=self.client.id,
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_usd=cost,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            status=status,
            error_type=error_type,
            request_id=request_id,
            virtual_key=self.virtual_key,
            carbon_g=carbon,
        )
        self.meter.ledger.record(record, self.reservation)
        if self.hold is not None:
            self.hold.settle(usage.total_tokens)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s/%s %s%s in %.1f ms, %d+%d tokens, cost %s, held %s, request id %s",
                record.provider,
                record.model,
                record.status,
                f" ({record.error_type})" if record.error_type else "",
                record.latency_ms,
                record.prompt_tokens,
                record.completion_tokens,
                record.cost_usd,
                self.reservation.amount_usd if self.reservation.targets else "nothing",
                record.request_id,
            )
        return cost

    def succeeded(
        self,
        model: str,
        usage: Usage,
        latency_ms: float,
        ttft_ms: float | None,
        request_id: str | None,
    ) -> float | None:
        cost = self._write(model, usage, latency_ms, ttft_ms, request_id)
        if self.meter.hub.wants("request_succeeded"):
            self.meter.hub.emit(
                RequestSucceeded.new(
                    self.client.id,
                    model,
                    latency_ms,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    cost,
                    request_id,
                )
            )
        return cost

    def failed(
        self,
        exc: BaseException | None,
        latency_ms: float,
        ttft_ms: float | None = None,
        delivered_chars: int = 0,
    ) -> None:
        # CancelledError, GeneratorExit and a consumer that stopped reading are not failures
        status: Status = "error" if isinstance(exc, Exception) else "cancelled"
        error_type = None
        if isinstance(exc, ProviderError):
            error_type = exc.type
        elif isinstance(exc, Exception):
            error_type = type(exc).__name__
        # vendors bill generated tokens: a stream cut after content is charged for what came
        usage = Usage(0, 0)
        if delivered_chars and isinstance(self.request, ChatRequest):
            usage = Usage(prompt_token_bound(self.request), estimate_output_tokens(delivered_chars))
        request_id = exc.request_id if isinstance(exc, ProviderError) else None
        self._write(self.request.model, usage, latency_ms, ttft_ms, request_id, status, error_type)
        if self.meter.hub.wants("request_failed"):
            self.meter.hub.emit(
                RequestFailed(
                    self.client.id,
                    self.request.model,
                    latency_ms,
                    error_type or status,
                    str(exc) if exc is not None else "the caller stopped reading the stream",
                    exc.status if isinstance(exc, ProviderError) else None,
                )
            )
