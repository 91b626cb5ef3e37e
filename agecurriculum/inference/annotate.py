"""Human-readable predictions: a one-line label per face, and a copy of the photo with boxes and labels drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw_faces", "face_label"]

_COLOURS = {"female": (230, 60, 140), "male": (40, 120, 230)}


def face_label(face: Mapping[str, Any]) -> str:
    """``"female 0.97, 24-34 (29 y)"``: gender and its probability, likeliest age bin, expected age."""
    lo, hi = face["age_range"]
    return f"{face['gender']} {face['gender_prob']:.2f}, {lo}-{hi} ({face['age']:.0f} y)"


def draw_faces(image: np.ndarray, faces: Sequence[Mapping[str, Any]]) -> Image.Image:
    """A copy of ``image`` with every face's box and :func:`face_label` drawn on it.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, the image the boxes refer to.
        faces: the ``"faces"`` of a :class:`~agecurriculum.inference.Predictor` result.
    """
    out = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 250))  # lines stay visible on large photos
    font = ImageFont.load_default(size=max(12, round(min(out.size) / 40)))
    for face in faces:
        x0, y0, x1, y1 = face["box"]
        colour = _COLOURS.get(face["gender"], (255, 200, 0))
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=width)
        text = face_label(face)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 6, bottom - top + 6
        # Above the box when there is room, else inside its top edge.
        ty = y0 - th if y0 - th >= 0 else y0
        tx = min(max(x0, 0), max(out.width - tw, 0))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=colour)
        draw.text((tx + 3 - left, ty + 3 - top), text, fill=(255, 255, 255), font=font)
    return out
