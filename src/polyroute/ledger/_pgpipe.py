"""One PostgreSQL transaction as one libpq pipeline, on psycopg's connection.

psycopg's own pipeline mode sends each statement as it is executed: every ``execute``
polls the socket and writes to it, releasing the interpreter lock each time. The
ledger's thread then waits for the lock again behind a busy event loop, up to the
switch interval per statement, and a budgeted request cost it about 12 writes and 22
polls (``strace``, the shared-state gateway at 32 connections). Here statements are
queued in libpq's buffer and go out together when a result is first needed, and at
the commit. A reservation reads nothing before its commit (its holds fail on purpose
when refused, see :meth:`Pipe.execute`): it writes once and waits once, and so does a
settle.

Statements are prepared once per connection under names of our own, their
parameters sent as text (PostgreSQL infers each type from its place, and SQLAlchemy's
compiler casts the ambiguous ones), their results read by column type. The pipeline
is entered and left inside the transaction, so psycopg finds its connection idle
afterwards, as it left it.
"""

from __future__ import annotations

import itertools
import re
import select
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq

Rows = list[tuple[Any, ...]]

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


@dataclass(frozen=True, slots=True)
class _Named:
    name: bytes
    order: tuple[str, ...] | None
    """The parameters' names in ``$n`` order; ``None``: they come as a sequence."""


@dataclass
class Statements:
    """The statements prepared on one connection (the ledger's: one at a time)."""

    pgconn: Any
    named: dict[str, _Named] = field(default_factory=dict)
    serial: Iterator[int] = field(default_factory=itertools.count)


