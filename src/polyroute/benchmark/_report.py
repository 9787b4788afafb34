"""A run's summaries as a rich table, and ``--report DIR``: a self-contained HTML page.

The page has the summary table, the recommendations, and four charts, each also
written beside it as PNG: latency vs cost, quality vs cost with the cost/quality
Pareto front (one panel per task type), error rates, and gCO2e per task. The
charts are drawn once with matplotlib (the optional ``report`` extra, imported
only here, Agg, no pyplot state) and saved as SVG, inlined in the page, and PNG.
Every measured point or bar carries its own SVG id (``gid``): ``<chart>-<n>`` in
the order of the summaries, so what a chart drew can be checked against the data.
No script, no font or stylesheet from the network: the page opens offline.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyroute.benchmark._model import RunInfo, Sample
from polyroute.benchmark._recommend import by_task_type, front, recommend
from polyroute.benchmark._stats import PairSummary
from polyroute.errors import ReportError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from rich.table import Table

CHARTS = ("latency_cost", "quality_cost", "error_rates", "carbon")
"""The charts, each ``<name>.png`` beside ``index.html`` and inlined as SVG in it."""
_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


def _num(x: float | None, fmt: str, none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def _usd(x: float | None) -> str:
    if x is None:
        return "unpriced"
    return "free" if x == 0 else f"${x:.5f}" if x < 0.01 else f"${x:.3f}"


def _quality(s: PairSummary) -> str:
    q = s.quality
    return "-" if q is None else f"{q.score:.2f} ({q.low:.2f}-{q.high:.2f})"


COLUMNS = (
    "pair",
    "task",
    "samples",
    "p50 ms",
    "p95 ms",
    "stddev ms",
    "TTFT p50 ms",
    "tok/s",
    "cost/task",
    "errors",
    "retries",
    "gCO2e/task",
    "quality (95% CI)",
)


def _row(s: PairSummary) -> tuple[str, ...]:
    return (
        s.pair,
        s.task_type,
        str(s.samples),
        _num(s.latency_p50_ms, ",.0f"),
        _num(s.latency_p95_ms, ",.0f"),
        _num(s.latency_stddev_ms, ",.0f"),
        _num(s.ttft_p50_ms, ",.0f"),
        _num(s.output_tokens_per_s, ",.1f"),
        _usd(s.cost_usd_per_task),
        f"{s.error_rate:.0%}",
        f"{s.retry_rate:.0%}",
        _num(s.carbon_g_per_task, ".3f"),
        _quality(s),
    )


def table(run: RunInfo, summaries: Sequence[PairSummary]) -> Table:
    """The summaries as a rich table, one row per (pair, task type)."""
    from rich.table import Table

    t = Table(title=f"bench run {run.id} ({run.status}, {run.runs} runs per case)")
    for i, name in enumerate(COLUMNS):
        t.add_column(name, justify="left" if i < 2 else "right")
    for s in sorted(summaries, key=lambda s: (s.task_type, s.pair)):
        t.add_row(*_row(s))
    return t


# -- charts ----------------------------------------------------------------------------


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise ReportError("bench --report needs matplotlib: pip install 'polyroute[report]'") from e
    return matplotlib


def _figure(panels: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.4, 4.2 * panels), 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _task_colors(summaries: Sequence[PairSummary]) -> dict[str, str]:
    tasks = list(by_task_type(summaries))
    return {t: _COLORS[i % len(_COLORS)] for i, t in enumerate(tasks)}


def _label(ax: Axes, x: float, y: float, text: str) -> None:
    ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


def latency_cost(summaries: Sequence[PairSummary]) -> Figure:
    """Median latency against cost per task: one point per priced (pair, task type) with a
    latency, ``gid`` ``latency_cost-<index in summaries>``."""
    fig, (ax,) = _figure()
    colors = _task_colors(summaries)
    seen: set[str] = set()
    for i, s in enumerate(summaries):
        if s.cost_usd_per_task is None or s.latency_p50_ms is None:
            continue
        task = s.task_type
        ax.plot(
            [s.cost_usd_per_task],
            [s.latency_p50_ms],
            "o",
            color=colors[task],
            gid=f"latency_cost-{i}",
            label=None if task in seen else task,
        )
        seen.add(task)
        _label(ax, s.cost_usd_per_task, s.latency_p50_ms, s.pair)
    ax.set_xlabel("cost per task (USD)")
    ax.set_ylabel("latency p50 (ms)")
    ax.set_title("Latency vs cost")
    if seen:
        ax.legend(title="task type", fontsize=8)
    return fig


def quality_cost(summaries: Sequence[PairSummary]) -> Figure:
    """Quality (with its 95 % interval) against cost per task, one panel per task type,
    the Pareto front drawn as a line (``gid`` ``front-<task>``); points ``quality_cost-<i>``."""
    groups = by_task_type(summaries)
    fig, axes = _figure(max(1, len(groups)))
    index = {id(s): i for i, s in enumerate(summaries)}
    for ax, (task, group) in zip(axes, groups.items(), strict=False):
        for s in group:
            q = s.quality
            if q is None or s.cost_usd_per_task is None:
                continue
            ax.errorbar(
                [s.cost_usd_per_task],
                [q.score],
                yerr=[[max(0.0, q.score - q.low)], [max(0.0, q.high - q.score)]],
                fmt="none",
                ecolor="#93c5fd",
                capsize=3,
            )
            ax.plot(
                [s.cost_usd_per_task],
                [q.score],
                "o",
                color="#2563eb",
                gid=f"quality_cost-{index[id(s)]}",
            )
            _label(ax, s.cost_usd_per_task, q.score, s.pair)
        priced = [
            (s.cost_usd_per_task, s.quality.score)
            for s in front(group)
            if s.quality is not None and s.cost_usd_per_task is not None
        ]
        if priced:
            ax.plot(
                [x for x, _ in priced],
                [y for _, y in priced],
                "--",
                color="#dc2626",
                drawstyle="steps-post",
                label="Pareto front",
                gid=f"front-{task}",
            )
            ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"Quality vs cost: {task}")
        ax.set_xlabel("cost per task (USD)")
        ax.set_ylabel("quality (95% interval)")
        ax.set_ylim(-0.05, 1.05)
    return fig


def _bars(summaries: Sequence[PairSummary], name: str, values: list[float | None]) -> Figure:
    fig, (ax,) = _figure()
    colors = _task_colors(summaries)
    labels: list[str] = []
    seen: set[str] = set()
    for i, (s, v) in enumerate(zip(summaries, values, strict=True)):
        if v is None:
            continue
        task = s.task_type
        ax.bar(
            [len(labels)],
            [v],
            color=colors[task],
            gid=f"{name}-{i}",
            label=None if task in seen else task,
        )
        seen.add(task)
        labels.append(s.pair)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    if seen:
        ax.legend(title="task type", fontsize=8)
    return fig


def error_rates(summaries: Sequence[PairSummary]) -> Figure:
    """The share of failed calls per (pair, task type): bars ``error_rates-<i>``."""
    fig = _bars(summaries, "error_rates", [s.error_rate for s in summaries])
    ax = fig.axes[0]
    ax.set_ylabel("error rate")
    ax.set_title("Error rates")
    ax.set_ylim(0, max(0.05, max((s.error_rate for s in summaries), default=0) * 1.15))
    return fig


def carbon(summaries: Sequence[PairSummary]) -> Figure:
    """Estimated gCO2e per task: bars ``carbon-<i>`` (pairs without an estimate left out)."""
    fig = _bars(summaries, "carbon", [s.carbon_g_per_task for s in summaries])
    ax = fig.axes[0]
    ax.set_ylabel("gCO2e per task")
    ax.set_title("Carbon per task")
    return fig


def charts(summaries: Sequence[PairSummary]) -> dict[str, Figure]:
    """Every chart of the report, by name (see :data:`CHARTS`)."""
    _matplotlib()
    return {
        "latency_cost": latency_cost(summaries),
        "quality_cost": quality_cost(summaries),
        "error_rates": error_rates(summaries),
        "carbon": carbon(summaries),
    }


def _svg(name: str, fig: Figure) -> str:
    import matplotlib

    buf = io.StringIO()
    # the salt makes matplotlib's own ids (markers, clip paths) distinct between the
    # charts of one page, and the same from one run to the next
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return _scoped(text[text.index("<svg") :], name)  # inline: no XML prolog or doctype


_ID = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def _scoped(svg: str, name: str) -> str:
    """matplotlib's own ids (figure_1, axes_1, glyphs...) prefixed with the chart's name, so
    ids stay unique across the charts of one page; the points' ids (``<name>-<i>``,
    ``front-<task>``) stay as set."""

    def scope(m: re.Match[str]) -> str:
        ident = m.group(2)
        if ident.startswith((f"{name}-", "front-")):
            return m.group(0)
        return f"{m.group(1)}{name}.{ident}"

    return _ID.sub(scope, svg)


# -- the page --------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #111827; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #4b5563; margin: 0 0 16px; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 8px; text-align: right; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
th { background: #f3f4f6; }
ul.advice li { margin: 4px 0; }
figure { margin: 12px 0 24px; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #4b5563; font-size: 12px; }
"""


