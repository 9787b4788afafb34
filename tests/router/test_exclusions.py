"""``Exclusions``: a decision's excluded pairs, some made only when first read."""

from __future__ import annotations

from polyroute.router.decision import Excluded, Exclusions


def test_deferred_entries_are_made_when_read_in_the_order_found() -> None:
    made: list[int] = []

    def make(i: int) -> Excluded:
        made.append(i)
        return Excluded(f"p{i}", "m", f"reason {i}")

    ex = Exclusions([Excluded("a", "m", "disabled")])
    ex.defer([3, 1], make)
    ex.defer([], make)  # nothing to add
    ex.append(Excluded("b", "m", "breaker open"))
    assert len(ex) == 4 and made == []  # counted, not made
    assert [e.provider for e in ex] == ["a", "p3", "p1", "b"]
    assert made == [3, 1]
    assert ex[1].reason == "reason 3" and made == [3, 1]  # made once
    ex.append(Excluded("c", "m", "late"))
    assert len(ex) == 5 and ex[-1].provider == "c" and made == [3, 1]


def test_equality_hash_and_repr_are_those_of_the_pairs() -> None:
    ex = Exclusions()
    ex.defer([0], lambda i: Excluded("p", "m", "why"))
    assert ex == (Excluded("p", "m", "why"),) == Exclusions([Excluded("p", "m", "why")])
    assert ex == [Excluded("p", "m", "why")] and ex != "p"
    assert hash(ex) == hash((Excluded("p", "m", "why"),))
    assert "reason='why'" in repr(ex)
    assert Exclusions() == () and not Exclusions()
