"""The dashboard (``GET /``) as a browser renders it: Debian's Chromium, headless, in a
subprocess, against a real gateway on loopback over simulated vendors.

The first test leaves screenshots for a human to look at, in pytest's base temporary
directory (the path is printed; ``-s`` shows it): ``dashboard.png`` (1280x1000, the
size it checks) and ``dashboard-full.png`` (the whole page), e.g.
``/tmp/pytest-of-$USER/pytest-current/dashboard.png`` (under ``popen-gw*/`` with xdist).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import anthropic
import openai
import pytest

from gateway.support import ADMIN, Gateway, running
from polyroute.ledger import UsageRecord
from polyroute.testing import Fleet

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's ``chromium`` package (CI installs it; ``./dev test`` does when run as root)."""
WIDTH, HEIGHT = 1280, 1000
BREAKER = {"failure_threshold": 2, "reset_timeout_s": 30}
PROVIDERS = ("openai", "anthropic", "google", "mistral")


class Clock:
    """The breakers' clock, moved by hand (to show an open and a half-open breaker)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def chromium(profile: Path, url: str, *args: str, binary: Path = CHROMIUM) -> str:
    """Run headless Chromium on ``url`` (loopback only) and return its stdout."""
    assert re.match(r"http://127\.0\.0\.1:\d+/", url), url  # never anything but loopback
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"Debian's chromium is not installed at {binary}: the dashboard tests need it. "
            "Install it with `apt-get install chromium` (`./dev test` does so when run as root).",
            pytrace=False,
        )
    home = profile / "home"
    home.mkdir(parents=True, exist_ok=True)
    command = [
        str(binary),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile / 'profile'}",
        "--virtual-time-budget=10000",
        *args,
        url,
    ]
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}", pytrace=False)
    return done.stdout


def dom(profile: Path, url: str) -> str:
    """The DOM after the page's scripts ran, without the script's own text."""
    page = chromium(profile, url, "--dump-dom")
    assert "<body" in page, page[:500]
    return re.sub(r"<script>.*?</script>", "", page, flags=re.S)


def screenshot(
    profile: Path, url: str, out: Path, width: int = WIDTH, height: int = HEIGHT
) -> Path:
    chromium(profile, url, f"--screenshot={out}", f"--window-size={width},{height}")
    assert out.is_file(), f"chromium wrote no screenshot at {out}"
    return out


def png_facts(path: Path) -> tuple[int, int, int]:
    """A PNG's width, height and the number of distinct byte values in its pixel data
    (parsed with the stdlib: signature, IHDR, IDAT chunks, zlib)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, bytearray()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in a {kind!r} chunk"
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    pixels = zlib.decompress(bytes(idat))
    return width, height, len(set(pixels))


def row(page: str, attr: str, value: str) -> str:
    """The ``<tr>`` whose ``attr`` is ``value``."""
    m = re.search(rf'<tr {attr}="{re.escape(value)}"[^>]*>.*?</tr>', page, re.S)
    assert m, f"no row with {attr}={value!r}"
    return m.group(0)


def usd_attr(page: str, element_id: str) -> float:
    m = re.search(rf'id="{element_id}"[^>]*\bdata-usd="([^"]+)"', page)
    assert m, f"no data-usd on #{element_id}"
    return float(m.group(1))


@pytest.fixture
def fleet4() -> Iterator[Fleet]:
    with Fleet(PROVIDERS) as f:
        yield f


def history(gw: Gateway, now: float) -> None:
    """Earlier days' spend, written straight to the ledger (the chart's last 30 days)."""
    models = {
        "openai": "gpt-4o-mini",
        "anthropic": "claude-sonnet-4-6",
        "google": "gemini-2.5-flash",
        "mistral": "mistral-small-latest",
    }
    for day in range(1, 29):
        for i, (provider, model) in enumerate(models.items()):
            if (day + i) % 4 == 0:
                continue  # not every provider every day
            n = 1 + (day * 7 + i * 3) % 5
            prompt, completion = 900 * n, 260 * n
            cost = (prompt * 0.4 + completion * 1.6) * (1 + i) / 1_000_000
            for k in range(n):
                gw.pr.ledger.record(
                    UsageRecord(
                        ts=now - day * 86_400 - k * 60,
                        provider=provider,
                        model=model,
                        prompt_tokens=prompt // n,
                        completion_tokens=completion // n,
                        cost_usd=cost / n,
                        latency_ms=300.0,
                        status="error" if (day + k) % 11 == 0 else "ok",
                    )
                )


