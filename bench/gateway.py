"""The gateway against a fixed-reply upstream: directly, through polyroute, Portkey, LiteLLM.

Run: ./dev python bench/gateway.py [--duration 10] [--soak 100000] [--skip-litellm]
     [--skip-portkey] [--skip-shared]

Targets (issue 16, performance): at 32 connections, at least 50x LiteLLM's proxy's req/s
and 3x Portkey's gateway's; at 1 connection, at most 0.3 ms added p50 over calling the
upstream directly; a virtual key with a budget (the production case) at least 90 % of the
admin key's req/s at 32 connections; `--workers 2` (the budgeted key) at least 1.8x one
worker's; at most 20 us added per streamed chunk (added p50 at 1 connection / chunks).
Earlier targets (the gateway issue): at 32 connections, at least 20x LiteLLM;
at 1 connection, under 1 ms added p50. And the cost
of `[storage] durability = "answered"` (the default: a reply's last byte waits until its
ledger record is durable, in the ledger's journal) against `"batched"`: added p50 at 1
connection up by at most 0.2 ms, req/s at 32 connections down by at most 10 %. And the
Responses API (`POST /v1/responses`, JSON, `store` on as by default: every answer is also
kept in the ledger database) against chat completions on the same server: at most 10 %
more per request (the server's CPU time per request; and p50 at 1 connection, 1/req/s at
32, which a busy machine blurs). And streamed chat completions (`stream: true`, the upstream
sending a canned stream of CHUNKS content chunks): streams/s at 32 connections, added p50
at 1 connection over the upstream's own stream, and what a chunk adds (the server's CPU
per stream over a JSON request's, per chunk).

Setup, all on loopback, in one run:
- the upstream: nginx (Debian's package) returning a canned OpenAI chat completion, and
  under /sse a canned chat completion stream (a second provider serves it, as "fixed-stream");
- `polyroute serve --workers 1` routing to it (one provider, one priced model, the ledger
  writing every request to SQLite, as in service, the admin key checked on every call),
  once with durability "batched" and once with "answered", each on a new ledger; on the
  "answered" one, a virtual key with a daily and a monthly budget too (every request
  reserved and settled against them); then `--workers 2` on a new ledger, that key's kind;
  then `--workers 2` sharing state as replicas do, on a throwaway PostgreSQL and Redis (Debian's
  packages, started and removed by the run; `--skip-shared` leaves them out), that key's kind;
- Portkey's open-source gateway (npm `@portkey-ai/gateway` installed into a throwaway
  directory under /tmp, run with node; no budgets, no key of its own), sent to the same
  upstream by its headers (`x-portkey-provider: openai`, `x-portkey-custom-host`);
- LiteLLM's proxy (`litellm[proxy]` 1.108.7, the issue's, from PyPI in a throwaway virtual
  environment under /tmp, never in the project's, on the interpreter polyroute runs on) with
  one worker, the same upstream and a master key.
The report names that interpreter and whether it links libpython as a shared library:
on pyenv's default build, which does, a chat call costs polyroute about a tenth more
instructions than on Debian's python3.11, which does not (README, Benchmarks), so
figures compare only on one build.
Load: wrk (Debian's package), one thread, a POST of a short chat request. Every server
is started first and the rows are taken in turn: after a 2 s warm-up of each, three
rounds of a third of `--duration` each, every figure the median of its rounds (at 1
connection, then at 32). This VM's CPU drifts by a third over minutes, and rows compared
with each other (budgeted against admin key, two workers against one, polyroute against
its peers) must not be minutes apart; the lines that compare them with a target also
give the ratio within each round, which shows how far the VM moved the median. Memory:
resident set of the server's process tree
after its last round. `--soak N` then sends N more requests through polyroute in 10 s rounds,
JSON requests and streams in turn, and prints the resident memory after each, against
the warm-up's (one round of each; target: < 10 % growth after it).

Missing tools (nginx, wrk) are installed with apt-get when running as root.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LITELLM = "litellm[proxy]==1.108.7"
BASE_PYTHON = Path(sys._base_executable).resolve()
LITELLM_VENV = Path(
    "/tmp/polyroute-bench-litellm-"
    + hashlib.sha256(f"{BASE_PYTHON} {sys.version}".encode()).hexdigest()[:8]
)
"""One per interpreter: LiteLLM runs on polyroute's."""
PORTKEY_DIR = Path("/tmp/polyroute-bench-portkey")
KEY = "sk-" + secrets.token_hex(24)  # both gateways check it: LiteLLM's master key, our admin key
TARGET_X_LITELLM = 50.0
TARGET_X_PORTKEY = 3.0
TARGET_ADDED_MS = 0.3
TARGET_BUDGETED = 0.90
TARGET_WORKERS_X = 1.8
TARGET_CHUNK_US = 20.0
SOAK_GROWTH = 0.10
SOAK_RSS_MB = 100
TARGET_DURABLE_ADDED_MS = 0.2
TARGET_DURABLE_RPS_LOSS = 0.10
TARGET_RESPONSES_EXTRA = 0.10
RESPONSES = "responses answered"
BUDGETED = "budgeted key"
WORKERS2 = "2 workers, budget"
SHARED2 = "2 workers, pg+redis"
PORTKEY = "portkey gateway"
STREAM = "stream answered"
STREAM_UPSTREAM = "upstream stream"
CHUNKS = 20
DURABILITIES = ("batched", "answered")  # the default last: it serves the soak

