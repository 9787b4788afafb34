"""The standard library's json against orjson and msgspec, on the gateway's own bodies.

Run: ./dev python bench/json_codecs.py                      (CPU time, min of rounds)
     ./dev python bench/json_codecs.py --instructions       (callgrind; needs valgrind)
msgspec is not a dependency: to include it, run with a throwaway virtual environment's
Python that has it (`PYTHONPATH=src /tmp/venv/bin/python bench/json_codecs.py`); a codec
that is not installed is left out.

What each does per request (JSON chat, OpenAI format): the caller's body is parsed
(pydantic's ``validate_json``, not these), the upstream's request body rendered, its
answer parsed, our answer rendered, and a ledger journal line rendered; per streamed
chunk, one upstream event parsed and one rendered. Each operation runs N times on one
body; instructions are counted by callgrind only around those loops.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

N = 2000
UPSTREAM_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "What is the answer to life, the universe and everything?"},
    ],
    "max_completion_tokens": 256,
    "stream": False,
}
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The answer is 42.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 29,
        "completion_tokens": 6,
        "total_tokens": 35,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
    "system_fingerprint": "fp_bench",
}
JOURNAL: dict[str, Any] = {
    "id": "0193a1b2c3d4e5f6",
    "ts": "2026-12-06T08:00:00.123456+00:00",
    "provider": "openai-main",
    "model": "gpt-4o-mini",
    "input_tokens": 29,
    "output_tokens": 6,
    "cost_usd": 7.95e-06,
    "latency_ms": 412.5,
    "status": "ok",
    "virtual_key": "vk_0123",
}
CHUNK: dict[str, Any] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "delta": {"content": "word7 "}, "finish_reason": None}],
}

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]


def codecs() -> dict[str, Codec]:
    """Each codec's (dumps to UTF-8 bytes, loads from bytes); the gateway's settings:
    compact, non-ASCII kept as UTF-8."""

    def std_dumps(data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def std_cached_dumps(data: Any) -> bytes:
        return encode(data).encode()

    out: dict[str, Codec] = {
        "json (stdlib)": (std_dumps, json.loads),
        "json, one encoder": (std_cached_dumps, json.loads),
    }
    try:
        import orjson

        out["orjson"] = (orjson.dumps, orjson.loads)
    except ImportError:
        pass
    try:
        import msgspec  # type: ignore[import-not-found,unused-ignore]

        out["msgspec"] = (msgspec.json.encode, msgspec.json.decode)
    except ImportError:
        pass
    return out


def operations() -> dict[str, tuple[str, Any]]:
    """name: (dumps or loads, its input)."""
    dumps = {"render upstream request": UPSTREAM_REQUEST, "render answer": ANSWER}
    dumps |= {"render journal line": JOURNAL, "render SSE chunk": CHUNK}
    loads = {"parse upstream answer": ANSWER, "parse SSE chunk": CHUNK}
    ops: dict[str, tuple[str, Any]] = {k: ("dumps", v) for k, v in dumps.items()}
    ops |= {k: ("loads", json.dumps(v).encode()) for k, v in loads.items()}
    return ops


def loop(codec: Codec, op: tuple[str, Any], n: int) -> None:
    dumps, loads = codec
    fn, arg = (dumps, op[1]) if op[0] == "dumps" else (loads, op[1])
    for _ in range(n):
        fn(arg)


def timed(rounds: int) -> dict[tuple[str, str], float]:
    """µs per operation, min of rounds."""
    out = {}
    for cname, codec in codecs().items():
        for oname, op in operations().items():
            loop(codec, op, 100)
            best = float("inf")
            for _ in range(rounds):
                t = time.process_time_ns()
                loop(codec, op, N)
                best = min(best, (time.process_time_ns() - t) / N / 1000)
            out[(cname, oname)] = best
    return out


def run_counted() -> None:
    """Under callgrind: each loop counted alone, a dump after each."""
    ctl = ["callgrind_control"]
    pid = str(os.getpid())
    for i, codec in enumerate(codecs().values()):
        for j, op in enumerate(operations().values()):
            loop(codec, op, 100)
            subprocess.run([*ctl, "--instr=on", pid], check=True, capture_output=True)
            loop(codec, op, N)
            subprocess.run([*ctl, "--instr=off", pid], check=True, capture_output=True)
            subprocess.run([*ctl, f"--dump=loop-{i}-{j}", pid], check=True, capture_output=True)


def counted() -> dict[tuple[str, str], float]:
    """Instructions per operation."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="polyroute-json-") as tmp:
        base = Path(tmp) / "cg"
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={base}"]
        cmd += [sys.executable, __file__, "--run"]
        subprocess.run(cmd, check=True, capture_output=True)
        names, ops = list(codecs()), list(operations())
        for f in Path(tmp).glob("cg*"):
            text = f.read_text(errors="replace")
            label = re.search(r"^desc: Trigger: .*loop-(\d+)-(\d+)", text, re.M)
            total = re.search(r"^totals: (\d+)", text, re.M)
            if label and total:
                key = (names[int(label.group(1))], ops[int(label.group(2))])
                out[key] = int(total.group(1)) / N
    return out


def table(per: dict[tuple[str, str], float], unit: str, scale: float) -> None:
    names = list(codecs())
    print(f"  {'':<26}" + "".join(f"{n:>19}" for n in names))
    for oname in operations():
        cells = "".join(
            f"{per[(c, oname)] / scale:15.2f} {unit:<3}" if (c, oname) in per else f"{'-':>19}"
            for c in names
        )
        print(f"  {oname:<26}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_counted()
    elif args.instructions:
        print(f"thousands of instructions per operation (callgrind, {N} each)")
        table(counted(), "k", 1e3)
    else:
        print(f"CPU µs per operation (min of {args.rounds} rounds of {N})")
        table(timed(args.rounds), "µs", 1.0)


if __name__ == "__main__":
    main()
