"""The gateway's server span: a pure ASGI middleware, added to the app only when tracing."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polyroute.telemetry._spans import Attributes, Telemetry, failed

_PROPAGATOR = TraceContextTextMapPropagator()

UNTRACED = frozenset({"/health", "/metrics"})
"""Readiness probes and metrics scrapes: every few seconds from every replica, no trace."""


class TracedHTTP:
    """A server span per HTTP request, the child of the caller's W3C ``traceparent`` when
    it sends one; the request's own spans nest under it, and a stream's span ends with
    its last byte. ``endpoints``: the app's paths; a request to any other is named by
    its method alone (bounded span names whatever callers send). :data:`UNTRACED`
    paths are not traced."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, endpoints: Iterable[str]) -> None:
        self.app = app
        self.tracer = telemetry.tracer
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        attrs: Attributes = {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": scope.get("scheme", "http"),
        }
        name = method
        if path in self.endpoints:
            attrs["http.route"] = path
            name = f"{method} {path}"
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", ())
            if k in (b"traceparent", b"tracestate")
        }
        parent = _PROPAGATOR.extract(headers) if headers else None
        with self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def send_noting(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status: int = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_attribute("error.type", str(status))
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_noting)
            except BaseException as exc:
                failed(span, exc)
                raise
