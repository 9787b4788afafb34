"""Each grader on a passing and a failing answer, and what it does when it cannot grade."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from polyroute.benchmark._graders import Grade, judge_score, parse_grader
from polyroute.benchmark._suite import Case, parse_case
from polyroute.errors import RateLimitError, SuiteError


def case(grader: dict[str, Any], **extra: Any) -> Case:
    obj = {"id": "c", "task_type": "simple", "prompt": "q?", "expected_tokens": 10}
    return parse_case({**obj, **extra, "grader": grader}, "suite.toml: case 1")


def grade(grader: dict[str, Any], answer: str, judge: Any = None) -> Grade:
    c = case(grader)
    return asyncio.run(c.grader.grade(answer, c, judge))


PASS, FAIL = Grade(1.0, True), Grade(0.0, False)

GRADING_FNS = """
def is_short(answer, case):
    return len(answer) < 10

def length_score(answer, case):
    return len(answer) / 10

def broken(answer, case):
    return 1 / 0 > 0

def out_of_range(answer, case):
    return 3.0
"""


@pytest.fixture(autouse=True)
def grading_fns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module of grader functions, importable as ``bench_grading_fns``."""
    (tmp_path / "bench_grading_fns.py").write_text(GRADING_FNS)
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize(
    ("grader", "good", "bad"),
    [
        ({"exact": "Paris"}, "  Paris\n", "paris"),
        ({"contains": "Paris"}, "It is PARIS.", "It is Lyon."),
        ({"contains": ["code_verifier", "state"]}, "state and code_verifier", "state only"),
        ({"regex": r"^fix(\(\w+\))?: \S"}, "fix(pager): round up", "Fixed the pager"),
        ({"numeric": {"value": 42, "tolerance": 0.5}}, "6 x 7 = 42.2", "about 41"),
        ({"numeric": {"value": 1500}}, "It costs 1,500.", "No number here"),
        (
            {
                "json_schema": {
                    "type": "object",
                    "required": ["n"],
                    "properties": {"n": {"type": "integer"}},
                }
            },
            'Here:\n```json\n{"n": 3}\n```',
            '{"n": "three"}',
        ),
        ({"python": "bench_grading_fns:is_short"}, "short", "much too long an answer"),
        (
            {"tests": "assert double(4) == 8"},
            "Sure:\n```python\ndef double(x):\n    return 2 * x\n```",
            "```python\ndef double(x):\n    return x + 2\n```",
        ),
    ],
)
def test_each_grader_passes_a_good_answer_and_fails_a_bad_one(
    grader: dict[str, Any], good: str, bad: str
) -> None:
    assert grade(grader, good) == PASS
    assert grade(grader, bad) == FAIL


def test_not_json_fails_a_json_schema_grader() -> None:
    assert grade({"json_schema": {"type": "object"}}, "not json at all") == FAIL


def test_a_python_grader_may_give_a_score_and_its_failures_are_grading_errors() -> None:
    assert grade({"python": "bench_grading_fns:length_score"}, "abcde") == Grade(0.5, None)
    raised = grade({"python": "bench_grading_fns:broken"}, "x")
    assert raised.score is None and "ZeroDivisionError" in (raised.error or "")
    odd = grade({"python": "bench_grading_fns:out_of_range"}, "x")
    assert odd.score is None and "not a bool or a score in 0..1" in (odd.error or "")


def test_a_coding_answer_that_loops_forever_fails_within_its_timeout() -> None:
    looping = "```python\nwhile True:\n    pass\n```"
    assert grade({"tests": "assert True", "timeout_s": 1}, looping) == FAIL


def test_coding_tests_run_isolated_from_the_callers_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLYROUTE_SECRET_FOR_TEST", "leak")
    probe = "```python\nimport os\n```"
    tests = "assert 'POLYROUTE_SECRET_FOR_TEST' not in os.environ"
    assert grade({"tests": tests}, probe) == PASS


def test_the_judge_is_asked_with_the_rubric_and_its_mark_is_read() -> None:
    asked: list[tuple[str, str, str]] = []

    async def judge(provider: str, model: str, prompt: str) -> str:
        asked.append((provider, model, prompt))
        return "Covers every step but one.\nSCORE: 8"

    spec = {"judge": "anthropic/claude-sonnet-4-5", "rubric": "names each step"}
    assert grade(spec, "an answer", judge) == Grade(0.8, None)
    [(provider, model, prompt)] = asked
    assert (provider, model) == ("anthropic", "claude-sonnet-4-5")
    assert "names each step" in prompt and "an answer" in prompt and "q?" in prompt


def test_a_failing_judge_is_a_grading_error_not_a_crash() -> None:
    async def judge(provider: str, model: str, prompt: str) -> str:
        raise RateLimitError("slow down", provider="anthropic", status=429)

    spec = {"judge": "anthropic/claude-sonnet-4-5", "rubric": "r"}
    g = grade(spec, "an answer", judge)
    assert g.score is None and g.passed is None
    assert g.error is not None and "RateLimitError" in g.error
    assert grade(spec, "x", None).error == "no judge is available to this run"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Good.\nSCORE: 7", Grade(0.7, None)),
        ("**Score:** 9/10", Grade(0.9, None)),
        ("I'd give it 6 / 10 overall.", Grade(0.6, None)),
        ("score = 10", Grade(1.0, None)),
        ("Verdict: PASS", PASS),
        ("It passes some checks. FAIL", FAIL),
    ],
)
def test_judge_marks_are_read_robustly(text: str, expected: Grade) -> None:
    assert judge_score(text) == expected


@pytest.mark.parametrize("text", ["Looks fine to me.", "SCORE: 12"])
def test_an_unreadable_judge_mark_is_a_grading_error(text: str) -> None:
    g = judge_score(text)
    assert g.score is None and g.error


@pytest.mark.parametrize(
    ("grader", "message"),
    [
        ("Paris", "grader: must be a table"),
        ({}, "grader: needs exactly one of"),
        ({"exact": "a", "contains": "b"}, "(has exact, contains)"),
        ({"contains": "a", "ignore_case": True}, "grader.ignore_case: not a field of the contains"),
        ({"regex": "("}, "grader.regex: not a regular expression"),
        ({"numeric": {"value": "x"}}, "grader.numeric.value: must be a number"),
        ({"numeric": {"value": 1, "tolerance": -1}}, "grader.numeric.tolerance: must be 0 or more"),
        ({"json_schema": {"type": 5}}, "grader.json_schema: not a valid JSON schema"),
        ({"python": "no_colon"}, 'is not "pkg.module:function"'),
        ({"python": "polyroute_missing_mod:f"}, "cannot import 'polyroute_missing_mod'"),
        ({"python": "json:nope"}, "'json' has no 'nope'"),
        ({"judge": "gpt-4o", "rubric": "r"}, 'is not "provider/model"'),
        ({"judge": "openai/gpt-4o"}, "grader.rubric: must be a non-empty string"),
        ({"tests": "assert 1", "timeout_s": 0}, "grader.timeout_s: must be a number"),
    ],
)
def test_a_bad_grader_is_refused_naming_the_case_and_field(grader: Any, message: str) -> None:
    with pytest.raises(SuiteError) as err:
        parse_grader(grader, "suite.toml: case 1")
    assert str(err.value).startswith("suite.toml: case 1: ")
    assert message in str(err.value)


def test_json_schema_without_its_extra_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # as if not installed
    with pytest.raises(SuiteError, match=r"needs the jsonschema package .*polyroute\[bench\]"):
        parse_grader({"json_schema": {"type": "object"}}, "s.toml: case 1")
