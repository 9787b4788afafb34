"""The official openai SDK parses everything the simulator sends: the simulator cannot drift."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from polyroute.testing import OpenAISimulator


@pytest.fixture
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(reply="Hello from the wire") as s:
        yield s


@pytest.fixture
def sdk(sim: OpenAISimulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="sim-key", max_retries=0)


MSGS = [{"role": "user", "content": "hi"}]


def test_chat_completion_parses(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Hello from the wire"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 5


def test_stream_with_usage_parses(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=MSGS,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the wire"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 6


def test_models_and_embeddings_parse(sdk: openai.OpenAI) -> None:
    assert "gpt-4o" in [m.id for m in sdk.models.list()]
    e = sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2 and e.usage.prompt_tokens == 2


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_error_bodies_parse(
    sim: OpenAISimulator, sdk: openai.OpenAI, status: int, exc: type
) -> None:
    sim.script.fail_next(1, status)
    with pytest.raises(exc) as info:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, openai.APIStatusError) and err.status_code == status
    assert err.request_id and isinstance(err.body, dict) and "message" in err.body


def test_cut_stream_surfaces_in_sdk(sim: OpenAISimulator, sdk: openai.OpenAI) -> None:
    sim.script.cut_stream(after_chunks=1, abort=True)
    with pytest.raises(openai.APIError):
        list(sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))  # type: ignore[arg-type]
