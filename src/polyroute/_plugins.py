"""Installed plugins: the ``polyroute.*`` entry points of other packages.

Nothing here runs at import. The entry points of a group are read from the installed
packages' metadata once, when a name is not built-in or when types are listed, and a
plugin's module is imported only when its name is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from polyroute.errors import PluginError

__all__ = ["PROVIDERS", "STRATEGIES", "Plugin", "installed", "load"]

PROVIDERS = "polyroute.providers"
STRATEGIES = "polyroute.strategies"


@dataclass(frozen=True, slots=True)
class Plugin:
    """One entry point: ``name = "module:attr"`` declared by ``package`` at ``version``."""

    group: str
    name: str
    value: str
    package: str
    version: str

    @property
    def where(self) -> str:
        """How an error names it: ``package 1.0 (entry point polyroute.providers: cohere)``."""
        return f"{self.package} {self.version} (entry point {self.group}: {self.name})"


@cache
def installed(group: str) -> dict[str, Plugin]:
    """The group's entry points by name (the first package wins a name two declare)."""
    from importlib.metadata import entry_points  # deferred: it imports email, zipfile, csv

    out: dict[str, Plugin] = {}
    for ep in entry_points(group=group):
        dist = ep.dist
        package = dist.name if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        out.setdefault(ep.name, Plugin(group, ep.name, ep.value, package, version))
    return out


def load(plugin: Plugin) -> object:
    """Import the plugin's object; any failure is a :class:`PluginError` naming it."""
    module_name, _, attr = plugin.value.partition(":")
    try:
        obj: object = importlib.import_module(module_name.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
    except Exception as exc:  # any import-time failure of third-party code
        raise PluginError(
            f"plugin {plugin.where} = {plugin.value!r} cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return obj
