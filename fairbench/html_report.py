"""The published leaderboard page: one static, self-contained HTML file generated from records.

``DIR/leaderboard.html`` holds, in this order: the sortable table (mean ± std over seeds and
the metric's interval, the same numbers as ``leaderboard.csv``), the fairness-versus-quality
plot (epsilon against FID, one point per method), the tau-search curves of the records that
searched tau, the sample grids found in DIR, and the provenance of the records.

Self-contained: no network, no external scripts, styles or fonts; plots are inline SVG and
sample grids are embedded as ``data:`` URIs. Every string taken from a record is HTML-escaped,
and a Content-Security-Policy admits only the page's own script and style (by hash), so even
text that slipped through could not run or load anything.

Sorting: click a column header, or open the page with ``#sort=<column>`` (``#sort=-<column>``
for descending), e.g. ``leaderboard.html#sort=epsilon``. Columns are the metric names, plus
``method``, ``n_seeds`` and ``<metric>_ci_low`` / ``<metric>_ci_high`` for interval bounds.
Empty cells sort last in both directions.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .leaderboard import _fmt, base_name, leaderboard_frame
from .metrics import METRICS
from .records import atomic_write_text, read_records

HTML_NAME = "leaderboard.html"
FAIRNESS_METRIC = "epsilon"
QUALITY_METRIC = "fid"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _e(value: object) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def grid_filename(label: str) -> str:
    """The file name of a method's sample grid in a results directory: ``<label slug>.png``.

    Characters outside ``[A-Za-z0-9._=-]`` become ``_`` (``attribute_switching(tau=224)`` ->
    ``attribute_switching_tau=224.png``). Whatever writes sample grids uses this name.
    """
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_.")
    return f"{slug or 'method'}.png"


# ---------------------------------------------------------------------------------------------
# The table.


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclass(frozen=True)
class Column:
    key: str  # what `#sort=` names
    title: str
    kind: str  # "text" or "number"
    note: str = ""  # hover text: the metric's formula


def table_columns(frame: pd.DataFrame) -> list[Column]:
    columns = [Column("method", "method", "text"), Column("n_seeds", "seeds", "number", "records averaged")]
    for name in [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean")]:
        info = METRICS.get(name)
        arrow = {"lower": " ↓", "higher": " ↑"}.get(info.direction, "") if info else ""
        columns.append(Column(name, name + arrow, "number", info.formula if info else ""))
        if f"{name}_ci_low" in frame.columns:
            columns.append(Column(f"{name}_ci_low", f"{name} interval low", "number", f"lower end of {info.interval}, mean over seeds"))
            columns.append(Column(f"{name}_ci_high", f"{name} interval high", "number", f"upper end of {info.interval}, mean over seeds"))
    return columns


def _cell(row: pd.Series, column: Column) -> tuple[str, str]:
    """(text shown, sort value) of one cell; the sort value keeps full precision."""
    if column.key == "method":
        return str(row["method"]), str(row["method"])
    if column.key == "n_seeds":
        return str(int(row["n_seeds"])), str(int(row["n_seeds"]))
    key = column.key if column.key.endswith(("_ci_low", "_ci_high")) else f"{column.key}_mean"
    value = row.get(key)
    if not _is_number(value):
        return "", ""
    text = _fmt(value)
    std = row.get(f"{column.key}_std")
    if key.endswith("_mean") and row["n_seeds"] > 1 and _is_number(std):
        text += f" ± {_fmt(std)}"
    return text, repr(float(value))


def table_html(frame: pd.DataFrame) -> str:
    columns = table_columns(frame)
    head = "".join(
        f'<th scope="col" data-key="{_e(c.key)}" data-type="{c.kind}" aria-sort="none" title="{_e(c.note)}">'
        f'<button type="button">{_e(c.title)}</button></th>'
        for c in columns
    )
    rows = []
    for order, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for column in columns:
            text, value = _cell(row, column)
            tag = "th scope=\"row\"" if column.key == "method" else "td"
            cells.append(f'<{tag} data-value="{_e(value)}">{_e(text)}</{tag.split()[0]}>')
        rows.append(f'<tr data-order="{order}">{"".join(cells)}</tr>')
    return (
        '<table id="leaderboard" data-sorted="">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


# ---------------------------------------------------------------------------------------------
# Inline SVG plots.


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


@dataclass(frozen=True)
class Scale:
    """Linear map from data [low, high] to pixels [start, end]."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low
        fraction = (value - self.low) / span if span > 0 else 0.5
        return self.start + fraction * (self.end - self.start)


