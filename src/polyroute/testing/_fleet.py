"""A fleet: one simulator per vendor, started together, with a config that points at them."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from polyroute.testing._sim import Replier, Simulator

# provider type -> "module:Class" of its simulator
SIMULATORS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "polyroute.testing.openai:OpenAISimulator",
        "anthropic": "polyroute.testing.anthropic:AnthropicSimulator",
        "google": "polyroute.testing.google:GoogleSimulator",
        "ollama": "polyroute.testing.ollama:OllamaSimulator",
        "mistral": "polyroute.testing.mistral:MistralSimulator",
    }
)

SIM_KEY_ENV = "POLYROUTE_SIM_KEY"


def simulator_class(provider_type: str) -> type[Simulator]:
    module, _, name = SIMULATORS[provider_type].partition(":")
    cls: type[Simulator] = getattr(importlib.import_module(module), name)
    return cls


class Fleet:
    """Simulators for ``types`` (default: all five vendors), one provider id each.

    ``with Fleet() as fleet: config = fleet.config()`` gives a config whose
    providers are the simulators, keys and all.
    """

    def __init__(
        self,
        types: tuple[str, ...] = tuple(SIMULATORS),
        *,
        reply: str | Replier | None = None,
        key: str = "sim-key",
    ) -> None:
        self.key = key
        self.sims: dict[str, Simulator] = {}
        for t in types:
            cls = simulator_class(t)
            keyless = t == "ollama"
            self.sims[t] = cls(reply=reply, api_key=None if keyless else key)

    def __getitem__(self, provider_id: str) -> Simulator:
        return self.sims[provider_id]

    def start(self) -> Fleet:
        for s in self.sims.values():
            s.start()
        return self

    def stop(self) -> None:
        for s in self.sims.values():
            s.stop()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self, **sections: Any) -> dict[str, Any]:
        """A config dict (as TOML would give) with one provider per simulator."""
        providers: dict[str, Any] = {}
        for t, sim in self.sims.items():
            spec: dict[str, Any] = {
                "type": t,
                "base_url": sim.base_url,
                "models": list(sim.models),
                "default_model": sim.models[0],
            }
            if sim.api_key is not None:
                spec["api_key"] = f"env:{SIM_KEY_ENV}"
            providers[t] = spec
        return {**sections, "providers": providers}

    def env(self) -> dict[str, str]:
        return {SIM_KEY_ENV: self.key}

    def toml(self, *, price: tuple[float, float] | None = None) -> str:
        """The same config as TOML text, to write to a file for CLI tests.

        ``price``: (input, output) USD per million tokens for each simulator's first model.
        """
        lines: list[str] = []
        for pid, spec in self.settings()["providers"].items():
            lines.append(f'[providers."{pid}"]')
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in spec.items())
            lines.append("")
        if price is not None:
            for t, sim in self.sims.items():
                lines += [
                    f'[models."{sim.models[0]}"]',
                    f'provider_type = "{t}"',
                    f"input_usd_per_mtok = {price[0]}",
                    f"output_usd_per_mtok = {price[1]}",
                    "",
                ]
        return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)
