"""What a request comes back as: an :class:`Answer`, or an :class:`AnswerStream` of events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from polyroute._frozen import fast_init
from polyroute.errors import BudgetExceeded
from polyroute.events import StreamEnd, StreamEvent, TextDelta, ThinkingDelta
from polyroute.reasoning import thinking_parts
from polyroute.router.decision import Decision
from polyroute.router.executor import ExecutedStream
from polyroute.types import Attempt, ChatRequest, ChatResponse, Target, Usage

if TYPE_CHECKING:
    from polyroute.client import Polyroute


@fast_init
@dataclass(frozen=True, slots=True)
class Answer:
    """A completed request: the reply, who answered, what it cost, how it was decided."""

    new: ClassVar[type[Answer]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    content: str
    provider: str
    model: str
    usage: Usage
    cost_usd: float | None
    """``None`` when the model is unpriced."""
    latency_ms: float
    decision: Decision
    attempts: Sequence[Attempt]
    finish_reason: str = "stop"
    response: ChatResponse | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "provider": self.provider,
            "model": self.model,
            "usage": self.usage.as_dict(),
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 1),
            "decision": self.decision.as_dict(),
            "attempts": [a.as_dict() for a in self.attempts],
        }


def answer_of(
    decision: Decision,
    response: ChatResponse,
    latency_ms: float,
    cost: float | None,
    attempts: Sequence[Attempt],
) -> Answer:
    return Answer.new(
        content=response.content,
        provider=response.provider or decision.provider,
        model=response.model or decision.model,
        usage=response.usage,
        cost_usd=cost,
        latency_ms=latency_ms,
        decision=decision,
        attempts=attempts,
        finish_reason=response.finish_reason,
        response=response,
    )


@dataclass
class AnswerStream:
    """Async-iterate for stream events; ``answer`` is set once the stream has ended.

    Until the first content token a failing provider is replaced by the next
    one, unseen; after it, a failure raises (a truncated answer never ends cleanly).
    """

    owner: Polyroute
    decision: Decision
    request: ChatRequest
    virtual_key: str | None = None
    answer: Answer | None = None
    _parts: list[str] = field(default_factory=list)
    _thinking: list[ThinkingDelta] = field(default_factory=list)
    _run: ExecutedStream | None = None

    @property
    def target(self) -> Target | None:
        """Who is streaming: known from the first event the iteration yields (before
        it, a failing target may still be replaced)."""
        return None if self._run is None else self._run.target

    @property
    def attempts(self) -> Sequence[Attempt]:
        """Every attempt so far, in order."""
        return () if self._run is None else self._run.attempts

    @property
    def cost_usd(self) -> float | None:
        """What the served stream cost, once it has ended (``None``: unpriced or not yet)."""
        return None if self._run is None else self._run.cost_usd

    async def __aiter__(self) -> AsyncGenerator[StreamEvent, None]:
        owner = self.owner
        owner.events.bind(asyncio.get_running_loop())
        run = owner.executor.stream(self.decision, self.request, virtual_key=self.virtual_key)
        self._run = run
        start = time.perf_counter()
        try:
            async for event in run:
                if isinstance(event, TextDelta):
                    self._parts.append(event.text)
                elif isinstance(event, ThinkingDelta):
                    self._thinking.append(event)
                elif isinstance(event, StreamEnd):
                    target = run.target or Target(self.decision.provider, self.decision.model)
                    response = ChatResponse(
                        content="".join(self._parts),
                        model=target.model,
                        finish_reason=event.finish_reason,
                        usage=event.usage,
                        raw_finish_reason=event.raw_finish_reason,
                        provider=target.provider,
                        stop_sequence=event.stop_sequence,
                        thinking=thinking_parts(self._thinking),
                        refusal=event.refusal,
                    )
                    latency = (time.perf_counter() - start) * 1000
                    self.answer = answer_of(
                        self.decision, response, latency, run.cost_usd, run.attempts
                    )
                yield event
        except BudgetExceeded as exc:
            owner.budget_hints.note([exc])
            raise
        finally:
            await run.aclose()
            owner.budget_hints.note(run.refusals)
