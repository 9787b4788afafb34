"""Metrics and access logs: a pure ASGI middleware, and the app's own Prometheus registry.

Each request gets a :class:`Note` in its ASGI scope; handlers fill in who served
it and what it cost, and :class:`Observe` turns it into a counter, a latency
observation and (when the ``polyroute.access`` logger is on) one JSON line:
method, path, status, latency, provider, model, cost and the virtual key's id.
Never a key, never a body. Tokens, cost and upstream attempts are counted per
attempt from the client's events, fusion members and embeddings included.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polyroute.gateway._lines import direct
from polyroute.hub import BudgetExceededEvent, HubEvent, RequestFailed, RequestSucceeded
from polyroute.providers._json import dumps_ascii

if TYPE_CHECKING:
    from polyroute.alerts import Alerts
    from polyroute.router.breaker import Breakers
    from polyroute.shared import Shared

access_log = logging.getLogger("polyroute.access")

NOTE = "polyroute.note"
"""The scope key of a request's :class:`Note`."""

READ_TIMED_OUT = "polyroute.read_timed_out"
"""The scope key the server sets when it closed a request whose body came too slowly."""

CLIENT_CLOSED = 499
"""The status recorded for a request whose caller left while sending it (nginx's code)."""

_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


class _Counter:
    """A labelled counter's series as plain numbers, turned into Prometheus samples when
    scraped. prometheus_client's child takes a lock and a chain of calls per increment
    (with the histogram, about 45k instructions a served request, callgrind); here an
    increment is a dictionary update under one lock. Increments come on the event loop,
    or in a thread for a hub with no loop: the lock keeps the counts whole."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self._values: dict[tuple[str, ...], list[float]] = {}  # labels -> [value, created]
        self._lock = threading.Lock()

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            series = self._values.get(labels)
            if series is None:
                self._values[labels] = [amount, time.time()]
            else:
                series[0] += amount

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        with self._lock:
            for labels, (value, created) in self._values.items():
                family.add_metric(labels, value, created=created)
        yield family


class _Histogram:
    """A labelled histogram's series as plain numbers (see :class:`_Counter`)."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self._bounds = [float(b) for b in buckets]
        self._names = [*map(floatToGoString, self._bounds), "+Inf"]
        # labels -> ([count per bucket, the last for +Inf], [sum, created])
        self._values: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], amount: float) -> None:
        at = bisect.bisect_left(self._bounds, amount)  # the first bound >= amount
        with self._lock:
            series = self._values.get(labels)
            if series is None:
                series = self._values[labels] = ([0] * len(self._names), [0.0, time.time()])
            series[0][at] += 1
            series[1][0] += amount

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        created = []
        with self._lock:
            for labels, (counts, (total, since)) in self._values.items():
                cumulative = list(itertools.accumulate(counts))
                family.add_metric(labels, list(zip(self._names, cumulative, strict=True)), total)
                created.append((labels, since))
        for labels, since in created:
            family.add_sample(
                f"{self.name}_created", dict(zip(self.labels, labels, strict=True)), since
            )
        yield family


class Note:
    """What a handler learned about its request, for the metrics and the access log."""

    __slots__ = ("cost_usd", "error", "key", "model", "provider", "status")

    def __init__(self) -> None:
        self.status = 500  # until a response starts: an app that raised
        self.provider = ""
        self.model = ""
        self.cost_usd: float | None = None
        self.key: str | None = None
        self.error: str | None = None
        """The failure family of a request that failed (streams: after their 200)."""


def note_of(scope: Scope) -> Note:
    note = scope.get(NOTE)
    return note if isinstance(note, Note) else Note()


class _BreakerStates:
    """``polyroute_breaker_state{provider}``, read from the breakers at scrape time."""

    def __init__(self, breakers: Breakers, providers: Callable[[], Sequence[str]]) -> None:
        self.breakers = breakers
        self.providers = providers

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "polyroute_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open.",
            labels=["provider"],
        )
        for pid in self.providers():
            gauge.add_metric([pid], _BREAKER_VALUE[self.breakers.get(pid).state])
        yield gauge


