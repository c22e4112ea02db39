"""The headline view as a LaTeX table for papers (booktabs: ``\\usepackage{booktabs}``).

Each cell is ``mean $\\pm$ std`` over seeds, the interval under the metric's value in small
type where it has one, and the rank-group letters as a superscript where the frame has them.
The best value of a column is set in bold only where its rank group is alone: no other method
shares a letter with it, so the paired comparisons tell it apart from every other method.
Without rank groups nothing is bold (a best mean alone says nothing about significance).
"""

from __future__ import annotations

import re

import pandas as pd

from ..report_model import Column, Report, is_number
from .cells import interval, rank_letters, spread

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}
_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _SPECIAL))
ARROWS = {"lower": r" $\downarrow$", "higher": r" $\uparrow$"}


def escape_latex(text: object) -> str:
    """`text` as literal LaTeX text: every character with a meaning in LaTeX escaped, lines joined."""
    return " ".join(_SPECIAL_RE.sub(lambda m: _SPECIAL[m.group()], str(text)).split())


def alone_best(frame: pd.DataFrame, column: Column) -> int | None:
    """The row position of the column's best mean when its rank group is alone, else None.

    Alone: the best row is the only one with that mean and shares no rank-group letter with any
    other row that has a value."""
    if column.rank_group is None or column.direction not in ("lower", "higher"):
        return None
    values = [(i, float(v)) for i, v in enumerate(frame[f"{column.key}_mean"]) if is_number(v)]
    if not values:
        return None
    pick = min if column.direction == "lower" else max
    best = pick(v for _, v in values)
    winners = [i for i, v in values if v == best]
    if len(winners) != 1:
        return None
    letters = [set(str(x)) if isinstance(x, str) else set() for x in frame[column.rank_group]]
    mine = letters[winners[0]]
    if not mine or any(mine & letters[i] for i, _ in values if i != winners[0]):
        return None
    return winners[0]


def cell(row: pd.Series, column: Column, *, bold: bool) -> str:
    text = spread(row, column)
    if not text:
        return ""
    text = escape_latex(text).replace(" ± ", r" $\pm$ ")
    if bold:
        text = rf"\textbf{{{text}}}"
    bounds = interval(row, column)
    if bounds:
        text += rf" {{\scriptsize {escape_latex(bounds)}}}"
    letters = rank_letters(row, column)
    if letters:
        text += rf"\textsuperscript{{{escape_latex(letters)}}}"
    return text


def render_latex(report: Report) -> str:
    s = report.summary
    frame = report.frame
    columns = report.headline
    bold = {c.key: alone_best(frame, c) for c in columns}
    seeds = ", ".join(str(seed) for seed in s.seeds)
    note = ("bold: the best value where its rank group is alone; superscripts: rank groups"
            if any(c.rank_group for c in columns) else "no rank groups in these records, so nothing is bold")
    lines = [
        f"% fairbench leaderboard --format latex: {s.n_records} records of {escape_latex(s.benchmark)}, seeds {escape_latex(seeds)}",
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{escape_latex(s.benchmark)}: mean $\pm$ std over seeds ({escape_latex(seeds)}), the interval in small type; {note}.}}",
        rf"\label{{tab:fairbench-{re.sub(r'[^A-Za-z0-9-]+', '-', s.benchmark).strip('-') or 'leaderboard'}}}",
        r"\begin{tabular}{l" + "r" * len(columns) + "}",
        r"\toprule",
        " & ".join(["Method"] + [escape_latex(c.key) + ARROWS.get(c.direction, "") for c in columns]) + r" \\",
        r"\midrule",
    ]
    for position, (_, row) in enumerate(frame.iterrows()):
        cells = [escape_latex(row["method"])] + [cell(row, c, bold=bold[c.key] == position) for c in columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
