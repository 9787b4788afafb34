"""Step 3's fault scenarios, through HTTP: retries, fallback, streams, circuit breakers."""

from __future__ import annotations

import openai
import pytest

from gateway.support import Gateway, running
from polyroute.testing import Fleet

MSGS = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


def primary(gw: Gateway) -> tuple[str, str]:
    """Who ``auto`` picks first and who falls back (the decision before any traffic)."""
    d = gw.pr.route("hi")
    assert d.fallbacks and d.fallbacks[0].provider != d.provider
    return d.provider, d.fallbacks[0].provider


def test_a_sticky_500_is_retried_then_the_fallback_serves(gateway: Gateway) -> None:
    first, second = primary(gateway)
    gateway.fleet[first].script.fail_always(500)
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="auto", messages=MSGS)
    assert raw.headers["x-polyroute-provider"] == second
    assert raw.parse().choices[0].message.content.startswith(f"Simulated {second}")  # type: ignore[union-attr]
    assert gateway.fleet[first].calls == 2  # the call and one retry
    assert gateway.fleet[second].calls == 1


def test_a_401_falls_back_at_once(gateway: Gateway) -> None:
    first, second = primary(gateway)
    gateway.fleet[first].script.fail_always(401)
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="auto", messages=MSGS)
    assert raw.headers["x-polyroute-provider"] == second
    assert gateway.fleet[first].calls == 1


def test_all_down_is_a_502_listing_every_attempt(gateway: Gateway) -> None:
    for sim in gateway.fleet.sims.values():
        sim.script.fail_always(500)
    with pytest.raises(openai.APIStatusError) as info:
        sdk(gateway).chat.completions.create(model="auto", messages=MSGS)
    err = info.value
    assert err.status_code == 502
    message = err.body["message"]  # type: ignore[index]
    assert message.count("HTTP 500") == 8  # max_attempts 4 targets, each tried twice
    assert message.count("openai/") == message.count("anthropic/") == 4
    assert sum(sim.calls for sim in gateway.fleet.sims.values()) == 8


@pytest.mark.parametrize("abort", [False, True])
def test_a_stream_cut_before_its_first_token_falls_over_unseen(
    gateway: Gateway, abort: bool
) -> None:
    first, second = primary(gateway)
    gateway.fleet[first].script.cut_stream(after_chunks=0, abort=abort, n=2)
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="auto", messages=MSGS, stream=True
    )
    assert raw.headers["x-polyroute-provider"] == second  # known before the first byte
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(f"Simulated {second} reply")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1


def test_a_breaker_opens_and_keeps_traffic_away_until_its_reset(fleet: Fleet) -> None:
    clock = Clock()
    breaker = {"failure_threshold": 2, "reset_timeout_s": 60, "half_open_requests": 1}
    sections = {"router": {"circuit_breaker": breaker}}
    with running(fleet, sections=sections, clock=clock) as gw:
        first, second = primary(gw)
        gw.fleet[first].script.fail_always(500)
        client = sdk(gw)

        def served_by() -> str:
            raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSGS)
            return raw.headers["x-polyroute-provider"]

        assert served_by() == second
        assert gw.fleet[first].calls == 2  # two failures: the breaker opens
        assert gw.pr.breakers.get(first).state == "open"
        for _ in range(3):
            assert served_by() == second
        assert gw.fleet[first].calls == 2  # no traffic while open
        state = gw.http().get("/router/state").json()
        assert state["breakers"][first]["state"] == "open"
        assert state["recent"][0]["excluded"][0]["reason"].startswith("breaker open")

        clock.now += 61  # half-open: one probe goes through, and it succeeds
        gw.fleet[first].script.recover()
        assert served_by() == first
        assert gw.pr.breakers.get(first).state == "closed"
        assert gw.fleet[first].calls == 3
