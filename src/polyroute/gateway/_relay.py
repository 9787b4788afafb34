"""Hosted tools on ``POST /v1/responses``: relayed to a pinned ``openai`` provider.

Web search, file search and computer use run inside OpenAI's Responses API, so a
request that names one is carried whole (DESIGN.md §9: the caller's body, ``model``
made the bare model) to the ``POST /responses`` of the ``openai`` provider it pins,
and OpenAI's answer, JSON or SSE events, goes back as it came: hosted-call items and
``url_citation`` annotations included. Any other model name keeps the 400 of
``_responses_in``. The call takes the attempt primitive (breaker, retries on the one
target; no fallback: the tools exist only there) and is metered like any call.

The reservation is the worst case: every pass of the model can read its whole context
window, and there are at most ``max_tool_calls`` + 1 passes, so input is bounded by
``context_window x (calls + 1)``, output by ``max_output_tokens`` (else the model's),
plus each call's fee (``models.toml`` ``[tool_fees]``). ``max_tool_calls`` is the
caller's, else :data:`HOSTED_CALLS_CAP`, sent upstream so the bound holds. It settles
to the usage OpenAI reports plus the fees of the hosted-call items in the output.
``store``/``previous_response_id`` are OpenAI's own here: such a response lives at
OpenAI, and ``GET /v1/responses/{id}`` of it is a 404.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse

from polyroute.errors import (
    AllProvidersFailedError,
    BudgetExceeded,
    GatewayError,
    InvalidResponseError,
    PolyrouteError,
    ProviderError,
    StreamInterruptedError,
)
from polyroute.gateway._chat import JSON, served_headers
from polyroute.gateway._observe import Note
from polyroute.gateway._problems import problem_of
from polyroute.gateway._wire import dumps, sse
from polyroute.hub import RequestFailed, RequestSucceeded
from polyroute.ledger._meter import output_bound
from polyroute.ledger._records import Reservation, Status, UsageRecord
from polyroute.providers._base import HttpCall
from polyroute.router.attempt import Call, Refusal, Served, admit
from polyroute.types import Attempt, Target, Usage

if TYPE_CHECKING:
    from polyroute.catalog import CatalogModel
    from polyroute.client import Polyroute
    from polyroute.gateway._auth import Caller
    from polyroute.gateway._select import Selector
    from polyroute.limits import Hold
    from polyroute.providers import ProviderClient

HOSTED_CALLS_CAP = 4
"""Hosted tool calls allowed in one response when the request sets no ``max_tool_calls``."""

UNKNOWN_CONTEXT = 1_048_576
"""Input tokens one pass may read when the catalog does not know the model's window:
the largest of OpenAI's."""

# an output item -> the tools whose call it is (its fee is the dearest of those requested)
_CALL_ITEMS: Mapping[str, tuple[str, ...]] = {
    "web_search_call": (
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
    ),
    "file_search_call": ("file_search",),
    "computer_call": ("computer_use_preview",),
}
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_CLIENT_TOOLS = frozenset({"function", "custom"})


