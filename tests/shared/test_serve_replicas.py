"""Three ``polyroute serve`` processes on one ledger and one Redis: a breaker opened through
one is open in the others within 1 s, and a key revoked with ``polyroute keys revoke`` is
refused by all three within 1 s (measured: printed; ``bench/shared.py`` has the figures)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.test_kill9 import start
from polyroute.ledger import Ledger
from polyroute.testing import Fleet
from servers.ports import free_port

ADMIN = "admin-secret-for-the-test"
MSGS = [{"role": "user", "content": "hi"}]


@dataclass
class Cluster:
    fleet: Fleet
    urls: list[str]
    config: Path
    env: dict[str, str]
    db: Path


@pytest.fixture
async def cluster(tmp_path: Path, redis_url: str) -> AsyncIterator[Cluster]:
    db = tmp_path / "ledger.db"
    with Fleet(("openai", "anthropic"), reply="ok") as fleet:
        config = tmp_path / "polyroute.toml"
        config.write_text(
            fleet.toml() + f'\n[storage]\nurl = "sqlite:///{db}"\nredis_url = "{redis_url}"\n'
            "\n[health]\ninterval_s = 0\n"
            "\n[router.circuit_breaker]\nfailure_threshold = 2\nreset_timeout_s = 60\n"
        )
        env = {
            **os.environ,
            **fleet.env(),
            "POLYROUTE_HOME": str(tmp_path / "home"),
            "POLYROUTE_ADMIN_KEY": ADMIN,
        }
        procs: list[subprocess.Popen[str]] = []
        try:
            urls = []
            for _ in range(3):
                url = f"http://127.0.0.1:{free_port()}"
                command = [sys.executable, "-m", "polyroute", "--config", str(config), "serve"]
                port = url.rsplit(":", 1)[1]
                procs.append(await start([*command, "--port", port], env, url))
                urls.append(url)
            yield Cluster(fleet, urls, config, env, db)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)


async def within(deadline_s: float, check: Callable[[], Awaitable[bool]]) -> float:
    start_at = time.monotonic()
    while not await check():
        if time.monotonic() - start_at > deadline_s:
            raise AssertionError(f"not seen within {deadline_s}s")
    return time.monotonic() - start_at


async def test_a_breaker_opened_through_one_replica_is_open_in_the_others(
    cluster: Cluster,
) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(headers=admin, timeout=30) as http:
        cluster.fleet["openai"].script.fail_always(500)
        body = {"model": "openai/gpt-4o-mini", "messages": MSGS}
        r = await http.post(cluster.urls[0] + "/v1/chat/completions", json=body)
        assert r.status_code == 502  # a try and its retry: the threshold (2)

        async def open_in(url: str) -> bool:
            state = (await http.get(url + "/router/state")).json()
            return bool(state["breakers"].get("openai", {}).get("state") == "open")

        assert await open_in(cluster.urls[0])
        for url in cluster.urls[1:]:
            seen = await within(1.0, lambda url=url: open_in(url))
            print(f"breaker open in {url} after {seen * 1000:.0f} ms (HTTP polls included)")
        calls = cluster.fleet["openai"].calls
        for url in cluster.urls[1:]:  # auto goes elsewhere without trying it
            r = await http.post(
                url + "/v1/chat/completions", json={"model": "auto", "messages": MSGS}
            )
            assert r.status_code == 200 and r.headers["x-polyroute-provider"] == "anthropic"
        assert cluster.fleet["openai"].calls == calls


async def test_a_key_revoked_with_the_cli_is_refused_by_every_replica(
    cluster: Cluster,
) -> None:
    ledger = Ledger(f"sqlite:///{cluster.db}")
    key, secret = await ledger.create_key("team")
    await ledger.aclose()
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        for url in cluster.urls:  # each replica caches the key (for 5 s by default)
            assert (await http.get(url + "/v1/models")).status_code == 200
        command = [sys.executable, "-m", "polyroute", "--config", str(cluster.config)]
        done = await asyncio.to_thread(
            subprocess.run,
            [*command, "keys", "revoke", key.id],
            env=cluster.env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr

        async def refused() -> bool:
            codes = [(await http.get(url + "/v1/models")).status_code for url in cluster.urls]
            return codes == [401, 401, 401]

        seen = await within(1.0, refused)
        print(f"revoked key refused by all three after {seen * 1000:.0f} ms (HTTP polls included)")
