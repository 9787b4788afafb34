"""Typed events about requests, usage and budgets, and the hub that delivers them.

::

    pr = Polyroute(config)
    unsubscribe = pr.events.subscribe(print, "budget_alert", "budget_exceeded")

Events are frozen dataclasses told apart by ``kind``. Callbacks run on the
event loop that uses the :class:`~polyroute.Polyroute` (events raised on the
ledger's database thread are handed over to it), one at a time, in order.
A callback that raises is logged and the others still run: observers never
break a request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the ledger emits through the hub, so the hub may not import it at run time
    from polyroute.errors import BudgetExceeded
    from polyroute.ledger._records import PeriodKind, UsageRecord

log = logging.getLogger("polyroute.hub")


@dataclass(frozen=True, slots=True)
class RequestSucceeded:
    provider: str
    model: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    request_id: str | None
    kind: Literal["request_succeeded"] = "request_succeeded"


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


HubEvent = (
    RequestSucceeded
    | RequestFailed
    | UsageRecorded
    | BudgetAlert
    | BudgetExceededEvent
    | BudgetChanged
)
EventKind = Literal[
    "request_succeeded",
    "request_failed",
    "usage_recorded",
    "budget_alert",
    "budget_exceeded",
    "budget_changed",
]
Callback = Callable[[HubEvent], object]


class EventHub:
    """Subscribers by kind. Safe to emit from any thread."""

    def __init__(self) -> None:
        self._subs: list[tuple[Callback, frozenset[str]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def subscribe(self, callback: Callback, *kinds: EventKind) -> Callable[[], None]:
        """Call ``callback(event)`` for events of ``kinds`` (all when none); returns unsubscribe."""
        entry = (callback, frozenset(kinds))
        with self._lock:
            self._subs = [*self._subs, entry]

        def unsubscribe() -> None:
            with self._lock:
                self._subs = [s for s in self._subs if s is not entry]

        return unsubscribe

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


def _other_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True
