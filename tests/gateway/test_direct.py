"""The calling endpoints answered past starlette's stack (``gateway._app.Direct``): what
the stack gave them still holds, what they do not take still goes the router's way, and
what a user adds to the app sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.support import polyroute
from polyroute.client import Polyroute
from polyroute.gateway import create_app
from polyroute.testing import Fleet

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def pr(fleet: Fleet) -> AsyncIterator[Polyroute]:
    p = polyroute(fleet)
    yield p
    await p.aclose()


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gw")


async def test_an_app_mounted_under_a_prefix_answers_its_calls(pr: Polyroute) -> None:
    outer = Starlette(routes=[Mount("/llm", app=create_app(pr, admin_key=None))])
    async with client(outer) as c:
        r = await c.post("/llm/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]
        wrong = await c.get("/llm/v1/chat/completions")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


async def test_a_trailing_slash_goes_the_routers_way(pr: Polyroute) -> None:
    async with client(create_app(pr, admin_key=None)) as c:
        r = await c.post("/v1/chat/completions/", json=CHAT)
    assert r.status_code == 307  # starlette's redirect to the path without it
    assert r.headers["location"].endswith("/v1/chat/completions")


async def test_an_endpoints_crash_is_a_500_counted_as_one(
    pr: Polyroute, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the call")

    app = create_app(pr, admin_key=None)
    monkeypatch.setattr(pr, "send", crash)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
        metrics = (await c.get("/metrics")).text
    assert r.status_code == 500 and r.text == "Internal Server Error"
    assert r.headers["x-content-type-options"] == "nosniff"
    [line] = [
        s
        for s in metrics.splitlines()
        if s.startswith("polyroute_gateway_requests_total{") and 'status="500"' in s
    ]
    assert 'endpoint="/v1/chat/completions"' in line and line.endswith(" 1.0")


async def test_middleware_added_to_the_app_sees_the_calls(pr: Polyroute) -> None:
    seen: list[str] = []

    class Seeing:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.app(scope, receive, send)

    app = create_app(pr, admin_key=None)
    app.add_middleware(Seeing)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
        metrics = (await c.get("/metrics")).text
    assert r.status_code == 200, r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert seen == ["/v1/chat/completions", "/metrics"]
    assert 'endpoint="/v1/chat/completions",model="gpt-4o-mini",provider="openai",status="200"' in (
        metrics
    )


async def test_a_500_handler_added_to_the_app_answers_a_calls_crash(
    pr: Polyroute, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the call")

    async def handler(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"ours: {exc}", status_code=500)

    app = create_app(pr, admin_key=None)
    app.add_exception_handler(500, handler)
    monkeypatch.setattr(pr, "send", crash)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
    assert (r.status_code, r.text) == (500, "ours: a bug in the call")
    assert r.headers["x-content-type-options"] == "nosniff"
