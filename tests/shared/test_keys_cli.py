"""``polyroute keys create/revoke`` tell the gateways sharing ``[storage] redis_url``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from polyroute.cli import cli


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    path = tmp_path / "polyroute.toml"
    path.write_text(f'[storage]\nredis_url = "{redis_url}"\n')
    monkeypatch.setenv("POLYROUTE_CONFIG", str(path))


def test_created_and_revoked_keys_are_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    configure(tmp_path, monkeypatch, redis_url)
    with redis.Redis.from_url(redis_url, decode_responses=True) as r, r.pubsub() as sub:
        sub.subscribe("polyroute:ch:keys")
        assert sub.get_message(timeout=5)["type"] == "subscribe"
        created = invoke("keys", "create", "--name", "team", "--json")
        assert created.exit_code == 0 and created.stderr == ""
        key_id = json.loads(created.stdout)["id"]
        revoked = invoke("keys", "revoke", key_id)
        assert revoked.exit_code == 0 and revoked.stderr == ""
        heard = [sub.get_message(timeout=5) for _ in range(2)]
        changes = [json.loads(m["data"]) for m in heard if m is not None]
        assert [(c["id"], c["change"]) for c in changes] == [
            (key_id, "created"),
            (key_id, "revoked"),
        ]


def test_redis_unreachable_the_key_is_revoked_and_the_delay_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, monkeypatch, "redis://127.0.0.1:9/0")
    created = invoke("keys", "create", "--name", "team", "--json")
    assert created.exit_code == 0
    assert "Redis is unreachable" in created.stderr
    revoked = invoke("keys", "revoke", json.loads(created.stdout)["id"], "--json")
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["active"] is False
    assert revoked.stderr.strip() == (
        "warning: Redis is unreachable: gateways hear of this change within 5 s "
        "(their key cache), not at once"
    )


def test_redis_unreachable_a_budget_is_set_and_the_delay_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "polyroute.toml"
    path.write_text(
        '[storage]\nredis_url = "redis://127.0.0.1:9/0"\n[providers.openai]\ntype = "openai"\n'
    )
    monkeypatch.setenv("POLYROUTE_CONFIG", str(path))
    r = invoke("budget", "set", "openai", "--daily", "5")
    assert r.exit_code == 0 and r.stdout.startswith("budget openai: daily $5")
    assert r.stderr.strip() == (
        "warning: Redis is unreachable: a gateway whose last request this budget "
        "refused may route around it for up to 10 s more"
    )
