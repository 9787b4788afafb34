"""What a streamed chunk costs the gateway, in process: OpenAI, Anthropic and cross-protocol.

Run: ./dev python bench/streams.py [--streams 300] [--rounds 5]
     ./dev python bench/streams.py --instructions     (needs valgrind)

Target (issue 16): at most 20 µs added per streamed chunk.

The gateway app (``create_app``, the admin key checked, the ledger on SQLite in a
temporary directory) is driven through ASGI without a server; its upstreams are an
``httpx2.MockTransport`` answering each streamed request with a canned stream in the
vendor's format (OpenAI chat completion chunks with ``include_usage``; Anthropic's
``message_start`` ... ``message_stop``). Four routes: a caller in OpenAI's format to an
OpenAI-format upstream, Anthropic's to Anthropic's, and each to the other's (translated
both ways). Each route streams a SHORT and a LONG answer; what one chunk costs is the
difference over the extra chunks, so the request's fixed cost (key check, routing, the
ledger) drops out. Per chunk:
- CPU time of the whole process, median of ``--rounds`` alternating rounds (blurred by
  whatever else the machine runs);
- with ``--instructions``: instructions executed on the event loop's thread (valgrind's
  callgrind, counted only over the measured streams, after a warm-up): a deterministic
  figure to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
from polyroute.providers._http import HttpPool

KEY = "sk-bench-admin"
SHORT, LONG = 10, 110
TARGET_US = 20.0
OPENAI_MODEL, ANTHROPIC_MODEL = "fixed-openai", "fixed-anthropic"
ROUTES = {
    # name: (path, caller's body without "stream", model)
    "openai -> openai": ("/v1/chat/completions", OPENAI_MODEL),
    "anthropic -> anthropic": ("/v1/messages", ANTHROPIC_MODEL),
    "openai -> anthropic": ("/v1/chat/completions", ANTHROPIC_MODEL),
    "anthropic -> openai": ("/v1/messages", OPENAI_MODEL),
}

Call = Callable[[], Awaitable[None]]


def openai_stream(chunks: int) -> bytes:
    """A chat completion stream as OpenAI sends one with ``include_usage``."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
    head["model"] = OPENAI_MODEL

    def data(choices: list[object], **more: object) -> str:
        return f"data: {json.dumps({**head, 'choices': choices, **more})}\n\n"

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        return data([{"index": 0, "delta": delta, "finish_reason": finish}])

    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": f"word{i} "}) for i in range(chunks)]
    frames.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks}
    frames.append(data([], usage=usage))
    return ("".join(frames) + "data: [DONE]\n\n").encode()


def anthropic_stream(chunks: int) -> bytes:
    """A Messages stream as Anthropic sends one: one text block of ``chunks`` deltas."""

    def event(name: str, body: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **body})}\n\n"

    message: dict[str, Any] = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1},
    }
    frames = [event("message_start", {"message": message})]
    frames.append(
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    )
    frames += [
        event(
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": f"word{i} "}},
        )
        for i in range(chunks)
    ]
    frames.append(event("content_block_stop", {"index": 0}))
    frames.append(
        event(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        )
    )
    frames.append(event("message_stop", {}))
    return "".join(frames).encode()


