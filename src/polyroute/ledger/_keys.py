"""Gateway virtual keys as plain values, and their secrets (no SQL here).

A secret is ``sk-pr-`` and 32 random bytes (256 bits, URL-safe base64). The
ledger stores only its SHA-256, as hex. A fast, unsalted hash is right for
these, though it would be wrong for passwords: slow salted hashes (scrypt,
argon2) exist because people pick guessable passwords, so every guess must
be made expensive and precomputed tables useless. Nobody guesses 256 random
bits at any speed, and no table covers that space, so slowness and salt
would buy nothing; a deterministic hash lets the gateway find a request's key
with one indexed lookup, in a microsecond rather than tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polyroute.ledger._records import check_usd

SECRET_PREFIX = "sk-pr-"
PREFIX_CHARS = 12
"""How much of a secret lists show: ``sk-pr-`` and 6 random characters (36 of its 256 bits)."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_id() -> str:
    """``vk_`` and 10 hex characters: short enough to type, random enough not to guess at."""
    return "vk_" + secrets.token_hex(5)


def looks_like_secret(value: str) -> bool:
    """Shaped like one of our secrets: anything else is refused without a database trip."""
    return value.startswith(SECRET_PREFIX) and len(value) > PREFIX_CHARS


def clean_key_args(
    name: str,
    daily_usd: float | None,
    monthly_usd: float | None,
    models: Iterable[str],
    rpm: int | None = None,
    tpm: int | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Check :meth:`Ledger.create_key`'s arguments: the stripped name and the models, deduplicated.

    Raises :class:`ValueError` (or :class:`TypeError` for one model name given as a string).
    """
    name = name.strip()
    if not name:
        raise ValueError("a virtual key needs a name")
    for label, value in (("daily_usd", daily_usd), ("monthly_usd", monthly_usd)):
        if value is not None:
            check_usd(label, value)
    for label, rate in (("rpm", rpm), ("tpm", tpm)):
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            raise ValueError(f"{label} is a whole number from 1 up (leave it out for no limit)")
    if isinstance(models, str):  # a str is an iterable of one-letter "models"
        raise TypeError(f"models is a list of model names, not one string: [{models!r}]")
    cleaned = tuple(dict.fromkeys(m.strip() for m in models))
    if "" in cleaned:
        raise ValueError("a model name cannot be empty")
    return name, cleaned


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A gateway key: who holds it, what it may call, what it may spend. Never the secret."""

    id: str
    name: str
    prefix: str
    """The secret's first characters, to recognise a key in a list."""
    models: tuple[str, ...]
    """The models it may call, exactly as requested; empty: any."""
    created_at: datetime
    revoked_at: datetime | None = None
    daily_usd: float | None = None
    """Its budget (scope ``key:<id>``); ``None`` is no limit."""
    monthly_usd: float | None = None
    rpm: int | None = None
    """Its rate limits (requests, tokens a minute: limits/); ``None`` is no limit."""
    tpm: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "models": list(self.models),
            "daily_usd": self.daily_usd,
            "monthly_usd": self.monthly_usd,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "revoked_at": None
            if self.revoked_at is None
            else self.revoked_at.isoformat(timespec="seconds"),
            "active": self.active,
        }


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
