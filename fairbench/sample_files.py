"""Samples as a folder of files with a table: what `fairbench run --save-images` writes and
`fairbench audit` reads.

A sample folder holds one file per sample and ``samples.csv``::

    file,requested,final
    00000.tif,light,heavy
    00001.tif,heavy,light

``requested`` is the attribute value the sample was asked for; ``final`` (optional) the value
whose details it is meant to end with (attribute switching's target; for other methods the
request). Values are written as names (``light``) or as integer codes (``0``).

File formats, by extension:

- ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.webp``: 8-bit images; grey (mode ``L``) is one
  channel, everything else is converted to RGB; a pixel ``p`` becomes ``p / 127.5 - 1``.
- ``.tif``, ``.tiff``: one-channel 32-bit float images (mode ``F``) are read as they are
  (the values are the samples); other TIFFs as 8-bit images above.
- ``.npy``: a float array of the sample's shape (for samples that are not images, e.g. the
  Gaussian model's vectors); read with ``allow_pickle=False``.

What `write_sample_folder` writes: one-channel images as float TIFF and other samples as
``.npy``, both lossless, so measuring the files gives the numbers of the samples themselves;
three-channel images as 8-bit PNG, which rounds each pixel to 1/127.5 (the measurements of
the files then differ from the run's by that rounding).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import FairbenchError

TABLE = "samples.csv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SUFFIXES = IMAGE_SUFFIXES + (".npy",)


@dataclass
class SampleFolder:
    """Samples read from a folder: ``samples [N, *shape]``, codes ``requested [N]``, ``final [N]`` or None."""

    samples: torch.Tensor
    requested: torch.Tensor
    final: torch.Tensor | None
    files: list[str]


# ---------------------------------------------------------------------------------------------
# Writing


def _file_for(sample: torch.Tensor) -> tuple[str, object]:
    """(suffix, writer) for one sample; see the module docstring for the choice."""
    if sample.ndim == 3 and sample.shape[0] == 1:
        return ".tif", lambda path: Image.fromarray(sample[0].to(torch.float32).numpy(), mode="F").save(path)
    if sample.ndim == 3 and sample.shape[0] == 3:
        pixels = ((sample.to(torch.float32) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return ".png", lambda path: Image.fromarray(pixels.permute(1, 2, 0).numpy(), mode="RGB").save(path)
    return ".npy", lambda path: np.save(path, sample.numpy(), allow_pickle=False)


def write_sample_folder(folder: Path, samples, requested, final, value_names: Sequence[str]) -> Path:
    """Write samples (a tensor or `ShardedSamples`) and their table to `folder`, whole or not at all."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        rows = []
        n, step = len(samples), 256
        for lo in range(0, n, step):
            chunk = samples[lo : min(lo + step, n)].detach().cpu()
            for offset, sample in enumerate(chunk):
                suffix, write = _file_for(sample)
                name = f"{lo + offset:05d}{suffix}"
                write(tmp / name)
                rows.append(name)
        with open(tmp / TABLE, "w", newline="", encoding="utf-8") as handle:
            table = csv.writer(handle)
            table.writerow(["file", "requested", "final"])
            for name, a, b in zip(rows, torch.as_tensor(requested).tolist(), torch.as_tensor(final).tolist()):
                table.writerow([name, value_names[a], value_names[b]])
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ---------------------------------------------------------------------------------------------
# Reading


