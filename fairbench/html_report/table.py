"""The page's sortable tables: the headline table and one detail table per metric group.

A cell shows ``mean ± std`` over seeds, the metric's interval under it where recorded, and the
rank-group letters beside it where the frame has them; it carries the full-precision mean in
``data-value`` (what the page's script sorts by).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence

import pandas as pd

from ..report_model import Column, Report, is_number
from ..writers.cells import ARROWS, interval, rank_letters, retrain, spread

__all__ = ["escape", "is_number", "table_html", "header_html"]


def escape(value: object) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def breakable(text: str) -> str:
    """Escaped `text` that may wrap after ``_``, ``@``, ``:`` and ``(`` (long metric names and labels)."""
    return re.sub(r"(_|@|:|\(|,)", r"\1<wbr>", escape(text))


def header_html(column: Column) -> str:
    note = column.info.formula if column.info else ""
    return (
        f'<th scope="col" data-key="{escape(column.key)}" data-type="number" aria-sort="none" title="{escape(note)}">'
        f'<button type="button">{breakable(column.key)}{escape(ARROWS.get(column.direction, ""))}</button></th>'
    )


def cell_html(row: pd.Series, column: Column) -> str:
    mean = row.get(f"{column.key}_mean")
    if not is_number(mean):
        return '<td data-value=""></td>'
    body = escape(spread(row, column))
    bounds = interval(row, column)
    if bounds:
        body += f'<span class="ci">{escape(bounds)}</span>'
    spread_over_retrains = retrain(row, column)
    if spread_over_retrains:
        body += f' <span class="retrain" title="spread over retrains of the networks">{escape(spread_over_retrains)}</span>'
    letters = rank_letters(row, column)
    if letters:
        body += f' <span class="rank" title="rank group">{escape(letters)}</span>'
    return f'<td data-value="{escape(repr(float(mean)))}">{body}</td>'


def table_html(report: Report, columns: Sequence[Column], *, table_id: str, caption: str = "",
               frame: pd.DataFrame | None = None, method_href: Callable[[str], str] | None = None) -> str:
    """`columns` of `frame` (default: the report's) as a sortable table; `method_href` links each
    method's name (to its page on a site)."""
    frame = report.frame if frame is None else frame
    head = (
        '<th scope="col" data-key="method" data-type="text" aria-sort="none"><button type="button">method</button></th>'
        + "".join(header_html(c) for c in columns)
    )
    rows = []
    for order, (_, row) in enumerate(frame.iterrows()):
        label = str(row["method"])
        name = breakable(label) if method_href is None else f'<a href="{escape(method_href(label))}">{breakable(label)}</a>'
        cells = f'<th scope="row" data-value="{escape(label)}">{name}</th>'
        cells += "".join(cell_html(row, c) for c in columns)
        rows.append(f'<tr data-order="{order}">{cells}</tr>')
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (
        f'<table id="{escape(table_id)}" class="sortable" data-sorted="">{caption_html}'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
