"""The calling endpoints: chat in any inbound format, and embeddings.

One flow for every format: authenticate, read the body (refused past the
limit while it is read), parse it the format's way, select, call, render.
Streams hold their response head until the first event, so a failure before
the first token is still a plain HTTP error with its status, and the headers
name the provider and model actually streaming. After the first token a failure
is the format's in-stream error frame, never a clean end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from polyroute._steps import Rest
from polyroute.errors import GatewayError, PolyrouteError
from polyroute.events import StreamEnd, StreamEvent, StreamStart, TextDelta
from polyroute.gateway._anthropic import with_betas
from polyroute.gateway._observe import Note, note_of
from polyroute.gateway._openai import error_object as openai_error
from polyroute.gateway._openai import parse_embeddings, render_embeddings
from polyroute.gateway._problems import problem_of
from polyroute.gateway._wire import ChatFormat, Inbound, Problem, Reply, StreamEncoder, dumps
from polyroute.types import Usage

if TYPE_CHECKING:
    from polyroute.client import AnswerStream, Polyroute
    from polyroute.fusion import FusionMethod
    from polyroute.gateway._auth import Auth, Caller
    from polyroute.gateway._select import Choice, Selector

JSON = "application/json"
log = logging.getLogger("polyroute.gateway")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes:
    from ``content-length`` before reading, or while reading a chunked one."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    # straight from ``receive``: starlette's ``Request.stream`` is an async generator
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the caller left
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Answered(Response):
    """A 200 JSON answer with its served headers (ASCII: :func:`header_text`): the same
    headers, in the same order, as ``Response(body, 200, headers, JSON)``, without its
    generic ``init_headers`` (1.8 -> 0.8 µs)."""

    media_type = JSON

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = _raw(
            headers, (b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")
        )


def _raw(headers: dict[str, str], *more: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """``headers`` (lower-case names, ASCII values) as ASGI's, then ``more``."""
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    raw += more
    return raw


def _too_large(limit: int) -> GatewayError:
    return GatewayError(f"request body over the gateway's limit of {limit:,} bytes", status=413)


def cost_header(cost: float | None) -> str:
    return "unpriced" if cost is None else f"{cost:.9f}"


def served_headers(provider: str, model: str, cost: float | None) -> dict[str, str]:
    return {
        "x-polyroute-provider": header_text(provider),
        "x-polyroute-model": header_text(model),
        "x-polyroute-cost-usd": cost_header(cost),
    }


