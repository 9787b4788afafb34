"""The gateway's app under `polyroute serve` (uvicorn, our httptools protocol) and granian.

Run: ./dev python bench/servers.py [--duration 10] [--rounds 2]

Both serve the same app (`polyroute.gateway._app:from_env`, the factory `serve` gives
uvicorn) with one worker, the admin key checked, the ledger on SQLite, against bench/
gateway.py's fixed-reply nginx upstream. Granian (Rust, from PyPI) is installed into a
throwaway virtual environment under /tmp, never the project's, and runs the project's
code from its source tree and environment. Load: wrk at 1 and 32 connections; per row,
req/s, p50 and the server's CPU time per request (its process tree: the figure a busy
machine blurs least), alternating servers for ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as gw  # bench/gateway.py: nginx, wrk, CPU and memory of a process tree

GRANIAN_VENV = Path("/tmp/polyroute-bench-granian")
FACTORY = "polyroute.gateway._app:from_env"


def ensure_granian() -> Path:
    exe = GRANIAN_VENV / "bin" / "granian"
    if not exe.exists():
        print(f"installing granian into {GRANIAN_VENV} (throwaway) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(GRANIAN_VENV)], check=True)
        pip = [str(GRANIAN_VENV / "bin" / "pip"), "install", "-q", "granian"]
        subprocess.run(pip, check=True)
    return exe


def start_granian(exe: Path, on: gw.Polyroute, port: int) -> subprocess.Popen[bytes]:
    paths = [str(gw.ROOT / "src"), sysconfig.get_paths()["purelib"]]
    env = {**on.env, "POLYROUTE_CONFIG": str(on.config), "PYTHONPATH": os.pathsep.join(paths)}
    cmd = [str(exe), "--interface", "asgi", "--factory", FACTORY, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1", "--runtime-threads", "1", "--no-ws"]
    cmd += ["--log-level", "warning", "--loop", "uvloop"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    gw.wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    gw.ensure_tools()
    granian = ensure_granian()
    body: dict[str, object] = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
    rows: list[gw.Row] = []
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="polyroute-servers-") as tmp:
        workdir = Path(tmp)
        try:
            up = gw.free_port()
            nginx = gw.start_nginx(workdir, up)
            procs.append(nginx)
            for n in range(args.rounds):
                for server in ("uvicorn", "granian"):
                    on = gw.polyroute_on(workdir, up, "answered", f"{server}-{n}")
                    port = gw.free_port()
                    if server == "uvicorn":
                        proc = on.serve(port)
                    else:
                        proc = start_granian(granian, on, port)
                    procs.append(proc)
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    rows += gw.measure(server, url, body, proc.pid, args.duration, workdir)
                    gw.stop(proc)
        finally:
            for p in reversed(procs):
                gw.stop(p)
    print(f"\nthe gateway's app, one worker, fixed-reply nginx upstream; {args.rounds} rounds")
    print(
        f"  {'server':<10} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'CPU us/req':>10} {'RSS MiB':>8}"
    )
    for r in rows:
        print(
            f"  {r.name:<10} {r.connections:>5} {r.rps:9.0f} {r.p50_ms:8.2f} {r.cpu_us:10.0f}"
            f" {r.rss_mb:8.1f}  errors {r.errors}"
        )


if __name__ == "__main__":
    main()
