"""Replicas of ``polyroute serve`` for the cluster tests: started together, each logging to a
file (a pipe nobody reads would stall a busy server once full), stopped by the caller."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from servers.ports import free_port


@dataclass
class Replica:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@dataclass
class Replicas:
    """``count`` gateways on one config; :meth:`stop` ends those still running."""

    config: Path
    env: dict[str, str]
    logs: Path
    count: int = 3
    items: list[Replica] = field(default_factory=list)

    def start(self) -> list[Replica]:
        command = [sys.executable, "-m", "polyroute", "--config", str(self.config), "serve"]
        self.logs.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            port = free_port()
            log = self.logs / f"replica-{i}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*command, "--port", str(port), "--workers", "1"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                )
            self.items.append(Replica(f"http://127.0.0.1:{port}", proc, log))
        try:
            asyncio.run(self._ready())
        except BaseException:
            self.stop()
            raise
        return self.items

    async def _ready(self) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=1) as client:
            for replica in self.items:
                while True:
                    if replica.proc.poll() is not None:
                        raise AssertionError(f"{replica.url} exited:\n{replica.log.read_text()}")
                    try:
                        if (await client.get(replica.url + "/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{replica.url} did not come up")
                    await asyncio.sleep(0.05)

    def stop(self) -> None:
        for replica in self.items:
            if replica.proc.poll() is None:
                replica.proc.terminate()
        for replica in self.items:
            replica.stop()
