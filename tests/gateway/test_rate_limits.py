"""Rate limits at the gateway: a virtual key's rpm and tpm refused with 429 and retry-after
in each API's own shape, and a pin to a provider at its configured rpm."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from gateway.support import ADMIN, Gateway, start
from polyroute.limits import WINDOW_S
from polyroute.testing import Fleet

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(fleet: Fleet) -> Iterator[Gateway]:
    g = start(fleet, admin_key=ADMIN, provider_options={"rpm": 0})
    yield g
    g.server.stop()


def new_key(gw: Gateway, **options: Any) -> str:
    _, secret = asyncio.run(gw.pr.ledger.create_key("team", **options))
    return secret


def retry_after(headers: Any) -> int:
    value = int(headers["retry-after"])
    assert 0 < value <= WINDOW_S
    return value


def test_a_keys_rpm_is_a_429_with_retry_after_in_every_api_shape(gw: Gateway) -> None:
    secret = new_key(gw, rpm=2)
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    for _ in range(2):
        oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    error = caught.value
    assert retry_after(error.response.headers) > WINDOW_S - 10
    assert error.code == "rate_limit_exceeded" and error.type == "rate_limit_error"
    assert "rate limit rpm 2 of key:" in error.message

    an = anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused:
        an.messages.create(model="gpt-4o-mini", max_tokens=20, messages=MSGS)  # type: ignore[arg-type]
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    retry_after(refused.value.response.headers)

    with pytest.raises(openai.RateLimitError) as responses:
        oa.responses.create(model="gpt-4o-mini", input="hi")
    retry_after(responses.value.response.headers)
    assert responses.value.code == "rate_limit_exceeded"
    # nothing refused reached a vendor or the ledger
    assert sum(len(s.requests) for s in gw.fleet.sims.values()) == 2


def test_a_keys_tpm_admits_small_requests_and_names_one_that_never_fits(gw: Gateway) -> None:
    secret = new_key(gw, tpm=200)
    with gw.http(authorization=f"Bearer {secret}") as http:
        body = {"model": "gpt-4o-mini", "messages": MSGS, "max_tokens": 60}
        for _ in range(8):  # each holds ~70 at worst, settles to a few: 8 fit in 200
            assert http.post("/v1/chat/completions", json=body).status_code == 200
        r = http.post("/v1/chat/completions", json={**body, "max_tokens": 500})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "max_tokens"
        assert "can never admit this request" in r.json()["error"]["message"]
        r = http.post("/v1/chat/completions", json={**body, "max_tokens": 190})
        assert r.status_code == 429 and retry_after(r.headers)


def test_a_pin_to_a_provider_at_its_rpm_is_a_429_and_auto_goes_elsewhere(
    fleet: Fleet,
) -> None:
    gw = start(fleet, admin_key=None, provider_options={"rpm": 1})
    try:
        with gw.http() as http:
            body = {"model": "openai/gpt-4o-mini", "messages": MSGS}
            assert http.post("/v1/chat/completions", json=body).status_code == 200
            r = http.post("/v1/chat/completions", json=body)
            assert r.status_code == 429 and retry_after(r.headers) > WINDOW_S - 10
            assert r.json()["error"]["type"] == "rate_limit_error"
            auto = http.post("/v1/chat/completions", json={**body, "model": "auto"})
            assert auto.status_code == 200
            assert auto.headers["x-polyroute-provider"] == "anthropic"
    finally:
        gw.server.stop()


def test_embeddings_count_against_a_keys_rpm(gw: Gateway) -> None:
    secret = new_key(gw, rpm=1)
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)
    oa.embeddings.create(model="text-embedding-3-small", input="hello")
    with pytest.raises(openai.RateLimitError) as caught:
        oa.embeddings.create(model="text-embedding-3-small", input="hello")
    retry_after(caught.value.response.headers)
