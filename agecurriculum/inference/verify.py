"""A second opinion on every face the HOG detector finds, from dlib's CNN face detector.

dlib's HOG detector (:class:`~agecurriculum.data.FaceAligner`) is fast but fires on face-like patterns now and then:
in scikit-image's astronaut photo it finds the mission patch on the suit (HOG score 0.12, against 1.16 for the real
face), and no HOG score threshold separates such boxes from real but weak faces (profiles, small or dark faces
often score lower). The MMOD CNN face detector (``mmod_human_face_detector.dat``, shipped by
``face_recognition_models``) is far more precise but about ten times slower on a whole photo on a CPU, so it only
re-checks each HOG box: on a square crop around the box, with some context, scaled so that the box is
:attr:`VerifyConfig.face_size` pixels wide, it must find a face that overlaps the box. The cost is then one small
CNN pass per HOG box, whatever the photo's size.

``benchmarks/face_verification.py`` measures what the check costs in true faces and time (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from agecurriculum.data.faces import landmark_model_path

__all__ = ["FaceVerifier", "VerifyConfig", "cnn_model_path"]


@dataclass(frozen=True)
class VerifyConfig:
    """How a HOG box is re-checked."""

    face_size: int = 80  # the box is scaled to this side in pixels: MMOD finds faces from about 80 px up (at
    # 60 px it misses most real faces), and every extra pixel costs time
    margin: float = 0.25  # context kept around the box on each side, as a fraction of its side
    min_iou: float = 0.3  # the CNN's face must overlap the HOG box at least this much (intersection over union),
    # so that a neighbouring face inside the context does not vouch for a false box
    min_confidence: float = 0.0  # CNN detections below this confidence do not count (0: the model's own threshold)

    def __post_init__(self) -> None:
        if self.face_size < 1 or self.margin < 0 or not 0 <= self.min_iou <= 1:
            raise ValueError(f"VerifyConfig needs face_size >= 1, margin >= 0 and min_iou in [0, 1], got {self}")


def cnn_model_path() -> Path:
    """dlib's MMOD CNN face detector file, shipped in the ``face_recognition_models`` package."""
    path = landmark_model_path().parent / "mmod_human_face_detector.dat"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dlib CNN face detector missing from face_recognition_models")
    return path


class FaceVerifier:
    """Confirms HOG face boxes with dlib's CNN face detector.

    The CNN is loaded on first use and left out when pickled, as :class:`~agecurriculum.data.FaceAligner` does.

    Args:
        config: crop and acceptance settings; defaults to ``VerifyConfig()``.
    """

    def __init__(self, config: VerifyConfig | None = None) -> None:
        self.config = config or VerifyConfig()
        self._cnn = None

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def confidence(self, image: np.ndarray, box: tuple[int, int, int, int]) -> float | None:
        """The CNN's confidence in the face at ``box``, or None when it finds no face overlapping it enough.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            box: ``(x0, y0, x1, y1)`` in image pixels, ends exclusive.
        """
        if self._cnn is None:
            self._cnn = dlib.cnn_face_detection_model_v1(str(cnn_model_path()))
        cfg = self.config
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0, 1)
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, side * (0.5 + cfg.margin)
        h, w = image.shape[:2]
        # Clipped to the image rather than padded: a box at the border keeps all of itself, only less context.
        left, top = max(round(cx - half), 0), max(round(cy - half), 0)
        right, bottom = min(round(cx + half), w), min(round(cy + half), h)
        scale = cfg.face_size / side
        size = (max(round((right - left) * scale), 1), max(round((bottom - top) * scale), 1))
        crop = np.asarray(Image.fromarray(image[top:bottom, left:right]).resize(size, Image.Resampling.BILINEAR))
        target = ((x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale)
        best = None
        for det in self._cnn(np.ascontiguousarray(crop), 0):
            r = det.rect
            found = (r.left(), r.top(), r.right() + 1, r.bottom() + 1)
            if det.confidence >= cfg.min_confidence and _iou(target, found) >= cfg.min_iou:
                best = det.confidence if best is None else max(best, det.confidence)
        return best

    def is_face(self, image: np.ndarray, box: tuple[int, int, int, int]) -> bool:
        """Whether the CNN confirms a face at ``box``; see :meth:`confidence`."""
        return self.confidence(image, box) is not None


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