def numbered(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """psycopg's ``%(name)s`` / ``%s`` placeholders as PostgreSQL's ``$n``."""
    names: list[str] = []
    positional = 0

    def number(m: re.Match[str]) -> str:
        nonlocal positional
        if m.group(0) == "%%":
            return "%"
        if (name := m.group(1)) is None:
            positional += 1
            return f"${positional}"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    out = _PLACEHOLDER.sub(number, sql)
    if names and positional:
        raise ValueError(f"named and positional parameters in one statement: {sql!r}")
    return out, (tuple(names) if names else None)


def _float(v: float) -> bytes:
    return repr(v).encode()


_TEXT: dict[type, Callable[[Any], bytes]] = {
    str: str.encode,
    int: lambda v: b"%d" % v,
    float: _float,
    bool: lambda v: b"t" if v else b"f",
}
_LOAD: dict[int, Callable[[bytes], Any]] = {
    16: lambda b: b == b"t",  # bool
    20: int,  # int8
    21: int,  # int2
    23: int,  # int4
    700: float,  # float4
    701: float,  # float8
    25: bytes.decode,  # text
    1043: bytes.decode,  # varchar
}


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        return _TEXT[type(value)](value)
    except KeyError:
        raise TypeError(f"the ledger sends no {type(value).__name__} to PostgreSQL") from None


class _Slot:
    """A statement's place in the pipeline: its result once read."""

    __slots__ = ("prepares", "refusal", "result")

    def __init__(
        self, prepares: tuple[str, _Named] | None = None, refusal: Exception | None = None
    ) -> None:
        self.result: Any = None
        self.prepares = prepares
        """(SQL, name) a ``Parse`` makes: known on the connection once it succeeded."""
        self.refusal = refusal
        """Raised in place of the statement's failure on purpose (see :meth:`Pipe.execute`)."""


class Pipe:
    """A write transaction's statements on one connection, queued and sent together.

    :meth:`execute` returns a function that reads the statement's rows; the first such
    read sends everything queued so far and waits for it. An error the server returns
    comes out of that read, or of :meth:`commit`, as psycopg's exception for its
    SQLSTATE (a connection lost as :class:`psycopg.OperationalError`)."""

    def __init__(self, statements: Statements) -> None:
        self._pg = statements.pgconn
        self._statements = statements
        self._slots: deque[_Slot] = deque()
        self._preparing: dict[str, _Named] = {}  # queued here, not yet known to have worked
        self._asked = True  # no statement queued since the server was last asked to answer
        self._error: Exception | None = None
        self._poll = select.poll()
        self._poll.register(self._pg.socket, select.POLLIN)
        self._pg.enter_pipeline_mode()
        self._command(b"BEGIN")

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        refusal: Exception | None = None,
    ) -> Callable[[], Rows]:
        """Queue ``sql`` (psycopg's placeholders) with ``params``; rows when called.

        ``refusal``: raised, where the first error would be, if this statement fails with
        an invalid text representation (SQLSTATE 22P02: a text of its own cast to a
        number): a statement that fails on purpose when the transaction must not go on
        aborts it on the server, so its caller need not read its answer before queuing the
        rest, the commit included."""
        statements = self._statements
        named = statements.named.get(sql) or self._preparing.get(sql)
        if named is None:
            text, order = numbered(sql)
            named = self._preparing[sql] = _Named(b"polyroute_%d" % next(statements.serial), order)
            self._pg.send_prepare(named.name, text.encode())
            self._slots.append(_Slot(prepares=(sql, named)))
        if named.order is None:
            values = [_text(v) for v in params or ()]
        else:
            assert isinstance(params, Mapping)
            values = [_text(params[k]) for k in named.order]
        self._pg.send_query_prepared(named.name, values)
        slot = _Slot(refusal=refusal)
        self._slots.append(slot)
        self._asked = False
        return lambda: self._rows(slot)

    def commit(self) -> None:
        self._command(b"COMMIT")
        self._sync()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Roll back, and read what is still owed so that the connection leaves pipeline
        mode. After an error the server skips the ROLLBACK too (up to the pipeline's end)
        and keeps the failed transaction open: the caller then rolls it back."""
        if self._pg.status == pq.ConnStatus.OK and self._pg.pipeline_status:
            self._command(b"ROLLBACK")
            self._sync()

    def _command(self, sql: bytes) -> None:
        self._pg.send_query_params(sql, None)
        self._slots.append(_Slot())
        self._asked = False

    def _sync(self) -> None:
        pg = self._pg
        pg.pipeline_sync()
        self._send()
        while self._slots:
            self._read()
        self._wait()
        sync = pg.get_result()
        if sync is None or sync.status != pq.ExecStatus.PIPELINE_SYNC:
            raise psycopg.OperationalError("the pipeline's end did not come back from the server")
        pg.exit_pipeline_mode()

    def _rows(self, slot: _Slot) -> Rows:
        if slot.result is None:
            if not self._asked:
                self._pg.send_flush_request()
                self._send()
                self._asked = True
            while slot.result is None:
                self._read()
        if self._error is not None:
            raise self._error
        res = slot.result
        loads = [_loader(res.ftype(c)) for c in range(res.nfields)]
        return [
            tuple(
                None if (v := res.get_value(r, c)) is None else load(v)
                for c, load in enumerate(loads)
            )
            for r in range(res.ntuples)
        ]

    def _read(self) -> None:
        """The next statement's result, into its slot (the first error is kept)."""
        pg = self._pg
        self._wait()
        res = pg.get_result()
        self._wait()  # the end of its results
        if res is None or pg.get_result() is not None:
            if pg.status != pq.ConnStatus.OK:
                lost = pg.error_message.decode(errors="replace").strip()
                raise psycopg.OperationalError(lost or "the connection to the server was lost")
            raise psycopg.OperationalError("a statement's result did not come back in order")
        slot = self._slots.popleft()
        slot.result = res
        if res.status in _OK:
            if slot.prepares is not None:
                sql, named = slot.prepares
                self._statements.named[sql] = named
        elif self._error is None:
            error = self._failure(res)
            if isinstance(error, psycopg.errors.InvalidSqlStatementName):
                # deallocated behind our back: this transaction fails, the next prepares anew
                self._statements.named.clear()
            refused = slot.refusal is not None and isinstance(
                error, psycopg.errors.InvalidTextRepresentation
            )
            self._error = slot.refusal if refused else error

    def _failure(self, res: Any) -> psycopg.Error:
        message = res.error_message.decode(errors="replace").strip()
        if self._pg.status != pq.ConnStatus.OK:
            return psycopg.OperationalError(message or "the connection to the server was lost")
        state = (res.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        try:
            cls = psycopg.errors.lookup(state)
        except KeyError:
            cls = psycopg.DatabaseError
        return cls(message)

    def _send(self) -> None:
        pg = self._pg
        while pg.flush():  # the socket's buffer is full: wait until it drains
            self._poll.modify(pg.socket, select.POLLIN | select.POLLOUT)
            self._poll.poll()
            pg.consume_input()
        self._poll.modify(pg.socket, select.POLLIN)

    def _wait(self) -> None:
        """Until libpq has the next result whole."""
        pg = self._pg
        while pg.is_busy():
            self._poll.poll()
            pg.consume_input()


def _loader(oid: int) -> Callable[[bytes], Any]:
    try:
        return _LOAD[oid]
    except KeyError:
        raise TypeError(f"the ledger reads no PostgreSQL type {oid}") from None
