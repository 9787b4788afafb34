"""``polyroute keys``: the gateway's virtual keys (``create``, ``list``, ``revoke``).

A key's secret is printed once, by ``create``: the ledger keeps only its hash,
so a lost secret is replaced (revoke the key, create another), never recovered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from polyroute.cli._common import (
    common_options,
    emit_json,
    json_option,
    limit_text,
    run,
    state,
    table,
    usd,
    usd_amount,
)

if TYPE_CHECKING:
    from polyroute.ledger import Ledger, VirtualKey
    from polyroute.shared import KeyChange


@click.group()
@common_options
def keys() -> None:
    """Virtual keys for the gateway, each with its own budget and allowed models.

    Secrets are stored hashed: `keys create` shows one once, and nothing shows it again.
    """


def _name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("cannot be empty")
    return value.strip()


def _usd(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    return None if value is None else usd_amount(value)


def _models(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    models = tuple(m.strip() for m in value.split(",") if m.strip())
    if not models:
        raise click.BadParameter("name at least one model, or leave --models out for any model")
    return models


def _ledger(config_path: str | None) -> Ledger:
    from polyroute.config import load
    from polyroute.ledger import ledger_for

    return ledger_for(load(config_path))


@keys.command("create")
@click.option("--name", required=True, callback=_name, help="Who or what the key is for.")
@click.option("--daily-usd", metavar="USD", callback=_usd, help="Daily budget (default: none).")
@click.option("--monthly-usd", metavar="USD", callback=_usd, help="Monthly budget (default: none).")
@click.option(
    "--models",
    metavar="a,b",
    callback=_models,
    help="Only these models, as requests name them (default: any).",
)
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    help="Requests a minute at most, across every gateway replica (default: no limit).",
)
@click.option(
    "--tpm",
    type=click.IntRange(min=1),
    help="Tokens a minute at most: each request holds its worst case until it settles "
    "to what it used (default: no limit).",
)
@json_option
@common_options
def key_create(
    name: str,
    daily_usd: float | None,
    monthly_usd: float | None,
    models: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    as_json: bool,
) -> None:
    """Create a key; its secret is shown once, here (polyroute keeps only a hash of it)."""
    config_path = state().config

    async def main() -> int:
        from polyroute.alerts import posting
        from polyroute.config import load
        from polyroute.ledger import ledger_for

        config = load(config_path)
        ledger = ledger_for(config)
        try:
            async with posting(config, ledger.hub):  # its budget, to [[alerts]] webhooks
                key, secret = await ledger.create_key(
                    name,
                    daily_usd=daily_usd,
                    monthly_usd=monthly_usd,
                    models=models,
                    rpm=rpm,
                    tpm=tpm,
                )
        finally:
            await ledger.aclose()
        await _announce(config_path, key.id, "created")
        if as_json:
            emit_json({**key.as_dict(), "key": secret})
            return 0
        click.echo(
            f"created {key.id} ({key.name}): models {_allowed(key)}, "
            f"daily {limit_text(key.daily_usd)}, monthly {limit_text(key.monthly_usd)}, "
            f"rpm {_rate(key.rpm)}, tpm {_rate(key.tpm)}\n"
        )
        click.echo(f"    {secret}\n")
        click.echo("This key is shown once: store it now. polyroute keeps only its hash.")
        return 0

    run(main)


@keys.command("list")
@json_option
@common_options
def key_list(as_json: bool) -> None:
    """Every key: models, budgets, spend today, state (never its secret)."""
    config_path = state().config

    async def main() -> int:
        from polyroute.ledger import key_scope

        ledger = _ledger(config_path)
        try:
            found = await ledger.keys()
            # budget status of the key scopes (even unlimited ones): what each spent
            statuses = await ledger.budgets(key_scope(k.id) for k in found)
        finally:
            await ledger.aclose()
        by_scope = {s.scope: s for s in statuses}
        spent = {k.id: by_scope[key_scope(k.id)] for k in found}
        if as_json:
            emit_json(
                {
                    "keys": [
                        {
                            **k.as_dict(),
                            "daily_spent_usd": round(spent[k.id].daily.spent_usd, 9),
                            "monthly_spent_usd": round(spent[k.id].monthly.spent_usd, 9),
                        }
                        for k in found
                    ]
                }
            )
            return 0
        if not found:
            click.echo("no virtual keys yet: create one with `polyroute keys create --name NAME`.")
            return 0
        rows = [
            [
                k.id,
                k.name,
                k.prefix + "…",
                _allowed(k),
                limit_text(k.daily_usd),
                limit_text(k.monthly_usd),
                _rate(k.rpm),
                _rate(k.tpm),
                usd(spent[k.id].daily.spent_usd, 4),
                f"{k.created_at:%Y-%m-%d %H:%M}",
                "-" if k.revoked_at is None else f"{k.revoked_at:%Y-%m-%d %H:%M}",
            ]
            for k in found
        ]
        columns = ["id", "name", "key", "models", "daily", "monthly", "rpm", "tpm", "spent today"]
        table(None, [*columns, "created (UTC)", "revoked (UTC)"], rows)
        return 0

    run(main)


@keys.command("revoke")
@click.argument("key_id", metavar="ID")
@json_option
@common_options
def key_revoke(key_id: str, as_json: bool) -> None:
    """Revoke key ID: the gateway refuses it from now on. Its usage stays in the ledger."""
    config_path = state().config

    async def main() -> int:
        ledger = _ledger(config_path)
        try:
            key = await ledger.revoke_key(key_id)
        finally:
            await ledger.aclose()
        await _announce(config_path, key.id, "revoked")
        if as_json:
            emit_json(key.as_dict())
        else:
            click.echo(
                f"{key.id} ({key.name}) is revoked since {key.revoked_at:%Y-%m-%d %H:%M} UTC"
            )
        return 0

    run(main)


async def _announce(config_path: str | None, key_id: str, change: KeyChange) -> None:
    """Tell the gateway replicas sharing ``[storage] redis_url`` (none: nothing to do)."""
    from polyroute.config import load
    from polyroute.gateway import KEY_CACHE_S
    from polyroute.shared import announce_key_change

    redis_url = load(config_path).settings.storage.redis_url
    if not await announce_key_change(redis_url, key_id, change):
        click.echo(
            "warning: Redis is unreachable: gateways hear of this change within "
            f"{KEY_CACHE_S:g} s (their key cache), not at once",
            err=True,
        )


def _allowed(key: VirtualKey) -> str:
    return ", ".join(key.models) if key.models else "any"


def _rate(per_minute: int | None) -> str:
    return "none" if per_minute is None else f"{per_minute:,}"
