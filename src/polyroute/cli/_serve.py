"""``polyroute serve``: the gateway on uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click

from polyroute.cli._common import common_options, exit_code, state

FACTORY = "polyroute.gateway._app:from_env"
"""What each uvicorn worker imports and calls to build its app."""


@click.command()
@click.option("--host", metavar="H", help="Interface to listen on (default: [gateway] host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: [gateway] port).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes (default: [gateway] workers, 1).",
)
@common_options
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the OpenAI- and Anthropic-compatible gateway.

    With $POLYROUTE_ADMIN_KEY set, every /v1 call needs it or a virtual key
    (`polyroute keys create`). SIGTERM or Ctrl-C stops it gracefully: requests in
    flight finish and the ledger is written.
    """
    from polyroute.config import load
    from polyroute.errors import PolyrouteError

    config_path = state().config
    try:
        config = load(config_path)  # a bad config is one clear line here, not in each worker
    except PolyrouteError as exc:
        click.echo(f"polyroute: error: {exc}", err=True)
        sys.exit(exit_code(exc))
    if config_path is not None:  # workers find the same file
        os.environ["POLYROUTE_CONFIG"] = str(Path(config_path).resolve())
    gw = config.settings.gateway
    host = host or gw.host
    port = gw.port if port is None else port
    workers = workers or gw.workers
    admin = bool(os.environ.get("POLYROUTE_ADMIN_KEY"))
    click.echo(
        f"polyroute: gateway on http://{host}:{port} ({len(config.enabled())} providers, "
        f"{workers} worker{'s' if workers > 1 else ''}, "
        f"{'admin key set' if admin else 'open: no $POLYROUTE_ADMIN_KEY'})",
        err=True,
    )
    import uvicorn

    uvicorn.run(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="auto",  # uvloop when installed (the `server` extra)
        http="auto",  # httptools when installed
        lifespan="on",
        access_log=False,  # ours is the JSON line on the polyroute.access logger
        log_level="warning",
        timeout_graceful_shutdown=max(30, math.ceil(config.settings.router.timeout_s)),
    )
