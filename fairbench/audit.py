"""`fairbench audit`: measure samples made by any generator as a benchmark run measures its own.

The samples are a folder of files with a table (`fairbench.sample_files`). The reference
they are measured against (`--real`) is one of:

- a benchmark config (TOML with ``[model]``): its real data, judge and ``[metrics]`` settings,
  exactly those a `fairbench run` of that config measures with (kind ``gaussian``: its real
  draws and its exact posterior as judge; kind ``unet`` with a ``[dataset]``: the judge trained on the train split
  with ``[model.judge]``'s settings, or taken from the cache, and the real test split);
- a TOML with only a ``[dataset]`` table (any layout of docs/datasets.md) and optionally
  ``[metrics]``: as above with the default judge settings;
- a folder of real images with a table ``labels.csv`` (``file,value``): real data without a
  judge, so epsilon and FID use the raw samples and there are no judge-based columns.

The record holds the metrics of `fairbench.metrics.suite.evaluate` (the same function a run
calls), so the leaderboard columns are those of a run; cost columns (sampling time, NFE,
memory) do not exist for samples made elsewhere.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .cache import tensor_digest
from .config import MetricsSpec, load_config, parse_table, read_toml
from .errors import FairbenchError
from .publish import write_leaderboard
from .metrics.suite import evaluate
from .models import RealData, Setup
from .models.base import Capabilities
from .models.unet import judge_and_real, labelled_splits
from .records import make_record, provenance, spec_hash, write_record
from .runner import check_output
from .sample_files import SampleFolder, read_sample_file, read_sample_folder
from .train import JudgeTraining

REAL_TABLE = "labels.csv"


@dataclass(frozen=True)
class AuditedModel:
    """What the measurements need to know of the model that made the samples: its values and shape."""

    attribute_names: tuple[str, ...]
    sample_shape: tuple[int, ...]
    capabilities: Capabilities = Capabilities()  # samples from files: one attribute, nothing to sample with

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)


@dataclass
class Reference:
    """What samples are measured against: a setup without a generator, and the metric settings."""

    names: tuple[str, ...]
    sample_shape: tuple[int, ...]
    setup: Setup
    metrics: Any  # MetricsSpec
    description: dict[str, Any]  # goes into the record's spec


# ---------------------------------------------------------------------------------------------
# The reference


def _image_reference(dataset: dict, judge_training, metrics, description: dict, device: str) -> Reference:
    splits = labelled_splits(dataset)
    judge, real, _ = judge_and_real(splits, judge_training, device=device)
    names = tuple(splits.train.sensitive_values)
    setup = Setup(
        model=AuditedModel(names, tuple(real.samples.shape[1:])),
        features=judge.features, feature_name=judge.features.name, real=real, judge=judge.sensitive_log_prob,
        target_judge=judge.target_log_prob if real.target is not None else None,
    )
    return Reference(names, tuple(real.samples.shape[1:]), setup, metrics, description | {"dataset": dataset})


def _config_reference(path: Path, device: str) -> Reference:
    config = load_config(path)
    spec = config.model_spec()
    description = {"config": config.benchmark.name, "model": config.model}
    if spec.kind == "gaussian":
        built = spec.build(device=device)
        names = tuple(built.model.attribute_names)
        shape = tuple(built.model.sample_shape)
        setup = Setup(model=AuditedModel(names, shape), features=built.features, feature_name=built.feature_name, real=built.real,
                      judge=built.judge, target_judge=built.target_judge)
        return Reference(names, shape, setup, config.metrics, description)
    if spec.kind == "unet" and config.dataset is not None:
        return _image_reference(config.dataset, spec.judge, config.metrics, description, device)
    raise FairbenchError(
        f"--real {str(path)!r}: audit measures against a config of model kind 'gaussian' or 'unet' with a [dataset], "
        f"not kind {spec.kind!r}{' without a [dataset]' if spec.kind == 'unet' else ''}"
    )


def _dataset_reference(path: Path, data: dict, device: str) -> Reference:

    extra = [key for key in data if key not in ("dataset", "metrics")]
    if extra:
        raise FairbenchError(f"--real {str(path)!r}: unknown section [{extra[0]}]; a [dataset] file may hold [dataset] and [metrics]")
    metrics = parse_table(MetricsSpec, data.get("metrics", {}), "metrics")
    return _image_reference(data["dataset"], JudgeTraining(), metrics, {}, device)


def _folder_reference(folder: Path) -> Reference:
    table = folder / REAL_TABLE
    if not table.is_file():
        raise FairbenchError(f"{str(table)!r} is missing: a real-data folder needs a CSV table with columns file,value")
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FairbenchError(f"cannot read {str(table)!r}: {exc}") from None
    if not rows or [cell.strip() for cell in rows[0]] != ["file", "value"]:
        raise FairbenchError(f"{str(table)!r} needs the header file,value and one row per real image")
    if len(rows) < 3:
        raise FairbenchError(f"{str(table)!r} lists {len(rows) - 1} images; at least 2 are needed")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise FairbenchError(f"{str(table)!r} line {line}: {len(row)} fields, the header has 2")
    values = [row[1].strip() for row in rows[1:]]
    names = tuple(sorted(set(values), key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v)))
    if len(names) < 2:
        raise FairbenchError(f"{str(table)!r}: the real images take {len(names)} value(s); at least 2 are needed")
    files = [row[0].strip() for row in rows[1:]]
    for name in files:
        if not (folder / name).is_file():
            raise FairbenchError(f"{str(folder / name)!r} is listed in {str(table)!r} but missing")
    samples = [read_sample_file(folder / name) for name in files]
    shapes = {tuple(s.shape) for s in samples}
    if len(shapes) > 1:
        first = tuple(samples[0].shape)
        odd = next(name for name, s in zip(files, samples) if tuple(s.shape) != first)
        raise FairbenchError(f"{str(folder / odd)!r} has a different size from {str(folder / files[0])!r}: every real image must have the same size")
    real = RealData(samples=torch.stack(samples), sensitive=torch.tensor([names.index(v) for v in values]))
    shape = tuple(real.samples.shape[1:])
    setup = Setup(model=AuditedModel(names, shape), real=real)
    return Reference(names, shape, setup, MetricsSpec(), {"real_folder": tensor_digest(real.samples, real.sensitive)})


def load_reference(real: str | Path, *, device: str = "cpu") -> Reference:
    """The reference of `--real` (see the module docstring)."""
    path = Path(real)
    if path.is_dir():
        return _folder_reference(path)
    if not path.exists():
        raise FairbenchError(f"--real {str(path)!r} does not exist; give a config or [dataset] TOML, or a folder with {REAL_TABLE}")
    data = read_toml(path)
    if "model" in data:
        return _config_reference(path, device)
    if "dataset" in data:
        return _dataset_reference(path, data, device)
    raise FairbenchError(f"--real {str(path)!r} has neither a [model] nor a [dataset] table")


# ---------------------------------------------------------------------------------------------
# The audit


def audit_record(samples: SampleFolder, reference: Reference, *, label: str, seed: int = 0, device: str = "cpu") -> dict:
    """Measure `samples` against `reference`: a record like a run's (without cost metrics)."""
    if tuple(samples.samples.shape[1:]) != reference.sample_shape:
        raise FairbenchError(
            f"the samples have shape {list(samples.samples.shape[1:])} ({samples.files[0]!r}) but the real data "
            f"has {list(reference.sample_shape)}"
        )
    counts = torch.bincount(samples.requested, minlength=len(reference.names))
    present = [(name, int(c)) for name, c in zip(reference.names, counts) if c > 0]
    folds = reference.metrics.epsilon_folds
    if len(present) < 2 or min(c for _, c in present) < folds:
        raise FairbenchError(
            f"the samples table requests {dict(present)}; epsilon needs at least 2 values with "
            f"at least epsilon_folds = {folds} samples each"
        )
    metrics = evaluate(
        samples.samples, samples.requested, reference.setup, seed=seed, config=reference.metrics,
        final=samples.final, device=device,
    )
    digest = tensor_digest(samples.samples, samples.requested, *([samples.final] if samples.final is not None else []))
    spec = {
        "benchmark": "audit",
        "audited_samples": digest,
        "reference": reference.description,
        "n_samples": len(samples.requested),
        "seed": seed,
        "metrics": dataclasses.asdict(reference.metrics),
        "requested": "from the samples table",
        "epsilon_features": reference.setup.feature_name,
    }
    return make_record(
        spec=spec, label=label, metrics=metrics,
        provenance=provenance(device=device, seed=seed, batch_size=reference.metrics.feature_batch_size),
        extra={"job_key": spec_hash(spec)},
    )


def _write_outputs(directory: Path, record: dict) -> None:
    write_record(directory, record)
    write_leaderboard(directory)


def run_audit(samples: str | Path, real: str | Path, out: str | Path, *, label: str | None = None, seed: int = 0,
              device: str = "cpu") -> dict:
    """Audit a sample folder and write its record and the leaderboard under `out`.

    Everything is read and measured before anything is written; a new `out` appears whole
    (written in a temporary folder beside it, then renamed), an existing one gets the new
    record and a regenerated leaderboard.
    """
    out = Path(out)
    check_output(out)
    reference = load_reference(real, device=device)
    folder = read_sample_folder(samples, reference.names)
    record = audit_record(folder, reference, label=label or Path(samples).resolve().name, seed=seed, device=device)
    if out.exists():
        _write_outputs(out, record)
        return record
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        _write_outputs(tmp, record)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record
