"""What every folder layout shares: the common ``[dataset]`` keys (`FolderDatasetSpec`), the
values shared across datasets (gender, FairFace's age buckets), and the checks of roots,
tables and listed files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import FairbenchError, suggest
from ...models.base import AttributeAxes
from ..base import ImageDataset
from .images import FolderImages, check_image_headers

GENDER_VALUES: tuple[str, str] = ("female", "male")
#: FairFace's age buckets; UTKFace ages (in years) are put in the same buckets.
AGE_BUCKETS: tuple[str, ...] = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
#: Lower edge (in years) of each bucket of `AGE_BUCKETS` after the first.
AGE_EDGES: tuple[int, ...] = (3, 10, 20, 30, 40, 50, 60, 70)


def existing_root(root: str, dataset: str, layout: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FairbenchError(f"{dataset} root {root!r} does not exist; expected a folder with {layout}")
    if not path.is_dir():
        raise FairbenchError(f"{dataset} root {root!r} is not a folder; expected a folder with {layout}")
    if not any(path.iterdir()):
        raise FairbenchError(f"{dataset} root {root!r} is empty; expected {layout}")
    return path


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FairbenchError(f"cannot read {str(path)!r}: {exc}") from None


def check_files_exist(base: str, files: Sequence[str], table: str) -> None:
    """Every listed file ``base/file`` must exist: name the first missing one (one listing per folder)."""
    listings: dict[str, set[str]] = {}
    missing = []
    for file in files:
        folder, _, name = file.rpartition("/")
        listing = listings.get(folder)
        if listing is None:
            directory = os.path.join(base, folder)
            listing = listings[folder] = set(os.listdir(directory)) if os.path.isdir(directory) else set()
        if name not in listing:
            missing.append(file)
    if missing:
        raise FairbenchError(
            f"{len(missing)} of {len(files)} images listed in {table} are missing; "
            f"first: {os.path.join(base, missing[0])!r}"
        )


def checked_attribute(name: str, valid: Sequence[str], dataset: str, key: str) -> None:
    if name not in valid:
        raise FairbenchError(f"{key} = {name!r} is not a {dataset} attribute.{suggest(name, valid)}")


def first_existing(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def first_duplicate(items: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


@dataclass(frozen=True, kw_only=True)
class FolderDatasetSpec:
    """Keys shared by the image-folder datasets (described in `fairbench.datasets.folders`)."""

    name: str
    root: str
    attribute: str | tuple[str, ...]  # one name, or several: their product is the sensitive attribute
    target: str | None = None
    resolution: int = 64
    crop: int | None = None
    max_images: int | None = None
    seed: int = 0
    check_images: bool = False

    def __post_init__(self) -> None:
        self.validate("dataset")  # specs built in code are checked like parsed ones

    def validate(self, where: str) -> None:
        if not self.root.strip():
            raise FairbenchError(f"{where}.root must name a folder, got {self.root!r}")
        for key in ("resolution", "crop", "max_images"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise FairbenchError(f"{where}.{key} must be positive, got {value}")
        if self.seed < 0:
            raise FairbenchError(f"{where}.seed must be non-negative, got {self.seed}")
        if isinstance(self.attribute, tuple):
            if len(self.attribute) < 2:
                raise FairbenchError(
                    f"{where}.attribute lists {len(self.attribute)} attribute(s); give one name, or a list of several"
                )
            duplicate = first_duplicate(list(self.attribute))
            if duplicate is not None:
                raise FairbenchError(f"{where}.attribute names {duplicate!r} twice")
        if self.target is not None and self.target in self.axis_names:
            raise FairbenchError(f"{where}.target = {self.target!r} is a sensitive attribute; choose another")

    @property
    def axis_names(self) -> tuple[str, ...]:
        """The sensitive attribute's axes: the one name, or the listed names in order."""
        return self.attribute if isinstance(self.attribute, tuple) else (self.attribute,)

    @property
    def sensitive(self) -> str:
        """The column of the sensitive attribute: its name, or for a product ``"gender x age"``."""
        return " x ".join(self.axis_names)

    def _finish(
        self,
        *,
        base: Path,
        files: list[str],
        codes: dict[str, np.ndarray],
        values: dict[str, tuple[str, ...]],
        split: np.ndarray,
        table: str,
        notes: str,
    ) -> ImageDataset:
        """Check the attribute names, keep `max_images` rows, check files, build the dataset.

        `files` are relative to `base`, with "/" between folders (as the tables write them)."""
        order = list(codes)
        for axis in self.axis_names:
            checked_attribute(axis, order, self.name, "dataset.attribute")
        if self.target is not None:
            checked_attribute(self.target, order, self.name, "dataset.target")
        rows = np.arange(len(files))
        if self.max_images is not None and self.max_images < len(files):
            rng = np.random.default_rng([self.seed, 1])
            rows = np.sort(rng.choice(len(files), size=self.max_images, replace=False))
        kept = [files[i] for i in rows]
        images = FolderImages(str(base), kept, resolution=self.resolution, crop=self.crop)
        check_files_exist(images.base, kept, table)
        if self.check_images:
            check_image_headers([images.path(i) for i in range(len(kept))], self.crop)
        axes = None
        if isinstance(self.attribute, tuple):  # the product: flat row-major codes of the listed columns
            axes = AttributeAxes(self.attribute, tuple(values[axis] for axis in self.attribute))
            codes = dict(codes) | {self.sensitive: axes.encode(np.stack([codes[a] for a in self.attribute], axis=1))}
            values = dict(values) | {self.sensitive: axes.flat_names()}
        first = [self.sensitive] + ([self.target] if self.target is not None else [])
        columns = first + [name for name in order if name not in first]
        attributes = pd.DataFrame({name: codes[name][rows].astype(np.int64) for name in columns})
        target = f", target {self.target!r}" if self.target else ""
        return ImageDataset(
            name=self.name,
            attributes=attributes,
            attribute_values={name: values[name] for name in columns},
            product_axes={} if axes is None else {self.sensitive: axes},
            split=np.asarray(split, dtype=object)[rows].astype(str),
            image_shape=(3, self.resolution, self.resolution),
            loader=images,
            description=(
                f"{self.name} at {self.root!r}: {len(kept)} images at {self.resolution}x{self.resolution}, "
                f"sensitive attribute {self.sensitive!r} {values[self.sensitive]}{target}{notes}"
            ),
        )
