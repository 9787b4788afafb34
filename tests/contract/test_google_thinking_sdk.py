"""The official google-genai SDK parses the simulator's thought summaries (JSON and SSE), and
the simulator refuses a thinking config the API refuses (a budget and a level at once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors, types

from polyroute.testing._sim import count_tokens
from polyroute.testing.google import GoogleSimulator

THINK = types.ThinkingConfig(include_thoughts=True, thinking_budget=1024)


@pytest.fixture
def sim() -> Iterator[GoogleSimulator]:
    s = GoogleSimulator(reply="Hello from the wire")
    with s:
        yield s


@pytest.fixture
def sdk(sim: GoogleSimulator) -> genai.Client:
    options = types.HttpOptions(
        base_url=sim.base_url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key="sim-key", http_options=options)


def test_thought_summary_parses_apart_from_the_answer(sdk: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=THINK)
    r = sdk.models.generate_content(model="gemini-2.5-flash", contents="hi", config=config)
    thought, answer = r.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert thought.thought is True and thought.text and "hi" in thought.text
    assert not answer.thought and answer.text == "Hello from the wire"
    assert r.text == "Hello from the wire"  # the SDK leaves thoughts out of .text
    usage = r.usage_metadata
    assert usage is not None and usage.thoughts_token_count == count_tokens(thought.text)


def test_thought_summary_streams_first(sdk: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=THINK)
    chunks = list(
        sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="hi", config=config)
    )
    first = chunks[0].candidates[0].content.parts[0]  # type: ignore[index, union-attr]
    assert first.thought is True
    text = "".join(
        p.text or ""
        for c in chunks
        for p in c.candidates[0].content.parts or ()  # type: ignore[index, union-attr]
        if not p.thought
    )
    assert text == "Hello from the wire"


def test_a_budget_and_a_level_at_once_are_refused(sdk: genai.Client) -> None:
    both = types.ThinkingConfig(thinking_budget=1024, thinking_level=types.ThinkingLevel.HIGH)
    config = types.GenerateContentConfig(thinking_config=both)
    with pytest.raises(errors.ClientError):
        sdk.models.generate_content(model="gemini-2.5-flash", contents="hi", config=config)
