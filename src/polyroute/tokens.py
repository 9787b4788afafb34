"""Token counts without a tokenizer: one counting rule, read two ways.

Every count walks the same things (each message's text plus a few tokens of
framing, each image, each tool's name, description and schema; each
embeddings input) and divides their size by a rate. BPE tokenizers average
about 4 bytes a token on English and 3 on most other text, so:

- :func:`estimate_text_tokens`, :func:`estimate_prompt_tokens`,
  :func:`estimate_output_tokens`: a best guess,
  4 characters a token. Routing uses it (the cost a decision estimates, whether
  a prompt fits a context window): a pessimistic count there would turn away
  models that the prompt fits.
- :func:`prompt_token_bound`, :func:`embedding_token_bound`: an upper bound,
  3 UTF-8 bytes a token and more framing. Budget reservations use it: a
  reservation must never be below what the call can bill.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from polyroute.types import ChatRequest, EmbeddingRequest, ImagePart, Message, ThinkingPart, Tool

IMAGE_TOKENS = 1600
"""An image's input tokens, at most, for the vendors we speak (Claude caps near 1,600)."""


@dataclass(frozen=True, slots=True)
class _Rate:
    per_token: int
    """Characters (``utf8=False``) or UTF-8 bytes (``utf8=True``) a token."""
    utf8: bool
    message: int
    """Framing tokens per message and per tool."""

    def text(self, text: str) -> int:
        return self.size(len(text.encode()) if self.utf8 else len(text))

    def size(self, size: int) -> int:
        return math.ceil(size / self.per_token)


_GUESS = _Rate(per_token=4, utf8=False, message=4)
_BOUND = _Rate(per_token=3, utf8=True, message=8)
_BOUND_INPUT = 2
"""The upper bound's framing per embeddings input."""

BOUND_BYTES_PER_TOKEN = _BOUND.per_token
"""The upper bound's rate: text of ``n`` tokens at most is ``n x`` this many bytes."""
BOUND_MESSAGE_TOKENS = _BOUND.message
"""The upper bound's framing per message."""


def _prompt(rate: _Rate, messages: Sequence[Message], tools: Sequence[Tool]) -> int:
    total = 0
    for m in messages:
        if isinstance(m.content, str):  # most messages: no parts to walk
            total += rate.text(m.content) + rate.message
            continue
        total += IMAGE_TOKENS * sum(isinstance(p, ImagePart) for p in m.parts)
        # thinking sent back (Anthropic tool loops) is read as input
        total += sum(rate.text(p.text) for p in m.parts if isinstance(p, ThinkingPart))
        total += rate.text(m.text) + rate.message
    for tool in tools:
        total += rate.text(tool.name + tool.description + json.dumps(tool.parameters))
        total += rate.message
    return total


def estimate_text_tokens(text: str) -> int:
    """A best guess of ``text``'s tokens (4 characters a token)."""
    return _GUESS.text(text)


def estimate_output_tokens(chars: int) -> int:
    """A best guess of the tokens generated for ``chars`` characters of output (what a
    stream cut short delivered, and is billed for)."""
    return _GUESS.size(chars)


def estimate_prompt_tokens(messages: Sequence[Message], tools: Sequence[Tool] = ()) -> int:
    """A best guess of a prompt's input tokens, for routing."""
    return _prompt(_GUESS, messages, tools)


def prompt_token_bound(request: ChatRequest) -> int:
    """An upper bound of a request's input tokens, for budget reservations."""
    return _prompt(_BOUND, request.messages, request.tools)


def embedding_token_bound(request: EmbeddingRequest) -> int:
    """An upper bound of an embeddings call's input tokens (token-id inputs: exact)."""
    return sum(
        (_BOUND.text(t) if isinstance(t, str) else len(t)) + _BOUND_INPUT for t in request.inputs
    )
