"""What a rate-limited call costs: one admission plus its settlement, in process and in Redis.

Run: ./dev python bench/limits.py [REDIS_URL]
Measured, sequentially after a warm-up (N calls each):
1. no limit configured: ``Limiter.applies`` (what the meter asks before anything else; false,
   so nothing else runs);
2. in process: ``await admit(...)`` (a key's and a provider's window, rpm and tpm) plus
   ``hold.settle(tokens)``; the windows hold the last minute's entries, as under load;
3. with REDIS_URL: the same through Redis, one EVALSHA for the admission (awaited) and one
   for the settlement (sent in the background: the request does not wait for it), so the
   request's added latency is one round trip to Redis.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from polyroute.ledger import VirtualKey
from polyroute.ledger._keys import utc
from polyroute.limits import Limiter, Rate, RedisWindows
from polyroute.shared import Shared

N = 20_000
BIG = 10**9  # limits that admit everything: the cost measured is the window's work


def report(label: str, samples: list[float]) -> None:
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(f"{label:<46} p50 {p50 * 1e6:8.2f} µs   p99 {p99 * 1e6:8.2f} µs")


async def measure(limiter: Limiter, n: int) -> list[float]:
    out = []
    for i in range(n + 200):
        t0 = time.perf_counter()
        hold = await limiter.admit("openai", "vk_1", 900)
        hold.settle(120)
        if i >= 200:
            out.append(time.perf_counter() - t0)
    return out


async def main() -> None:
    key = VirtualKey("vk_1", "bench", "sk-pr-bench0", (), utc(0), rpm=BIG, tpm=BIG)
    idle = Limiter({"openai": Rate()})
    samples = []
    for _ in range(N):
        t0 = time.perf_counter()
        idle.applies("openai", "vk_1")
        samples.append(time.perf_counter() - t0)
    report("no limit: applies() (then nothing)", samples)

    local = Limiter({"openai": Rate(BIG, BIG)})
    local.know(key)
    report("in process: admit + settle (key and provider)", await measure(local, N))

    if len(sys.argv) > 1:
        shared = Shared(sys.argv[1])
        remote = Limiter({"openai": Rate(BIG, BIG)}, shared=RedisWindows(shared))
        remote.know(key)
        try:
            n = N // 10
            samples = await measure(remote, n)
            await remote.aclose()
            report("Redis: admit (awaited) + settle (background)", samples)
            print(f"{'':<46} mean {statistics.fmean(samples) * 1e6:8.2f} µs over {n:,} calls")
        finally:
            await shared.aclose()


if __name__ == "__main__":
    asyncio.run(main())
