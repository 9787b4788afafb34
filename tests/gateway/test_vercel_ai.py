"""The Vercel AI SDK (JavaScript, test-only: tests/js), a client nobody here wrote, on the
gateway: ``openai(model)`` on /v1/responses (generateText, streamText, generateObject with a
zod schema, a tool loop, a second turn sending the first back as item references),
``openai.chat(model)`` on /v1/chat/completions and ``anthropic(model)`` on /v1/messages.

Each script in tests/js prints one JSON line; ``./dev test`` installs its node modules
(``npm ci``). Without node or those modules the tests are skipped, saying which."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.support import Gateway, fleet_gateway
from polyroute.testing._sim import SimChat
from polyroute.testing.anthropic import AnthropicChat

JS = Path(__file__).parents[1] / "js"
NODE = shutil.which("node")
CLAUDE_REPLY = "Simulated anthropic reply from claude-sonnet-4-6."
OPENAI_REPLY = "Simulated openai reply from gpt-4o-mini."
MODELS = {"openai": ("gpt-4o-mini", OPENAI_REPLY), "anthropic": ("claude-sonnet-4-6", CLAUDE_REPLY)}

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (./dev test installs it)"),
    pytest.mark.skipif(
        not (JS / "node_modules" / "ai").is_dir(),
        reason="tests/js/node_modules is missing: ./dev test (or npm ci --prefix tests/js)",
    ),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with fleet_gateway(tmp_path_factory.mktemp("gateway"), ("openai", "anthropic")) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh_script(gateway: Gateway) -> None:
    for sim in ("openai", "anthropic"):
        gateway.fleet[sim].script.reply = None


def node(gateway: Gateway, script: str, *args: str) -> Any:
    """What ``script`` printed; a failure shows what the SDK saw (status and body)."""
    assert NODE is not None
    env = {"PATH": os.environ.get("PATH", ""), "POLYROUTE_URL": gateway.url}
    done = subprocess.run(
        [NODE, str(JS / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=JS,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 0 and "error" not in result, result
    return result


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_generate_text_on_the_responses_api(gateway: Gateway, vendor: str) -> None:
    model, reply = MODELS[vendor]
    out = node(gateway, "generate_text.mjs", model, "responses")
    assert out["text"] == reply and out["finishReason"] == "stop"
    assert out["responseId"].startswith("resp_") and out["modelId"] == model
    assert out["usage"]["outputTokens"] > 0 and out["warnings"] == []
    sent = gateway.fleet[vendor].last_request().body
    system = sent["system"] if vendor == "anthropic" else sent["messages"][0]["content"]
    assert "Be brief." in json.dumps(system)  # the SDK's system prompt, as instructions


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_stream_text_on_the_responses_api(gateway: Gateway, vendor: str) -> None:
    model, reply = MODELS[vendor]
    out = node(gateway, "stream_text.mjs", model, "responses")
    assert len(out["deltas"]) > 2 and "".join(out["deltas"]) == out["text"] == reply
    assert out["parts"][-2:] == ["finish-step", "finish"] and "error" not in out["parts"]
    assert out["finishReason"] == "stop" and out["usage"]["outputTokens"] > 0
    assert out["responseId"].startswith("resp_")
    assert gateway.fleet[vendor].last_request().body["stream"] is True


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_generate_object_with_a_zod_schema(gateway: Gateway, vendor: str) -> None:
    model, _ = MODELS[vendor]
    out = node(gateway, "generate_object.mjs", model)
    city = out["object"]
    assert set(city) == {"name", "population", "landmarks"}
    assert isinstance(city["population"], int) and isinstance(city["landmarks"], list)
    body = gateway.fleet[vendor].last_request().body
    if vendor == "openai":
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "city"
        schema = fmt["json_schema"]["schema"]
    else:
        schema = body["output_config"]["format"]["schema"]
    assert schema["required"] == ["name", "population", "landmarks"]


def paris(chat: SimChat) -> str:
    """A call to the forced tool, then an answer in words."""
    forced = isinstance(chat, AnthropicChat) and chat.tool is not None
    return '{"city": "Paris"}' if forced else "Sunny in Paris."


@pytest.mark.parametrize("api", ["responses", "chat", "messages"])
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_a_tool_loop(gateway: Gateway, mode: str, api: str) -> None:
    """On each endpoint; streamed on /v1/messages, the SDK marks its tools
    ``eager_input_streaming`` (Anthropic's fine-grained tool streaming)."""
    claude = gateway.fleet["anthropic"]
    claude.script.reply = paris
    out = node(gateway, "tool_loop.mjs", "claude-sonnet-4-6", mode, api)
    assert out["calls"] == ["Paris"] and out["text"] == "Sunny in Paris."
    first, second = out["steps"]
    assert first["finishReason"] == "tool-calls"
    [call] = first["toolCalls"]
    assert call["name"] == "weather" and call["input"] == {"city": "Paris"}
    assert first["toolResults"] == [{"id": call["id"], "output": "sunny in Paris"}]
    assert second["finishReason"] == "stop" and second["toolCalls"] == []
    turns = claude.last_request().body["messages"]
    [use] = [b for b in turns[1]["content"] if b["type"] == "tool_use"]
    assert use["id"] == call["id"] and use["input"] == {"city": "Paris"}
    [result] = turns[2]["content"]
    assert result["tool_use_id"] == call["id"] and "sunny in Paris" in json.dumps(result)
    if api == "messages" and mode == "stream":
        assert claude.last_request().body["tools"][0]["eager_input_streaming"] is True


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_a_second_turn_sends_the_first_back_by_reference(gateway: Gateway, vendor: str) -> None:
    model, reply = MODELS[vendor]
    out = node(gateway, "multi_turn.mjs", model)
    assert out["first"] == out["second"] == reply
    sent = gateway.fleet[vendor].last_request().body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert reply in json.dumps(sent[1]["content"])


def test_generate_and_stream_on_chat_completions(gateway: Gateway) -> None:
    out = node(gateway, "generate_text.mjs", "gpt-4o-mini", "chat")
    assert out["text"] == OPENAI_REPLY and out["responseId"].startswith("chatcmpl-")
    streamed = node(gateway, "stream_text.mjs", "gpt-4o-mini", "chat")
    assert "".join(streamed["deltas"]) == OPENAI_REPLY and streamed["finishReason"] == "stop"
    assert streamed["usage"]["outputTokens"] > 0


def test_generate_and_stream_on_anthropic_messages(gateway: Gateway) -> None:
    out = node(gateway, "generate_text.mjs", "claude-sonnet-4-6", "messages")
    assert out["text"] == CLAUDE_REPLY and out["responseId"].startswith("msg_")
    assert out["usage"]["inputTokens"] > 0 and out["usage"]["outputTokens"] > 0
    streamed = node(gateway, "stream_text.mjs", "claude-sonnet-4-6", "messages")
    assert "".join(streamed["deltas"]) == CLAUDE_REPLY and streamed["finishReason"] == "stop"
