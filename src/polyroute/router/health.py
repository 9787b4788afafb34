"""Provider health: a probe now, or a background monitor every ``[health] interval_s``.

A probe is an authenticated model listing (``ProviderClient.test_connection``):
cheap, and it checks both reachability and the key. The router excludes a
provider whose last probe failed ("unhealthy: ...") until a later probe
passes; a provider never probed is assumed healthy. Probes run concurrently,
each with its own timeout, so one slow vendor does not delay the others.

The loop does not wait a whole interval to look again at a provider in
trouble: one whose probe failed is probed again after 1 s, 2 s, 4 s... up to
``interval_s``; one whose circuit breaker turned half-open gets its probe from
the monitor (taking the breaker's probe slot), so the breaker closes or opens
again even while the router prefers other providers.

Replicas (``[storage] redis_url``) share their marks: a probe whose verdict differs
from the one before goes to :attr:`HealthMonitor.link`, and other replicas' verdicts
arrive through :meth:`HealthMonitor.adopt` (the newer probe wins).

A probe whose verdict differs from the last one (a provider never probed counts as
healthy) is told to ``on_change(status, before, remote)`` (the ``health_changed`` event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from polyroute.errors import ConfigError, CredentialError
from polyroute.providers import ProviderClient
from polyroute.router.breaker import Breakers, CircuitBreaker

log = logging.getLogger("polyroute.health")


@dataclass(frozen=True, slots=True)
class HealthStatus:
    provider: str
    ok: bool
    checked_at: float
    """Unix time of the probe."""
    latency_ms: float
    models: int = 0
    error: str | None = None
    error_type: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HealthStatus:
        """The inverse of :meth:`as_dict` (raises ``KeyError``, ``TypeError``, ``ValueError``)."""
        error, error_type = d.get("error"), d.get("error_type")
        return cls(
            provider=str(d["provider"]),
            ok=bool(d["ok"]),
            checked_at=float(d["checked_at"]),
            latency_ms=float(d["latency_ms"]),
            models=int(d.get("models", 0)),
            error=None if error is None else str(error),
            error_type=None if error_type is None else str(error_type),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "ok": self.ok,
            "checked_at": self.checked_at,
            "latency_ms": round(self.latency_ms, 1),
            "models": self.models,
            "error": self.error,
            "error_type": self.error_type,
        }


class HealthLink(Protocol):
    """Where changed verdicts also go (the other replicas); must not block."""

    def changed(self, status: HealthStatus) -> None: ...


OnHealthChange = Callable[[HealthStatus, "HealthStatus | None", bool], None]
"""``(the new probe, the one before or None, remote)``."""


class HealthMonitor:
    """The latest probe of each provider, and the loop that refreshes them."""

    def __init__(
        self,
        client: Callable[[str], ProviderClient],
        providers: Callable[[], Sequence[str]],
        *,
        interval_s: float = 60.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        breakers: Breakers | None = None,
        first_retry_s: float = 1.0,
        on_change: OnHealthChange | None = None,
    ) -> None:
        """``breakers``: half-open ones get their probe from :meth:`tick`; ``first_retry_s``:
        the first wait before probing a failed provider again (then doubled); ``on_change``:
        told each changed verdict, here or (``remote``) from another replica."""
        self._client = client
        self._providers = providers
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.breakers = breakers
        self.first_retry_s = first_retry_s
        self.on_change = on_change
        self.status: dict[str, HealthStatus] = {}
        """The latest probe of each provider; read only (:meth:`check` writes)."""
        self._unhealthy: dict[str, HealthStatus] = {}
        self._retry_in: dict[str, float] = {}  # failing providers: the current backoff
        self._due: dict[str, float] = {}  # when each provider is probed next (loop clock)
        self._task: asyncio.Task[None] | None = None
        self.link: HealthLink | None = None
        """Told each probe whose verdict (ok or not) differs from the provider's last."""

    def reason(self, provider: str) -> str | None:
        """Why ``provider`` should get no traffic now, or ``None``."""
        s = self.status.get(provider)
        return None if s is None or s.ok else self._why(s)

    def blocked(self) -> dict[str, str]:
        """The providers whose latest probe failed, each with why (a router check)."""
        if not self._unhealthy:
            return {}
        return {pid: self._why(s) for pid, s in self._unhealthy.items()}

    def _why(self, s: HealthStatus) -> str:
        ago = max(0.0, self.clock() - s.checked_at)
        return f"unhealthy: {s.error} (checked {ago:.0f}s ago)"

    async def check(self, provider: str, *, timeout_s: float | None = None) -> HealthStatus:
        started = self.clock()
        try:
            client = self._client(provider)
        except (ConfigError, CredentialError) as exc:
            status = HealthStatus(provider, False, started, 0.0, 0, str(exc), "config")
        else:
            c = await client.test_connection(timeout_s=timeout_s or self.timeout_s)
            status = HealthStatus(
                provider, c.ok, started, c.latency_ms, c.models, c.error, c.error_type
            )
        before = self.status.get(provider)
        self._set(status)
        if (before is None or before.ok) != status.ok:
            if self.link is not None:
                self.link.changed(status)
            if self.on_change is not None:
                self.on_change(status, before, False)
        return status

    def adopt(self, status: HealthStatus) -> bool:
        """Another replica's probe, kept if newer than the last one here; whether it was."""
        before = self.status.get(status.provider)
        if before is not None and before.checked_at >= status.checked_at:
            return False
        self._set(status)
        if self.on_change is not None and (before is None or before.ok) != status.ok:
            self.on_change(status, before, True)
        return True

    def _set(self, status: HealthStatus) -> None:
        provider, started = status.provider, status.checked_at
        self.status[provider] = status
        if status.ok:
            self._unhealthy.pop(provider, None)
            self._retry_in.pop(provider, None)
            self._due[provider] = started + self.interval_s
        else:
            self._unhealthy[provider] = status
            backoff = self._retry_in.get(provider)
            backoff = self.first_retry_s if backoff is None else 2 * backoff
            if self.interval_s > 0:
                backoff = min(backoff, self.interval_s)
            self._retry_in[provider] = backoff
            self._due[provider] = started + backoff

    async def check_all(self, *, timeout_s: float | None = None) -> list[HealthStatus]:
        """Probe every provider now, concurrently (``timeout_s``: each; default the monitor's)."""
        probes = (self.check(p, timeout_s=timeout_s) for p in self._providers())
        return list(await asyncio.gather(*probes))

    # -- the background loop -------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Probe now and every ``interval_s`` on the running loop (no-op if 0 or running)."""
        if self.interval_s <= 0 or self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="polyroute-health")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def tick(self) -> float:
        """Probe every provider that is due (never probed, its interval or backoff over, its
        breaker half-open) and return the seconds until the next one is due."""
        now = self.clock()
        providers = list(self._providers())
        due = [
            p for p in providers if self._due.get(p, now) <= now or self._half_open(p) is not None
        ]
        results = await asyncio.gather(*(self._probe(p) for p in due))
        for s in results:
            if not s.ok:
                log.warning("provider %s unhealthy: %s", s.provider, s.error)
        now = self.clock()
        wait = min((self._due.get(p, now) - now for p in providers), default=self.interval_s)
        if self.breakers is not None:
            for p in providers:
                b = self.breakers.get(p)
                if b.state == "open":  # half-open when its timer runs out: probe it then
                    wait = min(wait, b.retry_in_s)
        return max(wait, 0.0)

    def _half_open(self, provider: str) -> CircuitBreaker | None:
        b = self.breakers.get(provider) if self.breakers is not None else None
        return b if b is not None and b.state == "half_open" else None

    async def _probe(self, provider: str) -> HealthStatus:
        """A check; when the provider's breaker is half-open and its probe slot free, this is
        that probe, and its result closes or reopens the breaker."""
        breaker = self._half_open(provider)
        ticket = breaker.admit() if breaker is not None else None
        if ticket is None:  # not half-open, or a request holds the probe
            breaker = None
        try:
            status = await self.check(provider)
        except BaseException:
            if breaker is not None:
                breaker.release(ticket)
            raise
        if breaker is not None:
            if status.ok:
                breaker.success(ticket)
            else:
                breaker.failure(ticket)
        return status

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(await self.tick())
