"""Typed events about requests, usage, budgets, routing and provider health, and the hub
that delivers them.

::

    pr = Polyroute(config)
    unsubscribe = pr.events.subscribe(print, "budget_alert", "budget_exceeded")

Events are frozen dataclasses told apart by ``kind``. Callbacks run on the
event loop that uses the :class:`~polyroute.Polyroute` (events raised on the
ledger's database thread are handed over to it), one at a time, in order.
A callback that raises is logged and the others still run: observers never
break a request. Emitters on the request path ask :meth:`EventHub.wants` first, so an
event nobody subscribed to is never built.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from polyroute._frozen import fast_init

if TYPE_CHECKING:  # the ledger emits through the hub, so the hub may not import it at run time
    from polyroute.errors import BudgetExceeded
    from polyroute.ledger._records import PeriodKind, UsageRecord
    from polyroute.router.decision import Decision
    from polyroute.types import Target

log = logging.getLogger("polyroute.hub")
events_log = logging.getLogger("polyroute.events")
"""Where a hub logs events, one JSON line each, if it is enabled when the hub is made:
at INFO those about the fleet (fallbacks, breakers, health, budgets), at DEBUG also the
ones every request sends (decisions, outcomes, usage rows)."""


@fast_init
@dataclass(frozen=True, slots=True)
class RequestSucceeded:
    new: ClassVar[type[RequestSucceeded]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    provider: str
    model: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    request_id: str | None
    kind: Literal["request_succeeded"] = "request_succeeded"


@fast_init
@dataclass(frozen=True, slots=True)
class RequestFailed:
    provider: str
    model: str
    latency_ms: float
    error_type: str
    """The error's snake-case class name: ``rate_limit``, ``authentication``..."""
    message: str
    status: int | None
    kind: Literal["request_failed"] = "request_failed"


@fast_init
@dataclass(frozen=True, slots=True)
class UsageRecorded:
    """A ledger row committed (sent after the write, so it is durable when you see it)."""

    record: UsageRecord
    kind: Literal["usage_recorded"] = "usage_recorded"


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """Spend in a period reached ``percent`` of its limit: once per threshold per period."""

    scope: str
    period: PeriodKind
    period_key: str
    percent: float
    spent_usd: float
    limit_usd: float
    kind: Literal["budget_alert"] = "budget_alert"


@fast_init
@dataclass(frozen=True, slots=True)
class BudgetExceededEvent:
    """A request was refused by a budget (the caller got :class:`~polyroute.BudgetExceeded`)."""

    scope: str
    period: PeriodKind
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    requested_usd: float | None
    provider: str
    model: str
    kind: Literal["budget_exceeded"] = "budget_exceeded"

    @classmethod
    def of(cls, exc: BudgetExceeded, provider: str, model: str) -> BudgetExceededEvent:
        period: PeriodKind = "monthly" if exc.period == "monthly" else "daily"
        return cls(
            exc.scope,
            period,
            exc.limit_usd,
            exc.spent_usd,
            exc.reserved_usd,
            exc.requested_usd,
            provider,
            model,
        )


@dataclass(frozen=True, slots=True)
class BudgetChanged:
    """A budget's limit was changed (``budget optimize --apply`` or the gateway's auto-adjust),
    sent once the change is committed; ``None``: no limit."""

    scope: str
    period: PeriodKind
    previous_usd: float | None
    limit_usd: float | None
    reason: str
    kind: Literal["budget_changed"] = "budget_changed"


@fast_init
@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """A request was routed: where it goes first, the fallbacks, what was left out and why
    (sent before any call is made)."""

    decision: Decision
    stream: bool
    kind: Literal["routing_decision"] = "routing_decision"


@fast_init
@dataclass(frozen=True, slots=True)
class Fallback:
    """A request left a pair that failed it (retries spent, or none allowed) for the next."""

    from_provider: str
    from_model: str
    to_provider: str
    to_model: str
    error_type: str
    """The error's type: ``rate_limit``, ``timeout``... or ``budget_exceeded``."""
    message: str
    status: int | None
    kind: Literal["fallback"] = "fallback"

    @classmethod
    def of(cls, source: Target, to: Target, error: Exception) -> Fallback:
        from polyroute.errors import BudgetExceeded, ProviderError

        if isinstance(error, ProviderError):
            error_type, status = error.type, error.status
        else:
            error_type = "budget_exceeded" if isinstance(error, BudgetExceeded) else "error"
            status = None
        return cls(
            source.provider, source.model, to.provider, to.model, error_type, str(error), status
        )


HealthState = Literal["unknown", "healthy", "unhealthy"]


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """A provider's health probe said something else than the one before (a provider never
    probed counts as healthy: its first failing probe is a change, its first passing one
    is not). ``remote``: another replica's probe, learned through ``[storage] redis_url``."""

    provider: str
    previous: HealthState
    state: HealthState
    why: str | None
    """The failing probe's error; ``None`` when healthy."""
    error_type: str | None
    remote: bool = False
    kind: Literal["health_changed"] = "health_changed"


