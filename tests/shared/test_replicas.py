"""Two gateways (replicas) on one Redis and one ledger: a breaker, a revoked key, and Redis
going away mid-test, through the real HTTP surface."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from gateway.support import ADMIN, Gateway, start
from polyroute.cli import cli
from polyroute.errors import BudgetExceeded
from polyroute.shared import announce_budget_change, announce_key_change
from polyroute.testing import Fleet
from servers.redis import RedisServer

MSGS = [{"role": "user", "content": "hi"}]
BREAKER = {"failure_threshold": 2, "reset_timeout_s": 60, "half_open_requests": 1}


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic")) as f:
        yield f


def sections(tmp_path: Path, redis_url: str, threshold: int = 2) -> dict[str, Any]:
    return {
        "storage": {"url": f"sqlite:///{tmp_path / 'ledger.db'}", "redis_url": redis_url},
        "router": {"circuit_breaker": {**BREAKER, "failure_threshold": threshold}},
    }


def replicas(
    fleet: Fleet, tmp_path: Path, redis_url: str, threshold: int = 2, **options: Any
) -> list[Gateway]:
    config = sections(tmp_path, redis_url, threshold)
    return [start(fleet, sections=config, **options) for _ in range(2)]


def within(deadline_s: float, check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` held (polled); fails past ``deadline_s``."""
    start_at = time.monotonic()
    while not check():
        if time.monotonic() - start_at > deadline_s:
            raise AssertionError(f"not seen within {deadline_s}s")
        time.sleep(0.002)
    return time.monotonic() - start_at


def chat(gw: Gateway, key: str = "x") -> httpx.Response:
    with gw.http(authorization=f"Bearer {key}") as http:
        return http.post("/v1/chat/completions", json={"model": "auto", "messages": MSGS})


def primary(gw: Gateway) -> tuple[str, str]:
    d = gw.pr.route("hi")
    assert d.fallbacks and d.fallbacks[0].provider != d.provider
    return d.provider, d.fallbacks[0].provider


def test_a_breaker_opened_through_one_replica_is_open_in_the_other(
    fleet: Fleet, tmp_path: Path, redis_url: str
) -> None:
    one, two = replicas(fleet, tmp_path, redis_url)
    try:
        first, second = primary(one)
        fleet[first].script.fail_always(500)
        r = chat(one)
        assert r.status_code == 200 and r.headers["x-polyroute-provider"] == second
        assert fleet[first].calls == 2 and one.pr.breakers.get(first).state == "open"
        seen = within(1.0, lambda: two.pr.breakers.get(first).state == "open")
        print(f"breaker open in the other replica after {seen * 1000:.1f} ms")
        r = chat(two)  # the other replica sends nothing to the open provider
        assert r.status_code == 200 and r.headers["x-polyroute-provider"] == second
        assert fleet[first].calls == 2
        state = two.http().get("/router/state").json()
        assert state["breakers"][first]["state"] == "open"
        assert state["breakers"][first]["retry_in_s"] > 50
    finally:
        for gw in (one, two):
            gw.server.stop()


def test_failures_seen_by_each_replica_count_for_all(
    fleet: Fleet, tmp_path: Path, redis_url: str
) -> None:
    one, two = replicas(fleet, tmp_path, redis_url, threshold=4)
    try:
        first, second = primary(one)
        fleet[first].script.fail_next(2, 500)  # a try and its retry
        assert chat(one).headers["x-polyroute-provider"] == second
        assert one.pr.breakers.get(first).state == "closed"
        within(1.0, lambda: two.pr.breakers.get(first).consecutive_failures == 2)
        fleet[first].script.fail_next(2, 500)
        assert chat(two).headers["x-polyroute-provider"] == second
        # two failures here, two there: the threshold (4) is reached for both
        assert two.pr.breakers.get(first).state == "open"
        within(1.0, lambda: one.pr.breakers.get(first).state == "open")
    finally:
        for gw in (one, two):
            gw.server.stop()


def test_a_key_revoked_through_one_replica_is_refused_by_the_other(
    fleet: Fleet, tmp_path: Path, redis_url: str
) -> None:
    # the default key cache (5 s): only the message can make the refusal this quick
    one, two = replicas(fleet, tmp_path, redis_url, admin_key=ADMIN)
    try:
        key, secret = asyncio.run(one.pr.ledger.create_key("team"))
        assert chat(one, secret).status_code == 200
        assert chat(two, secret).status_code == 200  # both have it cached now

        async def revoke() -> bool:
            await one.pr.ledger.revoke_key(key.id)  # as `polyroute keys revoke` does
            return await announce_key_change(redis_url, key.id, "revoked")

        assert asyncio.run(revoke())
        refused = within(1.0, lambda: chat(two, secret).status_code == 401)
        print(f"revoked key refused by the other replica after {refused * 1000:.1f} ms")
        assert chat(one, secret).status_code == 401
    finally:
        for gw in (one, two):
            gw.server.stop()


