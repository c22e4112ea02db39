"""Face-image folders in the layouts their users already have: CelebA, FairFace, UTKFace.

Each dataset is a frozen spec (``[dataset] name = "celeba" | "fairface" | "utkface"``) whose
``load()`` reads the attribute tables, checks them against the image folder and returns an
`ImageDataset` that opens images lazily, one file per ``__getitem__``.

Common keys:

- ``root``: the folder of the dataset (see each spec for its layout); relative paths are
  relative to the working directory, ``~`` is expanded.
- ``attribute``: the sensitive attribute, by name; ``target``: an optional target attribute
  (for utility metrics). The returned table holds every attribute of the dataset, ordered
  sensitive attribute first, then the target, then the rest in the dataset's own order.
- ``resolution``: the side of the square output images. Each image is cropped to a
  centred square of side ``crop`` pixels (default: the shorter side) and resized with a
  bicubic filter to ``resolution x resolution``, converted to RGB, and scaled to
  ``x = pixel / 127.5 - 1`` in ``[-1, 1]`` (float32, ``[3, resolution, resolution]``).
- ``max_images``: keep a seeded uniform random subset of this many images (rows keep their
  table order and their split; only kept rows need their files); ``seed`` drives it (and
  UTKFace's split).
- ``check_images``: also open the header of every kept image at load time, so a file that is
  not an image fails before a run instead of in the middle of one. Without it, a bad file
  fails when it is read, with an error naming it.

Attribute codes are integers ``0..k-1``; ``attribute_values[name][code]`` is the value name.
Gender is coded the same in all three datasets: 0 = "female", 1 = "male".

Bad input is refused with one `FairbenchError` line naming the bad value: a missing or empty
root, a missing attribute table, an unknown attribute name, a malformed table row (file and
line number), table rows whose image file is missing (the first missing file is named; image
files with no table row are ignored and counted in the description), a file that is not a
readable image (named when read, or at load with ``check_images``), a non-positive size.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import FairbenchError, suggest
from . import register_dataset
from .base import SPLITS, ImageDataset

# ---------------------------------------------------------------------------------------------
# Value names and codes.

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

GENDER_VALUES: tuple[str, str] = ("female", "male")
#: FairFace's age buckets; UTKFace ages (in years) are put in the same buckets.
AGE_BUCKETS: tuple[str, ...] = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
#: Lower edge (in years) of each bucket of `AGE_BUCKETS` after the first.
AGE_EDGES: tuple[int, ...] = (3, 10, 20, 30, 40, 50, 60, 70)

FAIRFACE_RACES: tuple[str, ...] = (
    "White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern",
)
FAIRFACE_VALUES: dict[str, tuple[str, ...]] = {"age": AGE_BUCKETS, "gender": GENDER_VALUES, "race": FAIRFACE_RACES}
#: How FairFace's CSVs spell each value of an attribute (gender is capitalised there).
_FAIRFACE_SPELLING: dict[str, tuple[str, ...]] = {"age": AGE_BUCKETS, "gender": ("Female", "Male"), "race": FAIRFACE_RACES}

#: UTKFace's race digit r names ``UTKFACE_RACES[r]``.
UTKFACE_RACES: tuple[str, ...] = ("White", "Black", "Asian", "Indian", "Others")
UTKFACE_VALUES: dict[str, tuple[str, ...]] = {"age": AGE_BUCKETS, "gender": GENDER_VALUES, "race": UTKFACE_RACES}
#: ``[age]_[gender]_[race]_[date&time].jpg``, also the aligned-and-cropped ``.jpg.chip.jpg``.
UTKFACE_PATTERN = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<date>\d+)\.(?:jpe?g|png)(?:\.chip\.jpe?g)?$",
    re.IGNORECASE,
)

_CELEBA_PARTITIONS = {"0": "train", "1": "val", "2": "test"}

# ---------------------------------------------------------------------------------------------
# Images.


def read_image(path: str | Path, *, resolution: int, crop: int | None = None) -> torch.Tensor:
    """One image as float32 ``[3, resolution, resolution]`` in ``[-1, 1]``.

    Crop the centred square of side ``crop`` (default ``min(W, H)``; offsets
    ``floor((W - side) / 2)``, ``floor((H - side) / 2)``), resize it bicubically to
    ``resolution``, convert to RGB, and scale each pixel ``p`` in ``0..255`` to ``p / 127.5 - 1``.
    """
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")  # decodes the whole file, so truncation shows here
    except FileNotFoundError:
        raise FairbenchError(f"image file {str(path)!r} is missing (it was listed when the dataset was loaded)") from None
    except UnidentifiedImageError:
        raise FairbenchError(f"{str(path)!r} is not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise FairbenchError(f"cannot read image {str(path)!r}: {exc}") from None
    width, height = image.size
    side = _crop_side(width, height, crop, path)
    left, top = (width - side) // 2, (height - side) // 2
    if (side, side) != (width, height):
        image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def _crop_side(width: int, height: int, crop: int | None, path: str | Path) -> int:
    if crop is None:
        return min(width, height)
    if crop > min(width, height):
        raise FairbenchError(f"crop = {crop} is larger than image {str(path)!r} ({width}x{height})")
    return crop


class FolderImages:
    """Loader of image ``i``: ``base/files[i]`` (a picklable callable, for DataLoader workers)."""

    def __init__(self, base: str, files: Sequence[str], *, resolution: int, crop: int | None) -> None:
        self.base = base
        self.files = list(files)  # relative names: 200k short strings, joined only when read
        self.resolution = resolution
        self.crop = crop

    def path(self, index: int) -> str:
        return os.path.join(self.base, self.files[index])

    def __call__(self, index: int) -> torch.Tensor:
        return read_image(self.path(index), resolution=self.resolution, crop=self.crop)


def check_image_headers(paths: Sequence[str], crop: int | None) -> None:
    """Open each file's header (not its pixels): fail on the first that is not an image."""
    for path in paths:
        try:
            with Image.open(path) as opened:
                width, height = opened.size
        except FileNotFoundError:
            raise FairbenchError(f"image file {str(path)!r} is missing") from None
        except UnidentifiedImageError:
            raise FairbenchError(f"{str(path)!r} is not an image file PIL can read") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise FairbenchError(f"cannot read image {str(path)!r}: {exc}") from None
        _crop_side(width, height, crop, path)


