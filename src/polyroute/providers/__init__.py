"""Provider adapters: one module per wire protocol, joined to HTTP by ProviderClient.

Protocol modules are imported on first use, so a process that talks only to
Ollama never loads the Gemini translation. Other packages add provider types through
the ``polyroute.providers`` entry point (``cohere = "polyroute_cohere:CohereProtocol"``),
read only for a type no built-in has, or when types are listed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from inspect import isabstract
from types import MappingProxyType
from typing import TYPE_CHECKING

from polyroute._plugins import PROVIDERS, Plugin, installed, load
from polyroute.errors import ConfigError, PluginError
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

if TYPE_CHECKING:
    from polyroute.catalog import CatalogModel

__all__ = [
    "MB",
    "PROVIDER_TYPES",
    "ConnectionCheck",
    "HttpCall",
    "HttpPool",
    "Provider",
    "ProviderClient",
    "ProviderType",
    "Secret",
    "StreamDecoder",
    "UnsupportedError",
    "VendorError",
    "WireProtocol",
    "connect",
    "is_provider_type",
    "loads_bounded",
    "parse_retry_after",
    "plugin_catalog",
    "plugin_local_types",
    "protocol_class",
    "protocol_for",
    "provider_types",
    "unknown_type_message",
]

# type -> "module:Class"; read-only. Installed plugins add types (:func:`provider_types`).
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


@dataclass(frozen=True, slots=True)
class ProviderType:
    """A provider type as ``polyroute providers --types`` lists it."""

    name: str
    target: str
    """``"module:Class"`` of its :class:`WireProtocol`."""
    package: str | None = None
    """The distribution that declares it; ``None``: built-in."""
    version: str | None = None
    shadowed: bool = False
    """A plugin declaring a built-in's name: the built-in wins, the plugin is unused."""


def provider_types() -> list[ProviderType]:
    """Built-in types, then the installed plugins' (reads the entry points)."""
    out = [ProviderType(name, target) for name, target in PROVIDER_TYPES.items()]
    out.extend(
        ProviderType(p.name, p.value, p.package, p.version, p.name in PROVIDER_TYPES)
        for p in installed(PROVIDERS).values()
    )
    return out


def is_provider_type(name: str) -> bool:
    """Whether ``name`` is a built-in or installed type (entry points read only for the latter)."""
    return name in PROVIDER_TYPES or name in installed(PROVIDERS)


def unknown_type_message(name: str) -> str:
    plugins = sorted(n for n in installed(PROVIDERS) if n not in PROVIDER_TYPES)
    return (
        f"unknown provider type {name!r} (built-in: {', '.join(sorted(PROVIDER_TYPES))}; "
        f"installed: {', '.join(plugins) or 'none'})"
    )


def protocol_class(provider_type: str) -> type[WireProtocol]:
    """The :class:`WireProtocol` subclass of a built-in or installed type."""
    target = PROVIDER_TYPES.get(provider_type)
    if target is not None:
        module, _, cls = target.partition(":")
        builtin: type[WireProtocol] = getattr(importlib.import_module(module), cls)
        return builtin
    plugin = installed(PROVIDERS).get(provider_type)
    if plugin is None:
        raise ConfigError(unknown_type_message(provider_type))
    return _plugin_protocol(plugin)


@cache
def _plugin_protocol(plugin: Plugin) -> type[WireProtocol]:
    obj = load(plugin)
    if not (isinstance(obj, type) and issubclass(obj, WireProtocol)):
        raise PluginError(f"plugin {plugin.where}: {plugin.value!r} is not a WireProtocol subclass")
    if getattr(obj, "type", None) != plugin.name:
        raise PluginError(
            f"plugin {plugin.where}: {plugin.value}.type is "
            f"{getattr(obj, 'type', None)!r}, not the entry point's name {plugin.name!r}"
        )
    if isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise PluginError(f"plugin {plugin.where}: {plugin.value} does not implement {missing}")
    return obj


def protocol_for(provider_type: str) -> WireProtocol:
    """The wire protocol for a provider type, e.g. ``protocol_for("anthropic")``; an installed
    plugin's for a type no built-in has (a broken plugin is a :class:`PluginError`)."""
    return protocol_class(provider_type)()


def plugin_catalog(provider_types: Iterable[str]) -> list[CatalogModel]:
    """The catalog entries the plugins of these types declare (built-ins' are in
    ``models.toml``); each must be of its own type."""
    out: list[CatalogModel] = []
    for t in sorted(set(provider_types) - set(PROVIDER_TYPES)):
        cls = protocol_class(t)
        for m in cls.catalog_models:
            if m.provider_type != t:
                raise PluginError(
                    f"plugin {installed(PROVIDERS)[t].where}: catalog model {m.id!r} is of "
                    f"type {m.provider_type!r}, not {t!r}"
                )
            out.append(m)
    return out


def plugin_local_types(provider_types: Iterable[str]) -> frozenset[str]:
    """Which of these plugin types declare themselves local (``WireProtocol.local``)."""
    plugins = set(provider_types) - set(PROVIDER_TYPES)
    return frozenset(t for t in plugins if protocol_class(t).local)


def connect(provider: Provider, pool: HttpPool) -> ProviderClient:
    """A client for a configured provider over the shared pool."""
    return ProviderClient(provider, protocol_for(provider.type).for_provider(provider), pool)
