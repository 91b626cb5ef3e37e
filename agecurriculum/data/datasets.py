"""Datasets the trainer consumes: items are ``(image, age_bin, gender)`` with the image a ``(3, H, W)`` float tensor.

The curriculum trains each stage on the images of some age bins only, so every dataset here can report the age bin
of each item without loading its image (:func:`age_bins_of`), and :class:`FilteredDataset` keeps the items whose bin
is in a stage's set.

:class:`FaceDataset` turns :class:`~agecurriculum.data.records.FaceRecord` s into such items. A record's age is a
range; :func:`assign_age_bin` maps it onto the unified bins, and a range that straddles two bins follows an explicit
rule instead of silently landing in a wrong bin. Unknown labels are :data:`IGNORE` (-100), which the losses skip.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset

from agecurriculum.bins import AgeBins
from agecurriculum.data.records import IGNORE, STRADDLE_RULES, FaceRecord, Straddle

__all__ = [
    "assign_age_bin",
    "to_float_tensor",
    "FaceDataset",
    "TensorFaceDataset",
    "FilteredDataset",
    "MixedDataset",
    "age_bins_of",
    "records_of",
    "MIXED",
]


def assign_age_bin(record: FaceRecord, bins: AgeBins, straddle: Straddle = "ignore") -> int | None:
    """The age-bin label of a record.

    An exact age, or an age range that lies inside one bin, gets that bin. A range that straddles two or more bins
    has no single true bin; ``straddle`` says what to do with it:

    * ``"ignore"`` (default): the age label is :data:`IGNORE`; the image still trains gender. Never a guessed bin.
    * ``"overlap"``: the bin sharing the most whole years with the range; a tie between bins gives :data:`IGNORE`.
    * ``"drop"``: returns None, and :class:`FaceDataset` leaves the record out.
    * ``"error"``: raises ValueError naming the file and the range.

    Example: FairFace's group 3-9 against the bins 0-2, 3-6, 7-14 straddles 3-6 and 7-14; ``"ignore"`` gives
    IGNORE, ``"overlap"`` gives the bin 3-6 (4 years, against 3 years in 7-14). Ages above ``bins.max_age`` count
    in the last bin, as in :meth:`AgeBins.bin_of`.

    Args:
        record: the labelled image.
        bins: the unified age bins.
        straddle: the rule for ranges that straddle bins, one of :data:`STRADDLE_RULES`.

    Returns:
        The bin index, :data:`IGNORE`, or None (only under ``"drop"``, for a straddling range).

    Raises:
        ValueError: for an unknown rule, or a straddling range under ``"error"``.
    """
    if straddle not in STRADDLE_RULES:
        raise ValueError(f"straddle must be one of {STRADDLE_RULES}, got {straddle!r}")
    first, last = bins.bin_of(record.age_min), bins.bin_of(record.age_max)
    if first == last:
        return first
    if straddle == "ignore":
        return IGNORE
    if straddle == "drop":
        return None
    if straddle == "error":
        spanned = ", ".join(bins.labels()[first : last + 1])
        raise ValueError(
            f"{record.path}: age range {record.age_min}-{record.age_max} straddles the bins {spanned}; "
            "choose another straddle rule ('ignore', 'overlap' or 'drop')"
        )
    overlaps = []
    for b in range(first, last + 1):
        lo, hi = bins.groups[b]
        if b == len(bins) - 1:
            hi = max(hi, record.age_max)  # the last bin also holds every older age
        overlaps.append(min(record.age_max, hi) - max(record.age_min, lo) + 1)
    best = max(overlaps)
    return first + overlaps.index(best) if overlaps.count(best) == 1 else IGNORE


def to_float_tensor(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 in [0, 1], like torchvision's ``ToTensor``."""
    # np.array copies: the source may hand out a read-only array (PIL, a memory-mapped cache), which torch can't wrap.
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255)


