"""Reading one image file of a folder dataset, and checking files before a run.

Every layout shares this: crop the centred square, resize bicubically, convert to RGB and
scale to ``[-1, 1]``; a file that is missing or not an image is refused with one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ...errors import FairbenchError


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
