"""``polyroute fuse``: ask a panel of providers at once and fuse their answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from polyroute.cli._ask import read_prompt
from polyroute.cli._common import common_options, console, emit_json, json_option, run, state, usd
from polyroute.cli._common import table as print_table

if TYPE_CHECKING:
    from polyroute.fusion import FusionMethod, FusionResult

# the same as polyroute.fusion.METHODS (a test keeps them equal): importing fusion here
# would load rapidfuzz and the ledger for every --help
METHODS = ("majority", "weighted", "semantic", "synthesis")
EXCERPT_CHARS = 80


def parse_providers(value: str | None) -> list[str] | None:
    """``"a,b,c"`` -> ``["a", "b", "c"]``; at least two, none twice."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if len(names) < 2:
        raise click.BadParameter(
            "name at least two providers, e.g. a,b,c", param_hint="--providers"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise click.BadParameter(f"listed twice: {', '.join(twice)}", param_hint="--providers")
    return names


@click.command()
@click.argument("prompt")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    help="How answers are fused (default: [fusion] method).",
)
@click.option(
    "--providers",
    metavar="A,B,C",
    help="The panel: provider ids (each with its default model) or id/model, comma-separated "
    "(default: the top [fusion] max_providers by routing).",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    metavar="X",
    help="Agreement (0..1) the result should reach; with --early-stop, when to stop "
    "(default: [fusion] min_agreement).",
)
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens each member writes.")
@click.option("--system", metavar="TEXT", help="A system instruction.")
@click.option(
    "--early-stop", is_flag=True, help="Cancel the rest once --min-agreement of the panel agree."
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Refuse before any call if the panel's worst-case cost is above this.",
)
@click.option(
    "--member-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Each member's timeout (default: [router] timeout_s).",
)
@json_option
@common_options
def fuse(
    prompt: str,
    method: FusionMethod | None,
    providers: str | None,
    min_agreement: float | None,
    max_tokens: int | None,
    system: str | None,
    early_stop: bool,
    max_cost: float | None,
    member_timeout: float | None,
    as_json: bool,
) -> None:
    """Ask PROMPT (- reads stdin) of several providers at once and fuse their answers."""
    text = read_prompt(prompt)
    panel = parse_providers(providers)
    config_path = state().config

    async def main() -> int:
        from polyroute.client import Polyroute
        from polyroute.config import load

        async with Polyroute(load(config_path)) as pr:
            try:
                fused = await pr.fuse(
                    text,
                    method=method,
                    providers=panel,
                    min_agreement=min_agreement,
                    max_tokens=max_tokens,
                    system=system,
                    early_stop=early_stop,
                    max_cost_usd=max_cost,
                    member_timeout_s=member_timeout,
                )
            except ValueError as exc:  # a panel the library refuses (e.g. one member twice)
                raise click.UsageError(str(exc)) from None
        if as_json:
            emit_json(fused.as_dict())
        else:
            render(fused)
        return 0

    run(main)


def render(fused: FusionResult, out: Any = None) -> None:
    """The panel as a table, a summary line, then the result."""
    out = out or console()
    print_table(None, *member_table(fused), out=out)
    out.print(summary(fused), highlight=False)
    if not fused.agreed:
        out.print(
            f"[yellow]agreement is below min_agreement {fused.min_agreement:.2f}: "
            "treat the result with care[/]"
        )
    out.print("[bold]result[/]")
    out.print(fused.result, markup=False, highlight=False)


def member_table(fused: FusionResult) -> tuple[list[str], list[list[str]]]:
    """Columns and rows: one row per member; the winning group is starred."""
    columns = ["#", "provider/model", "ok", "group", "answer / error", "cost", "latency"]
    rows = []
    for i, r in enumerate(fused.responses, 1):
        group = "-" if r.group is None else str(r.group + 1)
        if r.group is not None and r.group == fused.winner:
            group += " *"
        said = excerpt(r.content) if r.ok else (r.error or "")
        rows.append(
            [
                str(i),
                f"{r.provider}/{r.model}",
                "yes" if r.ok else "no",
                group,
                said,
                usd(r.cost_usd),
                f"{r.latency_ms:.0f} ms",
            ]
        )
    return columns, rows


def summary(fused: FusionResult) -> str:
    answers = fused.answers
    size = round(fused.agreement * answers)
    line = (
        f"{fused.method}: agreement {size}/{answers} ({fused.agreement:.2f}), "
        f"confidence {fused.confidence:.2f}, total {usd(fused.total_cost_usd)}"
    )
    if fused.synthesizer is not None:
        line += f", synthesized by {fused.synthesizer.provider}/{fused.synthesizer.model}"
    if fused.embeddings is not None:
        line += f", embeddings by {fused.embeddings.provider}/{fused.embeddings.model}"
    if fused.early_stopped:
        line += ", stopped early"
    return line


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"
