"""Benchmark runs and samples in the ledger's database (tables of migration 0007_bench).

Every query runs on the ledger's own database thread (:meth:`Ledger.run`), so
the bench shares its connection, its write lock and its durability.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from polyroute.benchmark._model import RunInfo, RunStatus, Sample, SampleKey
from polyroute.errors import UnknownRunError

if TYPE_CHECKING:
    from polyroute.ledger import Ledger
    from polyroute.ledger._store import Store

_SAMPLE_FIELDS = tuple(f.name for f in fields(Sample))


class BenchStore:
    """Runs and their samples, stored through ``ledger`` (same database)."""

    def __init__(self, ledger: Ledger, *, clock: Any = time.time) -> None:
        self.ledger = ledger
        self.clock = clock

    async def start_run(
        self,
        *,
        suites: Sequence[str],
        runs: int,
        concurrency: int,
        pairs: Sequence[tuple[str, str]],
        max_cost_usd: float | None,
    ) -> RunInfo:
        """A new run, ``running`` from now."""
        from polyroute.ledger._schema import bench_runs

        now = self.clock()
        values = {
            "suites": json.dumps(list(suites)),
            "started_at": now,
            "finished_at": None,
            "runs": runs,
            "concurrency": concurrency,
            "pairs": json.dumps([list(p) for p in pairs]),
            "max_cost_usd": max_cost_usd,
            "status": "running",
        }

        def job(store: Store) -> int:
            with store.write() as c:
                key = c.execute(bench_runs.insert().values(**values)).inserted_primary_key
                assert key is not None  # an insert of one row
                return int(key[0])

        run_id = await self.ledger.run(job)
        return await self.run(run_id)

    async def add(self, samples: Iterable[Sample]) -> None:
        """Store samples (one transaction); a sample stored again replaces the old one."""
        from polyroute.ledger._schema import bench_samples

        rows = [_sample_row(s) for s in samples]
        if not rows:
            return

        def job(store: Store) -> None:
            stmt = store.insert(bench_samples)
            keys = ("run_id", "provider", "model", "case_id", "repeat")
            update = {k: stmt.excluded[k] for k in rows[0] if k not in keys}
            with store.write() as c:
                c.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update), rows)

        await self.ledger.run(job)

    async def finish(self, run_id: int, status: RunStatus) -> RunInfo:
        """Mark the run ``finished`` or ``interrupted`` (a resumed run is ``running`` again)."""
        from sqlalchemy import update

        from polyroute.ledger._schema import bench_runs

        finished = None if status == "running" else self.clock()

        def job(store: Store) -> int:
            with store.write() as c:
                stmt = (
                    update(bench_runs)
                    .where(bench_runs.c.id == run_id)
                    .values(status=status, finished_at=finished)
                )
                return int(c.execute(stmt).rowcount)

        if not await self.ledger.run(job):
            raise UnknownRunError(f"no benchmark run {run_id}")
        return await self.run(run_id)

    async def run(self, run_id: int) -> RunInfo:
        """Raises :class:`UnknownRunError` for an id no run has."""
        found = await self._runs(run_id)
        if not found:
            raise UnknownRunError(f"no benchmark run {run_id} (polyroute bench --json lists ids)")
        return found[0]

    async def latest_run(self) -> RunInfo | None:
        found = await self._runs(None, latest=True)
        return found[0] if found else None

    async def runs(self) -> list[RunInfo]:
        """Every run, oldest first."""
        return await self._runs(None)

    async def _runs(self, run_id: int | None, *, latest: bool = False) -> list[RunInfo]:
        from sqlalchemy import select

        from polyroute.ledger._schema import bench_runs

        stmt = select(bench_runs).order_by(bench_runs.c.id.desc() if latest else bench_runs.c.id)
        if run_id is not None:
            stmt = stmt.where(bench_runs.c.id == run_id)
        if latest:
            stmt = stmt.limit(1)

        def job(store: Store) -> list[RunInfo]:
            with store.read() as c:
                return [_run_info(row._mapping) for row in c.execute(stmt)]

        return await self.ledger.run(job)

    async def samples(self, run_id: int) -> list[Sample]:
        """The run's samples, by pair, case and repeat."""
        from sqlalchemy import select

        from polyroute.ledger._schema import bench_samples as t

        await self.run(run_id)
        stmt = (
            select(*(t.c[name] for name in _SAMPLE_FIELDS))
            .where(t.c.run_id == run_id)
            .order_by(t.c.provider, t.c.model, t.c.case_id, t.c.repeat)
        )

        def job(store: Store) -> list[Sample]:
            with store.read() as c:
                return [_sample(row._mapping) for row in c.execute(stmt)]

        return await self.ledger.run(job)

    async def done(self, run_id: int) -> set[SampleKey]:
        """(provider, model, case_id, repeat) of every stored sample: what a resume skips."""
        from sqlalchemy import select

        from polyroute.ledger._schema import bench_samples as t

        stmt = select(t.c.provider, t.c.model, t.c.case_id, t.c.repeat).where(t.c.run_id == run_id)

        def job(store: Store) -> set[SampleKey]:
            with store.read() as c:
                return {(p, m, case, int(r)) for p, m, case, r in c.execute(stmt)}

        return await self.ledger.run(job)


def _sample_row(s: Sample) -> dict[str, Any]:
    row = {name: getattr(s, name) for name in _SAMPLE_FIELDS}
    row["ok"] = int(s.ok)
    row["passed"] = None if s.passed is None else int(s.passed)
    return row


def _sample(row: Any) -> Sample:
    values = {name: row[name] for name in _SAMPLE_FIELDS}
    values["ok"] = bool(values["ok"])
    values["passed"] = None if values["passed"] is None else bool(values["passed"])
    return Sample(**values)


def _time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _run_info(row: Any) -> RunInfo:
    started = _time(row["started_at"])
    assert started is not None  # NOT NULL
    return RunInfo(
        id=int(row["id"]),
        suites=tuple(json.loads(row["suites"])),
        started_at=started,
        finished_at=_time(row["finished_at"]),
        runs=int(row["runs"]),
        concurrency=int(row["concurrency"]),
        pairs=tuple((p, m) for p, m in json.loads(row["pairs"])),
        max_cost_usd=row["max_cost_usd"],
        status=row["status"],
    )
