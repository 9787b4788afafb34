"""The library facade: ``Polyroute`` asks, streams and checks health across providers.

::

    async with Polyroute.from_config() as pr:
        answer = await pr.complete("Explain TCP slow start", max_tokens=200)
        print(answer.content, answer.cost_usd)

        stream = pr.stream("Write a haiku")
        async for event in stream:
            ...
        print(stream.answer.usage)

Every call is reserved against the budgets and written to the usage ledger
(``pr.ledger``); ``pr.events`` delivers typed events about both. Leaving the
``async with`` block flushes the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyroute.catalog import Catalog
from polyroute.config import Config
from polyroute.config import load as load_config
from polyroute.errors import ConfigError, CredentialError
from polyroute.events import StreamEnd, StreamEvent, TextDelta
from polyroute.hub import EventHub
from polyroute.ledger import (
    BudgetStatus,
    GroupBy,
    Ledger,
    Meter,
    UsageReport,
    ledger_for,
    provider_scope,
)
from polyroute.providers import ConnectionCheck, HttpPool, ProviderClient, connect
from polyroute.router.decision import Attempt, Decision
from polyroute.types import ChatRequest, ChatResponse, Message, Usage

Prompt = str | Sequence[Message]


@dataclass(frozen=True, slots=True)
class Answer:
    """A completed request: the reply, who answered, what it cost, how it was decided."""

    content: str
    provider: str
    model: str
    usage: Usage
    cost_usd: float | None
    """``None`` when the model is unpriced."""
    latency_ms: float
    decision: Decision
    attempts: Sequence[Attempt]
    finish_reason: str = "stop"
    response: ChatResponse | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "provider": self.provider,
            "model": self.model,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 1),
            "decision": self.decision.as_dict(),
            "attempts": [a.as_dict() for a in self.attempts],
        }


def to_messages(prompt: Prompt, system: str | None = None) -> list[Message]:
    messages = [Message.user(prompt)] if isinstance(prompt, str) else list(prompt)
    if system:
        messages.insert(0, Message.system(system))
    return messages


def estimate_tokens(messages: Sequence[Message]) -> int:
    """About four characters a token: a cheap upper-ish bound for estimates."""
    return sum(len(m.text) for m in messages) // 4 + 4 * len(messages)


class Polyroute:
    """Many providers as one. Close it (or use ``async with``) to release connections."""

    def __init__(
        self,
        config: Config,
        *,
        pool: HttpPool | None = None,
        ledger: Ledger | None = None,
        events: EventHub | None = None,
    ) -> None:
        """``ledger``: default, the one ``config`` names (opened on first use, closed with
        this object); a ledger passed in is flushed, not closed, and brings its own hub."""
        self.config = config
        self.pool = pool or HttpPool()
        self.events = ledger.hub if ledger is not None else (events or EventHub())
        self._ledger = ledger
        self._own_ledger = ledger is None
        self._meter: Meter | None = None
        self._clients: dict[str, ProviderClient] = {}
        self._catalog: Catalog | None = None

    @classmethod
    def from_config(cls, path: str | None = None) -> Polyroute:
        return cls(load_config(path))

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = self.config.catalog()
        return self._catalog

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = ledger_for(self.config, hub=self.events)
        return self._ledger

    @property
    def meter(self) -> Meter:
        if self._meter is None:
            self._meter = Meter(self.ledger, self.catalog, self.events)
        return self._meter

    def client(self, provider_id: str) -> ProviderClient:
        c = self._clients.get(provider_id)
        if c is None:
            c = connect(self.config.provider(provider_id), self.pool)
            self._clients[provider_id] = c
        return c

    # -- choosing ----------------------------------------------------------

    def models_of(self, provider_id: str) -> list[str]:
        """What a provider serves: its configured list, else the catalog's chat models of its type."""
        spec = self.config.settings.providers[provider_id]
        if spec.models:
            return list(spec.models)
        return [m.id for m in self.catalog.for_type(spec.type) if "chat" in m.capabilities]

    def decide(
        self,
        messages: Sequence[Message],
        *,
        provider: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> Decision:
        """Pick the provider and model: pinned ones, else the first enabled provider that serves it."""
        enabled = self.config.enabled()
        if provider is not None:
            if provider not in self.config.settings.providers:
                self.config.provider(provider)  # raises the clear "no provider" error
            candidates = [provider]
            why = f"pinned to provider {provider!r}"
        else:
            candidates = [p for p in enabled if model is None or model in self.models_of(p)]
            why = "first enabled provider" + (f" serving {model!r}" if model else "")
        if not candidates:
            raise ConfigError(
                "no enabled provider"
                + (f" serves model {model!r}" if model else " is configured")
                + f" ({self.config.source})"
            )
        pid = candidates[0]
        chosen = model or self._default_model(pid)
        spec = self.config.settings.providers[pid]
        entry = self.catalog.get(spec.type, chosen)
        out_tokens = max_tokens or entry.max_output_tokens or 1024
        est = None
        if entry.price is not None:
            est = entry.price.cost(Usage(estimate_tokens(messages), out_tokens))
        return Decision("pinned", pid, chosen, why, est)

    def _default_model(self, pid: str) -> str:
        spec = self.config.settings.providers[pid]
        if spec.default_model:
            return spec.default_model
        models = self.models_of(pid)
        if not models:
            raise ConfigError(
                f"{self.config.source}: providers.{pid}: no model (set default_model)"
            )
        return models[0]

    # -- calling -----------------------------------------------------------

    async def complete(
        self,
        prompt: Prompt,
        *,
        provider: str | None = None,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Answer:
        self.events.bind(asyncio.get_running_loop())
        messages = to_messages(prompt, system)
        decision = self.decide(messages, provider=provider, model=model, max_tokens=max_tokens)
        client = self.client(decision.provider)
        request = ChatRequest(
            decision.model, tuple(messages), max_tokens=max_tokens, temperature=temperature
        )
        done = await self.meter.complete(client, request)
        return self._answer(decision, done.response, done.latency_ms, done.cost_usd)

    def stream(
        self,
        prompt: Prompt,
        *,
        provider: str | None = None,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AnswerStream:
        messages = to_messages(prompt, system)
        decision = self.decide(messages, provider=provider, model=model, max_tokens=max_tokens)
        request = ChatRequest(
            decision.model, tuple(messages), max_tokens=max_tokens, temperature=temperature
        )
        return AnswerStream(self, decision, request)

    def _answer(
        self, decision: Decision, response: ChatResponse, latency_ms: float, cost: float | None
    ) -> Answer:
        model = response.model or decision.model
        attempt = Attempt(decision.provider, model, ok=True, latency_ms=latency_ms)
        return Answer(
            content=response.content,
            provider=decision.provider,
            model=model,
            usage=response.usage,
            cost_usd=cost,
            latency_ms=latency_ms,
            decision=decision,
            attempts=[attempt],
            finish_reason=response.finish_reason,
            response=response,
        )

    async def health(self, *, timeout_s: float = 10.0) -> list[ConnectionCheck]:
        """Probe every enabled provider at once."""
        ids = self.config.enabled()

        async def check(pid: str) -> ConnectionCheck:
            try:
                client = self.client(pid)
            except (ConfigError, CredentialError) as exc:
                return ConnectionCheck(
                    pid, ok=False, latency_ms=0.0, error=str(exc), error_type="config"
                )
            return await client.test_connection(timeout_s=timeout_s)

        return list(await asyncio.gather(*(check(p) for p in ids)))

    # -- accounting ----------------------------------------------------------

    async def usage(
        self, *, by: GroupBy = "provider", provider: str | None = None, since: float | None = None
    ) -> UsageReport:
        """Ledger totals grouped ``by`` day, month, provider or model; ``since`` is Unix time."""
        return await self.ledger.usage(by=by, provider=provider, since=since)

    async def budgets(self) -> list[BudgetStatus]:
        """Every budget with what is spent and held now (configured providers included)."""
        return await self.ledger.budgets(provider_scope(p) for p in self.config.settings.providers)

    async def aclose(self) -> None:
        """Close connections and write the ledger's pending records."""
        try:
            if self._ledger is not None:
                if self._own_ledger:
                    await self._ledger.aclose()
                else:
                    await self._ledger.flush()
        finally:
            await self.pool.aclose()

    async def __aenter__(self) -> Polyroute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass
class AnswerStream:
    """Async-iterate for stream events; ``answer`` is set once the stream has ended."""

    owner: Polyroute
    decision: Decision
    request: ChatRequest
    answer: Answer | None = None
    _parts: list[str] = field(default_factory=list)

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        owner = self.owner
        owner.events.bind(asyncio.get_running_loop())
        client = owner.client(self.decision.provider)
        start = time.perf_counter()
        async for event in owner.meter.stream(client, self.request):
            if isinstance(event, TextDelta):
                self._parts.append(event.text)
            elif isinstance(event, StreamEnd):
                response = ChatResponse(
                    content="".join(self._parts),
                    model=self.request.model,
                    finish_reason=event.finish_reason,
                    usage=event.usage,
                    provider=self.decision.provider,
                )
                latency = (time.perf_counter() - start) * 1000
                cost = owner.catalog.cost(client.provider.type, self.request.model, event.usage)
                self.answer = owner._answer(self.decision, response, latency, cost.usd)
            yield event
