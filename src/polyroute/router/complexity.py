"""How demanding a request looks: ``simple``, ``medium`` or ``complex``, from its text alone.

A deterministic, cheap heuristic: no model call, 5-20 µs for a normal prompt and
about as much for a long pasted document (only the instruction is scanned).
It reads *the ask*: the last user message (all text when there is none, e.g.
system-only). In a long message (over 1,000 characters) only its first and last
paragraphs count as the ask, because what sits in between is usually pasted
material (an article, a contract, a log), not the instruction; each of the two
is read up to 600 characters.

Points, added up:

======================================  =============================================
signal                                  points
======================================  =============================================
proof vocabulary (prove, theorem,        +3  (once)
derive, "show that", beweisen...)
systems vocabulary (distributed,         +2 each distinct word, at most +4
architecture, consensus, trade-offs...)
analysis vocabulary (analyze, compare,   +1 each distinct word, at most +3
evaluate, design, plan, risks...)
a task verb (explain, write, fix,        +1  (once)
refactor, summarize, "how does"...)
"step by step", "in depth", "for each"   +1  (once)
math words (integral, matrix...)         +1
math notation (LaTeX, ∑ ∫ √, y'', x^2)   +1
code (a fenced block or code lines)      +1
3+ questions / 5+ questions              +1 / +2
3+ list items / 6+ list items            +1 / +2
an ask over ~80 tokens                   +1
trivial-task words (translate, joke,     -1  (only without code)
synonym, capital, hello, thanks...)
======================================  =============================================

Total 0 or less: ``simple``; 1-2: ``medium``; 3 or more: ``complex``. A
conversation over ~1,500 tokens in all is at least ``medium`` (a model must
read it all, whatever the ask), but length alone never makes it ``complex``.
Tokens are estimated by :func:`polyroute.tokens.estimate_text_tokens`.

The vocabulary is mostly English, with a few common French, German, Spanish
and Chinese words; other languages are judged on structure and length.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from polyroute.router.context import Complexity
from polyroute.tokens import estimate_text_tokens
from polyroute.types import Message

_LONG_ASK_CHARS = 1_000
_PARAGRAPH_CHARS = 600
_LONG_ASK_TOKENS = 80
_LONG_CONVERSATION_TOKENS = 1_500


def _vocab(words: str) -> frozenset[str]:
    return frozenset(words.split())


_PROOF = _vocab(
    "prove proves proof proofs theorem theorems lemma derive derivation formally rigorous "
    "rigorously beweisen beweise beweis démontrer démontrez demostrar demuestra"
)
# Chinese and Japanese have no spaces between words: their terms are matched as substrings.
_PROOF_PHRASES = ("show that", "证明", "証明")
_SYSTEMS = _vocab(
    "architecture architect distributed scalable scalability consensus concurrency concurrent "
    "microservices consistency replication replicated tradeoff tradeoffs"
)
_SYSTEMS_PHRASES = (
    "trade-off",
    "multi-region",
    "end-to-end",
    "lock-free",
    "fault-toleran",
    "架构",
    "分布式",
)
_ANALYSIS = _vocab(
    "analyze analyse analysis evaluate assess compare comparison optimize optimise optimization "
    "optimisation design plan strategy recommend recommendation justify justification critique "
    "implications algorithm complexity correctness risks rollback feasibility assumptions "
    "liveness recommendations investigate diagnose troubleshoot formal specification "
    "analysieren vergleichen analyser comparer analizar comparar"
)
_TASK = _vocab(
    "explain describe summarize summarise write implement fix debug refactor draft difference "
    "differences pros cons tests query erkläre erklären explique expliquer explica"
)
_TASK_PHRASES = ("how does", "how do ", "how would", "how should", "how can", "why do", "解释")
_ANALYSIS_PHRASES = ("分析", "设计", "比较")
_DEPTH_PHRASES = ("step by step", "step-by-step", "in depth", "in detail", "for each", "thorough")
_MATH = _vocab(
    "integral integrals derivative derivatives differential matrix matrices eigenvalue "
    "eigenvalues equation equations converge converges convergence polynomial probability "
    "regression"
)
_TRIVIAL = _vocab(
    "translate translation synonym antonym spell spelling joke haiku capital hi hello hey thanks "
    "thank convert bonjour hola hallo merci gracias danke traduce traduis übersetze"
)
_TRIVIAL_PHRASES = ("你好", "谢谢", "翻译", "こんにちは", "ありがとう")

# Punctuation and digits become spaces, so ``split()`` yields the words (cheaper than a regex).
_TO_SPACES = str.maketrans(
    dict.fromkeys(string.punctuation + string.digits + "¿¡«»“”\u2018\u2019…—\u2013", " ")
)
_CODE_MARKS = ("```", "\ndef ", "\nimport ", "\nclass ", "#include", "function(", ";\n", "{\n")
_MATH_CHARS = ("∫", "∑", "∏", "√", "∞", "≤", "≥", "≠")
_MATH_NOTATION = re.compile(r"\\(?:frac|int|sum|sqrt|lim)|\w''|\^\{|\b[a-z]\^\d")
# ``[^\S\n]`` (blanks, not newlines): a match never spans lines, so a run of newlines or
# spaces is scanned once, not once per line start (``\s*`` made that quadratic).
_LIST_ITEM = re.compile(r"^[^\S\n]*(?:[-*•]|\d{1,2}[.)]|\(?[a-h][.)])[^\S\n]+\S", re.MULTILINE)
# a regex search skips ahead with memchr; ``"```" in s`` is several times slower on runs of
# spaces (its skip filter confuses " " with "`")
_FENCE = re.compile("```")


def estimate_complexity(messages: Sequence[Message]) -> Complexity:
    """``simple``, ``medium`` or ``complex`` by the rules in this module's docstring."""
    ask = ""
    tokens = 0
    for m in messages:
        text = m.text
        tokens += estimate_text_tokens(text)
        if m.role == "user":
            ask = text
    if not ask:
        ask = "\n\n".join(m.text for m in messages)
    if not ask or ask.isspace():
        return "simple"
    score = _score(ask)
    if score >= 3:
        return "complex"
    if score >= 1 or tokens > _LONG_CONVERSATION_TOKENS:
        return "medium"
    return "simple"


