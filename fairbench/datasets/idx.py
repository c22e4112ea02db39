"""The IDX files of MNIST and Fashion-MNIST: finding the four files in their users' layouts
and parsing them with every header checked.

An IDX file (LeCun et al., the MNIST distribution format) is a big-endian header followed by
the raw array: two zero bytes, a type byte (``0x08`` = unsigned byte), a dimension-count
byte ``d``, then ``d`` 32-bit sizes, then ``prod(sizes)`` bytes. Images are ``0x00000803``
(``[n, rows, cols]``), labels ``0x00000801`` (``[n]``). A file may be gzipped (``.gz``).

The four files (`IDX_FILES`) are looked for, uncompressed first then gzipped, in the first
of these folders that holds them (`find_idx_files`):

- ``root`` itself: the Debian package's folder (``/usr/share/datasets/fashion-mnist``),
  Keras' cache (``~/.keras/datasets/fashion-mnist``), torchvision's ``FashionMNIST/raw``;
- ``root/FashionMNIST/raw`` (or ``root/MNIST/raw``): the ``root`` given to torchvision.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FairbenchError

#: (split, kind) -> file name without ``.gz``.
IDX_FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
SIDE = 28  # both datasets' images are 28x28
NUM_CLASSES = 10


def layouts(torchvision_folder: str) -> str:
    """The folder layouts `find_idx_files` accepts, in words (for error messages)."""
    names = ", ".join(f"{name}[.gz]" for name in IDX_FILES.values())
    return (f"a folder holding {names} (the system package's folder, Keras' datasets/ folder or torchvision's "
            f"{torchvision_folder}/raw), or torchvision's root holding {torchvision_folder}/raw")


def find_idx_files(root: Path, torchvision_folder: str) -> dict[tuple[str, str], Path]:
    """The path of each of `IDX_FILES` under `root` (see the module docstring), or one error line."""
    if not root.is_dir():
        raise FairbenchError(f"dataset root {str(root)!r} is not a folder; expected {layouts(torchvision_folder)}")
    for folder in (root, root / torchvision_folder / "raw"):
        found = {}
        for key, name in IDX_FILES.items():
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
        if found:
            missing = [f"{name}[.gz]" for key, name in IDX_FILES.items() if key not in found]
            raise FairbenchError(f"dataset folder {str(folder)!r} lacks {', '.join(missing)}")
    raise FairbenchError(f"dataset root {str(root)!r} holds none of the IDX files; expected {layouts(torchvision_folder)}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise FairbenchError(f"cannot read {str(path)!r}: {exc}") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of the IDX file at `path`, whose magic number must be `magic`.

    Checks: the magic number (type byte ``0x08``, dimension count), and that the file holds
    exactly ``4 + 4 d + prod(sizes)`` bytes (a shorter file is truncated, a longer one is not
    what its header says).
    """
    data = _read_bytes(path)
    ndim = magic & 0xFF
    kind = "images" if magic == IMAGE_MAGIC else "labels"
    if len(data) < 4 + 4 * ndim:
        raise FairbenchError(f"{str(path)!r} is truncated: {len(data)} bytes, shorter than an IDX {kind} header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise FairbenchError(
            f"{str(path)!r} is not an IDX {kind} file: magic number 0x{found:08x}, expected 0x{magic:08x}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise FairbenchError(
            f"{str(path)!r} is {problem}: {len(data)} bytes where its header ({'x'.join(map(str, shape))}) needs {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@dataclass(frozen=True)
class IdxSplit:
    """One split's images (``[n, 28, 28]`` uint8, 0 = background) and labels (``[n]``, 0..9)."""

    images: np.ndarray
    labels: np.ndarray


def read_idx_dataset(files: dict[tuple[str, str], Path]) -> dict[str, IdxSplit]:
    """Both splits of the four files found by `find_idx_files`, with their counts, image sizes
    and label values checked against each other."""
    out = {}
    for split in ("train", "test"):
        images_path, labels_path = files[(split, "images")], files[(split, "labels")]
        images = read_idx(images_path, IMAGE_MAGIC)
        labels = read_idx(labels_path, LABEL_MAGIC)
        if images.shape[1:] != (SIDE, SIDE):
            raise FairbenchError(
                f"{str(images_path)!r} holds {images.shape[1]}x{images.shape[2]} images, expected {SIDE}x{SIDE}"
            )
        if len(images) != len(labels):
            raise FairbenchError(
                f"{str(labels_path)!r} holds {len(labels)} labels but {str(images_path)!r} holds {len(images)} images"
            )
        if len(labels) == 0:
            raise FairbenchError(f"{str(labels_path)!r} holds no labels")
        if labels.max() >= NUM_CLASSES:
            raise FairbenchError(
                f"{str(labels_path)!r} holds label {int(labels.max())}, expected 0..{NUM_CLASSES - 1}"
            )
        out[split] = IdxSplit(images=images, labels=labels.astype(np.int64))
    return out
