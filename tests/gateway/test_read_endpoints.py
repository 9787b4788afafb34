"""Models, health, router state, usage, metrics, the dashboard page, access logs, fusion."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gateway.support import ADMIN, Gateway, running
from polyroute.errors import GatewayError
from polyroute.gateway._admin import parse_since
from polyroute.ledger import UsageRecord
from polyroute.testing import Fleet

MSGS = [{"role": "user", "content": "hi"}]


def test_models_lists_served_models_and_aliases(gateway: Gateway) -> None:
    data = gateway.http().get("/v1/models").json()
    assert data["object"] == "list"
    by_id = {m["id"]: m for m in data["data"]}
    assert by_id["openai/gpt-4o"] == {
        "id": "openai/gpt-4o",
        "object": "model",
        "created": 0,
        "owned_by": "openai",
    }
    assert by_id["claude-opus-4-7"]["owned_by"] == "anthropic"
    aliases = {"auto", "fusion"} | {f"auto:{s}" for s in ("cost", "quality", "performance")}
    aliases |= {f"fusion:{m}" for m in ("majority", "weighted", "semantic", "synthesis")}
    assert aliases <= set(by_id)
    assert by_id["auto"]["owned_by"] == "polyroute"


def test_health_and_provider_probes(fleet: Fleet) -> None:
    down = {"type": "ollama", "base_url": "http://127.0.0.1:9", "models": ["tiny"]}
    with running(fleet, extra_providers={"down": down}) as gw:
        http = gw.http()
        assert http.get("/health").json() == {"status": "ok"}
        before = http.get("/health/providers").json()["providers"]
        assert {p["provider"]: p["ok"] for p in before} == {
            "openai": None,
            "anthropic": None,
            "down": None,
        }
        after = http.get("/health/providers?check=1").json()["providers"]
        ok = {p["provider"]: p["ok"] for p in after}
        assert ok == {"openai": True, "anthropic": True, "down": False}
        [bad] = [p for p in after if p["provider"] == "down"]
        assert bad["error"] and bad["error_type"] and bad["latency_ms"] >= 0


def test_router_state(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    list(client.chat.completions.create(model="claude-sonnet-4-6", messages=MSGS, stream=True))
    state = gateway.http().get("/router/state").json()
    assert [p["id"] for p in state["providers"]] == ["openai", "anthropic"]
    assert state["breakers"]["openai"]["state"] == "closed"
    assert {b["scope"] for b in state["budgets"]} >= {"provider:openai", "provider:anthropic"}
    assert {(lat["provider"], lat["model"]) for lat in state["latency"]} == {
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-6"),
    }
    newest, older = state["recent"][:2]
    assert (newest["provider"], newest["model"], newest["stream"]) == (
        "anthropic",
        "claude-sonnet-4-6",
        True,
    )
    assert (older["provider"], older["stream"]) == ("openai", False)
    assert {"strategy", "reasoning", "fallbacks", "excluded", "excluded_count", "at"} <= set(newest)


def test_metrics(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MSGS)
    gateway.http().get("/no/such/path")
    r = gateway.http().get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for line in (
        'polyroute_gateway_requests_total{endpoint="/v1/chat/completions",model="gpt-4o-mini",'
        'provider="openai",status="200"} 1.0',
        'polyroute_gateway_requests_total{endpoint="/v1/chat/completions",model="",provider="",'
        'status="404"} 1.0',
        'polyroute_gateway_requests_total{endpoint="other",model="",provider="",status="404"} 1.0',
        'polyroute_gateway_request_duration_seconds_count{endpoint="/v1/chat/completions"} 2.0',
        'polyroute_tokens_total{kind="completion",model="gpt-4o-mini",provider="openai"} 10.0',
        'polyroute_upstream_attempts_total{model="gpt-4o-mini",outcome="ok",provider="openai"} 1.0',
        'polyroute_breaker_state{provider="openai"} 0.0',
    ):
        assert line in text, line
    assert 'polyroute_cost_usd_total{model="gpt-4o-mini",provider="openai"}' in text


def test_pinned_models_outside_the_config_are_one_metrics_series(fleet: Fleet) -> None:
    agg = {**fleet.settings()["providers"]["openai"], "models": ["*"], "default_model": ""}
    with running(fleet, extra_providers={"agg": agg}) as gateway:  # "*": any name passes
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        for name in ("made-up-1", "made-up-2", "made-up-3"):
            client.chat.completions.create(model=f"agg/{name}", messages=MSGS)
        text = gateway.http().get("/metrics").text
    assert "made-up" not in text  # callers cannot grow the series without bound
    assert (
        'polyroute_upstream_attempts_total{model="other",outcome="ok",provider="agg"} 3.0' in text
    )


def test_the_dashboard_page(gateway: Gateway) -> None:
    r = gateway.http().get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/router/state" in r.text and "/usage?by=" in r.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text)  # no outside assets
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self'" in policy and "unsafe-eval" not in policy
    [script] = re.findall(r"<script>(.*?)</script>", r.text, re.S)  # allowed by its hash
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in policy
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_every_response_is_nosniff(gateway: Gateway) -> None:
    http = gateway.http()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for r in (
        http.get("/health"),
        http.get("/v1/models"),
        http.get("/metrics"),
        http.get("/no/such/route"),
        http.post("/v1/chat/completions", json=body),
        http.post("/v1/chat/completions", json={}),
    ):
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], r.request.url


def _usage(gw: Gateway, query: str = "", **headers: str) -> Any:
    r = gw.http(**headers).get("/usage" + query)
    assert r.status_code == 200, r.text
    return r.json()


def test_usage_in_the_cli_json_shape_by_each_key(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    client.chat.completions.create(model="claude-sonnet-4-6", messages=MSGS)
    pr = gateway.pr
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    by_provider = _usage(gateway)  # default: by provider, all time
    assert by_provider == asyncio.run(pr.usage(by="provider")).as_dict()  # `usage --json`
    assert by_provider["requests"] == 3 and by_provider["total_cost_usd"] > 0
    [first, second] = by_provider["rows"]
    assert set(first) == {
        "provider",
        "requests",
        "failed",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost_usd",
        "carbon_g",
    }
    assert {first["provider"], second["provider"]} == {"openai", "anthropic"}
    models = _usage(gateway, "?by=model")
    assert {r["model"]: r["requests"] for r in models["rows"]} == {
        "gpt-4o-mini": 2,
        "claude-sonnet-4-6": 1,
    }
    assert [r["day"] for r in _usage(gateway, "?by=day&since=30d")["rows"]] == [today]
    assert [r["month"] for r in _usage(gateway, "?by=month")["rows"]] == [today[:7]]
    only = _usage(gateway, "?by=model&provider=openai")
    assert [(r["model"], r["requests"]) for r in only["rows"]] == [("gpt-4o-mini", 2)]
    assert _usage(gateway, "?provider=nobody") == {
        "total_cost_usd": 0,
        "total_carbon_g": 0,
        "requests": 0,
        "rows": [],
    }
    assert _usage(gateway, "?by=&since=&provider=")["requests"] == 3  # empty = not given


def test_usage_since_a_day(gateway: Gateway) -> None:
    now = time.time()
    for days_ago in (0, 10, 40):
        gateway.pr.ledger.record(
            UsageRecord(ts=now - days_ago * 86_400, provider="openai", model="m", cost_usd=0.5)
        )
    asyncio.run(gateway.pr.ledger.flush())
    ten_days_ago = datetime.fromtimestamp(now - 10 * 86_400, UTC).strftime("%Y-%m-%d")
    assert _usage(gateway)["requests"] == 3
    assert _usage(gateway, "?since=1d")["requests"] == 1
    assert _usage(gateway, "?since=10d")["requests"] == 1
    assert _usage(gateway, "?since=11d")["requests"] == 2
    assert _usage(gateway, f"?since={ten_days_ago}")["requests"] == 2
    assert _usage(gateway, "?since=%2030d%20")["total_cost_usd"] == 1.0  # spaces trimmed


@pytest.mark.parametrize(
    ("query", "param", "message"),
    [
        ("?by=week", "by", "'by' must be one of day, month, provider, model, not 'week'"),
        ("?by=DAY", "by", "'by' must be one of"),
        ("?since=0d", "since", "'since' must be at least 1d"),
        ("?since=yesterday", "since", "'since' must be YYYY-MM-DD or Nd (e.g. 30d), not"),
        ("?since=2026-13-01", "since", "'since' must be YYYY-MM-DD or Nd"),
        ("?since=-3d", "since", "'since' must be YYYY-MM-DD or Nd"),
        ("?since=1000000d", "since", "'since' must be YYYY-MM-DD or Nd"),  # before year 1
        ("?since=99999999d", "since", "'since' must be YYYY-MM-DD or Nd"),
    ],
)
def test_usage_refuses_a_bad_query_with_400(
    gateway: Gateway, query: str, param: str, message: str
) -> None:
    r = gateway.http().get("/usage" + query)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"].startswith(message), error["message"]


def test_parse_since() -> None:
    now = datetime(2026, 11, 26, 15, 30, tzinfo=UTC).timestamp()
    assert parse_since("1d", now) == datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert parse_since("30d", now) == datetime(2026, 10, 28, tzinfo=UTC).timestamp()
    assert parse_since(" 2026-01-02 ", now) == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    with pytest.raises(GatewayError, match="at least 1d") as info:
        parse_since("0d", now)
    assert (info.value.status, info.value.param) == (400, "since")
    long = "x" * 500
    with pytest.raises(GatewayError) as info:
        parse_since(long, now)
    assert long not in str(info.value)  # the echo is cut short


def test_usage_and_router_state_need_the_admin_key(fleet: Fleet) -> None:
    with running(fleet, admin_key=ADMIN) as gw:
        _, virtual = asyncio.run(gw.pr.ledger.create_key("team"))
        for path in ("/usage", "/usage?by=nope", "/router/state"):
            for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": virtual}):
                r = gw.http(**headers).get(path)
                assert r.status_code == 401, (path, headers)  # before the query is read
                error = r.json()["error"]
                assert error["type"] == "authentication_error"
                assert error["message"] == "this endpoint needs the admin key"
        assert _usage(gw, authorization=f"Bearer {ADMIN}")["rows"] == []
        assert _usage(gw, "?by=day", **{"x-api-key": ADMIN})["rows"] == []


def test_usage_and_router_state_when_the_ledger_cannot_open(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ledger.db").mkdir()  # the gateway's sqlite:///ledger.db cannot be opened
    with running(fleet) as gw, gw.http() as http:
        for path in ("/usage?by=day", "/router/state"):
            r = http.get(path)
            assert r.status_code == 503, path  # unavailable: a retry may find it back
            assert r.headers["retry-after"] == "2"
            error = r.json()["error"]
            assert error["type"] == "server_error"
            assert error["code"] == "ledger_unavailable"
            assert error["message"] == (
                "the gateway cannot reach its usage database (its log says why); retry shortly"
            )
            assert str(tmp_path) not in r.text  # the storage path is for the operator's log
        assert "cannot open the ledger" in caplog.text
        assert http.get("/health").status_code == 200  # the rest still answers


def test_one_json_access_log_line_per_request_without_secrets(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "the-admin-secret-123"
    with running(fleet, admin_key=secret) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
        with caplog.at_level(logging.INFO, logger="polyroute.access"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            gw.http().get("/router/state")  # 401: no key
            for _ in range(200):  # a line is written once its response has gone out
                if len([r for r in caplog.records if r.name == "polyroute.access"]) == 2:
                    break
                time.sleep(0.01)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "polyroute.access"]
    ok, refused = lines
    assert ok["method"] == "POST" and ok["path"] == "/v1/chat/completions"
    assert (ok["status"], ok["provider"], ok["model"], ok["key"]) == (
        200,
        "openai",
        "gpt-4o-mini",
        None,
    )
    assert ok["cost_usd"] > 0 and ok["latency_ms"] > 0
    assert (refused["status"], refused["error"]) == (401, "authentication")
    assert secret not in caplog.text and "hi" not in caplog.text.replace("chat", "")


def test_fusion_through_the_gateway(gateway: Gateway) -> None:
    gateway.fleet["openai"].script.reply = "42"
    gateway.fleet["anthropic"].script.reply = "42"
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="fusion:majority", messages=MSGS)
    assert raw.parse().choices[0].message.content == "42"
    assert raw.headers["x-polyroute-provider"] == "fusion"
    assert raw.headers["x-polyroute-model"] == "fusion:majority"
    assert gateway.fleet["openai"].calls == gateway.fleet["anthropic"].calls == 1
    a = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    with a.messages.stream(
        model="fusion", max_tokens=20, messages=[{"role": "user", "content": "6x7?"}]
    ) as stream:
        assert "".join(stream.text_stream) == "42"


def test_a_caller_leaving_mid_stream_closes_and_records_the_upstream_call(
    gateway: Gateway,
) -> None:
    import asyncio

    from sqlalchemy import select

    from polyroute.ledger._schema import usage
    from polyroute.ledger._store import Store

    gateway.fleet["openai"].script.chunk_delay_s = 0.2
    stream_body = {"model": "gpt-4o-mini", "messages": MSGS, "stream": True}
    with gateway.http() as http, http.stream("POST", "/v1/chat/completions", json=stream_body) as r:
        for line in r.iter_lines():
            if "Simulated" in line:
                break  # leave after the first token

    def read(store: Store) -> list[dict[str, object]]:
        with store.read() as c:
            return [dict(x) for x in c.execute(select(usage)).mappings()]

    async def rows() -> list[dict[str, object]]:
        for _ in range(50):
            await gateway.pr.ledger.flush()
            found = await gateway.pr.ledger.run(read)
            if found:
                return found
            await asyncio.sleep(0.1)
        return []

    [row] = asyncio.run(rows())
    assert (row["provider"], row["status"]) == ("openai", "cancelled")
    assert row["completion_tokens"]  # what was delivered is charged


def test_the_dashboard_placeholder_when_the_page_is_missing(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from pathlib import Path

    from polyroute.gateway import _admin

    monkeypatch.setattr(_admin.resources, "files", lambda _: Path(str(tmp_path)))
    r = gateway.http().get("/")
    assert r.status_code == 200 and "polyroute gateway" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'; script-src 'none';")
