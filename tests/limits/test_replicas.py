"""Three ``polyroute serve`` processes on one ledger and one Redis hold a virtual key's rpm
and a provider's rpm together: N across all three, never N per replica."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.test_kill9 import start
from polyroute.ledger import Ledger
from polyroute.testing import Fleet
from servers.ports import free_port

ADMIN = "admin-secret-for-the-test"
KEY_RPM = 10
PROVIDER_RPM = 12
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def burst(urls: list[str], secret: str, n: int, model: str) -> list[httpx.Response]:
    """``n`` requests at once, spread over the replicas."""
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(
                    urls[i % len(urls)] + "/v1/chat/completions", json={**BODY, "model": model}
                )
                for i in range(n)
            )
        )


async def test_three_replicas_share_one_rpm_per_key_and_per_provider(
    tmp_path: Path, redis_url: str
) -> None:
    db = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{db}")
    _, secret = await ledger.create_key("team", rpm=KEY_RPM)
    await ledger.aclose()

    with Fleet(("openai",), reply="ok") as fleet:
        providers = fleet.toml().replace(
            '[providers."openai"]\n', f'[providers."openai"]\nrpm = {PROVIDER_RPM}\n'
        )
        config = tmp_path / "polyroute.toml"
        config.write_text(
            providers + f'\n[storage]\nurl = "sqlite:///{db}"\nredis_url = "{redis_url}"\n'
            "\n[health]\ninterval_s = 0\n"
        )
        env = {
            **os.environ,
            **fleet.env(),
            "POLYROUTE_HOME": str(tmp_path / "home"),
            "POLYROUTE_ADMIN_KEY": ADMIN,
        }
        procs: list[subprocess.Popen[str]] = []
        urls = []
        try:
            for _ in range(3):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                command = [sys.executable, "-m", "polyroute", "--config", str(config), "serve"]
                procs.append(await start([*command, "--port", str(port)], env, url))
                urls.append(url)

            answers = await burst(urls, secret, 3 * KEY_RPM, "gpt-4o-mini")
            codes = [r.status_code for r in answers]
            assert codes.count(200) == KEY_RPM and codes.count(429) == 2 * KEY_RPM
            for r in answers:
                if r.status_code == 429:
                    assert 0 < int(r.headers["retry-after"]) <= 60
                    assert "rate limit rpm 10 of key:" in r.json()["error"]["message"]

            # the provider has taken 10 of its 12: two more pass, across the three
            pinned = await burst(urls, ADMIN, 6, "openai/gpt-4o-mini")
            codes = [r.status_code for r in pinned]
            assert codes.count(200) == PROVIDER_RPM - KEY_RPM and codes.count(429) == 4
            assert len(fleet["openai"].requests) == PROVIDER_RPM
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
