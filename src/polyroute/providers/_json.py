"""JSON from callers and upstreams, parsed with a nesting limit.

The stdlib parser recurses once per nesting level, so ``"[" * 5000`` ends in a
``RecursionError`` (and anything that later walks a parsed value recursively,
such as the encoder, hits the limit sooner). :func:`loads_bounded` refuses nesting
deeper than :data:`MAX_DEPTH` before parsing, with a linear pre-scan that costs
two ``str.count`` calls for ordinary JSON.

msgspec parses (a quarter of the stdlib's cost on our bodies, ``bench/json_codecs.py``);
what it refuses and the stdlib accepts (``NaN``, lone surrogate escapes, numbers past a
double, UTF-16 bytes) goes to the stdlib, so what parses, and to what, is the stdlib's.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import msgspec

from polyroute.errors import JSONTooDeepError

_decode = msgspec.json.decode

MAX_DEPTH = 100
"""Deepest nesting of arrays and objects parsed; far below the interpreter's recursion limit."""

# A JSON string (its brackets do not nest), and runs of anything but brackets.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRING_B = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OTHER = re.compile(r"[^\[\]{}]+")
_OTHER_B = re.compile(rb"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_STEP_B = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def depth_exceeds(text: str | bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether ``text`` nests arrays and objects deeper than ``max_depth`` (linear time)."""
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= max_depth:
            return False
        steps = map(_STEP.__getitem__, _OTHER.sub("", _STRING.sub("", text)))
    else:
        if text.count(b"[") + text.count(b"{") <= max_depth:
            return False
        steps = map(_STEP_B.__getitem__, _OTHER_B.sub(b"", _STRING_B.sub(b"", text)))
    return max(accumulate(steps), default=0) > max_depth


def loads_bounded(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(text)``, refusing nesting deeper than ``max_depth``.

    Raises :class:`JSONTooDeepError` for too deep a text (a caller's fault: callers
    parsing an upstream's answer turn it into an ``InvalidResponseError``), and
    ``ValueError`` for text that is not JSON, as ``json.loads`` does.
    """
    if depth_exceeds(text, max_depth):
        raise JSONTooDeepError(f"JSON nested deeper than {max_depth} levels")
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def dumps_ascii(value: list[Any] | dict[str, Any], nulls: int) -> bytes | None:
    """``value`` as msgspec writes it (a sixth to a tenth of the stdlib's cost), where that
    reads the same as ``json.dumps`` with its default ``ensure_ascii``: ASCII out (no raw
    U+2028 for ``splitlines`` to cut a line at), and no ``null`` beyond the ``nulls`` ``None``
    values in it (msgspec writes a NaN or infinity as ``null``). ``None``: write it with
    the stdlib (and for a lone surrogate, which msgspec refuses and the stdlib escapes)."""
    try:
        line = msgspec.json.encode(value)
    except UnicodeEncodeError:
        return None
    return line if line.isascii() and line.count(b"null") == nulls else None
