"""Regression checks: compare a run's records with stored baseline records, metric by metric.

``fairbench check DIR --baseline FILE_OR_DIR`` exits 0 when every compared metric stayed
within its tolerance, 1 when any moved (printing a table of what moved), 2 on bad input.

Matching. A new record is compared with the baseline record of the same spec hash: the spec
holds everything the numbers depend on (model, sampler, method, seed, sample count, metric
settings) and nothing they do not (provenance: versions, git sha, device, batch size), so an
unchanged config rerun on any machine matches its baseline, whatever the order of its
``[[methods]]`` (a method's place in the config is not in the spec). ``match = "label_seed"`` pairs
records by (benchmark, label, seed) instead; use it when the spec format itself changed (a new
config option with a default adds a key to every spec and so changes every hash) and the
labels still name the same methods. It trusts the labels: a changed method under an unchanged
label is compared, not refused.

A record is broken when a metric's value lies outside its own interval (beyond floating-point
noise): the comparison fails whatever the tolerances (rule "outside its own interval"), since
an edited or corrupted value would otherwise widen its own allowance.

Tolerance of one metric, first rule that applies:

1. a configured bound (``--tolerance fid=2.0`` or ``fid=5%``, or the ``[check]`` table's
   ``tolerance``): moved when ``|new - base| > bound`` (``bound = p/100 * |base|`` for ``p%``);
2. a metric with an interval (``MetricInfo.interval``, e.g. ``epsilon_ci``): with
   ``d = new - base``, each side contributes its distance from its estimate to the end of its
   interval that faces the other estimate, and the two add in quadrature:
   ``d > 0: allowed = k * sqrt((hi_base - base)^2 + (new - lo_new)^2)``,
   ``d < 0: allowed = k * sqrt((base - lo_base)^2 + (hi_new - new)^2)``;
   moved when ``|d| > allowed``. With symmetric normal intervals of confidence c and ``k = 1``
   this is the two-sided test at level 1 - c of "both estimate the same quantity"; the
   one-sided distances keep it sensible for intervals clipped at a bound (epsilon at 0). A
   record without the interval contributes 0 for its side;
3. anything else (exact quantities such as ``tv_exact``, ``nfe_per_sample``, ``tau``) must
   agree to ``|new - base| <= exact * max(1, |base|)`` (floating-point noise across machines).

Training variation. A config whose networks fairbench trains (every model kind except the
analytic ``gaussian``) gives different weights when the cache is cold, and training on the
CPU is not bitwise reproducible, so a rerun that retrains moves the metrics by more than
their sampling intervals. For such records ``training_spread`` (metric -> bound, absolute or
``p%``) is added in quadrature to the allowance of rules 2 and 3:
``allowed = sqrt(allowed_rule^2 + spread^2)``. The default is measured: for every metric in
``fairbench/networks/RETRAIN_SPREAD.json`` (`fairbench.retrain_spread`: the standard deviation
sd of one training's value over retrains of the shipped digits networks, the method's own
where that method was retrained, pooled over the retrained methods otherwise),
``spread = 2 sqrt(2) sd``, about the 95% bound on the difference of two trainings (each with sd);
metrics it does not list keep ``epsilon = 0.06`` and ``epsilon_linear = 0.06`` (one earlier
measured gap of two cold trainings times 1.4) or stay on their rule (`training_allowance`). So no metric a retrain
moves is compared exactly across one; metrics a retrain cannot move (``nfe_per_sample``)
measured a spread of 0. A configured bound (rule 1) is taken as given, without the spread.

Timing metrics (``records.MACHINE_METRICS``: wall_s, samples_per_s, tau_search_s, peak_mem_mb, measure_s) measure the machine, not the
method, and are excluded by default (``exclude``), as is ``epsilon_p_value`` (a test's
p-value, not a measurement: epsilon and its interval are compared); naming one in ``tolerance`` compares it.
With ``fail_on = "worse"`` a change in a metric's better direction passes (metrics with no
direction, such as ``tau``, fail either way). A baseline record with no new counterpart fails
unless ``allow_missing``; new records with no baseline are listed and pass.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .tables import parse_table
from .errors import FairbenchError, suggest
from .metrics import METRICS
from .records import MACHINE_METRICS, read_record, read_records
from .retrain_spread import RetrainSpread

TIMING_METRICS = MACHINE_METRICS  # they measure the machine: excluded by default
DEFAULT_EXCLUDE = (*TIMING_METRICS, "epsilon_p_value")
# Change of a metric between two trainings of the same config (module docstring): 2 sqrt(2) times
# the measured retrain standard deviation, each method's own where it was retrained.
MEASURED_SPREAD = RetrainSpread.measured()
TWO_TRAININGS = 2.0 * math.sqrt(2.0)  # about the 95% bound on the difference of two trainings, in sds


def two_trainings_bound(sd: float) -> float:
    """``2 sqrt(2) sd`` to three significant digits: how far two trainings, each with `sd`, move a value."""
    return float(f"{TWO_TRAININGS * sd:.3g}")


DEFAULT_TRAINING_SPREAD = {"epsilon": 0.06, "epsilon_linear": 0.06} | {
    name: two_trainings_bound(sd) for name, sd in MEASURED_SPREAD.pooled.items()
}  # the pooled bounds: methods that were not retrained
UNTRAINED_MODEL_KINDS = ("gaussian",)  # analytic models: no network, nothing retrained
OUTSIDE_SLACK = 1e-9  # a value this far outside its interval is floating-point noise, not a broken record


@dataclass(frozen=True)
class Tolerance:
    """A configured bound on ``|new - base|``: absolute, or a percentage of ``|base|``."""

    value: float
    relative: bool = False

    def allowed(self, base: float) -> float:
        return self.value / 100.0 * abs(base) if self.relative else self.value

    def __str__(self) -> str:
        return f"tolerance {self.value:g}%" if self.relative else f"tolerance {self.value:g}"


def parse_tolerance(value: Any, where: str) -> Tolerance:
    """``2.0`` (absolute) or ``"5%"`` (relative to the baseline value); non-negative."""
    text = str(value).strip()
    relative = isinstance(value, str) and text.endswith("%")
    number = text[:-1] if relative else text
    try:
        bound = float(number) if not isinstance(value, bool) else math.nan
    except ValueError:
        bound = math.nan
    if not math.isfinite(bound) or bound < 0:
        raise FairbenchError(f"{where} = {value!r} is not a tolerance; give a non-negative number or a percentage like '5%'")
    return Tolerance(bound, relative)


@dataclass(frozen=True)
class CheckSpec:
    """The ``[check]`` table (and the ``fairbench check`` options, which override it)."""

    k: float = 1.0  # multiplier on the combined interval half-width (rule 2)
    exact: float = 1e-6  # relative agreement required of metrics without interval or bound (rule 3)
    match: Literal["spec_hash", "label_seed"] = "spec_hash"
    fail_on: Literal["any", "worse"] = "any"
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    tolerance: dict = field(default_factory=dict)  # metric -> number or "p%"
    # metric -> number or "p%": change between two trainings of the same config's networks; a
    # metric not named here gets the measured one (`training_allowance`)
    training_spread: dict = field(default_factory=dict)
    allow_missing: bool = False

    def validate(self, where: str) -> None:
        if self.k <= 0:
            raise FairbenchError(f"{where}.k must be positive, got {self.k}")
        if self.exact < 0:
            raise FairbenchError(f"{where}.exact must be non-negative, got {self.exact}")
        for name, value in self.tolerance.items():
            parse_tolerance(value, f"{where}.tolerance.{name}")
        for name, value in self.training_spread.items():
            parse_tolerance(value, f"{where}.training_spread.{name}")

    def tolerances(self) -> dict[str, Tolerance]:
        return {name: parse_tolerance(value, f"check.tolerance.{name}") for name, value in self.tolerance.items()}

    def spreads(self) -> dict[str, Tolerance]:
        return {name: parse_tolerance(value, f"check.training_spread.{name}") for name, value in self.training_spread.items()}

    def excluded(self) -> set[str]:
        return set(self.exclude) - set(self.tolerance)


def parse_check(data: Any, where: str = "check") -> CheckSpec:
    return parse_table(CheckSpec, data, where)


def load_check_config(path: str | Path) -> CheckSpec:
    """The ``[check]`` table of a TOML file (other tables in the file are not read here)."""
    path = Path(path)
    if not path.is_file():
        raise FairbenchError(f"check config {str(path)!r} is not a file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FairbenchError(f"cannot read check config {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FairbenchError(f"{str(path)!r} is not valid TOML: {exc}") from None
    if "check" not in data:
        raise FairbenchError(f"{str(path)!r} has no [check] table")
    return parse_check(data["check"])


def load_records(path: str | Path) -> list[dict]:
    """Records from a results directory, a records directory, or one record file."""
    path = Path(path)
    if path.is_file():
        records = [read_record(path)]
    elif path.is_dir():
        records = read_records(path)
    else:
        raise FairbenchError(f"{str(path)!r} does not exist")
    if not records:
        raise FairbenchError(f"{str(path)!r} holds no records")
    return records


# ---------------------------------------------------------------------------------------------
# Comparison.


@dataclass(frozen=True)
class Comparison:
    """One metric of one matched pair of records (or a baseline record without a partner)."""

    label: str
    seed: Any
    metric: str
    base: float | None
    new: float | None
    allowed: float | None  # the largest |new - base| that passes; None where no value compares
    rule: str
    moved: bool

    @property
    def change(self) -> float | None:
        if self.base is None or self.new is None:
            return None
        return self.new - self.base


@dataclass(frozen=True)
class CheckResult:
    comparisons: tuple[Comparison, ...]
    not_in_baseline: tuple[tuple[str, Any], ...]  # (label, seed) of new records with no baseline
    excluded: tuple[str, ...]
    matched: int  # record pairs compared

    @property
    def passed(self) -> bool:
        return not any(c.moved for c in self.comparisons)

    @property
    def moved(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.moved]

    def table(self, *, everything: bool = False) -> str:
        """Fixed-width text table of what moved (of every comparison with `everything`)."""
        rows = self.comparisons if everything else tuple(self.moved)
        header = ("method", "seed", "metric", "baseline", "new", "change", "allowed", "rule", "")
        lines = [header] + [
            (c.label, _text(c.seed), c.metric, _number(c.base), _number(c.new), _number(c.change, signed=True),
             _number(c.allowed), c.rule, "MOVED" if c.moved else "ok")
            for c in rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)

    def summary(self) -> str:
        values = sum(1 for c in self.comparisons if c.rule != "missing record")
        verdict = f"{len(self.moved)} moved" if self.moved else "all within tolerance"
        text = (
            f"{self.matched} record pairs, {values} metric values compared: {verdict}; "
            f"excluded: {', '.join(self.excluded) or 'none'}"
        )
        if self.not_in_baseline:
            text += f"; {len(self.not_in_baseline)} new records have no baseline"
        return text


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _scalar(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _interval(record: dict, metric: str) -> tuple[float, float] | None:
    info = METRICS.get(metric)
    bounds = record["metrics"].get(info.interval) if info and info.interval else None
    if isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(_scalar(b) and b is not None for b in bounds):
        return float(bounds[0]), float(bounds[1])
    return None


def trained_networks(record: dict) -> bool:
    """Whether the record's numbers depend on networks fairbench trains (see training variation)."""
    model = record["spec"].get("model")
    return isinstance(model, dict) and "kind" in model and model["kind"] not in UNTRAINED_MODEL_KINDS


