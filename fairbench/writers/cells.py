"""A leaderboard cell as text: ``mean ± std [low, high]`` and the rank-group letters."""

from __future__ import annotations

import pandas as pd

from ..leaderboard import _fmt
from ..report_model import Column, is_number

ARROWS = {"lower": " ↓", "higher": " ↑"}


def spread(row: pd.Series, column: Column) -> str:
    """``mean`` or ``mean ± std`` (std over seeds, shown when there is more than one seed)."""
    mean = row.get(f"{column.key}_mean")
    if not is_number(mean):
        return ""
    text = _fmt(mean)
    std = row.get(f"{column.key}_std")
    if row.get("n_seeds", 1) > 1 and is_number(std):
        text += f" ± {_fmt(std)}"
    return text


def interval(row: pd.Series, column: Column) -> str:
    """``[low, high]`` (the mean over seeds of each seed's interval), or empty."""
    low, high = row.get(f"{column.key}_ci_low"), row.get(f"{column.key}_ci_high")
    if not (is_number(row.get(f"{column.key}_mean")) and is_number(low) and is_number(high)):
        return ""
    return f"[{_fmt(low)}, {_fmt(high)}]"


def retrain(row: pd.Series, column: Column) -> str:
    """``retrain ± sd``: the metric's measured spread over retrains of the networks, or empty."""
    sd = row.get(f"{column.key}_retrain_sd")
    return f"retrain ± {_fmt(sd)}" if is_number(row.get(f"{column.key}_mean")) and is_number(sd) else ""


def rank_letters(row: pd.Series, column: Column) -> str:
    """The rank-group letters of the row's value (``"ab"``), or empty when there are none."""
    if column.rank_group is None:
        return ""
    letters = row.get(column.rank_group)
    return str(letters).strip() if isinstance(letters, str) else ""


def plain(row: pd.Series, column: Column) -> str:
    """``mean ± std [low, high] (letters)``: the whole cell on one line."""
    parts = [spread(row, column), interval(row, column), retrain(row, column)]
    letters = rank_letters(row, column)
    if letters and parts[0]:
        parts.append(f"({letters})")
    return " ".join(p for p in parts if p)


def has_rank_groups(columns: list[Column] | tuple[Column, ...]) -> bool:
    return any(c.rank_group for c in columns)
