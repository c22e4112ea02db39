"""Writers of tiny CelebA, FairFace and UTKFace folders in their exact on-disk layouts.

Every image is ``width x height`` (portrait, 16 x 32 by default) with black bands above and
below a centred square of one colour, `image_color(i)`, so a correct centre crop of image
``i`` is uniformly that colour and a wrong crop or a wrong file is visible. JPEGs are written
with 4:4:4 chroma and band edges on the 8-pixel block grid, so they decode to within a few
levels of the colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fairbench.datasets.folders import CELEBA_ATTRIBUTES

IMAGE_SIZE = (16, 32)  # width, height


def image_color(index: int) -> tuple[int, int, int]:
    """The colour of the centre square of fixture image `index` (distinct for index < 256)."""
    return ((37 * index + 20) % 256, (91 * index + 50) % 256, (53 * index + 101) % 256)


def write_image(path: Path, index: int, size: tuple[int, int] = IMAGE_SIZE) -> None:
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    pixels[top:top + side, left:left + side] = image_color(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels, "RGB")
    if path.name.lower().endswith((".jpg", ".jpeg")):
        image.save(path, format="JPEG", quality=95, subsampling=0)
    else:
        image.save(path, format="PNG")


def write_celeba(
    root: Path,
    *,
    n: int = 12,
    seed: int = 0,
    csv_format: bool = False,
    nested_images: bool = False,
) -> pd.DataFrame:
    """Write ``img_align_celeba/``, ``list_attr_celeba`` and ``list_eval_partition`` (``.txt``,
    or Kaggle's ``.csv`` with `csv_format`). Returns the table: file, the 40 attributes (-1/1),
    partition (0/1/2)."""
    rng = np.random.default_rng(seed)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    values = rng.choice([-1, 1], size=(n, len(CELEBA_ATTRIBUTES)))
    partition = np.array([0, 1, 2])[np.arange(n) % 3]
    image_dir = root / "img_align_celeba"
    if nested_images:
        image_dir = image_dir / "img_align_celeba"
    for i, name in enumerate(files):
        write_image(image_dir / name, i)
    if csv_format:
        attr = ["image_id," + ",".join(CELEBA_ATTRIBUTES)]
        attr += [f"{f}," + ",".join(str(v) for v in row) for f, row in zip(files, values)]
        (root / "list_attr_celeba.csv").write_text("\n".join(attr) + "\n")
        part = ["image_id,partition"] + [f"{f},{p}" for f, p in zip(files, partition)]
        (root / "list_eval_partition.csv").write_text("\n".join(part) + "\n")
    else:
        # The original file pads the values with spaces and ends the name line with a space.
        attr = [str(n), " ".join(CELEBA_ATTRIBUTES) + " "]
        attr += [f"{f} " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values)]
        (root / "list_attr_celeba.txt").write_text("\n".join(attr) + "\n")
        part = [f"{f} {p}" for f, p in zip(files, partition)]
        (root / "list_eval_partition.txt").write_text("\n".join(part) + "\n")
    table = pd.DataFrame(values, columns=list(CELEBA_ATTRIBUTES))
    table.insert(0, "file", files)
    table["partition"] = partition
    return table


FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")


def write_fairface(root: Path, *, n_train: int = 9, n_val: int = 5, seed: int = 0) -> pd.DataFrame:
    """Write ``train/``, ``val/`` and ``fairface_label_{train,val}.csv`` (the published columns).
    Returns the rows: file, age, gender, race (as spelled in the CSV), csv_split."""
    rng = np.random.default_rng(seed)
    rows = []
    index = 0
    for csv_split, count in (("train", n_train), ("val", n_val)):
        lines = ["file,age,gender,race,service_test"]
        for j in range(count):
            file = f"{csv_split}/{j + 1}.jpg"
            age = FAIRFACE_AGES[rng.integers(len(FAIRFACE_AGES))]
            gender = ("Male", "Female")[rng.integers(2)]
            race = FAIRFACE_RACES[index % len(FAIRFACE_RACES)]
            lines.append(f"{file},{age},{gender},{race},{bool(rng.integers(2))}")
            write_image(root / file, index)
            rows.append({"file": file, "age": age, "gender": gender, "race": race, "csv_split": csv_split})
            index += 1
        (root / f"fairface_label_{csv_split}.csv").write_text("\n".join(lines) + "\n")
    return pd.DataFrame(rows)


def utkface_name(age: int, gender: int, race: int, index: int, suffix: str = ".jpg.chip.jpg") -> str:
    return f"{age}_{gender}_{race}_2017011{index:010d}{suffix}"


def write_utkface(
    root: Path,
    labels: Sequence[tuple[int, int, int]],
    *,
    suffix: str = ".jpg.chip.jpg",
    order: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Write one image per (age, gender digit, race digit), named as UTKFace names them, in
    the given creation `order`. Returns the rows: file, age, gender, race (file-name digits)."""
    rows = [
        {"file": utkface_name(a, g, r, i, suffix), "age": a, "gender": g, "race": r, "index": i}
        for i, (a, g, r) in enumerate(labels)
    ]
    for i in order if order is not None else range(len(rows)):
        write_image(root / rows[i]["file"], rows[i]["index"])
    return pd.DataFrame(rows)
