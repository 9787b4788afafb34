"""Virtual keys in the ledger: create, verify, revoke, hashed storage, budgets, migration."""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.dialects import sqlite

from polyroute.errors import BudgetExceeded, CredentialError, UnknownKeyError
from polyroute.ledger import BudgetLimits, Ledger, UsageRecord, VirtualKey, key_scope
from polyroute.ledger._schema import (
    MIGRATIONS,
    budgets,
    migrations_table,
    usage,
    virtual_keys,
)
from polyroute.ledger._store import Store

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
SECRET = re.compile(r"sk-pr-[A-Za-z0-9_-]{43}")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Make = Callable[..., Ledger]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "l.db"


SQLITE_FILE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For a test about SQLite's file (``db_path``); the others run on PostgreSQL too."""


@pytest.fixture
async def make(db_url: str) -> AsyncIterator[Make]:
    """Open ledgers on the test's database (``db_url``: SQLite's ``db_path``, or
    PostgreSQL); every one is closed at the end."""
    opened: list[Ledger] = []

    def _make(**kw: Any) -> Ledger:
        kw.setdefault("clock", Clock())
        ledger = Ledger(db_url, **kw)
        opened.append(ledger)
        return ledger

    yield _make
    for ledger in opened:
        await ledger.aclose()


def key_rows(store: Store) -> list[dict[str, Any]]:
    with store.read() as c:
        return [dict(r) for r in c.execute(select(virtual_keys)).mappings()]


async def reserve(ledger: Ledger, amount: float, key: str | None) -> Any:
    return await ledger.reserve(
        provider="a", model="m1", amount_usd=amount, ts=ledger.clock(), virtual_key=key
    )


# -- create, verify, revoke --------------------------------------------------------


async def test_create_then_verify_returns_the_key(make: Make) -> None:
    ledger = make()
    key, secret = await ledger.create_key("ci", models=["gpt-4o"])
    assert re.fullmatch(r"vk_[0-9a-f]{10}", key.id)
    assert SECRET.fullmatch(secret)
    assert key.prefix == secret[:12] and key.prefix.startswith("sk-pr-")
    assert (key.name, key.models, key.created_at) == (
        "ci",
        ("gpt-4o",),
        datetime.fromtimestamp(T0, UTC),
    )
    assert key.active and key.revoked_at is None
    assert (key.daily_usd, key.monthly_usd) == (None, None)
    assert await ledger.verify_key(secret) == key
    assert await ledger.keys() == [key]


async def test_each_key_gets_its_own_id_and_secret(make: Make) -> None:
    ledger = make()
    made = [await ledger.create_key(f"k{i}") for i in range(5)]
    assert len({k.id for k, _ in made}) == len({s for _, s in made}) == 5
    for key, secret in made:
        assert await ledger.verify_key(secret) == key


@pytest.mark.parametrize(
    "wrong",
    [
        "",
        "sk-pr-",  # the prefix alone
        "Bearer sk-pr-abc",
        "sk-openai-0123456789abcdef",
        "sk-pr-" + "A" * 43,  # well formed, never issued
    ],
)
async def test_a_wrong_secret_verifies_to_none(make: Make, wrong: str) -> None:
    ledger = make()
    _, secret = await ledger.create_key("ci")
    assert await ledger.verify_key(wrong) is None
    assert await ledger.verify_key(secret[:-1]) is None  # one character short
    assert await ledger.verify_key(secret + "x") is None


async def test_revoked_key_no_longer_verifies_and_revoking_again_keeps_the_first_time(
    make: Make,
) -> None:
    clock = Clock()
    ledger = make(clock=clock)
    key, secret = await ledger.create_key("ci")
    clock.now += 1  # keys are listed oldest first
    other, other_secret = await ledger.create_key("other")
    clock.now += 60
    revoked = await ledger.revoke_key(key.id)
    assert revoked.revoked_at == datetime.fromtimestamp(T0 + 61, UTC) and not revoked.active
    assert await ledger.verify_key(secret) is None
    assert await ledger.verify_key(other_secret) == other  # the others still work

    clock.now += 60
    again = await ledger.revoke_key(key.id)
    assert again == revoked  # idempotent: the first revoked_at stays
    assert await ledger.keys() == [revoked, other]
    assert await ledger.keys(include_revoked=False) == [other]


