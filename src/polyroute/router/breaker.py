"""Circuit breakers: stop sending traffic to a provider that keeps failing.

::

    closed --N consecutive failures--> open --reset_timeout_s--> half_open
    half_open --probe succeeds--> closed
    half_open --probe fails-----> open (timer restarted)

Half-open admits exactly ``half_open_requests`` probes; everything else is
turned away until one of them reports.

What counts as a failure (:func:`counts_against_provider`): only errors that
say the *provider* is unwell, so that they will likely hit the next request
too — transient errors (429, 408, 409, 5xx, 529, garbled bodies, cut streams),
timeouts and connection failures, and 401/403 and an exhausted quota (a revoked
key or an empty account keeps failing). A request's own fault (400, 404 model
not found, context too long, content filter, unsupported feature) and a budget
refusal say nothing about the provider: they neither count nor reset the run
of failures (:meth:`CircuitBreaker.release`).

Each change of state starts a new epoch; :meth:`CircuitBreaker.admit` returns
the epoch as the call's ticket, and a report carrying a ticket from an earlier
epoch is stale news: it changes nothing, so a call admitted before the breaker
opened can neither free nor settle a half-open probe's slot.

Replicas (``[storage] redis_url``) share breakers through a :class:`BreakerLink`
(``polyroute.shared``): each counted report goes to it as well, the half-open
probe needs its leave (one probe for the whole cluster), and other replicas'
news arrives through :meth:`CircuitBreaker.adopt`.

Each change of state is told to ``on_change(breaker, previous, remote)`` (the
``breaker_changed`` event); the move from open to half-open is told when it is
seen, at the first look at the breaker after its timer ran out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

from polyroute.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
)

if TYPE_CHECKING:
    from polyroute.config import CircuitBreakerConfig

BreakerState = Literal["closed", "open", "half_open"]
OnChange = Callable[["CircuitBreaker", BreakerState, bool], None]
"""``(breaker, previous state, remote)``: ``remote`` when another replica's news changed it."""


class BreakerLink(Protocol):
    """Where a breaker's reports also go (the other replicas); called on the event loop,
    it must not block."""

    def failed(self, breaker: CircuitBreaker) -> None:
        """A counted failure (its count already updated)."""

    def succeeded(self, breaker: CircuitBreaker) -> None:
        """A success that ends a run of failures or closes the breaker (before it does)."""

    def may_probe(self, breaker: CircuitBreaker) -> bool:
        """Whether this replica may send the half-open probe now."""


