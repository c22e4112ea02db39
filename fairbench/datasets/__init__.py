"""Datasets: the embedded digits benchmark and image folders in their users' layouts.

``DATASETS`` maps the ``[dataset] name`` key to the spec dataclass of that dataset; a spec
parses its own keys (`root`, `attribute`, `target`, `resolution`, ...) and its ``load()``
returns an `ImageDataset`.
"""

from __future__ import annotations

from ..errors import FairbenchError, lookup
from .base import SPLITS, ImageDataset

DATASETS: dict[str, type] = {}


def register_dataset(name: str, spec: type) -> None:
    DATASETS[name] = spec


def dataset_spec(table: dict):
    """Parse a ``[dataset]`` table into the spec of its `name`."""
    from ..config import parse_table

    _load_builtin()
    name = table.get("name")
    if name is None:
        raise FairbenchError(f"[dataset] needs a 'name'. Valid: {', '.join(sorted(DATASETS))}.")
    return parse_table(lookup(DATASETS, name, "dataset"), table, "dataset")


def load_dataset(table: dict) -> ImageDataset:
    return dataset_spec(table).load()


def _load_builtin() -> None:
    import importlib

    for module in ("fairbench.datasets.digits", "fairbench.datasets.folders"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


__all__ = ["DATASETS", "SPLITS", "ImageDataset", "dataset_spec", "load_dataset", "register_dataset"]
