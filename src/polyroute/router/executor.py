"""Carrying out a routing decision: retries, fallback, circuit breakers.

For each target of the decision (winner first, then the fallbacks), at most
``max_attempts`` distinct targets are called (targets skipped by an open
breaker do not count):

- a target whose breaker refuses is skipped (an attempt ``breaker_open``);
- a transient error is retried on the same target per :class:`RetryPolicy`,
  waiting :func:`backoff_delay` (at least the vendor's ``retry_after``; a
  longer ``retry_after`` than the policy allows means fall back now);
- any other provider error falls back at once;
- a budget refusal falls back too (another provider may have budget left);
  if every call was refused by a budget, the first refusal is raised;
- when nothing served, :class:`AllProvidersFailedError` lists every attempt.

A target whose client cannot be built (no key, locked vault) raises its
``ConfigError``/``CredentialError`` at once: routing should have excluded it.
Timeouts are the clients' own (``timeout_s`` per provider, else the router's).

Every call goes through the :class:`Meter`, so each attempt, failed or not,
is reserved against the budgets and written to the ledger (budget refusals
are refused before any call, so they have no ledger row).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar, TypeVar

from polyroute._frozen import fast_init
from polyroute.errors import (
    AllProvidersFailedError,
    BudgetExceeded,
    ProviderError,
    StreamInterruptedError,
)
from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from polyroute.hub import EventHub, Fallback
from polyroute.ledger import Meter
from polyroute.router.attempt import Call, Refusal, Served, Timed, admit
from polyroute.router.breaker import Breakers
from polyroute.router.decision import Decision
from polyroute.router.retry import RetryPolicy
from polyroute.types import (
    Attempt,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Target,
)

if TYPE_CHECKING:
    from polyroute.providers import ProviderClient
    from polyroute.router.stats import LatencyStats


_Done = TypeVar("_Done", bound=Timed)
_Request = TypeVar("_Request", ChatRequest, EmbeddingRequest)


@fast_init
@dataclass(frozen=True, slots=True)
class Executed:
    """A served completion: the reply, what it cost, who answered and every attempt made."""

    new: ClassVar[type[Executed]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    response: ChatResponse
    cost_usd: float | None
    latency_ms: float
    """The serving attempt's latency."""
    target: Target
    attempts: list[Attempt]
    refusals: list[BudgetExceeded] = field(default_factory=list)
    """Budgets that refused targets on the way (the facade keeps those out for a while)."""


@dataclass(frozen=True, slots=True)
class ExecutedEmbedding:
    """A served embeddings call: the vectors, what they cost and who computed them."""

    response: EmbeddingResponse
    cost_usd: float | None
    latency_ms: float
    target: Target


def _is_content(event: StreamEvent) -> bool:
    return (isinstance(event, TextDelta) and bool(event.text)) or isinstance(
        event, ToolCallDelta | ThinkingDelta
    )


def _for_model(request: _Request, model: str) -> _Request:
    """``request`` for ``model``; itself when it names it already (``replace`` rebuilds all
    of its fields: 8 µs)."""
    return request if request.model == model else replace(request, model=model)


@dataclass(slots=True)
class _Run:
    """What one execution has tried so far (each attempt reported by its :class:`Call`)."""

    attempts: list[Attempt] = field(default_factory=list)
    budget_refusals: list[BudgetExceeded] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)
    calls: int = 0
    """Calls that reached a provider (not refused by a budget)."""
    started: float = field(default_factory=time.monotonic)
    """When the request began: retries never wait past its timeout."""

    def note(self, attempt: Attempt, error: Refusal | None) -> None:
        """An attempt ended (a :data:`~polyroute.router.attempt.Report`)."""
        self.attempts.append(attempt)
        if isinstance(error, BudgetExceeded):
            self.budget_refusals.append(error)
        elif error is not None:
            self.calls += 1
            self.errors.append(error)
        elif attempt.ok:
            self.calls += 1

    def no_wait(self, why: str) -> None:
        """The last failed attempt was not retried because of the wait it asked for."""
        last = self.attempts[-1]
        self.attempts[-1] = replace(last, error=f"{last.error}; {why}, not retried")

    def outcome(self) -> BudgetExceeded | AllProvidersFailedError:
        """The error to raise when nothing served."""
        if self.budget_refusals and not self.calls:
            return self.budget_refusals[0]
        error = AllProvidersFailedError(self.attempts, self.errors, self.budget_refusals)
        error.__cause__ = error.last
        return error