async def test_revoking_an_unknown_id_is_a_clear_error(make: Make) -> None:
    ledger = make()
    await ledger.create_key("ci")
    with pytest.raises(UnknownKeyError) as info:
        await ledger.revoke_key("vk_0000000000")
    assert info.value.key_id == "vk_0000000000"
    assert str(info.value) == "no virtual key 'vk_0000000000' (polyroute keys list shows them)"
    assert isinstance(info.value, CredentialError)  # the CLI's exit 2
    assert all(k.active for k in await ledger.keys())  # nothing else was touched


async def test_name_is_stripped_and_models_deduplicated(make: Make) -> None:
    ledger = make()
    key, _ = await ledger.create_key("  ci bot ", models=(" gpt-4o", "claude", "gpt-4o "))
    assert key.name == "ci bot"
    assert key.models == ("gpt-4o", "claude")
    [listed] = await ledger.keys()
    assert listed == key


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"name": ""}, ValueError, "needs a name"),
        ({"name": "  "}, ValueError, "needs a name"),
        ({"daily_usd": -0.01}, ValueError, "daily_usd must be 0 or more, up to 1,000,000,000 USD"),
        (
            {"monthly_usd": math.nan},
            ValueError,
            "monthly_usd must be 0 or more, up to 1,000,000,000 USD",
        ),
        (
            {"monthly_usd": math.inf},
            ValueError,
            "monthly_usd must be 0 or more, up to 1,000,000,000 USD",
        ),
        ({"models": ["gpt-4o", " "]}, ValueError, "model name cannot be empty"),
        ({"models": "gpt-4o"}, TypeError, "not one string"),
        ({"rpm": 0}, ValueError, "rpm is a whole number from 1 up"),
        ({"tpm": 2.5}, ValueError, "tpm is a whole number from 1 up"),
        ({"rpm": True}, ValueError, "rpm is a whole number from 1 up"),
    ],
)
async def test_bad_arguments_are_refused_and_nothing_is_written(
    make: Make, args: dict[str, Any], error: type[Exception], message: str
) -> None:
    ledger = make()
    args = dict(args)  # the parameter is shared by both backends' runs
    name = args.pop("name", "ci")
    with pytest.raises(error, match=message):
        await ledger.create_key(name, **args)
    assert await ledger.keys() == []


async def test_an_id_clash_draws_another_id(make: Make) -> None:
    ledger = make()
    first, _ = await ledger.create_key("first")
    ids = iter([first.id, first.id, "vk_00000000aa"])

    def create(store: Store) -> VirtualKey:
        return store.create_key(
            name="second",
            secret_hash="0" * 64,
            prefix="sk-pr-xxxxxx",
            models=(),
            limits=None,
            now=T0 + 1,
            new_id=lambda: next(ids),
        )

    second = await ledger.run(create)
    assert second.id == "vk_00000000aa"
    assert [k.id for k in await ledger.keys()] == [first.id, "vk_00000000aa"]


# -- VirtualKey ----------------------------------------------------------------------


def test_allows_any_model_when_none_listed_else_exactly_the_listed() -> None:
    when = datetime.fromtimestamp(T0, UTC)
    anything = VirtualKey("vk_1", "a", "sk-pr-aaaaaa", (), when)
    assert anything.allows("gpt-4o") and anything.allows("openai-main/gpt-4o")
    some = VirtualKey("vk_2", "b", "sk-pr-bbbbbb", ("gpt-4o", "auto"), when)
    assert some.allows("gpt-4o") and some.allows("auto")
    for refused in ("gpt-4o-mini", "GPT-4o", "openai-main/gpt-4o", "auto:cost", ""):
        assert not some.allows(refused), refused