def _html_table(summaries: Sequence[PairSummary]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = []
    for s in sorted(summaries, key=lambda s: (s.task_type, s.pair)):
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _row(s))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_CAPTIONS = {
    "latency_cost": "Median latency against cost per task, per pair and task type.",
    "quality_cost": "Mean graded quality (bars: 95% interval) against cost per task; the "
    "dashed line is the cost/quality Pareto front.",
    "error_rates": "Share of calls that failed, per pair and task type.",
    "carbon": "Estimated grams of CO2e per task.",
}


def _left_out(summaries: Sequence[PairSummary]) -> str:
    unpriced = sorted({s.pair for s in summaries if s.cost_usd_per_task is None})
    return f" Unpriced pairs, not drawn on a cost axis: {', '.join(unpriced)}." if unpriced else ""


def page(
    run: RunInfo, samples: Sequence[Sample], summaries: Sequence[PairSummary], svgs: dict[str, str]
) -> str:
    """The report's HTML: self-contained (inline CSS and SVG, no script)."""
    fronts = "".join(
        f"<li><b>{html.escape(task)}</b>: {html.escape(', '.join(s.pair for s in front(g)) or '-')}</li>"
        for task, g in by_task_type(summaries).items()
    )
    advice = "".join(f"<li>{html.escape(line)}</li>" for line in recommend(summaries))
    figures = "".join(
        f'<figure id="chart-{name}">{svgs[name]}<figcaption>{html.escape(_CAPTIONS[name])}'
        f"{html.escape(_left_out(summaries) if name in ('latency_cost', 'quality_cost') else '')}"
        f' PNG: <a href="{name}.png">{name}.png</a></figcaption></figure>'
        for name in CHARTS
    )
    carbon_total = [s.carbon_g for s in samples if s.carbon_g is not None]
    carbon_note = f", {sum(carbon_total):.2f} gCO2e estimated in all" if carbon_total else ""
    cost_total = sum(s.cost_usd or 0.0 for s in samples)
    meta = (
        f"suites {', '.join(run.suites) or '-'}; {run.runs} runs per case; {len(samples)} samples; "
        f"status {run.status}; started {run.started_at:%Y-%m-%d %H:%M} UTC; "
        f"{_usd(cost_total)} spent{carbon_note}"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>polyroute bench run {run.id}</title><style>{_CSS}</style></head>
<body>
<h1>polyroute bench run {run.id}</h1>
<p class="meta">{html.escape(meta)}</p>
<h2>Recommendations</h2><ul class="advice">{advice or "<li>no graded answers</li>"}</ul>
<h2>Cost/quality Pareto front</h2><ul>{fronts}</ul>
<h2>Per pair and task type</h2>{_html_table(summaries)}
<h2>Charts</h2>{figures}
</body></html>
"""


def write_report(
    directory: Path, run: RunInfo, samples: Sequence[Sample], summaries: Sequence[PairSummary]
) -> Path:
    """``index.html`` and one PNG per chart in ``directory`` (made if missing); the page's
    path. Raises :class:`ReportError` without matplotlib or when the directory cannot be
    written."""
    figures = charts(summaries)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        svgs = {}
        for name, fig in figures.items():
            svgs[name] = _svg(name, fig)
            fig.savefig(directory / f"{name}.png", format="png", dpi=110)
        index = directory / "index.html"
        index.write_text(page(run, samples, summaries, svgs), encoding="utf-8")
    except OSError as e:
        raise ReportError(f"bench --report {directory}: {e.strerror or e}") from e
    return index