class Executor:
    """Runs decisions against providers, metered, with retries, fallback and breakers."""

    __slots__ = (
        "_client",
        "breakers",
        "events",
        "max_attempts",
        "meter",
        "policy",
        "rng",
        "sleep",
        "stats",
    )

    def __init__(
        self,
        client: Callable[[str], ProviderClient],
        meter: Meter,
        breakers: Breakers,
        stats: LatencyStats | None,
        policy: RetryPolicy,
        *,
        max_attempts: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        events: EventHub | None = None,
    ) -> None:
        """``events``: where ``fallback`` events go (when someone listens)."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
        self._client = client
        self.meter = meter
        self.breakers = breakers
        self.stats = stats
        self.policy = policy
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.events = events

    def _fell_back(self, failed: tuple[Target, Exception] | None, to: Target) -> None:
        """A ``fallback`` event if ``failed`` (the last target and its error) is set."""
        if failed is not None and self.events is not None and self.events.wants("fallback"):
            self.events.emit(Fallback.of(failed[0], to, failed[1]))

    async def complete(
        self, decision: Decision, request: ChatRequest, *, virtual_key: str | None = None
    ) -> Executed:
        """Serve ``request`` from the first target that can; raise if none can.

        ``virtual_key``: the gateway key the calls are billed to (its budgets apply too).
        """
        run = _Run()
        target, done = await self._first_served(
            decision,
            run,
            lambda t, client: self.meter.complete(
                client, _for_model(request, t.model), virtual_key=virtual_key
            ),
        )
        if self.stats is not None:
            self.stats.record(target.provider, target.model, done.latency_ms)
        return Executed.new(
            done.response, done.cost_usd, done.latency_ms, target, run.attempts, run.budget_refusals
        )

    def stream(
        self, decision: Decision, request: ChatRequest, *, virtual_key: str | None = None
    ) -> ExecutedStream:
        """Stream ``request`` from the first target that can, falling back until content flows."""
        return ExecutedStream(self, decision, request, virtual_key)

    async def embed(
        self,
        targets: Sequence[Target],
        request: EmbeddingRequest,
        *,
        virtual_key: str | None = None,
    ) -> ExecutedEmbedding:
        """Embed ``request`` with the first of ``targets`` that can: the same retries,
        fallback and breakers as a completion."""
        run = _Run()
        decision = Decision("embeddings", targets[0].provider, targets[0].model, "", None)
        decision = replace(decision, fallbacks=tuple(targets[1:]))
        target, done = await self._first_served(
            decision,
            run,
            lambda t, client: self.meter.embed(
                client, _for_model(request, t.model), virtual_key=virtual_key
            ),
        )
        return ExecutedEmbedding(done.response, done.cost_usd, done.latency_ms, target)

    async def _first_served(
        self,
        decision: Decision,
        run: _Run,
        call: Callable[[Target, ProviderClient], Awaitable[_Done]],
    ) -> tuple[Target, _Done]:
        """``call`` on the decision's targets in turn, each retried while its errors allow,
        until one serves; raise what the run came to if none does."""
        failed: tuple[Target, Exception] | None = None
        for admitted, client in self._admitted(decision, run):
            self._fell_back(failed, admitted.target)
            attempt: Call | None = admitted
            retry = 0
            while attempt is not None:
                result = await attempt.settle(call(attempt.target, client))
                if isinstance(result, Served):
                    return attempt.target, result.done
                failed = (attempt.target, result.error)
                if isinstance(result.error, BudgetExceeded):
                    break
                attempt = await self._retry(retry, result.error, attempt, run)
                retry += 1
        raise run.outcome()

    def _admitted(self, decision: Decision, run: _Run) -> Iterator[tuple[Call, ProviderClient]]:
        """The calls to make, in order, each admitted by its breaker when it comes up."""
        tried = 0
        for target in dict.fromkeys(decision.targets):
            if tried >= self.max_attempts:
                return
            client = self._client(target.provider)
            call = admit(target, self.breakers.get(target.provider), run.note)
            if isinstance(call, Call):
                tried += 1
                yield call, client

    async def _retry(self, retry: int, exc: ProviderError, failed: Call, run: _Run) -> Call | None:
        """After a failed call: wait and return the target's next call, or None to fall back."""
        target = failed.target
        breaker = self.breakers.get(target.provider)
        timeout = self._client(target.provider).provider.timeout_s
        left = timeout - (time.monotonic() - run.started)
        delay = self.policy.delay(retry, exc, self.rng, left)
        if delay is None or breaker.state == "open":
            if retry < self.policy.retries_per_provider:
                why = self.policy.no_wait_reason(exc, left)
                if why is not None:
                    run.no_wait(why)
            return None
        await self.sleep(delay)
        # opened (or its probe taken) by other requests meanwhile: skipped
        again = admit(target, breaker, run.note)
        return again if isinstance(again, Call) else None


