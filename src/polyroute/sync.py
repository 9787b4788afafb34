"""A blocking facade over :class:`~polyroute.Polyroute`, for scripts and notebooks.

::

    from polyroute.sync import SyncPolyroute

    with SyncPolyroute.from_config() as pr:
        print(pr.complete("Explain TCP slow start", priority="cost").content)
        print(pr.fuse("What is 6 x 7?", providers=["openai", "anthropic"]).result)
        for event in pr.stream("Write a haiku"):
            ...

It runs the async client on an event loop of its own (``asyncio.Runner``),
so it cannot be used from inside a running loop: there, await the async
methods instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Unpack

from polyroute.client import Answer, Polyroute, Prompt, Routing
from polyroute.config import Config
from polyroute.config import load as load_config
from polyroute.events import StreamEvent
from polyroute.fusion import FusionMethod, FusionMetrics, FusionResult
from polyroute.ledger import BudgetStatus, GroupBy, UsageReport
from polyroute.router.decision import Decision
from polyroute.router.health import HealthStatus


class SyncPolyroute:
    """The same methods as :class:`~polyroute.Polyroute`, blocking."""

    def __init__(self, config: Config) -> None:
        self._runner = asyncio.Runner()
        self.client = Polyroute(config)

    @classmethod
    def from_config(cls, path: str | None = None) -> SyncPolyroute:
        return cls(load_config(path))

    def complete(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **routing: Unpack[Routing],
    ) -> Answer:
        return self._runner.run(
            self.client.complete(
                prompt, system=system, max_tokens=max_tokens, temperature=temperature, **routing
            )
        )

    def stream(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **routing: Unpack[Routing],
    ) -> Iterator[StreamEvent]:
        """Yield events as they arrive; the stream's ``answer`` is logged in the ledger."""
        s = self.client.stream(
            prompt, system=system, max_tokens=max_tokens, temperature=temperature, **routing
        )
        events = aiter(s)

        async def step() -> StreamEvent | None:
            return await anext(events, None)

        async def close() -> None:
            if isinstance(events, AsyncGenerator):
                await events.aclose()

        try:
            while (event := self._runner.run(step())) is not None:
                yield event
        finally:
            self._runner.run(close())

    def route(
        self,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        **routing: Unpack[Routing],
    ) -> Decision:
        return self.client.route(prompt, system=system, max_tokens=max_tokens, **routing)

    def fuse(
        self,
        prompt: Prompt,
        *,
        method: FusionMethod | None = None,
        providers: Sequence[str] | None = None,
        min_agreement: float | None = None,
        max_tokens: int | None = None,
        system: str | None = None,
        early_stop: bool = False,
        max_cost_usd: float | None = None,
        member_timeout_s: float | None = None,
    ) -> FusionResult:
        """Ask a panel at once and fuse the answers (:meth:`Polyroute.fuse`)."""
        return self._runner.run(
            self.client.fuse(
                prompt,
                method=method,
                providers=providers,
                min_agreement=min_agreement,
                max_tokens=max_tokens,
                system=system,
                early_stop=early_stop,
                max_cost_usd=max_cost_usd,
                member_timeout_s=member_timeout_s,
            )
        )

    def fusion_metrics(self) -> FusionMetrics:
        return self.client.fusion_metrics()

    def usage(
        self, *, by: GroupBy = "provider", provider: str | None = None, since: float | None = None
    ) -> UsageReport:
        return self._runner.run(self.client.usage(by=by, provider=provider, since=since))

    def budgets(self) -> list[BudgetStatus]:
        return self._runner.run(self.client.budgets())

    def health(self, *, timeout_s: float = 10.0) -> list[HealthStatus]:
        return self._runner.run(self.client.health(timeout_s=timeout_s))

    def close(self) -> None:
        """Write the ledger's pending records and release connections."""
        try:
            self._runner.run(self.client.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncPolyroute:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
