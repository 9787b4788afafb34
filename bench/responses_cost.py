"""What a request costs on /v1/responses against /v1/chat/completions, in process.

Run: ./dev python bench/responses_cost.py [--requests 2000] [--rounds 5] [--profile 15]
     ./dev python bench/responses_cost.py --instructions     (needs valgrind)

Target (issue 13): the Responses path costs at most 10 % more per request than chat.

The gateway app (``create_app``, the admin key checked on every call, the ledger on
SQLite in a temporary directory with the default durability, ``store`` on as by default)
is driven through ASGI without a server, so nothing but the gateway's own work is
counted; its upstream is an ``httpx2.MockTransport`` answering a canned chat completion
(the same for both paths). The same short question goes both ways. Stored responses are
committed every BATCH requests (as many as the ledger's window, ``WINDOW_S``, holds at
1,000 requests/s), not by the clock, so what a commit costs is shared the same way in
every run, however slow (valgrind) or busy the machine. Per request:
- Python function calls on the event loop's thread (cProfile): exact, and the same on a
  busy machine; ``--profile N`` lists the N functions whose calls differ the most;
- CPU time of the whole process (the ledger's thread included), median of ``--rounds``
  alternating rounds: what the server pays, blurred by whatever else the machine runs;
- with ``--instructions``: instructions executed (valgrind's callgrind, the whole process,
  counted only over the measured requests, after a warm-up): exact but for the ledger
  thread's batches, which depend on timing; a deterministic figure to quote.
A third path, ``/v1/responses`` with ``store: false``, shows what storing costs.
A fourth, chat with a virtual key that has a daily and a monthly budget (every request
reserved and settled against them), shows what a budget costs (issue 16: a budgeted key
at least 90 % of the admin key's rate, so at most about +11 % per request).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
from _asgi import post

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.gateway import create_app
from polyroute.gateway._responses import ResponsesEndpoint
from polyroute.ledger import _responses as stored
from polyroute.providers._http import HttpPool

KEY = "sk-bench-admin"
CHAT = ("/v1/chat/completions", {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]})
RESPONSES = ("/v1/responses", {"model": "fixed", "input": "hi"})
UNSTORED = ("/v1/responses", {**RESPONSES[1], "store": False})
PATHS = {"chat": CHAT, "responses": RESPONSES, "unstored": UNSTORED, "budgeted": CHAT}
"""``budgeted``: chat with a virtual key that has a daily and a monthly budget."""
CANNED = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "fixed",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The answer is 42."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
}
TARGET_EXTRA = 0.10
BATCH = max(1, round(stored.WINDOW_S * 1000))

Call = Callable[[], Awaitable[None]]


def polyroute(home: Path) -> Polyroute:
    canned = json.dumps(CANNED).encode()

    def upstream(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=canned, headers={"content-type": "application/json"})

    settings = {
        "router": {"strategy": "cost"},
        "health": {"interval_s": 0},
        "storage": {"url": f"sqlite:///{home / 'ledger.db'}"},
        "providers": {
            "upstream": {
                "type": "openai",
                "base_url": "http://upstream.invalid/v1",
                "api_key": "env:UPSTREAM_KEY",
                "models": ["fixed"],
            }
        },
        "models": {
            "fixed": {
                "provider_type": "openai",
                "input_usd_per_mtok": 0.15,
                "output_usd_per_mtok": 0.60,
            }
        },
    }
    config = Config(validate(settings, "bench"), "bench", {"UPSTREAM_KEY": "sk-upstream"})
    return Polyroute(config, pool=HttpPool(transport=httpx2.MockTransport(upstream)))


def caller(app: Any, path: str, body: dict[str, Any], batch: int, key: str = KEY) -> Call:
    """One POST of ``body`` to ``path``, through the app's ASGI interface; every ``batch``
    calls, the stored responses queued are committed."""
    [endpoint] = [
        r.endpoint.__self__  # type: ignore[attr-defined]
        for r in app.routes
        if getattr(r, "path", None) == "/v1/responses" and "POST" in r.methods  # type: ignore[attr-defined]
    ]
    assert isinstance(endpoint, ResponsesEndpoint)
    made = 0
    raw = json.dumps(body).encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"authorization", f"Bearer {key}".encode()),
    ]

    async def call() -> None:
        status = await post(app, path, raw, headers)
        if status != 200:
            raise SystemExit(f"{path}: status {status}")
        nonlocal made
        made += 1
        if made % batch == 0:
            await endpoint.store.flush()

    return call


async def repeat(call: Call, n: int) -> None:
    for _ in range(n):
        await call()


async def measure(args: argparse.Namespace) -> None:
    stored.WINDOW_S = 3600.0  # commits come every BATCH requests (see the module docs)
    with tempfile.TemporaryDirectory(prefix="polyroute-responses-cost-") as tmp:
        pr = polyroute(Path(tmp))
        app = create_app(pr, admin_key=KEY, lifecycle=True)
        async with app.router.lifespan_context(app):
            _, budgeted = await pr.ledger.create_key("bench", daily_usd=1000, monthly_usd=10000)
            keys = {"budgeted": budgeted}
            calls = {
                name: caller(app, *PATHS[name], args.batch, keys.get(name, KEY)) for name in PATHS
            }
            if args.run is not None:  # one path, under callgrind: count only its requests
                await repeat(calls[args.run], 50)
                toggle = ["callgrind_control", "--instr=on", str(os.getpid())]
                subprocess.run(toggle, check=True, capture_output=True)
                await repeat(calls[args.run], args.requests)
                toggle[1] = "--instr=off"
                subprocess.run(toggle, check=True, capture_output=True)
                return
            for call in calls.values():
                await repeat(call, 200)  # warm-up: caches, the ledger, the key check
            report(await counted(calls, args), await timed(calls, args), args)


async def counted(calls: dict[str, Call], args: argparse.Namespace) -> dict[str, pstats.Stats]:
    stats = {}
    n = max(1, args.requests // 10)
    for name, call in calls.items():
        profile = cProfile.Profile()
        profile.enable()
        await repeat(call, n)
        profile.disable()
        stats[name] = pstats.Stats(profile)
        stats[name].total_calls = stats[name].total_calls / n  # type: ignore[attr-defined]
    if args.profile:
        differing(stats, n, args.profile)
    return stats


def differing(stats: dict[str, pstats.Stats], n: int, top: int) -> None:
    per: dict[str, dict[str, float]] = {}
    for name, s in stats.items():
        for (file, line, fn), (_, ncalls, *_rest) in s.stats.items():  # type: ignore[attr-defined]
            where = f"{Path(file).name}:{line}({fn})"
            per.setdefault(where, {})[name] = ncalls / n
    rows = sorted(
        per.items(),
        key=lambda kv: -abs(kv[1].get("responses", 0) - kv[1].get("chat", 0)),
    )
    print(f"functions whose calls per request differ the most (top {top})")
    print(f"  {'chat':>6} {'resp.':>6}  function")
    for where, c in rows[:top]:
        print(f"  {c.get('chat', 0):6.1f} {c.get('responses', 0):6.1f}  {where}")
    print()


async def timed(calls: dict[str, Call], args: argparse.Namespace) -> dict[str, float]:
    """CPU µs per request, median of alternating rounds."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            t = time.process_time_ns()
            await repeat(call, args.requests)
            samples[name].append((time.process_time_ns() - t) / args.requests / 1000)
    return {name: statistics.median(s) for name, s in samples.items()}


