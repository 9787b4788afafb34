"""Where spans go, and the attributes they carry (OpenTelemetry's GenAI conventions).

Attribute names follow OpenTelemetry's GenAI semantic conventions (``gen_ai.*``,
``error.type``); ours are ``polyroute.*``. ``gen_ai.system`` is the conventions' older
name for ``gen_ai.provider.name``: both are set, so older backends read it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from polyroute import __version__
from polyroute.errors import error_line
from polyroute.types import ChatRequest, Target, Usage

if TYPE_CHECKING:
    from polyroute.config import TelemetryConfig
    from polyroute.fusion import Fuser
    from polyroute.ledger import Meter
    from polyroute.router.decision import Decision
    from polyroute.router.executor import Executor

Attributes = dict[str, AttributeValue]

PROVIDER_NAMES: Final[Mapping[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "mistral": "mistral_ai",
}
"""Our provider types as the conventions' well-known ``gen_ai.provider.name`` values; the
others (``ollama``, ``openai-compatible``) go as they are, as the conventions allow."""

TRACES_PATH = "/v1/traces"

_REQUEST: Final = context.create_key("polyroute.request")
"""The context value under which a request's :class:`RequestTrace` travels to its attempts."""


@dataclass(slots=True)
class RequestTrace:
    """A traced request, as its attempts see it: the routing winner and the attempts so far."""

    winner: Target
    attempts: int = 0

    def next_attempt(self, target: Target) -> Attributes:
        """The attempt-index and fallback attributes of the next attempt, at ``target``."""
        index = self.attempts
        self.attempts += 1
        return {"polyroute.attempt.index": index, "polyroute.fallback": target != self.winner}


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (kept as is if it names the path)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def provider_name(provider_type: str) -> str:
    return PROVIDER_NAMES.get(provider_type, provider_type)


def error_type(exc: BaseException) -> str:
    """``error.type``: the exception's class name (the conventions' choice for exceptions);
    ``cancelled`` for a call cancelled or a stream its consumer stopped reading (the
    attempts' own word for it)."""
    if isinstance(exc, GeneratorExit | asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__


@dataclass(slots=True)
class Telemetry:
    """The tracer polyroute's spans are made with, and its provider's life.

    Built from ``[telemetry]`` by :meth:`from_config` (spans batched to the OTLP/HTTP
    exporter), or from any exporter by :meth:`exporting`: the seam tests use, with the
    SDK's ``InMemorySpanExporter`` and ``batch=False``. Given to
    ``Polyroute(config, telemetry=...)``, it replaces what the config would build; an
    application with its own OpenTelemetry setup can pass ``Telemetry(its_provider)``.
    """

    provider: trace.TracerProvider
    tracer: trace.Tracer = field(init=False)

    def __post_init__(self) -> None:
        self.tracer = self.provider.get_tracer("polyroute", __version__)

    @classmethod
    def from_config(cls, settings: TelemetryConfig) -> Telemetry:
        exporter = OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint))
        return cls.exporting(exporter, service_name=settings.service_name)

    @classmethod
    def exporting(
        cls, exporter: SpanExporter, *, service_name: str = "polyroute", batch: bool = True
    ) -> Telemetry:
        """Spans to ``exporter``: batched in a background thread, or each as it ends."""
        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
        )
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider)

    # -- the traced layer (built by the client in place of the plain parts) ----------

    def executor(self, client: Any, meter: Meter, *args: Any, **kwargs: Any) -> Executor:
        """An :class:`~polyroute.router.executor.Executor` (same arguments) whose requests
        are spans, its calls made through a :class:`TracedMeter` view of ``meter``."""
        from polyroute.telemetry._layer import TracedExecutor, TracedMeter

        return TracedExecutor(client, TracedMeter(meter, self), *args, telemetry=self, **kwargs)

    def fuser(self, config: Any, catalog: Any, client: Any, meter: Meter, **kwargs: Any) -> Fuser:
        """A :class:`~polyroute.fusion.Fuser` (same arguments) whose fusions are spans."""
        from polyroute.telemetry._layer import TracedFuser, TracedMeter

        return TracedFuser(
            config, catalog, client, TracedMeter(meter, self), telemetry=self, **kwargs
        )

    def shutdown(self) -> None:
        """Export what is pending and stop (blocking: up to the exporter's timeout)."""
        if isinstance(self.provider, TracerProvider):
            self.provider.shutdown()

    # -- spans -----------------------------------------------------------------

    def start_request(
        self,
        operation: str,
        decision: Decision,
        attributes: Attributes,
        virtual_key: str | None,
    ) -> tuple[Span, context.Context]:
        """A request's span (not made current) and the context its attempts run in."""
        attrs: Attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": decision.model,
            "polyroute.routing.strategy": decision.strategy,
            "polyroute.routing.provider": decision.provider,
            "polyroute.routing.reasoning": decision.reasoning,
            "polyroute.routing.fallbacks": [f"{t.provider}/{t.model}" for t in decision.fallbacks],
            **attributes,
        }
        if decision.estimated_cost_usd is not None:
            attrs["polyroute.routing.estimated_cost_usd"] = decision.estimated_cost_usd
        if virtual_key is not None:
            attrs["polyroute.virtual_key"] = virtual_key
        span = self.tracer.start_span(
            f"polyroute {operation}", kind=SpanKind.INTERNAL, attributes=attrs
        )
        state = RequestTrace(Target(decision.provider, decision.model))
        ctx = trace.set_span_in_context(span, context.set_value(_REQUEST, state))
        return span, ctx

    @contextmanager
    def request(
        self,
        operation: str,
        decision: Decision,
        attributes: Attributes,
        virtual_key: str | None,
    ) -> Iterator[Span]:
        """:meth:`start_request` made current for the block, ended by its outcome."""
        span, ctx = self.start_request(operation, decision, attributes, virtual_key)
        token = context.attach(ctx)
        try:
            yield span
        except BaseException as exc:
            failed(span, exc)
            raise
        finally:
            context.detach(token)
            span.end()

    def start_attempt(
        self, operation: str, provider_id: str, provider_type: str, attributes: Attributes
    ) -> Span:
        """An attempt's span (a client span: one call to a provider), under the current
        request when there is one."""
        model = str(attributes.get("gen_ai.request.model", ""))
        name = provider_name(provider_type)
        attrs: Attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": name,
            "gen_ai.system": name,
            "polyroute.provider": provider_id,
            **attributes,
        }
        state = context.get_value(_REQUEST)
        if isinstance(state, RequestTrace):
            attrs.update(state.next_attempt(Target(provider_id, model)))
        return self.tracer.start_span(
            f"{operation} {model}".rstrip(), kind=SpanKind.CLIENT, attributes=attrs
        )

    @contextmanager
    def attempt(
        self, operation: str, provider_id: str, provider_type: str, attributes: Attributes
    ) -> Iterator[Span]:
        """:meth:`start_attempt` for the block (not made current: nothing under it is
        traced), ended by its outcome."""
        span = self.start_attempt(operation, provider_id, provider_type, attributes)
        try:
            yield span
        except BaseException as exc:
            failed(span, exc)
            raise
        finally:
            span.end()


