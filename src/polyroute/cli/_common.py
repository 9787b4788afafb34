"""What every command shares: --config/--debug anywhere, exit codes, errors, output."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from polyroute.errors import (
    BenchError,
    BudgetExceeded,
    ConfigError,
    CredentialError,
    FusionCostCapError,
    InvalidModelError,
    NotEnoughAnswersError,
    PolyrouteError,
    ProviderError,
)
from polyroute.types import MAX_USD

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_NO_PROVIDER = 4

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    config: str | None = None
    debug: bool = False


def state() -> State:
    return click.get_current_context().ensure_object(State)


def _set_config(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).config = value


def _set_debug(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).debug = True


def common_options(f: F) -> F:
    """``--config`` and ``--debug``, accepted before or after the command name."""
    f = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=_set_debug,
        is_eager=True,
        help="Show tracebacks.",
    )(f)
    f = click.option(
        "--config",
        metavar="PATH",
        expose_value=False,
        callback=_set_config,
        is_eager=True,
        help="Config file (default: $POLYROUTE_CONFIG, ./polyroute.toml, XDG config).",
    )(f)
    return f


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, ConfigError | CredentialError | InvalidModelError | BenchError):
        return EXIT_USAGE
    if isinstance(exc, BudgetExceeded | FusionCostCapError):
        return EXIT_BUDGET
    if isinstance(exc, ProviderError | NotEnoughAnswersError):
        return EXIT_NO_PROVIDER
    return EXIT_FAILURE


def run(main: Callable[[], Coroutine[Any, Any, int | None]]) -> NoReturn:
    """Run a command's coroutine; a polyroute error is one line on stderr and its exit code."""
    debug = state().debug
    if debug:
        import logging

        logging.basicConfig(format="polyroute: %(name)s: %(message)s", level=logging.WARNING)
        logging.getLogger("polyroute").setLevel(logging.DEBUG)
    try:
        code = asyncio.run(main()) or EXIT_OK
    except PolyrouteError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"polyroute: error: {exc}", err=True)
        code = exit_code(exc)
    except KeyboardInterrupt:
        click.echo("polyroute: interrupted", err=True)
        code = 130
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def usd(value: float | None, digits: int = 6) -> str:
    return "unpriced" if value is None else f"${value:.{digits}f}"


def usd_amount(value: str, others: str = "", *, option: str | None = None) -> float:
    """An option's USD amount, from 0 to MAX_USD (``5``, ``$5``, ``0.50``); ``others``: what
    else the option takes, for the error; ``option``: its name, when click cannot tell."""
    try:
        amount = float(value.strip().lstrip("$"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an amount in USD{others}", param_hint=option
        ) from None
    if not 0 <= amount <= MAX_USD:  # also refuses nan and inf; nano-USD must fit 64 bits
        raise click.BadParameter(
            f"{value!r}: must be 0 or more, up to {MAX_USD:,.0f}", param_hint=option
        )
    return amount


def limit_text(v: float | None) -> str:
    """A budget limit: ``$5.00``, or ``none``."""
    return "none" if v is None else f"${v:.2f}"


def table(title: str | None, columns: list[str], rows: list[list[str]], *, out: Any = None) -> None:
    """Print a table to ``out`` (a rich console; default: a new one). Long cells wrap."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left", title_style="bold", header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(Text(cell) for cell in r))  # plain text: "[api_error]" is not markup
    (out or console()).print(t)


def console() -> Any:
    """A rich console; piped output keeps full-width rows instead of 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=250)
