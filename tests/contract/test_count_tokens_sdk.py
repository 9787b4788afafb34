"""The official anthropic SDK against the simulator's token counting and stop sequences:
the shapes the gateway relies on are the API's own."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from anthropic.types import MessageParam

from polyroute.testing.anthropic import AnthropicSimulator

MODEL = "claude-haiku-4-5"
MSGS: list[MessageParam] = [{"role": "user", "content": "What is the weather in Rome?"}]


@pytest.fixture
def sdk() -> Iterator[tuple[anthropic.Anthropic, AnthropicSimulator]]:
    with (
        AnthropicSimulator(reply="It is sunny. STOP here") as sim,
        anthropic.Anthropic(base_url=sim.base_url, api_key="sim-key", max_retries=0) as c,
    ):
        yield c, sim


def test_count_tokens_parses_and_agrees_with_a_call(
    sdk: tuple[anthropic.Anthropic, AnthropicSimulator],
) -> None:
    client, sim = sdk
    counted = client.messages.count_tokens(model=MODEL, system="be brief", messages=MSGS)
    assert sim.last_request().path == "/v1/messages/count_tokens"
    message = client.messages.create(model=MODEL, max_tokens=50, system="be brief", messages=MSGS)
    assert counted.input_tokens == message.usage.input_tokens > 0


def test_count_tokens_refuses_answer_fields_as_the_api_does(
    sdk: tuple[anthropic.Anthropic, AnthropicSimulator],
) -> None:
    client, _ = sdk
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.messages.count_tokens(
            model=MODEL,
            messages=MSGS,
            extra_body={"max_tokens": 10},
        )


def test_stop_sequence_parses_json_and_stream(
    sdk: tuple[anthropic.Anthropic, AnthropicSimulator],
) -> None:
    client, _ = sdk
    m = client.messages.create(model=MODEL, max_tokens=50, messages=MSGS, stop_sequences=["STOP"])
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "STOP")
    with client.messages.stream(
        model=MODEL, max_tokens=50, messages=MSGS, stop_sequences=["STOP"]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "STOP")