def hosted_tools(data: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The request's hosted tools: (index in ``tools``, type)."""
    tools = data.get("tools")
    if not isinstance(tools, list):
        return []
    return [
        (i, t["type"])
        for i, t in enumerate(tools)
        if isinstance(t, dict) and isinstance(t.get("type"), str) and t["type"] not in _CLIENT_TOOLS
    ]


@dataclass(frozen=True, slots=True)
class Relay:
    """A request to relay: where, the body to send, and its bounds."""

    target: Target
    body: dict[str, Any]
    stream: bool
    fees: Mapping[str, float]
    """USD per hosted-call output item, by item type."""
    worst_usd: float | None
    worst_tokens: int


@dataclass(frozen=True, slots=True)
class _Done:
    body: Any
    cost_usd: float | None
    latency_ms: float


def _count(value: Any, name: str, least: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise GatewayError(f"{name}: an integer, {least} or more", param=name)
    return value


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(response: Mapping[str, Any]) -> Usage:
    """A Response object's usage (reasoning tokens are part of the output)."""
    u = response.get("usage")
    if not isinstance(u, dict):
        return Usage()
    cached = u.get("input_tokens_details") or {}
    reasoning = u.get("output_tokens_details") or {}
    return Usage(
        _int(u.get("input_tokens")),
        _int(u.get("output_tokens")),
        cached_tokens=_int(cached.get("cached_tokens")),
        reasoning_tokens=_int(reasoning.get("reasoning_tokens")),
    )


def fees_of(items: Any, fees: Mapping[str, float]) -> float:
    """The fees of the hosted-call items among ``items``."""
    if not isinstance(items, list):
        return 0.0
    return sum(fees.get(str(i.get("type")), 0.0) for i in items if isinstance(i, dict))


class Relayer:
    """Plans and makes the relayed calls of one gateway."""

    def __init__(self, polyroute: Polyroute, selector: Selector) -> None:
        self.pr = polyroute
        self.selector = selector

    def plan(self, raw: bytes, caller: Caller) -> Relay | None:
        """The relay ``raw`` asks for: ``None`` unless it names hosted tools and pins an
        ``openai`` provider (the parser then refuses the hosted tools by name)."""
        if b'"tools"' not in raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None  # the parser says what is wrong
        if not isinstance(data, dict):
            return None
        hosted = hosted_tools(data)
        model = data.get("model")
        if not hosted or not isinstance(model, str):
            return None
        target = self.selector.pinned(model)
        if target is None or self.pr.config.settings.providers[target.provider].type != "openai":
            return None
        key = caller.key
        if key is not None and not (key.allows(model) or key.allows(target.model)):
            raise GatewayError(f"this key may not use model {model!r}", status=403)
        if "polyroute" in data:
            raise GatewayError(
                "polyroute: routing hints do not apply to a request relayed with hosted tools "
                "(it goes to the provider it pins)",
                param="polyroute",
            )
        catalog = self.pr.catalog
        prices: dict[str, float] = {}
        for i, tool in hosted:
            fee = catalog.tool_fee("openai", target.model, tool)
            if fee is None:
                relayed = ", ".join(t for ts in _CALL_ITEMS.values() for t in ts)
                raise GatewayError(
                    f"tools.{i}.type: hosted tool {tool!r} is not relayed: polyroute has no "
                    f"price to meter its calls (relayed: {relayed})",
                    param=f"tools.{i}.type",
                )
            prices[tool] = fee
        fees = {
            item: max(prices[t] for t in tools if t in prices)
            for item, tools in _CALL_ITEMS.items()
            if any(t in prices for t in tools)
        }
        calls = _count(data.get("max_tool_calls"), "max_tool_calls", 0)
        if calls is None:
            calls = data["max_tool_calls"] = HOSTED_CALLS_CAP
        max_out = _count(data.get("max_output_tokens"), "max_output_tokens", 1)
        entry = catalog.get("openai", target.model)
        worst_tokens = _input_bound(entry, calls) + output_bound(entry, max_out)
        worst_usd = None
        if entry.price is not None:
            usage = Usage(_input_bound(entry, calls), output_bound(entry, max_out))
            worst_usd = entry.price.cost(usage) + calls * max(fees.values(), default=0.0)
        data["model"] = target.model
        return Relay(target, data, data.get("stream") is True, fees, worst_usd, worst_tokens)

    async def answer(self, relay: Relay, caller: Caller, note: Note) -> Response:
        """The upstream's answer (raises :class:`PolyrouteError` before any byte is sent)."""
        target = relay.target
        note.provider, note.model = target.provider, target.model
        if relay.stream:
            first, frames = await self._attempts(relay, caller, note)
            assert isinstance(first, bytes)
            headers = _headers(target, relay.worst_usd)
            headers["x-polyroute-cost-estimated"] = "true"  # the worst case: actual at the end
            headers["cache-control"] = "no-cache"
            return StreamingResponse(
                _joined(first, frames), headers=headers, media_type="text/event-stream"
            )
        done, _ = await self._attempts(relay, caller, note)
        assert isinstance(done, _Done)
        await self.pr.ledger.durable()  # [storage] durability: recorded before answered
        note.cost_usd = done.cost_usd
        return Response(dumps(done.body), 200, _headers(target, done.cost_usd), JSON)

    async def _attempts(
        self, relay: Relay, caller: Caller, note: Note
    ) -> tuple[_Done | bytes, AsyncGenerator[bytes, None] | None]:
        """The executor's retries on the one target: the JSON answer, or a stream's first
        frame and the rest."""
        pr = self.pr
        executor = pr.executor
        target = relay.target
        client = pr.client(target.provider)
        breaker = executor.breakers.get(target.provider)
        attempts: list[Attempt] = []
        errors: list[ProviderError] = []

        def noted(attempt: Attempt, error: Refusal | None) -> None:
            attempts.append(attempt)
            if isinstance(error, ProviderError):
                errors.append(error)

        started = time.monotonic()
        retry = 0
        while True:
            call = admit(target, breaker, noted)
            if not isinstance(call, Call):
                break
            bill = _Bill(pr, client, relay, caller.key_id)
            error: Refusal
            if relay.stream:
                frames = self._stream(call, client, relay, bill, note)
                try:
                    return await anext(frames), frames
                except (ProviderError, BudgetExceeded) as exc:  # the attempt is ended
                    error = exc
            else:
                result = await call.settle(self._json(client, relay, bill))
                if isinstance(result, Served):
                    return result.done, None
                error = result.error
            if isinstance(error, BudgetExceeded):
                raise error
            left = client.provider.timeout_s - (time.monotonic() - started)
            delay = executor.policy.delay(retry, error, executor.rng, left)
            if delay is None or breaker.state == "open":
                break
            await executor.sleep(delay)
            retry += 1
        failed = AllProvidersFailedError(attempts, errors)
        failed.__cause__ = failed.last
        raise failed

    async def _json(self, client: ProviderClient, relay: Relay, bill: _Bill) -> _Done:
        await bill.open()
        t0 = time.perf_counter()
        try:
            body, rid = await client.relay(HttpCall("POST", "/responses", json=relay.body))
        except BaseException as exc:
            bill.failed(exc, _ms(t0))
            raise
        latency = _ms(t0)
        ok = not isinstance(body, dict) or body.get("status") != "failed"
        response = body if isinstance(body, dict) else {}
        cost = bill.write(response, latency, None, rid, "ok" if ok else "error")
        return _Done(body, cost, latency)

    async def _stream(
        self, call: Call, client: ProviderClient, relay: Relay, bill: _Bill, note: Note
    ) -> AsyncGenerator[bytes, None]:
        """The upstream's events as SSE frames, unchanged; its first frame is awaited while
        a failure can still be retried. After that a failure is an ``error`` event."""
        sent = 0  # events relayed: the next sequence_number
        items: list[Any] = []  # hosted-call items done, for fees should the stream break
        t0 = time.perf_counter()
        ttft: float | None = None
        events = client.relay_stream(HttpCall("POST", "/responses", json=relay.body))
        try:
            with call:
                await bill.open()
                async for data, event in events:
                    kind = event
                    parsed: Any = None
                    if kind is None or kind in _ENDS or kind == "response.output_item.done":
                        parsed = _loads(data, relay.target.provider)
                        kind = parsed.get("type") if isinstance(parsed, dict) else None
                    if ttft is None:
                        ttft = _ms(t0)
                    if kind == "response.output_item.done":
                        items.append(parsed.get("item"))
                    elif kind in _ENDS:
                        response = parsed.get("response") or {}
                        status: Status = "error" if kind == "response.failed" else "ok"
                        note.cost_usd = bill.write(response, _ms(t0), ttft, None, status)
                        await self.pr.ledger.durable()
                        call.served(_ms(t0))
                    yield _frame(data, event)
                    sent += 1
                if not bill.done:
                    raise StreamInterruptedError(
                        "stream ended without its end event: the answer is truncated",
                        provider=relay.target.provider,
                    )
        except PolyrouteError as exc:
            if not bill.done:
                bill.failed(exc, _ms(t0), items)
            if not sent:
                raise  # nothing out yet: a plain HTTP error (or the next attempt)
            problem = problem_of(exc)
            note.error = problem.kind
            error: dict[str, Any] = {"type": "error", "code": problem.code or "server_error"}
            error |= {"message": problem.message, "param": None, "sequence_number": sent}
            yield sse(error, "error")
        finally:
            if not bill.done:  # the caller stopped reading
                bill.failed(None, _ms(t0), items)
            await events.aclose()


def _loads(data: str, provider: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise InvalidResponseError("an event that is not JSON", provider=provider) from None


def _input_bound(entry: CatalogModel, calls: int) -> int:
    return (entry.context_window or UNKNOWN_CONTEXT) * (calls + 1)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _frame(data: str, event: str | None) -> bytes:
    head = b"" if event is None else b"event: " + event.encode() + b"\n"
    lines = b"".join(b"data: " + line.encode() + b"\n" for line in data.split("\n"))
    return head + lines + b"\n"


async def _joined(first: bytes, rest: AsyncGenerator[bytes, None] | None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async with aclosing(rest):
            async for frame in rest:
                yield frame


def _headers(target: Target, cost: float | None) -> dict[str, str]:
    return served_headers(target.provider, target.model, cost)


class _Bill:
    """One relayed attempt's money: the worst case held, then one ledger record."""

    def __init__(
        self, pr: Polyroute, client: ProviderClient, relay: Relay, virtual_key: str | None
    ) -> None:
        self.pr = pr
        self.client = client
        self.relay = relay
        self.virtual_key = virtual_key
        self.started = time.time()
        self.reservation: Reservation | None = None
        self.hold: Hold | None = None
        self.done = False

    async def open(self) -> None:
        """Hold the worst case in the rate limits and the budgets (raises
        :class:`BudgetExceeded` or a rate-limit error, holding nothing)."""
        meter = self.pr.meter
        pid, model = self.client.id, self.relay.target.model
        limits = meter.limits
        try:
            if limits is not None and limits.applies(pid, self.virtual_key):
                self.hold = await limits.admit(pid, self.virtual_key, self.relay.worst_tokens)
            self.reservation = await meter.ledger.reserve(
                provider=pid,
                model=model,
                amount_usd=self.relay.worst_usd,
                ts=self.started,
                virtual_key=self.virtual_key,
            )
        except BaseException:
            if self.hold is not None:
                self.hold.release()
            self.done = True  # nothing to record: refused before any call
            raise

    def write(
        self,
        response: Mapping[str, Any],
        latency_ms: float,
        ttft_ms: float | None,
        request_id: str | None,
        status: Status = "ok",
        error_type: str | None = None,
        items: Any = None,
    ) -> float | None:
        """Record the attempt at ``response``'s usage and the fees of its hosted calls
        (``items``: those seen, when there is no final response); return its cost."""
        self.done = True
        meter = self.pr.meter
        model = self.relay.target.model
        usage = usage_of(response)
        fees = fees_of(response.get("output") if items is None else items, self.relay.fees)
        tokens = meter.cost("openai", model, usage)
        cost = None if tokens is None else tokens + fees
        if status == "error" and error_type is None:
            error = response.get("error")
            error_type = str(error.get("code")) if isinstance(error, dict) else "failed"
        record = UsageRecord(
            ts=self.started,
            provider=self.client.id,
            model=str(response.get("model") or model),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_usd=cost,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            reasoning_tokens=usage.reasoning_tokens,
            status=status,
            error_type=error_type,
            request_id=request_id,
            virtual_key=self.virtual_key,
            carbon_g=meter.carbon_g(self.client.id, "openai", model, usage),
        )
        meter.ledger.record(record, self.reservation)
        if self.hold is not None:
            self.hold.settle(usage.total_tokens)
        if status == "ok" and meter.hub.wants("request_succeeded"):
            meter.hub.emit(
                RequestSucceeded(
                    record.provider,
                    record.model,
                    latency_ms,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    cost,
                    request_id,
                )
            )
        return cost

    def failed(self, exc: BaseException | None, latency_ms: float, items: Any = ()) -> None:
        """Record a call that failed (``None``: the caller stopped reading), charged the
        hosted calls seen done."""
        if self.done:
            return
        status: Status = "error" if isinstance(exc, Exception) else "cancelled"
        kind = exc.type if isinstance(exc, ProviderError) else None
        if kind is None and isinstance(exc, Exception):
            kind = type(exc).__name__
        self.write({}, latency_ms, None, None, status, kind, list(items))
        hub = self.pr.meter.hub
        if hub.wants("request_failed"):
            hub.emit(
                RequestFailed(
                    self.client.id,
                    self.relay.target.model,
                    latency_ms,
                    kind or status,
                    str(exc) if exc is not None else "the caller stopped reading the stream",
                    exc.status if isinstance(exc, ProviderError) else None,
                )
            )
