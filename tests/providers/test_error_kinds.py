"""Vendor error codes live in their adapters: each reads its vendor's codes into an
ErrorKind, and status_error (the one place a status becomes a class) knows no vendor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import polyroute.errors
from polyroute.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    ErrorKind,
    InternalServerError,
    OverloadedError,
    QuotaExceededError,
    RateLimitError,
    status_error,
)
from polyroute.providers._base import WireProtocol
from polyroute.providers.anthropic import AnthropicProtocol
from polyroute.providers.google import GoogleProtocol
from polyroute.providers.mistral import MistralProtocol
from polyroute.providers.ollama import OllamaProtocol
from polyroute.providers.openai import OpenAIProtocol

KEY_INFO = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
}

CASES: list[tuple[WireProtocol, int, Any, ErrorKind, type[Exception]]] = [
    (
        OpenAIProtocol(),
        429,
        {"error": {"message": "no credit", "code": "insufficient_quota"}},
        "quota",
        QuotaExceededError,
    ),
    (
        OpenAIProtocol(),
        400,
        {"error": {"message": "too long", "code": "context_length_exceeded"}},
        "context_length",
        ContextLengthError,
    ),
    (
        OpenAIProtocol(),
        400,
        {"error": {"message": "no", "type": "content_policy_violation"}},
        "content_filter",
        ContentFilterError,
    ),
    (
        AnthropicProtocol(),
        503,
        {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
        "overloaded",
        OverloadedError,
    ),
    (
        AnthropicProtocol(),
        429,
        {
            "error": {
                "type": "rate_limit_error",
                "message": "spend limit",
                "details": {"error_code": "enforced_spend_limit_reached"},
            }
        },
        "quota",
        QuotaExceededError,
    ),
    (
        GoogleProtocol(),
        400,
        {"error": {"code": 400, "message": "bad key", "details": [KEY_INFO]}},
        "authentication",
        AuthenticationError,
    ),
    (
        MistralProtocol(),
        400,
        {"object": "error", "message": "too large", "type": "invalid_request", "code": 3051},
        "context_length",
        ContextLengthError,
    ),
    (
        OllamaProtocol(),
        400,
        {"error": {"message": "too long", "code": "context_length_exceeded"}},
        "context_length",
        ContextLengthError,
    ),
]


@pytest.mark.parametrize(("protocol", "status", "body", "kind", "cls"), CASES)
def test_each_adapter_reads_its_vendors_codes(
    protocol: WireProtocol, status: int, body: Any, kind: ErrorKind, cls: type[Exception]
) -> None:
    vendor = protocol.parse_error(status, body)
    assert vendor.kind == kind
    error = status_error(status, vendor.message, kind=vendor.kind, vendor_type=vendor.vendor_type)
    assert type(error) is cls


@pytest.mark.parametrize(
    ("status", "vendor_type", "cls"),
    [
        (400, "API_KEY_INVALID", BadRequestError),
        (503, "overloaded_error", InternalServerError),
        (429, "insufficient_quota", RateLimitError),
    ],
)
def test_status_error_decides_by_status_and_kind_not_vendor_strings(
    status: int, vendor_type: str, cls: type[Exception]
) -> None:
    assert type(status_error(status, "x", vendor_type=vendor_type)) is cls


def test_errors_names_no_vendor_code() -> None:
    source = Path(polyroute.errors.__file__).read_text("utf-8")
    for code in ("overloaded_error", "API_KEY_INVALID", "insufficient_quota", "spend_limit"):
        assert code not in source
