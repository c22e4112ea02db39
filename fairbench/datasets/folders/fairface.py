"""FairFace: race, gender and age in two label CSVs beside the ``train/`` and ``val/`` folders."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ...errors import FairbenchError, suggest
from ..base import ImageDataset
from .base import AGE_BUCKETS, GENDER_VALUES, FolderDatasetSpec, checked_attribute, existing_root, first_duplicate, read_lines

FAIRFACE_RACES: tuple[str, ...] = (
    "White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern",
)
FAIRFACE_VALUES: dict[str, tuple[str, ...]] = {"age": AGE_BUCKETS, "gender": GENDER_VALUES, "race": FAIRFACE_RACES}
#: How FairFace's CSVs spell each value of an attribute (gender is capitalised there).
_FAIRFACE_SPELLING: dict[str, tuple[str, ...]] = {"age": AGE_BUCKETS, "gender": ("Female", "Male"), "race": FAIRFACE_RACES}


@dataclass(frozen=True, kw_only=True)
class FairFaceSpec(FolderDatasetSpec):
    """``name = "fairface"``: FairFace, balanced across race, gender and age.

    Layout under ``root`` (the folder of the FairFace image archive, with both label files)::

        train/1.jpg ...
        val/1.jpg ...
        fairface_label_train.csv     file,age,gender,race,service_test
        fairface_label_val.csv       e.g. "train/1.jpg,50-59,Male,East Asian,True"

    ``file`` is relative to ``root``. Attributes and codes (code = position):

    - ``age``: `AGE_BUCKETS` = 0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, more than 70
    - ``gender``: 0 = female, 1 = male (the CSV says Female/Male)
    - ``race``: `FAIRFACE_RACES` = 0 White, 1 Black, 2 Latino_Hispanic, 3 East Asian,
      4 Southeast Asian, 5 Indian, 6 Middle Eastern

    Splits: rows of the train CSV are "train"; FairFace publishes no test set, so rows of the
    val CSV are "test" (the held-out set FairFace reports on) and "val" is empty.
    ``service_test`` is not used. Every row needs its image; images without a row are ignored.
    """

    name: Literal["fairface"] = "fairface"

    def validate(self, where: str) -> None:
        super().validate(where)
        for key, value in [("attribute", axis) for axis in self.axis_names] + [("target", self.target)]:
            if value is not None:
                checked_attribute(value, list(FAIRFACE_VALUES), "fairface", f"{where}.{key}")

    def load(self) -> ImageDataset:
        layout = "train/, val/, fairface_label_train.csv and fairface_label_val.csv"
        root = existing_root(self.root, "fairface", layout)
        files: list[str] = []
        codes: dict[str, list[int]] = {name: [] for name in FAIRFACE_VALUES}
        split: list[str] = []
        tables = []
        for csv_split, our_split in (("train", "train"), ("val", "test")):
            path = root / f"fairface_label_{csv_split}.csv"
            if not path.is_file():
                raise FairbenchError(f"fairface label table {path.name} not found in {str(root)!r}; expected {layout}")
            tables.append(path)
            for file, row_codes in read_fairface_labels(path):
                files.append(file)
                split.append(our_split)
                for name, code in row_codes.items():
                    codes[name].append(code)
        duplicate = first_duplicate(files)
        if duplicate is not None:
            raise FairbenchError(f"fairface image {duplicate!r} is listed twice in the label tables")
        listed = {os.path.normpath(f) for f in files}
        extra = sum(
            1
            for folder in ("train", "val")
            if (root / folder).is_dir()
            for entry in os.listdir(root / folder)
            if os.path.normpath(f"{folder}/{entry}") not in listed
        )
        return self._finish(
            base=root,
            files=files,
            codes={name: np.asarray(c, dtype=np.int64) for name, c in codes.items()},
            values=dict(FAIRFACE_VALUES),
            split=np.array(split, dtype=object),
            table=" and ".join(repr(str(t)) for t in tables),
            notes=f"; {extra} files in train/ and val/ have no label row and are ignored" if extra else "",
        )


def read_fairface_labels(path: Path) -> list[tuple[str, dict[str, int]]]:
    """Parse one FairFace label CSV: (file, {age, gender, race codes}) per row."""
    lines = read_lines(path)
    where = str(path)
    reader = csv.reader(lines)
    header = next(reader, None)
    if not header:
        raise FairbenchError(f"{where!r} is empty; expected the header file,age,gender,race,service_test")
    header = [h.strip() for h in header]
    for column in ("file", "age", "gender", "race"):
        if column not in header:
            raise FairbenchError(f"{where!r} has no column {column!r}; its header is {','.join(header)!r}")
    index = {column: header.index(column) for column in ("file", "age", "gender", "race")}
    rows = []
    for number, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise FairbenchError(f"{where!r} line {number}: expected {len(header)} fields, got {len(fields)}")
        file = fields[index["file"]].strip()
        if not file:
            raise FairbenchError(f"{where!r} line {number}: empty file name")
        row_codes = {}
        for name, spelling in _FAIRFACE_SPELLING.items():
            value = fields[index[name]].strip()
            if value not in spelling:
                raise FairbenchError(
                    f"{where!r} line {number}: {name} = {value!r} is not a FairFace value.{suggest(value, spelling)}"
                )
            row_codes[name] = spelling.index(value)
        rows.append((file, row_codes))
    if not rows:
        raise FairbenchError(f"{where!r} lists no images")
    return rows
