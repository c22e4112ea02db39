"""Every measurement fairbench reports: its name, formula, citation and direction.

The functions live in the submodules (`fairness`, ...); this table is what `fairbench ls`,
the README's metrics table and the leaderboards read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    name: str
    formula: str
    direction: Literal["lower", "higher", "none"]  # which is better
    citation: str
    interval: str | None = None  # name of the metric holding its [low, high] interval


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        MetricInfo(
            "epsilon",
            "max over pairs (a, b) of max(0, 2 * balanced_accuracy - 1) of a cross-fitted classifier "
            "predicting `requested` from sample features; a lower bound on max_ab TV(q(x|a), q(x|b))",
            "lower",
            "Choi et al. 2024 (epsilon-fairness); estimator: fairbench, METHOD.md",
            interval="epsilon_ci",
        ),
        MetricInfo("tv_exact", "closed-form max_ab TV between requested groups (analytic Gaussian model, DDIM)",
                   "lower", "METHOD.md, analytic Gaussian model"),
        MetricInfo("nfe_per_sample", "model evaluations per generated sample", "lower", "-"),
        MetricInfo("wall_s", "wall-clock seconds of sampling (tau search excluded)", "lower", "-"),
        MetricInfo("samples_per_s", "n_samples / wall_s", "higher", "-"),
        MetricInfo("tau", "transition timestep used by attribute switching, on the training grid [-1, T-1]",
                   "none", "Choi et al. 2024, Algorithm 1"),
        MetricInfo("tau_search_nfe", "model evaluations spent by the tau search, counted per sample", "lower", "-"),
        MetricInfo("tau_search_s", "wall-clock seconds of the tau search", "lower", "-"),
    ]
}
