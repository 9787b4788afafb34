"""Prompt caching end to end, with the official SDKs: breakpoints and ``anthropic-beta`` reach
an Anthropic upstream (from an Anthropic or an OpenAI caller), cache and reasoning tokens come
back in each API's own usage shape, and the cost is the vendor's published cache prices."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.support import Gateway, running
from polyroute.testing import Fleet

# https://platform.claude.com/docs/en/about-claude/pricing, Claude Haiku 4.5, USD per MTok
HAIKU = {"input": 1.00, "write_5m": 1.25, "write_1h": 2.00, "read": 0.10, "output": 5.00}
# https://openai.com/api/pricing/, gpt-4o, USD per 1M tokens
GPT_4O = {"input": 2.50, "read": 1.25, "output": 10.00}
# https://ai.google.dev/gemini-api/docs/pricing, Gemini 2.5 Flash, USD per 1M tokens
FLASH = {"input": 0.30, "read": 0.03, "output": 2.50}

POLICY = "Answer as the house style guide says. " * 400  # ~3,800 tokens: room to cache
HOUR = {"type": "ephemeral", "ttl": "1h"}
FIVE = {"type": "ephemeral"}


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic", "google")) as f:
        yield f


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
def oai(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def script_cache(gateway: Gateway, vendor: str, read: int, write: int = 0, hour: int = 0) -> None:
    script = gateway.fleet[vendor].script
    script.cached_tokens, script.cache_write_tokens, script.cache_write_1h_tokens = (
        read,
        write,
        hour,
    )


def cost(headers: httpx.Headers) -> float:
    return float(headers["x-polyroute-cost-usd"])


def cached_messages() -> dict[str, Any]:
    return {
        "system": [
            {"type": "text", "text": POLICY, "cache_control": HOUR},
            {"type": "text", "text": "Today is Sunday."},
        ],
        "tools": [
            {
                "name": "lookup",
                "description": "Look a word up.",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                "cache_control": HOUR,
            }
        ],
        "messages": [
            {"role": "user", "content": "What does cache mean?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "a store",
                        "cache_control": FIVE,
                    },
                    {"type": "text", "text": "So?", "cache_control": FIVE},
                ],
            },
        ],
    }


def test_anthropic_caller_caches_on_anthropic_and_pays_cache_prices(
    sdk: anthropic.Anthropic, gateway: Gateway
) -> None:
    script_cache(gateway, "anthropic", read=2_000, write=1_500, hour=500)
    raw = sdk.messages.with_raw_response.create(
        model="anthropic/claude-haiku-4-5",
        max_tokens=200,
        extra_headers={"anthropic-beta": "extended-cache-ttl-2025-04-11, context-1m-2025-08-07"},
        **cached_messages(),
    )
    m = raw.parse()
    sent = gateway.fleet["anthropic"].last_request()
    assert sent.headers["anthropic-beta"] == "extended-cache-ttl-2025-04-11,context-1m-2025-08-07"
    body = sent.body
    assert body["system"] == cached_messages()["system"]
    assert body["tools"][0]["cache_control"] == HOUR
    turn = body["messages"][-1]["content"]
    assert [b["type"] for b in turn] == ["tool_result", "text"]
    assert [b["cache_control"] for b in turn] == [FIVE, FIVE]

    u = m.usage
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (2_000, 1_500)
    assert u.cache_creation is not None
    assert u.cache_creation.ephemeral_5m_input_tokens == 1_000
    assert u.cache_creation.ephemeral_1h_input_tokens == 500
    assert 0 < u.input_tokens < 3_000  # the rest of the prompt only, as the API counts it
    bill = (
        u.input_tokens * HAIKU["input"]
        + 2_000 * HAIKU["read"]
        + 1_000 * HAIKU["write_5m"]
        + 500 * HAIKU["write_1h"]
        + u.output_tokens * HAIKU["output"]
    ) / 1e6
    assert cost(raw.headers) == pytest.approx(bill, abs=1e-9)


def test_a_stream_reports_cache_usage_and_the_ledger_bills_it(
    sdk: anthropic.Anthropic, gateway: Gateway
) -> None:
    script_cache(gateway, "anthropic", read=3_000, write=400)
    with sdk.messages.stream(
        model="anthropic/claude-haiku-4-5", max_tokens=200, **cached_messages()
    ) as stream:
        final = stream.get_final_message()
    u = final.usage
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (3_000, 400)
    assert 0 < u.input_tokens < 3_000
    report = asyncio.run(gateway.pr.usage(by="model"))
    [row] = [r for r in report.as_dict()["rows"] if r["model"] == "claude-haiku-4-5"]
    assert (row["cached_tokens"], row["cache_write_tokens"]) == (3_000, 400)
    bill = (
        u.input_tokens * HAIKU["input"]
        + 3_000 * HAIKU["read"]
        + 400 * HAIKU["write_5m"]
        + u.output_tokens * HAIKU["output"]
    ) / 1e6
    assert row["cost_usd"] == pytest.approx(bill, abs=1e-9)


def test_an_openai_caller_caches_on_anthropic_through_content_parts_and_tools(
    oai: openai.OpenAI, gateway: Gateway
) -> None:
    script_cache(gateway, "anthropic", read=1_000)
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": POLICY, "cache_control": HOUR}]},
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": FIVE}]},
    ]
    tools: Any = [
        {"type": "function", "function": {"name": "lookup"}, "cache_control": HOUR},
    ]
    raw = oai.chat.completions.with_raw_response.create(
        model="anthropic/claude-haiku-4-5", messages=messages, tools=tools, max_tokens=50
    )
    r = raw.parse()
    body = gateway.fleet["anthropic"].last_request().body
    assert body["system"] == [{"type": "text", "text": POLICY, "cache_control": HOUR}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": FIVE}]}
    ]
    assert body["tools"][0]["cache_control"] == HOUR
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 1_000


def test_openai_upstream_caches_by_itself_and_bills_cached_input_at_its_price(
    oai: openai.OpenAI, gateway: Gateway
) -> None:
    script_cache(gateway, "openai", read=2_048)
    gateway.fleet["openai"].script.reasoning_tokens = 30
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": POLICY, "cache_control": FIVE}]}
    ]
    raw = oai.chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=messages, max_tokens=500
    )
    r = raw.parse()
    sent = gateway.fleet["openai"].last_request().body
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": POLICY}]}]
    u = r.usage
    assert u is not None and u.prompt_tokens_details is not None
    assert u.completion_tokens_details is not None
    assert u.prompt_tokens_details.cached_tokens == 2_048
    assert u.completion_tokens_details.reasoning_tokens == 30
    bill = (
        (u.prompt_tokens - 2_048) * GPT_4O["input"]
        + 2_048 * GPT_4O["read"]
        + u.completion_tokens * GPT_4O["output"]
    ) / 1e6
    assert cost(raw.headers) == pytest.approx(bill, abs=1e-9)


def test_gemini_cached_content_and_thoughts_reach_an_anthropic_caller(
    sdk: anthropic.Anthropic, gateway: Gateway
) -> None:
    script_cache(gateway, "google", read=1_024)
    gateway.fleet["google"].script.reasoning_tokens = 64
    raw = sdk.messages.with_raw_response.create(
        model="google/gemini-2.5-flash",
        max_tokens=300,
        system=[{"type": "text", "text": POLICY, "cache_control": FIVE}],
        messages=[{"role": "user", "content": "hi"}],
    )
    u = raw.parse().usage
    assert "cache_control" not in json.dumps(gateway.fleet["google"].last_request().body)
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (1_024, 0)
    assert u.output_tokens_details is not None and u.output_tokens_details.thinking_tokens == 64
    bill = (
        u.input_tokens * FLASH["input"] + 1_024 * FLASH["read"] + u.output_tokens * FLASH["output"]
    ) / 1e6
    assert cost(raw.headers) == pytest.approx(bill, abs=1e-9)


def test_a_bad_beta_name_or_breakpoint_is_refused_by_name(
    sdk: anthropic.Anthropic, gateway: Gateway
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="anthropic-beta"):
        sdk.messages.create(
            model="anthropic/claude-haiku-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"anthropic-beta": "ok-1, not a name"},
        )
    bad: Any = {"type": "ephemeral", "ttl": "2h"}
    with pytest.raises(anthropic.BadRequestError):  # a ttl the API does not have
        sdk.messages.create(
            model="anthropic/claude-haiku-4-5",
            max_tokens=10,
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": bad}]}
            ],
        )
    assert gateway.fleet["anthropic"].calls == 0


def test_the_simulator_checks_breakpoints_as_the_api_does(fleet: Fleet) -> None:
    sim = fleet["anthropic"]
    block: Any = {"type": "text", "text": "x", "cache_control": FIVE}
    with anthropic.Anthropic(base_url=sim.base_url, api_key=sim.api_key, max_retries=0) as c:
        with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks"):
            c.messages.create(
                model="claude-haiku-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": [block] * 5}],
            )
        late: Any = [block, {**block, "cache_control": HOUR}]
        with pytest.raises(anthropic.BadRequestError, match="1h"):
            c.messages.create(
                model="claude-haiku-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": late}],
            )


def test_without_breakpoints_an_anthropic_caller_sees_no_cache_fields_change(
    fleet: Fleet,
) -> None:
    with running(fleet) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
        r = http.post(
            "/v1/messages",
            json={
                "model": "anthropic/claude-haiku-4-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert r.status_code == 200
        usage = r.json()["usage"]
        assert usage["cache_creation_input_tokens"] == 0
        assert usage["cache_creation"] == {
            "ephemeral_5m_input_tokens": 0,
            "ephemeral_1h_input_tokens": 0,
        }
        assert "anthropic-beta" not in fleet["anthropic"].last_request().headers


def test_a_providers_configured_beta_and_the_callers_both_reach_anthropic(fleet: Fleet) -> None:
    options = {"headers": {"anthropic-beta": "configured-1"}}
    with running(fleet, provider_options=options) as gw, httpx.Client(base_url=gw.url) as http:
        ask = {
            "model": "anthropic/claude-haiku-4-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
        }
        assert http.post("/v1/messages", json=ask).status_code == 200
        assert fleet["anthropic"].last_request().headers["anthropic-beta"] == "configured-1"
        r = http.post("/v1/messages", json=ask, headers={"anthropic-beta": "asked-2"})
        assert r.status_code == 200
        sent = fleet["anthropic"].last_request().headers["anthropic-beta"]
        assert sent == "configured-1,asked-2"


def test_an_openai_stream_reports_cache_reads_in_its_usage_chunk(
    oai: openai.OpenAI, gateway: Gateway
) -> None:
    script_cache(gateway, "anthropic", read=1_500, write=200)
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": POLICY, "cache_control": FIVE}]},
        {"role": "user", "content": "hi"},
    ]
    stream = oai.chat.completions.create(
        model="anthropic/claude-haiku-4-5",
        messages=messages,
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    [usage] = [c.usage for c in stream if c.usage is not None]
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1_500
    assert usage.prompt_tokens > 1_700  # every input token: fresh, read and written


def test_an_openai_caller_may_mark_a_whole_message_as_litellm_does(
    oai: openai.OpenAI, gateway: Gateway
) -> None:
    messages: Any = [
        {"role": "system", "content": POLICY, "cache_control": HOUR},
        {"role": "user", "content": "What is in it?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a store", "cache_control": FIVE},
    ]
    tools: Any = [{"type": "function", "function": {"name": "lookup"}}]
    oai.chat.completions.create(
        model="anthropic/claude-haiku-4-5", messages=messages, tools=tools, max_tokens=50
    )
    body = gateway.fleet["anthropic"].last_request().body
    assert body["system"] == [{"type": "text", "text": POLICY, "cache_control": HOUR}]
    [result] = body["messages"][-1]["content"]
    assert result["type"] == "tool_result" and result["cache_control"] == FIVE
