"""What a panel answer is compared on: its final answer, or its normalised text.

Rule (:func:`comparison_key`):

1. If a *final answer* can be extracted (:func:`extract_final_answer`), the key
   is that answer in :func:`canonical` form: ``"The answer is 42."``,
   ``"Answer: 42"``, ``"**42**"`` and ``"6 x 7 = 42"`` all become ``"42"``.
2. Else, an answer of at most :data:`SHORT_ANSWER_CHARS` characters is short
   or structured (a name, a number, a yes/no, a one-liner): the key is the whole
   text in :func:`canonical` form (case-folded, punctuation stripped,
   whitespace collapsed).
3. Else (long prose), the key is the text case-folded with its whitespace
   collapsed: punctuation carries meaning in prose, so it is kept.

Final-answer patterns, tried in this order; within a pattern the *last* match
in the text wins (models state their conclusion at the end):

- ``\\boxed{X}`` (LaTeX, as math answers are often given);
- an answer marker: ``Answer: X``, ``Final answer: X``, ``Answer = X``,
  ``The answer is X``, ``The final answer is X`` (X runs to the end of its
  sentence or line);
- a bold span ``**X**``, in short answers only (in prose, bold is emphasis);
- a trailing ``= X`` that ends the text (``6 x 7 = 42``).

An extracted X longer than :data:`MAX_FINAL_ANSWER_CHARS` is not a final
answer (``"The answer is that it depends on ..."``): the next pattern, then
rules 2 and 3, apply. In an answer longer than :data:`SHORT_ANSWER_CHARS`,
the patterns are looked for in its last :data:`CONCLUSION_CHARS` characters
only: that is where a long answer concludes, a marker mid-prose is more
likely a figure of speech, and it keeps the cost per answer constant.
"""

from __future__ import annotations

import re
import unicodedata

SHORT_ANSWER_CHARS = 200
"""Answers up to this long are compared on their :func:`canonical` form."""
MAX_FINAL_ANSWER_CHARS = 80
"""A longer extracted span is prose, not a final answer."""
CONCLUSION_CHARS = 400
"""How much of the end of a long answer is searched for its final answer."""

_BOXED = re.compile(r"\\boxed\{([^{}\n]+)\}")
# the answer runs to the end of its sentence (". " but not the "." of "3.14") or line
_MARKER = re.compile(
    r"\b(?:(?:the\s+)?(?:final\s+)?answer\s+is\b|(?:final\s+)?answer\s*[:=])\s*:?\s*"
    r"([^\n]+?)(?=[.!?;](?:\s|$)|\s*$)",
    re.IGNORECASE | re.MULTILINE,
)
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_TRAILING_EQUALS = re.compile(r"=\s*([^=\n]+?)\s*$")
_EDGE_JUNK = " \t*_`'\"\u201c\u201d\u2018\u2019.,;:!?()[]{}"  # and curly quotes

_THOUSANDS = re.compile(r"(?<=\d)[,_](?=\d{3}\b)")
# anything but word characters and spaces, except a decimal point between digits and a
# minus sign that starts a number (so "3.14" and "-2" survive, and "42." loses its dot)
_PUNCT = re.compile(r"(?:(?<!\d)\.|\.(?!\d)|-(?!\d)|(?<=\w)-|[^\w\s.-])+")
_MARKDOWN = re.compile(r"[*_`]+")


def extract_final_answer(text: str) -> str | None:
    """The final answer ``text`` states, stripped of markup, or ``None`` (see module docs)."""
    short = len(text) <= SHORT_ANSWER_CHARS
    scope = text if short else text[-CONCLUSION_CHARS:]
    candidates = [_last(_BOXED, scope), _last(_MARKER, scope)]
    if short:
        candidates.append(_last(_BOLD, scope))
    candidates.append(_last(_TRAILING_EQUALS, scope))
    for found in candidates:
        if found is None:
            continue
        value = found.strip(_EDGE_JUNK)
        if value and len(value) <= MAX_FINAL_ANSWER_CHARS:
            return value
    return None


def canonical(text: str) -> str:
    """Case-folded, markup and punctuation stripped, whitespace collapsed.

    ``"  The  ANSWER: **1,000**!"`` -> ``"the answer 1000"``; ``"3.14"`` and
    ``"-2"`` keep their decimal point and sign.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _MARKDOWN.sub(" ", text)
    text = _THOUSANDS.sub("", text)
    text = _PUNCT.sub(" ", text)
    return " ".join(text.split())


def comparison_key(text: str) -> str:
    """What an answer is compared on (the module's rule): final answer, short text, or prose."""
    final = extract_final_answer(text)
    if final is not None:
        return canonical(final)
    if len(text) <= SHORT_ANSWER_CHARS:
        return canonical(text)
    return " ".join(text.casefold().split())


def _last(pattern: re.Pattern[str], text: str) -> str | None:
    found = None
    for found in pattern.finditer(text):  # noqa: B007 (the last match is the one kept)
        pass
    return None if found is None else found.group(1)
