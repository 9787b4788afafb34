"""Slow clients against `polyroute serve`: are normal requests still served?

Run: ./dev python bench/slow_clients.py [--slow 1100] [--normal 39] [--nofile 1024]

`polyroute serve` (one worker, its defaults: `[gateway] read_timeout_s = 10`,
`max_connections = 1000`) runs under a file-descriptor limit of `--nofile` (soft and
hard, as on a host configured that way). `--slow` connections each send a request line
and then one header line every 5 s, never finishing; meanwhile `--normal` plain
`GET /health` requests are sent one after another, 0.3 s apart, each with 10 s to
answer. Prints how many were answered 200 (Step 6's defect: 0 of 39).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as bench  # bench/gateway.py: ports, waiting for a server

ROOT = Path(__file__).resolve().parent.parent


async def trickle(port: int, stop: asyncio.Event) -> None:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        while not stop.is_set():
            await asyncio.sleep(5)
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def normal(port: int) -> bool:
    try:
        conn = asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.wait_for(conn, 10)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
    except (OSError, TimeoutError):
        return False
    return line.startswith(b"HTTP/1.1 200")


async def load(port: int, slow: int, normals: int) -> int:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(trickle(port, stop)) for _ in range(slow)]
    await asyncio.sleep(3)
    served = 0
    t0 = time.monotonic()
    for _ in range(normals):
        served += await normal(port)
        await asyncio.sleep(0.3)
    print(f"  {normals} normal requests in {time.monotonic() - t0:.1f} s")
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return served


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", type=int, default=1100)
    parser.add_argument("--normal", type=int, default=39)
    parser.add_argument("--nofile", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    config = work / "polyroute.toml"
    # a provider nobody calls: /health answers without an upstream
    config.write_text('[health]\ninterval_s = 0\n[providers.local]\ntype = "ollama"\n')
    port = bench.free_port()
    env = {**os.environ, "POLYROUTE_HOME": str(work / "home")}
    cmd = ["prlimit", f"--nofile={args.nofile}:{args.nofile}"]
    cmd += [str(ROOT / ".venv" / "bin" / "polyroute"), "--config", str(config), "serve"]
    cmd += ["--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_http(f"http://127.0.0.1:{port}/health", proc=server)
        print(f"{args.slow} slow clients, server file descriptors limited to {args.nofile}")
        served = asyncio.run(load(port, args.slow, args.normal))
    finally:
        server.terminate()
        server.wait(10)
    verdict = "PASS" if served == args.normal else "FAIL"
    print(f"  normal requests served: {served}/{args.normal}   target: all  {verdict}")


if __name__ == "__main__":
    main()