CANNED = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "fixed",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The answer is 42."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
}
MODELS = {
    "object": "list",
    "data": [
        {"id": model, "object": "model", "owned_by": "bench"} for model in ("fixed", "fixed-stream")
    ],
}


def canned_stream() -> str:
    """A chat completion stream as OpenAI sends one with ``include_usage``: the role, CHUNKS
    pieces of content, the finish reason, the usage, ``[DONE]``."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
    head["model"] = "fixed-stream"

    def data(choices: list[object], **more: object) -> str:
        return f"data: {json.dumps({**head, 'choices': choices, **more})}\n\n"

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        return data([{"index": 0, "delta": delta, "finish_reason": finish}])

    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": f"word{i} "}) for i in range(CHUNKS)]
    frames.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": CHUNKS, "total_tokens": 9 + CHUNKS}
    frames.append(data([], usage=usage))
    return "".join(frames) + "data: [DONE]\n\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tools() -> None:
    missing = [t for t in ("nginx", "wrk") if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: apt-get install nginx-light wrk (as root)")
    packages = ["nginx-light" if t == "nginx" else t for t in missing]
    print(f"installing {', '.join(packages)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, env=env)


def interpreter() -> str:
    """The interpreter this runs on (polyroute's, through its virtual environment)."""
    with open("/proc/self/maps") as maps:
        shared = any("libpython" in line for line in maps)
    linked = "libpython shared" if shared else "libpython linked in"
    return f"Python {sys.version.split()[0]} ({BASE_PYTHON}, {linked})"


def ensure_litellm() -> Path:
    """LiteLLM's proxy in a throwaway environment on this interpreter (made by the uv that
    ``./dev`` installs: the interpreter may have no ``ensurepip``)."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        print(f"installing {LITELLM} into {LITELLM_VENV} (throwaway) ...", flush=True)
        shutil.rmtree(LITELLM_VENV, ignore_errors=True)
        uv = str(ROOT / ".tools" / "bin" / "uv")
        subprocess.run(
            [uv, "venv", "-q", "--python", str(BASE_PYTHON), str(LITELLM_VENV)], check=True
        )
        into = ["--python", str(LITELLM_VENV / "bin" / "python")]
        # compiled at install, as pip does: where PYTHONDONTWRITEBYTECODE is set (this
        # machine), LiteLLM served 51 req/s at 32 connections without, 103 with
        compiled = ["--compile-bytecode", LITELLM]
        subprocess.run([uv, "pip", "install", "-q", *into, *compiled], check=True)
    return exe


def ensure_portkey() -> Path:
    """Portkey's gateway, installed with npm into a throwaway directory; its start script."""
    script = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not script.exists():
        if shutil.which("npm") is None or shutil.which("node") is None:
            sys.exit("missing node/npm for Portkey's gateway: install them, or --skip-portkey")
        print(f"installing @portkey-ai/gateway into {PORTKEY_DIR} (throwaway) ...", flush=True)
        PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
        npm = ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PORTKEY_DIR)]
        subprocess.run([*npm, "@portkey-ai/gateway"], check=True, stdout=subprocess.DEVNULL)
    return script


