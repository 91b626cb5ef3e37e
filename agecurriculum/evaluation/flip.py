"""Test-time flip averaging: a face and its mirror image, one answer (for torch tensors and numpy arrays alike).

Its own module, without torch: the :class:`~agecurriculum.inference.Predictor` runs it on numpy batches from ONNX
Runtime, and evaluation (:func:`~agecurriculum.evaluation.predict.predict_dataset`) on torch tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["flip_averaged"]

Batch = TypeVar("Batch", np.ndarray, "torch.Tensor")  # a batch of images, or of probabilities, of either library


def flip_averaged(run: Callable[[Batch], Sequence[Batch]], images: Batch) -> tuple[Batch, ...]:
    """``run``'s probabilities for ``images``, averaged with its probabilities for their mirror images.

    Test-time flip averaging: a face and its left-right mirror are the same person at the same age, so a model
    whose answer changes with the mirror is unsure, and the average of the two answers is the better estimate.
    The two views run as one batch of ``2N`` (one call instead of two: the network's cost per image falls with
    the batch size). *Probabilities* are averaged, not logits: their mean is the mixture of the two answers, so
    where the views disagree the disagreement shows as uncertainty; averaging logits gives the normalised
    geometric mean instead, in which the more confident view's larger logits dominate. It also works where only
    probabilities exist (the ONNX backend's outputs).

    Args:
        run: maps an ``(M, C, H, W)`` batch to per-class probabilities, e.g. ``(age_probs, gender_probs)``, each
            ``(M, K)``; a torch function for a tensor batch, a numpy one for an array batch.
        images: ``(N, C, H, W)`` torch tensor or numpy array; mirrored on its last (width) axis.

    Returns:
        One ``(N, K)`` average per output of ``run``, of ``run``'s type.
    """
    n = len(images)
    if isinstance(images, np.ndarray):  # concatenate copies the negative-stride mirror view into one batch
        both = np.concatenate([images, images[..., ::-1]])
    else:
        import torch  # here: the numpy path (ONNX Runtime's inference) runs without torch

        both = torch.cat([images, images.flip(-1)])
    return tuple((out[:n] + out[n:]) / 2 for out in run(both))
