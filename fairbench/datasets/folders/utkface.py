"""UTKFace: age, gender and race in the file names, and a seeded train/val/test split."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...errors import FairbenchError
from ..base import SPLITS, ImageDataset
from .base import AGE_BUCKETS, AGE_EDGES, GENDER_VALUES, FolderDatasetSpec, checked_attribute, existing_root

#: UTKFace's race digit r names ``UTKFACE_RACES[r]``.
UTKFACE_RACES: tuple[str, ...] = ("White", "Black", "Asian", "Indian", "Others")
UTKFACE_VALUES: dict[str, tuple[str, ...]] = {"age": AGE_BUCKETS, "gender": GENDER_VALUES, "race": UTKFACE_RACES}
#: ``[age]_[gender]_[race]_[date&time].jpg``, also the aligned-and-cropped ``.jpg.chip.jpg``.
UTKFACE_PATTERN = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<date>\d+)\.(?:jpe?g|png)(?:\.chip\.jpe?g)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, kw_only=True)
class UTKFaceSpec(FolderDatasetSpec):
    """``name = "utkface"``: UTKFace, labels in the file names, seeded train/val/test split.

    Layout: ``root`` holds the images directly, each named
    ``[age]_[gender]_[race]_[date&time].jpg`` (the aligned-and-cropped release appends
    ``.chip.jpg``; ``.jpeg``/``.png`` are accepted too). Attributes and codes:

    - ``age``: the age in years put in FairFace's buckets (`AGE_BUCKETS`, edges `AGE_EDGES`):
      0-2, 3-9, 10-19, ..., 60-69, more than 70 (70 and over)
    - ``gender``: 0 = female, 1 = male. Note: the file name says 0 for male and 1 for
      female; the codes are flipped so gender means the same in every fairbench dataset.
    - ``race``: the file name's digit, `UTKFACE_RACES` = 0 White, 1 Black, 2 Asian,
      3 Indian, 4 Others

    Files whose name does not match the pattern (UTKFace ships a few without a race) are
    skipped with a warning that counts them and names the first; hidden files are ignored;
    no matching file at all is an error. Split: the matching names, sorted, are permuted with
    `seed`; the first ``round(test_fraction * N)`` are "test", the next
    ``round(val_fraction * N)`` are "val", the rest "train".
    """

    name: Literal["utkface"] = "utkface"
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def validate(self, where: str) -> None:
        super().validate(where)
        for key, value in [("attribute", axis) for axis in self.axis_names] + [("target", self.target)]:
            if value is not None:
                checked_attribute(value, list(UTKFACE_VALUES), "utkface", f"{where}.{key}")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise FairbenchError(f"{where}.{key} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise FairbenchError(
                f"{where}.val_fraction + test_fraction must be below 1, got {self.val_fraction + self.test_fraction}"
            )

    def load(self) -> ImageDataset:
        layout = "images named [age]_[gender]_[race]_[date&time].jpg"
        root = existing_root(self.root, "utkface", layout)
        names = sorted(e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith("."))
        matches = [(n, UTKFACE_PATTERN.match(n)) for n in names]
        kept = [(n, m) for n, m in matches if m is not None]
        skipped = [n for n, m in matches if m is None]
        if not kept:
            folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
            hint = f"; it has folders {', '.join(folders)!s} (point root at the one holding the images)" if folders else ""
            example = f" (e.g. {skipped[0]!r})" if skipped else ""
            raise FairbenchError(f"utkface root {self.root!r} has no {layout}{example}{hint}")
        if skipped:
            warnings.warn(
                f"utkface: skipped {len(skipped)} files not named [age]_[gender]_[race]_[date&time].jpg, "
                f"first: {skipped[0]!r}",
                stacklevel=2,
            )
        ages = np.array([int(m["age"]) for _, m in kept])
        codes = {
            "age": np.digitize(ages, AGE_EDGES).astype(np.int64),
            "gender": 1 - np.array([int(m["gender"]) for _, m in kept], dtype=np.int64),  # file: 0 = male
            "race": np.array([int(m["race"]) for _, m in kept], dtype=np.int64),
        }
        split = utkface_split(len(kept), seed=self.seed, val_fraction=self.val_fraction, test_fraction=self.test_fraction)
        return self._finish(
            base=root,
            files=[n for n, _ in kept],
            codes=codes,
            values=dict(UTKFACE_VALUES),
            split=split,
            table=repr(str(root)),
            notes=f"; skipped {len(skipped)} files with other names" if skipped else "",
        )


def utkface_split(n: int, *, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Seeded split of ``n`` sorted files: a permutation's first ``round(test_fraction * n)`` are
    "test", the next ``round(val_fraction * n)`` "val", the rest "train"."""
    order = np.random.default_rng([seed, 0]).permutation(n)
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    split = np.full(n, SPLITS[0], dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_val]] = "val"
    return split
