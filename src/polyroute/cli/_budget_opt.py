"""``budget analyze``, ``budget optimize`` and ``budget history``: the budget optimizer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from polyroute.cli._accounts import parse_since
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
    from polyroute.budgeting import Analysis, Proposal


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _money(value: float | None) -> str:
    return "-" if value is None else usd(value, 2)


@click.command("analyze")
@click.option("--since", metavar="DATE", help="Forecast from this UTC day on (default: 90d).")
@json_option
@common_options
def budget_analyze(since: str | None, as_json: bool) -> None:
    """Per provider: spend, its forecast to the month's end, and how well the budget fits."""
    now = time.time()
    since_ts = None if since is None else parse_since(since, now)
    config_path = state().config

    async def main() -> int:
        from polyroute.budgeting import analyze_ledger
        from polyroute.config import load
        from polyroute.ledger import ledger_for

        config = load(config_path)
        ledger = ledger_for(config)
        first = None if since_ts is None else datetime.fromtimestamp(since_ts, UTC).date()
        try:
            analysis = await analyze_ledger(ledger, config.enabled(), now, since=first)
        finally:
            await ledger.aclose()
        if as_json:
            emit_json(analysis.as_dict())
        else:
            _print_analysis(analysis)
        return 0

    run(main)


def _print_analysis(a: Analysis) -> None:
    rows = [
        [
            p.provider,
            _money(p.spent_today_usd),
            _money(p.spent_week_usd),
            _money(p.spent_usd),
            limit_text(p.limit_usd),
            _money(p.forecast_usd),
            "-"
            if p.forecast_low_usd is None
            else f"{_money(p.forecast_low_usd)}-{_money(p.forecast_high_usd)}",
            _pct(p.utilisation),
            "-" if p.efficiency is None else f"{p.efficiency:.2f}",
            _pct(p.success_rate),
            "-" if p.cost_per_success_usd is None else usd(p.cost_per_success_usd),
            "-" if p.trend is None else f"{p.trend:+.0%}/wk",
        ]
        for p in a.providers
    ]
    head = ["provider", "today", "7 days", "month", "limit", "forecast", "95 %", "used"]
    table(
        f"budgets for {a.period}: spend and forecast to the month's end",
        [*head, "efficiency", "success", "per success", "trend"],
        rows,
    )
    if a.underused:
        click.echo("underused: " + ", ".join(a.underused))
    if a.overused:
        click.echo("overused: " + ", ".join(a.overused))
    for line in a.recommendations:
        click.echo(f"- {line}")


@click.command("optimize")
@click.option(
    "--total", metavar="USD", help="Monthly total to share (default: [budget.optimizer])."
)
@click.option("--min", "min_usd", metavar="USD", help="Least per provider (monthly).")
@click.option("--max", "max_usd", metavar="USD", help="Most per provider (monthly).")
@click.option("--apply", is_flag=True, help="Write the allocation (one transaction) and record it.")
@json_option
@common_options
def budget_optimize(
    total: str | None, min_usd: str | None, max_usd: str | None, apply: bool, as_json: bool
) -> None:
    """Propose (and with --apply, set) every provider's monthly budget from its forecast."""
    flags = [
        _bound(v, name) for v, name in ((total, "--total"), (min_usd, "--min"), (max_usd, "--max"))
    ]
    config_path = state().config

    async def main() -> int:
        from polyroute.budgeting import analyze_ledger, bounds_from, check_bounds, propose
        from polyroute.budgeting import apply as apply_proposal
        from polyroute.config import load
        from polyroute.ledger import ledger_for

        config = load(config_path)
        opt = config.settings.budget.optimizer if config.settings.budget else None
        if opt is None:
            from polyroute.config import OptimizerConfig

            opt = OptimizerConfig()
        defaults = (opt.total_monthly_usd, opt.min_usd, opt.max_usd)
        t, lo, hi = bounds_from(flags[0], flags[1], flags[2], defaults)
        providers = config.enabled()
        check_bounds(t, lo, hi, len(providers))  # before opening anything
        now = time.time()
        ledger = ledger_for(config)
        try:
            proposal = propose(await analyze_ledger(ledger, providers, now), t, lo, hi)
            if apply:
                from polyroute.alerts import posting

                async with posting(config, ledger.hub):  # the changes, to [[alerts]] webhooks
                    applied = await apply_proposal(ledger, proposal, source="cli", now=now)
                assert applied is not None  # no not_before: always due
                proposal = applied
        finally:
            await ledger.aclose()
        if as_json:
            emit_json(proposal.as_dict())
        else:
            _print_proposal(proposal)
        return 0

    run(main)


def _bound(value: str | None, option: str) -> float | None:
    """A bound as given: negative amounts pass, for ``check_bounds`` to refuse in one line."""
    if value is None:
        return None
    text = value.strip()
    negative = text.startswith("-")
    amount = usd_amount(text.lstrip("-"), option=option)
    return -amount if negative else amount


def _print_proposal(p: Proposal) -> None:
    rows = [
        [a.provider, limit_text(a.current_usd), usd(a.proposed_usd, 2), a.reason]
        for a in p.allocations
    ]
    title = f"monthly budgets sharing {usd(p.total_usd, 2)}"
    table(title, ["provider", "now", "proposed", "why"], rows)
    if p.applied:
        click.echo("applied: every provider's monthly budget set, recorded in `budget history`.")
    else:
        click.echo("a proposal only: --apply sets it.")


@click.command("history")
@json_option
@common_options
def budget_history(as_json: bool) -> None:
    """Allocations applied by `budget optimize --apply` and the gateway's auto-adjust."""
    config_path = state().config

    async def main() -> int:
        from polyroute.budgeting import history
        from polyroute.config import load
        from polyroute.ledger import ledger_for

        ledger = ledger_for(load(config_path))
        try:
            entries = await history(ledger)
        finally:
            await ledger.aclose()
        if as_json:
            emit_json({"history": [e.as_dict() for e in entries]})
            return 0
        if not entries:
            click.echo("no budget changes recorded.")
            return 0
        rows = [
            [
                e.as_dict()["at"],
                e.source,
                usd(e.total_usd, 2),
                c.provider,
                limit_text(c.previous_usd),
                usd(c.new_usd, 2),
                c.reason,
            ]
            for e in entries
            for c in e.changes
        ]
        table(None, ["at", "by", "total", "provider", "was", "set to", "why"], rows)
        return 0

    run(main)
