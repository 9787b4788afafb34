"""Which providers cannot carry what a request asks (DESIGN.md §9).

A field a vendor has no equivalent for (``n`` on Anthropic, a document on Ollama,
``seed`` or ``presence_penalty`` on Anthropic, ``top_k`` on OpenAI...) is refused by that vendor's adapter, by name,
before any call. Routing asks the adapters first, so such pairs are excluded with
that reason instead of being tried and refused one by one: ``auto`` goes where the
request can be honoured, and a pin to a vendor that cannot is a 400 naming the field.

Only requests that set one of the fields some vendor refuses are asked about: a
plain request costs one look at its fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from polyroute.config import ProviderConfig
from polyroute.errors import ProviderError
from polyroute.providers import protocol_for
from polyroute.types import ChatRequest, DocumentPart, Message


def _asks_more(request: ChatRequest) -> bool:
    """Whether ``request`` sets a field some vendor has no equivalent for."""
    return (
        request.n > 1
        or request.logprobs
        or request.top_logprobs is not None
        or request.seed is not None
        or request.metadata is not None
        or bool(request.store)
        or request.service_tier is not None
        or request.parallel_tool_calls is False
        or request.presence_penalty is not None
        or request.frequency_penalty is not None
        or request.top_k is not None
        or request.logit_bias is not None
        or _has_document(request.messages)
    )


def _has_document(messages: Sequence[Message]) -> bool:
    for m in messages:  # a loop: a text message, the usual kind, makes no generator
        if not isinstance(m.content, str) and any(isinstance(p, DocumentPart) for p in m.content):
            return True
    return False


def refusals(
    request: ChatRequest, providers: Mapping[str, ProviderConfig], *, stream: bool
) -> dict[str, str]:
    """``{provider id: why its adapter refuses request}`` for the enabled providers that
    cannot carry a field ``request`` sets (each vendor type asked once)."""
    if not _asks_more(request):
        return {}
    by_type: dict[str, str | None] = {}
    out: dict[str, str] = {}
    for pid, spec in providers.items():
        if not spec.enabled:
            continue
        if spec.type not in by_type:
            by_type[spec.type] = _refusal(spec.type, request, stream)
        why = by_type[spec.type]
        if why is not None:
            out[pid] = why
    return out


def _refusal(provider_type: str, request: ChatRequest, stream: bool) -> str | None:
    """Why the adapter refuses ``request`` before any call (UnsupportedError, or a request it
    cannot translate, such as tool arguments that are not an object for Anthropic)."""
    try:
        protocol_for(provider_type).chat(request, stream=stream)
    except ProviderError as exc:
        return str(exc)
    return None