BreakerPosition = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerChanged:
    """A provider's circuit breaker changed state. Open: ``retry_in_s`` until it lets a
    probe through; ``remote``: the change came from another replica."""

    provider: str
    previous: BreakerPosition
    state: BreakerPosition
    consecutive_failures: int
    retry_in_s: float
    remote: bool = False
    kind: Literal["breaker_changed"] = "breaker_changed"


HubEvent = (
    RequestSucceeded
    | RequestFailed
    | UsageRecorded
    | BudgetAlert
    | BudgetExceededEvent
    | BudgetChanged
    | RoutingDecision
    | Fallback
    | HealthChanged
    | BreakerChanged
)
EventKind = Literal[
    "request_succeeded",
    "request_failed",
    "usage_recorded",
    "budget_alert",
    "budget_exceeded",
    "budget_changed",
    "routing_decision",
    "fallback",
    "health_changed",
    "breaker_changed",
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
PER_REQUEST: frozenset[EventKind] = frozenset(
    ("routing_decision", "request_succeeded", "request_failed", "usage_recorded")
)
"""The kinds every request sends (logged at DEBUG; the others at INFO)."""
Callback = Callable[[HubEvent], object]


def event_dict(event: HubEvent) -> dict[str, Any]:
    """``event`` as JSON-ready data, ``kind`` first: its fields (a decision's as in
    ``/router/state``, a usage record's columns)."""
    body: dict[str, Any]
    if isinstance(event, RoutingDecision):
        d = event.decision
        body = {
            "strategy": d.strategy,
            "provider": d.provider,
            "model": d.model,
            "reasoning": d.reasoning,
            "estimated_cost_usd": d.estimated_cost_usd,
            "fallbacks": [t.as_dict() for t in d.fallbacks],
            "excluded": [x.as_dict() for x in d.excluded],
            "stream": event.stream,
        }
    elif isinstance(event, UsageRecorded):
        body = asdict(event.record)
    else:
        body = {f.name: getattr(event, f.name) for f in fields(event) if f.name != "kind"}
    return {"kind": event.kind, **body}


class EventHub:
    """Subscribers by kind. Safe to emit from any thread.

    A hub made while ``polyroute.events`` logs (``--debug``, ``polyroute serve``)
    subscribes that log to the kinds its level lets out (see :data:`events_log`)."""

    def __init__(self) -> None:
        self._subs: list[tuple[Callback, frozenset[str]]] = []
        self._wanted: frozenset[str] = frozenset()  # the kinds someone subscribed to
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        if events_log.isEnabledFor(logging.DEBUG):
            self.subscribe(log_event)
        elif events_log.isEnabledFor(logging.INFO):
            self.subscribe(log_event, *(k for k in EVENT_KINDS if k not in PER_REQUEST))

    def subscribe(self, callback: Callback, *kinds: EventKind) -> Callable[[], None]:
        """Call ``callback(event)`` for events of ``kinds`` (all when none); returns unsubscribe.

        Raises :class:`ValueError` naming a kind that is not an event's."""
        unknown = sorted(set(kinds) - set(EVENT_KINDS))
        if unknown:
            raise ValueError(f"no event kind {', '.join(map(repr, unknown))}")
        entry = (callback, frozenset(kinds))
        with self._lock:
            self._set([*self._subs, entry])

        def unsubscribe() -> None:
            with self._lock:
                self._set([s for s in self._subs if s is not entry])

        return unsubscribe

    def _set(self, subs: list[tuple[Callback, frozenset[str]]]) -> None:
        wanted: set[str] = set()
        for _, kinds in subs:
            wanted.update(kinds or EVENT_KINDS)
        self._subs, self._wanted = subs, frozenset(wanted)

    def wants(self, kind: EventKind) -> bool:
        """Whether anyone listens to ``kind`` now (emitters skip building the event if not)."""
        return kind in self._wanted

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver events emitted on other threads on ``loop``."""
        self._loop = loop

    @property
    def listening(self) -> bool:
        """Whether anyone subscribed (emitters skip building events nobody reads)."""
        return bool(self._subs)

    def emit(self, event: HubEvent) -> None:
        self.emit_many([event])

    def emit_many(self, events: list[HubEvent]) -> None:
        if not self._subs or not events:
            return
        loop = self._loop
        if loop is not None and loop.is_running() and _other_thread(loop):
            try:
                loop.call_soon_threadsafe(self._deliver, events)
                return
            except RuntimeError:  # the loop closed in between: deliver here instead
                pass
        self._deliver(events)

    def _deliver(self, events: list[HubEvent]) -> None:
        subs = self._subs
        for event in events:
            for callback, kinds in subs:
                if kinds and event.kind not in kinds:
                    continue
                try:
                    callback(event)
                except Exception:  # an observer's bug must not fail the request it observes
                    log.exception("event subscriber %r failed on %s", callback, event.kind)


def log_event(event: HubEvent) -> None:
    """Log ``event`` on :data:`events_log` as one JSON line."""
    level = logging.DEBUG if event.kind in PER_REQUEST else logging.INFO
    if events_log.isEnabledFor(level):
        text = json.dumps(event_dict(event), separators=(",", ":"), default=str)
        events_log.log(level, "%s", text)


def _other_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True
