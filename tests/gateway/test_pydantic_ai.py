"""pydantic-ai, a client nobody here wrote, on the gateway: ``OpenAIResponsesModel`` (the
Responses API) with a tool, answered and streamed."""

from __future__ import annotations

import asyncio

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from gateway.support import Gateway

CLAUDE_REPLY = "Simulated anthropic reply from claude-sonnet-4-6."


def agent(gateway: Gateway) -> Agent[None, str]:
    provider = OpenAIProvider(base_url=gateway.url + "/v1", api_key="unused")
    a = Agent(OpenAIResponsesModel("claude-sonnet-4-6", provider=provider))

    @a.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    return a


def test_responses_model_with_a_tool(gateway: Gateway) -> None:
    run = agent(gateway).run_sync("Weather in Paris?")
    assert run.output == CLAUDE_REPLY
    assert run.usage.output_tokens > 0
    [sent] = gateway.fleet["anthropic"].last_request().body["tools"]
    assert sent["name"] == "get_weather" and sent["strict"] is True  # pydantic-ai's strict kept
    assert sent["input_schema"]["required"] == ["city"]


def test_responses_model_streams(gateway: Gateway) -> None:
    async def deltas() -> list[str]:
        async with agent(gateway).run_stream("hi") as stream:
            return [t async for t in stream.stream_text(delta=True)]

    assert "".join(asyncio.run(deltas())) == CLAUDE_REPLY
