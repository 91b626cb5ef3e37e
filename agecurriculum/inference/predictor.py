"""Predictor: photos in, every face's box, gender and age group out.

For each input (a path or an ``(H, W, 3)`` uint8 RGB array) :class:`Predictor`:

1. decodes it with :func:`~agecurriculum.data.images.load_image` (EXIF rotation, grayscale, transparency; files
   over ``max_bytes`` and paths that are not regular files are refused); a file that cannot be read, an array that
   is not ``(H, W, 3)`` uint8, and an image under :data:`MIN_FACE_PIXELS` a side become that input's ``error``
   string and the run goes on;
2. finds every face with :class:`~agecurriculum.inference.FaceFinder`: dlib's HOG detector (on a copy shrunk to
   ``max_detect_side`` pixels when the photo is larger, which bounds the detector's memory; landmarks and crops
   come from the full-size photo), at ``upsample=0`` or 1 as the photo needs, with dlib's CNN detector
   re-checking the boxes the HOG detector is not sure of (false boxes on face-like patterns are dropped); each
   face is aligned on its five landmarks at the release's ``image_size`` and ``padding``, as training did
   (:class:`~agecurriculum.data.FaceAligner`). With ``aligned=True`` the input is taken as one already aligned face
   crop instead, made square and resized as training did for UTKFace's crops. Photos are decoded and searched in
   ``workers`` threads, or worker processes (``processes=True``), while the network runs, results still in input
   order (:mod:`agecurriculum.inference.workers`);
3. normalises the crops with the release's ``mean``/``std`` and runs them through the network in batches of
   ``batch_size`` faces (faces of several inputs share a batch); with ``flip=True`` (the default) each batch runs with
   its mirror image (``2 * batch_size`` crops) and the two views' probabilities are averaged
   (:func:`~agecurriculum.evaluation.flip.flip_averaged`). With worker processes and ONNX Runtime on the CPU, each
   worker does this step too, on the faces of its photo, with its own one-thread copy of the network
   (:class:`FaceScorer`);
4. scales the probabilities by the release's calibration temperatures, if it has any
   (:attr:`~agecurriculum.inference.ReleaseInfo.temperature`; ``p ** (1 / T)`` renormalised, after the flip
   average). A release without them gives the network's probabilities as they are.

Each input gives one dict, in input order::

    {"path": "a.jpg",                # str(path), or None for an array
     "faces": [{"box": [x0, y0, x1, y1],   # ints, image pixels, x1/y1 exclusive; the whole image with aligned=True
                "score": 1.16,             # HOG detection score (higher is surer); None with aligned=True
                "gender": "female",        # "female" or "male", the likelier one
                "gender_prob": 0.97,       # its probability
                "age_bin": 4,              # index of the likeliest age bin
                "age_range": [24, 34],     # that bin's ages in years, both ends included
                "age_probs": [...],        # probability of every age bin, in bin order
                "age": 29.3,               # expected age in years: sum_k age_probs[k] * rep_ages[k]
                "warning": None}],         # always there: None, or why the prediction is not to be trusted
     "error": None}                  # or why the input could not be used, never empty (then "faces" is [])

A face's ``warning`` is set when its crop is featureless: the standard deviation of the crop's gray levels (ITU-R
601 luma, 0-255) is below :data:`FEATURELESS_STD`, as for a flat colour image given with ``aligned=True``. The
network still answers, confidently even, but the answer says nothing about a face. Real face crops are far above
the threshold (over the UTKFace, FairFace validation, Adience and MORPH-II crops the lowest was 9.0, the 1st
percentile 18).

Faces are ordered by detection score, best first. ``rep_ages`` are the release's representative bin ages (see
:class:`~agecurriculum.inference.ReleaseInfo`); the expected age is a smooth summary of the bin probabilities, and
no better than the bins it comes from. Probabilities are rounded to 6 decimals, the age to 2.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agecurriculum.data.faces import DEFAULT_MAX_DETECT_SIDE, AlignConfig, FaceAligner
from agecurriculum.data.images import DEFAULT_MAX_BYTES
from agecurriculum.data.transforms import normalise_crops
from agecurriculum.devices import device_kind
from agecurriculum.evaluation.calibration import apply_temperature
from agecurriculum.evaluation.flip import flip_averaged
from agecurriculum.inference.backends import Backend, OnnxBackend, TorchBackend
from agecurriculum.inference.defaults import BACKENDS, VERIFY_BELOW
from agecurriculum.inference.export import cached_onnx
from agecurriculum.inference.finder import FaceFinder
from agecurriculum.inference.release import resolve_release
from agecurriculum.inference.verify import FaceVerifier
from agecurriculum.inference.workers import (
    MIN_FACE_PIXELS,
    FaceJob,
    FacePool,
    Found,
    PredictorInput,
    Probabilities,
    default_workers,
)
from agecurriculum.release import GENDER_NAMES, ONNX_FILE, ReleaseInfo

__all__ = [
    "FEATURELESS_STD",
    "MIN_FACE_PIXELS",
    "ONNX_FILE",
    "FaceScorer",
    "Predictor",
    "PredictorInput",
    "default_backend",
    "default_workers",
]

# Gray-level standard deviation (0-255 scale) under which a crop counts as featureless: flat colour is 0, JPEG
# noise on it about 1, the least contrasted real face crop seen 9 (see the module docstring).
FEATURELESS_STD = 2.0
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601 weights, as PIL's RGB-to-L conversion


class FaceScorer:
    """Face crops in, their ``(age_probs, gender_probs)`` out: steps 3 and 4 of the module docstring.

    Normalises the crops with the release's ``mean``/``std``, runs them through ``backend`` (with their mirror
    images, averaged, when ``flip``) and scales the probabilities by the release's temperatures. A
    :class:`Predictor` runs it on batches of faces in its own process, or, with worker processes and an
    :class:`OnnxBackend` on the CPU, in each worker on the faces of one photo (it is picklable then: the backend
    opens its file again in the worker).

    Args:
        backend: runs the network.
        release: the backend's release (mean, std, temperatures).
        flip: test-time flip averaging.
    """

    def __init__(self, backend: Backend, release: ReleaseInfo, flip: bool = True) -> None:
        self.backend = backend
        self.release = release
        self.flip = flip

    def __call__(self, crops: Sequence[np.ndarray]) -> Probabilities:
        """The probabilities of ``(S, S, 3)`` uint8 RGB crops of the release's image size, one row per crop."""
        return self.probabilities(normalise_crops(crops, self.release.mean, self.release.std))

    def probabilities(self, images: np.ndarray) -> Probabilities:
        """The probabilities of a normalised ``(N, 3, S, S)`` batch, flip-averaged and tempered as set."""
        age, gender = flip_averaged(self.backend, images) if self.flip else self.backend(images)
        temperature = self.release.temperature
        # apply_temperature returns T = 1's input untouched: a release without temperatures predicts as before.
        return apply_temperature(age, temperature["age"]), apply_temperature(gender, temperature["gender"])


