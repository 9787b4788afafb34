"""Normalisation before comparison: final-answer extraction, canonical text, the length rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyroute.fusion import (
    CONCLUSION_CHARS,
    MAX_FINAL_ANSWER_CHARS,
    SHORT_ANSWER_CHARS,
    canonical,
    comparison_key,
    extract_final_answer,
)


@pytest.mark.parametrize(
    "text",
    [
        "42",
        "The answer is 42.",
        "the answer is 42",
        "Answer: 42",
        "Final answer: **42**",
        "The final answer is: 42!",
        "**42**",
        "6 x 7 = 42",
        "6 \N{MULTIPLICATION SIGN} 7 = **42**",
        "We multiply 6 by 7.\nAnswer = 42",
        "Six sevens are forty-two, so \\boxed{42}.",
        "I think the answer is **42**. Because 6 times 7 is 42.",
        "  42 \n",
    ],
)
def test_final_answers_compare_equal_to_the_bare_answer(text: str) -> None:
    assert comparison_key(text) == "42"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("The answer is 42.", "42"),
        ("Answer: Paris", "Paris"),
        ("answer is 3.14.", "3.14"),
        ("x = 5 and y = 6", "6"),  # the trailing "= X" ends the text
        ("Answer: 1. Then answer: 2.", "2"),  # the last marker wins
        ("**41**", "41"),
        ("The capital is Paris.", None),
        ("no marker at all", None),
    ],
)
def test_extract_final_answer(text: str, found: str | None) -> None:
    assert extract_final_answer(text) == found


def test_an_over_long_extraction_is_prose_not_a_final_answer() -> None:
    text = "The answer is " + "that it depends on many things " * 4
    assert len(text.removeprefix("The answer is ")) > MAX_FINAL_ANSWER_CHARS
    assert extract_final_answer(text) is None
    assert comparison_key(text) == canonical(text)  # short enough: canonical as a whole


def test_a_long_answer_concludes_at_its_end() -> None:
    body = "We work through the problem step by step and check every case. " * 8
    assert len(body) > CONCLUSION_CHARS
    assert comparison_key(body + "\nFinal answer: 42") == "42"
    # a marker far from the end of a long answer is prose, not its conclusion
    assert extract_final_answer("The answer is 42. " + body) is None


def test_bold_is_a_final_answer_only_in_short_answers() -> None:
    short = "It is **Paris**, of course."
    assert extract_final_answer(short) == "Paris"
    prose = "Some **emphasis** here. " + "More words follow in a long answer. " * 10
    assert len(prose) > SHORT_ANSWER_CHARS
    assert extract_final_answer(prose) is None


@pytest.mark.parametrize(
    ("text", "canon"),
    [
        ("  The  ANSWER: **1,000**!", "the answer 1000"),
        ("Paris.", "paris"),
        ("PARIS", "paris"),
        ("3.14", "3.14"),
        ("-2", "-2"),
        ("well-known", "well known"),
        ("`code` _under_", "code under"),
        ("\uff26\uff55\uff4c\uff4c \uff57\uff49\uff44\uff54\uff48", "full width"),  # NFKC
        ("Straße", "strasse"),  # case-folding, not just lower()
    ],
)
def test_canonical(text: str, canon: str) -> None:
    assert canonical(text) == canon


def test_long_prose_keeps_punctuation_but_not_case_or_spacing() -> None:
    prose = "First, THE point.\n\n" + "Words, words; more words. " * 10
    assert len(prose) > SHORT_ANSWER_CHARS
    key = comparison_key(prose)
    assert key.startswith("first, the point. words, words;")
    assert "  " not in key and "\n" not in key


@given(st.text(max_size=300))
def test_keys_are_idempotent_on_short_canonical_text(text: str) -> None:
    once = canonical(text)
    assert canonical(once) == once
    assert comparison_key(text) == comparison_key(text)  # deterministic
