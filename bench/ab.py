"""`polyroute serve` at another commit against the work tree, taken in turn.

Run: ./dev python bench/ab.py --before REF [--duration 24] [--rounds 6]

This VM's CPU drifts by a third over minutes, so two ``bench/gateway.py`` runs minutes
apart compare the drift as much as the code. Here the two servers run side by side
behind the same nginx upstream (``bench/gateway.py``'s setup, durability "answered",
the admin key), REF's from a throwaway ``git worktree`` (its ``src`` first on
``PYTHONPATH``, the project's environment otherwise), and wrk takes each server's JSON
and streamed rows in turn, ``--rounds`` times at 1 and at 32 connections. Every figure
is the median of its rounds: req/s, p50, the server's CPU time per request, and how
often wrk and nginx slept a request (each sleep ends in a wakeup its waker pays for).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import gateway as g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a commit, branch or tag")
    parser.add_argument("--duration", type=int, default=24, help="seconds per row, all rounds")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    chat = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
    streamed = {**chat, "model": "fixed-stream", "stream": True}
    with tempfile.TemporaryDirectory(prefix="polyroute-ab-") as tmp:
        workdir = Path(tmp)
        tree = workdir / "before"
        git = ["git", "-C", str(g.ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(tree), args.before], check=True)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            upstream = g.free_port()
            procs.append(g.start_nginx(workdir, upstream))
            cases = []
            for label, src in ((args.before, tree / "src"), ("work tree", None)):
                pr = g.polyroute_on(workdir, upstream, "answered", label.replace("/", "-"))
                if src is not None:
                    pr.env["PYTHONPATH"] = str(src)
                port = g.free_port()
                proc = pr.serve(port)
                procs.append(proc)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                cases.append(g.Case(f"{label}: json", url, chat, proc.pid, g.ADMIN))
                cases.append(g.Case(f"{label}: stream", url, streamed, proc.pid, g.ADMIN))
            nginx = procs[0].pid
            rows = g.measure_together(cases, args.duration, workdir, args.rounds, nginx)
        finally:
            for p in reversed(procs):
                g.stop(p)
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)
    print(f"\n{args.before} against the work tree, taken in turn, {args.rounds} rounds")
    print(
        f"  {'server':<28} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'CPU us/req':>10}"
        f" {'sleeps/req: wrk':>16} {'nginx':>6}"
    )
    for r in rows:
        print(
            f"  {r.name:<28} {r.connections:>5} {r.rps:8.0f} {r.p50_ms:8.3f} {r.cpu_us:10.0f}"
            f" {r.load_waits:16.2f} {r.upstream_waits:6.2f}"
        )
    by = {(r.name, r.connections): r for r in rows}
    for kind in ("json", "stream"):
        for conns in (1, 32):
            old, new = by[(f"{args.before}: {kind}", conns)], by[(f"work tree: {kind}", conns)]
            print(
                f"  {kind}, {conns} conn.: req/s {100 * (new.rps / old.rps - 1):+.1f} %, "
                f"CPU per request {100 * (new.cpu_us / old.cpu_us - 1):+.1f} %, "
                f"p50 {1e3 * (new.p50_ms - old.p50_ms):+.0f} us"
            )


if __name__ == "__main__":
    main()
