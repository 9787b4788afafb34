"""Provider adapters: one module per wire protocol, joined to HTTP by ProviderClient.

Protocol modules are imported on first use, so a process that talks only to
Ollama never loads the Gemini translation.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType

from polyroute.errors import ConfigError
from polyroute.providers._base import (
    MB,
    HttpCall,
    Provider,
    Secret,
    StreamDecoder,
    UnsupportedError,
    VendorError,
    WireProtocol,
)
from polyroute.providers._client import ConnectionCheck, ProviderClient
from polyroute.providers._http import HttpPool, parse_retry_after
from polyroute.providers._json import loads_bounded

__all__ = [
    "MB",
    "PROVIDER_TYPES",
    "ConnectionCheck",
    "HttpCall",
    "HttpPool",
    "Provider",
    "ProviderClient",
    "Secret",
    "StreamDecoder",
    "UnsupportedError",
    "VendorError",
    "WireProtocol",
    "connect",
    "loads_bounded",
    "parse_retry_after",
    "protocol_for",
]

# type -> "module:Class"; read-only.
PROVIDER_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "openai": "polyroute.providers.openai:OpenAIProtocol",
        "openai-compatible": "polyroute.providers.openai:OpenAICompatibleProtocol",
        "anthropic": "polyroute.providers.anthropic:AnthropicProtocol",
        "google": "polyroute.providers.google:GoogleProtocol",
        "ollama": "polyroute.providers.ollama:OllamaProtocol",
        "mistral": "polyroute.providers.mistral:MistralProtocol",
    }
)

# Local servers: free by declaration, and no key needed.
LOCAL_TYPES: frozenset[str] = frozenset({"ollama"})


def protocol_for(provider_type: str) -> WireProtocol:
    """The wire protocol for a provider type, e.g. ``protocol_for("anthropic")``."""
    target = PROVIDER_TYPES.get(provider_type)
    if target is None:
        known = ", ".join(sorted(PROVIDER_TYPES))
        raise ConfigError(f"unknown provider type {provider_type!r} (known: {known})")
    module, _, cls = target.partition(":")
    protocol: WireProtocol = getattr(importlib.import_module(module), cls)()
    return protocol


def connect(provider: Provider, pool: HttpPool) -> ProviderClient:
    """A client for a configured provider over the shared pool."""
    return ProviderClient(provider, protocol_for(provider.type).for_provider(provider), pool)
