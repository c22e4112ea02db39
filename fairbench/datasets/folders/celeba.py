"""CelebA: 40 binary attributes in ``list_attr_celeba.txt``, the official partition in
``list_eval_partition.txt`` (or Kaggle's CSV versions of both)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ...errors import FairbenchError
from ..base import ImageDataset
from .base import FolderDatasetSpec, existing_root, first_duplicate, first_existing, read_lines

#: The 40 binary attributes of CelebA, in the order of ``list_attr_celeba.txt``.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
#: CelebA stores -1/1; code 0 is -1, code 1 is 1. Value names per attribute, else ("no", "yes").
CELEBA_VALUE_NAMES: dict[str, tuple[str, str]] = {"Male": ("female", "male")}
CELEBA_DEFAULT_VALUES: tuple[str, str] = ("no", "yes")

_CELEBA_PARTITIONS = {"0": "train", "1": "val", "2": "test"}


@dataclass(frozen=True, kw_only=True)
class CelebASpec(FolderDatasetSpec):
    """``name = "celeba"``: CelebA, 40 binary attributes, official train/val/test partition.

    Layout under ``root`` (or under ``root/celeba``, torchvision's layout)::

        img_align_celeba/000001.jpg ...      (Kaggle's nested img_align_celeba/img_align_celeba/ too)
        list_attr_celeba.txt                 line 1: image count; line 2: the 40 attribute names;
                                             then "000001.jpg -1 1 1 -1 ..." (values 1 or -1)
        list_eval_partition.txt              "000001.jpg 0" with 0 = train, 1 = val, 2 = test

    Kaggle's CSV versions (``list_attr_celeba.csv``: ``image_id,5_o_Clock_Shadow,...``;
    ``list_eval_partition.csv``: ``image_id,partition``) are read when the ``.txt`` files are
    absent. Attribute names are the 40 of the header (`CELEBA_ATTRIBUTES`), e.g. ``Male``,
    ``Young``, ``Smiling``, ``Eyeglasses``. Code 0 is -1 and code 1 is 1; value names are
    ("female", "male") for ``Male`` and ("no", "yes") for the others.

    The attribute table is the index: every row needs its image (else an error naming the
    first missing file) and a partition row; images without a row are ignored.
    """

    name: Literal["celeba"] = "celeba"

    def load(self) -> ImageDataset:
        layout = "img_align_celeba/, list_attr_celeba.txt and list_eval_partition.txt"
        root = existing_root(self.root, "celeba", layout)
        if not first_existing(root, ("list_attr_celeba.txt", "list_attr_celeba.csv")) and (root / "celeba").is_dir():
            root = root / "celeba"  # torchvision keeps CelebA in <root>/celeba
        attr_path = first_existing(root, ("list_attr_celeba.txt", "list_attr_celeba.csv"))
        if attr_path is None:
            raise FairbenchError(f"celeba attribute table list_attr_celeba.txt not found in {str(root)!r}; expected {layout}")
        part_path = first_existing(root, ("list_eval_partition.txt", "list_eval_partition.csv"))
        if part_path is None:
            raise FairbenchError(f"celeba partition list_eval_partition.txt not found in {str(root)!r}; expected {layout}")
        image_dir = root / "img_align_celeba"
        if (image_dir / "img_align_celeba").is_dir():
            image_dir = image_dir / "img_align_celeba"  # Kaggle's archive nests the folder
        if not image_dir.is_dir():
            raise FairbenchError(f"celeba image folder {str(image_dir)!r} not found; expected {layout}")

        names, files, signs = read_celeba_attributes(attr_path)
        partition = read_celeba_partition(part_path)
        unlisted = [f for f in files if f not in partition]
        if unlisted:
            raise FairbenchError(
                f"{len(unlisted)} images of {str(attr_path)!r} have no row in {str(part_path)!r}; first: {unlisted[0]!r}"
            )
        codes = {name: (signs[:, j] > 0).astype(np.int64) for j, name in enumerate(names)}
        values = {name: CELEBA_VALUE_NAMES.get(name, CELEBA_DEFAULT_VALUES) for name in names}
        extra = len(set(os.listdir(image_dir)) - set(files))
        return self._finish(
            base=image_dir,
            files=files,
            codes=codes,
            values=values,
            split=np.array([partition[f] for f in files], dtype=object),
            table=repr(str(attr_path)),
            notes=f"; {extra} files in the image folder have no attribute row and are ignored" if extra else "",
        )


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Parse ``list_attr_celeba.txt`` (or Kaggle's ``.csv``): names, files, values in {-1, 1}."""
    lines = read_lines(path)
    where = str(path)
    csv_format = path.suffix == ".csv"
    if csv_format:
        if not lines:
            raise FairbenchError(f"{where!r} is empty; expected a header 'image_id,<attribute names>'")
        header = [h.strip() for h in lines[0].split(",")]
        names, first_line, expected_count = header[1:], 2, None
    else:
        if len(lines) < 2:
            raise FairbenchError(f"{where!r} is too short; expected the image count, then the attribute names")
        try:
            expected_count = int(lines[0].strip())
        except ValueError:
            raise FairbenchError(f"{where!r} line 1 must be the number of images, got {lines[0][:40]!r}") from None
        names, first_line = lines[1].split(), 3
    if not names:
        raise FairbenchError(f"{where!r} names no attributes on its header line")
    duplicate = first_duplicate(names)
    if duplicate is not None:
        raise FairbenchError(f"{where!r} names attribute {duplicate!r} twice")
    # pandas' C parser reads 200k rows in about a second; when it fails or finds a value other
    # than 1 or -1, the line-by-line pass below finds the first bad line to name it.
    parsed = _parse_sign_table(path, csv_format, len(names))
    if parsed is None:
        _raise_first_bad_row(lines, first_line, csv_format, names, where)
        raise FairbenchError(f"{where!r} is not a CelebA attribute table (a file name and {len(names)} values of 1 or -1 per line)")
    files, signs = parsed
    if not files:
        raise FairbenchError(f"{where!r} lists no images")
    if expected_count is not None and expected_count != len(files):
        raise FairbenchError(f"{where!r} line 1 says {expected_count} images but the table has {len(files)} rows")
    duplicate = first_duplicate(files)
    if duplicate is not None:
        raise FairbenchError(f"{where!r}: image {duplicate!r} is listed twice")
    return names, files, signs


def _parse_sign_table(path: Path, csv_format: bool, n_values: int) -> tuple[list[str], np.ndarray] | None:
    """Files and an int8 [N, n_values] table of -1/1, or None if the file is not exactly that."""
    try:
        if csv_format:
            frame = pd.read_csv(path, header=None, skiprows=1, dtype={0: str}, encoding="utf-8-sig", skipinitialspace=True)
        else:
            frame = pd.read_csv(path, sep=r"\s+", header=None, skiprows=2, dtype={0: str}, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return [], np.zeros((0, n_values), dtype=np.int8)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError):
        return None
    if frame.shape[1] != n_values + 1 or frame[0].isna().any():
        return None
    values = frame.iloc[:, 1:]
    if not all(pd.api.types.is_integer_dtype(dtype) for dtype in values.dtypes):
        return None  # a non-integer token or a short row (NaN)
    signs = values.to_numpy()
    if not (np.abs(signs) == 1).all():
        return None
    return frame[0].tolist(), signs.astype(np.int8)


def _raise_first_bad_row(lines: list[str], first_line: int, csv_format: bool, names: list[str], where: str) -> None:
    for number, line in enumerate(lines[first_line - 1:], start=first_line):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")] if csv_format else line.split()
        if len(fields) != len(names) + 1:
            raise FairbenchError(
                f"{where!r} line {number}: expected a file name and {len(names)} values, got {len(fields)} fields"
            )
        for name, value in zip(names, fields[1:]):
            if value not in ("1", "-1"):
                raise FairbenchError(
                    f"{where!r} line {number}: {name} = {value!r} for {fields[0]!r}; values must be 1 or -1"
                )


def read_celeba_partition(path: Path) -> dict[str, str]:
    """Parse ``list_eval_partition.txt`` (or ``.csv``): file -> "train" (0), "val" (1), "test" (2)."""
    csv_format = path.suffix == ".csv"
    try:
        if csv_format:
            frame = pd.read_csv(path, header=None, skiprows=1, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
        else:
            frame = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, encoding="utf-8")
        if frame.shape[1] == 2 and frame[1].isin(list(_CELEBA_PARTITIONS)).all() and frame[0].notna().all():
            return dict(zip(frame[0], frame[1].map(_CELEBA_PARTITIONS)))
    except pd.errors.EmptyDataError:
        return {}
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError):
        pass
    # Name the first bad line.
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip() or (csv_format and number == 1):
            continue
        fields = [f.strip() for f in line.split(",")] if csv_format else line.split()
        if len(fields) != 2 or fields[1] not in _CELEBA_PARTITIONS:
            raise FairbenchError(
                f"{str(path)!r} line {number}: expected 'file 0|1|2' (train, val, test), got {line.strip()[:60]!r}"
            )
    raise FairbenchError(f"{str(path)!r} is not a CelebA partition table ('file 0|1|2' per line)")
