"""With ``n`` > 1 every answer can take ``max_tokens``: the budget's worst case holds all of
them, so concurrent requests for several answers cannot together spend past a limit."""

from __future__ import annotations

import pytest

from polyroute.catalog import CatalogModel, Price
from polyroute.ledger import prompt_token_bound, worst_case_usd
from polyroute.types import ChatRequest, Message

ENTRY = CatalogModel("m", "openai", max_output_tokens=100, price=Price(1.0, 2.0))


def test_the_worst_case_holds_every_answer() -> None:
    one = ChatRequest("m", [Message.user("x" * 30)], max_tokens=50)
    three = ChatRequest("m", [Message.user("x" * 30)], max_tokens=50, n=3)
    prompt = prompt_token_bound(one)
    assert worst_case_usd(ENTRY, one) == pytest.approx((prompt * 1.0 + 50 * 2.0) / 1e6)
    assert worst_case_usd(ENTRY, three) == pytest.approx((prompt * 1.0 + 3 * 50 * 2.0) / 1e6)
