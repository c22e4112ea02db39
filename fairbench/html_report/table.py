"""The page's sortable table: one row per method, the same numbers as ``leaderboard.csv``.

Each cell carries its full-precision value in ``data-value`` (what the page's script sorts
by) and shows the mean ± std over seeds; interval bounds are columns of their own.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from ..leaderboard import _fmt
from ..metrics import METRICS


def escape(value: object) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def is_number(value: object) -> bool:
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
        if f"{name}_retrain_sd" in frame.columns:
            columns.append(Column(f"{name}_retrain_sd", f"{name} retrain sd", "number",
                                  "standard deviation over retrains of the networks (the second error bar)"))
        if f"{name}_group" in frame.columns:
            columns.append(Column(f"{name}_group", f"{name} group", "text",
                                  "rank group: methods sharing a letter are not significantly different (Holm, 5%)"))
    return columns


def _cell(row: pd.Series, column: Column) -> tuple[str, str]:
    """(text shown, sort value) of one cell; the sort value keeps full precision."""
    if column.key == "method":
        return str(row["method"]), str(row["method"])
    if column.key == "n_seeds":
        return str(int(row["n_seeds"])), str(int(row["n_seeds"]))
    if column.key.endswith("_group"):
        letters = row.get(column.key)
        return (letters, letters) if isinstance(letters, str) else ("", "")
    key = column.key if column.key.endswith(("_ci_low", "_ci_high", "_retrain_sd")) else f"{column.key}_mean"
    value = row.get(key)
    if not is_number(value):
        return "", ""
    text = _fmt(value)
    std = row.get(f"{column.key}_std")
    if key.endswith("_mean") and row["n_seeds"] > 1 and is_number(std):
        text += f" ± {_fmt(std)}"
    return text, repr(float(value))


def table_html(frame: pd.DataFrame) -> str:
    columns = table_columns(frame)
    head = "".join(
        f'<th scope="col" data-key="{escape(c.key)}" data-type="{c.kind}" aria-sort="none" title="{escape(c.note)}">'
        f'<button type="button">{escape(c.title)}</button></th>'
        for c in columns
    )
    rows = []
    for order, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for column in columns:
            text, value = _cell(row, column)
            tag = "th scope=\"row\"" if column.key == "method" else "td"
            cells.append(f'<{tag} data-value="{escape(value)}">{escape(text)}</{tag.split()[0]}>')
        rows.append(f'<tr data-order="{order}">{"".join(cells)}</tr>')
    return (
        '<table id="leaderboard" data-sorted="">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
