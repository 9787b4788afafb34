"""Helpers: a real gateway on loopback over simulated vendors, for the SDKs and httpx to call."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.gateway import create_app
from polyroute.gateway._server import ServeConfig, listen
from polyroute.router.breaker import Breakers
from polyroute.testing import Fleet
from polyroute.testing._fleet import SIMULATORS

ADMIN = "admin-secret-key"


class Server:
    """``create_app(pr)`` served by uvicorn in a thread (its own event loop), with the
    guards ``polyroute serve`` has (``read_timeout_s``, ``max_connections``)."""

    def __init__(
        self,
        pr: Polyroute,
        *,
        read_timeout_s: float = 10,
        max_connections: int = 1000,
        **options: Any,
    ) -> None:
        self.pr = pr
        self.app = create_app(pr, lifecycle=True, **options)
        sock = listen("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        config = ServeConfig(
            self.app,
            read_timeout_s=read_timeout_s,
            max_connections=max_connections,
            lifespan="on",
            log_level="critical",
            access_log=False,
            loop="asyncio",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise RuntimeError("the gateway did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


async def no_sleep(seconds: float) -> None:
    """Retries back off without waiting (tests assert on what is tried, not on time)."""


def polyroute(
    fleet: Fleet,
    provider_options: dict[str, Any] | None = None,
    clock: Callable[[], float] | None = None,
    extra_providers: dict[str, Any] | None = None,
    **sections: Any,
) -> Polyroute:
    """A client of ``fleet`` (ledger in ./ledger.db unless ``storage`` is given);
    ``provider_options`` go to every
    provider; ``clock`` drives the circuit breakers."""
    sections.setdefault("health", {"interval_s": 0})  # no probes: calls counted are requests
    # absolute: a server thread that opens it after its test has left the test's directory
    # must not write beside the repository (module-scoped gateways pass their own storage)
    storage = sections.pop("storage", {"url": f"sqlite:///{Path.cwd() / 'ledger.db'}"})
    settings = fleet.settings(storage=storage, **sections)
    for spec in settings["providers"].values():
        spec.update(provider_options or {})
    settings["providers"].update(extra_providers or {})
    pr = Polyroute(Config(validate(settings, "test"), "test", fleet.env()))
    if clock is not None:  # before the router and executor take the breakers
        pr.breakers = Breakers(pr.config.settings.router.circuit_breaker, clock)
    pr.executor.sleep = no_sleep
    return pr


@dataclass
class Gateway:
    fleet: Fleet
    pr: Polyroute
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    def http(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start(
    fleet: Fleet,
    *,
    sections: dict[str, Any] | None = None,
    provider_options: dict[str, Any] | None = None,
    clock: Callable[[], float] | None = None,
    extra_providers: dict[str, Any] | None = None,
    **options: Any,
) -> Gateway:
    """A gateway over ``fleet`` (open unless ``admin_key`` is given)."""
    pr = polyroute(fleet, provider_options, clock, extra_providers, **(sections or {}))
    options.setdefault("admin_key", None)
    return Gateway(fleet, pr, Server(pr, **options))


@contextmanager
def running(fleet: Fleet, **kw: Any) -> Iterator[Gateway]:
    gw = start(fleet, **kw)
    try:
        yield gw
    finally:
        gw.server.stop()


@contextmanager
def fleet_gateway(home: Path, vendors: tuple[str, ...] = tuple(SIMULATORS)) -> Iterator[Gateway]:
    """A gateway over a new fleet of ``vendors``' simulators, its ledger under ``home``:
    for module-scoped fixtures, whose gateway outlives any one test's directory."""
    storage = {"url": f"sqlite:///{home / 'ledger.db'}"}
    with (
        Fleet(vendors) as fleet,
        running(fleet, sections={"storage": storage}) as gw,
    ):
        yield gw


def sent(gateway: Gateway, vendor: str) -> Any:
    """The body of the last request ``vendor``'s simulator received."""
    return gateway.fleet[vendor].last_request().body
