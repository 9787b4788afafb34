"""Model names and what providers serve: the one place ``"provider-id/model"`` is parsed.

A model name is data (DESIGN.md §2). :func:`check_model` admits plain model ids only:
printable ASCII segments of letters, digits and ``._:@+=,~-``, joined by single ``/`` (some
vendors' ids have them: ``google/tunedModels/x``, ``meta-llama/Llama-3.3-70B``), none of
them ``.`` or ``..``, at most :data:`MAX_MODEL_CHARS` long. Anything else (a path climbing
with ``..``, ``?``, ``#``, ``%``, spaces, control characters) is an
:class:`~polyroute.errors.InvalidModelError` before any call.

A provider's ``models`` is its allow-list. An entry with ``*``, ``?`` or ``[`` is a
pattern (``fnmatch``, case-sensitive): ``"gpt-5*"``, or ``"*"`` to pass any name
through (an aggregator whose catalogue changes daily). A pin to a model no entry lists
is an :class:`~polyroute.errors.UnknownModelError`. For routing, a pattern stands for the
catalog's models of the provider's type that match it.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from fnmatch import fnmatchcase

from polyroute.catalog import Catalog
from polyroute.config import Config, ProviderConfig
from polyroute.errors import ConfigError, InvalidModelError, UnknownModelError
from polyroute.types import Target

MAX_MODEL_CHARS = 256
_SEGMENT = re.compile(r"[A-Za-z0-9._:@+=,~-]+")
_PATTERN = re.compile(r"[*?\[]")


def check_model(model: str) -> str:
    """``model`` if it is a plain model id (see module docs), else raise."""
    if not model:
        raise InvalidModelError(model, "it is empty")
    if len(model) > MAX_MODEL_CHARS:
        raise InvalidModelError(model, f"it is longer than {MAX_MODEL_CHARS} characters")
    for segment in model.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidModelError(model, "empty, '.' and '..' path segments are refused")
        if not _SEGMENT.fullmatch(segment):
            bad = next(c for c in segment if not _SEGMENT.fullmatch(c))
            raise InvalidModelError(model, f"{bad!r} is not allowed in a model id")
    return model


def is_pattern(entry: str) -> bool:
    return _PATTERN.search(entry) is not None


def lists(entries: Sequence[str], model: str) -> bool:
    """Whether a ``models`` list names ``model``, literally or by a pattern."""
    return any(model == e or (is_pattern(e) and fnmatchcase(model, e)) for e in entries)


def split_pin(name: str, providers: Container[str]) -> tuple[str, str] | None:
    """``"provider-id/model"`` as ``(provider id, model)`` when the first segment is a
    configured provider (the model checked by :func:`check_model`); ``"provider-id"`` alone
    as ``(provider id, "")``; else ``None``: a bare model name (which may contain ``/``)."""
    if name in providers:
        return name, ""
    pid, slash, model = name.partition("/")
    if not slash or pid not in providers:
        return None
    return pid, check_model(model)


def models_of(spec: ProviderConfig, catalog: Catalog) -> list[str]:
    """What a provider serves as configured: its ``models`` (patterns included), else the
    catalog's chat models of its type."""
    if spec.models:
        return list(spec.models)
    return [m.id for m in catalog.for_type(spec.type) if "chat" in m.capabilities]


def candidate_models(spec: ProviderConfig, catalog: Catalog) -> list[str]:
    """The models routing may choose on a provider: its literal ``models``, and the catalog's
    models of its type that a pattern matches (else the catalog's, plus ``default_model``);
    those the catalog knows cannot chat (embeddings) are left out."""
    names: list[str] = []
    if spec.models:
        patterns = [e for e in spec.models if is_pattern(e)]
        names = [e for e in spec.models if not is_pattern(e)]
        if patterns:
            names += [m.id for m in catalog.for_type(spec.type) if lists(patterns, m.id)]
    else:
        names = [m.id for m in catalog.for_type(spec.type) if "chat" in m.capabilities]
    if spec.default_model:
        names.append(spec.default_model)
    names = list(dict.fromkeys(names))
    return [m for m in names if "chat" in catalog.get(spec.type, m).capabilities]


def check_pin(spec: ProviderConfig, catalog: Catalog, pid: str, model: str) -> None:
    """Raise unless provider ``pid`` lists ``model`` (see module docs)."""
    check_model(model)
    if not lists(spec.models or models_of(spec, catalog), model) and model != spec.default_model:
        raise UnknownModelError(pid, model)


def split_setting(config: Config, name: str, where: str) -> tuple[str, str]:
    """:func:`split_pin` for a setting or option that must name a configured provider
    (``where`` names it in the :class:`ConfigError` if it does not)."""
    providers = config.settings.providers
    split = split_pin(name, providers)
    if split is None:
        pid = name.partition("/")[0]
        known = ", ".join(providers) or "none"
        raise ConfigError(f"{config.source}: {where}: no provider {pid!r} (configured: {known})")
    return split


def resolve_target(config: Config, catalog: Catalog, name: str, where: str) -> Target:
    """A chat target from ``"provider-id"`` (its default model, else its first chat model)
    or ``"provider-id/model"``; ``where`` names the setting for a config error."""
    pid, model = split_setting(config, name, where)
    if not model:
        spec = config.settings.providers[pid]
        model = spec.default_model or next(iter(candidate_models(spec, catalog)), "")
    if not model:
        raise ConfigError(
            f"{config.source}: {where}: provider {pid!r} has no default_model and no chat "
            "models; name one as 'provider-id/model'"
        )
    return Target(pid, model)


def embedding_targets(
    config: Config, catalog: Catalog, model: str, provider: str | None = None
) -> list[Target]:
    """Where ``model`` can embed: ``provider`` if given (when it lists the model), else each
    enabled provider that lists it in ``models`` (or, listing none, whose type the catalog
    says embeds with it), in config order."""
    check_model(model)
    providers = config.settings.providers
    if provider is not None:
        spec = providers[provider]
        if spec.models and not lists(spec.models, model):
            raise UnknownModelError(provider, model)
        return [Target(provider, model)]
    out = []
    for pid in config.enabled():
        spec = providers[pid]
        if spec.models:
            serves = lists(spec.models, model)
        else:
            entry = catalog.get(spec.type, model)
            serves = entry.known and "embeddings" in entry.capabilities
        if serves:
            out.append(Target(pid, model))
    return out
