"""One interface for every dataset: images, named attributes and splits.

An `ImageDataset` is a torch ``Dataset`` of images (float32, ``[C, H, W]`` in ``[-1, 1]``)
with a table of integer-coded attributes (one row per image, one column per attribute,
value names in `attribute_values`) and a split label per image. A column may be the product
of others (a sensitive attribute of several axes); `product_axes` gives its axes. Image folders load lazily;
small datasets may hold their images in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..errors import FairbenchError, suggest
from ..models.base import AttributeAxes

SPLITS = ("train", "val", "test")


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    name: str
    attributes: pd.DataFrame  # integer codes, one column per attribute
    attribute_values: dict[str, tuple[str, ...]]  # code -> value name, per attribute
    split: np.ndarray  # one of SPLITS per row
    image_shape: tuple[int, int, int]  # (C, H, W)
    # Either all images in memory ([N, C, H, W] in [-1, 1]) or a loader for image i.
    tensor: torch.Tensor | None = None
    loader: Callable[[int], torch.Tensor] | None = field(default=None, repr=False)
    description: str = ""
    # Columns that are the product of other columns (``"gender x age"``): their axes.
    product_axes: dict[str, AttributeAxes] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.attributes)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[index]
        return self.loader(int(index))

    def images(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """A batch of images, ``[len(indices), C, H, W]`` (all images when None)."""
        indices = range(len(self)) if indices is None else indices
        if self.tensor is not None:
            return self.tensor[torch.as_tensor(list(indices), dtype=torch.long)]
        return torch.stack([self[i] for i in indices]) if len(indices) else torch.empty(0, *self.image_shape)

    def labels(self, attribute: str) -> torch.Tensor:
        """Integer codes of `attribute` for every image."""
        if attribute not in self.attributes.columns:
            raise FairbenchError(
                f"dataset {self.name!r} has no attribute {attribute!r}.{suggest(attribute, list(self.attributes.columns))}"
            )
        return torch.as_tensor(np.array(self.attributes[attribute].to_numpy(), dtype=np.int64))

    def num_values(self, attribute: str) -> int:
        self.labels(attribute)
        return len(self.attribute_values[attribute])

    def subset(self, split: str | Sequence[int]) -> "ImageDataset":
        """Rows of one split (by name) or of the given indices."""
        if isinstance(split, str):
            if split not in SPLITS:
                raise FairbenchError(f"Unknown split {split!r}.{suggest(split, SPLITS)}")
            rows = np.flatnonzero(self.split == split)
        else:
            rows = np.asarray(list(split), dtype=np.int64)
        parent = self
        return ImageDataset(
            name=self.name,
            attributes=self.attributes.iloc[rows].reset_index(drop=True),
            attribute_values=self.attribute_values,
            split=self.split[rows],
            image_shape=self.image_shape,
            tensor=None if self.tensor is None else self.tensor[torch.as_tensor(rows)],
            loader=None if self.tensor is not None else (lambda i: parent[int(rows[i])]),
            description=self.description,
            product_axes=self.product_axes,
        )
