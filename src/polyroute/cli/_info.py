"""Read commands: ``models``, ``providers``, ``health``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from polyroute.cli._common import (
    EXIT_FAILURE,
    EXIT_NO_PROVIDER,
    common_options,
    emit_json,
    json_option,
    run,
    state,
    table,
    usd,
)

if TYPE_CHECKING:
    from polyroute.catalog import CatalogModel


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


@click.command()
@click.option("--type", "provider_type", metavar="TYPE", help="Only models of this provider type.")
@json_option
@common_options
def models(provider_type: str | None, as_json: bool) -> None:
    """The model catalog as this config sees it, with prices (USD per million tokens)."""
    config_path = state().config

    async def main() -> int:
        from polyroute.config import load

        config = load(config_path)
        catalog = config.catalog()
        entries = {(m.provider_type, m.id): m for m in catalog.all()}
        for spec in config.settings.providers.values():  # models providers list, known or not
            for mid in spec.models:
                entries.setdefault((spec.type, mid), catalog.get(spec.type, mid))
        rows = sorted(
            (m for m in entries.values() if provider_type in (None, m.provider_type)),
            key=lambda m: (m.provider_type, m.id),
        )
        if as_json:
            emit_json([_model_json(m) for m in rows])
            return 0
        table(
            None,
            [
                "type",
                "model",
                "context",
                "max out",
                "capabilities",
                "quality",
                "in $/M",
                "out $/M",
                "cached $/M",
                "price from",
            ],
            [
                [
                    m.provider_type,
                    m.id,
                    f"{m.context_window:,}" if m.context_window else "-",
                    f"{m.max_output_tokens:,}" if m.max_output_tokens else "-",
                    ",".join(sorted(m.capabilities)),
                    f"{m.quality:.2f}" if m.quality is not None else "-",
                    _rate(m.price.input if m.price else None),
                    _rate(m.price.output if m.price else None),
                    _rate(m.price.cached_input if m.price else None),
                    m.price.source if m.price else "UNPRICED",
                ]
                for m in rows
            ],
        )
        return 0

    run(main)


def _model_json(m: CatalogModel) -> dict[str, Any]:
    p = m.price
    return {
        "provider_type": m.provider_type,
        "model": m.id,
        "context_window": m.context_window,
        "max_output_tokens": m.max_output_tokens,
        "capabilities": sorted(m.capabilities),
        "quality": m.quality,
        "priced": p is not None,
        "input_usd_per_mtok": p.input if p else None,
        "output_usd_per_mtok": p.output if p else None,
        "cached_input_usd_per_mtok": p.cached_input if p else None,
        "cache_write_usd_per_mtok": p.cache_write if p else None,
        "cache_write_1h_usd_per_mtok": p.cache_write_1h if p else None,
        "price_source": p.source if p else None,
        "known": m.known,
    }


@click.command()
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Probe each enabled provider now for the health column.",
)
@click.option(
    "--types",
    "list_types",
    is_flag=True,
    help="The provider types installed instead (built-in and plugins), then the strategies.",
)
@json_option
@common_options
def providers(check: bool, list_types: bool, as_json: bool) -> None:
    """Configured providers: endpoint, models, key, health, breaker, budget left."""
    if list_types:
        _types(as_json)
        return
    config_path = state().config

    async def main() -> int:
        from polyroute.client import Polyroute
        from polyroute.config import load
        from polyroute.providers import protocol_for

        config = load(config_path)
        async with Polyroute(config) as pr:
            budgets = {b.scope: b for b in await pr.budgets()} if config.settings.providers else {}
            probes = {h.provider: h for h in await pr.health(timeout_s=5.0)} if check else {}
            out: list[dict[str, Any]] = []
            for pid, spec in config.settings.providers.items():
                b = budgets.get(f"provider:{pid}")
                out.append(
                    {
                        "id": pid,
                        "type": spec.type,
                        "base_url": spec.base_url or protocol_for(spec.type).default_base_url,
                        "enabled": spec.enabled,
                        "key": config.key_status(pid),
                        "default_model": spec.default_model,
                        "models": pr.models_of(pid),
                        "budget": None if b is None or b.limits.empty else b.as_dict(),
                        "health": probes[pid].as_dict() if pid in probes else None,
                        "breaker": pr.breakers.get(pid).as_dict(),
                    }
                )
        if as_json:
            emit_json({"source": config.source, "providers": out})
            return 0
        if not out:
            click.echo(f"no providers configured ({config.source})")
            return 0
        table(
            f"providers ({config.source})",
            [
                "id",
                "type",
                "base url",
                "enabled",
                "key",
                "default model",
                "models",
                "health",
                "breaker",
                "budget left",
            ],
            [
                [
                    p["id"],
                    p["type"],
                    p["base_url"],
                    "yes" if p["enabled"] else "no",
                    p["key"],
                    p["default_model"] or "-",
                    str(len(p["models"])),
                    _health(p["health"]),
                    p["breaker"]["state"],
                    _budget_left(p["budget"]),
                ]
                for p in out
            ],
        )
        return 0

    run(main)


def _types(as_json: bool) -> None:
    """``providers --types``: what this installation can be configured with, no config read."""
    from polyroute._plugins import STRATEGIES, installed
    from polyroute.errors import PluginError
    from polyroute.providers import protocol_class, provider_types
    from polyroute.router.context import BUILTIN_STRATEGIES

    types: list[dict[str, Any]] = []
    for t in provider_types():
        row: dict[str, Any] = {
            "name": t.name,
            "source": t.package or "built-in",
            "version": t.version,
            "target": t.target,
            "base_url": None,
            "error": None,
        }
        if t.shadowed:
            row["error"] = f"ignored: the built-in type {t.name!r} has this name"
        else:
            try:
                row["base_url"] = protocol_class(t.name).default_base_url
            except PluginError as exc:  # listed, not fatal: the listing is how one finds it
                row["error"] = str(exc)
        types.append(row)
    strategies: list[dict[str, Any]] = [
        {"name": n, "source": "built-in", "version": None, "target": None}
        for n in BUILTIN_STRATEGIES
    ]
    strategies += [
        {"name": p.name, "source": p.package, "version": p.version, "target": p.value}
        for p in installed(STRATEGIES).values()
        if p.name not in BUILTIN_STRATEGIES
    ]
    if as_json:
        emit_json({"types": types, "strategies": strategies})
        return
    table(
        "provider types",
        ["type", "from", "base url"],
        [
            [
                t["name"],
                t["source"] if t["version"] is None else f"{t['source']} {t['version']}",
                f"BROKEN: {t['error']}" if t["error"] else t["base_url"] or "(set base_url)",
            ]
            for t in types
        ],
    )
    table(
        "strategies",
        ["strategy", "from", "class"],
        [
            [
                s["name"],
                s["source"] if s["version"] is None else f"{s['source']} {s['version']}",
                s["target"] or "-",
            ]
            for s in strategies
        ],
    )


def _health(probe: dict[str, Any] | None) -> str:
    if probe is None:
        return "-"
    if probe["ok"]:
        return f"ok, {probe['latency_ms']:.0f} ms"
    return f"FAIL ({probe['error_type']})"


def _budget_left(budget: dict[str, Any] | None) -> str:
    """What is left of each limited period: ``$4.20 today, $150.00 this month``."""
    if budget is None:
        return "-"
    parts = [
        f"{usd(budget[k]['left_usd'], 2)} {when}"
        for k, when in (("daily", "today"), ("monthly", "this month"))
        if budget[k]["limit_usd"] is not None
    ]
    return ", ".join(parts)


@click.command()
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds per provider.",
)
@json_option
@common_options
def health(timeout_s: float, as_json: bool) -> None:
    """Check every enabled provider now (an authenticated model listing)."""
    config_path = state().config

    async def main() -> int:
        from polyroute.client import Polyroute
        from polyroute.config import load

        async with Polyroute(load(config_path)) as pr:
            checks = await pr.health(timeout_s=timeout_s)
        if as_json:
            emit_json(
                [
                    {
                        "provider": c.provider,
                        "ok": c.ok,
                        "latency_ms": round(c.latency_ms, 1),
                        "models": c.models,
                        "error": c.error,
                        "error_type": c.error_type,
                    }
                    for c in checks
                ]
            )
        else:
            table(
                None,
                ["provider", "status", "latency", "models", "error"],
                [
                    [
                        c.provider,
                        "ok" if c.ok else "FAIL",
                        f"{c.latency_ms:.0f} ms",
                        str(c.models),
                        c.error or "",
                    ]
                    for c in checks
                ],
            )
        if not checks or all(c.ok for c in checks):
            return 0
        return EXIT_NO_PROVIDER if not any(c.ok for c in checks) else EXIT_FAILURE

    run(main)


__all__ = ["health", "models", "providers", "usd"]
