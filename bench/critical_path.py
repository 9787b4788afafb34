"""Where a chat request's time goes in `polyroute serve`, at 1 connection: its stages in turn.

Run: ./dev python bench/critical_path.py [--duration 8]

Issue 16's "at most 0.3 ms added p50" is a matter of the stages a request passes before
its reply's last byte leaves. This runs ``serve``'s worker with a timestamp taken at each
stage boundary (a wrapper around the method named, so a refactoring that renames one
fails here loudly), loads it with wrk at 1 connection against bench/gateway.py's
fixed-reply nginx upstream (the admin key, durability "answered"), and prints the median
time between consecutive boundaries over the requests after a warm-up: what the request
waits for upstream, what polyroute does before and after, and what follows the reply.
The wrappers cost about a microsecond each, so the run also takes the same load without
them: the difference of the two p50s is their share.
"""

from __future__ import annotations

import argparse
import atexit
import inspect
import itertools
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WARM_UP = 500
"""Requests left out at the start (the first of them build caches and the router)."""


def _stages() -> list[tuple[Any, str, str, bool]]:
    """(class, method, the boundary's name, whether it is taken on the way out)."""
    from polyroute import client
    from polyroute.gateway import _auth, _chat, _http11, _observe, _select
    from polyroute.ledger import _ledger, _meter
    from polyroute.providers import _client, _transport
    from polyroute.router import executor

    return [
        (_http11.Http11, "data_received", "request bytes read", False),
        (_chat.ChatEndpoint, "handle", "endpoint entered", False),
        (_auth.Auth, "caller", "key checked", True),
        (_chat.ChatEndpoint, "inbound", "body read and parsed", True),
        (_select.Selector, "chat", "model selected", True),
        (client.Polyroute, "_decide_for", "routed", True),
        (_meter.Meter, "held", "budget reserved", True),
        (_transport._Connection, "send", "upstream request written", False),
        (_transport._Connection, "data_received", "upstream reply read", False),
        (_client.ProviderClient, "_parse", "reply parsed", True),
        (_meter._Attempt, "succeeded", "metered and recorded", True),
        (executor.Executor, "complete", "attempt settled", True),
        (client.Polyroute, "send", "answer built", True),
        (_ledger.Ledger, "durable", "record durable", True),
        (_chat.ChatEndpoint, "rendered", "reply rendered", True),
        (_http11.Http11, "response_complete", "reply written", True),
        (_observe.Observe, "_done", "metrics and access line", True),
    ]


def _stamped(method: Callable[..., Any], name: str, after: bool, marks: list[Any]) -> Any:
    clock = time.perf_counter_ns
    if inspect.iscoroutinefunction(method):

        async def stamped_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not after:
                marks.append((name, clock()))
            result = await method(self, *args, **kwargs)
            if after:
                marks.append((name, clock()))
            return result

        return stamped_async

    def stamped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not after:
            marks.append((name, clock()))
        result = method(self, *args, **kwargs)
        if after:
            marks.append((name, clock()))
        return result

    return stamped


def worker(cli_args: list[str]) -> None:
    """``polyroute serve`` with the boundaries stamped; the medians go to stderr at exit."""
    stages = _stages()
    marks: list[tuple[str, int]] = []
    for cls, method, name, after in stages:
        setattr(cls, method, _stamped(getattr(cls, method), name, after, marks))
    names = [name for _, _, name, _ in stages]

    def report() -> None:
        requests: list[dict[str, int]] = []
        current: dict[str, int] = {}
        for name, at in marks:
            if name == names[0]:  # a new request's first read (later reads: its body)
                if current.keys() >= set(names):
                    requests.append(current)
                current = {}
            current.setdefault(name, at)
        requests = requests[WARM_UP:]
        if not requests:
            print("no request passed every stage", file=sys.stderr)
            return
        print(f"{len(requests)} requests, median µs from the boundary before:", file=sys.stderr)
        order = sorted(names, key=lambda n: statistics.median(r[n] - r[names[0]] for r in requests))
        for before, name in itertools.pairwise(order):
            gap = statistics.median((r[name] - r[before]) / 1000 for r in requests)
            print(f"  {gap:7.1f}  {name}", file=sys.stderr)

    atexit.register(report)
    from polyroute.cli import main as cli

    sys.argv = ["polyroute", *cli_args]
    cli()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per server")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gateway as gw  # bench/gateway.py: nginx, wrk, the config

    gw.ensure_tools()
    body: dict[str, object] = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
    with tempfile.TemporaryDirectory(prefix="polyroute-path-") as tmp:
        workdir = Path(tmp)
        up = gw.free_port()
        nginx = gw.start_nginx(workdir, up)
        try:
            url = f"http://127.0.0.1:{up}/v1/chat/completions"
            _, nginx_p50, _, _ = gw.wrk(url, body, 1, args.duration, workdir)
            p50s: dict[bool, float] = {}
            for stamped in (False, True):
                on = gw.polyroute_on(workdir, up, "answered", f"stamped-{stamped}")
                port = gw.free_port()
                serve = on.cmd("serve", "--host", "127.0.0.1", "--port", str(port))
                if stamped:
                    serve = [sys.executable, __file__, "--worker", *serve[1:]]
                # the stamped worker's medians come on stderr at its exit
                err = subprocess.PIPE if stamped else subprocess.DEVNULL
                proc = subprocess.Popen(
                    serve, env=on.env, stdout=subprocess.DEVNULL, stderr=err, text=True
                )
                try:
                    gw.wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    _, p50s[stamped], _, errors = gw.wrk(url, body, 1, args.duration, workdir)
                finally:
                    proc.send_signal(signal.SIGINT)
                    _, log = proc.communicate(timeout=60)
                if errors:
                    sys.exit(f"{errors} requests failed")
                if stamped:
                    at = log.find(" requests, median")
                    print(log[log.rfind("\n", 0, at) + 1 :].rstrip() if at >= 0 else log)
        finally:
            gw.stop(nginx)
    print(
        f"p50 at 1 connection: nginx {1000 * nginx_p50:.0f} µs, polyroute"
        f" {1000 * p50s[False]:.0f} µs (added {1000 * (p50s[False] - nginx_p50):.0f}),"
        f" stamped {1000 * p50s[True]:.0f} µs"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
