"""``kill -9`` of ``polyroute serve`` under load loses no answered request, and the
restarted gateway serves the same key within seconds (the dead process's holds lapse),
on a SQLite file and on PostgreSQL (where "answered" means committed: no journal).

Half the load streams. A request counts as answered when the client got all of it: a
200 body, or a stream through its ``[DONE]``. With durability "answered" each of these was
in the ledger's journal before its last byte left, so once the ledger is opened again (which
replays a dead process's journal) it has at least as many rows for the key as there were
answers (and no more than the simulator answered).

The budget is sized so that a dead process's holds block the restart's probe: load
requests hold $0.01 each (30 in flight), the probe holds $0.95 of the key's $1.00.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from polyroute.ledger import Ledger
from polyroute.ledger._journal import journal_dir
from polyroute.ledger._schema import reservations, usage
from polyroute.ledger._store import database_url
from polyroute.testing import Fleet
from servers.ports import free_port

OUT_PRICE = 100.0  # USD per million output tokens; input is free
LOAD_TOKENS = 100  # worst case $0.01
PROBE_TOKENS = 9_500  # worst case $0.95
KEY_DAILY_USD = 1.0
CONCURRENCY = 30
ANSWERED_BEFORE_KILL = 60
ADMIN = "admin-secret-for-the-test"


async def start(command: list[str], env: dict[str, str], url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                if (await client.get(url + "/health", timeout=1)).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("the gateway did not come up")


def body(max_tokens: int, stream: bool) -> dict[str, object]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def load(url: str, secret: str, stop: asyncio.Event, answered: list[bool]) -> None:
    """CONCURRENCY callers in a loop until ``stop`` or the server dies."""
    headers = {"authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def caller(i: int) -> None:
            stream = i % 2 == 1
            while not stop.is_set():
                try:
                    r = await client.post(
                        "/v1/chat/completions", json=body(LOAD_TOKENS, stream), timeout=10
                    )
                except httpx.TransportError:
                    return  # the server is gone
                assert r.status_code == 200, r.text
                if not stream or r.text.rstrip().endswith("data: [DONE]"):
                    answered.append(stream)

        await asyncio.gather(*(caller(i) for i in range(CONCURRENCY)))


async def test_kill_9_loses_no_answered_request_and_the_restart_serves_the_key(
    tmp_path: Path, db_url: str
) -> None:
    """On a SQLite file (answered: journaled) and on PostgreSQL (answered: committed)."""
    url_db = db_url
    sqlite_file = url_db.startswith("sqlite:") and Path(url_db.removeprefix("sqlite:///"))
    ledger = Ledger(url_db)
    key, secret = await ledger.create_key("load", daily_usd=KEY_DAILY_USD)
    await ledger.aclose()

    with Fleet(("openai",), reply="ok") as fleet:
        sim = fleet["openai"]
        sim.script.latency_s = 0.05  # requests are in flight when the kill comes
        config = tmp_path / "polyroute.toml"
        config.write_text(
            fleet.toml(price=(0.0, OUT_PRICE))
            + f'\n[storage]\nurl = "{url_db}"\n\n[health]\ninterval_s = 0\n'
        )
        env = {
            **os.environ,
            **fleet.env(),
            "POLYROUTE_HOME": str(tmp_path / "home"),
            "POLYROUTE_ADMIN_KEY": ADMIN,
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "polyroute", "--config", str(config), "serve"]
        command += ["--port", str(port)]

        proc = await start(command, env, url)
        answered: list[bool] = []
        stop = asyncio.Event()
        try:
            loading = asyncio.create_task(load(url, secret, stop, answered))
            deadline = time.monotonic() + 30
            while len(answered) < ANSWERED_BEFORE_KILL and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            stop.set()
            await loading
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        upstream = sim.calls  # what the simulator was asked (streams included)

        engine = create_engine(database_url(url_db))
        try:
            with engine.connect() as con:  # before the replay, which frees a dead one's slices
                dead_holds = con.scalar(select(func.count()).select_from(reservations))
        finally:
            engine.dispose()

        # the ledger is the database and the dead process's journal: any open replays it
        replayer = Ledger(url_db)
        await replayer.usage()
        await replayer.aclose()
        if sqlite_file:
            assert not any(journal_dir(str(sqlite_file)).iterdir())
            with sqlite3.connect(sqlite_file) as con:
                assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        engine = create_engine(database_url(url_db))
        try:
            with engine.connect() as con:
                ok = (usage.c.virtual_key == key.id) & (usage.c.status == "ok")
                rows = con.scalar(select(func.count()).where(ok))
        finally:
            engine.dispose()
        assert len(answered) >= ANSWERED_BEFORE_KILL and any(answered)  # streams too
        assert len(answered) <= rows <= upstream, (len(answered), rows, upstream)
        assert dead_holds > 0  # requests were in flight: their holds outlive the process

        # the restart serves the key once the dead process's lease lapses (10 s at most)
        proc = await start(command, env, url)
        try:
            headers = {"authorization": f"Bearer {secret}"}
            deadline = time.monotonic() + 10
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                while True:
                    r = await client.post(
                        "/v1/chat/completions", json=body(PROBE_TOKENS, False), timeout=10
                    )
                    if r.status_code == 200:
                        break
                    assert r.status_code == 429, r.text
                    assert time.monotonic() < deadline, r.text
                    await asyncio.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            finally:
                proc.kill()
                proc.wait()
