"""Age-bin balancing of one dataset: the paper's median rule, a variant of it, and inverse-frequency sampling.

Both median rules (:func:`balance_plan`) work on the counts ``n_b`` of the non-empty age bins of one dataset:

1. ``m`` = the median of the ``n_b``, rounded down.
2. Every bin with ``n_b > m`` is downsampled to ``m`` images: ``n_b - m`` of its images, drawn without replacement
   by a generator seeded with ``(seed, b)``, are dropped.
3. Bins below a target get augmented copies up to it, at most ``max_copies`` per original image:

   - ``rule="paper"``, the paper's: every bin below the median is augmented towards ``m``, with at most one copy
     per image by default (``max_copies=1``). The paper does not say how many copies it made; its reported ratios
     bound it: after the cut the largest bin is ``m``, so a smallest bin of ``n`` images ends at ``n (1 + c)``
     and the ratio at ``m / (n (1 + c)) <= 9 / (1 + c)`` for data that starts at 1/9 (``m`` is at most the largest
     bin, ``9 n``). Reaching 1/3.5 from 1/9, as the paper did, needs ``c <= 1.57``: one copy per image.
   - ``rule="ratio"``, this project's earlier rule: only bins below ``ceil(m / max_ratio)`` are augmented, up to
     that floor (default ``max_copies=5``), aiming straight at the ratio the paper reports (3.5). Bins between the
     floor and ``m`` are left as they are, so a dataset whose bins are all within 3.5 of the median (UTKFace) is
     only cut.

   When the cap binds, a bin stays below its target (and :attr:`BalancePlan.ratio_reached` may be False). The copies
   are spread evenly: each image of the bin gets ``need // n_b`` copies and ``need % n_b`` images, drawn by the same
   seeded generator, get one more.

Empty bins stay empty. Items whose age bin is :data:`~agecurriculum.data.datasets.IGNORE` (unknown age; they still
train gender) are kept once each and counted apart. :class:`BalancedDataset` then serves the kept originals plus the
augmented copies.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, WeightedRandomSampler

from agecurriculum.bins import AgeBins
from agecurriculum.data.datasets import age_bins_of, records_of
from agecurriculum.data.records import IGNORE, FaceRecord
from agecurriculum.data.transforms import augment_transform

__all__ = [
    "BALANCE_RULES",
    "age_gender_weights",
    "age_prior_shift",
    "BalancePlan",
    "balance_plan",
    "BalancedDataset",
    "balanced_weights",
    "weighted_sampler",
]

# rule -> default max_copies: "paper" (every bin below the median augmented towards it, one copy per image at most)
# and "ratio" (only bins below median / max_ratio, up to that floor). See the module docstring.
BALANCE_RULES = {"paper": 1, "ratio": 5}


@dataclass(frozen=True)
class BalancePlan:
    """How often each item of one dataset is used after balancing; see the module docstring for the rule.

    Attributes:
        uses: per item: 0 = dropped, 1 = the original only, ``1 + k`` = the original plus ``k`` augmented copies.
        counts_before: images per age bin before balancing.
        counts_after: images per age bin after balancing (originals plus copies).
        ignored: items with an unknown age bin, kept once each and in neither count.
        median: the median bin count ``m`` (rounded down) that bins above it were cut to.
        seed: seed of the random choices.
        max_ratio: the largest-to-smallest bin ratio aimed for (``ratio`` rule) or reported against (``paper``).
        max_copies: the most augmented copies made of one image.
        rule: ``"paper"`` or ``"ratio"`` (see the module docstring).
    """

    uses: tuple[int, ...]
    counts_before: tuple[int, ...]
    counts_after: tuple[int, ...]
    ignored: int
    median: int
    seed: int
    max_ratio: float
    max_copies: int
    rule: str = "paper"

    def __len__(self) -> int:
        return sum(self.uses)

    @property
    def copies(self) -> tuple[int, ...]:
        """Augmented copies of every item (0 for dropped items)."""
        return tuple(max(u - 1, 0) for u in self.uses)

    @staticmethod
    def _ratio(counts: Sequence[int]) -> float:
        present = [c for c in counts if c]
        return max(present) / min(present) if present else 1.0

    @property
    def ratio_before(self) -> float:
        """Largest over smallest non-empty bin count before balancing."""
        return self._ratio(self.counts_before)

    @property
    def ratio_after(self) -> float:
        """Largest over smallest non-empty bin count after balancing."""
        return self._ratio(self.counts_after)

    @property
    def ratio_reached(self) -> bool:
        """False when the ``max_copies`` cap kept a bin too small for ``max_ratio``."""
        return self.ratio_after <= self.max_ratio

    def entries(self) -> list[tuple[int, int]]:
        """``(item, copy)`` for every image of the balanced dataset, in item order; copy 0 is the original."""
        return [(i, c) for i, u in enumerate(self.uses) for c in range(u)]

    def to_dict(self) -> dict:
        """A JSON-able dict (without the per-item ``uses``) for logs and run reports."""
        row = asdict(self)
        del row["uses"]
        return {**row, "ratio_before": self.ratio_before, "ratio_after": self.ratio_after}


def _labels(age_bins: Sequence[int]) -> np.ndarray:
    labels = np.asarray([int(b) for b in age_bins], dtype=np.int64)
    bad = (labels < 0) & (labels != IGNORE)
    if bad.any():
        raise ValueError(f"age bin of item {int(np.argmax(bad))} is {labels[bad][0]}: expected >= 0 or {IGNORE}")
    return labels


def balance_plan(
    age_bins: Sequence[int],
    seed: int = 0,
    max_ratio: float = 3.5,
    max_copies: int | None = None,
    num_bins: int | None = None,
    rule: str = "paper",
) -> BalancePlan:
    """Plans the median-rule balancing of one dataset (the rules are in the module docstring).

    Args:
        age_bins: age bin of every item (e.g. ``FaceDataset.age_bins``), :data:`IGNORE` where unknown.
        seed: seed of the choice of dropped images and of the images that get an extra copy.
        max_ratio: the ``ratio`` rule's target for largest / smallest bin count, >= 1 (the ``paper`` rule only
            reports against it in :attr:`BalancePlan.ratio_reached`).
        max_copies: most augmented copies of one image, >= 0; None: the rule's default (:data:`BALANCE_RULES`:
            paper 1, ratio 5).
        num_bins: length of the count lists; default one past the largest bin present.
        rule: ``"paper"`` (every bin below the median augmented towards it) or ``"ratio"`` (only bins below
            ``median / max_ratio``, up to that).

    Raises:
        ValueError: on a negative bin other than IGNORE, a bad ``max_ratio``/``max_copies``/``seed``/``rule``, or
            a bin index >= ``num_bins``.
    """
    if rule not in BALANCE_RULES:
        raise ValueError(f"rule must be one of {', '.join(BALANCE_RULES)}, got {rule!r}")
    if max_copies is None:
        max_copies = BALANCE_RULES[rule]
    if not max_ratio >= 1:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio!r}")
    if max_copies < 0 or seed < 0:
        raise ValueError(f"max_copies and seed must be >= 0, got {max_copies!r} and {seed!r}")
    labels = _labels(age_bins)
    known = labels[labels != IGNORE]
    size = int(known.max()) + 1 if known.size else 0
    if num_bins is not None and num_bins < size:
        raise ValueError(f"age bin {size - 1} does not fit num_bins={num_bins}")
    counts = np.bincount(known, minlength=num_bins or size)
    uses = np.ones(len(labels), dtype=np.int64)
    median = int(np.median(counts[counts > 0])) if known.size else 0
    # The count every smaller bin is augmented towards: the median itself (paper), or median / max_ratio (ratio).
    floor = median if rule == "paper" else math.ceil(median / max_ratio - 1e-9)  # the 1e-9 keeps 7 / 3.5 at 2, not 3
    for b in np.flatnonzero(counts):
        members = np.flatnonzero(labels == b)
        n = len(members)
        rng = np.random.default_rng([seed, int(b)])  # one stream per bin: a bin's choice ignores the others
        if n > median:
            uses[rng.choice(members, n - median, replace=False)] = 0
        elif n < floor:
            per_image, extra = divmod(min(floor - n, max_copies * n), n)
            uses[members] += per_image
            uses[rng.choice(members, extra, replace=False)] += 1
    after = np.bincount(labels[labels != IGNORE], weights=uses[labels != IGNORE], minlength=len(counts))
    return BalancePlan(
        uses=tuple(int(u) for u in uses),
        counts_before=tuple(int(c) for c in counts),
        counts_after=tuple(int(c) for c in after),
        ignored=int((labels == IGNORE).sum()),
        median=median,
        seed=seed,
        max_ratio=float(max_ratio),
        max_copies=max_copies,
        rule=rule,
    )


class BalancedDataset(Dataset):
    """A dataset balanced by a :class:`BalancePlan`: the kept originals plus their augmented copies.

    The randomness of item ``index`` (the augmentation, and any random transform of the wrapped dataset) comes from
    torch's generator seeded with ``(seed, epoch, index)`` inside a forked RNG state, so an epoch's images are the
    same on every run and in every DataLoader worker, and the caller's RNG state is untouched. Call
    :meth:`set_epoch` at the start of each epoch to get fresh copies.

    Args:
        dataset: a dataset of ``(image, age_bin, gender)`` items, one per entry of ``plan.uses``.
        plan: from :func:`balance_plan` on the dataset's age bins.
        augment: applied to the image tensor of every copy; default
            :func:`~agecurriculum.data.transforms.augment_transform`.
        seed: default ``plan.seed``.

    Attributes:
        entries: ``(item, copy)`` of every item, as :meth:`BalancePlan.entries`.
        age_bins: age bin of every item (read from ``dataset`` without loading images when it has ``age_bins``).
    """

    def __init__(
        self,
        dataset: Dataset,
        plan: BalancePlan,
        augment: Callable[[Tensor], Tensor] | None = None,
        seed: int | None = None,
    ) -> None:
        bins = age_bins_of(dataset)
        if len(bins) != len(plan.uses):
            raise ValueError(f"the plan covers {len(plan.uses)} items but the dataset has {len(bins)}")
        self.dataset = dataset
        self.plan = plan
        self.augment = augment or augment_transform()
        self.seed = plan.seed if seed is None else seed
        self.epoch = 0
        self.entries = plan.entries()
        self.age_bins: list[int] = [bins[i] for i, _ in self.entries]

    @property
    def records(self) -> list[FaceRecord] | None:
        """The record of every item (a copy shares its original's), or None when the wrapped dataset keeps none."""
        inner = records_of(self.dataset)
        return None if inner is None else [inner[i] for i, _ in self.entries]

    def set_epoch(self, epoch: int) -> None:
        """Selects the augmentation of epoch ``epoch`` (>= 0)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        item, copy = self.entries[index]
        # SeedSequence mixes the three numbers into a well-spread seed, the same on every platform.
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image, age_bin, gender = self.dataset[item]
            if copy:
                image = self.augment(image)
        return image, age_bin, gender


def balanced_weights(age_bins: Sequence[int]) -> np.ndarray:
    """Sampling weights (summing to 1) that draw every non-empty age bin equally often on average.

    An item of bin ``b`` gets weight ``(known / n) / (k * n_b)`` (``n`` items, ``known`` of them with a known bin,
    ``k`` non-empty bins); an item with bin :data:`IGNORE` gets ``1 / n``, so unknown-age items keep their share
    of draws and the labelled share is split evenly between the bins.

    Raises:
        ValueError: no items.
    """
    labels = _labels(age_bins)
    if not labels.size:
        raise ValueError("balanced sampling needs at least one item")
    known = labels != IGNORE
    counts = np.bincount(labels[known]) if known.any() else np.zeros(0, dtype=np.int64)
    weights = np.full(len(labels), 1.0 / len(labels))
    weights[known] = known.mean() / (np.count_nonzero(counts) * counts[labels[known]])
    return weights


def weighted_sampler(age_bins: Sequence[int], seed: int = 0, num_samples: int | None = None) -> WeightedRandomSampler:
    """Draws items with replacement by :func:`balanced_weights`, so that every age bin is drawn equally often.

    Args:
        age_bins: age bin of every item, :data:`IGNORE` where unknown.
        seed: seeds the sampler's own generator, so the sequence of epochs repeats.
        num_samples: draws per epoch; default the number of items.
    """
    weights = balanced_weights(age_bins)
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double),
        num_samples or len(weights),
        replacement=True,
        generator=torch.Generator().manual_seed(seed),
    )


def age_gender_weights(
    records: Sequence[FaceRecord], bins: AgeBins, power: float = 1.0, child_max_age: int = 12, child_weight: float = 1.0
) -> np.ndarray:
    """Sampling weights that even out the (age group, gender) cells of a set of faces and weigh children up.

    A face's age group is the bin of the middle of its age range, so a label that straddles bins (a FairFace decade
    such as 3-9) still counts in a group: for sampling only; its age loss stays ignored. Faces of unknown gender form
    a cell of their own in each group. A face whose middle age is at most ``child_max_age`` counts as a child.

    Args:
        records: the faces, in item order.
        bins: the age groups.
        power: each face weighs ``1 / n ** power``, ``n`` the size of its cell: 1 draws every cell equally often,
            0 leaves the data's own proportions, 0.5 is half-way (in log terms).
        child_max_age: the oldest middle age that counts as a child.
        child_weight: children's weights are multiplied by this.

    Returns:
        ``(len(records),)`` float64 weights that sum to 1.
    """
    if not records:
        return np.zeros(0)
    if power < 0 or child_weight <= 0:
        raise ValueError(f"power must be >= 0 and child_weight > 0, got {power} and {child_weight}")
    middles = [(r.age_min + r.age_max) / 2 for r in records]
    cells = [(bins.bin_of(int(m)), -1 if r.gender is None else r.gender) for m, r in zip(middles, records)]
    sizes = Counter(cells)
    weights = np.array([sizes[c] ** -power for c in cells], dtype=np.float64)
    weights[np.array(middles) <= child_max_age] *= child_weight
    return weights / weights.sum()


def age_prior_shift(age_bins: Sequence[int], weights: Sequence[float] | None, num_bins: int) -> np.ndarray:
    """How far a weighted draw moves the age bins' proportions from the data's own, in log terms.

    A classifier trained on weighted draws learns the drawn proportions ``q_b`` as its prior instead of the data's
    ``p_b``; subtracting ``log(q_b / p_b)`` from its logits after training answers with the data's proportions
    again (post-hoc logit adjustment, Menon et al. 2021, "Long-tail learning via logit adjustment"). Only items of
    known bin count: those of bin :data:`IGNORE` train no age.

    Args:
        age_bins: the age bin of every item, :data:`IGNORE` where unknown.
        weights: each item's chance of a draw (any positive scale); None: every item equally (a shift of 0).
        num_bins: the number of age bins.

    Returns:
        ``(num_bins,)`` float64 ``log(q_b / p_b)``; 0 for bins without an item.

    Raises:
        ValueError: lengths differ, a weight is negative, a bin is out of range, or no item has a known bin.
    """
    labels = _labels(age_bins)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != labels.shape or (w < 0).any():
        raise ValueError(f"expected {len(labels)} non-negative weights, got shape {w.shape}")
    known = labels != IGNORE
    if (labels[known] >= num_bins).any():
        raise ValueError(f"an age bin is {int(labels[known].max())}: expected < {num_bins}")
    if not known.any() or w[known].sum() <= 0:
        raise ValueError("the age prior needs at least one item of known age bin with a positive weight")
    data = np.bincount(labels[known], minlength=num_bins).astype(np.float64)
    drawn = np.bincount(labels[known], weights=w[known], minlength=num_bins)
    shift = np.zeros(num_bins)
    present = (data > 0) & (drawn > 0)
    shift[present] = np.log((drawn[present] / drawn.sum()) / (data[present] / data.sum()))
    return shift
