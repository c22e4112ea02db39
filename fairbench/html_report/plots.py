"""The page's plots: drawn by `fairbench.figures` from the leaderboard's numbers, embedded as
SVG images (``<img src="data:image/svg+xml;base64,...">``), each with its text alternative
and an HTML list naming what it shows."""

from __future__ import annotations

import pandas as pd

from .. import figures
from ..leaderboard import _fmt, base_name
from .table import escape, is_number

FAIRNESS_METRIC = "epsilon"
QUALITY_METRIC = "fid"


def embedded(figure, alt: str) -> str:
    return f'<img class="plot" src="{figures.svg_data_uri(figure)}" alt="{escape(alt)}">'


def extent(row: pd.Series, name: str) -> figures.Extent | None:
    """(mean, low, high) of a metric in a leaderboard row: its interval if recorded, else ± std."""
    mean = row.get(f"{name}_mean")
    if not is_number(mean):
        return None
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if is_number(low) and is_number(high):
        return float(mean), float(low), float(high)
    std = row.get(f"{name}_std")
    std = float(std) if is_number(std) else 0.0
    return float(mean), float(mean) - std, float(mean) + std


def tradeoff_plots(frame: pd.DataFrame, *, fairness: str = FAIRNESS_METRIC, quality: str = QUALITY_METRIC) -> str:
    """One fairness-versus-quality plot per feature extractor of the quality metric.

    FIDs computed on different features are not comparable, so they never share a plot.
    """
    columns = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean") and base_name(c[: -len("_mean")]) == quality]
    if len(columns) <= 1:
        return tradeoff_html(frame, fairness=fairness, quality=columns[0] if columns else quality)
    return "".join(f"<h3>{escape(column)}</h3>" + tradeoff_html(frame, fairness=fairness, quality=column) for column in columns)


def tradeoff_html(frame: pd.DataFrame, *, fairness: str = FAIRNESS_METRIC, quality: str = QUALITY_METRIC) -> str:
    """Fairness (y) against quality (x), one numbered point per method with its interval (or ± std) as bars.

    Methods without the quality metric are listed, never placed; with no quality metric at all
    the page says so and shows fairness per method alone.
    """
    points, missing = [], []
    for _, row in frame.iterrows():
        y, x = extent(row, fairness), extent(row, quality)
        if y is None:
            continue
        if x is None:
            missing.append(str(row["method"]))
        else:
            points.append((str(row["method"]), x, y))
    if not points and not missing:
        return f"<p>No record has <code>{escape(fairness)}</code>; nothing to plot.</p>"
    if not points:
        note = (
            f'<p class="note" id="no-quality">No record has <code>{escape(quality)}</code>, so this page cannot place the '
            f"methods on a fairness-versus-quality plot; below is <code>{escape(fairness)}</code> per method alone "
            "(quality is not measured in these records).</p>"
        )
        return note + strip_html(frame, fairness)
    figure = figures.tradeoff_figure(points, fairness=fairness, quality=quality)
    items = "".join(
        f'<li data-method="{escape(label)}">{escape(label)}: {escape(quality)} {escape(_fmt(x[0]))}, '
        f"{escape(fairness)} {escape(_fmt(y[0]))}</li>"
        for label, x, y in points
    )
    out = (
        f'<figure class="tradeoff">{embedded(figure, f"{fairness} against {quality}, one numbered point per method")}'
        f'<figcaption><ol class="legend">{items}</ol></figcaption></figure>'
    )
    if missing:
        out += f'<p class="note">Without <code>{escape(quality)}</code> (not plotted): ' + ", ".join(escape(m) for m in missing) + ".</p>"
    return out


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
