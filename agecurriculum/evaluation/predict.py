"""Runs a model over a dataset once and keeps what every metric needs: probabilities, targets and item metadata.

Metrics, protocols and reports all start from a :class:`Predictions`, plain numpy arrays, so they are testable
without a model and a test set is passed through the network only once however many tables are built from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from agecurriculum.data.datasets import records_of
from agecurriculum.data.records import IGNORE
from agecurriculum.evaluation.calibration import apply_temperature
from agecurriculum.evaluation.flip import flip_averaged

__all__ = ["Predictions", "predict_dataset"]


@dataclass
class Predictions:
    """Per-item outputs of a model on one dataset, all of length N.

    Attributes:
        age_probs: ``(N, K)`` softmax of the age logits over the K unified bins.
        gender_probs: ``(N, 2)`` softmax of the gender logits; column 0 male, 1 female.
        age_targets: ``(N,)`` true age bin, :data:`IGNORE` where unknown (e.g. a range straddling two bins).
        gender_targets: ``(N,)`` true gender, :data:`IGNORE` where unknown.
        exact_ages: ``(N,)`` float exact age in years, NaN where the label is a range or there is no record
            (NaN rather than None keeps it a numeric array).
        races: ``(N,)`` object array of race labels, None where unknown.
        datasets: ``(N,)`` object array of dataset names, None where unknown.
        max_ages: ``(N,)`` float oldest age the label allows, in years: the exact age, or the upper end of a range
            (FairFace's ``3-9`` gives 9), NaN where unknown; default ``exact_ages``. It says whether a face is a
            child (:func:`~agecurriculum.evaluation.metrics.children_gender_accuracy`) also where the exact age is
            not known.
    """

    age_probs: np.ndarray
    gender_probs: np.ndarray
    age_targets: np.ndarray
    gender_targets: np.ndarray
    exact_ages: np.ndarray | None = None
    races: np.ndarray | None = None
    datasets: np.ndarray | None = None
    max_ages: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.age_probs = np.asarray(self.age_probs, dtype=np.float64)
        self.gender_probs = np.asarray(self.gender_probs, dtype=np.float64)
        n = len(self.age_probs)
        if self.age_probs.ndim != 2 or self.gender_probs.shape != (n, 2):
            raise ValueError(
                f"age_probs must be (N, K) and gender_probs (N, 2), got {self.age_probs.shape} and "
                f"{self.gender_probs.shape}"
            )
        self.age_targets = np.asarray(self.age_targets, dtype=np.int64)
        self.gender_targets = np.asarray(self.gender_targets, dtype=np.int64)
        self.exact_ages = np.full(n, np.nan) if self.exact_ages is None else np.asarray(self.exact_ages, float)
        self.max_ages = self.exact_ages.copy() if self.max_ages is None else np.asarray(self.max_ages, float)
        for name in ("races", "datasets"):
            values = getattr(self, name)
            setattr(self, name, np.array([None] * n if values is None else list(values), dtype=object))
        for f in fields(self)[2:]:
            if getattr(self, f.name).shape != (n,):
                raise ValueError(f"{f.name} must have shape ({n},), got {getattr(self, f.name).shape}")
        k = self.age_probs.shape[1]
        bad = (self.age_targets != IGNORE) & ((self.age_targets < 0) | (self.age_targets >= k))
        if bad.any():
            raise ValueError(
                f"age target {self.age_targets[bad][0]} at item {np.flatnonzero(bad)[0]} is outside "
                f"0..{k - 1} and not IGNORE ({IGNORE})"
            )
        if not np.isin(self.gender_targets, (0, 1, IGNORE)).all():
            raise ValueError(f"gender targets must be 0, 1 or IGNORE ({IGNORE})")

    def __len__(self) -> int:
        return len(self.age_probs)

    @property
    def age_pred(self) -> np.ndarray:
        """Predicted age bin (argmax) of every item."""
        return self.age_probs.argmax(1)

    @property
    def gender_pred(self) -> np.ndarray:
        """Predicted gender (argmax) of every item."""
        return self.gender_probs.argmax(1)

    def select(self, index: np.ndarray | Sequence[int]) -> Predictions:
        """The items picked by a boolean mask or integer indices, as new Predictions."""
        index = np.asarray(index)
        return Predictions(*(getattr(self, f.name)[index] for f in fields(self)))

    def scaled(self, temperature: Mapping[str, float]) -> Predictions:
        """These predictions with each head's probabilities scaled by its calibration temperature, as ``predict``
        scales a release's (``temperature`` maps ``age`` and ``gender`` to ``T``; a head left out keeps 1.0).

        The predicted classes do not change; the expected age and the confidences do.
        """
        return replace(
            self,
            age_probs=apply_temperature(self.age_probs, temperature.get("age", 1.0)),
            gender_probs=apply_temperature(self.gender_probs, temperature.get("gender", 1.0)),
        )

    def by_dataset(self) -> dict[str, Predictions]:
        """The items of every named dataset, in order of first appearance (items without a name are left out)."""
        names = dict.fromkeys(d for d in self.datasets if d is not None)
        return {name: self.select(self.datasets == name) for name in names}


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    flip: bool = False,
    mirror: bool = False,
) -> Predictions:
    """Runs ``model`` in eval mode over ``dataset`` in order and collects softmax probabilities and targets.

    Args:
        model: returns ``(age_logits, gender_logits)`` (e.g. :class:`DualClassifier`'s ``HeadOutput``); it is moved
            to ``device`` and put back in its previous train/eval mode afterwards.
        dataset: items ``(image, age_bin, gender)``; when it (or the dataset it views) has ``records``, their exact
            age, age range, race and dataset name are kept too.
        batch_size: images per forward pass (``2 * batch_size`` with ``flip``).
        device: where the forward passes run.
        flip: average every image's softmax probabilities with those of its mirror image
            (:func:`flip_averaged`).
        mirror: run every image mirrored (left-right) instead of as it is: with a run without it, the input of
            :func:`~agecurriculum.evaluation.metrics.flip_consistency`. (With ``flip`` too, the result is
            ``flip``'s alone: the average of the two views.)

    Returns:
        The :class:`Predictions` of every item, in dataset order.
    """
    was_training = model.training
    model.to(device).eval()

    def probabilities(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Softmax in float64: the probabilities are summed over many bins and years later on.
        return tuple(logits.double().softmax(1) for logits in model(images)[:2])

    age_probs, gender_probs, age_targets, gender_targets = [], [], [], []
    try:
        for images, age_bin, gender in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            images = images.to(device)
            if mirror:
                images = images.flip(-1)
            age_p, gender_p = flip_averaged(probabilities, images) if flip else probabilities(images)
            age_probs.append(age_p.cpu().numpy())
            gender_probs.append(gender_p.cpu().numpy())
            age_targets.append(np.asarray(age_bin))
            gender_targets.append(np.asarray(gender))
    finally:
        model.train(was_training)
    if not age_probs:
        raise ValueError("the dataset is empty: nothing to predict")
    records = records_of(dataset)
    meta = {}
    if records is not None:
        meta = {
            "exact_ages": [np.nan if r.exact_age is None else r.exact_age for r in records],
            "races": [r.race for r in records],
            "datasets": [r.dataset for r in records],
            "max_ages": [r.age_max for r in records],
        }
    return Predictions(
        np.concatenate(age_probs),
        np.concatenate(gender_probs),
        np.concatenate(age_targets),
        np.concatenate(gender_targets),
        **meta,
    )