def test_as_dict_shape() -> None:
    key = VirtualKey(
        "vk_1",
        "ci",
        "sk-pr-aaaaaa",
        ("gpt-4o",),
        datetime.fromtimestamp(T0, UTC),
        datetime.fromtimestamp(T0 + 90.5, UTC),
        1.5,
        None,
    )
    assert key.as_dict() == {
        "id": "vk_1",
        "name": "ci",
        "prefix": "sk-pr-aaaaaa",
        "models": ["gpt-4o"],
        "daily_usd": 1.5,
        "monthly_usd": None,
        "rpm": None,
        "tpm": None,
        "created_at": "2026-03-10T12:00:00+00:00",
        "revoked_at": "2026-03-10T12:01:30+00:00",
        "active": False,
    }


# -- stored hashed -------------------------------------------------------------------


@SQLITE_FILE
async def test_only_the_hash_is_stored_and_the_secret_is_nowhere(make: Make, db_path: Path) -> None:
    ledger = make()
    key, secret = await ledger.create_key("ci", daily_usd=1.0, models=["gpt-4o"])
    random_part = secret.removeprefix("sk-pr-")
    [row] = await ledger.run(key_rows)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["prefix"] == secret[:12]
    listed = await ledger.keys()
    for shown in (repr(key), str(key), repr(key.as_dict()), repr(listed), repr(row)):
        assert random_part[6:] not in shown  # the prefix's 6 random characters are public
    await ledger.aclose()

    files = [p for p in db_path.parent.rglob("*") if p.is_file()]
    assert db_path in files
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data and random_part[6:].encode() not in data, path


@SQLITE_FILE
async def test_verify_is_one_lookup_in_the_unique_hash_index(make: Make) -> None:
    ledger = make()
    await ledger.create_key("ci", daily_usd=1.0)
    sql = str(
        (await ledger.run(lambda s: s.sql.active_key_by_hash))
        .params(b_hash="0" * 64)
        .compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    )
    text = " | ".join(await ledger.run(lambda s: s.explain(sql)))
    assert "SEARCH virtual_keys USING INDEX ux_virtual_keys_secret_hash" in text, text
    assert "SCAN" not in text, text  # the budget join is by primary key too
    with sqlite3.connect(ledger.url.removeprefix("sqlite:///")) as db:
        [(unique,)] = db.execute(
            "SELECT \"unique\" FROM pragma_index_list('virtual_keys') "
            "WHERE name = 'ux_virtual_keys_secret_hash'"
        ).fetchall()
    assert unique == 1


# -- budgets -------------------------------------------------------------------------


async def test_key_budget_is_stored_under_its_scope_and_refuses_reservations_over_it(
    make: Make,
) -> None:
    ledger = make()
    key, _ = await ledger.create_key("ci", daily_usd=1.0, monthly_usd=5.0)
    other, _ = await ledger.create_key("free")
    assert (key.daily_usd, key.monthly_usd) == (1.0, 5.0)

    statuses = {s.scope: s for s in await ledger.budgets()}
    assert statuses[key_scope(key.id)].limits == BudgetLimits(1.0, 5.0)
    assert statuses[key_scope(key.id)].source == "cli"
    assert key_scope(other.id) not in statuses  # no budget given: no row

    held = await reserve(ledger, 0.6, key.id)
    assert (key_scope(key.id), "day:2026-03-10") in held.targets
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, 0.6, key.id)
    assert (info.value.scope, info.value.period) == (key_scope(key.id), "daily")
    # the key's budget binds only requests made with it
    assert (await reserve(ledger, 0.6, other.id)).targets == ()
    assert (await reserve(ledger, 0.6, None)).targets == ()

    ledger.record(
        UsageRecord(ts=T0, provider="a", model="m1", cost_usd=0.25, virtual_key=key.id), held
    )
    status = {s.scope: s for s in await ledger.budgets()}[key_scope(key.id)]
    assert (status.daily.spent_usd, status.daily.reserved_usd) == (0.25, 0.0)
    await reserve(ledger, 0.7, key.id)  # 0.25 spent + 0.7 fits $1 now


