"""Which stop sequence ended an answer: read where the vendor says it, never guessed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.events import StreamEnd
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.providers.openai import OpenAICompatibleProtocol, OpenAIProtocol
from polyroute.testing import Fleet
from polyroute.testing.anthropic import AnthropicSimulator
from polyroute.types import ChatRequest, Message


@pytest.fixture
def sim() -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator(reply="The answer is 42. END of it") as s:
        yield s


@pytest.fixture
async def client(sim: AnthropicSimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    yield connect(Provider("an", "anthropic", sim.base_url, Secret("sim-key")), pool)
    await pool.aclose()


def req(model: str, *stop: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message.user("hi")], stop=stop)


async def test_anthropic_says_which_sequence_matched_json_and_stream(
    client: ProviderClient,
) -> None:
    r = await client.complete(req("claude-haiku-4-5", "42", "END"))
    assert r.content == "The answer is " and r.stop_sequence == "42"
    assert r.finish_reason == "stop" and r.raw_finish_reason == "stop_sequence"
    end = [e async for e in client.stream(req("claude-haiku-4-5", "END"))][-1]
    assert isinstance(end, StreamEnd) and end.stop_sequence == "END"
    assert end.raw_finish_reason == "stop_sequence"


async def test_anthropic_end_turn_has_no_stop_sequence(client: ProviderClient) -> None:
    r = await client.complete(req("claude-haiku-4-5", "absent"))
    assert r.stop_sequence is None and r.raw_finish_reason == "end_turn"
    end = [e async for e in client.stream(req("claude-haiku-4-5"))][-1]
    assert isinstance(end, StreamEnd) and end.stop_sequence is None


def _choice(**extra: object) -> dict[str, object]:
    message = {"role": "assistant", "content": "The answer is "}
    return {"index": 0, "message": message, "finish_reason": "stop", **extra}


def test_a_server_that_names_the_sequence_is_read_and_one_that_does_not_is_not() -> None:
    p = OpenAICompatibleProtocol()
    named = p.parse_chat({"model": "m", "choices": [_choice(stop_reason="42")]})
    assert named.stop_sequence == "42"  # vLLM: the matched string
    token = p.parse_chat({"model": "m", "choices": [_choice(stop_reason=128009)]})
    assert token.stop_sequence is None  # a stop token id is not a sequence
    silent = OpenAIProtocol().parse_chat({"model": "m", "choices": [_choice()]})
    assert silent.stop_sequence is None  # OpenAI does not say: not guessed from `stop`


def test_stream_reads_the_named_sequence_from_the_finishing_chunk() -> None:
    d = OpenAICompatibleProtocol().stream_decoder(req("m", "42"))
    finish = {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "42"}
    d.feed(json.dumps({"id": "x", "model": "m", "choices": [finish]}), None)
    (end,) = d.feed("[DONE]", None)
    assert isinstance(end, StreamEnd) and end.stop_sequence == "42"


async def test_a_streamed_answer_keeps_how_it_ended() -> None:
    with Fleet(("anthropic",)) as fleet:
        settings = fleet.settings(storage={"url": "sqlite://"})
        async with Polyroute(Config(validate(settings, "test"), "test", fleet.env())) as pr:
            stream = pr.send_stream(req("claude-haiku-4-5", "reply"), provider="anthropic")
            _ = [e async for e in stream]
    assert stream.answer is not None and stream.answer.response is not None
    response = stream.answer.response
    assert (response.stop_sequence, response.raw_finish_reason) == ("reply", "stop_sequence")