_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_text(text: str) -> str:
    """``text`` as a header value: printable ASCII as is, anything else percent-encoded
    (UTF-8). Upstreams echo model names, and a bad one must not fail a paid answer."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe=_HEADER_SAFE)


def problem_response(body: bytes, problem: Problem, note: Note) -> Response:
    note.error = problem.kind
    headers = {}
    if problem.retry_after is not None:
        # rounded up: a retry at the rounded-down second would be refused again
        headers["retry-after"] = f"{max(1, math.ceil(problem.retry_after))}"
    if problem.kind in _FINAL:
        headers["x-should-retry"] = "false"  # the official SDKs would otherwise retry twice
    return Response(body, problem.status, headers, JSON)


_FINAL = frozenset({"budget", "upstream"})
"""Refusals a client retry cannot change: a budget, or upstreams the gateway already retried
and fell back from."""


class Calls:
    """The calling endpoints of one gateway."""

    def __init__(self, polyroute: Polyroute, auth: Auth, selector: Selector, limit: int) -> None:
        self.pr = polyroute
        self.auth = auth
        self.selector = selector
        self.limit = limit

    def chat(self, fmt: ChatFormat) -> ChatEndpoint:
        return ChatEndpoint(self, fmt)

    async def embeddings(self, request: Request) -> Response:
        note = note_of(request.scope)
        try:
            caller = await self.auth.caller(request.headers)
            note.key = caller.key_id
            embedding, b64 = parse_embeddings(await read_body(request, self.limit))
            target = self.selector.embedding(embedding.model, caller)
            if target is not None:
                embedding = replace(embedding, model=target.model)
            done = await self.pr.embed(
                embedding,
                provider=None if target is None else target.provider,
                virtual_key=caller.key_id,
            )
            await self.pr.ledger.durable()  # [storage] durability: recorded before answered
        except PolyrouteError as exc:
            problem = problem_of(exc)
            return problem_response(dumps({"error": openai_error(problem)}), problem, note)
        response = done.response
        model = response.model or done.target.model
        note.provider, note.model, note.cost_usd = done.target.provider, model, done.cost_usd
        body = render_embeddings(model, response.vectors, response.usage, b64)
        headers = served_headers(done.target.provider, model, done.cost_usd)
        return Response(body, 200, headers, JSON)


class ChatEndpoint:
    """``POST`` of one chat format (``/v1/chat/completions``, ``/v1/messages``)."""

    def __init__(self, calls: Calls, fmt: ChatFormat) -> None:
        self.calls = calls
        self.fmt = fmt

    async def handle(self, request: Request) -> Response:
        calls = self.calls
        note = note_of(request.scope)
        try:
            caller = await calls.auth.caller(request.headers)
            note.key = caller.key_id
            raw = await read_body(request, calls.limit)
            relayed = await self.relayed(raw, caller, note)
            if relayed is not None:
                return relayed
            inbound = await self.inbound(raw, caller)
            inbound = with_betas(inbound, request.headers.getlist("anthropic-beta"))
            choice = calls.selector.chat(inbound.request, inbound.hints, caller)
            if choice.fusion is not None:
                return await self._fuse(inbound, choice, choice.fusion, caller, note)
            if inbound.stream:
                return await self._stream(inbound, choice, caller, note)
            answer = await calls.pr.send(
                inbound.request, virtual_key=caller.key_id, **choice.routing
            )
            await calls.pr.ledger.durable()  # [storage] durability: recorded before answered
            body = await self.rendered(inbound, Reply.of(answer), caller)
        except PolyrouteError as exc:
            return self._problem(exc, note)
        note.provider, note.model, note.cost_usd = answer.provider, answer.model, answer.cost_usd
        return Answered(body, served_headers(answer.provider, answer.model, answer.cost_usd))

    # a format that keeps state (the Responses API) overrides these four
    async def relayed(self, raw: bytes, caller: Caller, note: Note) -> Response | None:
        """The whole answer, where the format relays ``raw`` to an upstream as it is."""
        return None

    async def inbound(self, raw: bytes, caller: Caller) -> Inbound:
        """The parsed request, with whatever it continues."""
        return self.fmt.parse(raw)

    async def rendered(self, inbound: Inbound, reply: Reply, caller: Caller) -> bytes:
        """A finished answer's body (once it is recorded)."""
        return self.fmt.render(reply)

    def ending(
        self, inbound: Inbound, encoder: StreamEncoder, caller: Caller
    ) -> Callable[[], Awaitable[None]]:
        """What a stream's end frame waits for (once the encoder has seen the end)."""
        return self.calls.pr.ledger.durable

    def _problem(self, exc: PolyrouteError, note: Note) -> Response:
        problem = problem_of(exc)
        return problem_response(self.fmt.error_body(problem), problem, note)

    async def _stream(
        self, inbound: Inbound, choice: Choice, caller: Caller, note: Note
    ) -> Response:
        stream = self.calls.pr.send_stream(
            inbound.request, virtual_key=caller.key_id, **choice.routing
        )
        events = stream.__aiter__()
        # failing targets are replaced until this first event; an error here (raised, so
        # the generator is already closed) is a plain HTTP error
        first = await anext(events)
        decision = stream.decision
        target = stream.target
        provider = decision.provider if target is None else target.provider
        model = decision.model if target is None else target.model
        note.provider, note.model = provider, model
        headers = served_headers(provider, model, decision.estimated_cost_usd)
        headers["x-polyroute-cost-estimated"] = "true"  # the actual cost is known at the end
        headers["cache-control"] = "no-cache"
        encoder = self.fmt.encoder(inbound, model)
        durable = self.ending(inbound, encoder, caller)
        return _Frames(first, events, stream, encoder, note, durable, headers)

    async def _fuse(
        self, inbound: Inbound, choice: Choice, method: FusionMethod, caller: Caller, note: Note
    ) -> Response:
        request = inbound.request
        fused = await self.calls.pr.fuse(
            list(request.messages),
            method=method,
            max_tokens=request.max_tokens,
            max_cost_usd=choice.routing.get("max_cost_usd"),
        )
        await self.calls.pr.ledger.durable()  # [storage] durability: recorded before answered
        model = f"fusion:{method}"
        note.provider, note.model, note.cost_usd = "fusion", model, fused.total_cost_usd
        headers = served_headers("fusion", model, fused.total_cost_usd)
        if not inbound.stream:
            body = await self.rendered(inbound, Reply(fused.result, model, Usage()), caller)
            return Response(body, 200, headers, JSON)
        encoder = self.fmt.encoder(inbound, model)
        events: tuple[StreamEvent, ...] = (
            StreamStart("", model),
            TextDelta(fused.result),
            StreamEnd("stop", Usage()),
        )
        frames = [encoder.event(e) for e in events]
        await self.ending(inbound, encoder, caller)()
        return Response(b"".join(frames), 200, headers, "text/event-stream")


