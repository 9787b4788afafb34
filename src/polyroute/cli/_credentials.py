"""``polyroute credentials``: the encrypted vault of API keys (``set``, ``list``, ``delete``, ``rotate``).

Keys go in on stdin or from an environment variable, never as an argument
(arguments end up in shell history and ``ps``), and never come back out.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from polyroute.cli._common import (
    EXIT_FAILURE,
    common_options,
    emit_json,
    json_option,
    run,
    state,
    table,
)
from polyroute.errors import CredentialError

if TYPE_CHECKING:
    from pathlib import Path

    from polyroute.config import Config

NEW_MASTER_KEY_ENV = "POLYROUTE_NEW_MASTER_KEY"


@click.group()
@common_options
def credentials() -> None:
    """The encrypted vault of API keys (master passphrase in $POLYROUTE_MASTER_KEY).

    A provider uses a stored key with api_key = "vault:ID" in the config.
    """


def _users(config: Config, cred_id: str) -> list[str]:
    """The providers whose ``api_key`` is ``vault:cred_id``."""
    ref = f"vault:{cred_id}"
    return [pid for pid, spec in config.settings.providers.items() if spec.api_key == ref]


def _read_key(cred_id: str, from_env: str | None) -> str:
    if from_env is not None:
        value = os.environ.get(from_env, "").strip()
        if not value:
            raise CredentialError(f"${from_env} is not set or empty")
    elif sys.stdin.isatty():
        value = click.prompt(f"API key for {cred_id!r}", hide_input=True, err=True).strip()
    else:
        value = sys.stdin.read().strip()
        if not value:
            raise CredentialError(
                "no key on stdin: pipe it in (e.g. `pbpaste | polyroute credentials set ID`) "
                "or use --from-env VAR"
            )
    if any(c.isspace() for c in value):  # several lines, or a key pasted with its label
        raise CredentialError("the key contains whitespace: give the key alone")
    return value


def _write_failed(directory: Path, exc: OSError) -> int:
    """A disk that refuses a write (full, read-only): one line, exit 1 (an I/O failure)."""
    click.echo(f"polyroute: error: cannot write to the vault in {directory}: {exc}", err=True)
    return EXIT_FAILURE


@credentials.command("set")
@click.argument("cred_id", metavar="ID")
@click.option(
    "--from-env",
    metavar="VAR",
    help="Read the key from this environment variable (default: stdin; a prompt on a terminal).",
)
@common_options
def set_credential(cred_id: str, from_env: str | None) -> None:
    """Store (or replace) the key ID, read from stdin or --from-env VAR."""
    config_path = state().config

    async def main() -> int:
        from polyroute.config import MASTER_KEY_ENV, load
        from polyroute.credentials import check_id

        check_id(cred_id)
        config = load(config_path)
        if config.vault_exists() or not config.env.get(MASTER_KEY_ENV):
            config.vault()  # a missing or wrong passphrase fails before the key is asked for
        value = _read_key(cred_id, from_env)
        vault = config.vault(create=True)
        replaced = cred_id in vault.list()
        try:
            vault.set(cred_id, value)
        except OSError as exc:
            return _write_failed(vault.directory, exc)
        verb = "replaced" if replaced else "stored"
        click.echo(f"{verb} credential {cred_id!r} in {vault.directory}")
        if not _users(config, cred_id):
            click.echo(f'use it in a provider with api_key = "vault:{cred_id}"')
        return 0

    run(main)


@credentials.command("list")
@json_option
@common_options
def list_credentials(as_json: bool) -> None:
    """The stored ids and the providers that use them (never the keys)."""
    config_path = state().config

    async def main() -> int:
        from polyroute.config import load

        config = load(config_path)
        ids = config.vault().list() if config.vault_exists() else []
        if as_json:
            emit_json({"credentials": [{"id": cid} for cid in ids]})
            return 0
        if not ids:
            click.echo(f"no credentials in the vault ({config.vault_dir()})")
            return 0
        click.echo(f"vault: {config.vault_dir()}")
        table(
            None,
            ["id", "used by"],
            [[cid, ", ".join(_users(config, cid)) or "-"] for cid in ids],
        )
        return 0

    run(main)


@credentials.command("delete")
@click.argument("cred_id", metavar="ID")
@common_options
def delete_credential(cred_id: str) -> None:
    """Delete the key ID from the vault."""
    config_path = state().config

    async def main() -> int:
        from polyroute.config import load

        config = load(config_path)
        vault = config.vault()
        try:
            vault.delete(cred_id)
        except OSError as exc:
            return _write_failed(vault.directory, exc)
        click.echo(f"deleted credential {cred_id!r} from {vault.directory}")
        users = _users(config, cred_id)
        if users:
            click.echo(
                f"polyroute: warning: still used by {', '.join(users)} (api_key = "
                f'"vault:{cred_id}")',
                err=True,
            )
        return 0

    run(main)


@credentials.command("rotate")
@common_options
def rotate_credentials() -> None:
    """Re-encrypt every key under the passphrase in $POLYROUTE_NEW_MASTER_KEY."""
    config_path = state().config

    async def main() -> int:
        from polyroute.config import MASTER_KEY_ENV, load

        config = load(config_path)
        vault = config.vault()  # the current passphrase first: locked, wrong, no vault
        new = config.env.get(NEW_MASTER_KEY_ENV, "")
        if not new:
            raise CredentialError(f"set ${NEW_MASTER_KEY_ENV} to the new master passphrase")
        if new == config.env.get(MASTER_KEY_ENV, ""):
            raise CredentialError(
                f"${NEW_MASTER_KEY_ENV} is the current passphrase: choose a different one"
            )
        count = len(vault.list())
        try:
            vault.rotate(new)
        except OSError as exc:  # before the switch (Vault.rotate): nothing changed
            click.echo(
                f"polyroute: error: cannot rotate the vault in {vault.directory}: {exc}; "
                f"nothing changed, it still opens with ${MASTER_KEY_ENV}",
                err=True,
            )
            return EXIT_FAILURE
        click.echo(
            f"re-encrypted {count} credential{'' if count == 1 else 's'} in {vault.directory} "
            "under the new passphrase"
        )
        click.echo(
            f"now set ${MASTER_KEY_ENV} to the new passphrase (and unset ${NEW_MASTER_KEY_ENV})"
        )
        return 0

    run(main)


__all__ = ["credentials"]
