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
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

from polyroute.answer import Answer, AnswerStream, answer_of
from polyroute.catalog import Catalog
from polyroute.config import Config
from polyroute.config import load as load_config
from polyroute.errors import (
    ConfigError,
    NoCandidateError,
)
from polyroute.fusion import (
    Fuser,
    FusionMethod,
    FusionMetrics,
    FusionResult,
    FusionTally,
    named_panel,
    routed_panel,
)
from polyroute.hub import BreakerChanged, EventHub, HealthChanged, HealthState, RoutingDecision
from polyroute.ledger import (
    BudgetStatus,
    GroupBy,
    Ledger,
    Meter,
    UsageReport,
    VirtualKey,
    ledger_for,
    provider_scope,
)
from polyroute.limits import Limiter
from polyroute.providers import HttpPool, ProviderClient, connect
from polyroute.router import targets
from polyroute.router._router import Router, lacking
from polyroute.router.breaker import Breakers, BreakerState, CircuitBreaker
from polyroute.router.complexity import estimate_complexity
from polyroute.router.context import Complexity, RoutingContext
from polyroute.router.decision import RECENT_DECISIONS, Decision, Routed
from polyroute.router.executor import ExecutedEmbedding, Executor
from polyroute.router.fields import refusals
from polyroute.router.health import HealthMonitor, HealthStatus
from polyroute.router.hints import BudgetHints
from polyroute.router.retry import RetryPolicy
from polyroute.router.stats import LatencyStats
from polyroute.shared import Shared, share
from polyroute.tokens import estimate_prompt_tokens
from polyroute.types import (
    Capability,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    Excluded,
    JsonSchema,
    Message,
    Target,
    Usage,
)

if TYPE_CHECKING:
    from polyroute.alerts import Alerts
    from polyroute.hooks import Hooks
    from polyroute.telemetry import Telemetry

__all__ = [
    "RECENT_DECISIONS",
    "Answer",
    "AnswerStream",
    "Polyroute",
    "Prompt",
    "Routed",
    "Routing",
    "to_messages",
]

Prompt = str | Sequence[Message]


class Routing(TypedDict, total=False):
    """How to route a request (all optional): the library side of the CLI's routing flags."""

    provider: str
    """Only this configured provider."""
    model: str
    """Only this model."""
    models: Sequence[str]
    """Only these models, on any provider that serves one (``model`` wins when both are set)."""
    priority: str
    """The strategy: cost, quality, performance, balanced, carbon, or ``"pkg.module:Class"``."""
    complexity: Complexity | Literal["auto"]
    max_cost_usd: float
    max_latency_ms: float
    require: Sequence[Capability]


def _request(
    prompt: Prompt, system: str | None, max_tokens: int | None, temperature: float | None
) -> ChatRequest:
    """A prompt as a request; routing puts each target's model in it."""
    return ChatRequest(
        "", tuple(to_messages(prompt, system)), max_tokens=max_tokens, temperature=temperature
    )


def _telemetry_of(config: Config) -> Telemetry | None:
    """``[telemetry]``'s tracing, or ``None`` (then nothing of OpenTelemetry is imported)."""
    settings = config.settings.telemetry
    if not settings.otlp_endpoint:
        return None
    try:
        from polyroute.telemetry import Telemetry
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigError(
            f"{config.source}: telemetry.otlp_endpoint needs OpenTelemetry, which is not "
            "installed: pip install 'polyroute[otel]'"
        ) from exc
    return Telemetry.from_config(settings)


def to_messages(prompt: Prompt, system: str | None = None) -> list[Message]:
    messages = [Message.user(prompt)] if isinstance(prompt, str) else list(prompt)
    if system:
        messages.insert(0, Message.system(system))
    return messages