async def test_a_new_key_budget_applies_at_once_despite_cached_budgets(make: Make) -> None:
    ledger = make(budget_refresh_s=3600)  # budgets read once, then cached for an hour
    assert (await reserve(ledger, 5.0, None)).targets == ()  # warms the cache: no limits
    key, _ = await ledger.create_key("ci", daily_usd=0.5)
    with pytest.raises(BudgetExceeded):
        await reserve(ledger, 0.6, key.id)


async def test_budgets_set_later_are_joined_into_keys(make: Make) -> None:
    ledger = make()
    key, secret = await ledger.create_key("ci", monthly_usd=3.0)
    assert (key.daily_usd, key.monthly_usd) == (None, 3.0)
    await ledger.set_budget(key_scope(key.id), daily_usd=0.5)
    [listed] = await ledger.keys()
    assert (listed.daily_usd, listed.monthly_usd) == (0.5, 3.0)
    verified = await ledger.verify_key(secret)
    assert verified is not None and (verified.daily_usd, verified.monthly_usd) == (0.5, 3.0)


# -- migration -----------------------------------------------------------------------


@SQLITE_FILE
async def test_a_new_database_records_every_migration(make: Make, db_path: Path) -> None:
    ledger = make()
    assert await ledger.run(lambda s: s.applied) == [name for name, _ in MIGRATIONS]
    with sqlite3.connect(db_path) as db:
        names = db.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
    assert names == [(name,) for name, _ in MIGRATIONS]


@SQLITE_FILE
async def test_an_0001_database_is_upgraded_in_place(make: Make, db_path: Path) -> None:
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:  # a database as the previous release left it
        migrations_table.create(conn)
        MIGRATIONS[0][1](conn)
        conn.execute(migrations_table.insert().values(name="0001_initial", applied_at=T0))
        conn.execute(
            budgets.insert().values(
                scope="global",
                daily_usd=2.0,
                monthly_usd=None,
                alert_percents="[50]",
                updated_at=T0,
            )
        )
        conn.execute(
            usage.insert().values(
                ts=T0,
                day="2026-03-10",
                month="2026-03",
                provider="a",
                model="m1",
                prompt_tokens=1,
                completion_tokens=2,
                cached_tokens=0,
                cost_nusd=1000,
                latency_ms=5.0,
                status="ok",
            )
        )
    engine.dispose()

    ledger = make()
    assert await ledger.run(lambda s: s.applied) == [name for name, _ in MIGRATIONS[1:]]
    report = await ledger.usage()
    assert report.requests == 1  # the old rows are still there
    [g] = [s for s in await ledger.budgets() if s.scope == "global"]
    assert g.limits == BudgetLimits(2.0, None, (50,))
    key, secret = await ledger.create_key("after the upgrade", daily_usd=1.0)
    assert await ledger.verify_key(secret) == key
    await ledger.aclose()

    again = make()
    assert await again.run(lambda s: s.applied) == []
    with sqlite3.connect(db_path) as db:
        names = db.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
    assert names == [(name,) for name, _ in MIGRATIONS]


async def test_a_key_made_by_another_process_is_budgeted_from_its_first_request(
    make: Make,
) -> None:
    serving, cli = make(), make()  # a gateway's ledger and a `keys create` process
    assert (await reserve(serving, 0.01, None)).targets == ()  # budgets read and cached: none
    key, secret = await cli.create_key("late", daily_usd=0.5)
    verified = await serving.verify_key(secret)  # the gateway checks the key first
    assert verified is not None and verified.id == key.id
    with pytest.raises(BudgetExceeded):
        await reserve(serving, 0.75, key.id)
    assert (await reserve(serving, 0.25, key.id)).targets  # held against the key's budget
    assert await serving.key(key.id) == verified  # the library's way in, the same


async def test_forgetting_budgets_makes_the_next_reservation_read_them(make: Make) -> None:
    serving, cli = make(), make()
    assert (await reserve(serving, 0.01, None)).targets == ()
    await cli.set_budget("global", daily_usd=0.1)
    serving.forget_budgets()  # as another replica's announcement does
    with pytest.raises(BudgetExceeded):
        await reserve(serving, 0.5, None)
