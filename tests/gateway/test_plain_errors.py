"""Pydantic's refusals in the caller's words: the caller's field path, a plain sentence."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from polyroute.gateway._plain import refusal


class _Text(BaseModel):
    type: Literal["text"]
    text: str


class _Image(BaseModel):
    type: Literal["image"]
    url: str


class _Body(BaseModel):
    content: str | list[Annotated[_Text | _Image, Field(discriminator="type")]]
    count: int | None = None


def refused(body: Any, *, with_body: bool = True) -> tuple[str, str | None]:
    raw = json.dumps(body).encode()
    with pytest.raises(ValidationError) as exc:
        _Body.model_validate_json(raw)
    error = refusal(exc.value, raw if with_body else None)
    return str(error), error.param


@pytest.mark.parametrize("with_body", [True, False])
def test_union_branch_names_never_reach_the_caller(with_body: bool) -> None:
    assert refused({"content": 5}, with_body=with_body) == (
        "content: expected a string or an array, got a number",
        "content",
    )
    assert refused({"content": [{"type": "image"}]}, with_body=with_body) == (
        "content.0.url: field required",
        "content.0.url",
    )
    assert refused({"content": [{"type": "video"}]}, with_body=with_body) == (
        "content.0.type: unknown type 'video' (expected one of 'text', 'image')",
        "content.0.type",
    )


def test_a_value_of_the_wrong_type_inside_a_union() -> None:
    assert refused({"content": [{"type": "text", "text": None}]}) == (
        "content.0.text: expected a string, got null",
        "content.0.text",
    )


def test_plain_fields_and_the_whole_body() -> None:
    assert refused({"content": "x", "count": "many"}) == (
        "count: expected an integer, got a string",
        "count",
    )
    assert refused({}) == ("content: field required", "content")
    with pytest.raises(ValidationError) as exc:
        _Body.model_validate_json(b"{nope")
    assert str(refusal(exc.value, b"{nope")).startswith("the body is not valid JSON")