def report(stats: dict[str, pstats.Stats], cpu: dict[str, float], args: argparse.Namespace) -> None:
    n, batch = args.requests, args.batch
    print(f"per request, in process ({n} requests a round, a commit every {batch} stored)")
    print(f"  {HEAD}")
    calls = {k: float(s.total_calls) for k, s in stats.items()}  # type: ignore[attr-defined]
    for what, v, unit in (("Python function calls", calls, ""), ("CPU time", cpu, " µs")):
        line(what, v, unit)


HEAD = (
    f"{'':<22} {'chat':>10} {'responses':>10} {'extra':>8} {'store: false':>13}"
    f" {'budgeted key':>13} {'extra':>8}"
)


def line(what: str, v: dict[str, float], unit: str) -> None:
    extra = v["responses"] / v["chat"] - 1
    budgeted = v["budgeted"] / v["chat"] - 1
    ok = "PASS" if extra <= TARGET_EXTRA else "MISS"
    print(
        f"  {what:<22} {v['chat']:8.1f}{unit:<2} {v['responses']:8.1f}{unit:<2} "
        f"{100 * extra:+7.1f} % {v['unstored']:9.1f}{unit:<2} {v['budgeted']:11.1f}{unit:<2}"
        f" {100 * budgeted:+7.1f} %  responses: target <= +10 %  {ok}"
    )


def instructions(n: int, batch: int) -> None:
    """Instructions per request on each path, under callgrind, over ``n`` requests: on the
    event loop's thread (where the gateway's work runs: repeatable) and on the others (the
    ledger's thread, whose wake-ups follow the clock: less so)."""
    per: dict[str, dict[str, float]] = {"event loop": {}, "other threads": {}, "all": {}}
    with tempfile.TemporaryDirectory(prefix="polyroute-callgrind-") as tmp:
        for name in PATHS:
            out = Path(tmp) / name
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]
            cmd += [f"--callgrind-out-file={out}"]
            cmd += [sys.executable, __file__, "--run", name, "--requests", str(n)]
            cmd += ["--batch", str(batch)]
            env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict and set layouts
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            threads = {}
            for f in Path(tmp).glob(f"{name}-*"):
                m = re.search(r"^totals: (\d+)", f.read_text(), re.M)
                threads[int(f.name.rsplit("-", 1)[1])] = int(m.group(1)) if m else 0
            if 1 not in threads:
                raise SystemExit(f"callgrind wrote no main thread's counts for {name}")
            main_thread = threads.pop(1)
            per["event loop"][name] = main_thread / n / 1e3
            per["other threads"][name] = sum(threads.values()) / n / 1e3
            per["all"][name] = (main_thread + sum(threads.values())) / n / 1e3
    print(
        f"instructions per request, thousands (callgrind, {n} requests after 50,"
        f" a commit every {batch})"
    )
    print(f"  {HEAD}")
    for what, v in per.items():
        line(what, v, " k")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument(
        "--batch", type=int, default=BATCH, help=f"stored responses a commit holds ({BATCH})"
    )
    parser.add_argument("--run", choices=sorted(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        instructions(min(args.requests, 500), args.batch)
        return
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
