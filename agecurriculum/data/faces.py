"""Face detection, 5-point landmarks and alignment with dlib: the crop every model input starts from.

A photo goes through dlib's HOG frontal-face detector, its 5-point landmark model (both eyes' corners and the base
of the nose, from the ``face_recognition_models`` package), and ``dlib.get_face_chip``, which rotates and scales the
face so the eyes land on the same pixels in every crop. Datasets that ship aligned crops already (UTKFace,
FairFace, the Adience ``*_aligned_face`` files) skip all of that: :meth:`FaceAligner.align_crop_only` only makes
them square and resizes them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

__all__ = ["AlignConfig", "DetectedFace", "FaceAligner", "landmark_model_path"]


@dataclass(frozen=True)
class AlignConfig:
    """How faces are found and cropped. Every field is part of the crop cache's key."""

    size: int = 128  # side of the square output crop, in pixels
    padding: float = 0.25  # dlib face-chip padding: border added on each side, as a fraction of the face's size
    # (0 = just the eyes-to-mouth region, 0.25 = dlib's default and FairFace's margin, 1 = three times the face)
    upsample: int = 1  # HOG detector upsamplings: 0 finds faces down to ~80 px, each one halves that (and ~4x time)
    min_score: float = 0.0  # HOG detection score threshold passed to dlib; negative keeps weaker (more false) faces
    min_face_size: int = 24  # drop detections whose box is narrower or shorter than this, in pixels

    def __post_init__(self) -> None:
        if self.size < 1 or self.padding < 0 or self.upsample < 0 or self.min_face_size < 0:
            raise ValueError(f"AlignConfig needs size >= 1 and padding, upsample, min_face_size >= 0, got {self}")


@dataclass
class DetectedFace:
    """One face in an image.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in image pixels, ends exclusive (numpy slicing), clipped to the image.
        score: the HOG detector's confidence (higher is surer); NaN when the box was given, not detected.
        landmarks: ``(5, 2)`` float ``(x, y)`` points in dlib's order: outer and inner corner of the eye on the
            image's right, outer and inner corner of the other eye, base of the nose.
        crop: the aligned face, ``(size, size, 3)`` uint8 RGB.
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray
    crop: np.ndarray

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def landmark_model_path() -> Path:
    """dlib's 5-point landmark model file, shipped in the ``face_recognition_models`` package.

    Found without importing the package, whose ``__init__`` needs ``pkg_resources`` (gone from recent setuptools).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package face_recognition_models is not installed: pip install face_recognition_models")
    path = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_5_face_landmarks.dat"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dlib 5-point landmark model missing from face_recognition_models")
    return path


class FaceAligner:
    """Detects, landmarks and aligns faces in ``(H, W, 3)`` uint8 RGB images.

    The dlib detector and landmark model are built on first use in each process and left out when the aligner is
    pickled, so one aligner can be handed to ``multiprocessing`` or ``DataLoader`` workers; each worker then loads
    its own (about 0.1 s). dlib's detector is not thread-safe: give each thread its own aligner.

    Args:
        config: detection and crop settings; defaults to ``AlignConfig()``.
    """

    def __init__(self, config: AlignConfig | None = None) -> None:
        self.config = config or AlignConfig()
        self._detector = None
        self._predictor = None

    def __getstate__(self) -> dict:
        return {"config": self.config}  # dlib objects cannot be pickled; rebuilt lazily on the other side

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def _models(self) -> tuple:
        if self._detector is None:
            self._detector = dlib.get_frontal_face_detector()
            self._predictor = dlib.shape_predictor(str(landmark_model_path()))
        return self._detector, self._predictor

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """All faces the detector finds, aligned, best score first (ties: larger box first)."""
        image = _check_image(image)
        detector, _ = self._models()
        rects, scores, _ = detector.run(image, self.config.upsample, self.config.min_score)
        faces = [self._face(image, rect, score) for rect, score in zip(rects, scores)]
        faces = [f for f in faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= self.config.min_face_size]
        return sorted(faces, key=lambda f: (-f.score, -f.area))

    def align(self, image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> DetectedFace | None:
        """The best face of ``image``, or None when there is none.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            box: a known face box ``(x0, y0, x1, y1)`` (ends exclusive), e.g. from the dataset's labels: the
                landmarks are then found in it and the detector is not run.
        """
        image = _check_image(image)
        if box is None:
            faces = self.detect(image)
            return faces[0] if faces else None
        x0, y0, x1, y1 = (int(v) for v in box)
        h, w = image.shape[:2]
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"box {tuple(box)} is empty or outside the {w}x{h} image")
        return self._face(image, dlib.rectangle(x0, y0, x1 - 1, y1 - 1), float("nan"))

    def align_crop_only(self, image: np.ndarray) -> np.ndarray:
        """An already aligned face crop, centre-cropped to a square and resized to ``config.size``.

        For datasets that ship aligned faces: running the detector again would only lose some of them.
        """
        image = _check_image(image)
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = Image.fromarray(image[top : top + side, left : left + side])
        return np.array(square.resize((self.config.size,) * 2, Image.Resampling.BICUBIC))  # PIL antialiases downscaling

    def _face(self, image: np.ndarray, rect: dlib.rectangle, score: float) -> DetectedFace:
        _, predictor = self._models()
        shape = predictor(image, rect)
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        crop = dlib.get_face_chip(image, shape, size=self.config.size, padding=self.config.padding)
        h, w = image.shape[:2]
        box = (max(rect.left(), 0), max(rect.top(), 0), min(rect.right() + 1, w), min(rect.bottom() + 1, h))
        return DetectedFace(box=box, score=float(score), landmarks=landmarks, crop=np.ascontiguousarray(crop))


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} array of shape {image.shape}")
    return np.ascontiguousarray(image)  # dlib needs contiguous memory