def wait_http(
    url: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"server for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not come up in {timeout_s:.0f} s")


def poster(
    port: int, path: str, raw: bytes, headers: dict[str, str], what: str, timeout_s: float = 60
) -> Callable[[], None]:
    """One POST of ``raw`` to ``path`` at a time, on one kept-alive connection, read to its
    end; the bench exits, naming ``what`` it sent, on an answer other than 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)

    def one() -> None:
        conn.request("POST", path, body=raw, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            sys.exit(f"{what}: status {response.status}: {answer[:200]!r}")

    return one


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _tree_status(pid: int, field: str) -> int:
    """``field`` of ``/proc/PID/status`` summed over ``pid`` and all its descendants."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, MiB."""
    return _tree_status(pid, "VmRSS") / 1024


def _waited_cpu_s() -> float:
    """CPU time of this process's children that have been waited for (each wrk run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _waited_switches() -> int:
    """Voluntary context switches of this process's waited-for children (each wrk run): how
    often wrk slept until a socket woke it."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw


def tree_switches(pid: int) -> int:
    """Voluntary context switches of ``pid`` and its descendants (nginx: its workers)."""
    return _tree_status(pid, "voluntary_ctxt_switches")


def _softirq_s() -> float:
    """The machine's CPU time in software interrupts (loopback TCP's receive side), which
    no process is charged for."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[7]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and all its descendants, seconds: what a row's
    requests cost the server, whatever else the machine runs meanwhile."""
    ticks = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    name: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    errors: int
    cpu_us: float = 0.0
    """The server's CPU time per request."""
    load_us: float = 0.0
    """wrk's own CPU time per request: the load generator shares the machine's cores."""
    softirq_us: float = 0.0
    """The machine's software-interrupt time per request (loopback TCP, charged to no one)."""
    rounds: tuple[float, ...] = ()
    """req/s of each round, in the order taken (``rps`` is their median)."""
    load_waits: float = 0.0
    """wrk's sleeps per request: each a wakeup by a socket, which costs its waker."""
    upstream_waits: float = 0.0
    """The upstream's (nginx's) sleeps per request, when the run names it."""


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _found(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.M)
    if m is None:
        raise ValueError(f"wrk output without {pattern!r}:\n{text}")
    return m.group(1)


ADMIN = {"Authorization": f"Bearer {KEY}"}