def outside_own_interval(record: dict, metric: str) -> bool:
    """The record's value of `metric` lies outside the record's own interval for it."""
    value, bounds = record["metrics"].get(metric), _interval(record, metric)
    if bounds is None or not _scalar(value) or value is None or math.isnan(value):
        return False
    return not bounds[0] - OUTSIDE_SLACK <= value <= bounds[1] + OUTSIDE_SLACK


def interval_allowance(base: float, new: float, base_interval, new_interval, k: float) -> float:
    """Rule 2: ``k * sqrt(u_base^2 + u_new^2)``, each u the distance to the interval end facing the other."""
    upward = new >= base
    u_base = (base_interval[1] - base if upward else base - base_interval[0]) if base_interval else 0.0
    u_new = (new - new_interval[0] if upward else new_interval[1] - new) if new_interval else 0.0
    return k * math.hypot(max(u_base, 0.0), max(u_new, 0.0))


def training_allowance(metric: str, label: str, base: float, configured: dict[str, Tolerance]) -> float | None:
    """How far two trainings may move `metric` of method `label`: the ``[check] training_spread``
    bound where it names the metric; else ``2 sqrt(2)`` times the method's own measured retrain
    sd (the pooled sd for a method that was not retrained); else the earlier measured bound of
    `DEFAULT_TRAINING_SPREAD`; None when nothing is known (the metric keeps its rule)."""
    if metric in configured:
        return configured[metric].allowed(base)
    sd = MEASURED_SPREAD.sd(metric, label)
    if sd is not None:
        return two_trainings_bound(sd)
    return DEFAULT_TRAINING_SPREAD.get(metric)