def _padded(values: Sequence[float], *, floor: float | None = None) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or (abs(high) * 0.1 or 1.0)
    low, high = low - pad, high + pad
    if floor is not None:
        low = max(low, floor)
    return low, high


WIDTH, HEIGHT = 640, 360
MARGIN = {"left": 64, "right": 24, "top": 16, "bottom": 48}


def _axes(x: Scale, y: Scale, x_title: str, y_title: str) -> list[str]:
    parts = [
        f'<line x1="{x.start}" y1="{y.start}" x2="{x.end}" y2="{y.start}" stroke="#333"/>',
        f'<line x1="{x.start}" y1="{y.start}" x2="{x.start}" y2="{y.end}" stroke="#333"/>',
    ]
    for tick in nice_ticks(x.low, x.high):
        px = x(tick)
        parts.append(f'<line x1="{px:.1f}" y1="{y.start}" x2="{px:.1f}" y2="{y.start + 5}" stroke="#333"/>')
        parts.append(f'<text x="{px:.1f}" y="{y.start + 18}" text-anchor="middle">{_e(_fmt(tick))}</text>')
    for tick in nice_ticks(y.low, y.high):
        py = y(tick)
        parts.append(f'<line x1="{x.start - 5}" y1="{py:.1f}" x2="{x.end}" y2="{py:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{x.start - 8}" y="{py + 4:.1f}" text-anchor="end">{_e(_fmt(tick))}</text>')
    parts.append(f'<text x="{(x.start + x.end) / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{_e(x_title)}</text>')
    parts.append(
        f'<text transform="translate(16 {(y.start + y.end) / 2:.1f}) rotate(-90)" text-anchor="middle">{_e(y_title)}</text>'
    )
    return parts


def _svg(parts: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{_e(label)}" font-size="12" font-family="sans-serif">{"".join(parts)}</svg>'
    )


def _extent(row: pd.Series, name: str) -> tuple[float, float, float] | None:
    """(mean, low, high) of a metric in a leaderboard row: its interval if recorded, else ± std."""
    mean = row.get(f"{name}_mean")
    if not _is_number(mean):
        return None
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if _is_number(low) and _is_number(high):
        return float(mean), float(low), float(high)
    std = row.get(f"{name}_std")
    std = float(std) if _is_number(std) else 0.0
    return float(mean), float(mean) - std, float(mean) + std


def tradeoff_plots(frame: pd.DataFrame, *, fairness: str = FAIRNESS_METRIC, quality: str = QUALITY_METRIC) -> str:
    """One fairness-versus-quality plot per feature extractor of the quality metric.

    FIDs computed on different features are not comparable, so they never share a plot.
    """
    columns = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean") and base_name(c[: -len("_mean")]) == quality]
    if len(columns) <= 1:
        return tradeoff_html(frame, fairness=fairness, quality=columns[0] if columns else quality)
    return "".join(f"<h3>{_e(column)}</h3>" + tradeoff_html(frame, fairness=fairness, quality=column) for column in columns)


