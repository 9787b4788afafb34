"""Who holds the interpreter lock while `polyroute serve` answers 32 connections.

Run: ./dev python bench/gil.py [--duration 8] [--rate 250] (as root: py-spy reads the
     worker's memory with ptrace)

Issue 16 asks whether the ledger's writes, which compete with the event loop for the
interpreter lock, would pay for a writer process of their own. This samples the worker
with py-spy (from PyPI, installed into a throwaway virtual environment under /tmp, never
the project's) while wrk loads it at 32 connections: once counting only the thread that
holds the lock (``--gil``), once every thread that is running. A writer process could
give the event loop at most the first share back (and would spend some of it sending the
records across); the second is the CPU the ledger's thread uses, most of it inside
SQLite with the lock released, on the other core. Cases: the admin key, and a virtual
key with daily and monthly budgets (its reservations are on the same thread), both under
durability "answered", on bench/gateway.py's fixed-reply nginx upstream. Samples are
what py-spy caught: it skips some when it cannot keep up, so read shares, not counts.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as gw  # bench/gateway.py: nginx, wrk, the config, the servers

PYSPY_VENV = Path("/tmp/polyroute-bench-pyspy")
LEDGER_THREAD = "polyroute-ledger"
_THREAD = re.compile(r"^thread \(\d+\): ([^;]*)")
BODY: dict[str, object] = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}


def ensure_pyspy() -> Path:
    exe = PYSPY_VENV / "bin" / "py-spy"
    if not exe.exists():
        print(f"installing py-spy into {PYSPY_VENV} (throwaway) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PYSPY_VENV)], check=True)
        subprocess.run([str(PYSPY_VENV / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    return exe


def sample(
    pyspy: Path,
    pid: int,
    url: str,
    headers: dict[str, str],
    gil: bool,
    args: argparse.Namespace,
) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Samples per thread name, and the ledger thread's per innermost frame."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        cmd = [str(pyspy), "record", "--format", "raw", "--threads", "--nonblocking"]
        cmd += ["-r", str(args.rate), "-d", str(args.duration), "-o", out.name]
        cmd += ["-p", str(pid), *(["--gil"] if gil else [])]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # attached before the load begins
        workdir = Path(out.name).parent
        gw.wrk(url, BODY, 32, args.duration + 2, workdir, headers)
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            sys.exit(f"py-spy failed (it needs ptrace: run as root):\n{err}")
        threads: collections.Counter[str] = collections.Counter()
        ledger: collections.Counter[str] = collections.Counter()
        for line in Path(out.name).read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            m = _THREAD.match(stack)
            if m is None or not n.isdigit():
                continue
            threads[m.group(1)] += int(n)
            if m.group(1) == LEDGER_THREAD:
                ledger[stack.rsplit(";", 1)[-1]] += int(n)
    return threads, ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds sampled per pass")
    parser.add_argument("--rate", type=int, default=250, help="samples a second")
    args = parser.parse_args()
    gw.ensure_tools()
    pyspy = ensure_pyspy()
    with tempfile.TemporaryDirectory(prefix="polyroute-gil-") as tmp:
        workdir = Path(tmp)
        up = gw.free_port()
        nginx = gw.start_nginx(workdir, up)
        try:
            for name in ("admin key", "budgeted key"):
                on = gw.polyroute_on(workdir, up, "answered", name.split()[0])
                headers = dict(gw.ADMIN)
                if name == "budgeted key":
                    headers["Authorization"] = f"Bearer {on.budgeted_key()}"
                port = gw.free_port()
                proc = on.serve(port)
                try:
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    gw.wrk(url, BODY, 32, 2, workdir, headers)  # warm-up
                    held, ledger = sample(pyspy, proc.pid, url, headers, True, args)
                    running, _ = sample(pyspy, proc.pid, url, headers, False, args)
                finally:
                    gw.stop(proc)
                report(name, held, ledger, running)
        finally:
            gw.stop(nginx)


def report(
    name: str,
    held: collections.Counter[str],
    ledger: collections.Counter[str],
    running: collections.Counter[str],
) -> None:
    h, r = sum(held.values()), sum(running.values())
    print(f"\n{name}, 32 connections: share of samples per thread")
    print(f"  {'thread':20s} {'holding the lock':>18s} {'running':>10s}")
    for thread in sorted(set(held) | set(running), key=lambda t: -held[t]):
        print(f"  {thread:20s} {100 * held[thread] / h:17.1f}% {100 * running[thread] / r:9.1f}%")
    print(f"  ({h} and {r} samples)")
    if ledger:
        top = ", ".join(f"{frame} {100 * n / h:.1f}%" for frame, n in ledger.most_common(3))
        print(f"  the ledger thread's, holding the lock: {top}")


if __name__ == "__main__":
    main()