def _score(ask: str) -> int:
    instruction = _instruction(ask)
    head = instruction.lower()
    words = set(head.translate(_TO_SPACES).split())
    # fenced code anywhere; unfenced code only where it is cheap to look (the instruction)
    has_code = _FENCE.search(ask) is not None or _found(instruction, _CODE_MARKS) > 0

    score = 0
    if words & _PROOF or _found(head, _PROOF_PHRASES):
        score += 3
    systems = len(words & _SYSTEMS) + _found(head, _SYSTEMS_PHRASES)
    score += min(2 * systems, 4)
    score += min(len(words & _ANALYSIS) + _found(head, _ANALYSIS_PHRASES), 3)
    if words & _TASK or _found(head, _TASK_PHRASES):
        score += 1
    if _found(head, _DEPTH_PHRASES):
        score += 1
    if words & _MATH:
        score += 1
    if _found(head, _MATH_CHARS) or (
        ("\\" in head or "^" in head or "''" in head) and _MATH_NOTATION.search(head)
    ):
        score += 1
    if has_code:
        score += 1
    questions = head.count("?") + head.count("\uff1f")  # full-width, as in Chinese
    score += 2 if questions >= 5 else 1 if questions >= 3 else 0
    if "\n" in head:
        items = len(_LIST_ITEM.findall(head))
        score += 2 if items >= 6 else 1 if items >= 3 else 0
    if estimate_text_tokens(ask) > _LONG_ASK_TOKENS:
        score += 1
    if not has_code and (words & _TRIVIAL or _found(head, _TRIVIAL_PHRASES)):
        score -= 1
    return score


def _found(text: str, phrases: tuple[str, ...]) -> int:
    """How many of ``phrases`` occur in ``text`` (a loop: a generator in ``any`` or ``sum``
    costs more than the short searches it runs, 3.5 of _score's 4.6 us on a short ask)."""
    n = 0
    for p in phrases:
        if p in text:
            n += 1
    return n


def _instruction(ask: str) -> str:
    """The part of the ask that is instruction rather than pasted material (see module docs)."""
    if len(ask) <= _LONG_ASK_CHARS:
        return ask
    text = ask.strip()
    first, sep, rest = text.partition("\n\n")
    if not sep:
        return text[:_PARAGRAPH_CHARS] + "\n\n" + text[-_PARAGRAPH_CHARS:]
    last = rest.rpartition("\n\n")[2]
    return first[:_PARAGRAPH_CHARS] + "\n\n" + last[-_PARAGRAPH_CHARS:]