def tradeoff_html(frame: pd.DataFrame, *, fairness: str = FAIRNESS_METRIC, quality: str = QUALITY_METRIC) -> str:
    """Fairness (y) against quality (x), one point per method with its interval (or ± std) as bars.

    Methods without the quality metric are listed, never placed; with no quality metric at all
    the page says so and shows fairness per method alone.
    """
    points, missing = [], []
    for _, row in frame.iterrows():
        y = _extent(row, fairness)
        x = _extent(row, quality)
        if y is None:
            continue
        if x is None:
            missing.append(str(row["method"]))
        else:
            points.append((str(row["method"]), x, y))
    if not points and not missing:
        return f"<p>No record has <code>{_e(fairness)}</code>; nothing to plot.</p>"
    if not points:
        note = (
            f'<p class="note" id="no-quality">No record has <code>{_e(quality)}</code>, so this page cannot place the '
            f"methods on a fairness-versus-quality plot; below is <code>{_e(fairness)}</code> per method alone "
            "(quality is not measured in these records).</p>"
        )
        return note + _strip_svg(frame, fairness)
    x = Scale(*_padded([v for _, ext, _ in points for v in ext[1:]]), MARGIN["left"], WIDTH - MARGIN["right"])
    y = Scale(*_padded([v for _, _, ext in points for v in ext[1:]], floor=0.0 if fairness == "epsilon" else None),
              HEIGHT - MARGIN["bottom"], MARGIN["top"])
    parts = _axes(x, y, f"{quality} (lower is better)" if quality.split("@")[0] == "fid" else quality, fairness)
    for index, (label, (xm, xl, xh), (ym, yl, yh)) in enumerate(points):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<g class="point" data-method="{_e(label)}"><title>{_e(label)}: {_e(quality)} {_e(_fmt(xm))}, '
            f"{_e(fairness)} {_e(_fmt(ym))}</title>"
            f'<line x1="{x(xl):.1f}" y1="{y(ym):.1f}" x2="{x(xh):.1f}" y2="{y(ym):.1f}" stroke="{colour}"/>'
            f'<line x1="{x(xm):.1f}" y1="{y(yl):.1f}" x2="{x(xm):.1f}" y2="{y(yh):.1f}" stroke="{colour}"/>'
            f'<circle cx="{x(xm):.1f}" cy="{y(ym):.1f}" r="4" fill="{colour}"/>'
            f'<text x="{x(xm) + 6:.1f}" y="{y(ym) - 6:.1f}" fill="{colour}">{index + 1}</text></g>'
        )
    # Points are numbered and named in a legend below: full labels would collide in the plot.
    legend = "".join(
        f'<li><svg width="10" height="10" aria-hidden="true"><circle cx="5" cy="5" r="4" fill="{PALETTE[i % len(PALETTE)]}"/>'
        f"</svg> {_e(label)}</li>"
        for i, (label, _, _) in enumerate(points)
    )
    out = _svg(parts, f"{fairness} against {quality}, one point per method") + f'<ol class="legend">{legend}</ol>'
    if missing:
        out += f'<p class="note">Without <code>{_e(quality)}</code> (not plotted): ' + ", ".join(_e(m) for m in missing) + ".</p>"
    return out


