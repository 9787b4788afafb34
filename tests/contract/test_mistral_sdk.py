"""The official mistralai SDK parses everything the simulator sends: the simulator cannot drift."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import HTTPValidationError, MistralError, SDKError
from mistralai.client.models import BaseModelCard

from polyroute.testing import Script
from polyroute.testing.mistral import MistralSimulator


@pytest.fixture(scope="module")
def _server() -> Iterator[MistralSimulator]:
    s = MistralSimulator()
    with s:
        yield s


@pytest.fixture
def sim(_server: MistralSimulator) -> MistralSimulator:
    _server.script = Script(reply="Hello from the wire")
    return _server


@pytest.fixture
def sdk(sim: MistralSimulator) -> Mistral:
    return Mistral(api_key="sim-key", server_url=sim.base_url, retry_config=None)


MSGS = [{"role": "user", "content": "hi"}]


def test_chat_completion_parses(sdk: Mistral, sim: MistralSimulator) -> None:
    sim.script.cached_tokens = 1
    r = sdk.chat.complete(model="mistral-small-latest", messages=MSGS, max_tokens=50, random_seed=1)  # type: ignore[arg-type]
    assert r.choices[0].message is not None
    assert r.choices[0].message.content == "Hello from the wire"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 5 and r.usage.total_tokens == 6
    assert r.usage.additional_properties["prompt_tokens_details"] == {"cached_tokens": 1}
    assert sim.last_request().headers["authorization"] == "Bearer sim-key"


def test_length_finish_parses(sdk: Mistral) -> None:
    r = sdk.chat.complete(model="mistral-small-latest", messages=MSGS, max_tokens=2)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2


def test_stream_with_usage_parses(sdk: Mistral) -> None:
    events = list(sdk.chat.stream(model="mistral-small-latest", messages=MSGS))  # type: ignore[arg-type]
    text = "".join(str(e.data.choices[0].delta.content or "") for e in events)
    assert text == "Hello from the wire"
    last = events[-1].data
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None and last.usage.total_tokens == 6
    assert all(e.data.usage is None for e in events[:-1])


def test_models_and_embeddings_parse(sdk: Mistral) -> None:
    models = sdk.models.list()
    assert models.data is not None
    cards = {m.id: m for m in models.data if isinstance(m, BaseModelCard)}
    assert set(cards) == {"mistral-small-latest", "mistral-large-latest", "mistral-embed"}
    small = cards["mistral-small-latest"]
    assert small.capabilities.completion_chat and small.capabilities.function_calling
    e = sdk.embeddings.create(model="mistral-embed", inputs=["a", "b"], output_dimension=4)
    assert [d.index for d in e.data] == [0, 1] and e.data[0].embedding is not None
    assert len(e.data[0].embedding) == 4 and e.usage.prompt_tokens == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503])
def test_error_bodies_parse(sim: MistralSimulator, sdk: Mistral, status: int) -> None:
    sim.script.fail_next(1, status)
    with pytest.raises(MistralError) as info:
        sdk.chat.complete(model="mistral-small-latest", messages=MSGS)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, HTTPValidationError if status == 422 else SDKError)
    assert err.status_code == status
    body = json.loads(err.body)
    assert "message" in body
    rid = err.headers.get("mistral-correlation-id") or err.headers.get("x-kong-request-id")
    assert rid
    if status == 401:
        assert body == {"message": "Unauthorized", "request_id": rid}
    else:
        assert body["object"] == "error"


def test_wrong_key_is_401(sim: MistralSimulator) -> None:
    sdk = Mistral(api_key="wrong", server_url=sim.base_url, retry_config=None)
    with pytest.raises(SDKError) as info:
        sdk.models.list()
    assert info.value.status_code == 401


def test_validation_error_parses_for_an_openai_only_field(sim: MistralSimulator) -> None:
    # The SDK cannot send stream_options; a raw call shows the simulator refusing it like Mistral.
    r = httpx2.post(
        f"{sim.base_url}/v1/chat/completions",
        headers={"authorization": "Bearer sim-key"},
        json={"model": "m", "messages": MSGS, "stream_options": {"include_usage": True}},
    )
    assert r.status_code == 422
    detail = r.json()["message"]["detail"][0]
    assert detail["type"] == "extra_forbidden" and detail["loc"] == ["body", "stream_options"]


def test_cut_stream_surfaces_in_sdk(sim: MistralSimulator, sdk: Mistral) -> None:
    sim.script.cut_stream(after_chunks=1, abort=True)
    with pytest.raises(httpx2.TransportError):
        list(sdk.chat.stream(model="mistral-small-latest", messages=MSGS))  # type: ignore[arg-type]
