"""The ledger on a PostgreSQL server that goes away and comes back (issue 15, point 4).

Each test here runs a server of its own (``PostgresServer``), so it can stop it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from polyroute.errors import LedgerError, LedgerUnavailableError
from polyroute.ledger import BudgetLimits, Ledger, UsageRecord, provider_scope
from polyroute.ledger._store import Store
from servers.postgres import PostgresServer

BUDGETED = provider_scope("a")


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    own = PostgresServer()
    try:
        yield own
    finally:
        own.remove()


@pytest.fixture
async def ledger(server: PostgresServer, tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = Ledger(
        server.create_database(),
        budgets={BUDGETED: BudgetLimits(daily_usd=100.0)},
        spool_dir=tmp_path / "spool",
        lease_ttl_s=0.4,  # renewals (and so spool drains) every 0.1 s
    )
    yield opened
    await opened.aclose()


def record(provider: str, request_id: str) -> UsageRecord:
    import time

    return UsageRecord(
        ts=time.time(),
        provider=provider,
        model="m1",
        prompt_tokens=10,
        completion_tokens=20,
        cost_usd=0.01,
        status="ok",
        request_id=request_id,
    )


async def request_ids(ledger: Ledger) -> list[str]:
    from sqlalchemy import select

    from polyroute.ledger._schema import usage

    def rows(store: Store) -> list[str]:
        with store.read() as c:
            return sorted(c.scalars(select(usage.c.request_id)))

    return await ledger.run(rows)


async def served(ledger: Ledger, provider: str, request_id: str) -> None:
    """One request as the gateway makes it: reserve, record, wait until the record is safe."""
    import time

    held = await ledger.reserve(provider=provider, model="m1", amount_usd=0.05, ts=time.time())
    ledger.record(record(provider, request_id), held)
    await ledger.durable()


async def eventually(check: object, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await check()  # type: ignore[operator]
            return
        except (LedgerError, AssertionError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_server_down_refuses_budgeted_spools_the_rest_and_recovers(
    server: PostgresServer, ledger: Ledger, tmp_path: Path
) -> None:
    await served(ledger, "a", "before")
    await served(ledger, "b", "before-b")
    assert await request_ids(ledger) == ["before", "before-b"]

    server.stop()
    # a budget governs provider a: refused, never admitted unbudgeted
    with pytest.raises(LedgerUnavailableError):
        await served(ledger, "a", "refused")
    # none governs b: served, its record spooled on this host until the server is back
    await served(ledger, "b", "down-1")
    await served(ledger, "b", "down-2")
    spooled = list((tmp_path / "spool").iterdir())
    assert len(spooled) == 1
    assert len(spooled[0].read_text().splitlines()) == 2
    with pytest.raises(LedgerUnavailableError):
        await request_ids(ledger)

    server.start()  # the same ledger, no restart: the spool drains, budgets admit again

    async def drained() -> None:
        assert await request_ids(ledger) == ["before", "before-b", "down-1", "down-2"]

    await eventually(drained)
    assert not any((tmp_path / "spool").iterdir())
    await eventually(lambda: served(ledger, "a", "after"))
    await ledger.flush()
    assert "after" in await request_ids(ledger)
    [status] = [s for s in await ledger.budgets() if s.scope == BUDGETED]
    assert status.daily.reserved_usd == 0.0
    assert status.daily.spent_usd == pytest.approx(0.02)


async def test_a_server_down_at_open_is_unavailable_until_it_starts(
    server: PostgresServer, tmp_path: Path
) -> None:
    url = server.create_database()
    server.stop()
    ledger = Ledger(url, spool_dir=tmp_path / "spool")
    try:
        with pytest.raises(LedgerUnavailableError, match="cannot open the ledger"):
            await ledger.usage()
        server.start()
        await eventually(ledger.usage)
        await served(ledger, "b", "after")
        assert await request_ids(ledger) == ["after"]
    finally:
        await ledger.aclose()


async def test_the_password_stays_out_of_the_error(tmp_path: Path) -> None:
    ledger = Ledger("postgresql://u:s3cret@127.0.0.1:9/db", spool_dir=tmp_path / "spool")
    try:
        with pytest.raises(LedgerUnavailableError) as caught:
            await ledger.usage()
        assert "s3cret" not in str(caught.value)
    finally:
        await ledger.aclose()


def test_the_gateway_answers_503_for_budgeted_requests_while_the_server_is_down(
    server: PostgresServer, tmp_path: Path
) -> None:
    """In each caller's API shape; unbudgeted requests are served and their records
    spooled; the gateway recovers without a restart."""
    import time

    import httpx

    from gateway.support import Server
    from polyroute.client import Polyroute
    from polyroute.config import Config, validate
    from polyroute.testing import Fleet

    url = server.create_database()
    budgeted = Ledger(url, spool_dir=tmp_path / "spool")
    asyncio.run(budgeted.set_budget(provider_scope("openai"), daily_usd=100.0))
    budgeted.close()
    home = tmp_path / "home"
    with Fleet(("openai", "anthropic")) as fleet:
        settings = fleet.settings(storage={"url": url}, health={"interval_s": 0})
        env = {**fleet.env(), "POLYROUTE_HOME": str(home)}
        pr = Polyroute(Config(validate(settings, "test"), "test", env))
        gw = Server(pr, admin_key=None)
        openai_body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        anthropic_body = {
            "model": "anthropic/claude-sonnet-4-6",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}],
        }
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=30) as http:
                assert http.post("/v1/chat/completions", json=openai_body).status_code == 200
                server.stop()
                r = http.post("/v1/chat/completions", json=openai_body)
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "ledger_unavailable"
                assert r.json()["error"]["type"] == "server_error"
                assert r.headers["retry-after"] == "2"
                r = http.post("/v1/messages", json={**anthropic_body, "model": "gpt-4o-mini"})
                assert r.status_code == 503, r.text
                assert r.json()["type"] == "error"
                assert r.json()["error"]["type"] == "api_error"
                calls = fleet["openai"].calls
                # Anthropic's provider has no budget: served, recorded in the spool
                r = http.post("/v1/messages", json=anthropic_body)
                assert r.status_code == 200, r.text
                assert fleet["openai"].calls == calls  # no budgeted call went out unbudgeted
                [spool] = (home / "spool").iterdir()
                assert len(spool.read_text().splitlines()) == 1

                server.start()
                deadline = time.monotonic() + 15
                while (r := http.post("/v1/chat/completions", json=openai_body)).status_code != 200:
                    assert r.status_code == 503 and time.monotonic() < deadline, r.text
                    time.sleep(0.1)
                while spool.exists():
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        finally:
            gw.stop()
    check = Ledger(url, spool_dir=tmp_path / "spool")
    try:
        report = asyncio.run(check.usage(by="provider"))
        assert {row.key: row.requests for row in report.rows} == {"openai": 2, "anthropic": 1}
    finally:
        check.close()


def test_every_command_works_against_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """usage, budget set/show/analyze/optimize/history, keys create/list/revoke and bench,
    on a config whose [storage] url is a PostgreSQL database."""
    import json

    from click.testing import CliRunner

    from polyroute.cli import cli
    from polyroute.testing import Fleet

    def run(*args: str) -> str:
        r = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
        assert r.exit_code == 0, (args, r.stdout, r.stderr)
        return r.stdout

    (tmp_path / "suite.toml").write_text(
        '[[case]]\nid = "capital"\ntask_type = "simple"\n'
        'prompt = "What is the capital of France?"\nexpected_tokens = 10\n'
        'grader = { contains = "Paris" }\n'
    )
    with Fleet(("openai", "ollama"), reply="Paris, of course.") as fleet:
        config = tmp_path / "polyroute.toml"
        config.write_text(fleet.toml(price=(2.0, 8.0)) + f'\n[storage]\nurl = "{postgres_url}"\n')
        with pytest.MonkeyPatch.context() as m:
            m.setenv("POLYROUTE_SIM_KEY", fleet.key)
            m.chdir(tmp_path)
            bench = json.loads(
                run(
                    "bench",
                    "suite.toml",
                    "--providers",
                    "openai,ollama",
                    "--models",
                    "gpt-4o-mini,llama3.2:latest",
                    "--runs",
                    "1",
                    "--json",
                )
            )
            assert bench["status"] == "finished" and bench["measured"] == 2
            again = json.loads(
                run(
                    "bench",
                    "suite.toml",
                    "--providers",
                    "openai",
                    "--models",
                    "gpt-4o-mini",
                    "--runs",
                    "1",
                    "--compare",
                    str(bench["run_id"]),
                    "--json",
                )
            )  # the first run's results, read back to compare with
            assert again["run_id"] == bench["run_id"] + 1 and again["compare"]

            key = json.loads(run("keys", "create", "--name", "ci", "--daily-usd", "2", "--json"))
            assert [k["id"] for k in json.loads(run("keys", "list", "--json"))["keys"]] == [
                key["id"]
            ]
            run("keys", "revoke", key["id"])
            [listed] = json.loads(run("keys", "list", "--json"))["keys"]
            assert listed["revoked_at"] is not None

            run("budget", "set", "openai", "--daily", "5", "--monthly", "100")
            shown = json.loads(run("budget", "show", "--json"))
            assert "provider:openai" in json.dumps(shown)
            json.loads(run("budget", "analyze", "--json"))
            run("budget", "optimize", "--total", "200", "--min", "10", "--max", "150", "--apply")
            history = json.loads(run("budget", "history", "--json"))
            [change] = history["history"]
            assert change["source"] == "cli" and change["total_usd"] == 200.0
            usage = json.loads(run("usage", "--by", "provider", "--json"))
            assert "openai" in json.dumps(usage)


async def test_stored_responses_round_trip_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The Responses API's store writes on the driver's cursor: psycopg's SQL, not SQLite's."""
    import time

    from polyroute.ledger._responses import ResponseStore, StoredResponse

    ledger = Ledger(postgres_url, spool_dir=tmp_path / "spool")
    try:
        store = ResponseStore(ledger)
        mine = StoredResponse("resp_1", "key1", time.time(), "m1", "[]", '{"id": "resp_1"}')
        store.put(mine)
        store.put(StoredResponse("resp_2", None, time.time(), "m1", "[1]", '{"id": "resp_2"}'))
        await store.flush()
        assert await store.get("resp_1", "key1") == mine
        assert await store.get("resp_1", "other") is None
        assert await store.delete("resp_2", None)
        assert await store.get("resp_2", None) is None
    finally:
        await ledger.aclose()


