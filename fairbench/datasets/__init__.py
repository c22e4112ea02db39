"""Datasets: the embedded digits benchmark, Fashion-MNIST and MNIST from their IDX files, and
image folders in their users' layouts.

``DATASETS`` maps the ``[dataset] name`` key to the spec dataclass of that dataset; a spec
parses its own keys (`root`, `attribute`, `target`, `resolution`, ...) and its ``load()``
returns an `ImageDataset`.
"""

from __future__ import annotations

from ..tables import import_optional, parse_variant
from .base import SPLITS, ImageDataset

DATASETS: dict[str, type] = {}


def register_dataset(name: str, spec: type) -> None:
    DATASETS[name] = spec


def dataset_spec(table: dict):
    """Parse a ``[dataset]`` table into the spec of its `name`."""
    _load_builtin()
    return parse_variant(table, DATASETS, key="name", section="dataset", kind="dataset")


def load_dataset(table: dict) -> ImageDataset:
    return dataset_spec(table).load()


def _load_builtin() -> None:
    import_optional("fairbench.datasets.digits", "fairbench.datasets.fashion", "fairbench.datasets.folders")


__all__ = ["DATASETS", "SPLITS", "ImageDataset", "dataset_spec", "load_dataset", "register_dataset"]