def compare_metric(metric: str, base_record: dict, new_record: dict, spec: CheckSpec,
                   tolerances: dict[str, Tolerance], spreads: dict[str, Tolerance] | None = None) -> Comparison:
    label, seed = str(base_record["label"]), base_record["spec"].get("seed")
    base = base_record["metrics"].get(metric)
    if metric not in new_record["metrics"]:
        return Comparison(label, seed, metric, base, None, None, "missing in new record", True)
    new = new_record["metrics"][metric]
    if not _scalar(new):
        return Comparison(label, seed, metric, base, None, None, "not a number in new record", True)
    if base is None or new is None or math.isnan(base) or math.isnan(new):
        same = (base is None and new is None) or (
            base is not None and new is not None and math.isnan(base) and math.isnan(new)
        )
        return Comparison(label, seed, metric, base, new, None, "missing value", not same)
    base, new = float(base), float(new)
    broken = [side for side, record in (("baseline", base_record), ("new", new_record)) if outside_own_interval(record, metric)]
    if broken:
        return Comparison(label, seed, metric, base, new, None, f"outside its own interval ({', '.join(broken)})", True)
    base_interval, new_interval = _interval(base_record, metric), _interval(new_record, metric)
    if metric in tolerances:
        allowed, rule = tolerances[metric].allowed(base), str(tolerances[metric])
    elif base_interval or new_interval:
        allowed = interval_allowance(base, new, base_interval, new_interval, spec.k)
        rule = f"interval, k={spec.k:g}"
    else:
        allowed, rule = spec.exact * max(1.0, abs(base)), "exact"
    spreads = spec.spreads() if spreads is None else spreads
    spread = training_allowance(metric, label, base, spreads)
    if metric not in tolerances and spread is not None and trained_networks(base_record) and trained_networks(new_record):
        allowed, rule = math.hypot(allowed, spread), f"{rule} + training spread {spread:g}"
    moved = abs(new - base) > allowed
    info = METRICS.get(metric)
    if moved and spec.fail_on == "worse" and info is not None and info.direction != "none":
        better = new < base if info.direction == "lower" else new > base
        if better:
            moved, rule = False, rule + ", better"
    return Comparison(label, seed, metric, base, new, allowed, rule, moved)


