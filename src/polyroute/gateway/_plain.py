"""A pydantic refusal of a request body, in the caller's words (DESIGN.md §9).

Pydantic names a union's branches in an error's location (``content.str``,
``input.list[str].0``, ``content.list[tagged-union[_Text,_Image]].0.text.text``)
and reports every branch that failed. The caller wrote none of that:

- the location becomes the path into the body the caller sent: a step that is
  not a key or an index of that body is a branch name, and goes (without the
  body, steps that read as type names go);
- a union's failures become one line: the deepest failure (the branch the body
  got furthest into), or, where the branches fail at the same place, what was
  expected there and what was found (``expected a string or an array, got a
  number``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from polyroute.errors import GatewayError, JSONTooDeepError
from polyroute.providers import loads_bounded

_EXPECTED = {
    "string_type": "a string",
    "list_type": "an array",
    "tuple_type": "an array",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}
"""Type errors, as what the place expected."""

_TYPE_NAMES = frozenset(("str", "int", "float", "bool", "bytes", "none", "any"))

NOT_SUPPORTED = "not supported by polyroute"
"""A field polyroute neither carries nor translates (DESIGN.md §9: refused by name, never
dropped), in every inbound API's words."""


def _found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _is_branch_name(step: str) -> bool:
    """Pydantic's names of union branches: types (``str``, ``list[str]``,
    ``literal['a','b']``) and model classes (``_Text``), never a body's field name."""
    return "[" in step or step in _TYPE_NAMES or step[:1] == "_" or step[:1].isupper()


@dataclass(frozen=True, slots=True)
class _Located:
    error: ErrorDetails
    path: tuple[str | int, ...]
    """Where in the caller's body."""
    branch: int | None
    """The index in ``error["loc"]`` of its first branch name (``None``: not in a union)."""


_NO_BODY = object()


def _has(value: Any, step: str | int) -> bool:
    """Whether ``step`` is a key or an index of ``value``, a piece of the body."""
    if isinstance(value, dict):
        return isinstance(step, str) and step in value
    return isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)


def _locate(error: ErrorDetails, body: Any) -> _Located:
    loc = error["loc"]
    path: list[str | int] = []
    branch: int | None = None
    value = body
    # a tagged union's next key is its tag's value, not a field, even where the body has a
    # key of that name (a text part's tag is "text", and so is its field)
    tag = False
    for i, step in enumerate(loc):
        if tag and isinstance(step, str):
            keep = tag = False
        elif body is _NO_BODY:
            keep = isinstance(step, int) or not _is_branch_name(step)
        elif _has(value, step):
            keep, value = True, value[step]
        else:  # a field the caller left out is named; anything else is a branch name
            keep = i == len(loc) - 1 and error["type"] == "missing" and isinstance(value, dict)
        tag = tag or (isinstance(step, str) and "tagged-union[" in step)
        if keep:
            path.append(step)
        elif branch is None:
            branch = i
    return _Located(error, tuple(path), branch)


def _sentence(errors: Sequence[ErrorDetails]) -> tuple[str | None, str]:
    """What went wrong at one place: (a last path step to add, the sentence)."""
    first = errors[0]
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind == "missing":
        return None, "field required"
    if kind == "extra_forbidden":
        return None, NOT_SUPPORTED
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "type")).strip("'")
        if kind == "union_tag_not_found":
            return field, "field required"
        return (
            field,
            f"unknown {field} {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})",
        )
    if all(e["type"] in _EXPECTED or e["type"] == "literal_error" for e in errors):
        expected: list[str] = []
        for e in errors:
            noun = _EXPECTED.get(e["type"]) or f"{(e.get('ctx') or {}).get('expected')}"
            if noun not in expected:
                expected.append(noun)
        value = first["input"]
        literal = any(e["type"] == "literal_error" for e in errors)
        found = json.dumps(value)[:60] if literal and isinstance(value, str) else _found(value)
        alternatives = ", ".join(expected[:-1]) + " or " if len(expected) > 1 else ""
        return None, f"expected {alternatives}{expected[-1]}, got {found}"
    message = first["msg"].removeprefix("Value error, ")
    if message.startswith("Input should"):
        message = message[len("Input ") :]
    return None, message


def refusal(exc: ValidationError, raw: bytes | None = None) -> GatewayError:
    """``exc``, pydantic's refusal of the request body ``raw``, as one 400 line: the
    caller's field path, and a plain sentence."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", first["msg"])
        return GatewayError(f"the body is not valid JSON: {detail}")
    if first["type"] == "model_type" and not first["loc"]:
        return GatewayError("the body must be a JSON object")
    body: Any = _NO_BODY
    if raw is not None:
        try:
            body = loads_bounded(raw)
        except (ValueError, JSONTooDeepError):
            body = _NO_BODY
    located = [_locate(e, body) for e in errors]
    head = located[0]
    group = [head]
    if head.branch is not None:  # the union's other branches, deepest first
        k = head.branch
        same = [x for x in located if x.branch == k and x.error["loc"][:k] == head.error["loc"][:k]]
        depth = max(len(x.path) for x in same)
        group = [x for x in same if len(x.path) == depth]
    step, sentence = _sentence([x.error for x in group])
    path = [*group[0].path, *([step] if step is not None else [])]
    where = ".".join(str(p) for p in path)
    return GatewayError(f"{where}: {sentence}" if where else sentence, param=where or None)
