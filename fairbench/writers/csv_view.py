"""The headline view as CSV: method, benchmark, seeds and, per headline column, its mean, std,
interval bounds and rank group where the frame has them (full precision)."""

from __future__ import annotations

from ..report_model import Report


def headline_frame(report: Report):
    keep = ["method", "benchmark", "n_seeds"]
    for column in report.headline:
        keep += [f"{column.key}{suffix}" for suffix in ("_mean", "_std", "_ci_low", "_ci_high", "_retrain_sd", "_group")
                 if f"{column.key}{suffix}" in report.frame.columns]
    return report.frame[[c for c in keep if c in report.frame.columns]]


def render_csv(report: Report) -> str:
    return headline_frame(report).to_csv(index=False)
