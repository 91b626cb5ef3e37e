"""Image transforms: ``(H, W, 3)`` uint8 RGB face crops -> normalised ``(3, H, W)`` float tensors, and the
augmentation that makes the extra copies of rare age bins (:mod:`agecurriculum.data.balance`).

``mean``/``std`` are the backbone's (``BackboneSpec.mean``/``std`` in :mod:`agecurriculum.model.backbones`), so the
input statistics match what its pretrained weights saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torchvision.transforms import v2

# torch and torchvision are imported by the functions that build transforms, not here: normalise_crops is what
# inference needs, and ONNX Runtime's inference runs without torch (importing both costs about 3 s).

__all__ = ["train_transform", "eval_transform", "normalise_crops", "augment_transform"]

Size = int | tuple[int, int]


def _size(size: Size) -> list[int]:
    hw = [size, size] if isinstance(size, int) else list(size)
    if len(hw) != 2 or any(not isinstance(s, int) or s <= 0 for s in hw):
        raise ValueError(f"size must be a positive int or an (height, width) pair, got {size!r}")
    return hw


def _to_normalised(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    import torch
    from torchvision.transforms import v2

    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)), v2.ToPureTensor()]


def train_transform(size: Size, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Training transform: resize, random horizontal flip, a small random affine, light colour jitter, normalise.

    The affine (rotation up to 10 degrees, shift up to 5%, scale 0.9-1.1) imitates the residual misalignment of
    detected faces and keeps the network from memorising exact pixel positions (without it, fine-tuning on UTKFace
    overfits after 3 epochs). The jitter is light because colour carries little age or gender information but
    strong shifts would move images away from the pretrained statistics. Flipping is safe: faces are near-symmetric
    and labels don't change.

    Args:
        size: output ``(height, width)``, or one int for a square.
        mean: per-channel mean of the backbone's [0, 1] RGB input.
        std: per-channel std of the backbone's input.
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToImage(),  # (H, W, 3) ndarray or PIL -> (3, H, W) uint8 image tensor
            v2.Resize(_size(size), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
            *_to_normalised(mean, std),
        ]
    )


def eval_transform(size: Size, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Evaluation transform: resize and normalise only, so results are deterministic. Arguments as in
    :func:`train_transform`."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.Resize(_size(size), antialias=True), *_to_normalised(mean, std)])


def normalise_crops(crops: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """:func:`eval_transform` for a batch of crops that already have the network's size, in numpy.

    What the :class:`~agecurriculum.inference.Predictor` runs on every face: the same arithmetic as
    ``eval_transform`` (scale to [0, 1], subtract ``mean``, divide by ``std``; equal to within float32 rounding)
    at a fraction of its per-image cost, which at inference time is comparable to the network's own.

    Args:
        crops: ``(S, S, 3)`` uint8 RGB arrays, all of one size.
        mean: per-channel mean of the backbone's [0, 1] RGB input.
        std: per-channel std of the backbone's input.

    Returns:
        ``(N, 3, S, S)`` float32, C-contiguous.

    Raises:
        ValueError: no crops, or crops that are not uint8 RGB of one size.
    """
    if not crops:
        raise ValueError("normalise_crops needs at least one crop")
    shapes = {(c.shape, c.dtype) for c in crops}
    shape, dtype = next(iter(shapes))
    if len(shapes) > 1 or len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
        raise ValueError(f"expected uint8 (S, S, 3) crops of one size, got {sorted(str(s) for s in shapes)}")
    # Channels first while still uint8: the layout change then moves a quarter of the bytes it would in float32
    # (half the function's time at 160 px).
    batch = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32, order="C")
    batch /= 255.0
    batch -= np.asarray(mean, np.float32).reshape(3, 1, 1)
    batch /= np.asarray(std, np.float32).reshape(3, 1, 1)
    return batch


def augment_transform(
    degrees: float = 15.0, shear: float = 10.0, distortion: float = 0.2, elastic_alpha: float = 30.0
) -> v2.Compose:
    """The paper's augmentation for copies of under-represented age bins: rotation, skew, distortion.

    Works on the ``(3, H, W)`` tensors a dataset returns (normalised or not); every copy is rotated and sheared,
    half get a perspective warp and half an elastic distortion, so copies of one image differ from each other.
    The elastic step blurs its displacement field with a 41-pixel kernel, so images must be at least 21 pixels
    high and wide (face crops are far larger).

    Args:
        degrees: largest rotation, either way.
        shear: largest shear angle, either way, along x and y.
        distortion: ``RandomPerspective`` distortion scale in [0, 1].
        elastic_alpha: ``ElasticTransform`` displacement strength, in pixels.
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomRotation(degrees),
            v2.RandomAffine(degrees=0, shear=(-shear, shear, -shear, shear)),
            v2.RandomPerspective(distortion_scale=distortion, p=0.5),
            v2.RandomApply([v2.ElasticTransform(alpha=elastic_alpha, sigma=5.0)], p=0.5),
        ]
    )
