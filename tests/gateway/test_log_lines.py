"""The worker's stdout log lines: written in batches, never lost, and the access log's
direct path only when nothing else would see the record."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time

import openai
import pytest

from gateway.support import ADMIN, running
from polyroute.gateway import _lines
from polyroute.gateway._lines import LineBuffer, direct
from polyroute.testing import Fleet

MSGS = [{"role": "user", "content": "hi"}]


class Counted(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logger() -> logging.Logger:
    """A logger of its own, outside the hierarchy (pytest's capture handlers stay away)."""
    log = logging.Logger("polyroute.test-lines", logging.INFO)
    log.propagate = False
    return log


async def test_lines_go_out_together_within_the_flush_interval() -> None:
    out = Counted()
    buffer = LineBuffer(out)
    for n in range(3):
        buffer.write_line(f"line {n}")
    assert out.getvalue() == ""  # held for now
    await asyncio.sleep(_lines.FLUSH_S * 2)
    assert out.getvalue() == "line 0\nline 1\nline 2\n" and out.writes == 1
    buffer.write_line("line 3")  # a new batch, its own deadline
    await asyncio.sleep(_lines.FLUSH_S * 2)
    assert out.getvalue().endswith("line 2\nline 3\n") and out.writes == 2


async def test_a_full_buffer_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lines, "LIMIT", 10)
    out = Counted()
    buffer = LineBuffer(out)
    buffer.write_line("12345")
    assert out.getvalue() == ""
    buffer.write_line("67890")
    assert out.getvalue() == "12345\n67890\n"


def test_without_an_event_loop_a_line_is_written_at_once() -> None:
    out = Counted()
    buffer = LineBuffer(out)
    thread = threading.Thread(target=buffer.write_line, args=("from a thread",))
    thread.start()
    thread.join()
    assert out.getvalue() == "from a thread\n"


async def test_what_waits_is_written_by_logging_shutdown(logger: logging.Logger) -> None:
    # logging.shutdown (at exit) flushes every handler: nothing buffered is lost
    out = Counted()
    buffer = LineBuffer(out)
    logger.addHandler(buffer)
    logger.info("last words %d", 1)
    assert out.getvalue() == ""
    logging.shutdown([lambda: buffer])  # type: ignore[list-item]
    assert out.getvalue() == "last words 1\n"


async def test_a_broken_stream_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    buffer = LineBuffer(out)
    buffer.write_line("lost")
    out.close()
    buffer.flush()
    assert "1 log lines not written" in capsys.readouterr().err
    buffer.write_line("next")  # the buffer goes on
    buffer.flush()


def test_direct_only_when_nothing_else_would_see_the_record(logger: logging.Logger) -> None:
    assert direct(logger) is None  # no handler
    buffer = LineBuffer(io.StringIO())
    logger.addHandler(buffer)
    assert direct(logger) is buffer
    logger.propagate = True
    assert direct(logger) is None  # the root's handlers want it too
    logger.propagate = False
    buffer.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    assert direct(logger) is None  # a format of the user's
    buffer.setFormatter(buffer.plain)
    buffer.addFilter(lambda r: True)
    assert direct(logger) is None
    buffer.filters.clear()
    other = logging.StreamHandler(io.StringIO())
    logger.addHandler(other)
    assert direct(logger) is None
    logger.removeHandler(other)
    assert direct(logger) is buffer


def test_the_gateways_access_lines_go_through_the_buffer(fleet: Fleet) -> None:
    from polyroute.gateway._observe import access_log

    out = io.StringIO()
    access_log.handlers[:] = [LineBuffer(out)]  # as `polyroute serve` sets it (conftest restores)
    access_log.propagate = False
    access_log.setLevel(logging.INFO)
    with running(fleet) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        deadline = time.monotonic() + 5
        while not out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    (line,) = [json.loads(x) for x in out.getvalue().splitlines() if "/v1/chat" in x]
    assert (line["status"], line["provider"], line["model"]) == (200, "openai", "gpt-4o-mini")
