"""Each vendor's official SDK asks its simulator for structured output in the vendor's own
shape: the simulator reads the schema from there and answers JSON in it, which the SDK
parses into the pydantic model (the simulators cannot drift from the real wire shapes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import anthropic
import ollama
import openai
import pytest
from google import genai
from google.genai import types
from mistralai.client import Mistral
from pydantic import BaseModel

from polyroute.testing import Fleet


class Person(BaseModel):
    name: str
    age: int
    tags: list[Literal["a", "b"]]


EXPECTED = Person(name="sample", age=1, tags=["a"])
ASK = "Who?"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet() as f:
        yield f


def test_openai_parse(fleet: Fleet) -> None:
    with openai.OpenAI(base_url=fleet["openai"].base_url, api_key="sim-key") as c:
        completion = c.chat.completions.parse(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": ASK}],
            response_format=Person,
        )
    assert completion.choices[0].message.parsed == EXPECTED


def test_anthropic_parse(fleet: Fleet) -> None:
    with anthropic.Anthropic(base_url=fleet["anthropic"].base_url, api_key="sim-key") as c:
        message = c.messages.parse(
            model="claude-sonnet-4-6",
            max_tokens=200,
            messages=[{"role": "user", "content": ASK}],
            output_format=Person,
        )
    assert message.parsed_output == EXPECTED
    assert "format" in fleet["anthropic"].last_request().body["output_config"]


def test_google_response_json_schema(fleet: Fleet) -> None:
    options = types.HttpOptions(
        base_url=fleet["google"].base_url, retry_options=types.HttpRetryOptions(attempts=1)
    )
    client = genai.Client(api_key="sim-key", http_options=options)
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=ASK,
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_json_schema=Person.model_json_schema(),
        ),
    )
    assert Person.model_validate_json(response.text or "") == EXPECTED


def test_ollama_format(fleet: Fleet) -> None:
    with ollama.Client(host=fleet["ollama"].base_url) as c:
        response = c.chat(
            model="llama3.2:latest",
            messages=[{"role": "user", "content": ASK}],
            format=Person.model_json_schema(),
        )
    assert Person.model_validate_json(response.message.content or "") == EXPECTED


def test_mistral_parse(fleet: Fleet) -> None:
    client = Mistral(api_key="sim-key", server_url=fleet["mistral"].base_url, retry_config=None)
    response = client.chat.parse(
        response_format=Person,
        model="mistral-small-latest",
        messages=[{"role": "user", "content": ASK}],
    )
    assert response.choices is not None
    assert response.choices[0].message is not None
    assert response.choices[0].message.parsed == EXPECTED