def _strip_svg(frame: pd.DataFrame, name: str) -> str:
    """One row per method: the metric's mean as a dot, its interval (or ± std) as a bar."""
    rows = [(str(r["method"]), _extent(r, name)) for _, r in frame.iterrows()]
    rows = [(label, ext) for label, ext in rows if ext is not None]
    height = MARGIN["top"] + MARGIN["bottom"] + 28 * len(rows)
    left = 260
    x = Scale(*_padded([v for _, ext in rows for v in ext[1:]], floor=0.0 if name == "epsilon" else None), left, WIDTH - MARGIN["right"])
    base = height - MARGIN["bottom"]
    parts = [f'<line x1="{left}" y1="{base}" x2="{WIDTH - MARGIN["right"]}" y2="{base}" stroke="#333"/>']
    for tick in nice_ticks(x.low, x.high):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{MARGIN["top"]}" x2="{x(tick):.1f}" y2="{base + 5}" stroke="#ddd"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{base + 18}" text-anchor="middle">{_e(_fmt(tick))}</text>')
    parts.append(f'<text x="{(left + WIDTH - MARGIN["right"]) / 2:.1f}" y="{height - 8}" text-anchor="middle">{_e(name)}</text>')
    for index, (label, (mean, low, high)) in enumerate(rows):
        py = MARGIN["top"] + 14 + 28 * index
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<g class="point" data-method="{_e(label)}"><title>{_e(label)}: {_e(name)} {_e(_fmt(mean))} '
            f"[{_e(_fmt(low))}, {_e(_fmt(high))}]</title>"
            f'<text x="{left - 8}" y="{py + 4}" text-anchor="end">{_e(label)}</text>'
            f'<line x1="{x(low):.1f}" y1="{py}" x2="{x(high):.1f}" y2="{py}" stroke="{colour}" stroke-width="2"/>'
            f'<circle cx="{x(mean):.1f}" cy="{py}" r="4" fill="{colour}"/></g>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{_e(name)} per method" font-size="12" font-family="sans-serif">{"".join(parts)}</svg>'
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
                if isinstance(p, (list, tuple)) and len(p) == 2 and _is_number(p[0]) and _is_number(p[1])
            ]
            if points:
                curves.append((record["spec"].get("seed"), record["tau_search"].get("tau"), sorted(points)))
        if not curves:
            continue
        search = ", ".join(sorted({str(r["tau_search"].get("search", "?")) for r in group}))
        taus = [t for _, _, pts in curves for t, _ in pts]
        values = [v for _, _, pts in curves for _, v in pts]
        x = Scale(min(taus), max(taus), MARGIN["left"], WIDTH - MARGIN["right"])
        y = Scale(*_padded(values), HEIGHT - MARGIN["bottom"], MARGIN["top"])
        parts = _axes(x, y, "tau (training timestep)", f"{search} search curve")
        for index, (seed, chosen, points) in enumerate(curves):
            colour = PALETTE[index % len(PALETTE)]
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
            parts.append(
                f'<g class="curve" data-seed="{_e(seed)}"><title>seed {_e(seed)}, chosen tau {_e(chosen)}</title>'
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            )
            if _is_number(chosen):
                parts.append(
                    f'<line x1="{x(chosen):.1f}" y1="{y.start}" x2="{x(chosen):.1f}" y2="{y.end}" '
                    f'stroke="{colour}" stroke-dasharray="4 3"/>'
                )
            parts.append("</g>")
        seeds = ", ".join(f"seed {_e(seed)}: tau {_e(chosen)}" for seed, chosen, _ in curves)
        charts.append(
            f'<figure class="tau-curve" data-method="{_e(label)}">{_svg(parts, f"tau search curve of {label}")}'
            f"<figcaption>{_e(label)} ({_e(search)} search; dashed: chosen tau; {seeds})</figcaption></figure>"
        )
    return "".join(charts)


def grids_html(labels: Sequence[str], directory: Path | None) -> str:
    """Sample grids ``DIR/figures/<grid_filename(label)>``, embedded as data URIs when they are PNG files."""
    figures = []
    if directory is not None:
        for label in labels:
            path = Path(directory) / "figures" / grid_filename(label)
            if not path.is_file():
                continue
            data = path.read_bytes()
            if not data.startswith(PNG_SIGNATURE):
                continue  # only PNG is embedded; anything else under that name is not a grid
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            figures.append(
                f'<figure class="grid" data-method="{_e(label)}"><img src="{uri}" alt="{_e(f"samples of {label}")}">'
                f"<figcaption>{_e(label)}</figcaption></figure>"
            )
    if figures:
        return "".join(figures)
    example = grid_filename(labels[0]) if labels else "<label>.png"
    return f"<p>No sample grids in this directory (a method's grid is the PNG named like <code>{_e(example)}</code>).</p>"


def provenance_html(records: list[dict]) -> str:
    def distinct(get) -> str:
        values = sorted({str(v) for v in (get(r) for r in records) if v is not None})
        return ", ".join(_e(v) for v in values) or "unknown"

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
        "<li>versions: " + ("; ".join(f"{_e(p)} {_e(', '.join(sorted(v)))}" for p, v in sorted(versions.items())) or "unknown") + "</li>",
    ]
    return f"<ul>{''.join(items)}</ul>"


def legend_html(frame: pd.DataFrame) -> str:
    names = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean")]
    items = [
        f"<dt><code>{_e(n)}</code> ({_e(METRICS[n].direction)} is better)</dt><dd>{_e(METRICS[n].formula)}. "
        f"<cite>{_e(METRICS[n].citation)}</cite></dd>"
        if METRICS[n].direction != "none" else
        f"<dt><code>{_e(n)}</code></dt><dd>{_e(METRICS[n].formula)}. <cite>{_e(METRICS[n].citation)}</cite></dd>"
        for n in names if n in METRICS
    ]
    return f"<dl>{''.join(items)}</dl>"


