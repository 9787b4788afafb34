"""benchmark/_report.py: the rich table, and the HTML report whose charts draw the measured
points (checked in the SVG), with PNGs beside it, opened in headless Chromium."""

from __future__ import annotations

import functools
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from benchmark.analysis_support import pair_samples, run_info
from gateway.test_dashboard import png_facts, screenshot
from polyroute.benchmark import Sample, summarize
from polyroute.benchmark._recommend import pareto
from polyroute.benchmark._report import CHARTS, table, write_report
from polyroute.benchmark._stats import PairSummary
from polyroute.errors import ReportError


def run_samples() -> list[Sample]:
    return [
        *pair_samples(
            "ollama", "qwen2.5-coder", "simple", n=20, passes=18, latency_ms=300, cost_usd=0.0
        ),
        *pair_samples(
            "openai", "gpt-4o-mini", "simple", n=20, passes=17, latency_ms=800, cost_usd=0.0004
        ),
        *pair_samples(
            "openai", "gpt-4o", "simple", n=20, passes=19, latency_ms=1300, cost_usd=0.004
        ),
        *pair_samples(
            "openai",
            "gpt-4o-mini",
            "complex",
            n=20,
            passes=9,
            latency_ms=2500,
            cost_usd=0.002,
            failures=4,
        ),
        *pair_samples(
            "openai",
            "gpt-4o",
            "complex",
            n=20,
            passes=18,
            latency_ms=4200,
            cost_usd=0.02,
            failures=1,
        ),
        *pair_samples("x", "unpriced", "complex", n=10, passes=5, latency_ms=900, cost_usd=None),
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PairSummary], str]:
    samples = run_samples()
    summaries = summarize(samples)
    index = write_report(tmp_path_factory.mktemp("report") / "out", run_info(), samples, summaries)
    return index, summaries, index.read_text(encoding="utf-8")


def _svg(page: str, chart: str) -> str:
    m = re.search(rf'<figure id="chart-{chart}"><svg.*?</svg>', page, re.S)
    assert m, f"no inline SVG for {chart}"
    return m.group(0)


def _points(svg: str, chart: str) -> dict[int, tuple[float, float]]:
    """Each point's marker position, by its index in the summaries (SVG y grows downward)."""
    found = re.findall(
        rf'<g id="{chart}-(\d+)">\s*<defs>.*?</defs>\s*<g clip-path="[^"]+">\s*<use [^>]*?x="([-\d.]+)" y="([-\d.]+)"'
        rf'|<g id="{chart}-(\d+)">\s*<g clip-path="[^"]+">\s*<use [^>]*?x="([-\d.]+)" y="([-\d.]+)"',
        svg,
        re.S,
    )
    out = {}
    for a, ax, ay, b, bx, by in found:
        out[int(a or b)] = (float(ax or bx), float(ay or by))
    return out


def _bar_heights(svg: str, chart: str) -> dict[int, float]:
    out = {}
    for i, d in re.findall(rf'<g id="{chart}-(\d+)">\s*<path d="([^"]+)"', svg):
        ys = [float(y) for y in re.findall(r"[ML] [-\d.]+ ([-\d.]+)", d)]
        out[int(i)] = max(ys) - min(ys)
    return out


def _same_order(data: list[float], drawn: list[float], *, inverted: bool = False) -> None:
    """The drawn coordinates rank the points as the data does (ties may draw either way)."""
    for i in range(len(data)):
        for j in range(len(data)):
            if data[i] < data[j]:
                assert (drawn[i] > drawn[j]) if inverted else (drawn[i] < drawn[j]), (i, j)


def test_the_table_lists_every_pair_and_task_type_with_carbon() -> None:
    summaries = summarize(run_samples())
    console = Console(record=True, width=250)
    console.print(table(run_info(), summaries))
    text = console.export_text()
    assert "bench run 1 (finished, 10 runs per case)" in text
    for s in summaries:
        assert s.pair in text
    assert "gCO2e/task" in text
    assert "0.100" in text  # carbon g per task of the samples
    assert "unpriced" in text
    assert "0.90 (0.70-0.97)" in text  # ollama's quality with its Wilson interval


