"""Test isolation: no real keys, no user data, no network beyond loopback.

Loopback-only is enforced by pytest-socket (``--allow-hosts`` in pyproject).
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import AsyncGeneratorType

import pytest

# real servers (tests/servers): fixtures postgres_server, postgres_url, db_url
pytest_plugins = ("servers.postgres", "servers.redis")

_VENDOR_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "OLLAMA_HOST",
    "POLYROUTE_CONFIG",
    "POLYROUTE_MASTER_KEY",
    "POLYROUTE_ADMIN_KEY",
)


@pytest.fixture(autouse=True, scope="session")
def _session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A home for what runs outside any test's own (module-scoped fixtures, a server
    thread finishing after its test): never the user's data directory."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("POLYROUTE_HOME", str(tmp_path_factory.mktemp("session-home")))
        yield


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _VENDOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POLYROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    # Zero-config discovery probes Ollama; point it at a closed loopback port.
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    with _loggers_restored():
        yield


_OUR_LOGGERS = ("", "polyroute", "polyroute.events", "polyroute.access")


@contextmanager
def _loggers_restored() -> Iterator[None]:
    """In-process CLI runs with --debug, and the gateway's worker factory, configure logging
    for their process; within a test process that would leak into the next tests (a hub made
    while polyroute.events is enabled subscribes its log to every kind)."""
    saved = [
        (log, log.level, list(log.handlers), log.propagate)
        for log in map(logging.getLogger, _OUR_LOGGERS)
    ]
    try:
        yield
    finally:
        for log, level, handlers, propagate in saved:
            log.setLevel(level)
            log.handlers[:] = handlers
            log.propagate = propagate


@contextmanager
def _left_to_the_loop() -> Iterator[list[str]]:
    hooks = sys.get_asyncgen_hooks()  # the running loop's: enter this inside the test
    left: list[str] = []

    def finalizer(agen: AsyncGeneratorType[object, object]) -> None:
        if "polyroute" in agen.ag_code.co_filename:
            left.append(agen.ag_code.co_qualname)
        if hooks.finalizer is not None:
            hooks.finalizer(agen)

    sys.set_asyncgen_hooks(hooks.firstiter, finalizer)
    try:
        yield left
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(*hooks)


@pytest.fixture
def left_to_the_loop() -> Callable[[], AbstractContextManager[list[str]]]:
    """``with left_to_the_loop() as left:`` (inside the test's coroutine: a running loop sets
    its own hooks) -> the names of polyroute's async generators begun in the block and
    dropped unclosed, at its end. The event loop closes each in a task of its own."""
    return _left_to_the_loop