def test_a_key_created_elsewhere_works_at_once_despite_an_unknown_verdict(
    fleet: Fleet, tmp_path: Path, redis_url: str
) -> None:
    (gw,) = [start(fleet, sections=sections(tmp_path, redis_url), admin_key=ADMIN)]
    try:
        assert chat(gw, "sk-pr-not-yet").status_code == 401  # "unknown" cached for 5 s
        key, secret = asyncio.run(gw.pr.ledger.create_key("team"))
        assert asyncio.run(announce_key_change(redis_url, key.id, "created"))
        within(1.0, lambda: chat(gw, secret).status_code == 200)
    finally:
        gw.server.stop()


def metric(gw: Gateway, name: str) -> str:
    lines = gw.http().get("/metrics").text.splitlines()
    return next(line for line in lines if line.startswith(name + " "))


def test_redis_down_mid_test_every_replica_goes_on_and_reconnects(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer()
    server.start()
    caplog.set_level(logging.WARNING, "polyroute.shared")
    one, two = replicas(fleet, tmp_path, server.url)
    try:
        first, second = primary(one)
        assert metric(one, "polyroute_shared_state_up") == "polyroute_shared_state_up 1.0"
        server.kill()
        fleet[first].script.fail_always(500)
        # no request fails for it; breakers go on locally
        for gw in (one, two):
            r = chat(gw)
            assert r.status_code == 200 and r.headers["x-polyroute-provider"] == second
            assert gw.pr.breakers.get(first).state == "open"
        for gw in (one, two):
            within(5.0, lambda gw=gw: not gw.pr.shared.up)
            assert metric(gw, "polyroute_shared_state_up") == "polyroute_shared_state_up 0.0"
        for _ in range(3):
            assert all(chat(gw).status_code == 200 for gw in (one, two))
        down = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down) == 2  # once per replica
        fleet[first].script.recover()

        server.start()
        for gw in (one, two):
            within(5.0, lambda gw=gw: gw.pr.shared.up)
            assert metric(gw, "polyroute_shared_state_up") == "polyroute_shared_state_up 1.0"
        # sharing again: the breaker one opened alone is now the cluster's
        within(2.0, lambda: server_breaker(server, one, first) == "open")
    finally:
        for gw in (one, two):
            gw.server.stop()
        server.remove()


def server_breaker(server: RedisServer, gw: Gateway, provider: str) -> str | None:
    import redis

    with redis.Redis(port=server.port, decode_responses=True) as r:
        state = r.hget(gw.pr.shared.key("breaker", provider), "state")
        return None if state is None else str(state)


def refusal(scope: str) -> BudgetExceeded:
    return BudgetExceeded(
        scope=scope,
        period="daily",
        limit_usd=1.0,
        spent_usd=1.0,
        reserved_usd=0.0,
        requested_usd=0.01,
    )


def test_a_budget_set_elsewhere_drops_every_replicas_hint_about_it(
    fleet: Fleet, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = replicas(fleet, tmp_path, redis_url)
    try:
        first, _ = primary(one)
        for gw in (one, two):
            gw.pr.budget_hints.note([refusal(f"provider:{first}"), refusal("global")])
            assert set(gw.pr.budget_hints.headroom()) == {first, "*"}
        config = tmp_path / "polyroute.toml"
        config.write_text(
            f'[storage]\nurl = "sqlite:///{tmp_path / "ledger.db"}"\nredis_url = "{redis_url}"\n'
            f'[providers.{first}]\ntype = "{first}"\n'
        )
        monkeypatch.setenv("POLYROUTE_CONFIG", str(config))
        r = CliRunner().invoke(cli, ["budget", "set", first, "--daily", "50"])
        assert r.exit_code == 0, r.output
        for gw in (one, two):
            within(1.0, lambda gw=gw: set(gw.pr.budget_hints.headroom()) == {"*"})
        assert asyncio.run(announce_budget_change(redis_url, "global"))
        for gw in (one, two):
            within(1.0, lambda gw=gw: not gw.pr.budget_hints.headroom())
    finally:
        for gw in (one, two):
            gw.server.stop()
