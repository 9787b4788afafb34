"""One attempt: a target admitted by its breaker, one metered call, its outcome told once.

The executor (completions, embeddings, streams) and the fusion panel all call
providers through this. :func:`admit` asks the target's breaker; a refusal is
an :class:`Attempt` (``breaker_open``) and no call is made. An admitted
:class:`Call` is ended exactly once, and each ending tells the breaker (with
the admission's ticket, so a stale report changes nothing) and gives the
attempt's :class:`Attempt`:

- :meth:`Call.served`: the provider answered (``breaker.success``);
- :meth:`Call.failed`: a :class:`ProviderError` (the breaker counts it only if
  it says the provider is unwell) or a :class:`BudgetExceeded` (refused before
  any call: the breaker's slot is given back);
- :meth:`Call.abandoned`: cancelled, the caller stopped reading, or a failure
  that is not the provider's (the slot is given back).

:meth:`Call.settle` awaits one metered call and ends the attempt by its result;
a stream, whose attempt ends at its end event, uses the ``with`` block (an
error leaving it ends the attempt as failed, anything else unended as
abandoned) and :meth:`Call.served`. The reservation, the call and the ledger
record are the :class:`~polyroute.ledger.Meter`'s: the awaited call is one of
its methods.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from polyroute._frozen import fast_init
from polyroute.errors import BudgetExceeded, ProviderError, error_line
from polyroute.router.breaker import CircuitBreaker
from polyroute.types import Attempt, Target


class Timed(Protocol):
    """What a metered call returns: at least its latency."""

    @property
    def latency_ms(self) -> float: ...


T = TypeVar("T", bound=Timed)

Refusal = ProviderError | BudgetExceeded
"""How a call can fail and still be an attempt (anything else propagates)."""

Report = Callable[[Attempt, Refusal | None], None]
"""Told every attempt as it ends, with the error that ended it if any."""


@fast_init
@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """A call that served: what the meter returned, and the attempt."""

    done: T
    attempt: Attempt


@dataclass(frozen=True, slots=True)
class Failed:
    """A call that failed or was refused by a budget: the error, and the attempt."""

    error: Refusal
    attempt: Attempt


def breaker_refusal(breaker: CircuitBreaker) -> str:
    """Why ``breaker`` turns a call away."""
    if breaker.state == "half_open":
        return "circuit breaker half-open, its probe is in flight"
    return f"circuit breaker open, retry in {math.ceil(breaker.retry_in_s)}s"


def admit(
    target: Target, breaker: CircuitBreaker | None, report: Report | None = None
) -> Call | Attempt:
    """An admitted call to ``target``, or the attempt its breaker refused (also reported)."""
    ticket = breaker.admit() if breaker is not None else 0
    if ticket is None:
        assert breaker is not None
        skipped = Attempt(
            target.provider, target.model, False, 0.0, breaker_refusal(breaker), "breaker_open"
        )
        if report is not None:
            report(skipped, None)
        return skipped
    return Call(target, breaker, ticket, report)


class Call:
    """One admitted call; end it once with :meth:`served`, :meth:`failed` or
    :meth:`abandoned` (a second ending returns the first's attempt, telling no one)."""

    __slots__ = ("_ticket", "attempt", "breaker", "report", "t0", "target")

    def __init__(
        self,
        target: Target,
        breaker: CircuitBreaker | None,
        ticket: int,
        report: Report | None = None,
    ) -> None:
        self.target = target
        self.breaker = breaker
        self.report = report
        self._ticket = ticket
        self.t0 = time.perf_counter()
        self.attempt: Attempt | None = None
        """The attempt, once ended."""

    @property
    def ended(self) -> bool:
        return self.attempt is not None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def served(self, latency_ms: float) -> Attempt:
        if self.attempt is None:
            if self.breaker is not None:
                self.breaker.success(self._ticket)
            self._end(Attempt.new(self.target.provider, self.target.model, True, latency_ms), None)
        return self._ended()

    def failed(self, exc: Refusal) -> Attempt:
        if self.attempt is None:
            if isinstance(exc, BudgetExceeded):
                if self.breaker is not None:
                    self.breaker.release(self._ticket)
                latency, kind = 0.0, "budget_exceeded"
            else:
                if self.breaker is not None:
                    self.breaker.record(exc, self._ticket)
                latency, kind = self.elapsed_ms(), exc.type
            t = self.target
            self._end(Attempt(t.provider, t.model, False, latency, error_line(exc), kind), exc)
        return self._ended()

    def abandoned(self) -> Attempt:
        """Cancelled, the caller stopped reading, or a failure not the provider's: no news
        of the provider's health."""
        if self.attempt is None:
            if self.breaker is not None:
                self.breaker.release(self._ticket)
            t = self.target
            self._end(
                Attempt(t.provider, t.model, False, self.elapsed_ms(), "cancelled", "cancelled"),
                None,
            )
        return self._ended()

    async def settle(self, sent: Awaitable[T]) -> Served[T] | Failed:
        """Await one metered call and end the attempt by its result; anything but a
        provider error or a budget refusal abandons the attempt and propagates."""
        self.t0 = time.perf_counter()
        try:
            with self:
                done = await sent
                attempt = self.served(done.latency_ms)
        except (ProviderError, BudgetExceeded) as exc:
            return Failed(exc, self._ended())
        return Served(done, attempt)

    def __enter__(self) -> Call:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, ProviderError | BudgetExceeded):
            self.failed(exc)
        else:
            self.abandoned()  # nothing if already ended

    def _end(self, attempt: Attempt, error: Refusal | None) -> None:
        self.attempt = attempt
        if self.report is not None:
            self.report(attempt, error)

    def _ended(self) -> Attempt:
        assert self.attempt is not None
        return self.attempt
