"""Paired comparisons of the methods of a run, from each job's per-sample evidence.

Each job keeps, beside its record, ``evidence/<job key>.npz``: numpy arrays only (read with
``allow_pickle=False``), the per-sample inputs of its headline metrics (`EVIDENCE`). A
metric's statistic can then be recomputed on any multiset of sample indices, and every method
of a seed is evaluated on the *same* resampled indices (sample i of every method starts from
the same noise: the design is paired). `compare_records` gives, for every pair of methods and
every chosen metric, the difference, its interval, its p-value and Holm's adjustment over all
the pairs and metrics compared (`fairbench.stats`).

What is held fixed in a replicate (so what the interval does not cover):

- ``epsilon``: each method's held-out predictions (the repeat-averaged votes of its nested
  cross-fitting, `EpsilonEstimate.heldout`), so no learner is refitted per replicate;
  for k > 2 the pair of requested values that attained the maximum. Refitting variability is
  in ``epsilon_ci`` (and in the spread over seeds), not in these intervals.
- ``fd``, ``target_gap``: the judges' labels of each sample (the judges are fixed networks).
- ``fid``: the real data's feature mean and covariance (one reference for every method).
- ``utility_fraction``, ``utility_accuracy``: the downstream classifiers fitted on each
  method's samples and on real data; the replicates resample the real *test* images (shared by
  every method, so also paired). The variability of the generated training set shows only
  across seeds.

Seeds are independent replicates: their paired differences are averaged and their replicates
combined (`stats.paired_difference`). Records of different trainings of the networks (their
``model`` spec or feature extractor differ) add the measured retrain spread
(`fairbench.retrain_spread`) to the difference's variance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .errors import FairbenchError, suggest
from .metrics import METRICS
from .records import Record, atomic_write_text, read_records
from .retrain_spread import RetrainSpread
from .stats import Difference, compact_letters, holm, paired_difference, stratified_indices, z_value

EVIDENCE_DIR = "evidence"
REPLICATES = 1000
FID_REPLICATES = 200  # each FID replicate is an eigen-decomposition; 200 estimate its standard error to ~5%
ALPHA = 0.05


# ---------------------------------------------------------------------------------------------
# Evidence files


def evidence_path(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / EVIDENCE_DIR / f"{key[:16]}.npz"


def write_evidence(out_dir: Path, key: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write a job's evidence atomically (numeric arrays only: nothing that needs a pickle)."""
    path = evidence_path(out_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    arrays = {name: np.asarray(value) for name, value in arrays.items() if value is not None}
    for name, value in arrays.items():
        if value.dtype == object:
            raise ValueError(f"evidence {name!r} is not a numeric array")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def read_evidence(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise FairbenchError(f"evidence file {str(path)!r} cannot be read: {exc}") from None


def record_evidence(directory: Path, record: Record) -> dict[str, np.ndarray] | None:
    key = record.get("job_key")
    if key is None:
        return None
    path = evidence_path(directory, key)
    return read_evidence(path) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Statistics on resampled indices: each takes the evidence and index rows [R, N] (rows of the
# sample indices, or of the real test indices for utility) and returns R values.


def held_out_votes(estimate, n: int) -> np.ndarray:
    """Per sample of the n given to `epsilon_fairness`: the fraction of the repeats' held-out
    predictions (`EpsilonEstimate.heldout`) that say ``pair[1]``; NaN outside the pair."""
    held = estimate.heldout
    votes = np.full(n, np.nan)
    votes[held.indices] = (held.predicted == held.pair[1]).mean(axis=0)
    return votes


def epsilon_statistic(ev: dict, rows: np.ndarray) -> np.ndarray:
    """``clip(mean_{i in pair[1]} v_i - mean_{i in pair[0]} v_i, 0, 1)`` over the resampled
    indices, v the held-out votes (`held_out_votes`): the record's epsilon
    on the identity rows."""
    votes, requested, pair = ev["epsilon_votes"], ev["requested"], ev["epsilon_pair"]
    values = votes[rows]
    tpr = values[:, requested == pair[1]].mean(axis=1)
    fpr = values[:, requested == pair[0]].mean(axis=1)
    return np.clip(tpr - fpr, 0.0, 1.0)


def fd_statistic(ev: dict, rows: np.ndarray) -> np.ndarray:
    """``max_g || p_g - u ||_2``, p_g the judged distribution of requested group g's resampled samples."""
    labels, requested, target = ev["judge_label"][rows], ev["requested"], ev["balance_target"]
    k = len(target)
    worst = np.zeros(len(rows))
    for g in np.unique(requested):
        in_group = labels[:, requested == g]
        p = np.stack([(in_group == j).mean(axis=1) for j in range(k)], axis=1)
        worst = np.maximum(worst, np.linalg.norm(p - target, axis=1))
    return worst


def _max_pairwise_tv(counts: np.ndarray) -> np.ndarray:
    """counts [R, G, m] -> max over pairs of non-empty groups of 1/2 ||r_g - r_h||_1, per row."""
    sizes = counts.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = counts / sizes
    present = sizes[..., 0] > 0
    out = np.zeros(len(counts))
    groups = counts.shape[1]
    for g, h in combinations(range(groups), 2):
        both = present[:, g] & present[:, h]
        tv = 0.5 * np.abs(r[:, g] - r[:, h]).sum(axis=1)
        out = np.where(both, np.maximum(out, np.nan_to_num(tv)), out)
    return out


def target_gap_statistic(ev: dict, rows: np.ndarray) -> np.ndarray:
    """``max`` over the groupings (requested value, final value) of the largest pairwise TV of the
    groups' judged target distributions (`inheritance.target_gap`) on the resampled samples."""
    labels, m = ev["target_label"][rows], int(ev["target_classes"])
    k = int(max(ev["requested"].max(), ev["final"].max())) + 1
    r_count = len(rows)
    best = np.zeros(r_count)
    for groups in (np.broadcast_to(ev["requested"], rows.shape), ev["final"][rows]):
        flat = (np.arange(r_count)[:, None] * k + groups) * m + labels
        counts = np.bincount(flat.ravel(), minlength=r_count * k * m).reshape(r_count, k, m).astype(float)
        best = np.maximum(best, _max_pairwise_tv(counts))
    return best


def fid_statistic(ev: dict, rows: np.ndarray) -> np.ndarray:
    """``||mu - mu_r||^2 + Tr(S) + Tr(S_r) - 2 sum_i sqrt(lambda_i)``, lambda_i the eigenvalues
    of ``S_r^(1/2) S S_r^(1/2)`` (which equal those of ``S S_r``: the Frechet distance), mu and S
    the mean and unbiased covariance of the resampled samples' features, the real ones fixed."""
    x = ev["fid_features"].astype(np.float64)
    mu_r, cov_r = ev["fid_real_mean"].astype(np.float64), ev["fid_real_cov"].astype(np.float64)
    w, v = np.linalg.eigh(cov_r)
    root_r = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    n = x.shape[0]
    out = np.empty(len(rows))
    trace_r = float(np.trace(cov_r))
    for r, row in enumerate(rows):
        counts = np.bincount(row, minlength=n).astype(np.float64)
        mu = counts @ x / len(row)
        centred = x - mu
        cov = (centred.T * counts) @ centred / (len(row) - 1)
        eig = np.linalg.eigvalsh(root_r @ cov @ root_r)
        out[r] = float(np.sum((mu - mu_r) ** 2) + np.trace(cov) + trace_r - 2.0 * np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    return out


def utility_accuracy_statistic(ev: dict, rows: np.ndarray) -> np.ndarray:
    """Accuracy on the resampled real test images of the classifier trained on the samples."""
    return ev["utility_correct"][rows].mean(axis=1)


def utility_fraction_statistic(ev: dict, rows: np.ndarray) -> np.ndarray:
    """``accuracy / accuracy_real`` on the same resampled real test images."""
    real = ev["utility_correct_real"][rows].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(real > 0, ev["utility_correct"][rows].mean(axis=1) / real, np.nan)


@dataclass(frozen=True)
class Statistic:
    compute: Callable[[dict, np.ndarray], np.ndarray]
    needs: tuple[str, ...]  # evidence arrays
    space: str  # "samples" (generated sample indices) or "test" (real test indices)


# metric name (its record / leaderboard name) -> how to recompute it from evidence
STATISTICS: dict[str, Statistic] = {
    "epsilon": Statistic(epsilon_statistic, ("epsilon_votes", "epsilon_pair", "requested"), "samples"),
    "fd": Statistic(fd_statistic, ("judge_label", "balance_target", "requested"), "samples"),
    "target_gap": Statistic(target_gap_statistic, ("target_label", "target_classes", "requested", "final"), "samples"),
    "fid": Statistic(fid_statistic, ("fid_features", "fid_real_mean", "fid_real_cov"), "samples"),
    "utility_fraction": Statistic(utility_fraction_statistic, ("utility_correct", "utility_correct_real"), "test"),
    "utility_accuracy": Statistic(utility_accuracy_statistic, ("utility_correct",), "test"),
}
DEFAULT_METRICS = ("epsilon", "fd", "target_gap", "fid", "utility_fraction")
# The evidence arrays a job keeps (every statistic's inputs).
EVIDENCE = tuple(dict.fromkeys(name for s in STATISTICS.values() for name in s.needs))


# ---------------------------------------------------------------------------------------------
# Comparing


@dataclass(frozen=True)
class Comparison:
    metric: str  # the leaderboard column (``fid@judge:...`` for FID)
    a: str
    b: str
    difference: float  # mean over seeds of a - b
    interval: tuple[float, float]
    p_value: float
    p_holm: float
    seeds: int
    retrain_sd: float = 0.0  # training spread added (records of different trainings)

    def as_json(self) -> dict:
        return {"metric": self.metric, "a": self.a, "b": self.b, "difference": self.difference,
                "interval": list(self.interval), "p_value": self.p_value, "p_holm": self.p_holm}


@dataclass
class _Job:
    label: str
    seed: int
    record: Record
    evidence: dict[str, np.ndarray]


def _column(metric: str, record: Record) -> str:
    """The metric's leaderboard column: ``fid@<features>`` for a metric keyed by another field."""
    info, values = METRICS.get(metric), record["metrics"]
    if info is None or info.keyed_by is None or info.keyed_by not in values:
        return metric
    return f"{metric}@{values[info.keyed_by]}"


def _training(record: Record) -> str:
    spec = record["spec"]
    return json.dumps([spec.get("model"), spec.get("epsilon_features")], sort_keys=True)


def check_metrics(metrics: Sequence[str]) -> list[str]:
    for name in metrics:
        if name not in STATISTICS:
            raise FairbenchError(f"Unknown metric for compare {name!r}.{suggest(name, STATISTICS)}")
    return list(dict.fromkeys(metrics))


def load_job(directory: Path, record: Record) -> _Job | None:
    """A record with its evidence from the run `directory`; None when it kept none."""
    evidence = record_evidence(Path(directory), record)
    return None if evidence is None else _Job(record["label"], int(record["spec"].get("seed", 0)), record, evidence)


def load_jobs(directories: Sequence[Path]) -> list[_Job]:
    """Every record of the directories with its evidence (records without evidence are refused)."""
    jobs = []
    for directory in directories:
        directory = Path(directory)
        base = directory.parent if directory.name == "records" else directory
        for record in read_records(directory):
            job = load_job(base, record)
            if job is None:
                raise FairbenchError(
                    f"record {record['label']!r} (seed {record['spec'].get('seed')}) in {str(directory)!r} has no evidence "
                    f"file under {str(base / EVIDENCE_DIR)!r}; rerun it with this fairbench version"
                )
            jobs.append(job)
    return jobs


def _check_pairing(jobs: list[_Job]) -> None:
    benchmarks = sorted({str(j.record["spec"].get("benchmark")) for j in jobs})
    if len(benchmarks) > 1:
        raise FairbenchError(f"records of different benchmarks cannot be paired: {', '.join(benchmarks)}")
    labels = list(dict.fromkeys(j.label for j in jobs))
    if len(labels) < 2:
        raise FairbenchError(f"compare needs at least two methods; the records hold one: {labels[0]!r}")
    for seed in sorted({j.seed for j in jobs}):
        same = [j for j in jobs if j.seed == seed]
        first = same[0]
        repeated = [label for label in dict.fromkeys(j.label for j in same) if sum(j.label == label for j in same) > 1]
        if repeated:
            raise FairbenchError(f"two records of {repeated[0]!r} with seed {seed}; each method needs its own label")
        for job in same[1:]:
            if not np.array_equal(job.evidence["requested"], first.evidence["requested"]):
                sizes = len(job.evidence["requested"]), len(first.evidence["requested"])
                why = ("a sequential n_samples stops each method at its own look; pairing needs one fixed n_samples"
                       if sizes[0] != sizes[1] else "different requests")
                raise FairbenchError(
                    f"the sample indices of {job.label!r} and {first.label!r} (seed {seed}) do not pair: "
                    f"{sizes[0]} and {sizes[1]} samples ({why})"
                )
            a, b = job.evidence.get("utility_correct"), first.evidence.get("utility_correct")
            if a is not None and b is not None and len(a) != len(b):
                raise FairbenchError(
                    f"the real test sets of {job.label!r} and {first.label!r} (seed {seed}) do not pair: {len(a)} and {len(b)} images"
                )


def _replicates_of(jobs: list[_Job], metrics: list[str], *, replicates: int, seed: int) -> dict:
    """(metric, label, seed) -> (observed value, replicate values), same indices per seed."""
    out = {}
    for s in sorted({j.seed for j in jobs}):
        same = [j for j in jobs if j.seed == s]
        rng = np.random.default_rng([seed, s])
        n = len(same[0].evidence["requested"])
        rows = stratified_indices(same[0].evidence["requested"], replicates, rng)
        tests = {len(j.evidence["utility_correct"]) for j in same if "utility_correct" in j.evidence}
        test_rows = rng.integers(0, max(tests), size=(replicates, max(tests))) if tests else None
        for metric in metrics:
            statistic = STATISTICS[metric]
            for job in same:
                if not all(name in job.evidence for name in statistic.needs):
                    continue
                space = rows if statistic.space == "samples" else test_rows
                if metric == "fid":
                    space = space[:FID_REPLICATES]
                identity = np.arange(n if statistic.space == "samples" else space.shape[1])[None, :]
                observed = float(statistic.compute(job.evidence, identity)[0])
                out[metric, job.label, s] = (observed, statistic.compute(job.evidence, space), job.record)
    return out


def compare_records(
    jobs: list[_Job], metrics: Sequence[str] | None = None, *, replicates: int = REPLICATES, seed: int = 0,
    confidence: float = 0.95, spreads: RetrainSpread | None = None, explicit: bool = False,
) -> list[Comparison]:
    """Every pair of methods on every metric: paired differences, intervals, p-values, Holm.

    `metrics` default `DEFAULT_METRICS` (those the run measured); with `explicit`, a named
    metric the run did not measure is an error. `spreads`: the standard deviation of one
    training's value (`fairbench.retrain_spread.RetrainSpread`, each method's own where
    measured), added in quadrature for each side when the two methods' records come from
    different trainings: ``se^2 + sd_a^2 + sd_b^2``.
    """
    if not jobs:
        raise FairbenchError("no records to compare")
    metrics = check_metrics(metrics or DEFAULT_METRICS)
    _check_pairing(jobs)
    values = _replicates_of(jobs, metrics, replicates=replicates, seed=seed)
    labels = list(dict.fromkeys(j.label for j in jobs))
    measured = {metric for metric, _, _ in values}
    if explicit:
        missing = [m for m in metrics if m not in measured]
        if missing:
            available = [name for name, st in STATISTICS.items() if all(n in jobs[0].evidence for n in st.needs)]
            raise FairbenchError(f"metric {missing[0]!r} was not measured for two methods of these records; "
                                 f"valid here: {', '.join(available) or 'none'}")
    spreads = spreads or RetrainSpread()
    results: list[tuple] = []
    for metric in metrics:
        for a, b in combinations(labels, 2):
            seeds = sorted(s for (m, lab, s) in values if m == metric and lab == a and (metric, b, s) in values)
            if not seeds:
                continue
            sides = [[values[metric, lab, s] for s in seeds] for lab in (a, b)]
            if any(not np.all(np.isfinite(v[1])) or not np.isfinite(v[0]) for side in sides for v in side):
                continue
            difference = paired_difference(
                [v[0] for v in sides[0]], [v[0] for v in sides[1]], [v[1] for v in sides[0]], [v[1] for v in sides[1]],
                confidence=confidence,
            )
            record_a, record_b = sides[0][0][2], sides[1][0][2]
            spread = 0.0
            if _training(record_a) != _training(record_b):
                # each side's own retrain sd where measured; reported as their root mean square
                sides_sd = [spreads.sd(metric, label) or 0.0 for label in (a, b)]
                spread = float(np.sqrt((sides_sd[0] ** 2 + sides_sd[1] ** 2) / 2.0))
                difference = widen(difference, np.sqrt(2.0 / len(seeds)) * spread, confidence)
            results.append((_column(metric, record_a), a, b, difference, len(seeds), spread))
    if not results:
        raise FairbenchError(f"no metric of {', '.join(metrics)} was measured for two methods of these records")
    adjusted = holm([r[3].p_value for r in results])
    return [
        Comparison(column, a, b, d.difference, d.interval, d.p_value, float(p), seeds, spread)
        for (column, a, b, d, seeds, spread), p in zip(results, adjusted)
    ]


def widen(difference: Difference, extra_sd: float, confidence: float) -> Difference:
    """The same difference with ``extra_sd`` added to its standard error in quadrature."""
    se = float(np.hypot(difference.standard_error, extra_sd))
    d = difference.difference
    z = z_value(0.5 + confidence / 2.0)
    p = 2.0 * NormalDist().cdf(-abs(d) / se) if se > 0 else (1.0 if d == 0 else 0.0)
    return Difference(d, (d - z * se, d + z * se), float(p), se)


def rank_groups(comparisons: list[Comparison], means: dict[str, dict[str, float]], *, alpha: float = ALPHA) -> dict[str, dict[str, str]]:
    """column -> {label: letters}: a compact letter display per compared column, best first by
    the column's direction (`MetricInfo.direction`); a pair is different when ``p_holm < alpha``."""
    out = {}
    for column in dict.fromkeys(c.metric for c in comparisons):
        info = METRICS.get(column.split("@", 1)[0])
        sign = -1.0 if info is not None and info.direction == "higher" else 1.0
        column_means = means.get(column, {})
        order = sorted(column_means, key=lambda label: sign * column_means[label])
        different = {frozenset((c.a, c.b)) for c in comparisons if c.metric == column and c.p_holm < alpha}
        compared = {lab for c in comparisons if c.metric == column for lab in (c.a, c.b)}
        out[column] = compact_letters([lab for lab in order if lab in compared], different)
    return out


def format_table(comparisons: list[Comparison]) -> str:
    """A Markdown table of the comparisons."""
    lines = ["| metric | a | b | a - b | 95% interval | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        mark = " *" if c.p_holm < ALPHA else ""
        lines.append(f"| {c.metric} | {c.a} | {c.b} | {c.difference:+.4f} | [{c.interval[0]:+.4f}, {c.interval[1]:+.4f}] "
                     f"| {c.p_value:.3g} | {c.p_holm:.3g}{mark} |")
    return "\n".join(lines) + "\n"


def write_comparisons(path: Path, comparisons: list[Comparison]) -> None:
    atomic_write_text(path, json.dumps([c.as_json() for c in comparisons], indent=2) + "\n")
