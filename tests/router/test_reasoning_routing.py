"""A request that asks for reasoning goes only to reasoning models (catalog capability
``reasoning``), in the library too: the others are left out with the reason, pins refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import NoCandidateError
from polyroute.events import TextDelta
from polyroute.testing import Fleet
from polyroute.testing.anthropic import AnthropicSimulator, sign
from polyroute.types import ChatRequest, Message, Reasoning

WHY = "lacks capability reasoning (cannot honour reasoning_effort / thinking)"


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic")) as f:
        yield f


@pytest.fixture
async def pr(fleet: Fleet) -> AsyncIterator[Polyroute]:
    p = Polyroute(
        Config(validate(fleet.settings(storage={"url": "sqlite://"}), "t"), "t", fleet.env())
    )
    yield p
    await p.aclose()


def request(**kw: object) -> ChatRequest:
    return ChatRequest("", (Message.user("Why?"),), **kw)  # type: ignore[arg-type]


async def test_reasoning_routes_only_to_reasoning_models(pr: Polyroute, fleet: Fleet) -> None:
    answer = await pr.send(request(reasoning=Reasoning(effort="low")))
    assert answer.provider == "anthropic"  # the simulated OpenAI models do not reason
    assert fleet["anthropic"].last_request().body["thinking"]["type"] == "enabled"
    with pytest.raises(NoCandidateError) as info:
        await pr.send(request(reasoning=Reasoning(effort="low")), model="gpt-4o-mini")
    [out] = info.value.excluded
    assert (out.provider, out.model, out.reason) == ("openai", "gpt-4o-mini", WHY)
    assert (await pr.send(request(), model="gpt-4o-mini")).content  # without it, it serves


async def test_a_streamed_answer_keeps_its_thinking_with_the_signature(
    pr: Polyroute, fleet: Fleet
) -> None:
    sim = fleet["anthropic"]
    assert isinstance(sim, AnthropicSimulator)
    sim.thinking = "Because of the reasons."
    stream = pr.send_stream(
        request(reasoning=Reasoning(budget_tokens=1024)), model="claude-haiku-4-5"
    )
    events = [e async for e in stream]
    assert "".join(e.text for e in events if isinstance(e, TextDelta))  # the answer streamed
    assert stream.answer is not None and stream.answer.response is not None
    [thought] = stream.answer.response.thinking
    assert (thought.text, thought.signature) == ("Because of the reasons.", sign(thought.text))