def read_sample_file(path: Path) -> torch.Tensor:
    """One sample file as a tensor (see the module docstring for the formats)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FairbenchError(f"cannot read {str(path)!r} as a .npy array: {exc}") from None
        if not np.issubdtype(array.dtype, np.number):
            raise FairbenchError(f"{str(path)!r} holds {array.dtype} values, not numbers")
        return torch.from_numpy(np.ascontiguousarray(array))
    try:
        with Image.open(path) as opened:
            opened.load()  # decodes the whole file, so truncation shows here
            if opened.mode == "F":
                return torch.from_numpy(np.array(opened, dtype=np.float32))[None]
            image = opened.convert("L" if opened.mode in ("L", "1", "I", "I;16") else "RGB")
    except UnidentifiedImageError:
        raise FairbenchError(f"{str(path)!r} is not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise FairbenchError(f"cannot read image {str(path)!r}: {exc}") from None
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()


def _codes(column: list[str], value_names: Sequence[str], table: Path, name: str, first_row: int) -> torch.Tensor:
    index = {value: code for code, value in enumerate(value_names)}
    codes = []
    for row, value in enumerate(column, start=first_row):
        value = value.strip()
        if value in index:
            codes.append(index[value])
        elif value.lstrip("-").isdigit() and 0 <= int(value) < len(value_names):
            codes.append(int(value))
        else:
            raise FairbenchError(
                f"{str(table)!r} line {row}: {name} {value!r} is not one of {list(value_names)} "
                f"(or a code 0..{len(value_names) - 1})"
            )
    return torch.tensor(codes, dtype=torch.int64)


def read_table(folder: Path, value_names: Sequence[str], *, table: str = TABLE) -> tuple[list[str], torch.Tensor, torch.Tensor | None]:
    """The table of a sample folder: file names, requested codes, final codes (None without that column)."""
    path = folder / table
    if not path.is_file():
        raise FairbenchError(f"{str(path)!r} is missing: a sample folder needs a CSV table with columns file,requested[,final]")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FairbenchError(f"cannot read {str(path)!r}: {exc}") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise FairbenchError(f"{str(path)!r} is empty; it needs a header file,requested[,final] and one row per sample")
    header = [cell.strip() for cell in rows[0]]
    for column in ("file", "requested"):
        if column not in header:
            raise FairbenchError(f"{str(path)!r} has no {column!r} column (its header: {','.join(header)})")
    unknown = [column for column in header if column not in ("file", "requested", "final")]
    if unknown:
        raise FairbenchError(f"{str(path)!r} has an unknown column {unknown[0]!r}; valid: file, requested, final")
    body = rows[1:]
    if not body:
        raise FairbenchError(f"{str(path)!r} lists no samples")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise FairbenchError(f"{str(path)!r} line {line}: {len(row)} fields, the header has {len(header)}")
    columns = {name: [row[i] for row in body] for i, name in enumerate(header)}
    files = [name.strip() for name in columns["file"]]
    seen: set[str] = set()
    for line, name in enumerate(files, start=2):
        if name in seen:
            raise FairbenchError(f"{str(path)!r} line {line}: file {name!r} is listed twice")
        seen.add(name)
    requested = _codes(columns["requested"], value_names, path, "requested", 2)
    final = _codes(columns["final"], value_names, path, "final", 2) if "final" in columns else None
    return files, requested, final


def read_sample_folder(folder: str | Path, value_names: Sequence[str], *, table: str = TABLE) -> SampleFolder:
    """Every sample of `folder` listed in its table, checked (see the module docstring).

    Refused, naming the file: a missing folder or table, a table row naming a file that is
    absent or outside the folder, a sample file in the folder the table does not list, an
    unreadable file, and samples of different shapes.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FairbenchError(f"samples folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise FairbenchError(f"samples {str(folder)!r} is not a folder")
    files, requested, final = read_table(folder, value_names, table=table)
    root = folder.resolve()
    for name in files:
        path = (folder / name).resolve()
        if root not in path.parents:
            raise FairbenchError(f"{str(folder / table)!r} lists {name!r}, which is not inside {str(folder)!r}")
        if path.suffix.lower() not in SUFFIXES:
            raise FairbenchError(f"{str(folder / name)!r}: unsupported file type; valid: {', '.join(SUFFIXES)}")
        if not path.is_file():
            raise FairbenchError(f"{str(folder / name)!r} is listed in {str(folder / table)!r} but missing")
    listed = {(folder / name).resolve() for name in files}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in SUFFIXES and path.is_file() and path.resolve() not in listed:
            raise FairbenchError(f"{str(path)!r} is in the samples folder but not in {str(folder / table)!r}")
    samples, shape = [], None
    for name in files:
        sample = read_sample_file(folder / name)
        if shape is None:
            shape, first = tuple(sample.shape), name
        elif tuple(sample.shape) != shape:
            raise FairbenchError(
                f"{str(folder / name)!r} has shape {list(sample.shape)} but {first!r} has {list(shape)}: "
                "every sample must have the same size"
            )
        samples.append(sample)
    dtype = torch.float64 if any(s.dtype == torch.float64 for s in samples) else torch.float32
    return SampleFolder(torch.stack([s.to(dtype) for s in samples]), requested, final, files)
