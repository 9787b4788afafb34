"""The official SDKs parse the simulators' several answers and log probabilities (OpenAI and
Mistral ``n``, Gemini ``candidateCount`` and ``logprobsResult``, Ollama ``logprobs``), and
send the fields polyroute now carries in the shapes the simulators read."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import openai
import pytest
from google import genai
from google.genai import types
from mistralai.client import Mistral

from polyroute.testing.google import GoogleSimulator
from polyroute.testing.mistral import MistralSimulator
from polyroute.testing.ollama import OllamaSimulator
from polyroute.testing.openai import OpenAISimulator

REPLY = "Hello from the wire"


@pytest.fixture
def oai() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(reply=REPLY) as s:
        yield s


@pytest.fixture
def gemini() -> Iterator[GoogleSimulator]:
    with GoogleSimulator(reply=REPLY) as s:
        yield s


@pytest.fixture
def mistral() -> Iterator[MistralSimulator]:
    with MistralSimulator(reply=REPLY) as s:
        yield s


@pytest.fixture
def local() -> Iterator[OllamaSimulator]:
    with OllamaSimulator(reply=REPLY) as s:
        yield s


def test_openai_sdk_parses_choices_and_logprobs(oai: OpenAISimulator) -> None:
    sdk = openai.OpenAI(base_url=oai.base_url, api_key="sim-key", max_retries=0)
    r = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        n=2,
        logprobs=True,
        top_logprobs=3,
    )
    assert [c.message.content for c in r.choices] == [REPLY, f"{REPLY} (choice 2)"]
    for choice in r.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        tokens = choice.logprobs.content
        assert "".join(t.token for t in tokens) == choice.message.content
        assert all(len(t.top_logprobs) == 3 and t.bytes for t in tokens)
    assert oai.last_request().body["n"] == 2


def test_openai_sdk_sends_a_file_part_as_the_simulator_reads_it(oai: OpenAISimulator) -> None:
    sdk = openai.OpenAI(base_url=oai.base_url, api_key="sim-key", max_retries=0)
    part = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
    }
    sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": [part]}],  # type: ignore[list-item]
    )
    assert oai.last_request().body["messages"][0]["content"] == [part]


def test_google_sdk_parses_candidates_and_logprobs(gemini: GoogleSimulator) -> None:
    options = types.HttpOptions(
        base_url=gemini.base_url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    sdk = genai.Client(api_key="sim-key", http_options=options)
    r = sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents="hi",
        config=types.GenerateContentConfig(candidate_count=2, response_logprobs=True, logprobs=2),
    )
    assert r.candidates is not None and len(r.candidates) == 2
    first = r.candidates[0]
    assert first.logprobs_result is not None
    chosen = first.logprobs_result.chosen_candidates or []
    assert "".join(c.token or "" for c in chosen) == REPLY
    tops = first.logprobs_result.top_candidates or []
    assert all(len(t.candidates or []) == 2 for t in tops)
    config = gemini.last_request().body["generationConfig"]
    assert config["candidateCount"] == 2 and config["responseLogprobs"] is True


def test_mistral_sdk_parses_choices_and_logprobs(mistral: MistralSimulator) -> None:
    sdk = Mistral(api_key="sim-key", server_url=mistral.base_url, retry_config=None)
    r = sdk.chat.complete(
        model="mistral-small-latest",
        messages=[{"role": "user", "content": "hi"}],
        n=2,
        logprobs=True,
        top_logprobs=2,
    )
    assert r.choices is not None and len(r.choices) == 2
    logprobs = r.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(t.token for t in logprobs.content) == REPLY


def test_ollama_sdk_parses_logprobs(local: OllamaSimulator) -> None:
    sdk = ollama.Client(host=local.base_url)
    r = sdk.chat(
        model="llama3.2",
        messages=[{"role": "user", "content": "hi"}],
        stream=False,
        logprobs=True,
        top_logprobs=2,
    )
    assert r.logprobs is not None
    assert "".join(t.token for t in r.logprobs) == REPLY
    assert all(len(t.top_logprobs or ()) == 2 for t in r.logprobs)
