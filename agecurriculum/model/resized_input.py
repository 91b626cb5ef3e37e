"""A model that reads its own input size: batches made for another size are resized before they reach it.

Our crops of one face at two sizes show the same aligned region (the crop box depends on the landmarks and the
padding, not on the output size), so resizing a batch of 160-pixel crops to 128 gives what a 128-pixel model was
trained on, up to interpolation. This lets a teacher trained at one size teach a student at another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResizedInput"]


class ResizedInput(nn.Module):
    """Resizes ``(N, C, H, W)`` batches to ``size`` x ``size`` (bilinear, antialiased) and runs ``model`` on them.

    Args:
        model: the wrapped network; its outputs are returned unchanged.
        size: the square input side ``model`` expects, in pixels.
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        self.model, self.size = model, int(size)

    def forward(self, images: torch.Tensor):
        if images.shape[-2:] != (self.size, self.size):
            # Antialiasing matters when shrinking: without it, fine texture (wrinkles) aliases into noise.
            images = F.interpolate(
                images, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )
        return self.model(images)
