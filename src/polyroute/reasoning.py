"""Reasoning asked one way, sent another: effort levels <-> thinking budgets, in one place.

Callers ask with an effort (OpenAI ``reasoning_effort``, Responses ``reasoning.effort``)
or with a budget of thinking tokens (Anthropic ``thinking.budget_tokens``). Vendors take
one or the other: OpenAI and Mistral an effort, Anthropic and Gemini 2.5 a budget, Gemini 3
a level. The translation:

==========  ===========  ==============================================================
effort      budget       why this number
==========  ===========  ==============================================================
minimal     1,024        Anthropic's smallest budget
low         2,048        twice the least: enough to plan a short answer
medium      8,192        Gemini 2.5's dynamic thinking lands around here on mid tasks
high        24,576       Gemini 2.5 Flash's largest budget (Pro allows 32,768), so
                         one number fits every Gemini 2.5 model
==========  ===========  ==============================================================

A budget read as an effort is the largest effort whose budget it reaches (below
1,024: ``minimal``), so each effort's budget maps back to the same effort.

Every vendor counts thinking inside the output limit (OpenAI's ``max_completion_tokens``,
Anthropic's ``max_tokens``, Gemini's ``maxOutputTokens``), so ``max_tokens`` still bounds
what a call bills. A request without ``max_tokens`` is sent the budget plus room to answer
(:data:`ANSWER_TOKENS`); :func:`output_tokens_floor` tells the budget reservation so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeAlias

from polyroute.events import ThinkingDelta
from polyroute.types import ChatRequest, Reasoning, ThinkingPart

Effort: TypeAlias = Literal["minimal", "low", "medium", "high"]

EFFORT_BUDGETS: dict[Effort, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
}

MIN_BUDGET = EFFORT_BUDGETS["minimal"]
"""The least thinking budget Anthropic takes."""

ANSWER_TOKENS = 4096
"""Output tokens left for the answer after the thinking budget, when the request sets no
``max_tokens`` (Anthropic requires one, and it must exceed the budget)."""


def budget_of(reasoning: Reasoning) -> int:
    """The thinking budget asked for: given, or the effort's."""
    if reasoning.budget_tokens is not None:
        return reasoning.budget_tokens
    return EFFORT_BUDGETS[reasoning.effort or "medium"]


def effort_of(reasoning: Reasoning) -> Effort:
    """The effort asked for: given, or the largest one the budget reaches."""
    if reasoning.effort is not None:
        return reasoning.effort
    budget = reasoning.budget_tokens or 0
    reached: Effort = "minimal"
    for effort, least in EFFORT_BUDGETS.items():
        if budget >= least:
            reached = effort
    return reached


def output_tokens_floor(request: ChatRequest) -> int:
    """The output tokens an adapter may send as the limit of a request without
    ``max_tokens`` (0 when it asks no reasoning): the budget plus room to answer."""
    if request.reasoning is None or request.max_tokens is not None:
        return 0
    return budget_of(request.reasoning) + ANSWER_TOKENS


def thinking_parts(deltas: Iterable[ThinkingDelta]) -> tuple[ThinkingPart, ...]:
    """A stream's thinking deltas as whole blocks, in the order they began."""
    texts: dict[int, list[str]] = {}
    signatures: dict[int, str] = {}
    redacted: set[int] = set()
    for d in deltas:
        texts.setdefault(d.index, []).append(d.text)
        if d.signature:
            signatures[d.index] = d.signature
        if d.redacted:
            redacted.add(d.index)
    return tuple(
        ThinkingPart("".join(t), signatures.get(i), i in redacted) for i, t in texts.items()
    )
