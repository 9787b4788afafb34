"""Suites: TOML and JSONL files, the built-ins, and clear errors for bad ones."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from polyroute.benchmark._suite import BUILTIN, load_suite, load_suites
from polyroute.errors import SuiteError
from polyroute.types import Message

TOML_SUITE = """
[[case]]
id = "capital"
task_type = "simple"
prompt = "What is the capital of France?"
expected_tokens = 20
grader = { contains = "Paris" }

[[case]]
id = "chat"
task_type = "trivia"
messages = [
  { role = "user", content = "Hi" },
  { role = "assistant", content = "Hello" },
  { role = "user", content = "6 x 7?" },
]
system = "Be brief."
expected_tokens = 5
max_tokens = 16
grader = { numeric = { value = 42, tolerance = 0 } }
"""


def test_a_toml_suite_loads_every_field(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(TOML_SUITE)
    suite = load_suite(str(path))
    assert suite.name == str(path)
    first, second = suite.cases
    assert (first.id, first.task_type, first.grader.kind) == ("capital", "simple", "contains")
    assert first.messages == (Message("user", "What is the capital of France?"),)
    assert first.request_max_tokens == 256  # 4 x 20, at least 256
    assert second.messages[-1] == Message("user", "6 x 7?") and second.system == "Be brief."
    assert (second.max_tokens, second.request_max_tokens) == (16, 16)


def test_a_jsonl_suite_loads_one_case_a_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [
        {
            "id": "a",
            "task_type": "simple",
            "prompt": "p",
            "expected_tokens": 3,
            "grader": {"exact": "x"},
        },
        {
            "id": "b",
            "task_type": "medium",
            "prompt": "q",
            "expected_tokens": 3,
            "grader": {"regex": "y+"},
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert [c.id for c in load_suite(str(path)).cases] == ["a", "b"]


def test_the_builtins_cover_the_seeds_task_types_and_their_references_pass() -> None:
    suites = load_suites([])
    assert [s.name for s in suites] == list(BUILTIN)
    for suite in suites:
        assert {c.task_type for c in suite.cases} == {suite.name}
        for case in suite.cases:
            assert case.reference is not None
            grade = asyncio.run(case.grader.grade(case.reference, case, None))
            assert grade.passed, case.id
    coding = load_suite("coding")
    assert {c.grader.kind for c in coding.cases} == {"tests"}


def _bad(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SuiteError) as err:
        load_suite(str(path))
    return str(err.value)


CASE = 'id = "a"\ntask_type = "simple"\nexpected_tokens = 5\ngrader = { exact = "x" }\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[case]]\n" + CASE, "case 1 ('a'): prompt: give a prompt or messages"),
        (
            "[[case]]\n" + CASE + 'prompt = "p"\nmessages = []\n',
            "prompt: give a prompt or messages",
        ),
        ('[[case]]\nprompt = "p"\n' + CASE.replace('id = "a"\n', ""), "case 1: id: missing"),
        (
            '[[case]]\nprompt = "p"\ntemperature = 0\n' + CASE,
            "case 1 ('a'): temperature: not a case field",
        ),
        (
            '[[case]]\nprompt = "p"\n' + CASE.replace("5", "0"),
            "expected_tokens: must be a whole number",
        ),
        (
            '[[case]]\nprompt = "p"\n' + CASE + '[[case]]\nprompt = "p"\n' + CASE,
            "case 2 ('a'): id: 'a' is used twice",
        ),
        (
            '[[case]]\nmessages = [{ role = "bot", content = "x" }]\n' + CASE,
            "messages[0].role: must be one of",
        ),
        (
            '[[case]]\nmessages = [{ role = "assistant", content = "x" }]\n' + CASE,
            "the last message must be the user's",
        ),
        ('title = "x"\n', "title: not a suite field"),
        ("", "no cases"),
        ("[[case]\n", "not TOML"),
    ],
)
def test_a_bad_toml_suite_names_file_case_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    error = _bad(tmp_path, "bad.toml", text)
    assert error.startswith(str(tmp_path / "bad.toml") + ": ")
    assert message in error


def test_a_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    good = {
        "id": "a",
        "task_type": "simple",
        "prompt": "p",
        "expected_tokens": 3,
        "grader": {"exact": "x"},
    }
    text = json.dumps(good) + "\n{not json\n"
    assert "bad.jsonl: line 2: not JSON" in _bad(tmp_path, "bad.jsonl", text)
    text = json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "grader": {"regex": "("}})
    assert "bad.jsonl: line 2: grader.regex: not a regular expression" in _bad(
        tmp_path, "bad.jsonl", text
    )


def test_an_unknown_suite_or_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"no such suite file .*built-in suites: simple"):
        load_suite("nonesuch")
    assert "a suite is a .toml or .jsonl file" in _bad(tmp_path, "s.yaml", "x")


def test_case_ids_are_unique_across_the_suites_of_a_run(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    path.write_text('[[case]]\nprompt = "p"\n' + CASE.replace('"a"', '"commit-feat-retry"'))
    with pytest.raises(SuiteError, match="case 'commit-feat-retry': id: also used in simple"):
        load_suites(["simple", str(path)])
