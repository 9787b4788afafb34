"""Grouping panel answers: by edit-distance similarity of their keys, or by embedding cosine.

Similarity of two keys is rapidfuzz's ``Levenshtein.normalized_similarity``:
``1 - edit distance / length of the longer``, the seed's measure, so a
threshold means the same as there; it is computed natively (bit-parallel) and,
as grouping only asks "at least the threshold?", with ``score_cutoff`` set, which
lets rapidfuzz bound the work to a band around the diagonal. Equal keys
short-cut to 1.0.

Grouping is *complete-link, greedy, in panel order*: each answer joins the
first existing group whose every member is at least ``threshold`` similar to
it, else it starts a new group. Complete-link (rather than comparing with a
group's first member only, as the seed does) keeps chains apart: A~B and B~C
do not put A and C together unless A~C too. Panel order, not arrival order,
makes the result deterministic; ties between groups are broken by it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Groups = list[list[int]]
"""Groups of answer indices; each group in panel order, groups ordered by first member."""


def similarity(a: str, b: str, *, cutoff: float = 0.0) -> float:
    """Normalised Levenshtein similarity in 0..1; 0.0 when below ``cutoff``."""
    # deferred: rapidfuzz is 7 MiB resident in every gateway, and only fusion needs it
    from rapidfuzz.distance import Levenshtein

    if a == b:
        return 1.0
    return float(Levenshtein.normalized_similarity(a, b, score_cutoff=cutoff))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0.0 if either is all zeros)."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths: {len(a)} and {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


def complete_link(n: int, similar: Callable[[int, int], bool]) -> Groups:
    """Greedy complete-link grouping of items ``0..n-1`` (see module docs)."""
    groups: Groups = []
    for i in range(n):
        for group in groups:
            if all(similar(j, i) for j in group):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def group_texts(keys: Sequence[str], threshold: float) -> Groups:
    """Group comparison keys whose similarity is at least ``threshold``."""
    return complete_link(
        len(keys), lambda i, j: similarity(keys[i], keys[j], cutoff=threshold) >= threshold
    )


def group_vectors(vectors: Sequence[Sequence[float]], threshold: float) -> Groups:
    """Group embeddings whose cosine similarity is at least ``threshold``."""
    return complete_link(len(vectors), lambda i, j: cosine(vectors[i], vectors[j]) >= threshold)


def largest(groups: Groups) -> int:
    """The size of the largest group (0 for none)."""
    return max((len(g) for g in groups), default=0)