class ExecutedStream:
    """An async iterator of stream events from whichever target serves.

    Falls back transparently until the first content token has been
    delivered (the ``StreamStart`` is held back until then, so exactly one
    reaches the consumer); after that, a failure raises. Once the iteration
    has ended, ``attempts``, ``target``, ``cost_usd`` and ``latency_ms`` say
    what happened (``target``: the target whose events the consumer got).
    """

    __slots__ = (
        "_delivered",
        "_gen",
        "attempts",
        "cost_usd",
        "decision",
        "executor",
        "latency_ms",
        "refusals",
        "request",
        "target",
        "ttft_ms",
        "virtual_key",
    )

    def __init__(
        self,
        executor: Executor,
        decision: Decision,
        request: ChatRequest,
        virtual_key: str | None = None,
    ) -> None:
        self.executor = executor
        self.decision = decision
        self.request = request
        self.virtual_key = virtual_key
        self.attempts: list[Attempt] = []
        self.refusals: list[BudgetExceeded] = []
        self.target: Target | None = None
        self.cost_usd: float | None = None
        self.latency_ms: float | None = None
        self.ttft_ms: float | None = None
        self._delivered = False
        self._gen: AsyncGenerator[StreamEvent, None] | None = None

    def __aiter__(self) -> AsyncGenerator[StreamEvent, None]:
        # the generator itself, not a wrapper: one resumption less per event
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def __anext__(self) -> StreamEvent:
        return await anext(self.__aiter__())

    async def aclose(self) -> None:
        """Stop early: the provider's stream is closed and its attempt recorded."""
        if self._gen is not None:
            await self._gen.aclose()

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        ex = self.executor
        run = _Run(attempts=self.attempts, budget_refusals=self.refusals)
        failed: tuple[Target, Exception] | None = None
        for admitted, client in ex._admitted(self.decision, run):
            ex._fell_back(failed, admitted.target)
            attempt: Call | None = admitted
            retry = 0
            while attempt is not None:
                # one metered stream, inline (not a generator of its own: one resumption less
                # per event); it raises its error, with the attempt ended, if it fails
                target = attempt.target
                held: StreamStart | None = None
                call = _for_model(self.request, target.model)
                events = ex.meter.stream(client, call, virtual_key=self.virtual_key)
                try:
                    # an error leaving it fails the attempt; else, unended, abandons it
                    with attempt:
                        try:
                            async for event in events:
                                if not self._delivered:
                                    if isinstance(event, StreamStart):
                                        held = event
                                        continue
                                    if not self._passes(event, attempt):
                                        continue  # nothing to show yet: keep the fallback open
                                    if held is not None:
                                        yield held
                                        held = None
                                if isinstance(event, StreamEnd):
                                    # booked before the consumer sees the end: it may stop there
                                    latency = attempt.elapsed_ms()
                                    self._served(target, client.provider.type, event, latency)
                                    attempt.served(latency)
                                yield event
                            if not attempt.ended:
                                raise StreamInterruptedError(
                                    "stream ended without its end event: the answer is truncated",
                                    provider=target.provider,
                                )
                        except ProviderError:
                            if not attempt.ended:
                                raise
                            # after its end event: the answer is whole
                        finally:
                            await events.aclose()  # the meter records an abandoned stream now
                    return
                except BudgetExceeded as exc:
                    failed = (attempt.target, exc)
                    break
                except ProviderError as exc:
                    if self._delivered:  # content is out: never a clean end of a truncated answer
                        raise
                    failed = (attempt.target, exc)
                    attempt = await ex._retry(retry, exc, attempt, run)
                    retry += 1
        raise run.outcome()

    def _passes(self, event: StreamEvent, attempt: Call) -> bool:
        """Whether ``event``, before any content was delivered, goes to the consumer (an
        empty text delta does not); notes the target and the first content's time."""
        if isinstance(event, TextDelta) and not event.text:
            return False
        self._delivered = _is_content(event)
        if self._delivered:
            self.ttft_ms = attempt.elapsed_ms()
        self.target = attempt.target
        return True

    def _served(
        self, target: Target, provider_type: str, end: StreamEnd, latency_ms: float
    ) -> None:
        ex = self.executor
        self.target = target
        self.latency_ms = latency_ms
        self.cost_usd = ex.meter.cost(provider_type, target.model, end.usage)
        if ex.stats is not None:
            ex.stats.record(target.provider, target.model, latency_ms, ttft_ms=self.ttft_ms)