def traffic(gw: Gateway, clock: Clock) -> None:
    """Requests through the gateway: answers from two vendors (JSON and SSE, both APIs),
    routed ones, and failures that open the google and mistral breakers."""
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN, max_retries=0)
    long = [{"role": "user", "content": "Summarise the design of a request router. " * 120}]
    oa.chat.completions.create(model="gpt-4o-mini", messages=long)
    oa.chat.completions.create(model="openai/gpt-4o", messages=long)
    list(oa.chat.completions.create(model="claude-sonnet-4-6", messages=long, stream=True))
    an = anthropic.Anthropic(base_url=gw.url, api_key=ADMIN, max_retries=0)
    an.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=long)
    oa.chat.completions.create(model="auto:cost", messages=[{"role": "user", "content": "hi"}])
    oa.chat.completions.create(model="auto", messages=long)
    for provider, model in (("google", "gemini-2.5-flash"), ("mistral", "mistral-small-latest")):
        gw.fleet[provider].script.fail_always(500)
        with pytest.raises(openai.APIError):
            oa.chat.completions.create(model=f"{provider}/{model}", messages=long)
        assert gw.pr.breakers.get(provider).state == "open"
        clock.now += 20 if provider == "google" else 0
    oa.chat.completions.create(model="auto", messages=long)  # both excluded: breaker open
    clock.now += 15  # google's 30 s are up (half-open), mistral has 15 s to go
    with gw.http(authorization=f"Bearer {ADMIN}") as http:
        assert http.get("/health/providers?check=1").status_code == 200  # health shown
    asyncio.run(gw.pr.ledger.flush())


