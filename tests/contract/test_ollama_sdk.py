"""The official ollama SDK parses everything the simulator sends: the simulator cannot drift."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import pytest

from polyroute.testing import Script
from polyroute.testing.ollama import OllamaSimulator

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def _server() -> Iterator[OllamaSimulator]:
    with OllamaSimulator() as s:
        yield s


@pytest.fixture
def sim(_server: OllamaSimulator) -> OllamaSimulator:
    _server.script = Script(reply="Hello from the wire")
    return _server


@pytest.fixture
def sdk(sim: OllamaSimulator) -> Iterator[ollama.Client]:
    with ollama.Client(host=sim.base_url) as client:
        yield client


def test_chat_parses(sdk: ollama.Client) -> None:
    r = sdk.chat(model="llama3.2", messages=MSGS, options={"num_predict": 100})
    assert r.message.role == "assistant" and r.message.content == "Hello from the wire"
    assert r.done and r.done_reason == "stop"
    assert r.prompt_eval_count == 1 and r.eval_count == 5
    assert r.total_duration is not None and r.total_duration > r.eval_duration  # type: ignore[operator]


def test_stream_parses_with_final_counts(sdk: ollama.Client) -> None:
    parts = list(sdk.chat(model="llama3.2", messages=MSGS, stream=True))
    assert "".join(p.message.content or "" for p in parts) == "Hello from the wire"
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason == "stop" and last.eval_count == 5 and last.prompt_eval_count == 1


def test_truncation_reports_length(sdk: ollama.Client) -> None:
    r = sdk.chat(model="llama3.2", messages=MSGS, options={"num_predict": 2})
    assert r.done_reason == "length" and r.eval_count == 2


def test_list_parses(sdk: ollama.Client) -> None:
    models = sdk.list().models
    names = [m.model for m in models]
    assert "llama3.2:latest" in names and "nomic-embed-text:latest" in names
    llama = models[names.index("llama3.2:latest")]
    assert llama.details is not None and llama.details.family == "llama"
    assert llama.modified_at is not None and llama.size is not None


def test_embed_parses(sdk: ollama.Client) -> None:
    e = sdk.embed(model="nomic-embed-text", input=["a", "b"], dimensions=6)
    assert len(e.embeddings) == 2 and len(e.embeddings[0]) == 6
    assert e.prompt_eval_count == 2


def test_key_is_accepted_as_bearer() -> None:
    with OllamaSimulator(api_key="sk-cloud-key-123456") as sim:
        good = ollama.Client(
            host=sim.base_url, headers={"Authorization": "Bearer sk-cloud-key-123456"}
        )
        assert good.chat(model="llama3.2", messages=MSGS).message.content
        with pytest.raises(ollama.ResponseError) as info:
            ollama.Client(host=sim.base_url).chat(model="llama3.2", messages=MSGS)
        assert info.value.status_code == 401 and info.value.error


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503])
@pytest.mark.parametrize("stream", [False, True])
def test_error_bodies_parse(
    sim: OllamaSimulator, sdk: ollama.Client, status: int, stream: bool
) -> None:
    sim.script.fail_next(1, status, message=f"failure {status}")
    with pytest.raises(ollama.ResponseError) as info:
        if stream:
            list(sdk.chat(model="llama3.2", messages=MSGS, stream=True))
        else:
            sdk.chat(model="llama3.2", messages=MSGS)
    assert info.value.status_code == status and info.value.error == f"failure {status}"


def test_embed_error_parses(sim: OllamaSimulator, sdk: ollama.Client) -> None:
    sim.script.fail_next(1, 404, message='model "x" not found, try pulling it first')
    with pytest.raises(ollama.ResponseError) as info:
        sdk.embed(model="x", input="a")
    assert info.value.status_code == 404 and "try pulling it first" in info.value.error


def test_in_band_stream_error_surfaces_in_sdk(sim: OllamaSimulator, sdk: ollama.Client) -> None:
    sim.error_mid_stream("llama runner process has terminated", after_chunks=1)
    seen = []
    with pytest.raises(ollama.ResponseError) as info:
        for part in sdk.chat(model="llama3.2", messages=MSGS, stream=True):
            seen.append(part.message.content)
    assert seen == ["Hello "] and info.value.error == "llama runner process has terminated"


def test_cut_stream_surfaces_in_sdk(sim: OllamaSimulator, sdk: ollama.Client) -> None:
    sim.script.cut_stream(after_chunks=1, abort=True)
    # the SDK does not wrap transport errors: httpx's own surfaces
    with pytest.raises(httpx.RemoteProtocolError):
        list(sdk.chat(model="llama3.2", messages=MSGS, stream=True))
