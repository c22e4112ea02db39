"""The published leaderboard page: one static, self-contained HTML file rendered from a `Report`.

``DIR/leaderboard.html`` holds, in this order: the headline table (the registry's headline
metrics: mean ± std over seeds, the interval under it, rank-group letters beside it where the
frame has them) with its definitions; fairness against quality and against cost, the
non-dominated methods marked; one detail table per metric group (fairness, balance, bias
inheritance, quality, utility, cost, search), each with its definitions; the tau-search curves
of the records that searched tau; the sample grids found in the run's directory; the
provenance of the records.

Self-contained: no network, no external scripts, styles or fonts; plots (drawn by
`fairbench.figures`, the one plotting stack) and sample grids are embedded as ``data:`` image
URIs. Sample grids are shown at their own pixel size, without smoothing. Every string taken from a record is HTML-escaped,
and a Content-Security-Policy admits only the page's own script and style (by hash), so even
text that slipped through could not run or load anything.

Sorting: click a column header of any table, or open the page with ``#sort=<column>``
(``#sort=-<column>`` for descending) to sort the headline table, e.g.
``leaderboard.html#sort=epsilon``. Columns are ``method`` and the metric names. Empty cells
sort last in both directions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..figures import grid_filename
from ..report_model import COST_METRIC, QUALITY_METRIC, Column, Report
from ..writers.cells import has_rank_groups
from .assets import SCRIPT, STYLE, content_policy
from .grids import grids_html
from .plots import pareto_html, tau_curves_html, tradeoff_plots
from .table import escape, table_html

HTML_NAME = "leaderboard.html"

__all__ = ["HTML_NAME", "grid_filename", "page_html", "render_html", "pareto_html", "report_body", "table_html", "tau_curves_html",
           "tradeoff_plots"]

RANK_NOTE = ("Letters beside a value are its rank group: two methods that share a letter are not told apart by the "
             "paired comparisons of that column.")


def provenance_html(records: list[dict]) -> str:
    def distinct(get) -> str:
        values = sorted({str(v) for v in (get(r) for r in records) if v is not None})
        return ", ".join(escape(v) for v in values) or "unknown"

    versions: dict[str, set[str]] = {}
    for record in records:
        for package, version in (record.get("provenance", {}).get("versions") or {}).items():
            if version is not None:
                versions.setdefault(str(package), set()).add(str(version))
    items = [
        f"<li>records: {len(records)}</li>",
        f"<li>git commits: {distinct(lambda r: r.get('provenance', {}).get('git_sha'))}</li>",
        f"<li>devices: {distinct(lambda r: r.get('provenance', {}).get('device'))}</li>",
        f"<li>platforms: {distinct(lambda r: r.get('provenance', {}).get('platform'))}</li>",
        "<li>versions: " + ("; ".join(f"{escape(p)} {escape(', '.join(sorted(v)))}" for p, v in sorted(versions.items())) or "unknown") + "</li>",
    ]
    return f"<ul>{''.join(items)}</ul>"


def definitions_html(columns: Sequence[Column]) -> str:
    """The definition of each column's metric: formula, direction and citation."""
    items, seen = [], set()
    for column in columns:
        info = column.info
        if info is None or info.name in seen:
            continue
        seen.add(info.name)
        better = f" ({escape(info.direction)} is better)" if info.direction != "none" else ""
        cite = f" <cite>{escape(info.citation)}</cite>" if info.citation.strip("- ") else ""
        items.append(f"<dt><code>{escape(info.name)}</code>{better}</dt><dd>{escape(info.formula)}.{cite}</dd>")
    return f'<dl class="definitions">{"".join(items)}</dl>' if items else ""


def summary_html(report: Report) -> str:
    s = report.summary
    seeds = ", ".join(escape(seed) for seed in s.seeds)
    return (
        f'<p class="summary">Dataset: {escape(s.dataset)}; model: {escape(s.model)}; bias: {escape(s.bias)}; '
        f"seeds: {seeds}; recorded: {escape(s.date)}; fairbench {escape(s.version)}. "
        f"Generated from {s.n_records} records: mean ± std over seeds, under it the mean of each seed's interval "
        "where the metric has one. Click a column header to sort (or open the page with <code>#sort=epsilon</code>; "
        "<code>#sort=-epsilon</code> for descending).</p>"
        + (f'<p class="summary">{escape(s.sequential)}</p>' if s.sequential else "")
    )


def details_html(report: Report, *, method_href: Callable[[str], str] | None = None) -> str:
    out = []
    for section in report.sections:
        out.append(
            f'<section class="group" id="group-{escape(section.group)}"><h3>{escape(section.title)}</h3>'
            f'<p class="note">{escape(section.description[:1].upper() + section.description[1:])}.</p>'
            f'<div class="scroll">{table_html(report, section.columns, table_id=f"details-{section.group}", method_href=method_href)}</div>'
            f"{definitions_html(section.columns)}</section>"
        )
    return "".join(out) or "<p>No other columns.</p>"


def report_body(report: Report, *, grids: str | None = None, level: int = 2,
                method_href: Callable[[str], str] | None = None) -> str:
    """The page's sections (headline, Pareto views, details, tau, grids, provenance); `grids`
    replaces the sample grids looked up in the report's directory; `method_href` links the
    methods' names in the tables."""
    h = f"h{level}"
    if not len(report.frame):
        return "<p>No records.</p>"
    labels = report.labels
    rank = f'<p class="note">{escape(RANK_NOTE)}</p>' if has_rank_groups(list(report.columns.values())) else ""
    return f"""{summary_html(report)}
<{h} id="table">Headline</{h}>
<div class="scroll">{table_html(report, report.headline, table_id="leaderboard", method_href=method_href)}</div>
{rank}{definitions_html(report.headline)}
<{h} id="tradeoff">Fairness against quality</{h}>
<p class="note">Filled and joined: the non-dominated methods (no other method is at least as good on both axes and
better on one; means). Bars: the interval, or ± std over seeds.</p>
{tradeoff_plots(report, metric=QUALITY_METRIC)}
<{h} id="tradeoff-cost">Fairness against cost</{h}>
{tradeoff_plots(report, metric=COST_METRIC)}
<{h} id="details">Details</{h}>
{details_html(report, method_href=method_href)}
<{h} id="tau">Tau search curves</{h}>
{tau_curves_html(list(report.records))}
<{h} id="samples">Sample grids</{h}>
{grids if grids is not None else grids_html(labels, report.directory)}
<{h} id="provenance">Provenance</{h}>
{provenance_html(list(report.records))}"""


def page_html(title: str, body: str, *, nav: str = "", images: str = "data:") -> str:
    """A whole self-contained page: `title` and `body` (already escaped HTML), the pages' style and
    script, a policy that admits only them and images from `images`."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{content_policy(images=images)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
{nav}<h1>{title}</h1>
{body}
<script>{SCRIPT}</script>
</body>
</html>
"""


def render_html(report: Report) -> str:
    """The whole leaderboard page of `report`."""
    return page_html(f"Leaderboard: {escape(report.summary.benchmark) if report.records else 'no records'}", report_body(report))
