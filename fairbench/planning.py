"""How many samples per group a run needs: for a target half-width of epsilon's interval, and
for 80% power to detect a given difference of epsilon between two methods.

Both scale as ``1 / sqrt(n)`` (n samples per requested group): with ``sigma`` the standard
deviation of the statistic at n = 1,

- half-width ``h`` at confidence c: ``n = ceil((z_{(1+c)/2} sigma / h)^2)`` (`stats.n_for_half_width`);
- power ``1 - beta`` for a difference ``delta`` at two-sided level alpha:
  ``n = ceil(((z_{1-alpha/2} + z_{1-beta}) sigma_d / delta)^2)`` (`stats.n_for_power`).

``sigma`` comes from a pilot run, or from assumed values:

- pilot (`plan_from_jobs`): epsilon's recorded interval, ``sigma = (high - low) / (2 z) sqrt(n_p)``
  (the interval includes refitting); for a pair of methods, the paired bootstrap standard error
  of their difference from `fairbench.compare` (seeds combined), ``sigma_d = se sqrt(S n_p)``,
  so the pairing's benefit is measured, not assumed;
- assumed values (`plan_from_values`): a Bayes classifier of two symmetric groups,
  ``sigma^2 = (1 - TV^2) / 2`` (`stats.epsilon_sd_at_one`); for a difference between methods
  of TV ``e`` and ``e + delta``, ``sigma_d^2 = sigma(e)^2 + sigma(e + delta)^2``: no credit for
  pairing, so the planned n is conservative (the shared noise usually makes the difference
  more precise) and refitting variability is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compare import _Job, compare_records
from .errors import FairbenchError
from .stats import epsilon_sd_at_one, n_for_half_width, n_for_power, z_value


@dataclass(frozen=True)
class Plan:
    what: str  # "half-width of <label>'s epsilon interval" / "difference <a> - <b>"
    target: float  # the half-width, or the difference to detect
    sd_at_one: float
    n_per_group: int
    pilot_n_per_group: int | None = None  # None: from assumed values


def plan_from_values(epsilon: float, *, half_width: float | None = None, difference: float | None = None,
                     power: float = 0.8, alpha: float = 0.05, confidence: float = 0.95) -> list[Plan]:
    """Plans from an assumed epsilon (and a difference to detect from it)."""
    plans = []
    if half_width is not None:
        sd = epsilon_sd_at_one(epsilon)
        plans.append(Plan(f"half-width of epsilon's interval at epsilon = {epsilon:g}", half_width, sd,
                          n_for_half_width(half_width, sd_at_one=sd, confidence=confidence)))
    if difference is not None:
        other = epsilon + difference
        if not 0 <= other <= 1:
            raise FairbenchError(f"epsilon + difference must lie in [0, 1], got {epsilon} + {difference}")
        sd = float(np.hypot(epsilon_sd_at_one(epsilon), epsilon_sd_at_one(other)))
        plans.append(Plan(f"{power:.0%} power for epsilon {epsilon:g} vs {other:g} (alpha {alpha:g}, unpaired)",
                          difference, sd, n_for_power(difference, sd_at_one=sd, power=power, alpha=alpha)))
    return plans


def _group_size(job: _Job) -> int:
    return int(np.bincount(job.evidence["requested"]).min())


def plan_from_jobs(jobs: list[_Job], *, half_width: float | None = None, difference: float | None = None,
                   power: float = 0.8, alpha: float = 0.05, confidence: float = 0.95, replicates: int = 1000) -> list[Plan]:
    """Plans from a pilot run's records and evidence: one per method (half-width), one per pair (power)."""
    if not jobs:
        raise FairbenchError("no records to plan from")
    z = z_value(0.5 + confidence / 2.0)
    plans = []
    labels = list(dict.fromkeys(j.label for j in jobs))
    if half_width is not None:
        for label in labels:
            mine = [j for j in jobs if j.label == label and "epsilon_ci" in j.record["metrics"]]
            if not mine:
                continue
            sds = [(j.record["metrics"]["epsilon_ci"][1] - j.record["metrics"]["epsilon_ci"][0]) / (2 * z)
                   * np.sqrt(_group_size(j)) for j in mine]
            sd = float(np.mean(sds))
            plans.append(Plan(f"half-width of {label}'s epsilon interval", half_width, sd,
                              n_for_half_width(half_width, sd_at_one=sd, confidence=confidence), _group_size(mine[0])))
    if difference is not None:
        if len(labels) < 2:
            raise FairbenchError(f"planning for a difference needs two methods; the records hold one: {labels[0]!r}")
        comparisons = compare_records(jobs, ["epsilon"], replicates=replicates, explicit=True)
        for c in comparisons:
            pilot = [j for j in jobs if j.label == c.a]
            se = (c.interval[1] - c.interval[0]) / (2 * z)
            sd = float(se * np.sqrt(c.seeds * _group_size(pilot[0])))
            plans.append(Plan(f"{power:.0%} power for a difference {c.a} - {c.b} (alpha {alpha:g}, paired)", difference, sd,
                              n_for_power(difference, sd_at_one=sd, power=power, alpha=alpha), _group_size(pilot[0])))
    if not plans:
        raise FairbenchError("nothing to plan: give --half-width and/or --difference")
    return plans


def format_plans(plans: list[Plan]) -> str:
    lines = ["| for | target | sd at n = 1 | samples per group | pilot per group |", "|---|---|---|---|---|"]
    for p in plans:
        pilot = "assumed values" if p.pilot_n_per_group is None else str(p.pilot_n_per_group)
        lines.append(f"| {p.what} | {p.target:g} | {p.sd_at_one:.4f} | {p.n_per_group} | {pilot} |")
    return "\n".join(lines) + "\n"

