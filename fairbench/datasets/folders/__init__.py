"""Face-image folders in the layouts their users already have: CelebA, FairFace, UTKFace.

Each dataset is a frozen spec (``[dataset] name = "celeba" | "fairface" | "utkface"``) whose
``load()`` reads the attribute tables, checks them against the image folder and returns an
`ImageDataset` that opens images lazily, one file per ``__getitem__``.

Common keys:

- ``root``: the folder of the dataset (see each spec for its layout); relative paths are
  relative to the working directory, ``~`` is expanded.
- ``attribute``: the sensitive attribute, by name, or a list of names whose product is the
  sensitive attribute (a flat column ``"gender x age"``, docs/datasets.md); ``target``: an optional target attribute
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

One module per concern: `images` (reading and checking image files), `base` (the common keys
and table checks), and one module per layout: `celeba`, `fairface`, `utkface`.
"""

from __future__ import annotations

from .. import register_dataset
from .base import AGE_BUCKETS, AGE_EDGES, GENDER_VALUES, FolderDatasetSpec
from .celeba import (
    CELEBA_ATTRIBUTES, CELEBA_DEFAULT_VALUES, CELEBA_VALUE_NAMES, CelebASpec, read_celeba_attributes, read_celeba_partition,
)
from .fairface import FAIRFACE_RACES, FAIRFACE_VALUES, FairFaceSpec, read_fairface_labels
from .images import FolderImages, check_image_headers, read_image
from .utkface import UTKFACE_PATTERN, UTKFACE_RACES, UTKFACE_VALUES, UTKFaceSpec, utkface_split

__all__ = [
    "AGE_BUCKETS", "AGE_EDGES", "CELEBA_ATTRIBUTES", "CELEBA_DEFAULT_VALUES", "CELEBA_VALUE_NAMES", "FAIRFACE_RACES",
    "FAIRFACE_VALUES", "GENDER_VALUES", "UTKFACE_PATTERN", "UTKFACE_RACES", "UTKFACE_VALUES", "CelebASpec", "FairFaceSpec",
    "FolderDatasetSpec", "FolderImages", "UTKFaceSpec", "check_image_headers", "read_celeba_attributes",
    "read_celeba_partition", "read_fairface_labels", "read_image", "utkface_split",
]

register_dataset("celeba", CelebASpec)
register_dataset("fairface", FairFaceSpec)
register_dataset("utkface", UTKFaceSpec)