def test_the_report_is_self_contained_and_has_the_charts_as_png(
    report: tuple[Path, list[PairSummary], str],
) -> None:
    index, _, page = report
    assert index.name == "index.html"
    for name in CHARTS:
        png = index.parent / f"{name}.png"
        width, height, distinct = png_facts(png)
        assert width > 300 and height > 200
        assert distinct > 16, f"{png} looks blank"
        assert f'href="{name}.png"' in page
    # nothing fetched: no script, no stylesheet link, no remote URL but the SVG namespace
    assert "<script" not in page and "<link" not in page and "@import" not in page
    # namespaces and metadata name URLs; nothing loads one
    assert re.findall(r'(?:src|href)="(?!#)([^"]+)"', page) == [f"{n}.png" for n in CHARTS]
    assert "url(http" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "ids repeat across the inline charts"
    assert "use ollama/qwen2.5-coder for simple tasks" in page
    assert "gCO2e/task" in page and "gCO2e estimated in all" in page
    assert "Unpriced pairs, not drawn on a cost axis: x/unpriced." in page


def test_the_charts_draw_the_measured_points(report: tuple[Path, list[PairSummary], str]) -> None:
    _, summaries, page = report
    priced = [i for i, s in enumerate(summaries) if s.cost_usd_per_task is not None]

    lat = _points(_svg(page, "latency_cost"), "latency_cost")
    assert sorted(lat) == priced  # every priced pair and task type, once
    _same_order([summaries[i].cost_usd_per_task or 0 for i in priced], [lat[i][0] for i in priced])
    _same_order(
        [summaries[i].latency_p50_ms or 0 for i in priced],
        [lat[i][1] for i in priced],
        inverted=True,
    )

    svg = _svg(page, "quality_cost")
    qc = _points(svg, "quality_cost")
    assert sorted(qc) == priced
    for task in ("simple", "complex"):  # one panel per task type: compare within it
        rows = [i for i in priced if summaries[i].task_type == task]
        _same_order([summaries[i].cost_usd_per_task or 0 for i in rows], [qc[i][0] for i in rows])
        quality = [s.quality.score if (s := summaries[i]).quality else 0 for i in rows]
        _same_order(quality, [qc[i][1] for i in rows], inverted=True)
        assert f'<g id="front-{task}">' in svg
    # the front drawn through the front's points: its path has one corner per front member
    front = pareto(summaries)["simple"]
    path = re.search(r'<g id="front-simple">\s*<path d="([^"]+)"', svg)
    assert path
    xs = {round(float(x), 3) for x in re.findall(r"[ML] ([-\d.]+) [-\d.]+", path.group(1))}
    members = [summaries.index(s) for s in front]
    assert {round(qc[i][0], 3) for i in members} <= xs

    errors = _bar_heights(_svg(page, "error_rates"), "error_rates")
    assert sorted(errors) == list(range(len(summaries)))
    _same_order([s.error_rate for s in summaries], [errors[i] for i in range(len(summaries))])
    carbon = _bar_heights(_svg(page, "carbon"), "carbon")
    assert sorted(carbon) == list(range(len(summaries)))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(report: tuple[Path, list[PairSummary], str]) -> Iterator[str]:
    """The report's directory over loopback (the Chromium helper opens loopback URLs only)."""
    handler = functools.partial(_Quiet, directory=str(report[0].parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_chromium_renders_the_report(
    served: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    shot = screenshot(tmp_path, served, tmp_path / "report.png", 1280, 2400)
    width, height, distinct = png_facts(shot)
    assert (width, height) == (1280, 2400)
    assert distinct > 16, f"{shot} looks blank"
    kept = tmp_path_factory.getbasetemp() / "bench-report.png"
    shutil.copy(shot, kept)
    print(f"\nbench report screenshot: {kept}", file=sys.stderr)


def test_without_matplotlib_the_report_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    samples = run_samples()
    with pytest.raises(ReportError, match=r"pip install 'polyroute\[report\]'"):
        write_report(tmp_path / "r", run_info(), samples, summarize(samples))
    assert not (tmp_path / "r").exists()


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    samples = run_samples()
    with pytest.raises(ReportError, match=r"bench --report .*file"):
        write_report(blocker, run_info(), samples, summarize(samples))
