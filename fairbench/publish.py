"""Writing a results directory's leaderboard: the records are read once, the report built once,
and every writer renders it.

``DIR/leaderboard.md`` (headline, Pareto sets, grouped details), ``DIR/leaderboard.csv`` (the
whole frame, full precision), ``DIR/leaderboard.html`` (the page) and ``DIR/figures/pareto.svg``
(fairness against quality and against cost, the non-dominated methods filled).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG

from .figures import NO_METADATA, SVG_STYLE, pareto_figure
from .html_report import HTML_NAME, render_html
from .records import atomic_write_text, read_records
from .report_model import Report, build_report
from .writers.csv_view import render_csv
from .writers.latex import render_latex
from .writers.markdown import render_markdown

PARETO_NAME = "pareto.svg"

# The views `fairbench leaderboard DIR --format F` prints instead of writing the files.
FORMATS: dict[str, Callable[[Report], str]] = {"md": render_markdown, "csv": render_csv, "latex": render_latex}


def read_report(directory: Path) -> Report:
    """The report of the records under `directory` (its figures looked up there too)."""
    return build_report(read_records(Path(directory)), directory=Path(directory))


def pareto_svg(report: Report) -> str | None:
    """The Pareto views of `report` as one SVG (reproducible: fixed ids, no date), or None without any."""
    panels = [(v.points, v.front, v.y.key, v.x.key) for v in report.pareto if v.points]
    if not panels:
        return None
    figure = pareto_figure(panels, title=f"{report.summary.benchmark}: non-dominated methods filled")
    FigureCanvasSVG(figure)
    buffer = io.StringIO()
    with matplotlib.rc_context(SVG_STYLE):
        figure.savefig(buffer, format="svg", metadata=NO_METADATA)
    return buffer.getvalue()


def write_leaderboard(directory: Path) -> dict[str, Path]:
    """Write the leaderboard files of `directory` from its records; returns them by kind."""
    directory = Path(directory)
    report = read_report(directory)
    paths = {"csv": directory / "leaderboard.csv", "md": directory / "leaderboard.md", "html": directory / HTML_NAME}
    atomic_write_text(paths["csv"], report.frame.to_csv(index=False))
    atomic_write_text(paths["md"], render_markdown(report))
    atomic_write_text(paths["html"], render_html(report))
    svg = pareto_svg(report)
    if svg is not None:
        paths["pareto"] = directory / "figures" / PARETO_NAME
        atomic_write_text(paths["pareto"], svg)
    return paths