def failed(span: Span, exc: BaseException) -> None:
    """Mark ``span`` as ended by ``exc``."""
    kind = error_type(exc)
    span.set_attribute("error.type", kind)
    why = "cancelled, or its consumer stopped reading" if kind == "cancelled" else error_line(exc)
    span.set_status(Status(StatusCode.ERROR, why))


def request_attributes(request: ChatRequest, *, stream: bool) -> Attributes:
    """The conventions' ``gen_ai.request.*`` attributes of what ``request`` sets."""
    attrs: Attributes = {"gen_ai.request.stream": stream}
    optional: Sequence[tuple[str, float | int | None]] = (
        ("gen_ai.request.max_tokens", request.max_tokens),
        ("gen_ai.request.temperature", request.temperature),
        ("gen_ai.request.top_p", request.top_p),
        ("gen_ai.request.top_k", request.top_k),
        ("gen_ai.request.seed", request.seed),
        ("gen_ai.request.presence_penalty", request.presence_penalty),
        ("gen_ai.request.frequency_penalty", request.frequency_penalty),
    )
    for key, value in optional:
        if value is not None:
            attrs[key] = value
    if request.stop:
        attrs["gen_ai.request.stop_sequences"] = list(request.stop)
    if request.n != 1:
        attrs["gen_ai.request.choice.count"] = request.n
    return attrs


def usage_attributes(usage: Usage) -> Attributes:
    return {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
    }


def answered(
    span: Span,
    *,
    model: str,
    response_id: str,
    finish_reason: str | None,
    usage: Usage,
    cost_usd: float | None,
) -> None:
    """What a served answer sets on its attempt's span and its request's."""
    attrs = usage_attributes(usage)
    if model:
        attrs["gen_ai.response.model"] = model
    if response_id:
        attrs["gen_ai.response.id"] = response_id
    if finish_reason is not None:
        attrs["gen_ai.response.finish_reasons"] = [finish_reason]
    if cost_usd is not None:
        attrs["polyroute.cost_usd"] = cost_usd
    span.set_attributes(attrs)
