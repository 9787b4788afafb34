"""Instructions a served request costs `polyroute serve`'s worker, counted by callgrind.

Run: ./dev python bench/served_instructions.py [--requests 300] [--chunks 20]
     [--kinds chat,budgeted,stream] (needs valgrind, nginx; about a minute)

This VM's CPU speed drifts by a third over minutes, so req/s and CPU time measured
minutes apart compare the drift as much as the code. Instructions do not drift: the
worker runs under valgrind's callgrind, with counting switched on only for ``--requests``
sequential requests after a warm-up, and each thread's count is divided by them. The
setup is ``bench/gateway.py``'s (its nginx upstream and config, durability "answered"):
a JSON chat completion with the admin key ("chat"), the same with a budgeted virtual key
("budgeted"), and a stream of ``--chunks`` content chunks ("stream"; run it with two
``--chunks`` values: the difference over the chunks between is the cost of one chunk).
Two more kinds compare with "chat" for earlier issues' targets: "batched", the same
request under durability "batched", and "responses", ``POST /v1/responses`` with
``store`` on. "trickled" is the stream as vendors send it: each event its own chunk of
a chunked response, ``TRICKLE_MS`` apart (``_trickle.py``), so each is a network read of its own
(nginx sends the canned stream in one). "floor" is the chat request through the same
server and upstream transport with an app that only relays it (``_floor.py``): what
"chat" costs beyond it is polyroute's own work. The event loop's thread is exact; the
ledger's thread depends on how many records a batch holds, so on timing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gateway as g

WARM_UP = 300
KINDS = ("chat", "budgeted", "stream", "batched", "responses", "trickled", "floor")
STREAMS = ("stream", "trickled")
TRICKLE_MS = 10
"""The gap between a trickled stream's events: wide enough that, under valgrind too, each
is read alone, so the count does not depend on timing."""


def count(workdir: Path, kind: str, requests: int) -> list[float]:
    """Thousands of instructions per request, per thread (the event loop's first)."""
    upstream = g.free_port()
    if kind == "trickled":
        trickle = [sys.executable, str(Path(__file__).with_name("_trickle.py")), str(upstream)]
        upstream_server = subprocess.Popen([*trickle, str(TRICKLE_MS), str(g.CHUNKS)])
        g.wait_http(f"http://127.0.0.1:{upstream}/", proc=upstream_server)
    else:
        upstream_server = g.start_nginx(workdir, upstream)
    pr = g.polyroute_on(workdir, upstream, "batched" if kind == "batched" else "answered", kind)
    headers = {**g.ADMIN, "Content-Type": "application/json"}
    if kind == "budgeted":
        headers["Authorization"] = f"Bearer {pr.budgeted_key()}"
    body = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
    if kind in STREAMS:
        body = {"model": "fixed-stream", "stream": True, "messages": body["messages"]}
    path = "/v1/chat/completions"
    if kind == "responses":
        path, body = "/v1/responses", {"model": "fixed", "input": "hi"}
    raw = json.dumps(body).encode()
    out = workdir / f"callgrind-{kind}"
    port = g.free_port()
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]
    cmd += [f"--callgrind-out-file={out}"]
    if kind == "floor":
        floor = Path(__file__).with_name("_floor.py")
        cmd += [sys.executable, str(floor), str(port), str(upstream)]
    else:
        cmd += pr.cmd("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    env = {**pr.env, "PYTHONHASHSEED": "0"}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        g.wait_http(f"http://127.0.0.1:{port}/health", proc=server, timeout_s=300)
        one = g.poster(port, path, raw, headers, kind, timeout_s=120)
        for _ in range(WARM_UP):
            one()
        control = ["callgrind_control", "--instr=on", str(server.pid)]
        subprocess.run(control, check=True, capture_output=True)
        for _ in range(requests):
            one()
        for step in ("--instr=off", "--dump"):
            control[1] = step
            subprocess.run(control, check=True, capture_output=True)
        time.sleep(1)
    finally:
        g.stop(server)
        g.stop(upstream_server)
    threads = []
    for dump in sorted(workdir.glob(f"{out.name}.*")):
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                total = int(line.split()[1])
                if total:
                    threads.append(total / requests / 1000)
                break
    if not threads:
        sys.exit(f"{kind}: callgrind wrote no counts")
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=g.CHUNKS, help="a stream's content chunks")
    parser.add_argument("--kinds", default="chat,budgeted,stream", help=f"of {', '.join(KINDS)}")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r}: choose from {', '.join(KINDS)}")
    g.ensure_tools()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing: apt-get install valgrind")
    g.CHUNKS = args.chunks
    print(f"thousands of instructions per request ({args.requests} after {WARM_UP}), per thread")
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="polyroute-instr-") as tmp:
            threads = count(Path(tmp), kind, args.requests)
        label = f"{kind} ({args.chunks} chunks)" if kind in STREAMS else kind
        others = ", ".join(f"{t:.1f}k" for t in threads[1:]) or "-"
        print(f"  {label:20s} event loop {threads[0]:8.1f}k   other threads {others}")


if __name__ == "__main__":
    main()
