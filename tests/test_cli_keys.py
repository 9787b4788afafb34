"""``polyroute keys create/list/revoke``: output, --json shapes, the secret shown once, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from polyroute.cli import cli
from polyroute.ledger import Ledger, UsageRecord

SECRET = re.compile(r"sk-pr-[A-Za-z0-9_-]{43}")
KEY_FIELDS = {
    "id",
    "name",
    "prefix",
    "models",
    "daily_usd",
    "monthly_usd",
    "rpm",
    "tpm",
    "created_at",
    "revoked_at",
    "active",
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def create(*args: str) -> dict[str, Any]:
    r = invoke("keys", "create", *args, "--json")
    assert r.exit_code == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def listed() -> list[dict[str, Any]]:
    r = invoke("keys", "list", "--json")
    assert r.exit_code == 0, r.stderr
    keys: list[dict[str, Any]] = json.loads(r.stdout)["keys"]
    return keys


def ledger_url() -> str:
    """The ledger the CLI uses with no config: under $POLYROUTE_HOME (tests/conftest.py)."""
    return f"sqlite:///{Path(os.environ['POLYROUTE_HOME']) / 'polyroute.db'}"


def test_create_shows_the_secret_once_with_a_note() -> None:
    r = invoke("keys", "create", "--name", "ci bot", "--daily-usd", "2", "--models", "gpt-4o,auto")
    assert r.exit_code == 0, r.stderr
    [secret] = SECRET.findall(r.stdout)
    assert r.stdout.count(secret) == 1
    assert "shown once" in r.stdout
    assert "(ci bot): models gpt-4o, auto, daily $2.00, monthly none" in r.stdout
    assert secret not in r.stderr


def test_create_json_is_the_key_and_its_secret() -> None:
    out = create("--name", "ci", "--daily-usd", "$1.5", "--monthly-usd", "20", "--models", "a, b,a")
    assert set(out) == {*KEY_FIELDS, "key"}
    assert SECRET.fullmatch(out["key"])
    assert re.fullmatch(r"vk_[0-9a-f]{10}", out["id"])
    assert out["prefix"] == out["key"][:12]
    assert (out["name"], out["models"]) == ("ci", ["a", "b"])
    assert (out["daily_usd"], out["monthly_usd"]) == (1.5, 20.0)
    assert out["active"] is True and out["revoked_at"] is None
    bare = create("--name", "anything goes")
    assert (bare["models"], bare["daily_usd"], bare["monthly_usd"]) == ([], None, None)


def test_a_created_key_verifies_in_the_ledger_the_gateway_reads() -> None:
    out = create("--name", "ci", "--models", "gpt-4o")

    async def check() -> None:
        ledger = Ledger(ledger_url())
        try:
            key = await ledger.verify_key(out["key"])
            assert key is not None and key.id == out["id"] and key.allows("gpt-4o")
            assert not key.allows("gpt-4o-mini")
        finally:
            await ledger.aclose()

    asyncio.run(check())


def test_list_never_shows_a_secret() -> None:
    first = create("--name", "first", "--daily-usd", "1")
    second = create("--name", "second", "--models", "gpt-4o")
    keys = listed()
    assert [k["id"] for k in keys] == [first["id"], second["id"]]
    assert set(keys[0]) == {*KEY_FIELDS, "daily_spent_usd", "monthly_spent_usd"}
    assert keys[0]["daily_usd"] == 1.0 and keys[1]["models"] == ["gpt-4o"]

    table = invoke("keys", "list")
    assert table.exit_code == 0, table.stderr
    for key in (first, second):
        assert key["id"] in table.stdout and key["prefix"] + "…" in table.stdout
    assert "any" in table.stdout and "$1.00" in table.stdout
    everything = table.stdout + json.dumps(keys)
    for key in (first, second):
        assert key["key"] not in everything
        assert key["key"][12:] not in everything  # nor its part beyond the shown prefix


def test_rate_limits_are_stored_with_the_key_and_listed() -> None:
    r = invoke("keys", "create", "--name", "bot", "--rpm", "60", "--tpm", "100000")
    assert r.exit_code == 0, r.stderr
    assert "rpm 60, tpm 100,000" in r.stdout
    out = create("--name", "capped", "--rpm", "5")
    assert (out["rpm"], out["tpm"]) == (5, None)
    keys = {k["name"]: k for k in listed()}
    assert (keys["bot"]["rpm"], keys["bot"]["tpm"]) == (60, 100000)
    assert (keys["capped"]["rpm"], keys["capped"]["tpm"]) == (5, None)
    table = invoke("keys", "list").stdout
    assert "rpm" in table and "100,000" in table
    for bad in ("0", "-1", "1.5", "x"):
        refused = invoke("keys", "create", "--name", "n", "--rpm", bad)
        assert refused.exit_code == 2 and "--rpm" in refused.stderr


def test_list_with_no_keys_says_how_to_make_one() -> None:
    r = invoke("keys", "list")
    assert r.exit_code == 0
    assert "no virtual keys yet" in r.stdout and "polyroute keys create" in r.stdout
    assert listed() == []


def test_list_shows_what_each_key_spent() -> None:
    spender = create("--name", "spender", "--daily-usd", "1")
    idle = create("--name", "idle")

    async def spend() -> None:
        ledger = Ledger(ledger_url())
        try:
            now = ledger.clock()
            held = await ledger.reserve(
                provider="p", model="m", amount_usd=0.5, ts=now, virtual_key=spender["id"]
            )
            ledger.record(
                UsageRecord(
                    ts=now, provider="p", model="m", cost_usd=0.25, virtual_key=spender["id"]
                ),
                held,
            )
        finally:
            await ledger.aclose()

    asyncio.run(spend())
    keys = {k["name"]: k for k in listed()}
    assert keys["spender"]["daily_spent_usd"] == 0.25
    assert keys["spender"]["monthly_spent_usd"] == 0.25
    assert keys["idle"]["daily_spent_usd"] == 0.0 and keys["idle"]["id"] == idle["id"]
    table = invoke("keys", "list").stdout
    assert "$0.2500" in table


def test_revoke_then_again_is_idempotent() -> None:
    key = create("--name", "ci")
    r = invoke("keys", "revoke", key["id"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"{key['id']} (ci) is revoked since ")

    again = invoke("keys", "revoke", key["id"], "--json")
    assert again.exit_code == 0, again.stderr
    out = json.loads(again.stdout)
    assert set(out) == KEY_FIELDS
    assert out["active"] is False and out["revoked_at"] is not None
    [row] = listed()
    assert row["revoked_at"] == out["revoked_at"] and row["active"] is False
    [line] = [ln for ln in invoke("keys", "list").stdout.splitlines() if key["id"] in ln]
    assert out["revoked_at"][:16].replace("T", " ") in line
    assert not re.search(r"│\s*-\s*│$", line)  # the revoked column is not "-"

    async def check() -> None:
        ledger = Ledger(ledger_url())
        try:
            assert await ledger.verify_key(key["key"]) is None
        finally:
            await ledger.aclose()

    asyncio.run(check())


def test_revoking_an_unknown_id_is_exit_2_with_one_line() -> None:
    create("--name", "ci")
    r = invoke("keys", "revoke", "vk_nope")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "polyroute: error: no virtual key 'vk_nope' (polyroute keys list shows them)"
    ]
    assert all(k["active"] for k in listed())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Missing option '--name'"),
        (["--name", "  "], "'--name': cannot be empty"),
        (["--name", "ci", "--daily-usd", "-1"], "'-1': must be 0 or more"),
        (["--name", "ci", "--monthly-usd", "nan"], "'nan': must be 0 or more"),
        (["--name", "ci", "--daily-usd", "lots"], "'lots' is not an amount in USD"),
        (["--name", "ci", "--models", " , "], "name at least one model"),
    ],
)
def test_bad_create_is_exit_2_and_creates_nothing(args: list[str], message: str) -> None:
    r = invoke("keys", "create", *args)
    assert r.exit_code == 2
    assert message in r.stderr
    assert listed() == []


def test_the_secret_is_in_no_file_under_polyroute_home() -> None:
    out = create("--name", "ci", "--daily-usd", "1")
    home = Path(os.environ["POLYROUTE_HOME"])
    files = [p for p in home.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert out["key"][12:].encode() not in path.read_bytes(), path
