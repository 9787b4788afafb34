"""The traced layer: subclasses of the meter, the executor and the fuser that wrap each
call in a span, so the untraced request path carries no tracing code at all.

- :class:`TracedExecutor`: a span per request (completion, stream, embeddings), with the
  routing decision; made current while the executor runs, so each attempt is its child.
- :class:`TracedMeter`: a span per attempt (one metered call: a budget refusal, a failed
  call or an answer, with its usage and cost), under whatever span is current.
- :class:`TracedStream`: a stream's request span ends when the stream does; the time to
  its first content is an event and ``gen_ai.response.time_to_first_chunk``.
- :class:`TracedFuser`: a span per fusion, its members' attempts under it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from opentelemetry import context
from opentelemetry.trace import Span

from polyroute.events import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from polyroute.fusion import Fuser, FusionMethod, FusionResult
from polyroute.ledger import Meter, Metered, MeteredEmbedding
from polyroute.router.decision import Decision
from polyroute.router.executor import Executed, ExecutedEmbedding, ExecutedStream, Executor
from polyroute.telemetry._spans import (
    Attributes,
    Telemetry,
    answered,
    failed,
    provider_name,
    request_attributes,
)
from polyroute.types import ChatRequest, EmbeddingRequest, Message, Target

if TYPE_CHECKING:
    from polyroute.providers import ProviderClient


def _is_content(event: StreamEvent) -> bool:
    return (isinstance(event, TextDelta) and bool(event.text)) or isinstance(
        event, ToolCallDelta | ThinkingDelta
    )


class TracedMeter(Meter):
    """A view of a :class:`~polyroute.ledger.Meter` whose every call is an attempt span.

    The meter's state (ledger, catalog, limits...) is read through from the meter it
    views, never copied, so the two never disagree."""

    def __init__(self, meter: Meter, telemetry: Telemetry) -> None:  # a view: no own state
        self.viewed = meter
        self.telemetry = telemetry

    def __getattr__(self, name: str) -> Any:
        return getattr(self.viewed, name)

    async def complete(
        self,
        client: ProviderClient,
        request: ChatRequest,
        *,
        virtual_key: str | None = None,
        timeout_s: float | None = None,
    ) -> Metered:
        attrs = request_attributes(request, stream=False)
        attrs["gen_ai.request.model"] = request.model
        ptype = client.provider.type
        with self.telemetry.attempt("chat", client.id, ptype, attrs) as span:
            done = await super().complete(
                client, request, virtual_key=virtual_key, timeout_s=timeout_s
            )
            r = done.response
            answered(
                span,
                model=r.model,
                response_id=r.id,
                finish_reason=r.finish_reason,
                usage=r.usage,
                cost_usd=done.cost_usd,
            )
            return done

    async def embed(
        self,
        client: ProviderClient,
        request: EmbeddingRequest,
        *,
        virtual_key: str | None = None,
        timeout_s: float | None = None,
    ) -> MeteredEmbedding:
        attrs: Attributes = {"gen_ai.request.model": request.model}
        ptype = client.provider.type
        with self.telemetry.attempt("embeddings", client.id, ptype, attrs) as span:
            done = await super().embed(
                client, request, virtual_key=virtual_key, timeout_s=timeout_s
            )
            _embedded(span, done.response.model, done.response.usage.prompt_tokens, done.cost_usd)
            return done

    async def stream(
        self, client: ProviderClient, request: ChatRequest, *, virtual_key: str | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        attrs = request_attributes(request, stream=True)
        attrs["gen_ai.request.model"] = request.model
        ptype = client.provider.type
        span = self.telemetry.start_attempt("chat", client.id, ptype, attrs)
        seen = _Seen(span)
        ended = False
        try:
            async with aclosing(super().stream(client, request, virtual_key=virtual_key)) as events:
                async for event in events:
                    if (end := seen.end(event)) is not None:
                        ended = True
                        seen.answered(end, self.cost(ptype, request.model, end.usage))
                    yield event
        except BaseException as exc:
            if not ended:
                failed(span, exc)
            raise
        finally:
            span.end()


class TracedExecutor(Executor):
    """An :class:`~polyroute.router.executor.Executor` whose every request is a span."""

    __slots__ = ("telemetry",)

    def __init__(self, *args: Any, telemetry: Telemetry, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.telemetry = telemetry

    async def complete(
        self, decision: Decision, request: ChatRequest, *, virtual_key: str | None = None
    ) -> Executed:
        attrs = request_attributes(request, stream=False)
        with self.telemetry.request("chat", decision, attrs, virtual_key) as span:
            done = await super().complete(decision, request, virtual_key=virtual_key)
            r = done.response
            self._served(span, decision, done.target, len(done.attempts))
            answered(
                span,
                model=r.model,
                response_id=r.id,
                finish_reason=r.finish_reason,
                usage=r.usage,
                cost_usd=done.cost_usd,
            )
            return done

    def stream(
        self, decision: Decision, request: ChatRequest, *, virtual_key: str | None = None
    ) -> ExecutedStream:
        return TracedStream(self, decision, request, virtual_key)

    async def embed(
        self,
        targets: Sequence[Target],
        request: EmbeddingRequest,
        *,
        virtual_key: str | None = None,
    ) -> ExecutedEmbedding:
        first = targets[0] if targets else Target("", request.model)
        decision = Decision("embeddings", first.provider, first.model, "", None)
        with self.telemetry.request("embeddings", decision, {}, virtual_key) as span:
            done = await super().embed(targets, request, virtual_key=virtual_key)
            self._served(span, decision, done.target, None)
            r = done.response
            _embedded(span, r.model, r.usage.prompt_tokens, done.cost_usd)
            return done

    def _served(self, span: Span, decision: Decision, target: Target, attempts: int | None) -> None:
        name = provider_name(self._client(target.provider).provider.type)
        span.set_attributes(
            {
                "gen_ai.provider.name": name,
                "gen_ai.system": name,
                "polyroute.provider": target.provider,
                "polyroute.fallback": target != Target(decision.provider, decision.model),
            }
        )
        if attempts is not None:
            span.set_attribute("polyroute.attempts", attempts)


class TracedStream(ExecutedStream):
    """An :class:`~polyroute.router.executor.ExecutedStream` inside its request's span,
    which ends when the stream does (whole, failed, or left by its consumer)."""

    __slots__ = ("telemetry",)

    def __init__(
        self,
        executor: TracedExecutor,
        decision: Decision,
        request: ChatRequest,
        virtual_key: str | None = None,
    ) -> None:
        super().__init__(executor, decision, request, virtual_key)
        self.telemetry = executor.telemetry

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        attrs = request_attributes(self.request, stream=True)
        span, ctx = self.telemetry.start_request("chat", self.decision, attrs, self.virtual_key)
        inner = super()._run()
        seen = _Seen(span)
        end: StreamEnd | None = None
        try:
            while True:
                # current only while the executor runs: never across a yield to the consumer
                token = context.attach(ctx)
                try:
                    event = await anext(inner)
                except StopAsyncIteration:
                    break
                finally:
                    context.detach(token)
                if (ended := seen.end(event)) is not None:
                    end = ended
                    if self.target is not None and isinstance(self.executor, TracedExecutor):
                        self.executor._served(span, self.decision, self.target, len(self.attempts))
                    seen.answered(end, self.cost_usd)
                yield event
        except BaseException as exc:
            if end is None:
                failed(span, exc)
            raise
        finally:
            await inner.aclose()
            span.end()


class TracedFuser(Fuser):
    """A :class:`~polyroute.fusion.Fuser` whose every fusion is a span over its members'."""

    def __init__(self, *args: Any, telemetry: Telemetry, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.telemetry = telemetry

    async def fuse(
        self,
        messages: Sequence[Message],
        members: Sequence[Target],
        *,
        method: FusionMethod | None = None,
        min_agreement: float | None = None,
        max_tokens: int | None = None,
        early_stop: bool = False,
        max_cost_usd: float | None = None,
        timeout_s: float | None = None,
    ) -> FusionResult:
        attrs: Attributes = {
            "polyroute.fusion.method": method or self.config.settings.fusion.method,
            "polyroute.fusion.members": [f"{t.provider}/{t.model}" for t in members],
        }
        with self.telemetry.tracer.start_as_current_span(
            "polyroute fusion",
            attributes=attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await super().fuse(
                    messages,
                    members,
                    method=method,
                    min_agreement=min_agreement,
                    max_tokens=max_tokens,
                    early_stop=early_stop,
                    max_cost_usd=max_cost_usd,
                    timeout_s=timeout_s,
                )
            except BaseException as exc:
                failed(span, exc)
                raise
            span.set_attributes(
                {
                    "polyroute.fusion.agreement": result.agreement,
                    "polyroute.fusion.confidence": result.confidence,
                    "polyroute.fusion.answers": sum(r.ok for r in result.responses),
                    "polyroute.fusion.early_stopped": result.early_stopped,
                }
            )
            if result.total_cost_usd is not None:
                span.set_attribute("polyroute.cost_usd", result.total_cost_usd)
            return result


class _Seen:
    """What a traced stream has shown so far: its start, and its first content (timed on
    the span, from this object's making)."""

    __slots__ = ("_first", "_span", "_t0", "start")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._t0 = time.perf_counter()
        self._first = True
        self.start: StreamStart | None = None

    def end(self, event: StreamEvent) -> StreamEnd | None:
        """Note ``event``; it, if it is the stream's end."""
        if self._first and _is_content(event):
            self._first = False
            seconds = time.perf_counter() - self._t0
            attrs = {"gen_ai.response.time_to_first_chunk": seconds}
            self._span.add_event("gen_ai.first_chunk", attrs)
            self._span.set_attributes(attrs)
        elif isinstance(event, StreamStart):
            self.start = event
        elif isinstance(event, StreamEnd):
            return event
        return None

    def answered(self, end: StreamEnd, cost_usd: float | None) -> None:
        start = self.start
        answered(
            self._span,
            model=start.model if start is not None else "",
            response_id=start.id if start is not None else "",
            finish_reason=end.finish_reason,
            usage=end.usage,
            cost_usd=cost_usd,
        )


def _embedded(span: Span, model: str, input_tokens: int, cost_usd: float | None) -> None:
    attrs: Attributes = {"gen_ai.usage.input_tokens": input_tokens}
    if model:
        attrs["gen_ai.response.model"] = model
    if cost_usd is not None:
        attrs["polyroute.cost_usd"] = cost_usd
    span.set_attributes(attrs)
