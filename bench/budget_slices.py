"""What a budget costs a gateway request, with and without budget slices, in process.

Run: ./dev python bench/budget_slices.py [--requests 1000]

The gateway app of ``bench/responses_cost.py`` (ASGI without a server, a mocked upstream,
the ledger on SQLite in a temporary directory) answers chat completions for the admin key
(no budget) and for a virtual key with a daily and a monthly budget, first with the ledger
reserving every budgeted request in the database (``Ledger.slices = False``), then against
budget slices (``ledger/_slices.py``). Per request: Python function calls on the event
loop's thread (cProfile: exact, the same on a busy machine), CPU time of the whole process
(median of 3 rounds, the ledger's thread included), and requests/s with 32 in flight.
Target (issue 16): a request under budget costs about what an unbudgeted one costs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from types import ModuleType

from polyroute.gateway import create_app

IN_FLIGHT = 32


def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "responses_cost", Path(__file__).parent / "responses_cost.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def measure(requests: int) -> None:
    rc = harness()
    with tempfile.TemporaryDirectory(prefix="polyroute-budget-slices-") as tmp:
        pr = rc.polyroute(Path(tmp))
        app = create_app(pr, admin_key=rc.KEY, lifecycle=True)
        async with app.router.lifespan_context(app):
            _, secret = await pr.ledger.create_key("bench", daily_usd=1e6, monthly_usd=1e6)
            never = 10**9  # no stored responses on the chat path: nothing to commit
            admin = rc.caller(app, *rc.CHAT, never)
            admin_key, rc.KEY = rc.KEY, secret  # caller() reads the bearer key when made
            budgeted = rc.caller(app, *rc.CHAT, never)
            rc.KEY = admin_key
            print(f"{'':34} {'calls/req':>8} {'CPU µs/req':>11} {f'req/s c={IN_FLIGHT}':>11}")
            for slices in (False, True):
                pr.ledger.slices = slices
                for name, call in (("admin key", admin), ("key with a budget", budgeted)):
                    await rc.repeat(call, 300)  # warm-up (and a slice leased)
                    profile = cProfile.Profile()
                    profile.enable()
                    await rc.repeat(call, 300)
                    profile.disable()
                    calls = pstats.Stats(profile).total_calls / 300  # type: ignore[attr-defined]
                    cpu = []
                    for _ in range(3):
                        t = time.process_time()
                        await rc.repeat(call, requests)
                        cpu.append((time.process_time() - t) / requests * 1e6)
                    waves = max(1, requests // IN_FLIGHT)
                    t = time.perf_counter()
                    for _ in range(waves):
                        await asyncio.gather(*(call() for _ in range(IN_FLIGHT)))
                    rate = waves * IN_FLIGHT / (time.perf_counter() - t)
                    label = f"{'slices' if slices else 'per request'}, {name}"
                    print(f"{label:<34} {calls:8.0f} {statistics.median(cpu):11.0f} {rate:11,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    asyncio.run(measure(parser.parse_args().requests))


if __name__ == "__main__":
    main()
