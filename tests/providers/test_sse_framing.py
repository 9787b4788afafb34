"""SSE framing straight from the byte stream: the same events wherever the reads split."""

from __future__ import annotations

import math

import pytest

from polyroute.errors import InvalidResponseError
from polyroute.providers._http import SseFramer, loads_event

STREAM = (
    b": keep-alive\r\n\r\n"
    b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
    b"data: first line\ndata:second line\n\n"
    b"data: caf\xc3\xa9 \xf0\x9f\x98\x80\r\r"
    b"event: ping\nid: 7\nretry: 10\n\n"  # no data: not dispatched
    b"data: [DONE]"  # the last event without its blank line
)
EVENTS = [
    ('{"a": 1}', "message_start"),
    ("first line\nsecond line", None),
    ("café 😀", None),
    ("[DONE]", None),
]


def _batches(parts: list[bytes]) -> list[list[tuple[str, str | None]]]:
    """What each read completes, then what the stream's end does."""
    framer = SseFramer()
    return [framer.feed(part) for part in parts] + [framer.end()]


def _events(parts: list[bytes]) -> list[tuple[str, str | None]]:
    return [item for batch in _batches(parts) for item in batch]


def test_events_are_the_same_wherever_the_reads_split() -> None:
    assert _events([STREAM]) == EVENTS
    for cut in range(1, len(STREAM)):
        assert _events([STREAM[:cut], STREAM[cut:]]) == EVENTS, cut
    assert _events([STREAM[i : i + 1] for i in range(len(STREAM))]) == EVENTS


def test_an_empty_or_dataless_stream_has_no_events() -> None:
    assert _events([]) == []
    assert _events([b": only a comment\n\nevent: x\n\n"]) == []


def test_events_come_in_a_batch_per_read_that_completed_any() -> None:
    reads = [STREAM[:92], STREAM[92:94], STREAM[94:]]  # the second completes nothing
    assert _batches(reads) == [EVENTS[:2], [], EVENTS[2:3], EVENTS[3:]]


def test_a_message_msgspec_refuses_is_parsed_as_the_stdlib_parses_it() -> None:
    assert math.isnan(loads_event('{"a": NaN}')["a"])
    assert loads_event('{"a": [1, {"b": "\\u00e9"}]}') == {"a": [1, {"b": "é"}]}
    with pytest.raises(InvalidResponseError, match="not JSON"):
        loads_event("{nope")
    with pytest.raises(InvalidResponseError, match="deeper"):
        loads_event("[" * 101 + "]" * 101)
