"""Cost of the `auto` complexity estimate on ordinary and adversarial prompts.

Run: ./dev python bench/complexity.py
Target (issue 12, point 9): every 1 MB prompt, whatever its shape, under 5 ms; a normal
prompt in tens of µs. The estimator scans only the instruction of a long ask, so the cost of
a huge prompt is a few linear passes (strip, paragraph split, fence search); an adversarial
shape (runs of newlines, spaces, backticks, list markers) must not make its regexes backtrack.
Measured: best of 5 rounds of wall clock (perf_counter) per call. Sizes 1 KB (the largest ask
scanned whole) and 1 MB.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from polyroute.router.complexity import estimate_complexity
from polyroute.types import Message

MB = 1_000_000
KB = 1_000
TARGET_MS = 5.0
ROUNDS = 5

ORDINARY = {
    "short question": "What is the capital of Australia?",
    "code fix": "Fix this Python function, it raises KeyError when the key is missing:\n"
    "```python\ndef get_price(prices, item):\n    return prices[item] * 1.2\n```",
    "design ask": "Design a distributed rate limiter for a multi-region API serving 1M requests "
    "per second. Discuss consistency trade-offs, failure modes, and how you would test it.",
    "list ask": "Compare these options:\n- one\n- two\n- three\n- four\n- five\n- six\n"
    "Recommend one and justify it.",
}

SHAPES: dict[str, Callable[[int], str]] = {
    "newlines then a": lambda n: "\n" * (n - 1) + "a",
    "spaces then a": lambda n: " " * (n - 1) + "a",
    "newline-space mix": lambda n: "\n \t" * (n // 3) + "a",
    "backticks": lambda n: "`" * n,
    "one long word": lambda n: "a" * n,
    "punctuation": lambda n: "?!.," * (n // 4),
    "list markers, no text": lambda n: "-\n" * (n // 2),
    "markers then spaces": lambda n: "- " + " " * (n - 3) + "\n",
    "numbered, no text": lambda n: "1.\n" * (n // 3),
    "blank paragraphs": lambda n: "\n\n" * (n // 2) + "x",
    "latex-ish": lambda n: "\\x^" * (n // 3),
    "quotes": lambda n: "'" * n,
}


def best_seconds(prompt: str, calls: int) -> float:
    messages = [Message.user(prompt)]
    best = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(calls):
            estimate_complexity(messages)
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def main() -> None:
    print("ordinary prompts")
    for name, prompt in ORDINARY.items():
        print(f"  {name:<24} {best_seconds(prompt, 2_000) * 1e6:8.1f} µs")
    print(f"adversarial shapes (target: 1 MB under {TARGET_MS:.0f} ms)")
    print(f"  {'shape':<24} {'1 KB':>10} {'1 MB':>10}")
    misses = 0
    for name, make in SHAPES.items():
        small = best_seconds(make(KB), 200) * 1e3
        big = best_seconds(make(MB), 3) * 1e3
        ok = big < TARGET_MS
        misses += not ok
        print(f"  {name:<24} {small:8.3f}ms {big:8.3f}ms  {'PASS' if ok else 'MISS'}")
    print("all shapes under target" if not misses else f"{misses} shape(s) over target")


if __name__ == "__main__":
    main()
