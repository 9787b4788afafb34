"""Where a served chat call's work goes: its Python and C calls, by stage.

Run: ./dev python bench/served_calls.py [--requests 1000] [--key admin|budgeted]
     (needs nginx; about half a minute)

`polyroute serve` runs on ``bench/gateway.py``'s nginx upstream and config (durability
"answered"), under a profile hook on its event loop's thread (``_calls_hook.py``) that
counts every call and charges it to the innermost stage on the caller's stack: the
stages are functions named in ``_calls_hook.STAGES``. Counting starts after a warm-up and
covers ``--requests`` sequential chat requests. A count is deterministic, unlike time on
this VM; a call is not a fixed cost (a C method costs a fraction of a Python function),
so read it with ``served_instructions.py``'s instruction counts, which cover the same
path whole.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gateway as g

WARM_UP = 300
SERVER_SIDE = {
    "the protocol: request in",
    "the protocol: the request's task",
    "the protocol: reply out",
    "gateway middleware",
    "the reply sent",
    "HTTP pool",
    "upstream transport",
    "other",
}
"""The stages a relaying server would have too (``served_instructions.py``'s "floor")."""


def count(workdir: Path, key: str, requests: int) -> dict[str, int]:
    upstream = g.free_port()
    nginx = g.start_nginx(workdir, upstream)
    try:
        pr = g.polyroute_on(workdir, upstream, "answered", "calls")
        secret = g.KEY if key == "admin" else pr.budgeted_key()
        out = workdir / "calls.json"
        port = g.free_port()
        hook = [sys.executable, str(Path(__file__).with_name("_calls_hook.py")), str(out)]
        serve = pr.cmd("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        cmd = [*hook, *serve[1:]]  # the hook runs polyroute itself
        server = subprocess.Popen(cmd, env=pr.env, stdout=subprocess.DEVNULL)
        try:
            g.wait_http(f"http://127.0.0.1:{port}/health", proc=server)
            body = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
            raw = json.dumps(body).encode()
            one = g.poster(port, "/v1/chat/completions", raw, headers, f"chat ({key} key)")
            for _ in range(WARM_UP):
                one()
            server.send_signal(signal.SIGUSR1)
            time.sleep(0.5)  # the handler runs between the loop's callbacks
            for _ in range(requests):
                one()
            server.send_signal(signal.SIGUSR2)
            for _ in range(100):
                if out.exists() and out.stat().st_size:
                    break
                time.sleep(0.1)
            return dict(json.loads(out.read_text()))
        finally:
            g.stop(server)
    finally:
        g.stop(nginx)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--key", choices=("admin", "budgeted"), default="admin")
    args = parser.parse_args()
    g.ensure_tools()
    with tempfile.TemporaryDirectory(prefix="polyroute-calls-") as tmp:
        calls = count(Path(tmp), args.key, args.requests)
    n = args.requests
    print(f"calls per chat request ({args.key} key, {n} after {WARM_UP}), by stage")
    for part, stages in (
        ("polyroute's own work", sorted(set(calls) - SERVER_SIDE, key=lambda s: -calls[s])),
        (
            "what a relaying server does too",
            sorted(set(calls) & SERVER_SIDE, key=lambda s: -calls[s]),
        ),
    ):
        print(f"  {part}: {sum(calls[s] for s in stages) / n:.0f}")
        for stage in stages:
            print(f"    {stage:30s} {calls[stage] / n:6.1f}")
    print(f"  in all: {sum(calls.values()) / n:.0f}")


if __name__ == "__main__":
    main()
