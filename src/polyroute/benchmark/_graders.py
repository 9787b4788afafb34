"""Graders: how a benchmark answer is scored (DESIGN.md §10).

A suite names one grader per case (``grader = { contains = "Paris" }``).
Pass/fail graders give ``passed`` and a score of 0 or 1; ``python`` may give a
graded score in 0..1 and ``judge`` gives one from its 0-10 mark. A grader that
cannot grade (a judge call that failed, a function that raised, a score it
cannot read) returns a :class:`Grade` with ``error``: the sample counts as
answered but ungraded, never as a crash of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from polyroute.errors import PolyrouteError, SuiteError

if TYPE_CHECKING:
    from polyroute.benchmark._suite import Case

Judge = Callable[[str, str, str], Awaitable[str]]
"""``judge(provider, model, prompt)``: the judge's answer, through the metered path."""

GRADER_KINDS = ("exact", "contains", "regex", "numeric", "json_schema", "python", "judge", "tests")


@dataclass(frozen=True, slots=True)
class Grade:
    score: float | None
    passed: bool | None
    error: str | None = None
    """Why the answer could not be graded (``score`` is then ``None``)."""


def verdict(ok: bool) -> Grade:
    return Grade(1.0 if ok else 0.0, ok)


def ungraded(why: str) -> Grade:
    return Grade(None, None, why)


class Grader(Protocol):
    @property
    def kind(self) -> str: ...

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade: ...


@dataclass(frozen=True, slots=True)
class Exact:
    """The answer, stripped of surrounding whitespace, equals ``value``."""

    value: str
    kind: str = "exact"

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        return verdict(answer.strip() == self.value.strip())


@dataclass(frozen=True, slots=True)
class Contains:
    """Every one of ``values`` appears in the answer, case-insensitively."""

    values: tuple[str, ...]
    kind: str = "contains"

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        text = answer.casefold()
        return verdict(all(v.casefold() in text for v in self.values))


@dataclass(frozen=True, slots=True)
class Regex:
    """The pattern matches somewhere in the answer (``re.search``, multiline)."""

    pattern: re.Pattern[str]
    kind: str = "regex"

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        return verdict(self.pattern.search(answer) is not None)


_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True, slots=True)
class Numeric:
    """The answer's last number is within ``tolerance`` of ``value`` (none: failed)."""

    value: float
    tolerance: float
    kind: str = "numeric"

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        found = _NUMBER.findall(answer)
        if not found:
            return verdict(False)
        try:
            number = float(found[-1].replace(",", "").rstrip("."))
        except ValueError:
            return verdict(False)
        return verdict(abs(number - self.value) <= self.tolerance)


_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def fenced(answer: str, languages: tuple[str, ...]) -> str | None:
    """The first fenced block in one of ``languages`` (or unlabelled), else ``None``."""
    for lang, body in _FENCE.findall(answer):
        if not lang or lang.lower() in languages:
            return str(body)
    return None


@dataclass(frozen=True, slots=True)
class JsonSchemaGrader:
    """The answer (or its fenced ```json block) is JSON valid against ``schema``."""

    schema: Mapping[str, Any]
    kind: str = "json_schema"

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        import jsonschema  # type: ignore[import-untyped]  # no stubs shipped

        text = fenced(answer, ("json",)) or answer
        try:
            value = json.loads(text)
        except ValueError:
            return verdict(False)
        validator = jsonschema.Draft202012Validator(self.schema)
        return verdict(validator.is_valid(value))


@dataclass(frozen=True, slots=True)
class PythonGrader:
    """``fn(answer, case)`` from ``"pkg.mod:fn"``: a bool, or a float score in 0..1."""

    ref: str
    fn: Callable[[str, Any], object]
    kind: str = "python"

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        try:
            result = self.fn(answer, case)
        except Exception as exc:  # noqa: BLE001 - a user's grader failing is a counted grading error
            return ungraded(f"{self.ref} raised {type(exc).__name__}: {exc}")
        if isinstance(result, bool):
            return verdict(result)
        if isinstance(result, int | float) and 0.0 <= float(result) <= 1.0:
            return Grade(float(result), None)
        return ungraded(f"{self.ref} returned {result!r}, not a bool or a score in 0..1")


