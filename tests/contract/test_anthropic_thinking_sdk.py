"""The official anthropic SDK parses the simulator's extended thinking (JSON and SSE), and the
simulator refuses what the API refuses: a forged signature, thinking not first, a bad budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam

from polyroute.testing._sim import count_tokens
from polyroute.testing.anthropic import AnthropicSimulator, sign

MODEL = "claude-sonnet-4-6"
THOUGHT = "Greeting back is polite; keep it short."
MSGS: list[MessageParam] = [{"role": "user", "content": "hi"}]
THINK: Any = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def sim() -> Iterator[AnthropicSimulator]:
    s = AnthropicSimulator(reply="Hello from the wire", thinking=THOUGHT)
    with s:
        yield s


@pytest.fixture
def sdk(sim: AnthropicSimulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.base_url, api_key="sim-key", max_retries=0) as c:
        yield c


def test_thinking_message_parses(sdk: anthropic.Anthropic) -> None:
    m = sdk.messages.create(model=MODEL, max_tokens=2000, thinking=THINK, messages=MSGS)
    thinking, text = m.content
    assert thinking.type == "thinking" and thinking.thinking == THOUGHT
    assert thinking.signature == sign(THOUGHT)
    assert text.type == "text" and text.text == "Hello from the wire"
    assert m.usage.output_tokens == count_tokens("Hello from the wire") + count_tokens(THOUGHT)


def test_thinking_stream_parses_with_its_signature(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=2000, thinking=THINK, messages=MSGS) as s:
        events = list(s)
        final = s.get_final_message()
    assert "".join(e.thinking for e in events if e.type == "thinking") == THOUGHT
    assert [e.signature for e in events if e.type == "signature"] == [sign(THOUGHT)]
    assert final.content[0].type == "thinking" and final.content[0].signature == sign(THOUGHT)
    assert final.content[1].type == "text" and final.content[1].text == "Hello from the wire"


def test_thinking_sent_back_is_checked(sdk: anthropic.Anthropic, sim: AnthropicSimulator) -> None:
    first = sdk.messages.create(model=MODEL, max_tokens=2000, thinking=THINK, messages=MSGS)
    again: list[MessageParam] = [
        *MSGS,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": "bye"},
    ]
    sdk.messages.create(model=MODEL, max_tokens=2000, thinking=THINK, messages=again)
    assert sim.thinking_seen[-1]["signature"] == sign(THOUGHT)
    forged = {"type": "thinking", "thinking": THOUGHT, "signature": "forged"}
    late = [{"type": "text", "text": "a"}, first.content[0]]
    for content in ([forged], late):
        bad: list[Any] = [*MSGS, {"role": "assistant", "content": content}, MSGS[0]]
        with pytest.raises(anthropic.BadRequestError):
            sdk.messages.create(model=MODEL, max_tokens=2000, thinking=THINK, messages=bad)


@pytest.mark.parametrize(
    ("max_tokens", "thinking", "extra"),
    [
        (2000, {"type": "enabled", "budget_tokens": 100}, {}),
        (1024, {"type": "enabled", "budget_tokens": 1024}, {}),
        (2000, THINK, {"extra_body": {"temperature": 0.5}}),  # this SDK has no temperature
    ],
)
def test_what_the_api_refuses_with_thinking_is_refused(
    sdk: anthropic.Anthropic, max_tokens: int, thinking: Any, extra: dict[str, Any]
) -> None:
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(
            model=MODEL, max_tokens=max_tokens, thinking=thinking, messages=MSGS, **extra
        )