def counts_against_provider(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the provider (True) or of this request (False)."""
    if isinstance(exc, AuthenticationError | PermissionDeniedError | QuotaExceededError):
        return True
    return isinstance(exc, ProviderError) and exc.retryable


class CircuitBreaker:
    """One provider's breaker. Not thread-safe: use it from one event loop."""

    __slots__ = (
        "_epoch",
        "_failures",
        "_opened_at",
        "_probes",
        "_state",
        "clock",
        "failure_threshold",
        "half_open_requests",
        "link",
        "on_change",
        "on_open",
        "provider",
        "reset_timeout_s",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 60.0,
        half_open_requests: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[], None] | None = None,
        *,
        provider: str = "",
        link: BreakerLink | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        """``on_open``: called each time the breaker opens (:class:`Breakers` tracks which are);
        ``link``: the other replicas, for ``provider``'s breaker; ``on_change``: told each
        change of state."""
        if failure_threshold < 1 or half_open_requests < 1 or reset_timeout_s <= 0:
            raise ValueError(
                "failure_threshold and half_open_requests must be >= 1, reset_timeout_s > 0"
            )
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_requests = half_open_requests
        self.clock = clock
        self.on_open = on_open
        self.provider = provider
        self.link = link
        self.on_change = on_change
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at: float | None = None
        self._probes = 0  # half-open: probes admitted and not yet reported
        self._epoch = 0  # one more at each change of state

    @property
    def state(self) -> BreakerState:
        if (
            self._state == "open"
            and self._opened_at is not None
            and self.clock() - self._opened_at >= self.reset_timeout_s
        ):
            self._state = "half_open"
            self._probes = 0
            self._epoch += 1
            if self.on_change is not None:
                self.on_change(self, "open", False)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def epoch(self) -> int:
        """Counts changes of state (read :attr:`state` first: it may start one)."""
        return self._epoch

    @property
    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a probe through; 0 when not open."""
        if self.state != "open" or self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout_s - self.clock())

    def allow(self) -> bool:
        """Whether a call may go out now. A half-open admit is a probe in flight:
        report it with :meth:`success`, :meth:`failure` or :meth:`release`."""
        return self.admit() is not None

    def admit(self) -> int | None:
        """Like :meth:`allow`, but the admitted call's ticket (``None``: refused): pass it
        with the call's report so that a report outliving its epoch is ignored."""
        state = self.state
        if state == "closed":
            return self._epoch
        if (
            state == "half_open"
            and self._probes < self.half_open_requests
            and (self.link is None or self.link.may_probe(self))
        ):
            self._probes += 1
            return self._epoch
        return None

    def success(self, ticket: int | None = None) -> None:
        """The provider served a call (``ticket``: from :meth:`admit`)."""
        state = self.state
        # open: a call admitted before the breaker opened, stale news
        if state == "open" or self._stale(ticket):
            return
        if self.link is not None and (state != "closed" or self._failures):
            self.link.succeeded(self)
        self._state = "closed"
        self._failures = 0
        self._opened_at = None
        self._probes = 0
        if state != "closed":
            self._epoch += 1
            if self.on_change is not None:
                self.on_change(self, state, False)

    def failure(self, ticket: int | None = None) -> None:
        """The provider failed a call (see :func:`counts_against_provider`)."""
        state = self.state
        if state == "open" or self._stale(ticket):  # stale: keep the timer
            return
        self._failures += 1
        if state == "half_open" or self._failures >= self.failure_threshold:
            self._open(state)
        if self.link is not None:
            self.link.failed(self)

    def release(self, ticket: int | None = None) -> None:
        """An admitted call ended saying nothing about the provider (a request's own fault,
        a budget refusal, cancellation): give back its probe slot, change nothing else."""
        if self.state == "half_open" and self._probes > 0 and not self._stale(ticket):
            self._probes -= 1

    def record(self, exc: BaseException | None, ticket: int | None = None) -> None:
        """Report an admitted call's outcome: ``None`` for success, else its error."""
        if exc is None:
            self.success(ticket)
        elif counts_against_provider(exc):
            self.failure(ticket)
        else:
            self.release(ticket)

    def adopt(self, state: Literal["open", "closed"], failures: int, retry_in_s: float) -> None:
        """Another replica's news: the cluster's ``state``, its run of ``failures`` and, open,
        the seconds until it lets a probe through. Not reported back to the link."""
        if state == "open":
            previous = self._state
            self._state = "open"
            self._opened_at = self.clock() - max(0.0, self.reset_timeout_s - retry_in_s)
            self._failures = failures
            self._probes = 0
            self._epoch += 1
            if self.on_open is not None:
                self.on_open()
            if previous != "open" and self.on_change is not None:
                self.on_change(self, previous, True)
            return
        previous = self.state
        self._failures = failures
        if previous != "closed":
            self._epoch += 1
            self._state = "closed"
            self._opened_at = None
            self._probes = 0
            if self.on_change is not None:
                self.on_change(self, previous, True)

    def _stale(self, ticket: int | None) -> bool:
        """Whether a report's call was admitted in an earlier epoch (``state`` read first)."""
        return ticket is not None and ticket != self._epoch

    def _open(self, previous: BreakerState) -> None:
        self._state = "open"
        self._opened_at = self.clock()
        self._probes = 0
        self._epoch += 1
        if self.on_open is not None:
            self.on_open()
        if self.on_change is not None:
            self.on_change(self, previous, False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "opened_at": self._opened_at,
            "retry_in_s": round(self.retry_in_s, 3),
        }

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, consecutive_failures={self._failures})"


class Breakers:
    """One :class:`CircuitBreaker` per provider id, created on first use."""

    __slots__ = ("_breakers", "_link", "_tripped", "clock", "config", "on_change")

    def __init__(
        self,
        config: CircuitBreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        on_change: OnChange | None = None,
    ) -> None:
        """``on_change``: told each change of state of every breaker."""
        self.config = config
        self.clock = clock
        self.on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}
        self._tripped: dict[str, CircuitBreaker] = {}  # opened and not seen closed since
        self._link: BreakerLink | None = None

    def link(self, link: BreakerLink | None) -> None:
        """Share every breaker, made or to be made, through ``link`` (``None``: stop)."""
        self._link = link
        for b in self._breakers.values():
            b.link = link

    def get(self, provider_id: str) -> CircuitBreaker:
        b = self._breakers.get(provider_id)
        if b is None:
            b = self._breakers[provider_id] = CircuitBreaker(
                self.config.failure_threshold,
                self.config.reset_timeout_s,
                self.config.half_open_requests,
                self.clock,
                provider=provider_id,
                link=self._link,
                on_change=self.on_change,
            )
            b.on_open = partial(self._tripped.__setitem__, provider_id, b)
        return b

    def blocked(self) -> dict[str, str]:
        """Providers whose breaker is open now, with when it lets a probe through (a
        router check: only breakers that opened are looked at)."""
        if not self._tripped:
            return {}
        out = {}
        for pid, b in list(self._tripped.items()):
            state = b.state
            if state == "open":
                out[pid] = f"breaker open, retry in {b.retry_in_s:.0f}s"
            elif state == "closed":
                del self._tripped[pid]
        return out

    def made(self) -> list[CircuitBreaker]:
        """The breakers created so far."""
        return list(self._breakers.values())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every breaker created so far, by provider id (``providers``, ``/router/state``)."""
        return {pid: b.as_dict() for pid, b in sorted(self._breakers.items())}
