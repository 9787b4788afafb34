"""The ``polyroute`` command line. Commands import their heavy parts lazily, so ``--help`` is fast."""

from __future__ import annotations

import click

from polyroute.cli._accounts import budget, usage
from polyroute.cli._ask import ask, route
from polyroute.cli._bench import bench
from polyroute.cli._budget_opt import budget_analyze, budget_history, budget_optimize
from polyroute.cli._common import common_options
from polyroute.cli._credentials import credentials
from polyroute.cli._demo import demo
from polyroute.cli._fuse import fuse
from polyroute.cli._info import health, models, providers
from polyroute.cli._keys import keys
from polyroute.cli._serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="polyroute")
@common_options
def cli() -> None:
    """Use many LLM providers as one: ask, route, fuse, account, serve."""


for command in (
    ask,
    route,
    fuse,
    models,
    providers,
    health,
    usage,
    budget,
    credentials,
    keys,
    bench,
    serve,
    demo,
):
    cli.add_command(command)
for subcommand in (budget_analyze, budget_optimize, budget_history):
    budget.add_command(subcommand)


def main() -> None:
    cli.main(prog_name="polyroute")


__all__ = ["cli", "main"]
