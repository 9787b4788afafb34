"""Admin and virtual keys: 401, 403, a key's budget, the verdict cache, admin endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from sqlalchemy import select
from starlette.datastructures import Headers

from gateway.support import ADMIN, Gateway, start
from polyroute.errors import GatewayError
from polyroute.gateway._auth import presented
from polyroute.ledger import VirtualKey
from polyroute.ledger._schema import usage
from polyroute.ledger._store import Store
from polyroute.testing import Fleet

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(fleet: Fleet) -> Iterator[Gateway]:
    g = start(fleet, admin_key=ADMIN, key_cache_s=0.3)
    yield g
    g.server.stop()


def new_key(gw: Gateway, **options: Any) -> tuple[VirtualKey, str]:
    return asyncio.run(gw.pr.ledger.create_key("team", **options))


def rows(gw: Gateway) -> list[dict[str, Any]]:
    def read(store: Store) -> list[dict[str, Any]]:
        with store.read() as c:
            return [dict(r) for r in c.execute(select(usage)).mappings()]

    async def main() -> list[dict[str, Any]]:
        await gw.pr.ledger.flush()
        return await gw.pr.ledger.run(read)

    return asyncio.run(main())


def oa(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def test_401_without_a_key_or_with_a_wrong_one(gw: Gateway) -> None:
    with gw.http() as http:
        r = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSGS})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.json()["error"]["message"].startswith("missing API key")
        r = http.get("/v1/models", headers={"authorization": "Bearer sk-pr-nope-nope-nope"})
        assert r.status_code == 401 and "invalid API key" in r.json()["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gw.url, api_key="wrong", max_retries=0).messages.create(
            model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert sum(s.calls for s in gw.fleet.sims.values()) == 0


def test_the_admin_key_in_either_header(gw: Gateway) -> None:
    assert oa(gw, ADMIN).chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices
    m = anthropic.Anthropic(base_url=gw.url, api_key=ADMIN, max_retries=0).messages.create(
        model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert m.content
    assert [r["virtual_key"] for r in rows(gw)] == [None, None]


def test_a_virtual_key_is_billed_and_checked_once_per_cache_period(fleet: Fleet) -> None:
    gw = start(fleet, admin_key=ADMIN)  # the default cache period
    try:
        checked_once(gw)
    finally:
        gw.server.stop()


def checked_once(gw: Gateway) -> None:
    key, secret = new_key(gw)
    calls = 0
    verify = gw.pr.ledger.verify_key

    async def counting(s: str) -> VirtualKey | None:
        nonlocal calls
        calls += 1
        return await verify(s)

    gw.pr.ledger.verify_key = counting  # type: ignore[method-assign]
    client = oa(gw, secret)
    for _ in range(5):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert calls == 1  # no database trip per request
    assert [r["virtual_key"] for r in rows(gw)] == [key.id] * 5


def test_a_revoked_key_stops_working_after_the_cache_period(gw: Gateway) -> None:
    key, secret = new_key(gw)
    client = oa(gw, secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    asyncio.run(gw.pr.ledger.revoke_key(key.id))
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # still cached
    time.sleep(0.4)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)


def test_403_for_models_the_key_may_not_use(gw: Gateway) -> None:
    _, secret = new_key(gw, models=["gpt-4o-mini", "anthropic/claude-haiku-4-5"])
    client = oa(gw, secret)
    for model in ("gpt-4o", "openai/gpt-4o", "claude-haiku-4-5", "fusion"):
        with pytest.raises(openai.PermissionDeniedError) as info:
            client.chat.completions.create(model=model, messages=MSGS)
        assert info.value.body["type"] == "permission_error"  # type: ignore[index]
    for model in ("gpt-4o-mini", "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MSGS)
        assert raw.headers["x-polyroute-model"] == model.rpartition("/")[2]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSGS)
    assert raw.headers["x-polyroute-model"] == "gpt-4o-mini"  # auto: among the bare names listed
    assert sorted(m.id for m in client.models.list()) == [
        "anthropic/claude-haiku-4-5",
        "gpt-4o-mini",
    ]
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="text-embedding-3-small", input="a")


def test_429_when_the_keys_budget_is_spent(gw: Gateway) -> None:
    key, secret = new_key(gw, daily_usd=0.0)
    with pytest.raises(openai.RateLimitError) as info:
        oa(gw, secret).chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert f"budget for key:{key.id}" in info.value.message
    assert gw.fleet["openai"].calls == 0
    metrics = gw.http(authorization=f"Bearer {ADMIN}").get("/metrics").text
    assert f'polyroute_budget_refusals_total{{scope="key:{key.id}"}} 1.0' in metrics


def test_admin_endpoints_need_the_admin_key_and_health_is_open(gw: Gateway) -> None:
    _, secret = new_key(gw)
    with gw.http() as http:
        assert http.get("/health").status_code == 200
        assert http.get("/health/providers").status_code == 200
        assert http.get("/health/providers?check=1").status_code == 401  # probes every vendor
        admin = {"authorization": f"Bearer {ADMIN}"}
        assert http.get("/health/providers?check=1", headers=admin).status_code == 200
        for path in ("/router/state", "/metrics"):
            assert http.get(path).status_code == 401
            assert http.get(path, headers={"x-api-key": secret}).status_code == 401
            assert http.get(path, headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_auto_with_a_key_that_lists_only_pins_is_403(gw: Gateway) -> None:
    _, secret = new_key(gw, models=["anthropic/claude-haiku-4-5"])
    with pytest.raises(openai.PermissionDeniedError, match="may use only"):
        oa(gw, secret).chat.completions.create(model="auto", messages=MSGS)


async def test_the_verdict_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.datastructures import Headers

    from polyroute.gateway import _auth

    monkeypatch.setattr(_auth, "KEY_CACHE_SIZE", 3)
    now = [0.0]
    seen: list[str] = []

    async def verify(secret: str) -> VirtualKey | None:
        seen.append(secret)
        return None

    auth = _auth.Auth("admin", verify, ttl_s=5, clock=lambda: now[0])
    for i in range(3):
        with pytest.raises(GatewayError):
            await auth.caller(Headers({"x-api-key": f"bad-{i}"}))
    now[0] = 10.0  # all three stale: the next verdict drops them
    with pytest.raises(GatewayError):
        await auth.caller(Headers({"x-api-key": "bad-3"}))
    assert len(auth._cache) == 1
    for i in range(4, 7):  # full of fresh verdicts: starts over
        with pytest.raises(GatewayError):
            await auth.caller(Headers({"x-api-key": f"bad-{i}"}))
    assert len(auth._cache) == 1
    assert len(seen) == 7


def _as_get_reads_it(headers: Headers) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


@pytest.mark.parametrize(
    "raw",
    [
        [],
        [(b"x-api-key", b"k1")],
        [(b"authorization", b"Bearer k2")],
        [(b"authorization", b"bEaReR  k2 ")],
        [(b"authorization", b"Bearer   ")],
        [(b"authorization", b"Basic dXNlcjpwdw==")],
        [(b"authorization", b"Bearer")],
        [(b"x-api-key", b""), (b"authorization", b"Bearer k2")],
        [(b"authorization", b"Bearer k2"), (b"x-api-key", b"k1")],
        [(b"x-api-key", b"k1"), (b"x-api-key", b"k3")],
        [(b"authorization", b"Bearer k2"), (b"authorization", b"Bearer k4")],
        [(b"authorization", b"Bearer \xe9t\xe9\xa0")],
        [(b"host", b"x"), (b"x-api-key-2", b"no"), (b"authorization", b"Basic x")],
    ],
)
def test_the_presented_key_is_what_headers_get_reads(raw: list[tuple[bytes, bytes]]) -> None:
    headers = Headers(raw=raw)
    assert presented(headers) == _as_get_reads_it(headers)
