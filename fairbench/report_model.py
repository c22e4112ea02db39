"""What a leaderboard says, built once from its records and rendered by every writer.

`build_report(records)` makes a `Report`: the leaderboard frame (`leaderboard_frame`: one row
per method, mean, std and interval over seeds), the headline columns (the metrics the registry
marks ``headline``), the detail sections (every other column, grouped by the registry's
``group``), the Pareto views (fairness against quality and against cost) and a summary of the
benchmark (dataset, model, bias, seeds, date, fairbench version). The writers (Markdown, CSV,
LaTeX, the HTML page, the site) only render a `Report`; none reads records or recomputes a number.

Rank groups (compact letter display from paired comparisons) are columns of the frame named
``<column>_group`` when the frame has them; a `Column` names its own (`Column.rank_group`),
and writers show the letters beside the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .leaderboard import base_name, leaderboard_frame
from .metrics import METRIC_GROUPS, METRICS, MetricInfo

OTHER_GROUP = "other"  # metrics the registry does not place (or does not know)
FAIRNESS_METRIC = "epsilon"
QUALITY_METRIC = "fid"
COST_METRIC = "s_per_1000_samples"

Extent = tuple[float, float, float]  # (mean, low, high): an interval, or mean ± std


def seconds_per_1000(metrics: Mapping[str, object]) -> float | None:
    """``s_per_1000_samples = 1000 / samples_per_s`` (wall-clock seconds of sampling per 1000
    samples), or None when the record has no positive ``samples_per_s``."""
    rate = metrics.get("samples_per_s")
    if not is_number(rate) or rate <= 0:
        return None
    return 1000.0 / float(rate)


# Metrics a report derives from a record's own metrics: name -> function of the metrics.
DERIVED = {"s_per_1000_samples": seconds_per_1000}


def with_derived(record: dict) -> dict:
    """A copy of `record` whose metrics also hold the `DERIVED` ones (a record's own value wins)."""
    metrics = dict(record["metrics"])
    for name, derive in DERIVED.items():
        if name not in metrics:
            value = derive(metrics)
            if value is not None:
                metrics[name] = value
    return {**record, "metrics": metrics}


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclass(frozen=True)
class Column:
    """One metric column of the frame: ``<key>_mean``, ``_std``, maybe ``_ci_low``/``_ci_high``
    and the rank-group letters ``<key>_group``."""

    key: str  # the frame's column stem: "epsilon", "fid@raw"
    info: MetricInfo | None
    has_interval: bool = False
    rank_group: str | None = None  # frame column holding rank-group letters, when present

    @property
    def metric(self) -> str:
        return base_name(self.key)

    @property
    def direction(self) -> str:
        return self.info.direction if self.info else "none"

    @property
    def group(self) -> str:
        return (self.info.group if self.info else None) or OTHER_GROUP


@dataclass(frozen=True)
class Section:
    """A detail table: the columns of one registry group."""

    group: str
    title: str
    description: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class ParetoView:
    """`y` (fairness) against `x` (quality or cost): each method's point and the non-dominated ones."""

    x: Column
    y: Column
    points: tuple[tuple[str, Extent, Extent], ...]  # (method, x extent, y extent)
    missing: tuple[str, ...]  # methods with y but without x
    front: tuple[str, ...]  # non-dominated methods, in row order


@dataclass(frozen=True)
class Summary:
    """What a reader needs to know about a benchmark before its numbers."""

    benchmark: str
    dataset: str
    model: str
    bias: str
    seeds: tuple[object, ...]
    date: str  # newest record's date, or "not recorded"
    version: str  # fairbench version(s) that wrote the records
    n_records: int
    methods: tuple[str, ...]
    sequential: str = ""  # how sequential sample sizes stopped, where the records have them; else ""


@dataclass(frozen=True, eq=False)
class Report:
    records: tuple[dict, ...]
    frame: pd.DataFrame
    headline: tuple[Column, ...]
    sections: tuple[Section, ...]
    pareto: tuple[ParetoView, ...]
    summary: Summary
    directory: Path | None = None  # where the run's figures (sample grids) live
    columns: dict[str, Column] = field(default_factory=dict)  # every metric column by key

    @property
    def labels(self) -> list[str]:
        return [str(m) for m in self.frame["method"]] if len(self.frame) else []


def frame_columns(frame: pd.DataFrame) -> list[Column]:
    """Every metric column of `frame`, in its order."""
    keys = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean")]
    return [
        Column(key, METRICS.get(base_name(key)), f"{key}_ci_low" in frame.columns,
               f"{key}_group" if f"{key}_group" in frame.columns else None)
        for key in keys
    ]


def headline_columns(columns: Sequence[Column]) -> list[Column]:
    """The registry's headline metrics in registry order; of a keyed metric (FID on some
    features) the first column only: values on different features never share a column."""
    out = []
    for name, info in METRICS.items():
        if info.headline:
            out += [c for c in columns if c.metric == name][:1]
    return out


def sections(columns: Sequence[Column], headline: Sequence[Column]) -> list[Section]:
    """The other columns, one section per registry group (in `METRIC_GROUPS` order), then the rest."""
    shown = {c.key for c in headline}
    rest = [c for c in columns if c.key not in shown]
    out = []
    for group, (title, description) in [*METRIC_GROUPS.items(), (OTHER_GROUP, ("Other", "metrics without a group"))]:
        members = tuple(c for c in rest if (c.group if c.group in METRIC_GROUPS else OTHER_GROUP) == group)
        if members:
            out.append(Section(group, title, description, members))
    return out


def extent(row: pd.Series, key: str) -> Extent | None:
    """(mean, low, high) of a column in a frame row: its interval if recorded, else ± std."""
    mean = row.get(f"{key}_mean")
    if not is_number(mean):
        return None
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if is_number(low) and is_number(high):
        return float(mean), float(low), float(high)
    std = row.get(f"{key}_std")
    std = float(std) if is_number(std) else 0.0
    return float(mean), float(mean) - std, float(mean) + std


def pareto_front(points: Sequence[tuple[str, float, float]], *, x_direction: str = "lower",
                 y_direction: str = "lower") -> list[str]:
    """The labels of the non-dominated points, in the order given.

    Point p dominates q when p is no worse than q on both axes and strictly better on one
    ("better": lower, or higher where the direction says so). Equal points dominate neither.
    """
    sign = {"lower": 1.0, "higher": -1.0}
    sx, sy = sign.get(x_direction, 1.0), sign.get(y_direction, 1.0)
    scored = [(label, sx * x, sy * y) for label, x, y in points]
    return [
        label for label, x, y in scored
        if not any(ox <= x and oy <= y and (ox < x or oy < y) for _, ox, oy in scored)
    ]


def pareto_view(frame: pd.DataFrame, x: Column, y: Column) -> ParetoView:
    points, missing = [], []
    for _, row in frame.iterrows():
        ey, ex = extent(row, y.key), extent(row, x.key)
        if ey is None:
            continue
        if ex is None:
            missing.append(str(row["method"]))
        else:
            points.append((str(row["method"]), ex, ey))
    front = pareto_front([(label, ex[0], ey[0]) for label, ex, ey in points],
                         x_direction=x.direction, y_direction=y.direction)
    return ParetoView(x, y, tuple(points), tuple(missing), tuple(front))


def pareto_views(frame: pd.DataFrame, columns: Sequence[Column]) -> list[ParetoView]:
    """Fairness (epsilon) against each quality column (FIDs on different features apart), then against cost."""
    by_metric = {}
    for column in columns:
        by_metric.setdefault(column.metric, []).append(column)
    if FAIRNESS_METRIC not in by_metric:
        return []
    fairness = by_metric[FAIRNESS_METRIC][0]
    return [pareto_view(frame, x, fairness) for x in [*by_metric.get(QUALITY_METRIC, []), *by_metric.get(COST_METRIC, [])]]


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_describe(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))
    return str(value)