def polyroute(home: Path, chunks: int) -> Polyroute:
    bodies = {"openai": openai_stream(chunks), "anthropic": anthropic_stream(chunks)}

    def upstream(request: httpx2.Request) -> httpx2.Response:
        vendor = "anthropic" if request.url.path.endswith("/messages") else "openai"
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, content=bodies[vendor], headers=headers)

    price = {"input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.60}
    settings = {
        "router": {"strategy": "cost"},
        "health": {"interval_s": 0},
        "storage": {"url": f"sqlite:///{home / 'ledger.db'}"},
        "providers": {
            "oa": {
                "type": "openai",
                "base_url": "http://openai.invalid/v1",
                "api_key": "env:UPSTREAM_KEY",
                "models": [OPENAI_MODEL],
            },
            "an": {
                "type": "anthropic",
                "base_url": "http://anthropic.invalid",
                "api_key": "env:UPSTREAM_KEY",
                "models": [ANTHROPIC_MODEL],
            },
        },
        "models": {
            OPENAI_MODEL: {"provider_type": "openai", **price},
            ANTHROPIC_MODEL: {"provider_type": "anthropic", **price},
        },
    }
    config = Config(validate(settings, "bench"), "bench", {"UPSTREAM_KEY": "sk-upstream"})
    return Polyroute(config, pool=HttpPool(transport=httpx2.MockTransport(upstream)))


def caller(app: Any, path: str, model: str) -> Call:
    """One streamed request on ``path`` for ``model``, through the app's ASGI interface,
    read to its end."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    if path == "/v1/messages":
        body["max_tokens"] = 256
    else:
        body["stream_options"] = {"include_usage": True}
    raw = json.dumps(body).encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"authorization", f"Bearer {KEY}".encode()),
        (b"x-api-key", KEY.encode()),
        (b"anthropic-version", b"2023-06-01"),
    ]

    async def call() -> None:
        status = await post(app, path, raw, headers)
        if status != 200:
            raise SystemExit(f"{path} {model}: status {status}")

    return call


async def repeat(call: Call, n: int) -> None:
    for _ in range(n):
        await call()


class Apps:
    """The app twice: upstreams answering SHORT and LONG chunks."""

    def __init__(self, home: Path) -> None:
        self.home = home

    async def __aenter__(self) -> dict[int, dict[str, Call]]:
        self._contexts = []
        calls: dict[int, dict[str, Call]] = {}
        for chunks in (SHORT, LONG):
            home = self.home / str(chunks)
            home.mkdir()
            app = create_app(polyroute(home, chunks), admin_key=KEY, lifecycle=True)
            context = app.router.lifespan_context(app)
            await context.__aenter__()
            self._contexts.append(context)
            calls[chunks] = {name: caller(app, *route) for name, route in ROUTES.items()}
        return calls

    async def __aexit__(self, *exc: object) -> None:
        for context in reversed(self._contexts):
            await context.__aexit__(None, None, None)


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="polyroute-streams-") as tmp:
        async with Apps(Path(tmp)) as calls:
            if args.run is not None:  # one route and length, under callgrind
                route, chunks = args.run.rsplit("@", 1)
                call = calls[int(chunks)][route]
                await repeat(call, 30)
                toggle = ["callgrind_control", "--instr=on", str(os.getpid())]
                subprocess.run(toggle, check=True, capture_output=True)
                await repeat(call, args.streams)
                toggle[1] = "--instr=off"
                subprocess.run(toggle, check=True, capture_output=True)
                return
            for by_route in calls.values():
                for call in by_route.values():
                    await repeat(call, 50)  # warm-up
            samples: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.rounds):
                for chunks, by_route in calls.items():
                    for name, call in by_route.items():
                        t = time.process_time_ns()
                        await repeat(call, args.streams)
                        us = (time.process_time_ns() - t) / args.streams / 1000
                        samples.setdefault((name, chunks), []).append(us)
    cpu = {k: statistics.median(v) for k, v in samples.items()}
    print(f"CPU time per stream, µs (median of {args.rounds} rounds of {args.streams} streams)")
    table(cpu, "µs")


def table(per_stream: dict[tuple[str, int], float], unit: str) -> None:
    print(f"  {'route (caller -> upstream)':<26} {SHORT:>7} ch. {LONG:>7} ch. {'per chunk':>12}")
    for name in ROUTES:
        short, long = per_stream[(name, SHORT)], per_stream[(name, LONG)]
        chunk = (long - short) / (LONG - SHORT)
        verdict = ""
        if unit == "µs":
            verdict = f"  target <= {TARGET_US:g} µs  {'PASS' if chunk <= TARGET_US else 'MISS'}"
        print(f"  {name:<26} {short:11.1f} {long:11.1f} {chunk:9.2f} {unit}{verdict}")


def instructions(n: int) -> None:
    """Instructions per stream on the event loop's thread, under callgrind."""
    per: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="polyroute-callgrind-") as tmp:
        for name in ROUTES:
            for chunks in (SHORT, LONG):
                out = Path(tmp) / f"{len(per)}"
                cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
                cmd += ["--separate-threads=yes", f"--callgrind-out-file={out}"]
                cmd += [sys.executable, __file__, "--run", f"{name}@{chunks}"]
                cmd += ["--streams", str(n)]
                env = {**os.environ, "PYTHONHASHSEED": "0"}
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                main_thread = Path(f"{out}-01")
                m = re.search(r"^totals: (\d+)", main_thread.read_text(), re.M)
                if m is None:
                    raise SystemExit(f"callgrind wrote no main thread's counts for {name}")
                per[(name, chunks)] = int(m.group(1)) / n / 1e3
    print(f"instructions per stream on the event loop, thousands (callgrind, {n} streams)")
    table(per, "k")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--streams", type=int, default=300, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        instructions(min(args.streams, 100))
        return
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
