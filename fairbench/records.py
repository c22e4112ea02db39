"""Run records: spec + metrics + provenance + the content hash of the spec.

One JSON file per run under ``DIR/records/``, named by the job key, written atomically
(temporary file in the same directory, then ``os.replace``), so a record is either whole
or absent. `Record` is the schema (a `TypedDict`: records stay plain JSON objects in memory
and on disk); this module is the one place that makes, writes and reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from .errors import FairbenchError

# Version 1: the layout below. Bump it when a field changes meaning, and say so here.
SCHEMA_VERSION = 1


class Provenance(TypedDict):
    versions: dict[str, str | None]
    git_sha: str | None
    device: str
    platform: str
    seed: int
    batch_size: int
    date: NotRequired[str]  # when the record was made (UTC, ISO 8601, seconds); absent in older records


class Record(TypedDict):
    """One (cell, method, seed) run."""

    schema_version: int
    label: str  # the method's display label
    spec: dict[str, Any]  # everything the results depend on (the job spec, the method's resolved params, ...)
    spec_hash: str  # sha256 of the canonical JSON of `spec`
    metrics: dict[str, Any]
    provenance: Provenance  # what the results should not depend on: versions, machine, batch size
    job_key: NotRequired[str]  # hash of the job spec: the record's file name and resume key
    position: NotRequired[int]  # the method's place in its config's [[methods]]: display order, not in the spec
    tau_search: NotRequired[dict[str, Any]]  # the search's curve, when tau was searched


REQUIRED_KEYS = ("schema_version", "label", "spec", "spec_hash", "metrics", "provenance")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(*, device: str, seed: int, batch_size: int) -> Provenance:
    packages = ("fairbench", "torch", "diffusers", "numpy", "scikit-learn", "fairlearn", "torchmetrics", "clean-fid")
    return {
        "versions": {p: _version(p) for p in packages} | {"python": platform.python_version()},
        "git_sha": git_sha(),
        "device": device,
        "platform": platform.platform(),
        "seed": seed,
        "batch_size": batch_size,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def make_record(*, spec: dict, label: str, metrics: dict, provenance: Provenance | dict, extra: dict | None = None) -> Record:
    record: Record = {
        "schema_version": SCHEMA_VERSION,
        "label": label,
        "spec": spec,
        "spec_hash": spec_hash(spec),
        "metrics": metrics,
        "provenance": provenance,
    }
    if extra:
        record.update(extra)  # type: ignore[typeddict-item]
    return record


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file beside `path`, opened for writing, with the usual permissions (0666 less the
    process's umask, as `open` gives): `tempfile.mkstemp` would make it 0600, and the file
    keeps its mode through `os.replace`, so a served leaderboard would be unreadable to others."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {str(path)!r}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_path(out_dir: Path, key: str) -> Path:
    """Where the record of the job (or spec) with hash `key` lives."""
    return Path(out_dir) / "records" / f"{key[:16]}.json"


def write_record(out_dir: Path, record: Record) -> Path:
    """Write atomically under the record's job key (its spec hash when it has none)."""
    path = record_path(out_dir, record.get("job_key") or record["spec_hash"])
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FairbenchError(f"{str(path)!r} is not valid JSON: {exc}") from None


# Metrics that measure the machine rather than the method: they differ between runs.
MACHINE_METRICS = ("wall_s", "samples_per_s", "tau_search_s", "peak_mem_mb", "measure_s")


def comparable(record: Record) -> dict:
    """A record without provenance and machine-dependent timings: equal for equal work."""
    out = {k: v for k, v in record.items() if k != "provenance"}
    out["metrics"] = {k: v for k, v in record["metrics"].items() if k not in MACHINE_METRICS}
    if "tau_search" in out:
        out["tau_search"] = {k: v for k, v in out["tau_search"].items() if k != "wall_s"}
    return out


def read_record(path: Path) -> Record:
    """One record file, checked to be a record of a schema this version reads."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FairbenchError(f"record {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or "spec" not in record or "metrics" not in record:
        raise FairbenchError(f"record {str(path)!r} is not a fairbench record")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FairbenchError(f"record {str(path)!r} has schema version {version!r}; this fairbench reads version {SCHEMA_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise FairbenchError(f"record {str(path)!r} lacks {', '.join(missing)}")
    return record


def read_records(directory: Path) -> list[Record]:
    """All records under ``directory/records`` (or `directory` itself), sorted by label and seed."""
    directory = Path(directory)
    folder = directory / "records" if (directory / "records").is_dir() else directory
    if not folder.is_dir():
        raise FairbenchError(f"{str(directory)!r} holds no records directory")
    records = [read_record(path) for path in sorted(folder.glob("*.json"))]
    if not records:
        raise FairbenchError(f"no records in {str(folder)!r}")
    return sorted(records, key=lambda r: (r["spec"].get("benchmark", ""), _position(r), r["label"], r["spec"].get("seed", 0)))


def _position(record: Record) -> int:
    """The method's place in its config (records written before it was kept outside the spec hold it there)."""
    return record.get("position", record["spec"].get("method_index", 0))


def refuse_position_keyed(out_dir: Path) -> None:
    """Refuse to resume into a folder whose records were keyed by their method's place in ``[[methods]]``
    (their spec holds ``method_index``): none of their jobs would be found, and all would be computed again."""
    folder = Path(out_dir) / "records"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if "method_index" in read_record(path)["spec"]:
            raise FairbenchError(
                f"{str(out_dir)!r} holds records of an older fairbench, keyed by each method's place in [[methods]] "
                f"({path.name}); run into a new --out folder (the old one stays readable by report and check)"
            )
