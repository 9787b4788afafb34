"""LangChain's ChatOpenAI, a client nobody here wrote, on the gateway: the Responses API
(``use_responses_api=True``) with answers, streams and a tool loop."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from gateway.support import Gateway

CLAUDE_REPLY = "Simulated anthropic reply from claude-sonnet-4-6."
OPENAI_REPLY = "Simulated openai reply from gpt-4o-mini."


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def responses_llm(gateway: Gateway, model: str, **options: object) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        base_url=gateway.url + "/v1",
        api_key="unused",  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("model", "reply"), [("gpt-4o-mini", OPENAI_REPLY), ("claude-sonnet-4-6", CLAUDE_REPLY)]
)
def test_responses_api_answers_and_streams(gateway: Gateway, model: str, reply: str) -> None:
    llm = responses_llm(gateway, model)
    answer = llm.invoke("hi")
    assert answer.text == reply
    assert answer.response_metadata["id"].startswith("resp_")
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream("hi again"))
    assert len(chunks) > 2 and "".join(c.text for c in chunks) == reply


def test_responses_api_tool_loop(gateway: Gateway) -> None:
    claude = gateway.fleet["anthropic"]
    claude.script.reply = '{"city": "Paris"}'
    llm = responses_llm(gateway, "claude-sonnet-4-6")
    asked = HumanMessage("Weather in Paris?")
    call = llm.bind_tools([get_weather], tool_choice="get_weather").invoke([asked])
    [tc] = call.tool_calls
    assert tc["name"] == "get_weather" and tc["args"] == {"city": "Paris"}
    assert claude.last_request().body["tool_choice"] == {"type": "tool", "name": "get_weather"}

    claude.script.reply = "Sunny in Paris."
    result = ToolMessage(get_weather.invoke(tc["args"]), tool_call_id=tc["id"])
    final = llm.bind_tools([get_weather]).invoke([asked, call, result])
    assert final.text == "Sunny in Paris."
    turns = claude.last_request().body["messages"]
    [use] = [b for b in turns[1]["content"] if b["type"] == "tool_use"]
    assert use["id"] == tc["id"] and use["input"] == {"city": "Paris"}
    assert turns[2]["content"][0]["tool_use_id"] == tc["id"]


def test_responses_api_continues_by_previous_response_id(gateway: Gateway) -> None:
    llm = responses_llm(gateway, "gpt-4o-mini", use_previous_response_id=True)
    first = llm.invoke("hi")
    second = llm.invoke([HumanMessage("hi"), first, HumanMessage("again")])
    assert second.text == OPENAI_REPLY
    sent = gateway.fleet["openai"].last_request().body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "hi"),
        ("assistant", OPENAI_REPLY),
        ("user", "again"),
    ]
    assert json.dumps(sent).count("again") == 1
    with gateway.http() as http:  # LangChain sent only the new turn, and the id of the first
        stored = http.get(f"/v1/responses/{second.response_metadata['id']}").json()
    assert stored["previous_response_id"] == first.response_metadata["id"]
