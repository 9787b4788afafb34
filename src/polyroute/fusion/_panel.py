"""The panel: who is asked, and asking them all at once.

Members are (provider, model) pairs, each from a different provider when
routing picks them. Every member's call goes through the :class:`Meter` (its
worst case reserved against the budgets, one ledger record whatever happens)
with its own timeout, and reports to the provider's circuit breaker. Members
are not retried and do not fall back: a panel tolerates failures, and a retry
would not fit in the member's timeout anyway.

Timeouts: ``timeout_s`` is the member call's HTTP timeout, so a member that
does not answer in time fails with an ``APITimeoutError`` (recorded as such in
the ledger). A wall-clock guard :data:`GUARD_GRACE_S` later cancels a call
that still has not ended (a vendor trickling bytes); the ledger then records
it as ``cancelled``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from polyroute.errors import (
    APITimeoutError,
    BudgetExceeded,
    NoCandidateError,
    NotEnoughAnswersError,
    ProviderError,
)
from polyroute.router.attempt import Call, Failed, admit
from polyroute.router.targets import resolve_target
from polyroute.types import ChatRequest, ChatResponse, Target

if TYPE_CHECKING:
    from polyroute.catalog import Catalog
    from polyroute.config import Config
    from polyroute.ledger import Meter, Metered
    from polyroute.providers import ProviderClient
    from polyroute.router.breaker import Breakers
    from polyroute.router.context import RoutingContext
    from polyroute.router.decision import Decision
    from polyroute.router.stats import LatencyStats

GUARD_GRACE_S = 1.0
"""How long after the HTTP timeout the wall-clock guard cancels a member's call."""

CANCELLED_EARLY = "cancelled: enough members agreed (early stop)"

OutcomeKind = Literal["ok", "failed", "refused", "cancelled"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one metered call ended."""

    target: Target
    kind: OutcomeKind
    response: ChatResponse | None = None
    cost_usd: float | None = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    exc: ProviderError | BudgetExceeded | None = None


def named_panel(config: Config, catalog: Catalog, names: Sequence[str]) -> list[Target]:
    """Members from ``"provider-id"`` (its default model) or ``"provider-id/model"`` names."""
    out: list[Target] = []
    for name in names:
        target = resolve_target(config, catalog, name, "providers")
        if target in out:
            raise ValueError(f"fusion panel: {target.provider}/{target.model} is listed twice")
        out.append(target)
    return out


def routed_panel(
    decide: Callable[[RoutingContext], Decision],
    ctx: RoutingContext,
    enabled: Iterable[str],
    size: int,
) -> list[Target]:
    """The top ``size`` distinct providers by routing, each with its best model.

    Reads the decision's winner and fallbacks; if they name too few providers
    (``max_attempts`` bounds the fallbacks), decides again among the providers
    not yet chosen. A first decision with no candidate raises its
    :class:`NoCandidateError` (its exclusions say why); a single eligible
    provider, :class:`NotEnoughAnswersError` (a panel of one cannot agree).
    """
    chosen: dict[str, Target] = {}
    enabled = list(enabled)
    while len(chosen) < size:
        rest = frozenset(p for p in enabled if p not in chosen)
        if not rest:
            break
        try:
            decision = decide(ctx if not chosen else replace(ctx, providers=rest))
        except NoCandidateError:
            if not chosen:
                raise
            break
        for target in decision.targets:
            if target.provider not in chosen:
                chosen[target.provider] = target
                if len(chosen) == size:
                    break
    if len(chosen) < 2:
        only = ", ".join(f"{t.provider}/{t.model}" for t in chosen.values())
        raise NotEnoughAnswersError(
            f"fusion needs at least 2 panel members; routing found one eligible provider: {only}"
        )
    return list(chosen.values())


class Caller:
    """Makes one metered call for a target, with the panel's timeout, breaker and stats."""

    __slots__ = ("breakers", "clients", "meter", "stats", "timeout_s")

    def __init__(
        self,
        meter: Meter,
        clients: Mapping[str, ProviderClient],
        breakers: Breakers | None,
        stats: LatencyStats | None,
        timeout_s: float,
    ) -> None:
        self.meter = meter
        self.clients = clients
        self.breakers = breakers
        self.stats = stats
        self.timeout_s = timeout_s

    async def call(self, target: Target, request: ChatRequest) -> Outcome:
        """The call's outcome; raises only if cancelled (or on a bug)."""
        breaker = self.breakers.get(target.provider) if self.breakers is not None else None
        call = admit(target, breaker)
        if not isinstance(call, Call):
            return Outcome(target, "failed", error=call.error)
        sent = self.meter.complete(self.clients[target.provider], request, timeout_s=self.timeout_s)
        result = await call.settle(_guarded(sent, self.timeout_s, target.provider))
        if isinstance(result, Failed):
            kind: OutcomeKind = "refused" if isinstance(result.error, BudgetExceeded) else "failed"
            a = result.attempt
            return Outcome(target, kind, latency_ms=a.latency_ms, error=a.error, exc=result.error)
        done = result.done
        if self.stats is not None:
            self.stats.record(target.provider, target.model, done.latency_ms)
        return Outcome(target, "ok", done.response, done.cost_usd, done.latency_ms)


async def _guarded(sent: Awaitable[Metered], timeout_s: float, provider: str) -> Metered:
    """``sent``, cancelled :data:`GUARD_GRACE_S` after its HTTP timeout if it has not ended
    (the meter then records the call as cancelled): a provider failure, a timeout."""
    try:
        async with asyncio.timeout(timeout_s + GUARD_GRACE_S):
            return await sent
    except TimeoutError:
        raise APITimeoutError(f"no answer within {timeout_s:g}s", provider=provider) from None


async def ask_panel(
    caller: Caller,
    members: Sequence[Target],
    request: ChatRequest,
    stop: Callable[[Sequence[Outcome | None]], bool] | None = None,
) -> tuple[list[Outcome], bool]:
    """Call every member at once; return their outcomes in panel order, and whether the
    panel stopped early (``stop`` said enough had answered; the rest were cancelled)."""
    tasks = {
        asyncio.create_task(caller.call(m, replace(request, model=m.model))): i
        for i, m in enumerate(members)
    }
    outcomes: list[Outcome | None] = [None] * len(members)
    pending: set[asyncio.Task[Outcome]] = set(tasks)
    stopped = ended = False
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcomes[tasks[task]] = task.result()  # a bug in a call propagates
            if pending and stop is not None and stop(outcomes):
                stopped = True
                break
        ended = True
    finally:
        if not ended:  # the fusion itself was cancelled, or a call raised: stop the rest
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    # early stop: cancel the rest (the meter records each as cancelled); one that ended
    # meanwhile keeps its real outcome
    rest = list(pending)
    for task in rest:
        task.cancel()
    results = await asyncio.gather(*rest, return_exceptions=True)
    for task, result in zip(rest, results, strict=True):
        i = tasks[task]
        if isinstance(result, Outcome):
            outcomes[i] = result
        elif isinstance(result, asyncio.CancelledError):
            outcomes[i] = Outcome(members[i], "cancelled", error=CANCELLED_EARLY)
        else:
            raise result
    return [o for o in outcomes if o is not None], stopped