class _Frames(StreamingResponse):
    """The SSE response of a stream: the format's frames, or its error frame if the stream
    fails. The end's frame (the last bytes) waits for the ledger's commit of the stream's
    record.

    Frames whose events came without a wait (one network read carries several) go out as
    one body message, one socket write; none is held back: what is ready goes out as soon
    as the next event has to be waited for (the upstream's next read, the commit)."""

    def __init__(
        self,
        first: StreamEvent,
        events: AsyncGenerator[StreamEvent, None],
        stream: AnswerStream,
        encoder: StreamEncoder,
        note: Note,
        durable: Callable[[], Awaitable[None]],
        headers: dict[str, str],
    ) -> None:
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background = None
        # what starlette's ``init_headers`` makes of them, without its generic steps
        self.raw_headers = _raw(headers, (b"content-type", b"text/event-stream; charset=utf-8"))
        self._first = first
        self._events = events
        self._stream = stream
        self._encoder = encoder
        self._note = note
        self._durable = durable
        self._watch: asyncio.Task[None] | None = None  # the caller's hanging up, watched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Starlette's, without anyio's task group: a task waiting on ``receive`` cancels
        the stream's task when the caller hangs up, and that cancellation ends here, as the
        task group's would. Starlette's costs about 75 µs a stream (a cancel scope, a task
        group, a task's ``repr`` in the cancel message); this, a task and its cancel."""
        task = asyncio.current_task()
        assert task is not None
        hung_up = self._watch = asyncio.get_running_loop().create_task(_hang_up(receive, task))
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not hung_up.done() or hung_up.cancelled() or hung_up.exception() is not None:
                raise  # not the caller's leaving: a shutdown's or a timeout's
            task.uncancel()
        finally:
            hung_up.cancel()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self._send, self._gone, self._ended = send, False, False
        await self._body()
        if not self._ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _body(self) -> None:
        events, encoder = self._events, self._encoder
        ready: list[bytes] = []
        write = self._write
        event = self._first
        try:
            while True:
                frame = encoder.event(event)
                if isinstance(event, StreamEnd):
                    await self._end(frame, ready)
                    return
                if frame:
                    ready.append(frame)
                step = events.__anext__()
                try:
                    waiting = step.send(None)  # run it as far as it goes without a wait
                except StopIteration as got:
                    event = got.value
                except StopAsyncIteration:
                    break
                else:  # it waits: what is ready goes out first
                    if ready:
                        try:
                            await write(ready)
                        except BaseException as exc:
                            await _unwind(step, waiting, exc)
                            raise
                    try:
                        event = await Rest(step, waiting)
                    except StopAsyncIteration:
                        break
            if ready:
                await write(ready)
        except PolyrouteError as exc:
            await write([*ready, self._error(problem_of(exc))])
        except Exception:  # a bug past the head: still an error frame, never a clean end
            if self._gone:
                raise
            log.exception("a gateway stream failed after its first event")
            problem = Problem(500, "internal", "the gateway failed this stream (its log says why)")
            await write([*ready, self._error(problem)])
        finally:
            await events.aclose()  # the caller left early: the upstream is closed and recorded
            self._note.cost_usd = self._stream.cost_usd

    async def _end(self, frame: bytes, ready: list[bytes]) -> None:
        """The end event's ``frame`` ends the response, after the ledger's commit, in one
        write; the stream's own end (its layers return, the upstream is closed) follows,
        off the caller's clock."""
        if ready:
            await self._write(ready)  # not held back by the commit
        await self._durable()
        await self._write([frame], more=False)
        self._ended = True
        if self._watch is not None:
            self._watch.cancel()  # the caller may go now: nothing is left to cut short
        try:
            async for _ in self._events:  # nothing comes after the end event
                pass
        except Exception:  # a bug: the answer went out whole, and the connection goes on
            log.exception("a gateway stream failed after its end was sent")

    async def _write(self, frames: list[bytes], more: bool = True) -> None:
        """Send ``frames`` as one body message, and forget them."""
        body = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
        except BaseException:
            self._gone = True  # the caller's failure, raised as it came: no error frame
            raise

    def _error(self, problem: Problem) -> bytes:
        """The format's error frame for ``problem``, noted."""
        self._note.error = problem.kind
        return self._encoder.error(problem)


async def _hang_up(receive: Receive, stream: asyncio.Task[Any]) -> None:
    """Wait for the caller to hang up, then cancel ``stream``."""
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.cancel()


async def _unwind(
    step: Coroutine[Any, Any, StreamEvent], waiting: object, exc: BaseException
) -> None:
    """End ``step``, in flight while a send failed with ``exc``. A cancellation (a timeout's
    too) is what it was waiting for: it gets that. Else the caller is gone: a cancellation
    unwinds it as a caller that stopped reading does (the attempt recorded as cancelled,
    never as the upstream's failure); then the caller's failure is raised."""
    if isinstance(exc, asyncio.CancelledError):
        await Rest(step, waiting, exc)
        return
    with contextlib.suppress(asyncio.CancelledError):  # ours: the send's failure is raised
        await Rest(step, waiting, asyncio.CancelledError())