# ---------------------------------------------------------------------------------------------
# Paths and tables.


def _existing_root(root: str, dataset: str, layout: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FairbenchError(f"{dataset} root {root!r} does not exist; expected a folder with {layout}")
    if not path.is_dir():
        raise FairbenchError(f"{dataset} root {root!r} is not a folder; expected a folder with {layout}")
    if not any(path.iterdir()):
        raise FairbenchError(f"{dataset} root {root!r} is empty; expected {layout}")
    return path


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FairbenchError(f"cannot read {str(path)!r}: {exc}") from None


def _check_files_exist(base: str, files: Sequence[str], table: str) -> None:
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


def _checked_attribute(name: str, valid: Sequence[str], dataset: str, key: str) -> None:
    if name not in valid:
        raise FairbenchError(f"{key} = {name!r} is not a {dataset} attribute.{suggest(name, valid)}")


# ---------------------------------------------------------------------------------------------
# The specs.


@dataclass(frozen=True, kw_only=True)
class FolderDatasetSpec:
    """Keys shared by the image-folder datasets (see the module docstring)."""

    name: str
    root: str
    attribute: str
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
        if self.target is not None and self.target == self.attribute:
            raise FairbenchError(f"{where}.target = {self.target!r} is the sensitive attribute; choose another")

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
        _checked_attribute(self.attribute, order, self.name, "dataset.attribute")
        if self.target is not None:
            _checked_attribute(self.target, order, self.name, "dataset.target")
        rows = np.arange(len(files))
        if self.max_images is not None and self.max_images < len(files):
            rng = np.random.default_rng([self.seed, 1])
            rows = np.sort(rng.choice(len(files), size=self.max_images, replace=False))
        kept = [files[i] for i in rows]
        images = FolderImages(str(base), kept, resolution=self.resolution, crop=self.crop)
        _check_files_exist(images.base, kept, table)
        if self.check_images:
            check_image_headers([images.path(i) for i in range(len(kept))], self.crop)
        first = [self.attribute] + ([self.target] if self.target is not None else [])
        columns = first + [name for name in order if name not in first]
        attributes = pd.DataFrame({name: codes[name][rows].astype(np.int64) for name in columns})
        target = f", target {self.target!r}" if self.target else ""
        return ImageDataset(
            name=self.name,
            attributes=attributes,
            attribute_values={name: values[name] for name in columns},
            split=np.asarray(split, dtype=object)[rows].astype(str),
            image_shape=(3, self.resolution, self.resolution),
            loader=images,
            description=(
                f"{self.name} at {self.root!r}: {len(kept)} images at {self.resolution}x{self.resolution}, "
                f"sensitive attribute {self.attribute!r} {values[self.attribute]}{target}{notes}"
            ),
        )


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
        root = _existing_root(self.root, "celeba", layout)
        if not _first_existing(root, ("list_attr_celeba.txt", "list_attr_celeba.csv")) and (root / "celeba").is_dir():
            root = root / "celeba"  # torchvision keeps CelebA in <root>/celeba
        attr_path = _first_existing(root, ("list_attr_celeba.txt", "list_attr_celeba.csv"))
        if attr_path is None:
            raise FairbenchError(f"celeba attribute table list_attr_celeba.txt not found in {str(root)!r}; expected {layout}")
        part_path = _first_existing(root, ("list_eval_partition.txt", "list_eval_partition.csv"))
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


def _first_existing(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Parse ``list_attr_celeba.txt`` (or Kaggle's ``.csv``): names, files, values in {-1, 1}."""
    lines = _read_lines(path)
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
    duplicate = _first_duplicate(names)
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
    duplicate = _first_duplicate(files)
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
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip() or (csv_format and number == 1):
            continue
        fields = [f.strip() for f in line.split(",")] if csv_format else line.split()
        if len(fields) != 2 or fields[1] not in _CELEBA_PARTITIONS:
            raise FairbenchError(
                f"{str(path)!r} line {number}: expected 'file 0|1|2' (train, val, test), got {line.strip()[:60]!r}"
            )
    raise FairbenchError(f"{str(path)!r} is not a CelebA partition table ('file 0|1|2' per line)")


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
        for key in ("attribute", "target"):
            value = getattr(self, key)
            if value is not None:
                _checked_attribute(value, list(FAIRFACE_VALUES), "fairface", f"{where}.{key}")

    def load(self) -> ImageDataset:
        layout = "train/, val/, fairface_label_train.csv and fairface_label_val.csv"
        root = _existing_root(self.root, "fairface", layout)
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
        duplicate = _first_duplicate(files)
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


def _first_duplicate(items: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def read_fairface_labels(path: Path) -> list[tuple[str, dict[str, int]]]:
    """Parse one FairFace label CSV: (file, {age, gender, race codes}) per row."""
    lines = _read_lines(path)
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
        for key in ("attribute", "target"):
            value = getattr(self, key)
            if value is not None:
                _checked_attribute(value, list(UTKFACE_VALUES), "utkface", f"{where}.{key}")
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
        root = _existing_root(self.root, "utkface", layout)
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


register_dataset("celeba", CelebASpec)
register_dataset("fairface", FairFaceSpec)
register_dataset("utkface", UTKFaceSpec)
