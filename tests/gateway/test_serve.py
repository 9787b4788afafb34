"""``polyroute serve`` as a real process: graceful shutdown, workers, access log, bad config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from polyroute.cli import cli
from polyroute.ledger import Ledger
from polyroute.testing import Fleet
from servers.ports import free_port


def wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the gateway did not come up")


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai",), reply="slow but complete") as f:
        yield f


def serve(fleet: Fleet, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str, Path]:
    db = tmp_path / "ledger.db"
    config = tmp_path / "polyroute.toml"
    config.write_text(
        fleet.toml(price=(1.0, 2.0))
        + f'\n[storage]\nurl = "sqlite:///{db}"\n\n[health]\ninterval_s = 0\n'
    )
    port = free_port()
    env = {**os.environ, **fleet.env(), "POLYROUTE_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "polyroute", "--config", str(config), "serve"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
    except BaseException:
        proc.kill()
        raise
    return proc, url, db


def test_sigterm_lets_the_request_in_flight_finish_and_flushes_the_ledger(
    fleet: Fleet, tmp_path: Path
) -> None:
    proc, url, db = serve(fleet, tmp_path)
    sim = fleet["openai"]
    sim.script.latency_s = 1.0
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        result["r"] = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)

    try:
        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 10
        while sim.calls < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.calls == 1  # upstream, in flight
        proc.send_signal(signal.SIGTERM)
        caller.join(timeout=30)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    response = result["r"]
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "slow but complete"
    # uvicorn re-raises the signal once it has shut down cleanly (systemd counts it a success)
    assert proc.returncode in (0, -signal.SIGTERM), err
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert {x["path"] for x in lines} == {"/health", "/v1/chat/completions"}
    [line] = [x for x in lines if x["path"] == "/v1/chat/completions"]
    assert line["status"] == 200
    assert line["provider"] == "openai" and line["cost_usd"] > 0

    async def rows() -> int:
        ledger = Ledger(f"sqlite:///{db}")
        try:
            return (await ledger.usage()).requests
        finally:
            await ledger.aclose()

    assert asyncio.run(rows()) == 1


def test_several_workers_serve_and_stop(fleet: Fleet, tmp_path: Path) -> None:
    proc, url, _ = serve(fleet, tmp_path, "--workers", "2")
    try:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(4):
            assert httpx.post(url + "/v1/chat/completions", json=body, timeout=30).is_success
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "2 workers" in err


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nmax_body_mb = -1\n")
    result = CliRunner().invoke(cli, ["--config", str(bad), "serve"])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"polyroute: error: {bad}: gateway.max_body_mb: ")