def summary(records: Sequence[dict]) -> Summary:
    def distinct(get) -> list[str]:
        return list(dict.fromkeys(str(v) for v in map(get, records) if v not in (None, "")))

    def dataset(r: dict) -> str | None:
        spec = r["spec"].get("dataset")
        if not isinstance(spec, dict):
            return None
        parts = [str(spec.get("name", "?"))]
        if spec.get("attribute") is not None:
            parts.append(f"attribute {spec['attribute']}")
        if spec.get("target") is not None:
            parts.append(f"target {spec['target']}")
        return ", ".join(parts)

    def model(r: dict) -> str | None:
        spec = r["spec"].get("model")
        if not isinstance(spec, dict):
            return None
        detail = spec.get("path") or spec.get("kind")
        return str(detail)

    def bias(r: dict) -> object:
        spec = r["spec"].get("dataset")
        return spec.get("bias") if isinstance(spec, dict) else None

    dates = distinct(lambda r: r.get("provenance", {}).get("date"))
    return Summary(
        benchmark=", ".join(distinct(lambda r: r["spec"].get("benchmark"))) or "unnamed",
        dataset="; ".join(distinct(dataset)) or "none (analytic model)",
        model="; ".join(distinct(model)) or "unknown",
        bias=", ".join(distinct(bias)) or "-",
        seeds=tuple(dict.fromkeys(r["spec"].get("seed") for r in records)),
        date=max(dates) if dates else "not recorded",
        version=", ".join(distinct(lambda r: (r.get("provenance", {}).get("versions") or {}).get("fairbench"))) or "unknown",
        n_records=len(records),
        methods=tuple(dict.fromkeys(str(r["label"]) for r in records)),
        sequential=_sequential_line(records),
    )