class FaceDataset(Dataset):
    """Labelled face records as ``(image, age_bin, gender)`` items, loading each image only when it is read.

    Labels are computed once, from the records alone, so :func:`age_bins_of` and :class:`FilteredDataset` never
    decode an image.

    Args:
        records: the labelled images.
        bins: the unified age bins.
        image_source: ``image_source(record)`` returns the (cropped, aligned) face as an ``(H, W, 3)`` uint8 RGB
            array, e.g. read from a crop cache or with PIL.
        transform: maps that array to a ``(3, H, W)`` float tensor (see :mod:`agecurriculum.data.transforms`);
            default :func:`to_float_tensor`.
        straddle: rule for age ranges that straddle bins; see :func:`assign_age_bin`.

    Attributes:
        records: the records kept, in input order (all of them unless ``straddle="drop"``).
        dropped: the records left out under ``straddle="drop"``.
        age_bins: age-bin label of every kept record (:data:`IGNORE` where unknown).
        genders: gender label of every kept record (0 male, 1 female, :data:`IGNORE` where unknown).
        datasets: dataset name of every kept record.
        subjects: subject id of every kept record, or None.
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        bins: AgeBins,
        image_source: Callable[[FaceRecord], np.ndarray],
        transform: Callable[[np.ndarray], Tensor] | None = None,
        straddle: Straddle = "ignore",
    ) -> None:
        self.bins = bins
        self.image_source = image_source
        self.transform = transform or to_float_tensor
        self.straddle = straddle
        self.records: list[FaceRecord] = []
        self.dropped: list[FaceRecord] = []
        self.age_bins: list[int] = []
        for record in records:
            if not isinstance(record, FaceRecord):
                raise TypeError(f"records must be FaceRecord objects, got {type(record).__name__}")
            age_bin = assign_age_bin(record, bins, straddle)
            if age_bin is None:
                self.dropped.append(record)
                continue
            self.records.append(record)
            self.age_bins.append(age_bin)
        self.genders: list[int] = [IGNORE if r.gender is None else r.gender for r in self.records]
        self.datasets: list[str] = [r.dataset for r in self.records]
        self.subjects: list[str | None] = [r.subject for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        record = self.records[index]
        image = self.image_source(record)
        is_array = isinstance(image, np.ndarray)
        if not (is_array and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            got = f"{image.dtype} array of shape {image.shape}" if is_array else type(image).__name__
            raise ValueError(f"{record.path}: image_source must return an (H, W, 3) uint8 RGB array, got {got}")
        return self.transform(image), self.age_bins[index], self.genders[index]


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

    Items of unknown age bin (:data:`IGNORE`: no age label, or a range that straddles bins under the ``"ignore"``
    rule) could be of any age, so they belong to no partial set of bins; ``keep_unknown`` adds them, which is right
    for a stage that covers every bin (the trainer does so): they train gender there, and add nothing to the age
    loss.

    Args:
        dataset: a dataset of ``(image, age_bin, gender)`` items.
        bins: the age-bin indices to keep.
        keep_unknown: also keep the items whose age bin is :data:`IGNORE`.

    Attributes:
        indices: positions in ``dataset`` of the kept items, in their original order.
    """

    def __init__(self, dataset: Dataset, bins: Collection[int], keep_unknown: bool = False) -> None:
        self.dataset = dataset
        self.bins = frozenset(int(b) for b in bins)
        self.keep_unknown = keep_unknown
        all_bins = age_bins_of(dataset)
        self.indices: list[int] = [i for i, b in enumerate(all_bins) if b in self.bins or keep_unknown and b == IGNORE]
        self.age_bins: Sequence[int] = [all_bins[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    def class_counts(self, num_bins: int) -> torch.Tensor:
        """Number of kept items per age bin (unknown ages not counted), as a ``(num_bins,)`` tensor."""
        known = torch.tensor([b for b in self.age_bins if b != IGNORE], dtype=torch.long)
        return torch.bincount(known, minlength=num_bins)


class MixedDataset(ConcatDataset):
    """Several :class:`FaceDataset` s (or views of them) as one, so that every batch holds faces of all of them.

    Algorithm 1 trains the datasets of a stage one after the other, and the last one pulls the model towards itself;
    a schedule stage naming ``mixed`` (:data:`MIXED`) trains on this instead. It keeps ``age_bins`` and ``records``
    so that the trainer can filter and weight it without loading an image.

    Args:
        datasets: the datasets to mix, in order (their items keep that order).
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        super().__init__(datasets)
        self.age_bins: list[int] = [b for d in datasets for b in age_bins_of(d)]
        parts = [records_of(d) for d in datasets]
        self.records: list[FaceRecord] | None = None if any(p is None for p in parts) else [r for p in parts for r in p]  # type: ignore[union-attr]


MIXED = "mixed"  # the schedule's name for every training dataset mixed into one (MixedDataset)


def records_of(dataset: Dataset) -> list[FaceRecord] | None:
    """The :class:`FaceRecord` of every item of a :class:`FaceDataset` or a :class:`MixedDataset`, also through
    views with ``indices`` (:class:`FilteredDataset`, torch's ``Subset``), in item order; None for datasets that keep
    no records (e.g. tensors)."""
    if hasattr(dataset, "records"):
        return None if dataset.records is None else list(dataset.records)
    inner, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if inner is None or indices is None:
        return None
    records = records_of(inner)
    return None if records is None else [records[i] for i in indices]
