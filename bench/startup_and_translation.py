"""Import time, and the CPU cost of translating requests, responses and stream chunks.

Run: ./dev python bench/startup_and_translation.py
Targets (DESIGN / issue 2): `import polyroute` and `polyroute --help` under 150 ms;
one non-streaming request+response translation under 100 µs; one stream chunk under 5 µs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from polyroute.providers import protocol_for
from polyroute.testing import SIMULATORS, SimChat, simulator_class
from polyroute.testing._sim import Script
from polyroute.types import ChatRequest, Message

BIN = Path(sys.executable).parent


def wall_ms(cmd: list[str], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def import_only_ms(runs: int = 15) -> float:
    code = (
        "import time; t=time.perf_counter(); import polyroute; print((time.perf_counter()-t)*1000)"
    )
    return statistics.median(
        float(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(runs)
    )


def cpu_us(fn: object, n: int) -> float:
    assert callable(fn)
    for _ in range(min(n, 1000)):  # warm up
        fn()
    t = time.process_time_ns()
    for _ in range(n):
        fn()
    return (time.process_time_ns() - t) / n / 1000


def main() -> None:
    base = wall_ms([sys.executable, "-c", "pass"])
    imp = wall_ms([sys.executable, "-c", "import polyroute"])
    imp_facade = wall_ms([sys.executable, "-c", "import polyroute; polyroute.Polyroute"])
    helpx = wall_ms([str(BIN / "polyroute"), "--help"])
    print("startup (median of 15 runs, wall clock)")
    print(f"  python -c pass                      {base:7.1f} ms   (interpreter alone)")
    print(f"  import polyroute (in-process)       {import_only_ms():7.1f} ms")
    print(f"  python -c 'import polyroute'        {imp:7.1f} ms   target < 150")
    print(f"  ... and touch polyroute.Polyroute   {imp_facade:7.1f} ms")
    print(f"  polyroute --help                    {helpx:7.1f} ms   target < 150")
    print()

    messages = [
        Message.system("You are terse."),
        Message.user("Explain TCP slow start in two sentences."),
    ]
    request = ChatRequest(model="m", messages=messages, max_tokens=256, temperature=0.2)
    chat = SimChat(
        "m", "You are terse.\nExplain TCP slow start in two sentences.", "", 256, True, True
    )
    reply = Script(
        reply="Slow start doubles the congestion window each round trip until loss or a threshold; "
        "then it grows linearly."
    ).answer(chat, "")
    print("translation, CPU time per call (process_time, 20k iterations)")
    print(f"  {'vendor':<10} {'request+response':>18} {'stream chunk':>14}")
    for vendor in SIMULATORS:
        proto = protocol_for(vendor)
        sim = simulator_class(vendor)()
        response_bytes = json.dumps(sim.chat_body(chat, reply)).encode()
        frames = list(sim.stream_frames(chat, reply))
        # one content frame, as the wire carries it (strip SSE framing: the engine does that)
        content = frames[sim.head_frames + 1]
        data = (
            content.split("data: ", 1)[1].strip()
            if content.startswith(("data:", "event:"))
            else content.strip()
        )
        event = (
            content.split("\n", 1)[0].removeprefix("event: ")
            if content.startswith("event:")
            else None
        )

        def roundtrip(proto: Any = proto, response_bytes: bytes = response_bytes) -> None:
            call = proto.chat(request, stream=False)
            json.dumps(call.json).encode()
            proto.parse_chat(json.loads(response_bytes))

        decoder = proto.stream_decoder(request)
        for f in frames[: sim.head_frames]:  # feed the head so the decoder is mid-stream
            d = f.split("data: ", 1)[1].strip() if "data: " in f else f.strip()
            e = f.split("\n", 1)[0].removeprefix("event: ") if f.startswith("event:") else None
            decoder.feed(d, e)

        def chunk(decoder: Any = decoder, data: str = data, event: str | None = event) -> None:
            decoder.feed(data, event)

        rt = cpu_us(roundtrip, 20000)
        ch = cpu_us(chunk, 20000)
        print(f"  {vendor:<10} {rt:15.1f} µs {ch:11.2f} µs")
    print("  targets:   request+response < 100 µs, stream chunk < 5 µs")


if __name__ == "__main__":
    main()
