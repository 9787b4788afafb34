"""Fusion grouping: 5 answers of 4 KB each, ours (rapidfuzz) vs the seed's pure-Python Levenshtein.

Run: ./dev python bench/fusion.py [--baseline-runs N]
Target (the fusion issue): p50 under 5 ms to group the 5 answers, normalisation included.
Input: realistic varied prose (sentences of technical English, punctuation, numbers), 4,096
characters each: two near-duplicate pairs (a few percent of words changed, a sentence added) and
one unrelated answer, so the right grouping is [[0, 1], [2, 3], [4]]. Threshold 0.80, the
default `[fusion] similarity_threshold`.
Ours: `comparison_key` on each answer, then `group_texts` (complete-link, rapidfuzz
`Levenshtein.normalized_similarity` with `score_cutoff`), wall clock per grouping over
2,000 groupings after a warm-up. Also timed on 5 near-duplicates and on 5 unrelated answers (the
cheapest and dearest cases for the cutoff).
Baseline, the seed's approach (section 2.6, `groupSimilarResponses`): compare each answer with
each group's first member by `(longer - levenshtein) / longer > 0.80`, the Levenshtein an
O(n*m) dynamic programme in pure Python. Ported as the seed wrote it, except that it keeps two
rows instead of the full (n+1) x (m+1) matrix (the same arithmetic; the full matrix would need
about half a gigabyte of Python ints per pair), so it is if anything faster than the seed's.
It takes about ten seconds a pair, so it runs only a few times (`--baseline-runs`, default 3).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable

from polyroute.fusion import comparison_key, group_texts

SIZE = 4096
THRESHOLD = 0.80
RUNS = 2_000
WARMUP = 200
TARGET_P50_MS = 5.0

VOCABULARY = (
    "the a an of to in for on with by from as at that this which it is are was be can will "
    "request provider model router budget ledger token cost latency stream fallback retry "
    "breaker circuit health cache prompt answer panel fusion group vote weight agreement "
    "throughput database transaction reservation limit period alert vendor error status "
    "timeout connection pool client server gateway endpoint schema migration record query "
    "because however therefore although while when if then otherwise each every some most "
    "fast slow cheap expensive reliable concurrent atomic consistent available durable "
    "should must may never always often rarely first second finally next also only"
)
WORDS = VOCABULARY.split()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# -- input -----------------------------------------------------------------------


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 9_999)))
    if rng.random() < 0.2:
        words[rng.randrange(len(words))] += ","
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".....?!")


def answer(rng: random.Random) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < SIZE:
        parts.append(sentence(rng))
        if rng.random() < 0.15:
            parts.append("\n\n")
    return " ".join(parts)[:SIZE]


def near_duplicate(text: str, rng: random.Random, change: float = 0.03) -> str:
    """The same answer reworded a little: a few words changed, a sentence added, cut to SIZE."""
    words = text.split(" ")
    for _ in range(int(len(words) * change)):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    at = rng.randrange(len(words))
    words[at:at] = sentence(rng).split(" ")
    return " ".join(words)[:SIZE]


def inputs(rng: random.Random) -> dict[str, list[str]]:
    a, b, c = answer(rng), answer(rng), answer(rng)
    mixed = [a, near_duplicate(a, rng), b, near_duplicate(b, rng), c]
    same = [a] + [near_duplicate(a, rng) for _ in range(4)]
    distinct = [answer(rng) for _ in range(5)]
    return {
        "2 near-duplicate pairs + 1 other": mixed,
        "5 near-duplicates": same,
        "5 unrelated answers": distinct,
    }


# -- ours ---------------------------------------------------------------------------


def ours(answers: list[str]) -> list[list[int]]:
    return group_texts([comparison_key(a) for a in answers], THRESHOLD)


# -- the seed's approach (baseline) ----------------------------------------------------


def seed_levenshtein(a: str, b: str) -> int:
    """The seed's ``levenshteinDistance``: the O(n*m) table, filled row by row in Python."""
    prev = list(range(len(a) + 1))
    for i in range(1, len(b) + 1):
        cur = [i] + [0] * len(a)
        bc = b[i - 1]
        for j in range(1, len(a) + 1):
            if bc == a[j - 1]:
                cur[j] = prev[j - 1]
            else:
                cur[j] = min(prev[j - 1] + 1, cur[j - 1] + 1, prev[j] + 1)
        prev = cur
    return prev[len(a)]


def seed_similarity(a: str, b: str) -> float:
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    if not longer:
        return 1.0
    return (len(longer) - seed_levenshtein(longer, shorter)) / len(longer)


def seed_group(answers: list[str]) -> list[list[int]]:
    """The seed's ``groupSimilarResponses``: first-member comparison, ``> 0.80``."""
    groups: list[list[int]] = []
    for i, text in enumerate(answers):
        for group in groups:
            if seed_similarity(text, answers[group[0]]) > THRESHOLD:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


# -- timing -------------------------------------------------------------------------


def time_ms(
    fn: Callable[[list[str]], list[list[int]]], answers: list[str], runs: int
) -> tuple[list[float], list[list[int]]]:
    """Wall clock of each run, and the groups found."""
    gc.collect()
    out = []
    groups: list[list[int]] = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        groups = fn(answers)
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-runs", type=int, default=3, help="seed baseline runs")
    args = parser.parse_args()

    cases = inputs(random.Random(11))
    print(f"grouping 5 answers of {SIZE:,} characters, threshold {THRESHOLD}")
    print()
    print(f"  ours: comparison_key + group_texts, {RUNS:,} runs after {WARMUP} warm-up, ms")
    print(f"  {'input':<34} {'p50':>8} {'p90':>8} {'p99':>8}  groups")
    results: dict[str, float] = {}
    found: dict[str, list[list[int]]] = {}
    for name, answers in cases.items():
        for _ in range(WARMUP):
            ours(answers)
        ms, groups = time_ms(ours, answers, RUNS)
        results[name] = statistics.median(ms)
        found[name] = groups
        print(f"  {name:<34} {results[name]:8.3f} {pct(ms, 90):8.3f} {pct(ms, 99):8.3f}  {groups}")

    name = "2 near-duplicate pairs + 1 other"
    answers = cases[name]
    print()
    print(f"  the seed's approach: pure-Python O(n*m) Levenshtein, {args.baseline_runs} run(s), ms")
    base, seed_groups = time_ms(seed_group, answers, args.baseline_runs)
    base_p50 = statistics.median(base)
    same = seed_groups == found[name]
    print(f"  {name:<34} {base_p50:8.0f}   groups {seed_groups}")
    print()
    p50 = results[name]
    print(
        f"  p50 per grouping: ours {p50:.3f} ms, the seed's {base_p50:,.0f} ms ({base_p50 / p50:,.0f}x)"
    )
    print(f"  same groups: {'yes' if same else 'no'}")
    print(f"  target: ours p50 < {TARGET_P50_MS:.0f} ms  {verdict(p50 < TARGET_P50_MS)}")


if __name__ == "__main__":
    main()
