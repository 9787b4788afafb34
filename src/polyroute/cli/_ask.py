"""``polyroute ask``: one question, one answer."""

from __future__ import annotations

import sys

import click

from polyroute.cli._common import common_options, emit_json, json_option, run, state, usd


def read_prompt(prompt: str) -> str:
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise click.UsageError("the prompt is empty")
    return text


@click.command()
@click.argument("prompt")
@click.option("--provider", metavar="ID", help="Use this configured provider.")
@click.option("--model", metavar="M", help="Use this model.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens to generate.")
@click.option("--system", metavar="TEXT", help="A system instruction.")
@click.option("--stream/--no-stream", default=False, help="Print the answer as it arrives.")
@json_option
@common_options
def ask(
    prompt: str,
    provider: str | None,
    model: str | None,
    max_tokens: int | None,
    system: str | None,
    stream: bool,
    as_json: bool,
) -> None:
    """Ask PROMPT (- reads stdin) and print the answer."""
    text = read_prompt(prompt)
    config_path = state().config

    async def main() -> int:
        from polyroute.client import Polyroute
        from polyroute.config import load

        async with Polyroute(load(config_path)) as pr:
            if not stream:
                answer = await pr.complete(
                    text, provider=provider, model=model, system=system, max_tokens=max_tokens
                )
                if as_json:
                    emit_json(answer.as_dict())
                else:
                    click.echo(answer.content)
                    _footer(
                        answer.provider, answer.model, answer.usage.total_tokens, answer.cost_usd
                    )
                return 0
            s = pr.stream(
                text, provider=provider, model=model, system=system, max_tokens=max_tokens
            )
            async for event in s:
                if event.kind == "text" and not as_json:
                    click.echo(event.text, nl=False)
            # a stream without its end raises StreamInterruptedError, so an answer is set here
            assert s.answer is not None
            if as_json:
                emit_json(s.answer.as_dict())
            else:
                click.echo()
                a = s.answer
                _footer(a.provider, a.model, a.usage.total_tokens, a.cost_usd)
            return 0

    run(main)


def _footer(provider: str, model: str, tokens: int, cost: float | None) -> None:
    if sys.stderr.isatty():
        click.secho(f"-- {provider}/{model} · {tokens} tokens · {usd(cost)}", err=True, dim=True)
