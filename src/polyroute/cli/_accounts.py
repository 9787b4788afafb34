"""Accounting commands: ``usage`` and ``budget set/show``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

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
    from polyroute.ledger import GroupBy, PeriodStatus, UsageReport


def parse_since(value: str, now: float | None = None) -> float:
    """``--since``: ``YYYY-MM-DD`` (UTC) or ``Nd`` (the last N days, today included)."""
    from polyroute.ledger import parse_since as since_start

    try:
        return since_start(value, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


@click.command()
@click.option(
    "--by",
    type=click.Choice(["day", "month", "provider", "model"]),
    default="provider",
    show_default=True,
    help="Group totals by.",
)
@click.option("--provider", metavar="ID", help="Only this provider.")
@click.option("--since", metavar="DATE", help="From this UTC day on: YYYY-MM-DD, or Nd.")
@json_option
@common_options
def usage(by: str, provider: str | None, since: str | None, as_json: bool) -> None:
    """What was asked, of whom, and what it cost (from the usage ledger)."""
    since_ts = None if since is None else parse_since(since)
    config_path = state().config

    async def main() -> int:
        from polyroute.carbon import baseline_of, with_savings
        from polyroute.config import load
        from polyroute.ledger import ledger_for

        config = load(config_path)
        baseline = baseline_of(config, config.catalog())  # a bad one: exit 2, before the query
        ledger = ledger_for(config)
        try:
            report = await ledger.usage(by=cast("GroupBy", by), provider=provider, since=since_ts)
        finally:
            await ledger.aclose()
        report = with_savings(report, baseline)
        if as_json:
            emit_json(report.as_dict())
            return 0
        if not report.rows:
            click.echo("no usage recorded" + (f" for {provider}" if provider else "") + ".")
            return 0
        rows = [
            [
                r.key,
                str(r.requests),
                str(r.failed),
                f"{r.prompt_tokens:,}",
                f"{r.completion_tokens:,}",
                f"{r.cached_tokens:,}",
                f"{r.cache_write_tokens:,}",
                f"{r.reasoning_tokens:,}",
                usd(r.cost_usd),
                grams(r.carbon_g),
            ]
            for r in report.rows
        ]
        total = usd(report.total_cost_usd)
        carbon = grams(report.total_carbon_g)
        rows.append(["total", str(report.requests), "", "", "", "", "", "", total, carbon])
        head = ["requests", "failed", "prompt tok", "completion tok", "cached", "cache write"]
        table(None, [by, *head, "reasoning", "cost", "gCO2e"], rows)
        line = savings_line(report)
        if line:
            click.echo(line)
        return 0

    run(main)


def grams(g: float) -> str:
    """gCO2e to read: three significant digits below 100 g, whole grams above."""
    return f"{g:,.0f}" if abs(g) >= 100 else f"{g:.3g}"


def savings_line(report: UsageReport) -> str | None:
    """``saved X g CO2e (Y %) against <baseline>``; ``None`` without a baseline."""
    saved, base = report.carbon_saved_g, report.carbon_baseline_g
    if saved is None or base is None:
        return None
    pct = saved / base * 100 if base else 0.0
    if saved < 0:
        return f"emitted {grams(-saved)} g CO2e more ({-pct:.1f} %) than {report.carbon_baseline}"
    return f"saved {grams(saved)} g CO2e ({pct:.1f} %) against {report.carbon_baseline}"


@click.group()
def budget() -> None:
    """Spending limits per provider and in total (daily and monthly, UTC)."""


def _keep() -> Any:
    from polyroute.ledger import KEEP

    return KEEP


def _amount(value: str | None, option: str) -> Any:
    """``None`` (flag absent) -> keep; ``none``/``off`` -> remove the limit; else USD >= 0."""
    if value is None:
        return _keep()
    if value.strip().lower() in ("none", "off"):
        return None
    return usd_amount(value, " (or 'none')", option=option)


def _alerts(value: str | None) -> Any:
    if value is None:
        return _keep()
    try:
        pcts = tuple(float(p) for p in value.split(",") if p.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: a comma-separated list of percents") from None
    if any(not 0 < p <= 100 for p in pcts):
        raise click.BadParameter(f"{value!r}: percents are in (0, 100]")
    return tuple(sorted(set(pcts)))


@budget.command("set")
@click.argument("budget_id", metavar="ID")
@click.option("--daily", metavar="USD", help="Daily limit in USD ('none' removes it).")
@click.option("--monthly", metavar="USD", help="Monthly limit in USD ('none' removes it).")
@click.option("--alerts", metavar="50,75,90", help="Alert at these percents of a limit.")
@common_options
def budget_set(budget_id: str, daily: str | None, monthly: str | None, alerts: str | None) -> None:
    """Set the budget of provider ID, or of everything with ID 'global'.

    Limits set here override the config file's, in every process sharing the ledger.
    """
    daily_v, monthly_v = _amount(daily, "--daily"), _amount(monthly, "--monthly")
    alerts_v = _alerts(alerts)
    if daily_v is _keep() and monthly_v is _keep() and alerts_v is _keep():
        raise click.UsageError("give at least one of --daily, --monthly, --alerts")
    config_path = state().config

    async def main() -> int:
        from polyroute.config import load
        from polyroute.errors import ConfigError
        from polyroute.ledger import GLOBAL, ledger_for, provider_scope

        config = load(config_path)
        if budget_id == GLOBAL:
            scope = GLOBAL
        elif budget_id in config.settings.providers:
            scope = provider_scope(budget_id)
        else:
            known = ", ".join(config.settings.providers) or "none"
            raise ConfigError(
                f"no provider {budget_id!r} to budget (configured: {known}; or 'global')"
            )
        from polyroute.alerts import posting

        ledger = ledger_for(config)
        try:
            async with posting(config, ledger.hub):  # the change, to [[alerts]] webhooks
                limits = await ledger.set_budget(
                    scope, daily_usd=daily_v, monthly_usd=monthly_v, alert_percents=alerts_v
                )
        finally:
            await ledger.aclose()
        from polyroute.shared import announce_budget_change

        if not await announce_budget_change(config.settings.storage.redis_url, budget_id):
            click.echo(
                "warning: Redis is unreachable: a gateway whose last request this budget "
                "refused may route around it for up to 10 s more",
                err=True,
            )
        click.echo(
            f"budget {budget_id}: daily {limit_text(limits.daily_usd)}, monthly "
            f"{limit_text(limits.monthly_usd)}, alerts at "
            + ", ".join(f"{p:g}%" for p in limits.alert_percents)
        )
        return 0

    run(main)


@budget.command("show")
@json_option
@common_options
def budget_show(as_json: bool) -> None:
    """Every budget: limit, spent, held by requests in flight, and left."""
    config_path = state().config

    async def main() -> int:
        from polyroute.config import load
        from polyroute.ledger import ledger_for, provider_scope

        config = load(config_path)
        ledger = ledger_for(config)
        try:
            statuses = await ledger.budgets(provider_scope(p) for p in config.settings.providers)
        finally:
            await ledger.aclose()
        if as_json:
            emit_json({"budgets": [s.as_dict() for s in statuses]})
            return 0
        rows = [
            [
                s.scope.removeprefix("provider:"),
                s.source,
                p.kind,
                p.period.partition(":")[2],
                *_cells(p),
            ]
            for s in statuses
            for p in (s.daily, s.monthly)
        ]
        table(
            None,
            ["budget", "set in", "period", "of", "limit", "spent", "held", "left", "used"],
            rows,
        )
        return 0

    run(main)


def _cells(p: PeriodStatus) -> list[str]:
    used = "-" if not p.limit_usd else f"{100 * (p.spent_usd + p.reserved_usd) / p.limit_usd:.0f}%"
    left = "-" if p.left_usd is None else usd(p.left_usd, 4)
    return [limit_text(p.limit_usd), usd(p.spent_usd, 4), usd(p.reserved_usd, 4), left, used]
