"""Datasets: the embedded digits benchmark and image folders in their users' layouts.

``DATASETS`` maps the ``[dataset] name`` key to the spec dataclass of that dataset; a spec
parses its own keys (`root`, `attribute`, `target`, `resolution`, ...) and its ``load()``
returns an `ImageDataset`.
"""

from __future__ import annotations

from .base import SPLITS, ImageDataset

DATASETS: dict[str, type] = {}


def register_dataset(name: str, spec: type) -> None:
    DATASETS[name] = spec


def dataset_spec(table: dict):
    """Parse a ``[dataset]`` table into the spec of its `name`."""
    from ..config import parse_variant

    _load_builtin()
    return parse_variant(table, DATASETS, key="name", section="dataset", kind="dataset")


def load_dataset(table: dict) -> ImageDataset:
    return dataset_spec(table).load()


def _load_builtin() -> None:
    from ..config import import_optional

    import_optional("fairbench.datasets.digits", "fairbench.datasets.folders")


__all__ = ["DATASETS", "SPLITS", "ImageDataset", "dataset_spec", "load_dataset", "register_dataset"]
