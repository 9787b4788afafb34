"""Benchmark suites: cases in TOML (``[[case]]`` tables) or JSONL (one object a line).

A case (DESIGN.md §10)::

    [[case]]
    id = "capital"                 # unique in its suite
    task_type = "simple"           # simple | medium | complex | coding | a suite's own
    prompt = "What is the capital of France?"   # or messages = [{role, content}, ...]
    expected_tokens = 20           # the answer's expected size
    grader = { contains = "Paris" }
    max_tokens = 64                # optional; default: 4 x expected_tokens, at least 256
    system = "Answer briefly."     # optional
    reference = "Paris"            # optional: a correct answer (for the judge's rubric)

The request's ``max_tokens`` bounds each sample's worst-case cost, which is
what ``--max-cost`` schedules against. A SUITE argument is a path, or the
name of a built-in suite (``simple``, ``medium``, ``complex``, ``coding``).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from polyroute.benchmark._graders import Grader, parse_grader
from polyroute.errors import SuiteError
from polyroute.types import Message

BUILTIN_DIR = Path(__file__).parent / "suites"
BUILTIN = ("simple", "medium", "complex", "coding")

_FIELDS = frozenset(
    {
        "id",
        "task_type",
        "prompt",
        "messages",
        "expected_tokens",
        "grader",
        "max_tokens",
        "system",
        "reference",
    }
)
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    task_type: str
    messages: tuple[Message, ...]
    expected_tokens: int
    grader: Grader
    max_tokens: int | None = None
    system: str | None = None
    reference: str | None = None
    suite: str = ""

    @property
    def request_max_tokens(self) -> int:
        """The output bound each sample's request carries."""
        return self.max_tokens or max(4 * self.expected_tokens, 256)

    @property
    def task_text(self) -> str:
        """The task as one text (for a judge): the system text and every message."""
        parts = [f"(system) {self.system}"] if self.system else []
        parts += [m.text if m.role == "user" else f"({m.role}) {m.text}" for m in self.messages]
        return "\n\n".join(parts)


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    """What the run records: a built-in's name, or the file's path as given."""
    cases: tuple[Case, ...]


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, else the TOML or JSONL file at the path."""
    if name_or_path in BUILTIN and not Path(name_or_path).exists():
        return _load(BUILTIN_DIR / f"{name_or_path}.toml", name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise SuiteError(
            f"{name_or_path}: no such suite file (built-in suites: {', '.join(BUILTIN)})"
        )
    return _load(path, name_or_path)


def load_suites(names: Sequence[str]) -> list[Suite]:
    """Each named suite (none: every built-in); case ids must be unique across them."""
    suites = [load_suite(n) for n in (names or BUILTIN)]
    seen: dict[str, str] = {}
    for suite in suites:
        for case in suite.cases:
            if case.id in seen:
                raise SuiteError(
                    f"{suite.name}: case {case.id!r}: id: also used in {seen[case.id]}"
                )
            seen[case.id] = suite.name
    return suites


def _load(path: Path, name: str) -> Suite:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    if path.suffix == ".jsonl":
        cases = _jsonl(text, str(path), name)
    elif path.suffix == ".toml":
        cases = _toml(text, str(path), name)
    else:
        raise SuiteError(f"{path}: a suite is a .toml or .jsonl file")
    if not cases:
        raise SuiteError(f"{path}: no cases")
    ids: set[str] = set()
    for where, case in cases:
        if case.id in ids:
            raise SuiteError(f"{where}: id: {case.id!r} is used twice")
        ids.add(case.id)
    return Suite(name, tuple(case for _, case in cases))


def _toml(text: str, file: str, name: str) -> list[tuple[str, Case]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{file}: not TOML: {exc}") from None
    extra = sorted(set(data) - {"case"})
    if extra:
        raise SuiteError(f"{file}: {extra[0]}: not a suite field (cases are [[case]] tables)")
    tables = data.get("case", [])
    if not isinstance(tables, list):
        raise SuiteError(f"{file}: case: must be [[case]] tables")
    out = []
    for i, table in enumerate(tables, 1):
        where = f"{file}: case {i}"
        if isinstance(table, Mapping) and isinstance(table.get("id"), str):
            where = f"{file}: case {i} ({table['id']!r})"
        out.append((where, parse_case(table, where, name)))
    return out


def _jsonl(text: str, file: str, name: str) -> list[tuple[str, Case]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{file}: line {n}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise SuiteError(f"{where}: not JSON: {exc}") from None
        out.append((where, parse_case(obj, where, name)))
    return out


def parse_case(obj: object, where: str, suite: str = "") -> Case:
    """One case from its table; :class:`SuiteError` naming ``where`` and the field."""
    if not isinstance(obj, Mapping):
        raise SuiteError(f"{where}: a case must be a table (an object)")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise SuiteError(f"{where}: {unknown[0]}: not a case field")
    for required in ("id", "task_type", "expected_tokens", "grader"):
        if required not in obj:
            raise SuiteError(f"{where}: {required}: missing")
    case_id = _string(obj, "id", where)
    task_type = _string(obj, "task_type", where)
    system = _string(obj, "system", where) if "system" in obj else None
    reference = _string(obj, "reference", where) if "reference" in obj else None
    if ("prompt" in obj) == ("messages" in obj):
        raise SuiteError(f"{where}: prompt: give a prompt or messages (one of them)")
    if "prompt" in obj:
        messages: tuple[Message, ...] = (Message("user", _string(obj, "prompt", where)),)
    else:
        messages = _messages(obj["messages"], f"{where}: messages")
    return Case(
        id=case_id,
        task_type=task_type,
        messages=messages,
        expected_tokens=_positive(obj, "expected_tokens", where),
        grader=parse_grader(obj["grader"], where),
        max_tokens=_positive(obj, "max_tokens", where) if "max_tokens" in obj else None,
        system=system,
        reference=reference,
        suite=suite,
    )


def _string(obj: Mapping[str, object], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise SuiteError(f"{where}: {key}: must be a non-empty string")
    return value


def _positive(obj: Mapping[str, object], key: str, where: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SuiteError(f"{where}: {key}: must be a whole number above 0")
    return value


def _messages(value: object, where: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise SuiteError(f"{where}: must be a non-empty list of {{role, content}}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or set(m) != {"role", "content"}:
            raise SuiteError(f"{where}[{i}]: must be {{role, content}}")
        role, content = m["role"], m["content"]
        if role not in _ROLES:
            raise SuiteError(f"{where}[{i}].role: must be one of {', '.join(_ROLES)}")
        if not isinstance(content, str) or not content:
            raise SuiteError(f"{where}[{i}].content: must be a non-empty string")
        out.append(Message(role, content))
    if out[-1].role != "user":
        raise SuiteError(f"{where}: the last message must be the user's")
    return tuple(out)
