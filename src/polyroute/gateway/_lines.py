"""The serving worker's log lines on stdout, written in batches.

``logging.StreamHandler`` writes and flushes each record: a system call per request for
the access log alone. :class:`LineBuffer` keeps lines and writes them at once, one write
``FLUSH_S`` after the first of them (or when ``LIMIT`` characters wait, or at once from a
thread without an event loop), and whatever waits at exit (``logging.shutdown`` flushes
every handler). A killed worker loses at most the last ``FLUSH_S`` of lines.

The access log's lines are already formatted: when a logger's only handler is a
:class:`LineBuffer` writing plain messages and nothing filters, :func:`direct` hands the
line straight to it, without a ``LogRecord`` (about 70k instructions a request, measured
with callgrind on a served request: a twentieth of the worker's work). Any other setup
(a handler or a filter added, the format changed, propagation on) gets the record.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TextIO

FLUSH_S = 0.1
LIMIT = 64 * 1024


class LineBuffer(logging.StreamHandler[TextIO]):
    """A stream handler writing its lines in batches (see the module's docs)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.plain = logging.Formatter("%(message)s")
        self.setFormatter(self.plain)
        self._lines: list[str] = []
        self._size = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's contract: a bad record is reported, not raised
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Buffer one formatted line."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            first = not self._lines
            self._lines.append(line)
            self._size += len(line)
            full = self._size >= LIMIT
        if full:
            self.flush()
        elif first:
            try:
                asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            except RuntimeError:  # no event loop in this thread: nothing would come back
                self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines, self._size = self._lines, [], 0
            if not lines:
                return
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError) as exc:  # stdout closed or broken: say so, once a batch
                sys.stderr.write(f"polyroute: {len(lines)} log lines not written: {exc}\n")


def direct(logger: logging.Logger) -> LineBuffer | None:
    """``logger``'s :class:`LineBuffer` when a formatted line may go straight to it: its
    only handler, formatting plain messages, with no filter on either and no propagation."""
    handlers = logger.handlers
    if len(handlers) != 1 or logger.filters or logger.propagate:
        return None
    handler = handlers[0]
    if type(handler) is not LineBuffer or handler.filters or handler.formatter is not handler.plain:
        return None
    return handler if handler.level <= logging.INFO else None


def flush_handlers(*loggers: logging.Logger) -> None:
    """Write out what the handlers of ``loggers`` hold."""
    for logger in loggers:
        for handler in logger.handlers:
            handler.flush()