class Polyroute:
    """Many providers as one. Close it (or use ``async with``) to release connections."""

    def __init__(
        self,
        config: Config,
        *,
        pool: HttpPool | None = None,
        ledger: Ledger | None = None,
        events: EventHub | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        """``ledger``: default, the one ``config`` names (opened on first use, closed with
        this object); a ledger passed in is flushed, not closed, and brings its own hub.
        ``telemetry``: where spans go (:mod:`polyroute.telemetry`); default, what
        ``[telemetry]`` says (shut down with this object), else no tracing at all."""
        self.config = config
        self.telemetry = telemetry if telemetry is not None else _telemetry_of(config)
        self._own_telemetry = telemetry is None
        self.pool = pool or HttpPool()
        self.events = ledger.hub if ledger is not None else (events or EventHub())
        self._ledger = ledger
        self._own_ledger = ledger is None
        self._meter: Meter | None = None
        self._clients: dict[str, ProviderClient] = {}
        self._catalog: Catalog | None = None
        settings = config.settings
        self.alerts: Alerts | None = None
        """``[[alerts]]``: the webhooks posted the events they chose (``None``: none)."""
        if settings.alerts:
            from polyroute.alerts import Alerts

            self.alerts = Alerts.from_config(config)
            self.alerts.attach(self.events)
        self.stats = LatencyStats()
        self.breakers = Breakers(settings.router.circuit_breaker, on_change=self._breaker_changed)
        self.health_monitor = HealthMonitor(
            self.client,
            config.enabled,
            interval_s=settings.health.interval_s,
            breakers=self.breakers,
            on_change=self._health_changed,
        )
        """Probes on demand; ``start_health_monitor()`` runs it every ``[health] interval_s``."""
        self.shared = Shared(settings.storage.redis_url)
        """What replicas share through ``[storage] redis_url`` (breakers, health, latency;
        the gateway starts it); without it, this process alone."""
        share(self.shared, self.breakers, self.health_monitor, self.stats)
        self._router: Router | None = None
        self._executor: Executor | None = None
        self._hooks: Hooks | None = None
        self.budget_hints = BudgetHints()
        """What budgets that refused lately had left: routing skips pairs that cannot fit."""
        self.limits = Limiter.from_settings(settings, self.shared, self._key)
        """Rate limits of providers and virtual keys (polyroute.limits)."""
        self._key_blocked: dict[str, str] | None = None
        self.recent: deque[Routed] = deque(maxlen=RECENT_DECISIONS)
        """The latest decisions requests were sent with, oldest first (bounded)."""

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
            intensity = {
                pid: p.carbon_intensity for pid, p in self.config.settings.providers.items()
            }
            self._meter = Meter(
                self.ledger,
                self.catalog,
                self.events,
                carbon_intensity=intensity,
                limits=self.limits,
            )
        return self._meter

    def client(self, provider_id: str) -> ProviderClient:
        c = self._clients.get(provider_id)
        if c is None:
            c = connect(self.config.provider(provider_id), self.pool)
            self._clients[provider_id] = c
        return c

    # -- the router's parts --------------------------------------------------

    @property
    def router(self) -> Router:
        if self._router is None:
            measured = None
            if self.config.settings.router.quality_source == "bench":
                from polyroute.benchmark._learn import load_measured_blocking

                measured = load_measured_blocking(self.ledger)  # once: not on the request path
            self._router = Router(
                self.config,
                self.catalog,
                self.stats,
                (self._blocked_by_key, self.breakers.blocked),
                budget=self.budget_hints,
                # like health, a provider's rate limit leaves it out unless pinned (a pin: 429)
                health=_either(self.health_monitor.blocked, self.limits.blocked)
                if self.limits.providers
                else self.health_monitor.blocked,
                measured=measured,
            )
        return self._router

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            router = self.config.settings.router
            make = Executor if self.telemetry is None else self.telemetry.executor
            self._executor = make(
                self.client,
                self.meter,
                self.breakers,
                self.stats,
                RetryPolicy.from_config(router),
                max_attempts=router.max_attempts,
                events=self.events,
            )
            if self.hooks is not None:  # decided once: with none, no hook code on the path
                from polyroute.hooks import HookedExecutor

                self._executor = HookedExecutor(self._executor, self.hooks)
        return self._executor

    @property
    def hooks(self) -> Hooks | None:
        """``[hooks] enabled``, made on first use (a plugin hook's package is imported
        then); ``None`` when no hook is enabled."""
        if self._hooks is None and self.config.settings.hooks.enabled:
            from polyroute.hooks import hooks_of

            self._hooks = hooks_of(self.config)
        return self._hooks

    def _breaker_changed(self, b: CircuitBreaker, previous: BreakerState, remote: bool) -> None:
        if self.events.wants("breaker_changed"):
            state = b.state
            retry = b.retry_in_s
            self.events.emit(
                BreakerChanged(b.provider, previous, state, b.consecutive_failures, retry, remote)
            )

    def _health_changed(self, now: HealthStatus, before: HealthStatus | None, remote: bool) -> None:
        if self.events.wants("health_changed"):
            was: HealthState = "unknown" if before is None else _health(before)
            self.events.emit(
                HealthChanged(now.provider, was, _health(now), now.error, now.error_type, remote)
            )

    async def _key(self, key_id: str) -> VirtualKey | None:
        """A virtual key by id: the limits of one a library caller bills (``virtual_key``)."""
        return await self.ledger.key(key_id)

    def _blocked_by_key(self) -> Mapping[str, str]:
        """Providers whose key cannot be had are not candidates (looked up once per process)."""
        if self._key_blocked is None:
            status = {pid: self.config.key_status(pid) for pid in self.config.enabled()}
            self._key_blocked = {
                pid: f"api key {s}"
                for pid, s in status.items()
                if s not in ("none", "set", "set (vault)")
            }
        return self._key_blocked

    def models_of(self, provider_id: str) -> list[str]:
        """What a provider serves: its configured ``models`` (patterns included), else the
        catalog's chat models of its type."""
        return targets.models_of(self.config.settings.providers[provider_id], self.catalog)

    # -- choosing ------------------------------------------------------------

    def context(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        routing: Routing,
        *,
        stream: bool = False,
    ) -> RoutingContext:
        """The routing context of a request (``complexity="auto"`` is estimated here)."""
        provider = routing.get("provider")
        if provider is not None:
            self.client(provider)  # a pinned provider's config or key problem: its own clear error
        model = routing.get("model")
        if provider is not None and model is None:
            # a pinned provider with a configured default uses it, as the user set up
            model = self.config.settings.providers[provider].default_model
        models = routing.get("models")
        if model is not None:
            models = (model,)
        for m in models or ():
            targets.check_model(m)  # a name is data: refused before any call
        complexity = routing.get("complexity", "auto")
        return RoutingContext.new(
            messages=messages,
            prompt_tokens=estimate_prompt_tokens(messages),
            max_tokens=max_tokens,
            complexity=estimate_complexity(messages) if complexity == "auto" else complexity,
            strategy=routing.get("priority") or self.config.settings.router.strategy,
            max_cost_usd=routing.get("max_cost_usd"),
            max_latency_ms=routing.get("max_latency_ms"),
            required=frozenset(routing.get("require", ())),
            providers=None if provider is None else frozenset({provider}),
            pinned=provider is not None,
            models=None if models is None else frozenset(models),
            stream=stream,
        )

    def decide(self, ctx: RoutingContext) -> Decision:
        """Where ``ctx`` goes. A provider and model both pinned must be listed by the
        provider's ``models``; one that a pattern lists (``"*"``: any) but routing does not
        know as a candidate is honoured as it is."""
        if ctx.providers and ctx.models and len(ctx.providers) == len(ctx.models) == 1:
            [pid], [model] = ctx.providers, ctx.models
            spec = self.config.settings.providers[pid]
            targets.check_pin(spec, self.catalog, pid, model)
            if pid in ctx.refused:
                raise NoCandidateError([Excluded(pid, model, ctx.refused[pid])])
            if spec.enabled and Target(pid, model) not in self.router.pairs:
                missing = sorted(ctx.required - self.catalog.get(spec.type, model).capabilities)
                if missing:
                    raise NoCandidateError([Excluded(pid, model, lacking(missing))])
                why = f"pinned by the caller to {pid}/{model} (listed by a pattern in its models)"
                return Decision("pinned", pid, model, why, None)
        return self.router.decide(ctx)

    def route(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        **routing: Unpack[Routing],
    ) -> Decision:
        """The routing decision for ``prompt``, without calling anyone."""
        return self.decide(self.context(to_messages(prompt, system), max_tokens, routing))

    # -- calling -----------------------------------------------------------

    async def complete(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **routing: Unpack[Routing],
    ) -> Answer:
        """Route, call (retrying and falling back per ``[router]``), and answer."""
        return await self.send(_request(prompt, system, max_tokens, temperature), **routing)

    def stream(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **routing: Unpack[Routing],
    ) -> AnswerStream:
        """Route and stream; falls back transparently until the first content token."""
        return self.send_stream(_request(prompt, system, max_tokens, temperature), **routing)

    async def send(
        self, request: ChatRequest, *, virtual_key: str | None = None, **routing: Unpack[Routing]
    ) -> Answer:
        """:meth:`complete` for a whole request: every option it carries (tools, stop,
        response format, seed...) goes to each target tried, with that target's model in
        place of ``request.model``. ``virtual_key``: the id of the gateway key to bill, whose
        budgets then apply too."""
        self.events.bind(asyncio.get_running_loop())
        decision = self._decide_for(request, routing, stream=False, virtual_key=virtual_key)
        with self.budget_hints.noting():  # the executor puts each target's model in the request
            done = await self.executor.complete(decision, request, virtual_key=virtual_key)
        self.budget_hints.note(done.refusals)
        return answer_of(decision, done.response, done.latency_ms, done.cost_usd, done.attempts)

    def send_stream(
        self, request: ChatRequest, *, virtual_key: str | None = None, **routing: Unpack[Routing]
    ) -> AnswerStream:
        """:meth:`stream` for a whole request (see :meth:`send`). The decision is made now
        (routing errors raise here); the calls start when the stream is iterated."""
        decision = self._decide_for(request, routing, stream=True, virtual_key=virtual_key)
        return AnswerStream(self, decision, request, virtual_key)

    def _decide_for(
        self, request: ChatRequest, routing: Routing, *, stream: bool, virtual_key: str | None
    ) -> Decision:
        if isinstance(request.response_format, JsonSchema):  # a schema is never weakened
            routing = Routing(**routing)
            routing["require"] = (*routing.get("require", ()), "json_schema")
        if request.reasoning is not None:  # thinking asked: reasoning models only
            routing = Routing(**routing)
            routing["require"] = (*routing.get("require", ()), "reasoning")
        ctx = self.context(request.messages, request.max_tokens, routing, stream=stream)
        refused = refusals(request, self.config.settings.providers, stream=stream)
        if refused:  # fields a vendor cannot carry: its pairs are left out, by name
            ctx = replace(ctx, refused=refused)
        decision = self.decide(ctx)
        self.recent.append(Routed.new(time.time(), decision, stream, virtual_key))
        if self.events.wants("routing_decision"):
            self.events.emit(RoutingDecision(decision, stream))
        return decision

    async def embed(
        self,
        request: EmbeddingRequest,
        *,
        provider: str | None = None,
        virtual_key: str | None = None,
    ) -> ExecutedEmbedding:
        """Embed ``request.inputs`` with ``request.model`` on ``provider``, else on the
        providers that serve that model (:meth:`embedding_targets`), in config order, with
        the retries, fallback, breakers and budgets of a completion."""
        self.events.bind(asyncio.get_running_loop())
        where = self.embedding_targets(request.model, provider)
        if not where:
            raise NoCandidateError(detail=f"no enabled provider serves {request.model!r}")
        with self.budget_hints.noting():
            return await self.executor.embed(where, request, virtual_key=virtual_key)

    def embedding_targets(self, model: str, provider: str | None = None) -> list[Target]:
        """Where ``model`` can embed: ``provider`` if given, else each enabled provider that
        lists it in ``models`` (or, listing none, whose type the catalog says embeds with it)."""
        if provider is not None:
            self.client(provider)  # its config or key problem: its own clear error
        return targets.embedding_targets(self.config, self.catalog, model, provider)

    async def health(self, *, timeout_s: float = 10.0) -> list[HealthStatus]:
        """Probe every enabled provider at once; routing then avoids the ones that failed."""
        return await self.health_monitor.check_all(timeout_s=timeout_s)

    # -- fusion --------------------------------------------------------------

    _fusion_tally: FusionTally | None = None
    """This client's fusion metrics (created by its first fusion)."""

    async def fuse(
        self,
        prompt: Prompt,
        *,
        method: FusionMethod | None = None,
        providers: Sequence[str] | None = None,
        min_agreement: float | None = None,
        max_tokens: int | None = None,
        system: str | None = None,
        early_stop: bool = False,
        max_cost_usd: float | None = None,
        member_timeout_s: float | None = None,
    ) -> FusionResult:
        """Ask a panel of providers at once and fuse their answers (see :mod:`polyroute.fusion`).

        The panel: ``providers`` (ids, each with its default model, or ``"id/model"``), else
        the top ``[fusion] max_providers`` distinct providers of a routing decision.
        ``method`` and ``min_agreement`` default to ``[fusion]``'s. Each member has its own
        timeout, ``member_timeout_s`` (default ``[router] timeout_s``); a failed member is
        listed with its error, and fewer than two answers raise
        :class:`~polyroute.errors.NotEnoughAnswersError`. ``early_stop``: once
        ``min_agreement`` of the panel agree, cancel the members still running.
        ``max_cost_usd``: refuse before any call if the worst case is over it
        (:class:`~polyroute.errors.FusionCostCapError`). Every call is metered: reserved
        against the budgets and written to the ledger.
        """
        self.events.bind(asyncio.get_running_loop())
        messages = to_messages(prompt, system)
        hooks = self.hooks
        if hooks is not None:  # once, before any member's request leaves
            from polyroute.hooks import HookContext

            hook_ctx = HookContext("fusion")
            hooked = await hooks.request(_request(messages, None, max_tokens, None), hook_ctx)
            messages = list(hooked.messages)
        if providers is not None:
            members = named_panel(self.config, self.catalog, providers)
        else:
            size = self.config.settings.fusion.max_providers
            ctx = self.context(messages, max_tokens, Routing())
            members = routed_panel(self.decide, ctx, self.config.enabled(), size)
        make = Fuser if self.telemetry is None else self.telemetry.fuser
        fuser = make(
            self.config,
            self.catalog,
            self.client,
            self.meter,
            breakers=self.breakers,
            stats=self.stats,
        )
        try:
            result = await fuser.fuse(
                messages,
                members,
                method=method,
                min_agreement=min_agreement,
                max_tokens=max_tokens,
                early_stop=early_stop,
                max_cost_usd=max_cost_usd,
                timeout_s=member_timeout_s,
            )
        finally:
            self.budget_hints.note(fuser.refusals)
        if self._fusion_tally is None:
            self._fusion_tally = FusionTally()
        self._fusion_tally.add(result)
        if hooks is not None:  # the fused answer, as a completion's: members' stay as given
            answer = ChatResponse(result.result, f"fusion:{result.method}", "stop", Usage())
            answer = await hooks.response(answer, hook_ctx)
            result = replace(result, result=answer.content)
        return result

    def fusion_metrics(self) -> FusionMetrics:
        """This client's fusions so far: count, average agreement and cost, agreement bands."""
        return FusionMetrics() if self._fusion_tally is None else self._fusion_tally.snapshot()

    # -- accounting ----------------------------------------------------------

    async def usage(
        self, *, by: GroupBy = "provider", provider: str | None = None, since: float | None = None
    ) -> UsageReport:
        """Ledger totals grouped ``by`` day, month, provider or model; ``since`` is Unix time.
        With ``[router] carbon_baseline``, the report says what routing saved against it."""
        from polyroute.carbon import baseline_of, with_savings

        baseline = baseline_of(self.config, self.catalog)  # a bad one fails before the query
        report = await self.ledger.usage(by=by, provider=provider, since=since)
        return with_savings(report, baseline)

    async def budgets(self) -> list[BudgetStatus]:
        """Every budget with what is spent and held now (configured providers included)."""
        return await self.ledger.budgets(provider_scope(p) for p in self.config.settings.providers)

    def start_health_monitor(self) -> None:
        """Probe every provider now and every ``[health] interval_s`` (long-lived processes)."""
        self.health_monitor.start()

    async def aclose(self) -> None:
        """Close connections and write the ledger's pending records."""
        await self.health_monitor.stop()
        try:
            await self.limits.aclose()
            if self._ledger is not None:
                if self._own_ledger:
                    await self._ledger.aclose()
                elif not self._ledger.closed:  # its owner may have closed it first
                    await self._ledger.flush()
        finally:
            if self.alerts is not None:  # after the ledger's last events: posted within a grace
                await self.alerts.aclose()
            await self.shared.aclose()
            await self.pool.aclose()
            if self._own_telemetry and self.telemetry is not None:
                await asyncio.to_thread(self.telemetry.shutdown)  # exports what is pending

    async def __aenter__(self) -> Polyroute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _health(s: HealthStatus) -> HealthState:
    return "healthy" if s.ok else "unhealthy"


def _either(*checks: Callable[[], Mapping[str, str]]) -> Callable[[], Mapping[str, str]]:
    """One router check blocking what any of ``checks`` blocks (the first reason wins)."""

    def check() -> Mapping[str, str]:
        out: dict[str, str] = {}
        for c in checks:
            blocked = c()
            if blocked:
                for pid, why in blocked.items():
                    out.setdefault(pid, why)
        return out

    return check