def wrk(
    url: str,
    body: dict[str, object],
    connections: int,
    duration: int,
    workdir: Path,
    headers: dict[str, str] = ADMIN,
) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms, non-2xx responses + socket errors."""
    script = workdir / "post.lua"
    sets = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n' + sets
    )
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    rps = float(_found(r"Requests/sec:\s+([\d.]+)", out))
    p50 = _ms(_found(r"^\s+50%\s+(\S+)", out))
    p99 = _ms(_found(r"^\s+99%\s+(\S+)", out))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return rps, p50, p99, errors


def start_nginx(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    conf = workdir / "nginx.conf"
    sse = workdir / "sse" / "v1" / "chat" / "completions"
    sse.parent.mkdir(parents=True)
    sse.write_text(canned_stream())
    # nginx's workers run as another user when started as root: let them reach the file
    for d in sse.parents[:4]:  # chat, v1, sse, the workdir
        d.chmod(0o711)
    sse.chmod(0o644)
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/nginx-body;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{json.dumps(CANNED)}';
        }}
        location = /v1/models {{
            default_type application/json;
            return 200 '{json.dumps(MODELS)}';
        }}
        location = /sse/v1/chat/completions {{
            # a file (over the 4 KiB a return takes); a POST to it is served as a GET
            default_type text/event-stream;
            root {workdir};
            error_page 405 =200 $uri;
        }}
        location = /sse/v1/models {{
            default_type application/json;
            return 200 '{json.dumps(MODELS)}';
        }}
    }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)])
    wait_http(f"http://127.0.0.1:{port}/v1/models", proc=proc)
    return proc


@dataclass
class Polyroute:
    """How to run polyroute's CLI on one config and ledger."""

    config: Path
    env: dict[str, str]

    def cmd(self, *args: str) -> list[str]:
        return [str(ROOT / ".venv" / "bin" / "polyroute"), "--config", str(self.config), *args]

    def budgeted_key(self) -> str:
        """A new virtual key with daily and monthly budgets far above what a run spends."""
        create = self.cmd("keys", "create", "--name", "bench", "--json")
        create += ["--daily-usd", "1000", "--monthly-usd", "10000"]
        out = subprocess.run(create, env=self.env, check=True, capture_output=True, text=True)
        return str(json.loads(out.stdout)["key"])

    def serve(self, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
        cmd = self.cmd("serve", "--host", "127.0.0.1", "--port", str(port))
        cmd += ["--workers", str(workers)]
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        return proc


def polyroute_on(
    workdir: Path, upstream: int, durability: str, name: str, storage: str = ""
) -> Polyroute:
    """``storage``: more ``[storage]`` lines (a PostgreSQL ``url``, a ``redis_url``)."""
    config = workdir / f"polyroute-{name}.toml"
    config.write_text(
        f"""
[router]
strategy = "cost"

[storage]
durability = "{durability}"
{storage}

[health]
interval_s = 0

[providers.upstream]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
api_key = "env:UPSTREAM_KEY"
models = ["fixed"]

[providers.sse]
type = "openai"
base_url = "http://127.0.0.1:{upstream}/sse/v1"
api_key = "env:UPSTREAM_KEY"
models = ["fixed-stream"]

[models."fixed"]
provider_type = "openai"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60

[models."fixed-stream"]
provider_type = "openai"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60
"""
    )
    env = {
        **os.environ,
        "POLYROUTE_HOME": str(workdir / f"home-{name}"),
        "UPSTREAM_KEY": "sk-upstream",
        "POLYROUTE_ADMIN_KEY": KEY,
    }
    return Polyroute(config, env)


@contextlib.contextmanager
def shared_server(
    workdir: Path, upstream: int, port: int, body: dict[str, object]
) -> Iterator[Case]:
    """``--workers 2`` on a throwaway PostgreSQL and Redis (the tests' own servers), a
    budgeted key; all three removed after."""
    sys.path.insert(0, str(ROOT / "tests"))
    from servers.postgres import PostgresServer
    from servers.redis import RedisServer

    pg, redis = PostgresServer(), RedisServer()
    try:
        redis.start()
        storage = f'url = "{pg.create_database()}"\nredis_url = "{redis.url}"'
        on = polyroute_on(workdir, upstream, DURABILITIES[-1], "pg-redis", storage)
        budgeted = {"Authorization": f"Bearer {on.budgeted_key()}"}
        server = on.serve(port, workers=2)
        try:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            yield Case(SHARED2, url, body, server.pid, budgeted)
        finally:
            stop(server)
    finally:
        redis.remove()
        pg.remove()


def start_portkey(script: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NODE_ENV": "production"}
    cmd = ["node", str(script), f"--port={port}", "--headless"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/", proc=proc)
    return proc


def start_litellm(exe: Path, workdir: Path, upstream: int, port: int) -> subprocess.Popen[bytes]:
    config = workdir / "litellm.yaml"
    config.write_text(
        f"""
model_list:
  - model_name: fixed
    litellm_params:
      model: openai/fixed
      api_base: http://127.0.0.1:{upstream}/v1
      api_key: sk-upstream
"""
    )
    env = {
        **os.environ,
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": KEY,
    }
    cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=180, proc=proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    body: dict[str, object]
    pid: int
    """The server's (its process tree's CPU time is the row's)."""
    headers: dict[str, str]


def measure_together(
    cases: list[Case], duration: int, workdir: Path, rounds: int = 3, upstream: int | None = None
) -> list[Row]:
    """Rows of the cases, taken in turn, ``rounds`` times, each for a share of
    ``duration``; every figure the median of its rounds. The CPU this VM gives a process
    drifts by a third over minutes: cases measured minutes apart compare the drift, cases
    taken in turn compare themselves. ``upstream``: the upstream's pid, whose sleeps are
    counted too."""
    share = max(3, round(duration / rounds))
    found: dict[tuple[str, int], list[tuple[float, ...]]] = {}
    for connections in (1, 32):
        for case in cases:  # warm-up
            wrk(case.url, case.body, connections, 2, workdir, case.headers)
        for _ in range(rounds):
            for case in cases:
                cpu, load, irq = tree_cpu_s(case.pid), _waited_cpu_s(), _softirq_s()
                waits = _waited_switches()
                up_waits = 0 if upstream is None else tree_switches(upstream)
                rps, p50, p99, errors = wrk(
                    case.url, case.body, connections, share, workdir, case.headers
                )
                sent = max(1.0, rps * share)
                cpu_us = 1e6 * (tree_cpu_s(case.pid) - cpu) / sent
                load_us = 1e6 * (_waited_cpu_s() - load) / sent
                irq_us = 1e6 * (_softirq_s() - irq) / sent
                waits_per = (_waited_switches() - waits) / sent
                up_per = 0.0 if upstream is None else (tree_switches(upstream) - up_waits) / sent
                found.setdefault((case.name, connections), []).append(
                    (rps, p50, p99, errors, cpu_us, load_us, irq_us, waits_per, up_per)
                )
    rows = []
    for case in cases:
        for connections in (1, 32):
            runs = found[(case.name, connections)]
            rps, p50, p99, _, cpu_us, load_us, irq_us, waits_per, up_per = (
                statistics.median(r[i] for r in runs) for i in range(9)
            )
            errors = int(sum(r[3] for r in runs))
            rss = tree_rss_mb(case.pid)
            row = Row(case.name, connections, rps, p50, p99, rss, errors, cpu_us, load_us, irq_us)
            row.rounds = tuple(r[0] for r in runs)
            row.load_waits, row.upstream_waits = waits_per, up_per
            rows.append(row)
    return rows


def soak(url: str, bodies: list[dict[str, object]], pid: int, total: int, workdir: Path) -> None:
    """Rounds of each body in turn (a JSON request, a stream) until ``total`` are sent."""
    print(f"\nsoak: {total:,} requests through polyroute at 32 connections, 10 s rounds")
    print(f"  {'requests':>10} {'kind':>6} {'req/s':>8} {'RSS MiB':>8} {'vs first':>9}")
    sent, first, rounds = 0, 0.0, 0
    while sent < total:
        body = bodies[rounds % len(bodies)]
        rounds += 1
        rps, _, _, errors = wrk(url, body, 32, 10, workdir)
        sent += int(rps * 10)
        rss = tree_rss_mb(pid)
        if rounds == len(bodies):  # the first round of each kind is the warm-up
            first = rss
        growth = 100 * (rss / first - 1) if first else 0.0
        kind = "stream" if body.get("stream") else "json"
        print(f"  {sent:>10,} {kind:>6} {rps:8.0f} {rss:8.1f} {growth:+8.1f}%  errors {errors}")
    rss = tree_rss_mb(pid)
    growth = rss / first - 1 if first else 0.0
    check(f"growth after the warm-up: {100 * growth:+.1f}%", growth < SOAK_GROWTH, "< 10%")
    check(f"resident memory at the end: {rss:.1f} MiB", rss < SOAK_RSS_MB, f"< {SOAK_RSS_MB} MiB")


def check(what: str, ok: bool, target: str) -> None:
    print(f"  {what}   target {target}  {'PASS' if ok else 'MISS'}")


def by_round(ours: Row, theirs: Row, spec: str = ".1f", unit: str = "x") -> str:
    """The ratio of two rows' req/s in each round: rounds are taken in turn, so the
    ratio within a round compares the two at about the same moment of the VM's drift."""
    ratios = [a / b for a, b in zip(ours.rounds, theirs.rounds, strict=True) if b]
    return f" (by round {'/'.join(format(r, spec) for r in ratios)}{unit})"


SHOW_VERSION = "import importlib.metadata as m; print(m.version('litellm'))"


def report(rows: list[Row], litellm: Path | None, portkey: Path | None) -> None:
    version = ""
    if litellm is not None:
        show = [str(LITELLM_VENV / "bin" / "python"), "-c", SHOW_VERSION]
        version = subprocess.run(show, check=True, capture_output=True, text=True).stdout.strip()
    pk_version = ""
    if portkey is not None:
        pk_version = json.loads((portkey.parent.parent / "package.json").read_text())["version"]
    print(
        f"\nfixed-reply upstream, one worker each (but {WORKERS2!r}), wrk 1 thread;"
        f" litellm {version or 'skipped'}; portkey {pk_version or 'skipped'}"
    )
    print(f"polyroute and litellm on {interpreter()}")
    print(
        f"  {'server':<18} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'added p50':>10} {'CPU us/req':>10} {'RSS MiB':>8} {'errors':>7}"
    )
    base = {r.connections: r.p50_ms for r in rows if r.name == "upstream (nginx)"}
    base_stream = {r.connections: r.p50_ms for r in rows if r.name == STREAM_UPSTREAM}
    for r in rows:
        stream = r.name in (STREAM, STREAM_UPSTREAM)
        added = r.p50_ms - (base_stream if stream else base)[r.connections]
        print(
            f"  {r.name:<18} {r.connections:>5} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
            f"{added:10.2f} {r.cpu_us:10.0f} {r.rss_mb:8.1f} {r.errors:>7}"
        )
    by = {(r.name, r.connections): r for r in rows}
    ours1, ours32 = by[("polyroute answered", 1)], by[("polyroute answered", 32)]
    added = ours1.p50_ms - base[1]
    print(
        f"  sleeps a request at 32 connections, polyroute answered: wrk {ours32.load_waits:.2f},"
        f" nginx {ours32.upstream_waits:.2f} (each ended by a wakeup its waker pays for)"
    )
    print()
    check(f"added p50 at 1 connection: {added:.2f} ms", added <= TARGET_ADDED_MS, "<= 0.3 ms")
    for rival in ("litellm proxy", PORTKEY):
        theirs = by.get((rival, 32))
        if theirs is not None:
            ratio = ours32.rps / theirs.rps
            least = TARGET_X_LITELLM if rival == "litellm proxy" else TARGET_X_PORTKEY
            check(
                f"req/s at 32 connections: {ratio:.1f}x {rival}'s{by_round(ours32, theirs)}",
                ratio >= least,
                f">= {least:g}x",
            )
    budgeted32 = by[(BUDGETED, 32)]
    share = budgeted32.rps / ours32.rps
    check(
        f"budgeted key at 32 connections: {100 * share:.1f} % of the admin key's req/s"
        f"{by_round(budgeted32, ours32, '.0%', '')}",
        share >= TARGET_BUDGETED,
        f">= {100 * TARGET_BUDGETED:g} %",
    )
    two = by[(WORKERS2, 32)]
    scale = two.rps / budgeted32.rps
    check(
        f"--workers 2 at 32 connections (budgeted key): {scale:.2f}x one worker's"
        f"{by_round(two, budgeted32, '.2f')}",
        scale >= TARGET_WORKERS_X,
        f">= {TARGET_WORKERS_X:g}x",
    )
    # two cores' CPU time over what a request costs on them: the most two workers can serve
    nginx_us = by[("upstream (nginx)", 32)].cpu_us
    most = 2e6 / (two.cpu_us + two.load_us + nginx_us + two.softirq_us)
    print(
        f"  (the two workers share the two cores: a request cost {two.cpu_us:.0f} us of CPU in"
        f" them, {two.load_us:.0f} in wrk, {nginx_us:.0f} in nginx and {two.softirq_us:.0f}"
        f" in the kernel's loopback interrupts, so two cores serve at most {most:.0f} req/s,"
        f" {most / budgeted32.rps:.2f}x one worker's)"
    )
    batched1, batched32 = by[("polyroute batched", 1)], by[("polyroute batched", 32)]
    cost_ms = ours1.p50_ms - batched1.p50_ms
    ok = "PASS" if cost_ms <= TARGET_DURABLE_ADDED_MS else "MISS"
    print(
        f"  durability answered vs batched: added p50 at 1 connection {cost_ms:+.3f} ms"
        f"   target <= +{TARGET_DURABLE_ADDED_MS:g} ms  {ok}"
    )
    loss = 1 - ours32.rps / batched32.rps
    ok = "PASS" if loss <= TARGET_DURABLE_RPS_LOSS else "MISS"
    print(
        f"  durability answered vs batched: req/s at 32 connections {-100 * loss:+.1f} %"
        f"   target >= -{100 * TARGET_DURABLE_RPS_LOSS:g} %  {ok}"
    )
    for conns in (1, 32):
        chat, resp = by[("polyroute answered", conns)], by[(RESPONSES, conns)]
        for what, extra in (
            ("server CPU per request", resp.cpu_us / chat.cpu_us - 1),
            (
                "p50" if conns == 1 else "time per request (1/req/s)",
                resp.p50_ms / chat.p50_ms - 1 if conns == 1 else chat.rps / resp.rps - 1,
            ),
        ):
            ok = "PASS" if extra <= TARGET_RESPONSES_EXTRA else "MISS"
            print(
                f"  /v1/responses vs /v1/chat/completions, {conns} conn., {what}: "
                f"{100 * extra:+.1f} %   target <= +{100 * TARGET_RESPONSES_EXTRA:g} %  {ok}"
            )
    stream1, stream32 = by[(STREAM, 1)], by[(STREAM, 32)]
    chunk_us = 1e3 * (stream1.p50_ms - by[(STREAM_UPSTREAM, 1)].p50_ms) / CHUNKS
    check(
        f"a streamed chunk: {chunk_us:.1f} us added p50 at 1 connection (/ {CHUNKS} chunks)",
        chunk_us <= TARGET_CHUNK_US,
        f"<= {TARGET_CHUNK_US:g} us",
    )
    print(
        f"  streamed chat ({CHUNKS} chunks): {stream32.rps:.0f} streams/s at 32 connections"
        f" ({stream32.rps / ours32.rps:.2f}x JSON req/s); added p50 at 1 connection"
        f" {stream1.p50_ms - by[(STREAM_UPSTREAM, 1)].p50_ms:.2f} ms"
    )
    for conns in (1, 32):
        chat, streamed = by[("polyroute answered", conns)], by[(STREAM, conns)]
        per_chunk = (streamed.cpu_us - chat.cpu_us) / CHUNKS
        print(
            f"  a streamed chunk, {conns} conn.: {per_chunk:+.1f} us server CPU"
            f" (a stream's {streamed.cpu_us:.0f} us over a JSON request's {chat.cpu_us:.0f}, / {CHUNKS})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--soak", type=int, default=0, help="then N requests through polyroute")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-portkey", action="store_true")
    parser.add_argument("--skip-shared", action="store_true", help="no PostgreSQL + Redis row")
    args = parser.parse_args()
    ensure_tools()
    litellm = None if args.skip_litellm else ensure_litellm()
    portkey = None if args.skip_portkey else ensure_portkey()
    body: dict[str, object] = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
    procs: list[subprocess.Popen[bytes]] = []
    with (
        tempfile.TemporaryDirectory(prefix="polyroute-bench-") as tmp,
        contextlib.ExitStack() as servers,
    ):
        workdir = Path(tmp)
        try:
            up_port, pr_port, ll_port = free_port(), free_port(), free_port()
            w2_port, pk_port = free_port(), free_port()
            nginx = start_nginx(workdir, up_port)
            procs.append(nginx)
            direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
            streamed = {**body, "model": "fixed-stream", "stream": True}
            streamed["stream_options"] = {"include_usage": True}
            direct_sse = f"http://127.0.0.1:{up_port}/sse/v1/chat/completions"
            cases = [
                Case("upstream (nginx)", direct, body, nginx.pid, ADMIN),
                Case(STREAM_UPSTREAM, direct_sse, streamed, nginx.pid, ADMIN),
            ]
            # every server runs from here on, and the rows are taken in turn
            for durability in DURABILITIES:
                on = polyroute_on(workdir, up_port, durability, durability)
                port = pr_port if durability == DURABILITIES[-1] else free_port()
                pr = on.serve(port)
                procs.append(pr)
                via = f"http://127.0.0.1:{port}/v1/chat/completions"
                cases.append(Case(f"polyroute {durability}", via, body, pr.pid, ADMIN))
            via_pr = f"http://127.0.0.1:{pr_port}/v1/chat/completions"
            budgeted = {"Authorization": f"Bearer {on.budgeted_key()}"}
            via_responses = f"http://127.0.0.1:{pr_port}/v1/responses"
            ask: dict[str, object] = {"model": "fixed", "input": "hi"}
            cases += [
                Case(BUDGETED, via_pr, body, pr.pid, budgeted),
                Case(RESPONSES, via_responses, ask, pr.pid, ADMIN),
                Case(STREAM, via_pr, streamed, pr.pid, ADMIN),
            ]
            on = polyroute_on(workdir, up_port, DURABILITIES[-1], "2-workers")
            budgeted2 = {"Authorization": f"Bearer {on.budgeted_key()}"}
            w2 = on.serve(w2_port, workers=2)
            procs.append(w2)
            via_w2 = f"http://127.0.0.1:{w2_port}/v1/chat/completions"
            cases.append(Case(WORKERS2, via_w2, body, w2.pid, budgeted2))
            if not args.skip_shared:
                cases.append(
                    servers.enter_context(shared_server(workdir, up_port, free_port(), body))
                )
            if portkey is not None:
                pk = start_portkey(portkey, pk_port)
                procs.append(pk)
                via_pk = f"http://127.0.0.1:{pk_port}/v1/chat/completions"
                to_upstream = {
                    "Authorization": "Bearer sk-upstream",
                    "x-portkey-provider": "openai",
                    "x-portkey-custom-host": f"http://127.0.0.1:{up_port}/v1",
                }
                cases.append(Case(PORTKEY, via_pk, body, pk.pid, to_upstream))
            if litellm is not None:
                ll = start_litellm(litellm, workdir, up_port, ll_port)
                procs.append(ll)
                via_ll = f"http://127.0.0.1:{ll_port}/v1/chat/completions"
                cases.append(Case("litellm proxy", via_ll, body, ll.pid, ADMIN))
            rows = measure_together(cases, args.duration, workdir, upstream=nginx.pid)
            report(rows, litellm, portkey)
            if args.soak:
                soak(via_pr, [body, streamed], pr.pid, args.soak, workdir)
        finally:
            for p in reversed(procs):
                stop(p)


if __name__ == "__main__":
    main()
