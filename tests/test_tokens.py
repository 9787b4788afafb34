"""Tokens are counted one way: a best guess for routing and an upper bound for budgets,
both from polyroute.tokens, the bound never below the guess."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import polyroute.ledger
from polyroute.router.complexity import estimate_complexity
from polyroute.tokens import (
    IMAGE_TOKENS,
    embedding_token_bound,
    estimate_output_tokens,
    estimate_prompt_tokens,
    estimate_text_tokens,
    prompt_token_bound,
)
from polyroute.types import ChatRequest, EmbeddingRequest, ImagePart, Message, TextPart, Tool

TOOL = Tool("lookup", "Look a word up.", {"type": "object", "properties": {}})


def test_the_ledger_reserves_with_the_one_bound() -> None:
    assert polyroute.ledger.prompt_token_bound is prompt_token_bound


def test_the_guess_counts_what_the_bound_counts() -> None:
    image = Message("user", (TextPart("what is this?"), ImagePart("https://example.com/a.png")))
    # an image is tokens for routing too (the old estimate saw only text)
    assert (
        estimate_prompt_tokens([image]) == IMAGE_TOKENS + estimate_text_tokens("what is this?") + 4
    )
    assert estimate_prompt_tokens([image], [TOOL]) > estimate_prompt_tokens([image])
    assert estimate_output_tokens(9) == 3 == estimate_text_tokens("x" * 9)


def test_a_long_ask_is_long_by_the_same_estimate() -> None:
    assert estimate_complexity([Message.user("a " * 200)]) == "medium"  # ~100 tokens > 80
    assert estimate_complexity([Message.user("a " * 100)]) == "simple"


texts = st.text(max_size=200)


@given(
    st.lists(texts, min_size=1, max_size=5),
    st.lists(st.tuples(texts, texts), max_size=3),
    st.integers(0, 2),
)
def test_the_bound_is_never_below_the_guess(
    contents: list[str], tools: list[tuple[str, str]], images: int
) -> None:
    parts = [ImagePart("https://example.com/a.png")] * images
    messages = tuple(Message("user", (TextPart(c), *parts)) for c in contents)
    request = ChatRequest("m", messages, tools=tuple(Tool(n, d, {}) for n, d in tools))
    guess = estimate_prompt_tokens(request.messages, request.tools)
    assert prompt_token_bound(request) >= guess
    bound = embedding_token_bound(EmbeddingRequest("m", tuple(contents)))
    assert bound >= sum(estimate_text_tokens(c) for c in contents)