def _sequential_line(records: Sequence[dict]) -> str:
    """One sentence for records of a sequential ``n_samples`` (`fairbench.sequential`)."""
    stopped = [r for r in records if "n_used" in r["metrics"]]
    if not stopped:
        return ""
    rules = list(dict.fromkeys(_describe(r["spec"].get("n_samples")) for r in stopped))
    levels = list(dict.fromkeys(f"{r['metrics']['look_confidence']:.4g}" for r in stopped))
    used = list(dict.fromkeys(str(r["metrics"]["n_used"]) for r in stopped))
    return (f"Sequential sample sizes (n_samples: {'; '.join(rules)}): each job sampled until the interval of epsilon "
            f"was that narrow (n_used: {', '.join(used)}); every interval is at the per-look level "
            f"{', '.join(levels)} (look_confidence), so that stopping on the data keeps the stated coverage"
            + ("; methods that stopped at different n hold different samples and get no rank groups." if len(used) > 1 else "."))


def build_report(records: Sequence[dict], *, directory: Path | None = None, frame: pd.DataFrame | None = None) -> Report:
    """The report of `records` (read once by the caller); `directory` is where their figures are.

    `frame`: the leaderboard frame of these records (with their `DERIVED` metrics) when the
    caller has one; by default `leaderboard_frame`'s, with the rank groups of the paired comparisons
    where `directory` holds the jobs' evidence.
    """
    records = tuple(with_derived(r) for r in records)
    if frame is None:
        frame = leaderboard_frame(list(records), directory)
    columns = frame_columns(frame) if len(frame) else []
    headline = headline_columns(columns)
    return Report(
        records=records, frame=frame, headline=tuple(headline), sections=tuple(sections(columns, headline)),
        pareto=tuple(pareto_views(frame, columns)), summary=summary(records),
        directory=Path(directory) if directory is not None else None, columns={c.key: c for c in columns},
    )