class Predictor:
    """Detects the faces in photos and predicts each one's gender and age group (see the module docstring).

    Args:
        backend: runs the network (:class:`TorchBackend` or :class:`OnnxBackend`); its release config says how to
            preprocess.
        batch_size: faces per forward pass (in worker processes that run the network: the faces of one photo).
        verify: re-check doubtful HOG boxes with dlib's CNN detector and drop those it does not confirm: True uses
            a :class:`FaceVerifier` with its default settings, or pass your own; False keeps every HOG box.
        upsample: HOG detector upsamplings (see :class:`~agecurriculum.data.AlignConfig`): None (the default)
            chooses per photo (:class:`~agecurriculum.inference.FaceFinder`); 0 finds faces down to about 80 px,
            1 down to about 40 px at about 4x the time.
        verify_below: only boxes scoring below this are re-checked (:data:`~agecurriculum.inference.VERIFY_BELOW`);
            ``math.inf`` re-checks every box.
        verify_lone: also re-check a doubtful box that is alone in its photo (default False: the CNN checks only
            photos where the HOG search found several boxes; see :class:`~agecurriculum.inference.FaceFinder`).
        max_bytes: largest image file read, in bytes (see :func:`~agecurriculum.data.images.load_image`); a
            larger one is that input's error. None for no limit.
        max_detect_side: photos whose longest side exceeds this many pixels are searched for faces on a copy
            shrunk to it (see :class:`~agecurriculum.data.FaceAligner`); None searches every photo at full size,
            which for a 64-megapixel photo takes about 3 GB.
        flip: test-time flip averaging (default on): run every face also mirrored left-right and average the two
            views' probabilities. It doubles the network's work, a small part of a photo's time on CPU (face
            finding dominates: docs/benchmarks.md measures the cost); the output has the same fields either way.
            False runs each face once.
        workers: threads (or processes) that decode photos and find faces at the same time (None:
            :func:`default_workers`, one per CPU core this process may use); 1 does it all in the calling thread.
            Results keep input order.
        processes: find faces in ``workers`` worker processes instead of threads: 1.2-1.5x the photos/s on
            2 cores, after about 0.2 s to start them (on the first call, or :meth:`start_workers`); they
            stay up until :meth:`close`. A script using it needs the ``if __name__ == "__main__":`` guard (see
            :mod:`agecurriculum.inference.workers`, which also says why threads are slower). With an
            :class:`OnnxBackend` on the CPU the workers also run the network, each with a one-thread copy of it
            (docs/benchmarks.md, "The network in the workers"). ``agecurriculum predict`` turns it on from
            :data:`PROCESSES_FROM` inputs on.
    """

    def __init__(
        self,
        backend: Backend,
        batch_size: int = 32,
        verify: bool | FaceVerifier = True,
        upsample: int | None = None,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        max_detect_side: int | None = DEFAULT_MAX_DETECT_SIDE,
        flip: bool = True,
        verify_below: float = VERIFY_BELOW,
        verify_lone: bool = False,
        workers: int | None = None,
        processes: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1 (or None for one per CPU core), got {workers}")
        self.backend = backend
        self.release = ReleaseInfo.from_config(backend.config)
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        align = AlignConfig(size=self.release.image_size, padding=self.release.padding)
        self.finder = FaceFinder(
            align,
            upsample=upsample,
            verify=verify,
            verify_below=verify_below,
            verify_lone=verify_lone,
            max_detect_side=max_detect_side,
        )
        self.aligner = FaceAligner(align)  # only its align_crop_only, for aligned=True (thread-safe: no dlib)
        self._scorer = FaceScorer(backend, self.release, flip)
        self.workers = default_workers() if workers is None else workers
        # Worker processes also run the network on their photo's faces where a copy of it is cheap to make in each
        # (ONNX Runtime on the CPU, one thread per worker): each photo is then one worker's job from file to
        # probabilities, and no process waits on another's queue (docs/benchmarks.md, "The network in the workers").
        in_workers = processes and isinstance(backend, OnnxBackend) and backend.on_cpu
        job = FaceJob(self.finder, self.aligner, max_bytes, network=self._scorer if in_workers else None)
        self._pool = FacePool(job, self.workers, processes)

    @property
    def flip(self) -> bool:
        """Test-time flip averaging (see the constructor); settable."""
        return self._scorer.flip

    @flip.setter
    def flip(self, value: bool) -> None:
        self._scorer.flip = value
        self._pool.close()  # worker processes hold a copy of the scorer: the next call starts them with this one

    @classmethod
    def from_release(
        cls,
        path: str | Path | None = None,
        backend: str = "auto",
        device: str = "cpu",
        batch_size: int = 32,
        **kwargs: Any,
    ) -> Predictor:
        """A predictor for a release.

        Args:
            path: a release folder (see :func:`~agecurriculum.train.save_release`), or with ``backend="onnx"`` an
                ``.onnx`` file from :func:`~agecurriculum.inference.export_onnx`; None: the default model
                (:data:`~agecurriculum.inference.DEFAULT_RELEASE_DIR`).
            backend: ``"torch"`` runs the release's weights; ``"onnx"`` runs ``path`` if it is a file, else
                ``path/model.onnx``, with ONNX Runtime; a release folder without ``model.onnx`` is exported once
                into the cache of :func:`~agecurriculum.inference.export.cached_onnx` (about 10 s, the first
                time only). ``"auto"`` (the default): :func:`default_backend`, ONNX Runtime on a CPU when it is
                installed (it is a dependency; same outputs within float rounding, faster one face at a time),
                else torch.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
            batch_size: faces per forward pass.
            **kwargs: more :class:`Predictor` arguments (``verify``, ``verify_below``, ``verify_lone``, ``upsample``,
                ``max_bytes``, ``max_detect_side``, ``flip``, ``workers``, ``processes``).

        Raises:
            FileNotFoundError: the release (or its ONNX file) is missing, or no default model is installed.
            ValueError: unknown backend, or a broken release.
        """
        path = resolve_release(path)
        if backend == "auto":
            backend = default_backend(device, path)
        if backend == "torch":
            if not path.is_dir():
                raise ValueError(
                    f"{path}: the torch backend needs a release folder (model.safetensors + config.json); "
                    "run an .onnx file with the onnx backend (--backend onnx)"
                )
            return cls(TorchBackend(path, device), batch_size, **kwargs)
        if backend == "onnx":
            onnx_path = path / ONNX_FILE if path.is_dir() else path
            if path.is_dir() and not onnx_path.is_file():
                onnx_path = cached_onnx(path)
            return cls(OnnxBackend(onnx_path, device), batch_size, **kwargs)
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")

    def predict(self, inputs: Sequence[PredictorInput], aligned: bool = False) -> list[dict[str, Any]]:
        """One result dict per input, in order (see the module docstring).

        Args:
            inputs: image paths and/or ``(H, W, 3)`` uint8 RGB arrays.
            aligned: every input is one already aligned face crop: no detection, the box is the whole image.
        """
        return list(self.iter_predict(inputs, aligned))

    def iter_predict(self, inputs: Iterable[PredictorInput], aligned: bool = False) -> Iterator[dict[str, Any]]:
        """Like :meth:`predict`, but yields each result as soon as its batch has run (for long input lists)."""
        pending: list[Found] = []
        waiting = 0  # faces in pending that still need the network (those of worker processes have been through it)
        for found in self._pool.map(inputs, aligned, score=True):
            pending.append(found)
            waiting += 0 if found.probabilities is not None else len(found.crops)
            if waiting >= self.batch_size or waiting == 0:
                yield from self._run(pending)
                pending, waiting = [], 0
        yield from self._run(pending)

    def network_inputs(self, inputs: Iterable[PredictorInput], aligned: bool = False) -> Iterator[np.ndarray]:
        """The network's input for every face found in ``inputs``, in order: ``(3, S, S)`` float32 arrays.

        The faces :meth:`predict` would run, found, aligned and normalised the same way, without running the
        network (e.g. calibration data for :func:`~agecurriculum.inference.quantize_onnx`). Unreadable inputs and
        photos without a face yield nothing.
        """
        for found in self._pool.map(inputs, aligned):
            if found.crops:
                yield from normalise_crops(found.crops, self.release.mean, self.release.std)

    def start_workers(self) -> bool:
        """Starts the face-finding worker processes now (with ``processes=True``), so that the first call does not
        wait for them: e.g. while the photos are still being listed. Returns whether they run (False with
        ``processes=False`` or ``workers=1``, or where they cannot start: the predictor then uses threads)."""
        return self._pool.start()

    def close(self) -> None:
        """Shuts the face-finding worker processes down, if any run; a later call starts them again. A ``with``
        block does this at its end; a predictor that is garbage-collected or still open at exit does it too."""
        self._pool.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, pending: list[Found]) -> Iterator[dict[str, Any]]:
        # The faces the workers did not run through the network go through it here, in batches of batch_size.
        crops = [crop for found in pending if found.probabilities is None for crop in found.crops]
        computed: Iterator[tuple[np.ndarray, np.ndarray]] = iter(())
        if crops:
            batches = [
                self._scorer(crops[start : start + self.batch_size]) for start in range(0, len(crops), self.batch_size)
            ]
            computed = zip(*(np.concatenate(columns) for columns in zip(*batches)))
        for result, found_crops, probabilities in pending:
            faces = computed if probabilities is None else zip(*probabilities)
            for face, crop in zip(result["faces"], found_crops):
                face.update(self._describe(*next(faces)), warning=_featureless_warning(crop))
            yield result

    def _describe(self, age_probs: np.ndarray, gender_probs: np.ndarray) -> dict[str, Any]:
        gender = int(gender_probs.argmax())
        age_bin = int(age_probs.argmax())
        lo, hi = self.release.bins.groups[age_bin]
        return {
            "gender": GENDER_NAMES[gender],
            "gender_prob": round(float(gender_probs[gender]), 6),
            "age_bin": age_bin,
            "age_range": [int(lo), int(hi)],
            "age_probs": [round(float(p), 6) for p in age_probs],
            "age": round(float(age_probs @ self.release.rep_ages), 2),
        }


def default_backend(device: str = "cpu", release: str | Path | None = None) -> str:
    """The backend ``"auto"`` stands for: ``"onnx"`` on a CPU when ONNX Runtime is installed, else ``"torch"``.

    ONNX Runtime runs this network about 2x faster than torch one face at a time on a CPU (docs/benchmarks.md),
    with the same outputs within float rounding. ``release`` given as an ``.onnx`` file always means ``"onnx"``.
    """
    if release is not None and Path(release).is_file():
        return "onnx"
    if device_kind(device)[0] != "cpu" or importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    return "onnx"


def _featureless_warning(crop: np.ndarray) -> str | None:
    """The ``warning`` of a face whose crop is ``crop``: set when the crop is featureless (module docstring)."""
    std = float((crop @ _LUMA).std())
    if std >= FEATURELESS_STD:
        return None
    return f"featureless image (pixel std {std:.1f} < {FEATURELESS_STD}): the prediction is meaningless"
