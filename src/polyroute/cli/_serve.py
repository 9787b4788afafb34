"""``polyroute serve``: the gateway on uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import errno
import math
import os
import sys
from pathlib import Path

import click

from polyroute.cli._common import EXIT_FAILURE, common_options, exit_code, state

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

    from polyroute.gateway._server import ServeConfig, connection_bound, listen, run

    try:
        sock = listen(host, port)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            click.echo(f"polyroute: error: port {port} on {host} is in use: {why}", err=True)
        else:
            click.echo(f"polyroute: error: cannot listen on {host}:{port}: {why}", err=True)
        sys.exit(EXIT_FAILURE)
    admin = bool(os.environ.get("POLYROUTE_ADMIN_KEY"))
    click.echo(
        f"polyroute: gateway on http://{host}:{sock.getsockname()[1]} "
        f"({len(config.enabled())} providers, "
        f"{workers} worker{'s' if workers > 1 else ''}, "
        f"{'admin key set' if admin else 'open: no $POLYROUTE_ADMIN_KEY'})",
        err=True,
    )
    serve_config = ServeConfig(
        FACTORY,
        read_timeout_s=gw.read_timeout_s,
        max_connections=connection_bound(gw.max_connections),
        factory=True,
        workers=workers,
        loop="auto",  # uvloop when installed (the `server` extra)
        lifespan="on",
        access_log=False,  # ours is the JSON line on the polyroute.access logger
        log_level="warning",
        timeout_graceful_shutdown=max(30, math.ceil(config.settings.router.timeout_s)),
    )
    with sock:
        started = run(serve_config, sock)
    if not started:  # uvicorn logged why (the app or its lifespan failed to start)
        sys.exit(EXIT_FAILURE)
