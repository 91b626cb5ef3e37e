"""Datasets the trainer consumes: items are ``(image, age_bin, gender)`` with the image a ``(3, H, W)`` float tensor.

The curriculum trains each stage on the images of some age bins only, so every dataset here can report the age bin
of each item without loading its image (:func:`age_bins_of`), and :class:`FilteredDataset` keeps the items whose bin
is in a stage's set.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["TensorFaceDataset", "FilteredDataset", "age_bins_of"]


class TensorFaceDataset(Dataset):
    """Faces already in memory as tensors, e.g. for tests, demos or a user's own preprocessed arrays.

    Args:
        images: ``(N, 3, H, W)`` float tensor.
        age_bins: ``(N,)`` integer age-bin indices.
        genders: ``(N,)`` integer gender indices (0 male, 1 female; -100 where unknown).
    """

    def __init__(self, images: Tensor, age_bins: Tensor, genders: Tensor) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        n = images.shape[0]
        for field, labels in (("age_bins", age_bins), ("genders", genders)):
            if labels.shape != (n,):
                raise ValueError(f"{field} must have shape ({n},) to match images, got {tuple(labels.shape)}")
        self.images = images
        self.age_bins = age_bins.long()
        self.genders = genders.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        return self.images[index], int(self.age_bins[index]), int(self.genders[index])


def age_bins_of(dataset: Dataset) -> list[int]:
    """The age bin of every item, in order.

    Uses the dataset's ``age_bins`` attribute when it has one (no image is loaded); otherwise reads every item,
    which decodes every image once.
    """
    bins = getattr(dataset, "age_bins", None)
    if bins is not None:
        return [int(b) for b in bins]
    return [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]


class FilteredDataset(Dataset):
    """The items of ``dataset`` whose age bin is in ``bins``: one curriculum stage's view of one dataset.

    Args:
        dataset: a dataset of ``(image, age_bin, gender)`` items.
        bins: the age-bin indices to keep.

    Attributes:
        indices: positions in ``dataset`` of the kept items, in their original order.
    """

    def __init__(self, dataset: Dataset, bins: Collection[int]) -> None:
        self.dataset = dataset
        self.bins = frozenset(int(b) for b in bins)
        all_bins = age_bins_of(dataset)
        self.indices: list[int] = [i for i, b in enumerate(all_bins) if b in self.bins]
        self.age_bins: Sequence[int] = [all_bins[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    def class_counts(self, num_bins: int) -> torch.Tensor:
        """Number of kept items per age bin, as a ``(num_bins,)`` tensor."""
        return torch.bincount(torch.tensor(self.age_bins, dtype=torch.long), minlength=num_bins)
