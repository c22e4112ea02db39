"""The page's plots: drawn by `fairbench.figures` from the leaderboard's numbers, embedded as
SVG images (``<img src="data:image/svg+xml;base64,...">``), each with its text alternative
and an HTML list naming what it shows."""

from __future__ import annotations

import pandas as pd

from .. import figures
from ..leaderboard import _fmt
from ..report_model import FAIRNESS_METRIC, QUALITY_METRIC, ParetoView, Report, extent
from .table import escape, is_number


def embedded(figure, alt: str) -> str:
    return f'<img class="plot" src="{figures.svg_data_uri(figure)}" alt="{escape(alt)}">'


def pareto_html(view: ParetoView) -> str:
    """One Pareto view: `view.y` (fairness) against `view.x`, one numbered point per method with
    its interval (or ± std) as bars, the non-dominated methods filled and joined by the front;
    the legend names every point under its number and marks the non-dominated ones."""
    if not view.points:
        return f'<p class="note">No method has both <code>{escape(view.y.key)}</code> and <code>{escape(view.x.key)}</code>.</p>'
    figure = figures.tradeoff_figure(view.points, fairness=view.y.key, quality=view.x.key, front=view.front)
    items = "".join(
        f'<li data-method="{escape(label)}" data-pareto="{str(label in view.front).lower()}">{escape(label)}: '
        f"{escape(view.x.key)} {escape(_fmt(x[0]))}, {escape(view.y.key)} {escape(_fmt(y[0]))}"
        + (' <strong class="pareto">non-dominated</strong>' if label in view.front else "") + "</li>"
        for label, x, y in view.points
    )
    alt = f"{view.y.key} against {view.x.key}, one numbered point per method, the non-dominated ones filled"
    out = (
        f'<figure class="tradeoff" data-x="{escape(view.x.key)}">{embedded(figure, alt)}'
        f'<figcaption><ol class="legend">{items}</ol></figcaption></figure>'
    )
    if view.missing:
        out += (f'<p class="note">Without <code>{escape(view.x.key)}</code> (not plotted): '
                + ", ".join(escape(m) for m in view.missing) + ".</p>")
    return out


def tradeoff_plots(report: Report, *, metric: str = QUALITY_METRIC) -> str:
    """The Pareto views of fairness against `metric` (one per column of it: FIDs on different
    features never share a plot); without any, says so and shows fairness per method alone."""
    views = [v for v in report.pareto if v.x.metric == metric]
    if not views:
        if FAIRNESS_METRIC not in report.columns:
            return f"<p>No record has <code>{escape(FAIRNESS_METRIC)}</code>; nothing to plot.</p>"
        note = (
            f'<p class="note" id="no-{"quality" if metric == QUALITY_METRIC else "cost"}">No record has <code>{escape(metric)}</code>, so this page cannot place '
            f"the methods on a fairness-versus-{escape(metric)} plot; below is <code>{escape(FAIRNESS_METRIC)}</code> per "
            "method alone.</p>"
        )
        return note + strip_html(report.frame, FAIRNESS_METRIC)
    if len(views) == 1:
        return pareto_html(views[0])
    return "".join(f"<h3>{escape(v.x.key)}</h3>" + pareto_html(v) for v in views)


def strip_html(frame: pd.DataFrame, name: str) -> str:
    rows = [(str(r["method"]), extent(r, name)) for _, r in frame.iterrows()]
    rows = [(label, ext) for label, ext in rows if ext is not None]
    items = "".join(
        f'<li data-method="{escape(label)}">{escape(label)}: {escape(_fmt(mean))} [{escape(_fmt(low))}, {escape(_fmt(high))}]</li>'
        for label, (mean, low, high) in rows
    )
    return (
        f'<figure class="strip">{embedded(figures.strip_figure(rows, name), f"{name} per method")}'
        f'<figcaption><ul class="legend">{items}</ul></figcaption></figure>'
    )


def tau_curves_html(records: list[dict]) -> str:
    """One chart per method that searched tau: the search's curve per seed and the chosen tau."""
    by_label: dict[str, list[dict]] = {}
    for record in records:
        if isinstance(record.get("tau_search"), dict) and record["tau_search"].get("curve"):
            by_label.setdefault(str(record["label"]), []).append(record)
    if not by_label:
        return "<p>No record searched tau.</p>"
    charts = []
    for label, group in by_label.items():
        curves = []
        for record in group:
            points = [
                (float(p[0]), float(p[1])) for p in record["tau_search"]["curve"]
                if isinstance(p, (list, tuple)) and len(p) == 2 and is_number(p[0]) and is_number(p[1])
            ]
            if points:
                curves.append((record["spec"].get("seed"), record["tau_search"].get("tau"), sorted(points)))
        if not curves:
            continue
        search = ", ".join(sorted({str(r["tau_search"].get("search", "?")) for r in group}))
        figure = figures.tau_curve_figure(label, search, curves)
        seeds = ", ".join(f"seed {escape(seed)}: tau {escape(chosen)}" for seed, chosen, _ in curves)
        charts.append(
            f'<figure class="tau-curve" data-method="{escape(label)}">{embedded(figure, f"tau search curve of {label}")}'
            f"<figcaption>{escape(label)} ({escape(search)} search; dashed: chosen tau; {seeds})</figcaption></figure>"
        )
    return "".join(charts)
