"""Each ``[[alerts]]`` entry: a bounded queue and the task that posts it, off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from polyroute.alerts._text import payload, redact_url
from polyroute.errors import ConfigError
from polyroute.hub import (
    EVENT_KINDS,
    BreakerChanged,
    EventHub,
    EventKind,
    HealthChanged,
    HubEvent,
)

if TYPE_CHECKING:
    import httpx2

    from polyroute.config import AlertConfig, Config

log = logging.getLogger("polyroute.alerts")

DropReason = Literal["queue_full", "shutdown", "no_loop"]
BACKOFF_S = 0.5
"""The first retry's wait (then doubled, with jitter), capped at :data:`MAX_BACKOFF_S`."""
MAX_BACKOFF_S = 30.0
GRACE_S = 2.0
"""How long closing waits for what is queued to be posted."""
USER_AGENT = "polyroute-alerts/0.1"


@dataclass(frozen=True, slots=True)
class _Outcome:
    why: str
    """What went wrong, fit for a log: never the URL."""
    retry: bool
    retry_after_s: float | None = None


class Webhook:
    """One ``[[alerts]]`` entry. ``offer`` is called on the event loop and never waits: an
    event past ``max_queue`` is dropped and counted. A task, made at the first event, posts
    batches of up to ``batch_max`` events, each batch waiting up to ``batch_s`` for more."""

    def __init__(
        self,
        index: int,
        spec: AlertConfig,
        url: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.index = index
        self.spec = spec
        self.kinds: frozenset[str] = frozenset(spec.events)
        self.label = f"alerts[{index}] ({redact_url(url)})"
        """How logs name this webhook: its URL with the secret parts cut."""
        self._url = url
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._queue: deque[HubEvent] = deque()
        self._posting: Sequence[HubEvent] = ()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.sent = 0
        """Events delivered (a 2xx answer)."""
        self.failed = 0
        """Events given up on after every try."""
        self.dropped: dict[DropReason, int] = {}
        """Events never posted, by why."""

    def __repr__(self) -> str:
        return f"Webhook({self.label})"

    @property
    def queued(self) -> int:
        return len(self._queue)

    def drop(self, reason: DropReason, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def offer(self, event: HubEvent) -> None:
        """Queue ``event`` (on the event loop); never blocks."""
        if self._closing:
            self.drop("shutdown")
            return
        if len(self._queue) >= self.spec.max_queue:
            self.drop("queue_full")
            return
        self._queue.append(event)
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"polyroute-{self.label}")
        self._wake.set()

    async def aclose(self, grace_s: float = GRACE_S) -> None:
        """Post what is queued within ``grace_s``, then stop; what is left is dropped."""
        self._closing = True
        task = self._task
        if task is None:
            return
        if self._wake is not None:
            self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        left = len(self._queue) + len(self._posting)
        if left:
            self.drop("shutdown", left)
            log.warning("%s: %d events not posted before shutdown", self.label, left)
        self._queue.clear()
        self._posting = ()

    async def _run(self) -> None:
        import httpx2

        wake = self._wake
        assert wake is not None
        client = httpx2.AsyncClient(
            timeout=self.spec.timeout_s, transport=self._transport, follow_redirects=False
        )
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                await self._gather(wake)
                n = min(len(self._queue), self.spec.batch_max)
                self._posting = [self._queue.popleft() for _ in range(n)]
                await self._post(client, self._posting)
                self._posting = ()
        finally:
            await client.aclose()

    async def _gather(self, wake: asyncio.Event) -> None:
        """Wait up to ``batch_s`` for a full batch (not while closing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.batch_s
        while len(self._queue) < self.spec.batch_max and not self._closing:
            left = deadline - loop.time()
            if left <= 0:
                return
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), left)

    async def _post(self, client: httpx2.AsyncClient, batch: Sequence[HubEvent]) -> None:
        body = payload(batch, self.spec.format)
        tries = 0
        while True:
            tries += 1
            outcome = await self._try(client, body)
            if outcome is None:
                self.sent += len(batch)
                log.debug("%s: posted %d events", self.label, len(batch))
                return
            if not outcome.retry or tries > self.spec.retries:
                break
            delay = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (tries - 1))
            delay *= self._rng.uniform(0.5, 1.0)
            if outcome.retry_after_s is not None:
                delay = max(delay, min(outcome.retry_after_s, MAX_BACKOFF_S))
            log.info("%s: %s; retrying in %.1fs", self.label, outcome.why, delay)
            await self._sleep(delay)
        self.failed += len(batch)
        log.warning(
            "%s: gave up on %d events after %d tries: %s",
            self.label,
            len(batch),
            tries,
            outcome.why,
        )

    async def _try(self, client: httpx2.AsyncClient, body: bytes) -> _Outcome | None:
        import httpx2

        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        try:
            # the answer's body is never read: its status says all
            async with client.stream("POST", self._url, content=body, headers=headers) as r:
                status, retry_after = r.status_code, r.headers.get("retry-after")
        except httpx2.TimeoutException:
            return _Outcome(f"no answer within {self.spec.timeout_s:g}s", True)
        except httpx2.TransportError as exc:  # its text may carry the URL: the type only
            return _Outcome(f"cannot reach it ({type(exc).__name__})", True)
        except httpx2.HTTPError as exc:
            return _Outcome(f"cannot post to it ({type(exc).__name__})", False)
        if 200 <= status < 300:
            return None
        retry = status in (408, 425, 429) or status >= 500
        return _Outcome(f"HTTP {status}", retry, _retry_after(retry_after))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def webhook_url(index: int, spec: AlertConfig, env: Mapping[str, str], source: str) -> str:
    """``spec.url``, read from the environment when ``env:NAME``; a :class:`ConfigError`
    (never quoting the value) when it is unset or not an http(s) URL."""
    url = spec.url
    where = f"{source}: alerts.{index}.url"
    if url.startswith("env:"):
        name = url[4:]
        url = env.get(name, "")
        if not url:
            raise ConfigError(f"{where}: ${name} is not set")
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"{where}: ${name} is not an http(s) URL")
    return url


class Alerts:
    """Every ``[[alerts]]`` webhook of a config, fed by a hub (:meth:`attach`)."""

    def __init__(self, webhooks: Iterable[Webhook]) -> None:
        self.webhooks = list(webhooks)
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(
        cls, config: Config, *, transport: httpx2.AsyncBaseTransport | None = None
    ) -> Alerts:
        return cls(
            Webhook(i, spec, webhook_url(i, spec, config.env, config.source), transport=transport)
            for i, spec in enumerate(config.settings.alerts)
        )

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset().union(*(w.kinds for w in self.webhooks))

    def attach(self, hub: EventHub) -> Callable[[], None]:
        """Post ``hub``'s events of the kinds some webhook wants; returns unsubscribe."""
        kinds: list[EventKind] = [k for k in EVENT_KINDS if k in self.kinds]
        return hub.subscribe(self.on_event, *kinds)

    def on_event(self, event: HubEvent) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._loop = loop
            self._offer(event)
            return
        known = self._loop  # an event from another thread: handed to the loop
        if known is not None and known.is_running():
            with contextlib.suppress(RuntimeError):
                known.call_soon_threadsafe(self._offer, event)
                return
        for w in self.webhooks:
            if event.kind in w.kinds:
                w.drop("no_loop")

    def _offer(self, event: HubEvent) -> None:
        if isinstance(event, BreakerChanged | HealthChanged) and event.remote:
            return  # the replica where it happened posts it: one alert per change, not N
        for w in self.webhooks:
            if event.kind in w.kinds:
                w.offer(event)

    async def aclose(self, grace_s: float = GRACE_S) -> None:
        """Post what is queued, all webhooks together within ``grace_s``, then stop."""
        await asyncio.gather(*(w.aclose(grace_s) for w in self.webhooks))


@contextlib.asynccontextmanager
async def posting(config: Config, hub: EventHub) -> AsyncIterator[None]:
    """Post ``hub``'s events to ``config``'s ``[[alerts]]`` while the block runs, and what is
    queued when it ends (a CLI command's budget changes); nothing without ``[[alerts]]``."""
    if not config.settings.alerts:
        yield
        return
    alerts = Alerts.from_config(config)
    stop = alerts.attach(hub)
    try:
        yield
    finally:
        stop()
        await alerts.aclose()
