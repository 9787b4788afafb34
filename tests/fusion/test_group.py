"""Grouping: rapidfuzz similarity, complete-link (no chaining), panel order, cosine."""

from __future__ import annotations

import pytest

from polyroute.fusion import (
    complete_link,
    cosine,
    group_texts,
    group_vectors,
    largest,
    similarity,
)


def test_similarity_is_normalised_levenshtein() -> None:
    assert similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert similarity("same", "same") == 1.0
    assert similarity("abc", "xyz") == 0.0
    # below the cutoff, rapidfuzz stops early and reports 0
    assert similarity("kitten", "sitting", cutoff=0.9) == 0.0


def test_group_texts_puts_near_duplicates_together_in_panel_order() -> None:
    keys = ["42", "41", "42", "the answer is 42", "41"]
    assert group_texts(keys, 0.8) == [[0, 2], [1, 4], [3]]
    assert largest(group_texts(keys, 0.8)) == 2


def test_complete_link_keeps_chains_apart() -> None:
    # a~b and b~c, but not a~c: first-member grouping would depend on order; complete-link
    # puts c with b only if it is close to every member
    close = {(0, 1), (1, 2)}

    def similar(i: int, j: int) -> bool:
        return (min(i, j), max(i, j)) in close

    assert complete_link(3, similar) == [[0, 1], [2]]


def test_threshold_bounds() -> None:
    keys = ["abcdefghij", "abcdefghix"]  # 0.9 similar
    assert group_texts(keys, 0.9) == [[0, 1]]
    assert group_texts(keys, 0.91) == [[0], [1]]
    assert group_texts(keys, 0.0) == [[0, 1]]
    assert group_texts([], 0.8) == []


def test_cosine_and_vector_groups() -> None:
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="different lengths"):
        cosine([1.0], [1.0, 2.0])
    vectors = [[1.0, 0.1], [0.0, 1.0], [0.95, 0.2]]
    assert group_vectors(vectors, 0.9) == [[0, 2], [1]]
