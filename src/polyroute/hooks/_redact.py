"""The built-in ``redact`` hook: e-mail addresses, phone numbers and secret-looking tokens
are masked (``[REDACTED:email]``...) in what leaves, and optionally in answers.

Patterns err towards precision: a version, a date, an IP address, a price or a commit
hash is left alone. A phone number needs a leading ``+`` (8 to 15 digits) or the shape of a
national number (9 to 12 digits in groups, not a date, not thousands grouping).
"""

from __future__ import annotations

import re
from dataclasses import replace

from polyroute.hooks._hook import Hook, HookContext, StreamFilter
from polyroute.types import ChatRequest, ChatResponse, EmbeddingRequest, Message, TextPart

__all__ = ["RedactHook", "redact_text"]

# every repeat is bounded, and a block's scan stops at the next BEGIN: linear time on any text
_PEM = (
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:(?!-----BEGIN )[\s\S]){0,16384}?"
    r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
)
_SECRETS: tuple[tuple[str, str], ...] = (
    ("private_key", _PEM),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{16,1024}"),
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,255}"),
    (
        "openai_key",
        r"\bsk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_-]{0,255}\d)[A-Za-z0-9_-]{20,255}",
    ),
    ("stripe_key", r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,255}"),
    ("aws_key", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
    ("google_key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,255}"),
)
_EMAIL = r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
# a value assigned to a secret-sounding name: its value is masked, the name kept
_SECRET_NAME = (
    r"\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|client[_-]?secret|token|"
    r"password|passwd|auth[_-]?token)\b"
)
_ASSIGNED = re.compile(rf"(?i)({_SECRET_NAME}[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9_+/=.~-]{{16,255}})")
_PHONE = (
    r"(?<![\w.+/-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,14}(?:[ .-]\d{1,8}){0,6}"
    r"(?![\w]|[.:/,-]\d)"
)
_ALL = re.compile(
    "|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _SECRETS)
    + f"|(?P<email>{_EMAIL})|(?P<phone>{_PHONE})"
)
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _is_phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    if text.startswith("+"):
        return 8 <= digits <= 15
    if not 9 <= digits <= 12 or _DATE.search(text):
        return False
    groups = re.findall(r"\d+", text.replace("(", "").replace(")", ""))
    if len(groups) == 1:  # an unbroken run of digits: an id, a timestamp, an amount
        return False
    if "." in text and not re.fullmatch(r"\d{3}\.\d{3}\.\d{4}", text):
        return False  # dotted: a version or an address, unless the North American shape
    return not (len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]))  # 123 456 789


def _masked(m: re.Match[str]) -> str:
    kind = m.lastgroup or "secret"
    if kind == "phone" and not _is_phone(m.group()):
        return m.group()
    return f"[REDACTED:{kind}]"


def _high_entropy(value: str) -> bool:
    return (
        any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and len(set(value)) >= 10
        and not _DATE.fullmatch(value)
    )


def redact_text(text: str) -> str:
    """``text`` with every e-mail address, phone number and secret-looking token masked."""
    text = _ALL.sub(_masked, text)
    return _ASSIGNED.sub(
        lambda m: m.group(1) + "[REDACTED:secret]" if _high_entropy(m.group(2)) else m.group(),
        text,
    )


def _message(m: Message) -> Message:
    if isinstance(m.content, str):
        content: str | tuple[object, ...] = redact_text(m.content)
    else:  # images and documents go as they are; thinking keeps its vendor signature
        content = tuple(
            replace(p, text=redact_text(p.text)) if isinstance(p, TextPart) else p
            for p in m.content
        )
    calls = tuple(replace(c, arguments=redact_text(c.arguments)) for c in m.tool_calls)
    return replace(m, content=content, tool_calls=calls)  # type: ignore[arg-type]


# the end of a buffer that may still grow into something to mask: a private key block not
# yet closed; else, within the last _MAX_HELD characters, a secret's name and what follows
# it, a phone-shaped run, or a word
_OPEN_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"(?:(?!-----(?:END [A-Z0-9 ]*PRIVATE KEY-----|BEGIN ))[\s\S])*\Z"
)
_OPEN_TAIL = re.compile(
    rf"(?i:{_SECRET_NAME}[\"']?\s*[:=]?\s*[\"']?\S*\Z)|(?:\+|\()?\d[\d ().-]*\Z|\S+\Z"
)
_PEM_BLOCK = re.compile(_PEM)
_MAX_HELD = 256
"""Text without a space (CJK, long code lines) is passed on past this, not held to the end;
the tail is searched for only this far back, so a long chunk costs linear time."""
_MAX_HELD_PEM = 16384


def _cut(buffer: str) -> int:
    """Where the part of ``buffer`` that can be passed on now ends."""
    pem = _OPEN_PEM.search(buffer)
    if pem is not None and len(buffer) - pem.start() <= _MAX_HELD_PEM:
        return pem.start()
    window = max(0, len(buffer) - _MAX_HELD)
    tail = _OPEN_TAIL.search(buffer, window)
    if tail is None or (window and tail.start() == window):  # none, or longer than held
        return len(buffer)
    cut = tail.start()
    for block in _PEM_BLOCK.finditer(buffer):  # a closed block goes whole
        if block.start() < cut < block.end():
            cut = block.end()
    return cut


class _StreamRedactor:
    """Masks a streamed answer: text that may be the start of something to mask is held
    until the next piece shows where it ends (a secret split across pieces is masked)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    async def chunk(self, text: str) -> str:
        buffer = self._held + text
        cut = _cut(buffer)
        self._held = buffer[cut:]
        return redact_text(buffer[:cut]) if cut else ""

    async def end(self) -> str:
        held, self._held = self._held, ""
        return redact_text(held)


class RedactHook(Hook):
    """Masks personal data and secrets in every chat message (tool calls and results
    included) and embeddings input before it leaves; with ``responses``, in answers too."""

    name = "redact"

    def __init__(self, *, responses: bool = False) -> None:
        self.responses = responses

    async def pre_request(self, request: ChatRequest, ctx: HookContext) -> ChatRequest:
        return replace(request, messages=tuple(_message(m) for m in request.messages))

    async def pre_embed(self, request: EmbeddingRequest, ctx: HookContext) -> EmbeddingRequest:
        inputs = request.inputs
        if not inputs or not isinstance(inputs[0], str):  # token ids: nothing readable
            return request
        return replace(request, inputs=[redact_text(t) for t in inputs if isinstance(t, str)])

    async def post_response(self, response: ChatResponse, ctx: HookContext) -> ChatResponse:
        if not self.responses:
            return response
        calls = tuple(replace(c, arguments=redact_text(c.arguments)) for c in response.tool_calls)
        return replace(response, content=redact_text(response.content), tool_calls=calls)

    def stream_filter(self, ctx: HookContext) -> StreamFilter | None:
        return _StreamRedactor() if self.responses else None