# ---------------------------------------------------------------------------------------------
# The page.

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
tbody th { text-align: left; font-weight: normal; }
thead th:first-child { text-align: left; }
thead button { font: inherit; font-weight: bold; background: none; border: 0; cursor: pointer; padding: 0; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
.scroll { overflow-x: auto; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure.grid img { image-rendering: pixelated; max-width: 320px; }
.note { color: #555; }
dt { margin-top: 0.5em; }
"""

# Sorting reads the `data-value` of the cells, never record text embedded in the script.
SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("leaderboard");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function sortBy(key, descending) {
    var index = headers.findIndex(function (th) { return th.getAttribute("data-key") === key; });
    if (index < 0) { return false; }
    var numeric = headers[index].getAttribute("data-type") === "number";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].getAttribute("data-value"), y = b.cells[index].getAttribute("data-value");
      if (x === "" || y === "") {
        if (x === y) { return Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order")); }
        return x === "" ? 1 : -1;
      }
      var c = numeric ? Number(x) - Number(y) : (x < y ? -1 : x > y ? 1 : 0);
      if (descending) { c = -c; }
      return c || Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (th) { th.setAttribute("aria-sort", "none"); });
    headers[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sorted", (descending ? "-" : "") + key);
    return true;
  }
  function sortFromHash() {
    var match = /^#sort=(-?)(.+)$/.exec(window.location.hash);
    if (match) { sortBy(decodeURIComponent(match[2]), match[1] === "-"); }
  }
  headers.forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      var descending = th.getAttribute("aria-sort") === "ascending";
      sortBy(key, descending);
      try {  // keep the view linkable; file:// pages may refuse history changes
        window.history.replaceState(null, "", "#sort=" + (descending ? "-" : "") + encodeURIComponent(key));
      } catch (error) { /* the table is sorted either way */ }
    });
  });
  window.addEventListener("hashchange", sortFromHash);
  sortFromHash();
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_html(records: list[dict], directory: Path | None = None) -> str:
    """The whole page for `records`; `directory` is where sample grids are looked up."""
    frame = leaderboard_frame(records)
    labels = [str(label) for label in dict.fromkeys(r["label"] for r in records)]
    benchmarks = ", ".join(_e(b) for b in dict.fromkeys(str(r["spec"].get("benchmark")) for r in records)) or "no records"
    seeds = ", ".join(_e(s) for s in dict.fromkeys(r["spec"].get("seed") for r in records))
    policy = (
        f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    if records:
        table = f'<div class="scroll">{table_html(frame)}</div>'
    else:
        table = "<p>No records.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Leaderboard: {benchmarks}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Leaderboard: {benchmarks}</h1>
<p>Generated by <code>fairbench leaderboard</code> from {len(records)} records (seeds {seeds}): mean ± std over
seeds, and the mean of each seed's interval where the metric has one. Click a column header to sort
(or open the page with <code>#sort=epsilon</code>; <code>#sort=-epsilon</code> for descending).</p>
<h2 id="table">Table</h2>
{table}
<h2 id="tradeoff">Fairness against quality</h2>
{tradeoff_plots(frame) if records else "<p>No records.</p>"}
<h2 id="tau">Tau search curves</h2>
{tau_curves_html(records)}
<h2 id="samples">Sample grids</h2>
{grids_html(labels, directory)}
<h2 id="metrics">Metrics</h2>
{legend_html(frame) if records else ""}
<h2 id="provenance">Provenance</h2>
{provenance_html(records)}
<script>{SCRIPT}</script>
</body>
</html>
"""


def write_html(directory: Path) -> Path:
    """Write ``DIR/leaderboard.html`` from the records under DIR; return its path."""
    directory = Path(directory)
    path = directory / HTML_NAME
    atomic_write_text(path, render_html(read_records(directory), directory))
    return path