def _key(record: dict, match: str):
    if match == "spec_hash":
        return record["spec_hash"]
    return (record["spec"].get("benchmark"), record["label"], record["spec"].get("seed"))


def _index(records: list[dict], match: str, where: str) -> dict:
    index: dict = {}
    for record in records:
        if match == "spec_hash" and "spec_hash" not in record:
            raise FairbenchError(f"a record in {where} has no spec_hash; use match 'label_seed'")
        key = _key(record, match)
        if key in index:
            what = "spec hash" if match == "spec_hash" else "benchmark, label and seed"
            raise FairbenchError(f"two records in {where} share the same {what}: {record['label']!r} seed {record['spec'].get('seed')}")
        index[key] = record
    return index


def _known_metrics(*groups: list[dict]) -> set[str]:
    return set(METRICS) | {name for records in groups for r in records for name in r["metrics"]}


def compare_records(new_records: list[dict], baseline_records: list[dict], spec: CheckSpec = CheckSpec()) -> CheckResult:
    """Compare every matched pair of records metric by metric (rules in the module docstring)."""
    known = _known_metrics(new_records, baseline_records)
    for name in list(spec.tolerance) + list(spec.exclude) + list(spec.training_spread):
        if name not in known:
            raise FairbenchError(f"Unknown metric {name!r} in the check settings.{suggest(name, known)}")
    tolerances, spreads = spec.tolerances(), spec.spreads()
    excluded = spec.excluded()
    new_index = _index(new_records, spec.match, "the new run")
    base_index = _index(baseline_records, spec.match, "the baseline")
    matched = [key for key in base_index if key in new_index]
    if not matched:
        how = "spec hash" if spec.match == "spec_hash" else "benchmark, label and seed"
        hint = " (if the spec format changed, match by label_seed)" if spec.match == "spec_hash" else ""
        if spec.match == "spec_hash" and any("method_index" in r["spec"] for r in baseline_records + new_records):
            hint = " (records of an older fairbench hold their method's place in [[methods]] in the spec: match by label_seed)"
        raise FairbenchError(f"no new record matches a baseline record by {how}{hint}")
    comparisons = []
    for key, base_record in base_index.items():
        if key not in new_index:
            comparisons.append(Comparison(str(base_record["label"]), base_record["spec"].get("seed"), "-",
                                          None, None, None, "missing record", not spec.allow_missing))
            continue
        for metric, value in base_record["metrics"].items():
            if metric in excluded or not _scalar(value):
                continue  # intervals and other non-scalars are compared through their metric
            comparisons.append(compare_metric(metric, base_record, new_index[key], spec, tolerances, spreads))
    extra = tuple((str(r["label"]), r["spec"].get("seed")) for key, r in new_index.items() if key not in base_index)
    return CheckResult(tuple(comparisons), extra, tuple(sorted(excluded & known)), len(matched))


def check_directories(run_dir: str | Path, baseline: str | Path, spec: CheckSpec = CheckSpec()) -> CheckResult:
    """``fairbench check``: the records of `run_dir` against those of `baseline` (file or directory)."""
    return compare_records(load_records(run_dir), load_records(baseline), spec)


def with_overrides(spec: CheckSpec, *, tolerances: list[str] = (), **options: Any) -> CheckSpec:
    """`spec` with command-line options applied; ``tolerances`` are ``metric=value`` strings."""
    table = dict(spec.tolerance)
    for item in tolerances:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise FairbenchError(f"--tolerance {item!r} is not METRIC=VALUE (e.g. fid=2.0 or fid=5%)")
        parse_tolerance(value, f"--tolerance {name.strip()}")
        table[name.strip()] = value.strip()
    changes = {name: value for name, value in options.items() if value is not None}
    updated = replace(spec, tolerance=table, **changes)
    updated.validate("check")
    return updated
