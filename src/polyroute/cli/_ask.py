"""``polyroute ask`` (one question, one answer) and ``polyroute route`` (the decision only)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from polyroute.cli._common import common_options, emit_json, json_option, run, state, table, usd
from polyroute.cli._routing import routing_options

if TYPE_CHECKING:
    from polyroute.client import Routing
    from polyroute.config import Config


def load_providers(config_path: str | None) -> Config:
    """The config, refused with how to configure one when discovery found no provider at all."""
    from polyroute.config import load, nothing_configured

    config = load(config_path)
    if config.source == "environment" and not config.settings.providers:
        raise nothing_configured(config.env)
    return config


def read_prompt(prompt: str) -> str:
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise click.UsageError("the prompt is empty")
    return text


@click.command()
@click.argument("prompt")
@routing_options
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens to generate.")
@click.option("--system", metavar="TEXT", help="A system instruction.")
@click.option("--stream/--no-stream", default=False, help="Print the answer as it arrives.")
@json_option
@common_options
def ask(
    prompt: str,
    routing: Routing,
    max_tokens: int | None,
    system: str | None,
    stream: bool,
    as_json: bool,
) -> None:
    """Ask PROMPT (- reads stdin): routed, retried, falling back, and answered."""
    text = read_prompt(prompt)
    config_path = state().config

    async def main() -> int:
        from polyroute.client import Polyroute

        async with Polyroute(load_providers(config_path)) as pr:
            if not stream:
                answer = await pr.complete(text, system=system, max_tokens=max_tokens, **routing)
            else:
                s = pr.stream(text, system=system, max_tokens=max_tokens, **routing)
                async for event in s:
                    if event.kind == "text" and not as_json:
                        click.echo(event.text, nl=False)
                if not as_json:
                    click.echo()
                # a stream without its end raises, so an answer is set here
                assert s.answer is not None
                answer = s.answer
        if as_json:
            emit_json(answer.as_dict())
            return 0
        if not stream:
            click.echo(answer.content)
        if sys.stderr.isatty():
            fell_back = len(answer.attempts) > 1
            click.secho(
                f"-- {answer.provider}/{answer.model} · {answer.usage.total_tokens} tokens · "
                f"{usd(answer.cost_usd)}"
                + (f" · {len(answer.attempts)} attempts" if fell_back else ""),
                err=True,
                dim=True,
            )
        return 0

    run(main)


@click.command()
@click.argument("prompt")
@routing_options
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens to generate.")
@click.option("--system", metavar="TEXT", help="A system instruction.")
@json_option
@common_options
def route(
    prompt: str,
    routing: Routing,
    max_tokens: int | None,
    system: str | None,
    as_json: bool,
) -> None:
    """The routing decision for PROMPT, without calling anyone."""
    text = read_prompt(prompt)
    config_path = state().config

    async def main() -> int:
        from polyroute.client import Polyroute

        pr = Polyroute(load_providers(config_path))
        decision = pr.route(text, system=system, max_tokens=max_tokens, **routing)
        if as_json:
            emit_json(decision.as_dict())
            return 0
        click.echo(
            f"{decision.provider}/{decision.model} ({decision.strategy}): {decision.reasoning}"
        )
        click.echo(
            f"estimated cost {usd(decision.estimated_cost_usd)}"
            + (f" for {decision.cost_basis}" if decision.cost_basis else "")
            + f"; confidence {decision.confidence:.2f}"
        )
        if decision.fallbacks:
            click.echo(
                "fallbacks: " + ", ".join(f"{t.provider}/{t.model}" for t in decision.fallbacks)
            )
        if decision.excluded:
            table(
                "excluded",
                ["provider", "model", "reason"],
                [[e.provider, e.model, e.reason] for e in decision.excluded],
            )
        return 0

    run(main)
