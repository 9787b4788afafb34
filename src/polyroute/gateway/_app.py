"""``create_app``: the gateway as a Starlette app over one :class:`~polyroute.Polyroute`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from polyroute.client import Polyroute
from polyroute.gateway._admin import Reads
from polyroute.gateway._anthropic import AnthropicMessages
from polyroute.gateway._auth import KEY_CACHE_S, Auth
from polyroute.gateway._chat import Calls
from polyroute.gateway._count import CountTokens
from polyroute.gateway._lines import flush_handlers
from polyroute.gateway._memory import trimming
from polyroute.gateway._observe import NOSNIFF, Metrics, Observe, access_log, note_of
from polyroute.gateway._openai import OpenAIChat
from polyroute.gateway._responses import ResponsesEndpoint
from polyroute.gateway._select import Selector
from polyroute.gateway._unknown import unknown_route
from polyroute.hub import events_log
from polyroute.ledger import GLOBAL, VirtualKey
from polyroute.shared import BUDGETS_CHANNEL, KEYS_CHANNEL

if TYPE_CHECKING:
    from polyroute.budgeting import AutoOptimizer

ADMIN_KEY_ENV = "POLYROUTE_ADMIN_KEY"
Endpoint = Callable[[Request], Awaitable[Response]]
MB = 1024 * 1024


class _FromEnv:
    def __repr__(self) -> str:
        return f"${ADMIN_KEY_ENV}"


FROM_ENV: Final[Any] = _FromEnv()
"""``create_app``'s default admin key: read from ``$POLYROUTE_ADMIN_KEY``."""
GC_YOUNG = 20_000
"""The serving worker's threshold for a collection of the youngest generation."""


def create_app(
    polyroute: Polyroute,
    *,
    admin_key: str | None = FROM_ENV,
    max_body_bytes: int | None = None,
    lifecycle: bool = False,
    key_cache_s: float = KEY_CACHE_S,
) -> Starlette:
    """The OpenAI- and Anthropic-compatible gateway over ``polyroute`` (DESIGN.md §9).

    ``admin_key``: default ``$POLYROUTE_ADMIN_KEY``; when set, ``/v1`` calls need it or a
    virtual key, and ``/router/state`` and ``/metrics`` need it. ``None``: open.
    ``max_body_bytes``: default ``[gateway] max_body_mb``. ``key_cache_s``: how long a
    virtual key's verdict is reused (a revocation's delay). ``lifecycle``: the app runs
    ``polyroute``'s life: starts its health monitor (and, with ``[budget.optimizer] auto``,
    the budget optimizer's task), and the heap's trims (``_memory``), on startup, and
    closes it (flushing the ledger) on shutdown, as ``polyroute serve`` does.
    """
    if admin_key is FROM_ENV:
        admin_key = os.environ.get(ADMIN_KEY_ENV) or None
    if max_body_bytes is None:
        max_body_bytes = int(polyroute.config.settings.gateway.max_body_mb * MB)

    async def verify(secret: str) -> VirtualKey | None:
        key = await polyroute.ledger.verify_key(secret)  # the ledger opens on first use
        if key is not None:
            polyroute.limits.know(key)  # its rate limits, for the meter's admission
        return key

    auth = Auth(admin_key, verify, ttl_s=key_cache_s)
    stop_listening = _replica_news(polyroute, auth)
    selector = Selector(polyroute)
    served = [(t.provider, t.model) for t in polyroute.router.pairs]
    metrics = Metrics(
        polyroute.breakers, polyroute.config.enabled, served, polyroute.shared, polyroute.alerts
    )
    calls = Calls(polyroute, auth, selector, max_body_bytes)
    reads = Reads(polyroute, auth, selector, metrics)
    count = CountTokens(polyroute, auth, selector, max_body_bytes)
    responses = ResponsesEndpoint(calls)
    calling: dict[str, Endpoint] = {
        "/v1/chat/completions": calls.chat(OpenAIChat()).handle,
        "/v1/messages": calls.chat(AnthropicMessages()).handle,
        "/v1/messages/count_tokens": count.handle,
        "/v1/responses": responses.handle,
        "/v1/embeddings": calls.embeddings,
    }
    routes = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in calling.items()),
        Route("/v1/responses/{response_id}", responses.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete, methods=["DELETE"]),
        Route("/v1/models", reads.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", reads.model, methods=["GET"]),
        Route("/health", reads.health, methods=["GET"]),
        Route("/health/providers", reads.providers, methods=["GET"]),
        Route("/router/state", reads.state, methods=["GET"]),
        Route("/usage", reads.usage, methods=["GET"]),
        Route("/metrics", reads.metrics_text, methods=["GET"]),
        Route("/", reads.dashboard, methods=["GET"]),
    ]

    unsubscribe = polyroute.events.subscribe(
        metrics.on_event, "request_succeeded", "request_failed", "budget_exceeded"
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _ = selector.served  # build the router now, not on the first request
        await polyroute.shared.start()  # other replicas' news (a no-op without Redis)
        optimizer = _auto_optimizer(polyroute) if lifecycle else None
        if lifecycle:
            polyroute.start_health_monitor()
        if optimizer is not None:
            optimizer.start()
        trimmed = trimming() if lifecycle else contextlib.nullcontext()
        try:
            async with trimmed:
                yield
        finally:
            unsubscribe()
            stop_listening()
            if optimizer is not None:
                await optimizer.stop()
            await responses.aclose()
            if lifecycle:
                await polyroute.aclose()
                # uvicorn re-raises SIGTERM once shut down, and a signal's death runs no
                # atexit: what the log handlers buffer goes out now
                flush_handlers(access_log, events_log)

    return _Gateway(
        _observed(polyroute, metrics, [r.path for r in routes], calling),
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: unknown_route, 405: unknown_route},
    )


