"""What an upstream or a caller sends cannot turn a request into a 500: deep JSON is a 400
in the caller's shape, and an upstream echoing a strange model name still gets its 200."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.support import running
from polyroute.testing import Fleet
from polyroute.testing._sim import SimChat, SimReply
from polyroute.testing.openai import OpenAISimulator

DEEP = "[" * 5000 + "]" * 5000
ECHOED = "gpt-4o-mini\nx-evil: 1 é 模型"


def _deep_object(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("anthropic", "google", "ollama")) as f:
        yield f


@pytest.mark.parametrize(
    "model", ["anthropic/claude-haiku-4-5", "google/gemini-2.5-flash", "ollama/llama3.2:latest"]
)
def test_deep_tool_arguments_in_chat_completions_are_a_400(fleet: Fleet, model: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": DEEP}}
    body = {
        "model": model,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": DEEP},
        ],
    }
    with running(fleet) as gw, gw.http() as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "nested deeper" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("model", "blocks"),
    [
        # an input object deep enough for the adapters' limit, not for the body parser's
        ("anthropic/claude-haiku-4-5", {"input": _deep_object(150), "result": "ok"}),
        ("ollama/llama3.2:latest", {"input": _deep_object(150), "result": "ok"}),
        ("google/gemini-2.5-flash", {"input": {}, "result": DEEP}),
    ],
)
def test_deep_tool_use_in_messages_is_a_400(fleet: Fleet, model: str, blocks: Any) -> None:
    body = {
        "model": model,
        "max_tokens": 20,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": blocks["input"]}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": blocks["result"]}
                ],
            },
        ],
    }
    with running(fleet) as gw, gw.http() as http:
        r = http.post("/v1/messages", content=json.dumps(body))
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"


class EchoingSimulator(OpenAISimulator):
    """Answers as a different model than asked, with a name no header can carry as is."""

    def chat_body(self, chat: SimChat, reply: SimReply) -> Any:
        return {**super().chat_body(chat, reply), "model": ECHOED}


def test_an_upstream_echoing_a_strange_model_name_still_answers_200() -> None:
    fleet = Fleet(("openai",))
    fleet.sims["openai"] = EchoingSimulator(api_key=fleet.key)
    with fleet, running(fleet) as gw, gw.http() as http:
        r = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        calls = fleet["openai"].calls
    assert r.status_code == 200, r.text
    assert r.json()["model"] == ECHOED  # the body carries it exactly
    header = r.headers["x-polyroute-model"]
    assert header == "gpt-4o-mini%0Ax-evil: 1 %C3%A9 %E6%A8%A1%E5%9E%8B"
    assert "x-evil" not in r.headers and calls == 1