async def test_a_hold_whose_commit_was_lost_is_released_once_the_server_answers(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops as the reservation commits: the caller got a 503, so a hold
    that did commit must not sit on the budget until its 15-minute expiry."""
    import time
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    original = Store.driver_write  # the reservation's transaction
    lose_next = [False]

    @contextmanager
    def driver_write(store: Store) -> Iterator[object]:
        with original(store) as cur:
            yield cur
        if lose_next[0]:  # committed, but the reply never came back
            lose_next[0] = False
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(Store, "driver_write", driver_write)
    ledger = Ledger(
        postgres_url,
        budgets={BUDGETED: BudgetLimits(daily_usd=1.0)},
        spool_dir=tmp_path / "spool",
        lease_ttl_s=0.4,
    )
    try:
        await ledger.usage()  # open
        lose_next[0] = True
        with pytest.raises(LedgerUnavailableError):
            await ledger.reserve(provider="a", model="m1", amount_usd=0.8, ts=time.time())

        async def released() -> None:
            [status] = [s for s in await ledger.budgets() if s.scope == BUDGETED]
            assert status.daily.reserved_usd == 0.0

        await eventually(released, 5)
        held = await ledger.reserve(provider="a", model="m1", amount_usd=0.8, ts=time.time())
        assert held.targets
    finally:
        await ledger.aclose()


async def test_a_server_that_never_answers_fails_the_open_instead_of_stalling(
    tmp_path: Path,
) -> None:
    """A port that takes the connection and says nothing (a host gone quiet): the connect
    gives up after its timeout and callers get LedgerUnavailableError."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        ledger = Ledger(f"postgresql://u@127.0.0.1:{port}/db", spool_dir=tmp_path / "spool")
        try:
            with pytest.raises(LedgerUnavailableError, match="cannot open the ledger"):
                await asyncio.wait_for(ledger.usage(), 60)
        finally:
            await ledger.aclose()


async def test_while_the_server_is_down_callers_fail_at_once_without_a_connect_each(
    server: PostgresServer, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host gone quiet would make every budgeted request wait out a connect timeout:
    after a failed connect, the next try comes ``retry_s`` later."""
    import psycopg

    await served(ledger, "a", "before")
    connects: list[object] = []
    real = psycopg.connect

    def counting(*args: object, **kw: object) -> object:
        connects.append(args)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg, "connect", counting)

    def wait_long(store: Store) -> None:
        store.retry_s = 3600.0

    await ledger.run(wait_long)
    server.stop()
    for i in range(5):
        with pytest.raises(LedgerUnavailableError):
            await served(ledger, "a", f"refused-{i}")
    assert len(connects) == 1  # the first reconnect; the others failed without trying

    def retry_now(store: Store) -> None:
        store.retry_s, store._retry_at = 1.0, 0.0

    await ledger.run(retry_now)
    server.start()
    await eventually(lambda: served(ledger, "a", "after"))
