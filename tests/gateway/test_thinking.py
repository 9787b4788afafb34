"""Reasoning through the gateway with the official SDKs: Anthropic thinking round-trips with its
signatures, crosses to another vendor without its thinking, and OpenAI callers ask with
``reasoning_effort`` and read ``reasoning_content``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam

from gateway.support import Gateway, start
from polyroute.reasoning import ANSWER_TOKENS, EFFORT_BUDGETS
from polyroute.testing import Fleet
from polyroute.testing.anthropic import AnthropicSimulator, sign

THOUGHT = "The user wants the capital of Italy: Rome, no doubt about it."
QUESTION: MessageParam = {"role": "user", "content": "Capital of Italy?"}
CLAUDE = "anthropic/claude-sonnet-4-6"


@pytest.fixture
def sim(gateway: Gateway) -> AnthropicSimulator:
    s = gateway.fleet["anthropic"]
    assert isinstance(s, AnthropicSimulator)
    s.thinking = THOUGHT
    return s


@pytest.fixture
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
def gpt(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_a_multi_turn_thinking_conversation_keeps_its_signatures(
    claude: anthropic.Anthropic, sim: AnthropicSimulator
) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 2048}
    first = claude.messages.create(
        model=CLAUDE, max_tokens=4000, thinking=thinking, messages=[QUESTION]
    )
    assert sim.last_request().body["thinking"] == thinking
    block = first.content[0]
    assert block.type == "thinking"
    assert (block.thinking, block.signature) == (THOUGHT, sign(THOUGHT))
    assert [b.type for b in first.content[1:]] == ["text"]
    # the whole turn goes back as the SDK gave it; the simulator checks the signature
    second = claude.messages.create(
        model=CLAUDE,
        max_tokens=4000,
        thinking=thinking,
        messages=[
            QUESTION,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": "And of France?"},
        ],
    )
    turn = sim.last_request().body["messages"][1]
    assert turn["content"][0] == {
        "type": "thinking",
        "thinking": THOUGHT,
        "signature": sign(THOUGHT),
    }
    assert sim.thinking_seen == [turn["content"][0]]
    assert second.content[0].type == "thinking"


def test_streamed_thinking_is_thinking_blocks_with_the_signature(
    claude: anthropic.Anthropic, sim: AnthropicSimulator
) -> None:
    with claude.messages.stream(
        model=CLAUDE,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[QUESTION],
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds  # the SDK's thinking events
    block = final.content[0]
    assert block.type == "thinking"
    assert (block.thinking, block.signature) == (THOUGHT, sign(THOUGHT))
    text = final.content[1]
    assert text.type == "text" and THOUGHT not in text.text


def test_thinking_is_left_out_when_the_next_turn_goes_to_another_vendor(
    claude: anthropic.Anthropic, sim: AnthropicSimulator, gateway: Gateway
) -> None:
    first = claude.messages.create(
        model=CLAUDE,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[QUESTION],
    )
    answer = claude.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=100,
        messages=[
            QUESTION,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": "And of France?"},
        ],
    )
    assert answer.content[0].type == "text"
    sent = gateway.fleet["openai"].last_request().body
    assert sent["messages"][1]["role"] == "assistant"
    assert THOUGHT not in str(sent) and sign(THOUGHT) not in str(sent)


def test_an_openai_caller_asks_an_effort_and_reads_reasoning_content(
    gpt: openai.OpenAI, sim: AnthropicSimulator
) -> None:
    done = gpt.chat.completions.create(
        model=CLAUDE,
        reasoning_effort="low",
        messages=[{"role": "user", "content": "Capital of Italy?"}],
    )
    sent = sim.last_request().body
    low = EFFORT_BUDGETS["low"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": low}
    assert sent["max_tokens"] == low + ANSWER_TOKENS
    message = done.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == THOUGHT
    assert THOUGHT not in (message.content or "")
    chunks = list(
        gpt.chat.completions.create(
            model=CLAUDE,
            reasoning_effort="high",
            messages=[{"role": "user", "content": "Capital of Italy?"}],
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert reasoning == THOUGHT
    assert THOUGHT not in "".join(d.content or "" for d in deltas)


def test_reasoning_pinned_to_a_model_that_cannot_is_a_400_naming_the_field(
    gpt: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gpt.chat.completions.create(
            model="openai/gpt-4o-mini",
            reasoning_effort="high",
            messages=[{"role": "user", "content": "hi"}],
        )
    assert info.value.param == "reasoning"
    assert "reasoning" in info.value.message


def test_auto_routing_with_reasoning_leaves_out_models_that_cannot(
    gpt: openai.OpenAI, sim: AnthropicSimulator
) -> None:
    raw = gpt.chat.completions.with_raw_response.create(
        model="auto", reasoning_effort="minimal", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-polyroute-provider"] == "anthropic"
    assert sim.last_request().body["thinking"]["budget_tokens"] == EFFORT_BUDGETS["minimal"]


def test_a_budget_not_below_max_tokens_is_refused_as_the_api_refuses_it(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={
            "model": CLAUDE,
            "max_tokens": 2000,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "messages": [QUESTION],
        },
    )
    assert r.status_code == 400
    assert "thinking.budget_tokens" in r.json()["error"]["message"]


def test_thinking_blocks_in_a_user_turn_are_refused_by_name(gateway: Gateway) -> None:
    block = {"type": "thinking", "thinking": "x", "signature": "s"}
    r = httpx.post(
        gateway.url + "/v1/messages",
        json={
            "model": CLAUDE,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [block]}],
        },
    )
    assert r.status_code == 400
    assert "thinking blocks belong in assistant turns" in r.json()["error"]["message"]


@pytest.fixture
def gemini_gateway() -> Iterator[Gateway]:
    with Fleet(("anthropic", "google")) as fleet:
        gw = start(fleet)
        yield gw
        gw.server.stop()


def test_gemini_thoughts_reach_an_anthropic_caller_and_stay_out_of_the_next_claude_turn(
    gemini_gateway: Gateway,
) -> None:
    with anthropic.Anthropic(base_url=gemini_gateway.url, api_key="u", max_retries=0) as sdk:
        first = sdk.messages.create(
            model="google/gemini-2.5-flash",
            max_tokens=4000,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[QUESTION],
        )
        sent = gemini_gateway.fleet["google"].last_request().body["generationConfig"]
        assert sent["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2048}
        thought = first.content[0]
        assert thought.type == "thinking" and thought.thinking and thought.signature == ""
        assert first.content[1].type == "text"
        # Gemini's summary has no Anthropic signature: left out, not refused by Claude
        sdk.messages.create(
            model=CLAUDE,
            max_tokens=100,
            messages=[
                QUESTION,
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": "And of France?"},
            ],
        )
    claude = gemini_gateway.fleet["anthropic"]
    assert isinstance(claude, AnthropicSimulator)
    turn = claude.last_request().body["messages"][1]
    assert "thinking" not in str(turn) and claude.thinking_seen == []
