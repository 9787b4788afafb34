"""A model name is data (DESIGN.md §2): never a path, and a pin must be listed."""

from __future__ import annotations

import httpx
import pytest

from gateway.support import Gateway, running
from polyroute.testing import Fleet

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
CLIMBS = [
    "openai/tunedModels/../../../v1/files#",
    "openai/gpt-4o-mini?x=1",
    "openai/gpt-4o-mini#frag",
    "openai/gpt\n4o",
    "openai/a//b",
    "openai/./gpt-4o-mini",
    "openai/gpt%2F..",
    "openai/" + "x" * 300,
]


def post(http: httpx.Client, fmt: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    return http.post(PATHS[fmt], json=body)


@pytest.mark.parametrize("fmt", PATHS)
@pytest.mark.parametrize("model", CLIMBS)
def test_a_name_that_is_not_a_plain_model_id_is_a_400_before_any_call(
    fmt: str, model: str, gateway: Gateway
) -> None:
    with gateway.http() as http:
        r = post(http, fmt, model)
    assert r.status_code == 400, r.text
    assert "is not a plain model id" in r.text
    if fmt == "openai":
        assert r.json()["error"]["param"] == "model"
    assert gateway.fleet["openai"].calls == 0


def test_embeddings_refuse_a_climbing_name_too(gateway: Gateway) -> None:
    with gateway.http() as http:
        r = http.post("/v1/embeddings", json={"model": CLIMBS[0], "input": "hi"})
    assert r.status_code == 400, r.text
    assert gateway.fleet["openai"].calls == 0


@pytest.mark.parametrize("fmt", PATHS)
def test_a_pin_to_an_unlisted_model_is_a_404_before_any_call(fmt: str, gateway: Gateway) -> None:
    with gateway.http() as http:
        r = post(http, fmt, "openai/gpt-9")
    assert r.status_code == 404, r.text
    assert "does not list model 'gpt-9'" in r.text
    assert gateway.fleet["openai"].calls == 0


def test_a_pattern_lets_pins_through(fleet: Fleet) -> None:
    agg = {
        "type": "openai",
        "base_url": fleet["openai"].base_url,
        "api_key": "env:" + next(iter(fleet.env())),
        "models": ["vendor/*"],
    }
    with running(fleet, extra_providers={"agg": agg}) as gw, gw.http() as http:
        r = post(http, "openai", "agg/vendor/brand-new-model")
        assert r.status_code == 200, r.text
        assert r.headers["x-polyroute-provider"] == "agg"
        assert post(http, "openai", "agg/other/model").status_code == 404
