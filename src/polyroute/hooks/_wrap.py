"""The hooked executor: the one place hooks run for every completion, stream and
embeddings request, whether it comes from the library, the CLI or the gateway.

:class:`HookedExecutor` views the executor the facade built (traced or not): pre-request
hooks run once, before routing's first target is tried (a refusal costs no call and no
budget); post-response hooks see the answer that served. A stream's text goes through each
hook's :class:`~polyroute.hooks.StreamFilter` before the consumer sees it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Any

from polyroute.events import StreamEnd, StreamEvent, TextDelta
from polyroute.hooks._chain import Hooks
from polyroute.hooks._hook import HookContext
from polyroute.router.decision import Decision
from polyroute.router.executor import Executed, ExecutedEmbedding, ExecutedStream, Executor
from polyroute.types import ChatRequest, EmbeddingRequest, Target

__all__ = ["HookedExecutor", "HookedStream"]


class HookedExecutor(Executor):
    """A view of an :class:`Executor` whose requests go through ``hooks``; its state
    (meter, breakers...) is read through from the executor it views."""

    def __init__(self, viewed: Executor, hooks: Hooks) -> None:  # a view: no own state
        self.viewed = viewed
        self.hooks = hooks

    def __getattr__(self, name: str) -> Any:
        return getattr(self.viewed, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("viewed", "hooks"):
            object.__setattr__(self, name, value)
        else:  # e.g. a test's ``sleep``: the executor that runs the calls is the viewed one
            setattr(self.viewed, name, value)

    async def complete(
        self, decision: Decision, request: ChatRequest, *, virtual_key: str | None = None
    ) -> Executed:
        ctx = HookContext("chat", False, virtual_key)
        request = await self.hooks.request(request, ctx)
        done = await self.viewed.complete(decision, request, virtual_key=virtual_key)
        response = await self.hooks.response(done.response, ctx)
        return done if response is done.response else replace(done, response=response)

    def stream(
        self, decision: Decision, request: ChatRequest, *, virtual_key: str | None = None
    ) -> ExecutedStream:
        return HookedStream(self.viewed, self.hooks, decision, request, virtual_key)

    async def embed(
        self,
        targets: Sequence[Target],
        request: EmbeddingRequest,
        *,
        virtual_key: str | None = None,
    ) -> ExecutedEmbedding:
        ctx = HookContext("embeddings", False, virtual_key)
        request = await self.hooks.embedding(request, ctx)
        return await self.viewed.embed(targets, request, virtual_key=virtual_key)


class HookedStream(ExecutedStream):
    """A stream whose request is hooked when iteration starts and whose text goes through
    the hooks' filters; what happened (attempts, target, cost) is the inner stream's."""

    __slots__ = ("_hooks",)

    def __init__(
        self,
        executor: Executor,
        hooks: Hooks,
        decision: Decision,
        request: ChatRequest,
        virtual_key: str | None,
    ) -> None:
        super().__init__(executor, decision, request, virtual_key)
        self._hooks = hooks

    def _sync(self, inner: ExecutedStream) -> None:
        self.target = inner.target
        self.cost_usd = inner.cost_usd
        self.latency_ms = inner.latency_ms
        self.ttft_ms = inner.ttft_ms

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        hooks = self._hooks
        ctx = HookContext("chat", True, self.virtual_key)
        request = await hooks.request(self.request, ctx)
        inner = self.executor.stream(self.decision, request, virtual_key=self.virtual_key)
        self.attempts = inner.attempts  # the same lists, filled as the inner stream goes
        self.refusals = inner.refusals
        filters = hooks.filters(ctx)
        try:
            async for event in inner:
                self._sync(inner)
                if filters:
                    if isinstance(event, TextDelta):
                        text = await hooks.chunk(filters, event.text)
                        if text:
                            yield TextDelta(text)
                        continue
                    if isinstance(event, StreamEnd):
                        rest = await hooks.end(filters)
                        if rest:
                            yield TextDelta(rest)
                yield event
        finally:
            await inner.aclose()
            self._sync(inner)
