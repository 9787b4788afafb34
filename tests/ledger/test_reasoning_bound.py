"""The worst-case reservation covers thinking: the output bound is at least what an adapter
sends as the output limit for a thinking budget, and thinking sent back counts as input."""

from __future__ import annotations

import pytest

from polyroute.catalog import Catalog, CatalogModel, Price
from polyroute.ledger import prompt_token_bound, worst_case_usd
from polyroute.providers.anthropic import AnthropicProtocol
from polyroute.reasoning import ANSWER_TOKENS, EFFORT_BUDGETS, output_tokens_floor
from polyroute.types import ChatRequest, Message, Reasoning, TextPart, ThinkingPart, Usage

PRICE = Price(3.0, 15.0)  # USD per million tokens


def entry(max_output: int | None) -> CatalogModel:
    return CatalogModel("claude-x", "anthropic", max_output_tokens=max_output, price=PRICE)


def request(max_tokens: int | None = None, reasoning: Reasoning | None = None) -> ChatRequest:
    return ChatRequest("claude-x", (Message.user("x" * 30),), max_tokens, reasoning=reasoning)


def test_without_max_tokens_the_bound_reaches_what_the_adapter_sends() -> None:
    high = request(reasoning=Reasoning(effort="high"))
    sent = AnthropicProtocol().chat(high, stream=False).json
    assert sent is not None
    assert output_tokens_floor(high) == sent["max_tokens"] == EFFORT_BUDGETS["high"] + ANSWER_TOKENS
    prompt = prompt_token_bound(high)
    # a catalog bound below the budget (an old or custom entry) does not lower the reservation
    assert worst_case_usd(entry(8192), high) == pytest.approx(
        (prompt * 3.0 + sent["max_tokens"] * 15.0) / 1e6
    )
    assert worst_case_usd(entry(64_000), high) == pytest.approx(
        (prompt * 3.0 + 64_000 * 15.0) / 1e6
    )


def test_with_max_tokens_it_bounds_thinking_too() -> None:
    # Anthropic's max_tokens includes the budget; OpenAI's max_completion_tokens bounds reasoning
    capped = request(max_tokens=3000, reasoning=Reasoning(budget_tokens=20_000))
    assert output_tokens_floor(capped) == 0
    sent = AnthropicProtocol().chat(capped, stream=False).json
    assert sent is not None and sent["max_tokens"] == 3000
    prompt = prompt_token_bound(capped)
    assert worst_case_usd(entry(64_000), capped) == pytest.approx(
        (prompt * 3.0 + 3000 * 15.0) / 1e6
    )


def test_thinking_sent_back_counts_in_the_prompt_bound() -> None:
    thought = ThinkingPart("t" * 300, signature="sig")
    plain = ChatRequest("m", (Message.user("q"), Message("assistant", (TextPart("a"),))))
    with_thinking = ChatRequest(
        "m", (Message.user("q"), Message("assistant", (thought, TextPart("a"))))
    )
    assert prompt_token_bound(with_thinking) == prompt_token_bound(plain) + 100


@pytest.mark.parametrize(
    ("vendor", "model"),
    [("openai", "gpt-5"), ("anthropic", "claude-sonnet-4-6"), ("google", "gemini-2.5-flash")],
)
def test_reasoning_tokens_are_billed_once_inside_the_output(vendor: str, model: str) -> None:
    """Vendors count reasoning inside the output (OpenAI's completion_tokens, Anthropic's
    output_tokens; Gemini's thoughts are added to it by the adapter): never a second time."""
    catalog = Catalog.load()
    plain = catalog.cost(vendor, model, Usage(1000, 500)).usd
    thought = catalog.cost(vendor, model, Usage(1000, 500, reasoning_tokens=400)).usd
    assert plain is not None and thought == plain
