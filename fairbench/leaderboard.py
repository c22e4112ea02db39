"""The leaderboard frame: one row per method label, mean +- std (and interval) over seeds.

`fairbench.report_model` builds a report on it; `fairbench.publish` writes the files.

Beside each headline metric (`compare.DEFAULT_METRICS`), where the run kept its per-sample
evidence: ``<metric>_group``, a compact letter display of the paired comparisons
(`fairbench.compare`: methods sharing a letter are not significantly different at the
Holm-adjusted 5% level over every pair and headline metric of the benchmark cell; ``a`` is the
best group). For model kinds whose networks fairbench trains: ``<metric>_retrain_sd``, the
measured standard deviation of the metric over retrains of the networks
(`fairbench.retrain_spread`), the second error bar.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from .compare import DEFAULT_METRICS, compare_records, load_job, rank_groups
from .errors import FairbenchError
from .metrics import METRICS
from .retrain_spread import RetrainSpread

def column_name(name: str, metrics: dict) -> str:
    """``fid@raw`` for a metric keyed by another field (`MetricInfo.keyed_by`), else the name:
    values measured differently (e.g. FIDs on different features) never share a column."""
    info = METRICS.get(name)
    if info is None or info.keyed_by is None or info.keyed_by not in metrics:
        return name
    return f"{name}@{metrics[info.keyed_by]}"


def base_name(column: str) -> str:
    return column.split("@", 1)[0]


def _columns(record: dict) -> dict[str, float]:
    """A record's scalar metrics under their leaderboard column names."""
    return {
        column_name(name, record["metrics"]): value
        for name, value in record["metrics"].items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def _scalar_metrics(records: list[dict]) -> list[str]:
    names: list[str] = []
    for record in records:
        for name in _columns(record):
            if name not in names:
                names.append(name)
    known = [n for m in METRICS for n in names if base_name(n) == m]
    return known + [n for n in names if n not in known]


def _rank_groups(records: list[dict], directory: Path, rows: list[dict]) -> None:
    """Add ``<column>_group`` to the rows of each benchmark cell whose records all kept evidence."""
    for benchmark in dict.fromkeys(r["spec"].get("benchmark") for r in records):
        cell = [r for r in records if r["spec"].get("benchmark") == benchmark]
        jobs = [load_job(directory, r) for r in cell]
        if any(job is None for job in jobs):
            continue
        try:
            comparisons = compare_records(jobs, DEFAULT_METRICS)
        except FairbenchError:  # one method, or nothing comparable: no groups
            continue
        cell_rows = [row for row in rows if row["benchmark"] == benchmark]
        means = {
            c.metric: {row["method"]: row[f"{c.metric}_mean"] for row in cell_rows if f"{c.metric}_mean" in row}
            for c in comparisons
        }
        for column, letters in rank_groups(comparisons, means).items():
            for row in cell_rows:
                if row["method"] in letters:
                    row[f"{column}_group"] = letters[row["method"]]


def leaderboard_frame(records: list[dict], directory: Path | None = None) -> pd.DataFrame:
    """One row per label: ``<metric>_mean``, ``<metric>_std`` and interval bounds where recorded;
    ``<metric>_retrain_sd`` for trained model kinds; with the run's `directory` (its evidence
    files), ``<metric>_group`` rank groups of the headline metrics."""
    rows = []
    names = _scalar_metrics(records)
    # One row per (benchmark cell, method label): grid cells never share a row.
    keys = list(dict.fromkeys((r["spec"].get("benchmark"), r["label"]) for r in records))
    kinds = {r["spec"].get("model", {}).get("kind") for r in records}
    retrain_by_kind = {kind: RetrainSpread.measured(kind) for kind in kinds}
    for benchmark, label in keys:
        group = [r for r in records if r["label"] == label and r["spec"].get("benchmark") == benchmark]
        row = {"method": label, "benchmark": benchmark, "n_seeds": len(group)}
        retrain = retrain_by_kind[group[0]["spec"].get("model", {}).get("kind")]
        for name in names:
            values = [_columns(r).get(name) for r in group]
            values = [v for v in values if isinstance(v, (int, float))]
            if not values:
                continue
            row[f"{name}_mean"] = float(np.mean(values))
            row[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            info = METRICS.get(name)
            if info and info.interval:
                bounds = [r["metrics"].get(info.interval) for r in group if r["metrics"].get(info.interval)]
                if bounds:
                    row[f"{name}_ci_low"] = float(np.mean([b[0] for b in bounds]))
                    row[f"{name}_ci_high"] = float(np.mean([b[1] for b in bounds]))
            spread = retrain.sd(base_name(name), str(label))
            if spread:  # measured and not zero (a count such as nfe_per_sample does not move)
                row[f"{name}_retrain_sd"] = spread
        rows.append(row)
    if directory is not None:
        _rank_groups(records, Path(directory), rows)
    return pd.DataFrame(rows)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


# Characters that would make a record's text active in Markdown: backslash escapes, code
# spans, emphasis and link/image brackets. Raw HTML is neutralised by `html.escape` first.
# Underscores stay: intraword `_` is literal in CommonMark, so `attribute_switching` reads as is.
_MD_ACTIVE = str.maketrans({c: "\\" + c for c in "\\`*[]"})


def _escape_md(text: str) -> str:
    """Text from a record, safe inside a Markdown table cell: no HTML, links, code or cell breaks."""
    text = html.escape(str(text)).translate(_MD_ACTIVE)
    return " ".join(text.replace("|", "\\|").splitlines())


def markdown_table(frame: pd.DataFrame) -> str:
    names = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean")]
    arrows = {"lower": " ↓", "higher": " ↑"}
    header = ["method"] + [f"{_escape_md(n)}{arrows.get(getattr(METRICS.get(base_name(n)), 'direction', ''), '')}" for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in frame.iterrows():
        cells = [_escape_md(row["method"])]
        for n in names:
            mean = row.get(f"{n}_mean")
            if mean is None or pd.isna(mean):
                cells.append("")
                continue
            cell = _fmt(mean)
            if row["n_seeds"] > 1:
                cell += f" ± {_fmt(row[f'{n}_std'])}"
            if f"{n}_ci_low" in row and not pd.isna(row[f"{n}_ci_low"]):
                cell += f" [{_fmt(row[f'{n}_ci_low'])}, {_fmt(row[f'{n}_ci_high'])}]"
            if f"{n}_retrain_sd" in row and not pd.isna(row[f"{n}_retrain_sd"]):
                cell += f" (retrain ± {_fmt(row[f'{n}_retrain_sd'])})"
            if isinstance(row.get(f"{n}_group"), str):
                cell += f" {row[f'{n}_group']}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
