"""Face detection, 5-point landmarks and alignment with dlib: the crop every model input starts from.

A photo goes through dlib's HOG frontal-face detector, its 5-point landmark model (both eyes' corners and the base
of the nose, from the ``face_recognition_models`` package), and ``dlib.get_face_chip``, which rotates and scales the
face so the eyes land on the same pixels in every crop. Datasets that ship aligned crops already (UTKFace,
FairFace, the Adience ``*_aligned_face`` files) skip all of that: :meth:`FaceAligner.align_crop_only` only makes
them square and resizes them.

Very large photos are costly to search: dlib's HOG detector at ``upsample=1`` took 3 GB on top of the photo for a
64-megapixel one. With ``max_detect_side`` set, :class:`FaceAligner` searches a shrunk copy instead and maps the
boxes back; the landmarks and the crop still come from the full-size photo, so crops keep their detail.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

__all__ = [
    "AlignConfig",
    "DEFAULT_MAX_DETECT_SIDE",
    "DetectedFace",
    "FaceAligner",
    "check_image",
    "landmark_model_path",
]

# A longest side to detect at that bounds detection to about 0.2 GB at upsample 1 while keeping every face of
# ordinary photos (up to 2000 px: untouched); in a 4000 px phone photo faces from about 80 px are still found.
DEFAULT_MAX_DETECT_SIDE = 2000


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
        max_detect_side: search for faces on a copy shrunk so that its longest side is at most this many pixels
            (e.g. :data:`DEFAULT_MAX_DETECT_SIDE`), then scale the boxes back: bounds the detector's memory and
            time on very large photos, at the cost of their smallest faces (the detector's ~40 px minimum at
            ``upsample=1`` grows by the shrink factor). Landmarks and crops still come from the full-size image.
            None (the default) detects at full size. Photos no larger than this are not touched, which is why
            the setting is not part of :class:`AlignConfig` (the crop cache's key): it changes no crop of them.
    """

    def __init__(self, config: AlignConfig | None = None, max_detect_side: int | None = None) -> None:
        if max_detect_side is not None and max_detect_side < 1:
            raise ValueError(f"max_detect_side must be at least 1 (or None), got {max_detect_side}")
        self.config = config or AlignConfig()
        self.max_detect_side = max_detect_side
        self._detector = None
        self._predictor = None

    def __getstate__(self) -> dict:
        # dlib objects cannot be pickled: left out, and rebuilt on first use on the other side
        return {**self.__dict__, "_detector": None, "_predictor": None}

    def _models(self) -> tuple:
        if self._detector is None:
            self._detector = dlib.get_frontal_face_detector()
            self._predictor = dlib.shape_predictor(str(landmark_model_path()))
        return self._detector, self._predictor

    def detect(self, image: np.ndarray, upsample: int | None = None, scale: float = 1.0) -> list[DetectedFace]:
        """All faces the detector finds, aligned, best score first (ties: larger box first).

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            upsample: HOG upsamplings for this call; None: ``config.upsample``.
            scale: search a copy of the photo resized by this factor (boxes, landmarks and crops are still the
                photo's own); e.g. 1.1 searches the face sizes halfway between those of ``scale=1``.
        """
        image = check_image(image)
        if upsample is not None and upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        detector, _ = self._models()
        searched = self._detection_copy(image, scale)
        upsample = self.config.upsample if upsample is None else upsample
        rects, scores, _ = detector.run(searched, upsample, self.config.min_score)
        if searched is not image:
            rects = [
                _scale_rect(r, image.shape[1] / searched.shape[1], image.shape[0] / searched.shape[0]) for r in rects
            ]
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
        image = check_image(image)
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
        image = check_image(image)
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = Image.fromarray(image[top : top + side, left : left + side])
        return np.array(square.resize((self.config.size,) * 2, Image.Resampling.BICUBIC))  # PIL antialiases downscaling

    def _detection_copy(self, image: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """``image`` resized by ``scale``, as a copy shrunk to ``max_detect_side`` when it is larger."""
        h, w = image.shape[:2]
        if self.max_detect_side is not None and max(h, w) * scale > self.max_detect_side:
            scale = self.max_detect_side / max(h, w)
        if scale == 1.0:
            return image
        size = (max(round(w * scale), 1), max(round(h * scale), 1))
        # PIL widens the filter when shrinking (antialiasing), so small details do not turn into HOG noise.
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))

    def _face(self, image: np.ndarray, rect: dlib.rectangle, score: float) -> DetectedFace:
        _, predictor = self._models()
        shape = predictor(image, rect)
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        crop = dlib.get_face_chip(image, shape, size=self.config.size, padding=self.config.padding)
        h, w = image.shape[:2]
        box = (max(rect.left(), 0), max(rect.top(), 0), min(rect.right() + 1, w), min(rect.bottom() + 1, h))
        return DetectedFace(box=box, score=float(score), landmarks=landmarks, crop=np.ascontiguousarray(crop))


def _scale_rect(rect: dlib.rectangle, sx: float, sy: float) -> dlib.rectangle:
    """``rect`` scaled by ``sx`` and ``sy``; its ends are inclusive (dlib's way), so the exclusive ones are scaled."""
    left, top = round(rect.left() * sx), round(rect.top() * sy)
    right, bottom = round((rect.right() + 1) * sx), round((rect.bottom() + 1) * sy)
    return dlib.rectangle(left, top, max(right, left + 1) - 1, max(bottom, top + 1) - 1)


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as C-contiguous memory, which dlib needs, after checking it is ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: any other array, naming its dtype and shape.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} array of shape {image.shape}")
    return np.ascontiguousarray(image)