class _SharedUp:
    """Whether Redis answers (``[storage] redis_url``): 0 while replicas go on alone."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "polyroute_shared_state_up",
            "1 while Redis answers and replicas share state; 0 while each goes on alone.",
        )
        gauge.add_metric([], 1 if self.shared.up else 0)
        yield gauge


class _AlertCounts:
    """``[[alerts]]`` events sent, given up on and dropped, per entry (its index in the
    config: a webhook URL is a secret, never a label), read at scrape time."""

    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts

    def collect(self) -> Iterable[Metric]:
        sent = CounterMetricFamily(
            "polyroute_alerts_sent",
            "Alert events delivered, per [[alerts]] entry.",
            labels=["alert"],
        )
        failed = CounterMetricFamily(
            "polyroute_alerts_failed",
            "Alert events given up on after every retry, per [[alerts]] entry.",
            labels=["alert"],
        )
        dropped = CounterMetricFamily(
            "polyroute_alerts_dropped",
            "Alert events never posted (queue_full, shutdown, no_loop), per [[alerts]] entry.",
            labels=["alert", "reason"],
        )
        for w in self.alerts.webhooks:
            alert = str(w.index)
            sent.add_metric([alert], w.sent)
            failed.add_metric([alert], w.failed)
            for reason in ("queue_full", "shutdown", "no_loop"):
                dropped.add_metric([alert, reason], w.dropped.get(reason, 0))
        yield from (sent, failed, dropped)


class Metrics:
    """This gateway's Prometheus metrics, in a registry of its own (no global state)."""

    def __init__(
        self,
        breakers: Breakers,
        providers: Callable[[], Sequence[str]],
        served: Iterable[tuple[str, str]] = (),
        shared: Shared | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        """``served``: the (provider, model) pairs configured; other models a caller pins
        are counted as ``"other"``, so callers cannot grow the series without bound.
        ``shared``: with Redis, ``polyroute_shared_state_up`` says whether it answers.
        ``alerts``: ``polyroute_alerts_{sent,failed,dropped}_total`` count its events."""
        self._served = frozenset(served)
        r = self.registry = CollectorRegistry()
        self.requests = _Counter(
            "polyroute_gateway_requests",
            "Gateway requests by endpoint, serving provider and model, and HTTP status.",
            ["endpoint", "provider", "model", "status"],
        )
        self.latency = _Histogram(
            "polyroute_gateway_request_duration_seconds",
            "Gateway request latency (streams: until their last byte).",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tokens = _Counter(
            "polyroute_tokens",
            "Tokens of successful upstream calls, by provider, model and kind.",
            ["provider", "model", "kind"],
        )
        self.cost = _Counter(
            "polyroute_cost_usd",
            "USD spent on upstream calls (unpriced models are not counted).",
            ["provider", "model"],
        )
        self.attempts = _Counter(
            "polyroute_upstream_attempts",
            "Upstream calls by provider, model and outcome (ok, or the error type).",
            ["provider", "model", "outcome"],
        )
        self.budget_refusals = _Counter(
            "polyroute_budget_refusals",
            "Calls refused by a budget, by budget scope.",
            ["scope"],
        )
        for series in (
            self.requests,
            self.latency,
            self.tokens,
            self.cost,
            self.attempts,
            self.budget_refusals,
        ):
            r.register(series)
        r.register(_BreakerStates(breakers, providers))
        if shared is not None and shared.enabled:
            r.register(_SharedUp(shared))
        if alerts is not None:
            r.register(_AlertCounts(alerts))

    def on_event(self, event: HubEvent) -> None:
        """A client event (subscribe this to the client's hub)."""
        if isinstance(event, RequestSucceeded):
            model = self.model_label(event.provider, event.model)
            self.attempts.inc((event.provider, model, "ok"))
            if event.prompt_tokens:
                self.tokens.inc((event.provider, model, "prompt"), event.prompt_tokens)
            if event.completion_tokens:
                self.tokens.inc((event.provider, model, "completion"), event.completion_tokens)
            if event.cost_usd:
                self.cost.inc((event.provider, model), event.cost_usd)
        elif isinstance(event, RequestFailed):
            model = self.model_label(event.provider, event.model)
            self.attempts.inc((event.provider, model, event.error_type))
        elif isinstance(event, BudgetExceededEvent):
            self.budget_refusals.inc((event.scope,))

    def model_label(self, provider: str, model: str) -> str:
        """``model``, or ``"other"`` for one outside the configured pairs."""
        return model if (provider, model) in self._served or not model else "other"


NOSNIFF = (b"x-content-type-options", b"nosniff")
"""On every response: a browser never reads a JSON body (or any other) as a script or page."""


class Observe:
    """Pure ASGI middleware: every HTTP request counted, timed and (optionally) logged, and
    every response marked ``nosniff``.

    ``endpoints``: the app's paths; any other path is counted as ``other`` (bounded
    label values whatever callers send). ``direct``: an app for a POST to one of
    ``direct_paths``, called with the server's own ``send``: it notes its status in the
    request's :class:`Note` and marks its response itself (the calling endpoints:
    ``_app.Direct``), so a stream's every frame skips a wrapper.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        endpoints: Iterable[str],
        direct: ASGIApp | None = None,
        direct_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)
        self.direct = app if direct is None else direct
        self.direct_paths = frozenset() if direct is None else frozenset(direct_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        note = Note()
        scope[NOTE] = note
        t0 = time.perf_counter()
        try:
            if scope["method"] == "POST" and scope["path"] in self.direct_paths:
                await self.direct(scope, receive, send)
            else:
                await self.app(scope, receive, _noting(note, send))
        except ClientDisconnect:  # the body never came whole: nobody is left to answer
            if scope.get(READ_TIMED_OUT):
                note.status, note.error = 408, "read_timeout"
            else:
                note.status, note.error = CLIENT_CLOSED, "client_closed"
        finally:
            self._done(scope, note, time.perf_counter() - t0)

    def _done(self, scope: Scope, note: Note, elapsed: float) -> None:
        path: str = scope["path"]
        endpoint = path if path in self.endpoints else "other"
        m = self.metrics
        model = (
            note.model if note.provider == "fusion" else m.model_label(note.provider, note.model)
        )
        m.requests.inc((endpoint, note.provider, model, str(note.status)))
        m.latency.observe((endpoint,), elapsed)
        if access_log.isEnabledFor(logging.INFO):
            line = _line(
                {
                    "method": scope["method"],
                    "path": path,
                    "status": note.status,
                    "latency_ms": round(elapsed * 1000, 2),
                    "provider": note.provider or None,
                    "model": note.model or None,
                    "cost_usd": note.cost_usd,
                    "key": note.key,
                    "error": note.error,
                }
            )
            buffer = direct(access_log)
            if buffer is not None:
                buffer.write_line(line)
            else:
                access_log.info(line)


def _noting(note: Note, send: Send) -> Send:
    """``send``, noting the response's status and marking it ``nosniff``."""

    async def send_noting(message: Message) -> None:
        if message["type"] == "http.response.start":
            note.status = message["status"]
            message["headers"] = [*message.get("headers", ()), NOSNIFF]
        await send(message)

    return send_noting


def _line(fields: dict[str, object]) -> str:
    """An access log line: msgspec's JSON where it reads as ``json.dumps``'s would
    (:func:`dumps_ascii`), else the stdlib's, as before."""
    line = dumps_ascii(fields, list(fields.values()).count(None))
    return line.decode() if line is not None else json.dumps(fields, separators=(",", ":"))