def test_the_dashboard_renders_spend_health_breakers_and_decisions(
    fleet4: Fleet, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    clock = Clock()
    budgets = {"budget": {"daily_usd": 5, "monthly_usd": 60}}
    with running(
        fleet4,
        sections={"router": {"circuit_breaker": BREAKER}, **budgets},
        provider_options={"budget": {"daily_usd": 1.5, "monthly_usd": 20}},
        clock=clock,
        admin_key=ADMIN,
    ) as gw:
        traffic(gw, clock)
        history(gw, time.time())
        asyncio.run(gw.pr.ledger.flush())
        url = f"{gw.url}/#key={ADMIN}"
        page = dom(tmp_path / "a", url)
        shot = screenshot(tmp_path / "b", url, tmp_path / "dashboard.png")
        full = screenshot(tmp_path / "c", url, tmp_path / "dashboard-full.png", height=2300)

    assert 'data-state="ready"' in page
    for pid in PROVIDERS:
        assert re.search(f'<th [^>]*data-provider="{pid}"', page)  # spend per provider
        assert f'<tr data-provider="{pid}">' in page  # health and breaker
    assert usd_attr(page, "spend-total") > 0
    assert re.search(r'id="spend-total"[^>]*>\$\d', page)
    assert 'data-breaker="closed"' in row(page, "data-provider", "openai")
    assert 'data-breaker="open"' in row(page, "data-provider", "mistral")
    assert "retry in 15 s" in row(page, "data-provider", "mistral")
    assert 'data-breaker="half_open"' in row(page, "data-provider", "google")
    assert 'data-health="ok"' in row(page, "data-provider", "openai")
    decision = row(page, "data-decision", "openai/gpt-4o-mini")
    assert "<td>balanced</td>" in decision
    latest = re.search(r'<tbody id="recent">\s*(<tr .*?</tr>)', page, re.S)
    assert latest and re.search(r'<td class="num"[^>]*>[1-9]\d*</td>', latest.group(1))  # excluded
    assert "mistral (breaker open)" in latest.group(1)
    assert 'role="img"' in page and "Spend per UTC day, last 30 days" in page  # the chart
    assert "gpt-4o-mini" in page and "claude-sonnet-4-6" in page  # per model
    assert "All providers" in page  # the global budget
    assert ADMIN not in page and fleet4.key not in page  # no secrets on the page

    for path, height in ((shot, HEIGHT), (full, 2300)):
        assert png_facts(path)[:2] == (WIDTH, height)
        assert png_facts(path)[2] > 16, f"{path} looks blank"
    kept = tmp_path_factory.getbasetemp()
    shutil.copy(shot, kept / "dashboard.png")
    shutil.copy(full, kept / "dashboard-full.png")
    print(f"\ndashboard screenshots: {kept / 'dashboard.png'} and {kept / 'dashboard-full.png'}")


def test_the_dashboard_asks_for_the_admin_key(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        running(fleet, admin_key=ADMIN) as gw,
        caplog.at_level(logging.INFO, logger="polyroute.access"),
    ):
        openai.OpenAI(
            base_url=gw.url + "/v1", api_key=ADMIN, max_retries=0
        ).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        without = dom(tmp_path / "a", gw.url + "/")
        wrong = dom(tmp_path / "b", gw.url + "/#key=not-the-key")
        right = dom(tmp_path / "c", f"{gw.url}/#key={ADMIN}")

    assert 'data-state="auth"' in without
    assert re.search(r'<section id="auth"(?![^>]*\bhidden)[^>]*>', without)  # the form shows
    assert '<input id="key"' in without and 'type="password"' in without
    assert "This gateway needs its admin key" in without and "admin key needed" in without
    assert 'data-provider="openai"' not in without  # and no data

    assert 'data-state="auth"' in wrong and "That key was refused (401)" in wrong
    assert "not-the-key" not in wrong

    assert 'data-state="ready"' in right
    assert re.search(r'<section id="auth"[^>]*\bhidden', right)
    assert '<tr data-provider="openai">' in right and usd_attr(right, "spend-total") > 0
    assert row(right, "data-decision", "openai/gpt-4o-mini")
    assert ADMIN not in right

    lines = [r.getMessage() for r in caplog.records if r.name == "polyroute.access"]
    seen = {(a["path"], a["status"]) for a in map(json.loads, lines)}
    assert {("/", 200), ("/router/state", 401), ("/usage", 401), ("/usage", 200)} <= seen
    assert all(path in ("/", "/router/state", "/usage", "/v1/chat/completions") for path, _ in seen)
    assert not any(ADMIN in line or "not-the-key" in line for line in lines)  # the fragment stays


def test_the_dashboard_with_nothing_to_show_yet(gateway: Gateway, tmp_path: Path) -> None:
    page = dom(tmp_path, gateway.url + "/")
    assert 'data-state="ready"' in page
    assert 'id="chart-empty"' in page and "No spend in the last 30 days" in page
    assert page.count("No usage in the last 30 days.") == 2  # per provider, per model
    assert "No routing decisions yet" in page
    assert 'data-breaker="closed"' in row(page, "data-provider", "openai")
    assert 'data-health="unknown"' in row(page, "data-provider", "anthropic")
    assert re.search(r'id="spend-total"[^>]*>\$0\.00<', page)


def test_the_dashboard_says_when_the_gateway_fails(fleet: Fleet, tmp_path: Path) -> None:
    (tmp_path / "ledger.db").mkdir()  # the ledger cannot open: /usage and /router/state 503
    with running(fleet) as gw:
        page = dom(tmp_path / "browser", gw.url + "/")
    assert 'data-state="error"' in page
    assert re.search(r'<div id="problem"[^>]*role="alert"(?![^>]*\bhidden)[^>]*>', page)
    assert "The gateway answered 503: the gateway cannot reach its usage database" in page


class _Stub(BaseHTTPRequestHandler):
    """Serves the dashboard page; every other path drops the connection (``drop``) or
    answers JSON the page cannot use (``nonsense``)."""

    mode = "drop"

    def do_GET(self) -> None:
        if self.path == "/":
            page = resources.files("polyroute.gateway").joinpath("static", "index.html")
            self._send(page.read_bytes(), "text/html")
        elif self.mode == "nonsense":
            self._send(b'{"providers": 3}', "application/json")
        else:
            self.close_connection = True  # no answer at all

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("drop", "The gateway is unreachable ("),
        ("nonsense", "The dashboard could not show the gateway's answer ("),
    ],
)
def test_the_dashboard_says_when_the_gateway_cannot_be_read(
    tmp_path: Path, mode: str, message: str
) -> None:
    handler = type("Stub", (_Stub,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = dom(tmp_path, f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
    assert 'data-state="error"' in page
    assert message in page and "Retrying every 5 seconds." in page
    assert re.search(r'<div id="content"[^>]*\bhidden', page)  # nothing half-drawn


def test_a_missing_chromium_fails_the_tests_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "no-chromium"
    with pytest.raises(pytest.fail.Exception, match=r"chromium is not installed at .*no-chrom"):
        chromium(tmp_path, "http://127.0.0.1:9/", binary=missing)
    with pytest.raises(AssertionError):
        chromium(tmp_path, "https://example.com/")  # loopback only, checked first