def _observed(
    polyroute: Polyroute, metrics: Metrics, endpoints: list[str], calling: Mapping[str, Endpoint]
) -> Callable[[ASGIApp, bool], ASGIApp]:
    """:class:`Observe` over starlette's stack (``plain``: as :func:`create_app` made it,
    so the calling endpoints may skip it), and a server span for each request when
    tracing is on."""
    telemetry = polyroute.telemetry

    def traced(app: ASGIApp) -> ASGIApp:
        if telemetry is None:
            return app
        from polyroute.telemetry import TracedHTTP

        return TracedHTTP(app, telemetry, endpoints)

    direct = traced(Direct(calling))

    def observed(stack: ASGIApp, plain: bool) -> ASGIApp:
        if not plain:  # the calls go the router's way, through what was added
            return Observe(traced(stack), metrics, endpoints)
        return Observe(traced(stack), metrics, endpoints, direct, calling)

    return observed


class _Gateway(Starlette):
    """Starlette, with :class:`Observe` outermost, ahead of starlette's own middleware,
    and the calling endpoints answered from it (:class:`Direct`).

    Starlette's stack adds nothing to those endpoints, which answer every failure
    themselves and raise no ``HTTPException``, yet its layers wrapped every ``send``:
    each frame of a stream passed two wrappers, and each wait of a stream resumed them.
    Middleware or a 500 handler added to the app after :func:`create_app` would not see
    the calls: with either, they go the router's way, through it.
    """

    def __init__(self, observed: Callable[[ASGIApp, bool], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observed = observed

    def build_middleware_stack(self) -> ASGIApp:
        plain = not self.user_middleware and not ({500, Exception} & self.exception_handlers.keys())
        return self._observed(super().build_middleware_stack(), plain)


class Direct:
    """An ASGI app for the calling endpoints (a POST to an exact path), past starlette's
    error and exception middleware, router and per-route wrappers; :class:`Observe` sends
    it those requests and no others. It notes the response's status and marks it
    ``nosniff`` as :class:`Observe` does for the rest; an endpoint that raises gets the
    500 starlette's error middleware would send, and its exception goes on to the server.

    A method the path does not take (405), a trailing slash and an app mounted under a
    prefix still go the router's way.
    """

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints[scope["path"]]
        try:
            response = await endpoint(Request(scope, receive, send))
        except ClientDisconnect:  # the caller left: nobody to answer
            raise
        except Exception:
            await _internal_error(send)
            raise
        note_of(scope).status = response.status_code
        response.raw_headers.append(NOSNIFF)
        await response(scope, receive, send)


async def _internal_error(send: Send) -> None:
    body = b"Internal Server Error"
    headers = [
        (b"content-length", b"%d" % len(body)),
        (b"content-type", b"text/plain; charset=utf-8"),
        NOSNIFF,
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _replica_news(polyroute: Polyroute, auth: Auth) -> Callable[[], None]:
    """Other replicas' changes (``polyroute.shared``): a key's drops its cached verdict, a
    budget's its routing hint; on (re)connecting every verdict goes, as changes may have
    been missed. Returns the function that stops listening."""

    async def missed_key_changes() -> None:
        auth.clear()

    def budget_changed(message: dict[str, Any]) -> None:
        budget = message.get("budget")
        if isinstance(budget, str):
            polyroute.budget_hints.forget("*" if budget == GLOBAL else budget)
            polyroute.ledger.forget_budgets()  # its new limit holds from the next request

    shared = polyroute.shared
    stops = [
        shared.subscribe(KEYS_CHANNEL, auth.on_key_message),
        shared.on_connect(missed_key_changes),
        shared.subscribe(BUDGETS_CHANNEL, budget_changed),
    ]

    def stop() -> None:
        for s in stops:
            s()

    return stop


def _auto_optimizer(polyroute: Polyroute) -> AutoOptimizer | None:
    """``[budget.optimizer] auto = true``: the task that re-applies the optimizer."""
    budget = polyroute.config.settings.budget
    if budget is None or not budget.optimizer.auto:
        return None
    from polyroute.budgeting import AutoOptimizer

    return AutoOptimizer(polyroute.ledger, polyroute.config.enabled(), budget.optimizer)


def from_env() -> Starlette:
    """The app ``polyroute serve`` runs in each worker: config from ``$POLYROUTE_CONFIG``
    (or the usual search), admin key from ``$POLYROUTE_ADMIN_KEY``, access log and event
    log (``polyroute.events``: the fleet's events, at INFO) on stdout."""
    import gc
    import logging
    import sys

    from polyroute.gateway._lines import LineBuffer

    for log in (access_log, events_log):
        if not log.handlers:
            log.addHandler(LineBuffer(sys.stdout))
            if log.level == logging.NOTSET:  # --debug set it lower: keep that
                log.setLevel(logging.INFO)
            log.propagate = False
    app = create_app(Polyroute.from_config(), lifecycle=True)
    # what is loaded by now (modules, the catalog, the config) lives as long as the
    # worker: out of the collector's sight, full collections stay short
    gc.freeze()
    # a request allocates about a thousand containers, nearly all freed by reference
    # counting: at the default threshold (700) the young generation was scanned after
    # every request or so: 25 µs a request in all, against 2 µs at GC_YOUNG (bench/
    # gateway.py's server under wrk, gc.callbacks)
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    return app