JUDGE_PROMPT = """You are grading an answer to a task. Read the task, the reference answer \
(if any), the rubric and the answer, then grade the answer.

## Task
{task}

## Reference answer
{reference}

## Rubric
{rubric}

## Answer to grade
{answer}

Reply with your reasoning in one or two sentences, then a last line of the form \
"SCORE: N" where N is from 0 (useless) to 10 (perfect)."""

_SCORE = re.compile(r"\bscore\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"\b(\d+(?:\.\d+)?)\s*/\s*10\b")
_VERDICT = re.compile(r"\b(PASS|FAIL)(?:ED)?\b")


def judge_score(text: str) -> Grade:
    """Read a judge's mark: the last ``SCORE: N`` (0-10), else the last ``N/10``, else the
    last PASS/FAIL word (in capitals); anything else is a grading error."""
    for pattern in (_SCORE, _OUT_OF_TEN):
        marks = pattern.findall(text)
        if marks:
            mark = float(marks[-1])
            if 0.0 <= mark <= 10.0:
                return Grade(mark / 10.0, None)
            return ungraded(f"the judge's score {mark:g} is not from 0 to 10")
    verdicts = _VERDICT.findall(text)
    if verdicts:
        return verdict(verdicts[-1] == "PASS")
    excerpt = " ".join(text.split())[:80]
    return ungraded(f"no score in the judge's answer: {excerpt!r}")


@dataclass(frozen=True, slots=True)
class JudgeGrader:
    """A model (``provider/model``) marks the answer against ``rubric``; its call is
    metered like any other."""

    provider: str
    model: str
    rubric: str
    kind: str = "judge"

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        if judge is None:
            return ungraded("no judge is available to this run")
        prompt = JUDGE_PROMPT.format(
            task=case.task_text,
            reference=case.reference or "(none given)",
            rubric=self.rubric,
            answer=answer,
        )
        try:
            text = await judge(self.provider, self.model, prompt)
        except PolyrouteError as exc:
            return ungraded(
                f"judge {self.provider}/{self.model} failed: {type(exc).__name__}: {exc}"
            )
        return judge_score(text)


_CPU_LIMIT = """import resource
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
"""


@dataclass(frozen=True, slots=True)
class TestsGrader:
    """The answer's Python code block, followed by ``tests`` (plain asserts), runs in a
    fresh isolated interpreter (``python -I``) in a temporary directory, with a CPU and a
    wall-clock limit: exit status 0 passes."""

    tests: str
    timeout_s: float = 10.0
    kind: str = "tests"

    __test__ = False  # not a pytest class

    async def grade(self, answer: str, case: Case, judge: Judge | None) -> Grade:
        code = fenced(answer, ("python", "py", "python3")) or answer
        cpu = max(1, math.ceil(self.timeout_s))
        prelude = _CPU_LIMIT.format(cpu=cpu) if sys.platform != "win32" else ""
        with tempfile.TemporaryDirectory(prefix="polyroute-bench-") as tmp:
            script = Path(tmp) / "case.py"
            script.write_text(f"{prelude}\n{code}\n\n{self.tests}\n", encoding="utf-8")
            env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                str(script),
                cwd=tmp,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                status = await asyncio.wait_for(proc.wait(), self.timeout_s)
            except TimeoutError:
                status = None
            finally:
                if proc.returncode is None:  # over time, or cancelled: it must not outlive us
                    with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                        proc.kill()
                    await proc.wait()
        return verdict(status == 0)


# -- parsing a suite's ``grader`` table -----------------------------------------------


def parse_grader(spec: object, where: str) -> Grader:
    """The grader a suite's ``grader`` value names; :class:`SuiteError` (naming ``where``,
    the field and the problem) for anything else."""
    if not isinstance(spec, Mapping):
        raise SuiteError(f'{where}: grader: must be a table such as {{ contains = "..." }}')
    kinds = [k for k in spec if k in GRADER_KINDS]
    if len(kinds) != 1:
        raise SuiteError(
            f"{where}: grader: needs exactly one of {', '.join(GRADER_KINDS)}"
            + (f" (has {', '.join(kinds)})" if kinds else "")
        )
    [kind] = kinds
    allowed = {"judge": {"judge", "rubric"}, "tests": {"tests", "timeout_s"}}.get(kind, {kind})
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SuiteError(f"{where}: grader.{unknown[0]}: not a field of the {kind} grader")
    value = spec[kind]
    field = f"{where}: grader.{kind}"
    match kind:
        case "exact":
            return Exact(_text(value, field))
        case "contains":
            if isinstance(value, list) and value:
                return Contains(tuple(_text(v, field) for v in value))
            return Contains((_text(value, field),))
        case "regex":
            try:
                return Regex(re.compile(_text(value, field), re.MULTILINE))
            except re.error as exc:
                raise SuiteError(f"{field}: not a regular expression: {exc}") from None
        case "numeric":
            return _numeric(value, field)
        case "json_schema":
            return _json_schema(value, field)
        case "python":
            return PythonGrader(_text(value, field), _function(_text(value, field), field))
        case "judge":
            provider, sep, model = _text(value, field).partition("/")
            if not (sep and provider and model):
                raise SuiteError(f'{field}: {value!r} is not "provider/model"')
            rubric = _text(spec.get("rubric"), f"{where}: grader.rubric")
            return JudgeGrader(provider, model, rubric)
        case _:
            timeout = spec.get("timeout_s", 10.0)
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
                raise SuiteError(f"{where}: grader.timeout_s: must be a number of seconds above 0")
            return TestsGrader(_text(value, field), float(timeout))


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise SuiteError(f"{field}: must be a non-empty string")
    return value


def _numeric(value: object, field: str) -> Numeric:
    if not isinstance(value, Mapping) or set(value) - {"value", "tolerance"}:
        raise SuiteError(f"{field}: must be {{ value = N, tolerance = T }}")
    number, tolerance = value.get("value"), value.get("tolerance", 0.0)
    for name, v in (("value", number), ("tolerance", tolerance)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SuiteError(f"{field}.{name}: must be a number")
    assert isinstance(number, int | float) and isinstance(tolerance, int | float)
    if tolerance < 0:
        raise SuiteError(f"{field}.tolerance: must be 0 or more")
    return Numeric(float(number), float(tolerance))


def _json_schema(value: object, field: str) -> JsonSchemaGrader:
    try:
        import jsonschema
    except ImportError:
        raise SuiteError(
            f"{field}: needs the jsonschema package (pip install 'polyroute[bench]')"
        ) from None
    if not isinstance(value, Mapping):
        raise SuiteError(f"{field}: must be a JSON schema (a table)")
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        raise SuiteError(f"{field}: not a valid JSON schema: {exc.message}") from None
    return JsonSchemaGrader(value)


def _function(ref: str, field: str) -> Callable[[str, Any], object]:
    module, sep, name = ref.partition(":")
    if not (sep and module and name):
        raise SuiteError(f'{field}: {ref!r} is not "pkg.module:function"')
    try:
        fn = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise SuiteError(f"{field}: cannot import {module!r}: {exc}") from None
    except AttributeError:
        raise SuiteError(f"{field}: {module!r} has no {name!r}") from None
    if not callable(fn):
        raise SuiteError(f"{field}: {ref!r} is not callable")
    return fn  # type: ignore[no-any-return]
