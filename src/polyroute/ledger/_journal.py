"""The ledger's write-ahead journal: a reply's record is durable before its last byte.

Under durability ``"answered"``, :meth:`Ledger.record` appends the record to
this process's journal before it returns: one ``os.write`` of one line to a
file opened ``O_APPEND``, without fsync. Like SQLite's WAL under
``synchronous=NORMAL`` (how the ledger opens the database), that survives the
process being killed, not the machine losing power, and costs a few
microseconds instead of a transaction on the request's path (``bench/ledger.py``
section 4, ``bench/gateway.py``). The database thread then writes records in
batches as under ``"batched"``; each batch's transaction also stores how far
into the journal it reached (``ledger_journal``: owner, seq), so a replay
writes exactly what the database lacks.

Files, in ``<database>.journal/`` (0700): ``<owner>.lock``, held with
``flock`` for the life of the ledger, and segments ``<owner>.<n>.jsonl`` of at
most about ``segment_bytes``, removed once the database holds every record in
them. A lock that can be taken belongs to a process that died (the kernel drops
``flock`` locks with their process, ``kill -9`` included): any ledger opening
the database, or sweeping every minute, replays that journal and removes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from operator import attrgetter
from pathlib import Path

from polyroute.ledger._records import Reservation, UsageRecord
from polyroute.providers._json import dumps_ascii

SettleItem = tuple[UsageRecord, Reservation | None]
SEGMENT_BYTES = 8 * 1024 * 1024
_VALUES = attrgetter(*(f.name for f in fields(UsageRecord)))
"""A record's values in its own field order (``decode`` passes them back positionally; a
field added to the record goes last, so older lines read with its default)."""
_SEGMENT = re.compile(r"^(?P<owner>[0-9a-f]{1,40})\.(?P<n>\d{1,9})\.jsonl$")


def journal_dir(database: str) -> Path:
    """Where the journals of the SQLite file ``database`` live."""
    return Path(database + ".journal")


_STDLIB = json.JSONEncoder(separators=(",", ":")).encode


def encode_bytes(item: SettleItem, seq: int | None = None) -> bytes:
    """One journal (or spill file) line, without its newline, UTF-8: msgspec's where it
    means what the stdlib's does (:func:`dumps_ascii`; the stdlib's ``NaN`` reads back as
    itself, msgspec's ``null`` would not), else the stdlib's, as before."""
    rec, res = item
    reservation = None if res is None else [res.id, res.amount_usd, res.targets]
    values = [seq, *_VALUES(rec), reservation]
    line = dumps_ascii(values, values.count(None))
    return line if line is not None else _STDLIB(values).encode()


def encode(item: SettleItem, seq: int | None = None) -> str:
    """One journal (or spill file) line, without its newline."""
    return encode_bytes(item, seq).decode()


def decode(line: str) -> tuple[int | None, SettleItem]:
    """``(seq, item)`` of a line :func:`encode` wrote; :class:`ValueError` for anything else
    (a line torn by a full disk, or edited by hand). Fields added later come last, before the
    reservation, so a line written before them reads with their defaults."""
    try:
        seq, *fields, res = json.loads(line)
        reservation = None
        if res is not None:
            rid, amount, targets = res
            reservation = Reservation(str(rid), float(amount), tuple((s, p) for s, p in targets))
        return seq, (UsageRecord(*fields), reservation)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a ledger journal line: {exc}") from None


class Journal:
    """This process's journal. :meth:`append` runs on the callers' threads (the ledger
    serialises them); :meth:`committed` on the database thread."""

    def __init__(self, directory: Path, owner: str, segment_bytes: int = SEGMENT_BYTES) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)  # beside the database: never its parents
        self.directory = directory
        self.owner = owner
        self.segment_bytes = segment_bytes
        self._lock = os.open(directory / f"{owner}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise
        self._n = 0
        self._fd = self._open_segment()
        self._size = 0
        self.last_seq = 0
        """The last seq appended."""
        # segments rolled over, as (path, last seq in it): removed once that seq is committed
        self._full: deque[tuple[Path, int]] = deque()

    def _segment(self, n: int) -> Path:
        return self.directory / f"{self.owner}.{n}.jsonl"

    def _open_segment(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        return os.open(self._segment(self._n), flags, 0o600)

    def append(self, item: SettleItem, seq: int) -> None:
        """Make ``item`` survive this process; raises :class:`OSError` if the disk refuses."""
        data = encode_bytes(item, seq) + b"\n"
        if os.write(self._fd, data) != len(data):  # a full disk: the line is torn, not kept
            raise OSError(f"short write to the ledger journal {self._segment(self._n)}")
        self.last_seq = seq
        self._size += len(data)
        if self._size >= self.segment_bytes:
            self._full.append((self._segment(self._n), seq))
            self._n += 1
            fd, self._fd = self._fd, self._open_segment()
            os.close(fd)
            self._size = 0

    def committed(self, seq: int) -> None:
        """The database holds every record up to ``seq``: drop the segments that hold no other."""
        full = self._full
        while full and full[0][1] <= seq:
            path, _ = full.popleft()
            path.unlink(missing_ok=True)

    def close(self, keep: bool) -> None:
        """Stop journaling; with ``keep`` (records the database lacks) the files stay for a
        replay, else they go."""
        os.close(self._fd)
        if not keep:
            for n in range(self._n + 1):
                self._segment(n).unlink(missing_ok=True)
            (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        os.close(self._lock)  # drops the flock: a journal kept is now anyone's to replay


class DeadJournal:
    """The journal of a ledger that is gone, locked while it is replayed."""

    def __init__(self, directory: Path, owner: str, segments: list[Path]) -> None:
        self.directory = directory
        self.owner = owner
        self.segments = segments

    def entries(self) -> tuple[list[tuple[int, SettleItem]], list[str]]:
        """Its records with their seq, in order, and the lines that are not records."""
        good: list[tuple[int, SettleItem]] = []
        bad: list[str] = []
        for path in self.segments:
            try:
                text = path.read_text("utf-8", errors="replace")
            except FileNotFoundError:
                continue
            for line in text.splitlines():
                try:
                    seq, item = decode(line)
                except ValueError:
                    bad.append(line)
                    continue
                if isinstance(seq, int):
                    good.append((seq, item))
                else:
                    bad.append(line)
        return good, bad

    def keep_unreadable(self, lines: list[str]) -> None:
        """Set lines that are not records aside, for a person to look at."""
        path = self.directory / f"{self.owner}.unreadable"
        with path.open("a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    def remove(self) -> None:
        for path in self.segments:
            path.unlink(missing_ok=True)
        (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)


@contextmanager
def dead_journals(directory: Path) -> Iterator[list[DeadJournal]]:
    """The journals in ``directory`` whose ledger is gone, each locked until the block ends
    (so two replayers never take the same one; a live ledger's lock cannot be taken)."""
    owners: dict[str, list[tuple[int, Path]]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        names = []
    for name in names:
        m = _SEGMENT.match(name)
        if m:
            owners.setdefault(m["owner"], []).append((int(m["n"]), directory / name))
        elif name.endswith(".lock"):
            owners.setdefault(name.removesuffix(".lock"), [])
    held: list[int] = []
    dead: list[DeadJournal] = []
    try:
        for owner, segments in owners.items():
            fd = _take(directory / f"{owner}.lock")
            if fd is None:
                continue
            held.append(fd)
            dead.append(DeadJournal(directory, owner, [p for _, p in sorted(segments)]))
        yield dead
    finally:
        for fd in held:
            os.close(fd)


def _take(lock: Path) -> int | None:
    """The lock file's descriptor, locked; ``None`` while its owner lives."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
