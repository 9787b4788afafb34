"""Anthropic extended thinking: asked by budget or effort, read back (JSON and stream), and
sent back with its signature against the simulator, which checks it as the API does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from polyroute.errors import BadRequestError
from polyroute.events import StreamEnd, TextDelta, ThinkingDelta
from polyroute.providers import (
    HttpPool,
    Provider,
    ProviderClient,
    Secret,
    UnsupportedError,
    connect,
)
from polyroute.providers.anthropic import AnthropicProtocol
from polyroute.reasoning import ANSWER_TOKENS, EFFORT_BUDGETS
from polyroute.testing._sim import count_tokens
from polyroute.testing.anthropic import AnthropicSimulator, sign
from polyroute.types import (
    ChatRequest,
    Message,
    Reasoning,
    TextPart,
    ThinkingPart,
    ToolCall,
)

MODEL = "claude-sonnet-4-6"
THOUGHT = "Six times seven is forty-two, plainly."


@pytest.fixture
def sim() -> Iterator[AnthropicSimulator]:
    s = AnthropicSimulator(reply="The answer is 42", thinking=THOUGHT)
    with s:
        yield s


@pytest.fixture
async def client(sim: AnthropicSimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    yield connect(Provider("an", "anthropic", sim.base_url, Secret("sim-key")), pool)
    await pool.aclose()


def req(*messages: Message, **kw: object) -> ChatRequest:
    msgs = list(messages) or [Message.user("what is 6 x 7?")]
    return ChatRequest(model=MODEL, messages=msgs, **kw)  # type: ignore[arg-type]


async def test_budget_is_sent_and_thinking_comes_back_signed(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    r = await client.complete(req(max_tokens=4000, reasoning=Reasoning(budget_tokens=2000)))
    sent = sim.last_request().body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert sent["max_tokens"] == 4000
    assert r.content == "The answer is 42"  # thinking is never answer text
    assert [(t.text, t.signature, t.redacted) for t in r.thinking] == [
        (THOUGHT, sign(THOUGHT), False)
    ]
    # output_tokens includes the thinking: taken once, as the completion
    assert r.usage.completion_tokens == count_tokens("The answer is 42") + count_tokens(THOUGHT)
    assert r.usage.reasoning_tokens == count_tokens(THOUGHT)  # of the output, not more


async def test_stream_thinking_is_thinking_deltas_with_the_signature_never_text(
    client: ProviderClient,
) -> None:
    events = [e async for e in client.stream(req(reasoning=Reasoning(effort="low")))]
    thinking = [e for e in events if isinstance(e, ThinkingDelta)]
    assert "".join(e.text for e in thinking) == THOUGHT
    assert {e.index for e in thinking} == {0}
    assert [e.signature for e in thinking if e.signature] == [sign(THOUGHT)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer is 42"
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(events.index(e) < first_text for e in thinking)
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop"


async def test_thinking_goes_back_first_with_its_signature_and_foreign_thinking_stays_out(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    first = await client.complete(req(reasoning=Reasoning(budget_tokens=1024)))
    foreign = ThinkingPart("a Gemini thought summary")  # no signature: not Anthropic's
    history = [
        Message.user("what is 6 x 7?"),
        Message(
            "assistant",
            (TextPart("Let me check."), foreign, *first.thinking),
            tool_calls=(ToolCall("toolu_1", "calc", '{"x": 6}'),),
        ),
        Message.tool("toolu_1", "42"),
    ]
    await client.complete(req(*history, reasoning=Reasoning(budget_tokens=1024)))
    turn = sim.last_request().body["messages"][1]
    assert [b["type"] for b in turn["content"]] == ["thinking", "text", "tool_use"]
    assert turn["content"][0] == {
        "type": "thinking",
        "thinking": THOUGHT,
        "signature": sign(THOUGHT),
    }
    assert sim.thinking_seen[-1]["signature"] == sign(THOUGHT)


async def test_redacted_thinking_goes_back_as_its_data(
    client: ProviderClient, sim: AnthropicSimulator
) -> None:
    redacted = ThinkingPart("EmwKAhgBEgy3va3pzix", redacted=True)
    history = [
        Message.user("q"),
        Message("assistant", (redacted, TextPart("a"))),
        Message.user("q2"),
    ]
    await client.complete(req(*history))
    turn = sim.last_request().body["messages"][1]
    assert turn["content"][0] == {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}


async def test_a_tampered_signature_is_refused_by_the_simulator(client: ProviderClient) -> None:
    forged = ThinkingPart(THOUGHT, signature="sig-forged")
    history = [Message.user("q"), Message("assistant", (forged, TextPart("a"))), Message.user("q2")]
    with pytest.raises(BadRequestError, match="signature"):
        await client.complete(req(*history))


def test_effort_becomes_a_budget_and_max_tokens_makes_room_for_it() -> None:
    p = AnthropicProtocol()
    body = p.chat(req(reasoning=Reasoning(effort="high")), stream=False).json or {}
    high = EFFORT_BUDGETS["high"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": high}
    assert body["max_tokens"] == high + ANSWER_TOKENS  # no max_tokens: budget plus an answer
    body = p.chat(req(max_tokens=3000, reasoning=Reasoning(effort="high")), stream=False).json
    assert body is not None
    # max_tokens bounds the bill: the budget is cut to fit under it
    assert body["max_tokens"] == 3000 and body["thinking"]["budget_tokens"] == 2999
    assert "thinking" not in (p.chat(req(), stream=False).json or {})


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"max_tokens": 1024}, "max_tokens"),
        ({"temperature": 0.2}, "temperature"),
        ({"top_p": 0.5}, "top_p"),
        ({"tool_choice": "required"}, "forced tool"),
        ({"response_format": "json"}, "forced tool"),
    ],
)
def test_what_thinking_cannot_go_with_is_refused_by_name(kw: dict[str, object], field: str) -> None:
    with pytest.raises(UnsupportedError, match=field):
        AnthropicProtocol().chat(req(reasoning=Reasoning(budget_tokens=2048), **kw), stream=False)


def test_temperature_one_goes_with_thinking() -> None:
    body = (
        AnthropicProtocol()
        .chat(req(temperature=1.0, reasoning=Reasoning(budget_tokens=2048)), stream=False)
        .json
    )
    assert body is not None and body["temperature"] == 1.0
