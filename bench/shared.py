"""What sharing state through Redis costs the request path, and how fast news travels.

Run: ./dev python bench/shared.py [REDIS_URL]   (without one: a redis-server of its own)
Measured, after a warm-up:
1. the request path: ``LatencyStats.record`` alone and with samples kept for the cluster
   (``pending``: what a replica with ``redis_url`` adds per call; the batch goes to Redis
   every second, off the path), and ``CircuitBreaker.admit`` + ``success`` linked and not
   (a success while closed tells nobody: nothing is sent);
2. a revocation: ``announce_key_change`` from a third process-like ``Shared`` until the
   gateway's ``Auth`` has dropped the key (pub/sub, one hop), N times;
3. a breaker opened in replica A until replica B sees it open (the Lua script's PUBLISH);
4. the latency sync: one replica's batch for 50 pairs merged and read back.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from polyroute.config import CircuitBreakerConfig
from polyroute.gateway._auth import Auth
from polyroute.ledger import VirtualKey
from polyroute.router.breaker import Breakers
from polyroute.router.stats import LatencyStats
from polyroute.shared import KEYS_CHANNEL, Shared, SharedBreakers, SharedLatency

N = 200_000
TRIPS = 300


def per_call(label: str, fn: Callable[[], None], n: int = N) -> None:
    for _ in range(1000):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    print(f"{label:<58} {(time.perf_counter() - t0) / n * 1e9:8.0f} ns/call")


def report(label: str, samples: list[float]) -> None:
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(
        f"{label:<58} p50 {p50 * 1e3:7.3f} ms  p99 {p99 * 1e3:7.3f} ms  max {samples[-1] * 1e3:7.3f} ms"
    )


def request_path() -> None:
    alone, shared = LatencyStats(), LatencyStats()
    shared.pending = {}
    per_call("LatencyStats.record (one process)", lambda: alone.record("p", "m", 120.0, 30.0))
    per_call(
        "LatencyStats.record (samples kept for the cluster)",
        lambda: shared.record("p", "m", 120.0, 30.0),
    )
    config = CircuitBreakerConfig()
    local, linked = Breakers(config).get("p"), Breakers(config)
    linked.link(SharedBreakers.__new__(SharedBreakers))  # never called while closed
    b = linked.get("p")
    per_call("CircuitBreaker admit + success (one process)", lambda: local.success(local.admit()))
    per_call("CircuitBreaker admit + success (linked, closed)", lambda: b.success(b.admit()))


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0)


async def propagation(url: str) -> None:
    gateway, cli = Shared(url), Shared(url)
    key = VirtualKey("vk_1", "team", "sk-pr-ab", (), datetime(2026, 1, 1, tzinfo=UTC))

    async def verify(secret: str) -> VirtualKey | None:
        return key

    auth = Auth("admin", verify)
    gateway.subscribe(KEYS_CHANNEL, auth.on_key_message)
    await gateway.start()
    samples = []
    for _ in range(TRIPS):
        await auth._virtual("sk-pr-secret")  # cached
        t0 = time.perf_counter()
        await cli.publish(KEYS_CHANNEL, {"id": "vk_1", "change": "revoked"})
        await until(lambda: not auth._cache)
        samples.append(time.perf_counter() - t0)
    report("revocation: announced until the gateway dropped the key", samples)

    a, b = Shared(url), Shared(url)
    config = CircuitBreakerConfig(failure_threshold=1, reset_timeout_s=3600)
    ba, bb = Breakers(config), Breakers(config)
    SharedBreakers(a, ba)
    SharedBreakers(b, bb)
    await a.start()
    await b.start()
    samples = []
    for i in range(TRIPS):
        pid = f"p{i}"
        breaker, other = ba.get(pid), bb.get(pid)
        t0 = time.perf_counter()
        breaker.failure(breaker.admit())
        await until(lambda: other.state == "open")  # noqa: B023
        samples.append(time.perf_counter() - t0)
    report("breaker: opened in A until open in B", samples)

    stats = LatencyStats()
    sync = SharedLatency(a, stats, interval_s=3600)
    pairs = [(f"p{i % 5}", f"m{i}") for i in range(50)]
    samples = []
    for _ in range(100):
        for p, m in pairs:
            stats.record(p, m, 100.0, 20.0)
        t0 = time.perf_counter()
        await sync.sync()
        samples.append(time.perf_counter() - t0)
    report("latency sync: 50 pairs merged and read back (each second)", samples)
    for s in (gateway, cli, a, b):
        await s.aclose()


def own_server() -> tuple[str, Callable[[], None]]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("no REDIS_URL and no redis-server: apt-get install redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    where = tempfile.mkdtemp(prefix="polyroute-bench-redis-")
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", where]
    proc = subprocess.Popen([*args, "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.01)

    def stop() -> None:
        proc.terminate()
        proc.wait()
        shutil.rmtree(where, ignore_errors=True)

    return f"redis://127.0.0.1:{port}/0", stop


def main() -> None:
    request_path()
    if len(sys.argv) > 1:
        url, stop = sys.argv[1], (lambda: None)
    else:
        url, stop = own_server()
    try:
        asyncio.run(propagation(url))
    finally:
        stop()


if __name__ == "__main__":
    main()
