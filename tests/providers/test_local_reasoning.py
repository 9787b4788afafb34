"""Reasoning on Ollama (``think``: a level for gpt-oss, true otherwise) and Mistral
(``reasoning_effort``; Magistral's ``prompt_mode``), seen reaching the simulated upstream,
and the thinking read back apart from the answer, whole and streamed; the official SDKs
parse the simulators' thinking."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from mistralai.client import Mistral
from mistralai.client.models import TextChunk, ThinkChunk

from polyroute.catalog import Catalog
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.events import TextDelta, ThinkingDelta
from polyroute.ledger import Ledger
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.providers.mistral import MistralProtocol
from polyroute.testing._sim import count_tokens
from polyroute.testing.mistral import MistralSimulator
from polyroute.testing.ollama import OllamaSimulator
from polyroute.types import ChatRequest, Message, Reasoning

THOUGHT = "Six times seven is forty-two, plainly."
ANSWER = "The answer is 42"


@pytest.fixture(scope="module")
def osim() -> Iterator[OllamaSimulator]:
    with OllamaSimulator(reply=ANSWER, thinking=THOUGHT) as s:
        yield s


@pytest.fixture(scope="module")
def msim() -> Iterator[MistralSimulator]:
    models = ("mistral-small-latest", "magistral-medium-latest")
    with MistralSimulator(reply=ANSWER, thinking=THOUGHT, models=models) as s:
        yield s


@pytest.fixture
async def ollama_client(osim: OllamaSimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    yield connect(Provider("ol", "ollama", osim.base_url, None), pool)
    await pool.aclose()


@pytest.fixture
async def mistral_client(msim: MistralSimulator) -> AsyncIterator[ProviderClient]:
    pool = HttpPool()
    yield connect(Provider("mi", "mistral", msim.base_url, Secret("sim-key")), pool)
    await pool.aclose()


def req(model: str, reasoning: Reasoning | None = None) -> ChatRequest:
    return ChatRequest(model, [Message.user("what is 6 x 7?")], reasoning=reasoning)


@pytest.mark.parametrize(
    ("model", "reasoning", "think"),
    [
        ("gpt-oss:20b", Reasoning(effort="high"), "high"),
        ("gpt-oss:120b", Reasoning(budget_tokens=2048), "low"),
        ("gpt-oss:20b", Reasoning(effort="minimal"), "low"),  # its least level
        ("qwen3:8b", Reasoning(effort="high"), True),  # no dial: on
    ],
)
async def test_ollama_think_reaches_the_upstream_and_thinking_comes_back(
    ollama_client: ProviderClient,
    osim: OllamaSimulator,
    model: str,
    reasoning: Reasoning,
    think: bool | str,
) -> None:
    r = await ollama_client.complete(req(model, reasoning))
    assert osim.last_request().body["think"] == think
    assert r.content == ANSWER and [t.text for t in r.thinking] == [THOUGHT]
    assert r.usage.completion_tokens == count_tokens(ANSWER) + count_tokens(THOUGHT)


async def test_ollama_without_reasoning_sends_no_think_and_gets_no_thinking(
    ollama_client: ProviderClient, osim: OllamaSimulator
) -> None:
    r = await ollama_client.complete(req("gpt-oss:20b"))
    assert "think" not in osim.last_request().body and r.thinking == ()


async def test_ollama_streamed_thinking_is_thinking_deltas_before_the_text(
    ollama_client: ProviderClient, osim: OllamaSimulator
) -> None:
    events = [e async for e in ollama_client.stream(req("gpt-oss:20b", Reasoning(effort="low")))]
    assert osim.last_request().body["think"] == "low"
    thinking = [e for e in events if isinstance(e, ThinkingDelta)]
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(e.text for e in thinking) == THOUGHT and {e.index for e in thinking} == {0}
    assert "".join(e.text for e in texts) == ANSWER
    assert events.index(thinking[-1]) < events.index(texts[0])


async def test_ollama_simulator_refuses_a_think_value_as_ollama_does(osim: OllamaSimulator) -> None:
    body = {"model": "gpt-oss:20b", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{osim.base_url}/api/chat", json={**body, "think": "max"})
    assert r.status_code == 400 and "invalid think value" in r.json()["error"]


def test_the_ollama_sdk_parses_the_simulated_thinking(osim: OllamaSimulator) -> None:
    with ollama.Client(host=osim.base_url) as sdk:
        msgs = [{"role": "user", "content": "hi"}]
        r = sdk.chat(model="gpt-oss:20b", messages=msgs, think="medium")
        assert r.message.thinking == THOUGHT and r.message.content == ANSWER
        parts = list(sdk.chat(model="gpt-oss:20b", messages=msgs, think=True, stream=True))
        assert "".join(p.message.thinking or "" for p in parts) == THOUGHT


async def test_mistral_effort_reaches_an_adjustable_model(
    mistral_client: ProviderClient, msim: MistralSimulator
) -> None:
    r = await mistral_client.complete(req("mistral-small-latest", Reasoning(budget_tokens=8192)))
    sent = msim.last_request().body
    assert sent["reasoning_effort"] == "medium" and "prompt_mode" not in sent
    assert r.content == ANSWER and [t.text for t in r.thinking] == [THOUGHT]
    assert r.usage.completion_tokens == count_tokens(ANSWER) + count_tokens(THOUGHT)


async def test_magistral_gets_prompt_mode_not_an_effort(
    mistral_client: ProviderClient, msim: MistralSimulator
) -> None:
    r = await mistral_client.complete(req("magistral-medium-latest", Reasoning(effort="high")))
    sent = msim.last_request().body
    assert sent["prompt_mode"] == "reasoning" and "reasoning_effort" not in sent
    assert r.content == ANSWER and [t.text for t in r.thinking] == [THOUGHT]
    # Magistral thinks unasked too: the thinking is read all the same
    plain = await mistral_client.complete(req("magistral-medium-latest"))
    assert "prompt_mode" not in msim.last_request().body
    assert plain.content == ANSWER and [t.text for t in plain.thinking] == [THOUGHT]


async def test_mistral_streamed_thinking_chunks_are_thinking_deltas(
    mistral_client: ProviderClient, msim: MistralSimulator
) -> None:
    stream = mistral_client.stream(req("magistral-medium-latest", Reasoning(effort="low")))
    events = [e async for e in stream]
    thinking = [e for e in events if isinstance(e, ThinkingDelta)]
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(e.text for e in thinking) == THOUGHT and {e.index for e in thinking} == {0}
    assert "".join(e.text for e in texts) == ANSWER  # thinking never leaks into the text


def test_mistral_interleaved_thinking_is_two_blocks_and_signatures_are_kept() -> None:
    decoder = MistralProtocol().stream_decoder(req("magistral-small-latest"))

    def delta(content: object) -> str:
        return json.dumps({"id": "x", "model": "m", "choices": [{"delta": {"content": content}}]})

    think = {"type": "thinking", "thinking": [{"type": "text", "text": "a"}], "signature": "s1"}
    events = [
        *decoder.feed(delta([think]), None),
        *decoder.feed(delta("text"), None),
        *decoder.feed(delta([{**think, "signature": None}]), None),
    ]
    assert [e for e in events if isinstance(e, ThinkingDelta)] == [
        ThinkingDelta(0, "a", "s1"),
        ThinkingDelta(1, "a", None),
    ]
    whole = MistralProtocol().parse_chat(
        {
            "model": "m",
            "choices": [
                {
                    "message": {"content": [think, {"type": "text", "text": "done"}]},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    assert whole.content == "done" and [(t.text, t.signature) for t in whole.thinking] == [
        ("a", "s1")
    ]


async def test_mistral_simulator_refuses_an_unknown_prompt_mode(msim: MistralSimulator) -> None:
    body = {"model": "magistral-medium-latest", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(headers={"authorization": "Bearer sim-key"}) as http:
        r = await http.post(
            f"{msim.base_url}/v1/chat/completions", json={**body, "prompt_mode": "x"}
        )
    assert r.status_code == 422


def test_the_mistral_sdk_parses_the_simulated_thinking(msim: MistralSimulator) -> None:
    sdk = Mistral(api_key="sim-key", server_url=msim.base_url, retry_config=None)
    msgs = [{"role": "user", "content": "hi"}]
    r = sdk.chat.complete(model="magistral-medium-latest", messages=msgs, prompt_mode="reasoning")  # type: ignore[arg-type]
    assert r.choices[0].message is not None
    content = r.choices[0].message.content
    assert isinstance(content, list) and isinstance(content[0], ThinkChunk)
    assert isinstance(content[1], TextChunk) and content[1].text == ANSWER
    events = list(
        sdk.chat.stream(model="mistral-small-latest", messages=msgs, reasoning_effort="high")
    )  # type: ignore[arg-type]
    assert any(isinstance(e.data.choices[0].delta.content, list) for e in events if e.data.choices)


def test_magistral_is_in_the_catalog_as_a_priced_reasoning_model() -> None:
    catalog = Catalog.load()
    for model, prices in (
        ("magistral-medium-latest", (2.0, 5.0)),
        ("magistral-small-latest", (0.5, 1.5)),
    ):
        info = catalog.get("mistral", model)
        assert info.known and "reasoning" in info.capabilities
        assert info.price is not None and (info.price.input, info.price.output) == prices


async def test_routing_sends_reasoning_to_a_reasoning_model_and_think_reaches_it(
    osim: OllamaSimulator, tmp_path: Path
) -> None:
    settings = {
        "providers": {
            "local": {
                "type": "ollama",
                "base_url": osim.base_url,
                "models": ["llama3.2", "gpt-oss:20b"],
            }
        }
    }
    config = Config(validate(settings, "test"), "test", {})
    async with Polyroute(config, ledger=Ledger(f"sqlite:///{tmp_path}/l.db")) as pr:
        request = ChatRequest("auto", [Message.user("what is 6 x 7?")], reasoning=Reasoning("high"))
        answer = await pr.send(request)
    assert answer.model == "gpt-oss:20b"  # llama3.2 cannot reason: left out
    assert osim.last_request().body["think"] == "high"
    assert answer.content == ANSWER
