"""An on-disk cache of aligned face crops, and the parallel, resumable pass that fills it.

Detection and alignment cost about a tenth of a second per photo; a training run reads every image many times.
So each crop is computed once and stored as a lossless PNG under a key made of the image file's *content* hash and
every setting that changes the crop (alignment config, mode, known box, :data:`CACHE_VERSION`). A renamed or
copied file hits; a changed setting or edited image misses. "No face detected" is stored too, so a rerun detects
nothing at all. Every entry is written to a temporary file and renamed into place, so a killed run leaves only
whole entries and a rerun of :func:`preprocess` continues where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.images import ImageLoadError, load_image, read_image_bytes
from agecurriculum.data.records import FaceRecord
from agecurriculum.fileio import atomic_write

__all__ = [
    "CACHE_VERSION",
    "NO_FACE",
    "Mode",
    "NoFaceError",
    "CropCache",
    "PreprocessResult",
    "preprocess",
    "CachedCrops",
]

CACHE_VERSION = 1  # bump when the alignment code changes what a crop looks like, so old entries miss
NO_FACE = "no face detected"

# "detect": run the detector on every image. "box": find landmarks in the record's known box (detect when it has
# none). "aligned": the images are aligned crops already; only centre-crop and resize them.
Mode = Literal["detect", "box", "aligned"]
MODES = ("detect", "box", "aligned")


class NoFaceError(ValueError):
    """An image in which no face was found (the message names the file)."""


class CropCache:
    """Aligned crops on disk: ``directory/ab/cd/<key>.png``, and ``<key>.noface`` for images without a face.

    The two-level fan-out keeps folders small for datasets of hundreds of thousands of images. Safe to share
    between processes: writers never expose a partial file, and two writers of one key write the same bytes.

    Args:
        directory: where the cache lives; created when missing.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def key(self, path: str | os.PathLike, config: AlignConfig, mode: Mode = "detect", box: tuple | None = None) -> str:
        """The key of the crop of the image file at ``path`` (read and hashed whole)."""
        return self.key_for_bytes(read_image_bytes(path), config, mode, box)

    @staticmethod
    def key_for_bytes(data: bytes, config: AlignConfig, mode: Mode = "detect", box: tuple | None = None) -> str:
        """The key of the crop of an image file whose content is ``data``.

        Only the settings the mode uses are part of the key: an ``"aligned"`` crop depends on ``config.size`` alone,
        and the box only on ``"box"`` mode.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        params = {"version": CACHE_VERSION, "mode": mode}
        params.update({"size": config.size} if mode == "aligned" else asdict(config))
        if mode == "box" and box is not None:
            params["box"] = [int(v) for v in box]
        digest = hashlib.blake2b(data, digest_size=20)
        digest.update(json.dumps(params, sort_keys=True).encode())
        return digest.hexdigest()

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / key[:2] / key[2:4] / f"{key}{suffix}"

    def get(self, key: str) -> np.ndarray | None:
        """The stored crop, or None when there is none (a miss, a "no face" entry, or an unreadable entry)."""
        try:
            with Image.open(self._path(key, ".png")) as img:
                return np.array(img.convert("RGB"))
        except OSError:  # missing, or cut short by a crash (writes are not fsynced): a miss, rewritten on demand
            return None

    def has_crop(self, key: str) -> bool:
        return self._path(key, ".png").is_file()

    def failure(self, key: str) -> str | None:
        """The stored reason why this image has no crop (e.g. :data:`NO_FACE`), or None."""
        try:
            return self._path(key, ".noface").read_text() or NO_FACE
        except FileNotFoundError:
            return None

    def put(self, key: str, crop: np.ndarray) -> None:
        """Store a ``(H, W, 3)`` uint8 crop as PNG, atomically."""
        buf = io.BytesIO()
        Image.fromarray(np.asarray(crop, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)  # fast, lossless
        atomic_write(self._path(key, ".png"), buf.getvalue(), durable=False)  # rebuildable: skip fsync cost

    def put_failure(self, key: str, reason: str = NO_FACE) -> None:
        """Remember that this image has no crop, so later runs skip it."""
        atomic_write(self._path(key, ".noface"), reason.encode(), durable=False)

    def __contains__(self, key: str) -> bool:
        return self.has_crop(key) or self._path(key, ".noface").is_file()


def _crop_of(
    path: Path, box: tuple | None, aligner: FaceAligner, cache: CropCache, mode: Mode, want_crop: bool
) -> tuple[np.ndarray | None, str | None, bool]:
    """``(crop or None, failure reason or None, was it cached)`` for one image, computing and storing on a miss.

    Raises ImageLoadError for unreadable images (not cached: failing to decode is fast, and a fixed file should
    be picked up by the next run).
    """
    box = box if mode == "box" else None
    data = read_image_bytes(path)
    key = cache.key_for_bytes(data, aligner.config, mode, box)
    if (reason := cache.failure(key)) is not None:
        return None, reason, True
    if want_crop:
        if (crop := cache.get(key)) is not None:
            return crop, None, True
    elif cache.has_crop(key):
        return None, None, True
    image = load_image(data, name=str(path))
    if mode == "aligned":
        crop = aligner.align_crop_only(image)
    else:
        face = aligner.align(image, box=box)
        if face is None:
            cache.put_failure(key, NO_FACE)
            return None, NO_FACE, False
        crop = face.crop
    cache.put(key, crop)
    return crop, None, False


@dataclass
class PreprocessResult:
    """What :func:`preprocess` did.

    Attributes:
        succeeded: the records that have a crop in the cache, in input order.
        failed: ``(path, reason)`` of the others, in input order.
        cached: how many records were answered from the cache (crop or stored "no face") without any work.
    """

    succeeded: list[FaceRecord] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    cached: int = 0

    @property
    def failure_counts(self) -> dict[str, int]:
        """Number of failed records per reason, e.g. ``{"no face detected": 12, "truncated file": 1}``."""
        return dict(Counter(reason for _, reason in self.failed))


class _Task:
    """One record's work, callable in this process or (as the pool's global) in a worker."""

    def __init__(self, aligner: FaceAligner, cache: CropCache, mode: Mode) -> None:
        self.aligner, self.cache, self.mode = aligner, cache, mode

    def __call__(self, item: tuple[int, Path, tuple | None]) -> tuple[int, str | None, bool]:
        index, path, box = item
        try:
            _, reason, cached = _crop_of(path, box, self.aligner, self.cache, self.mode, want_crop=False)
        except ImageLoadError as e:
            return index, e.reason, False
        return index, reason, cached


_worker_task: _Task | None = None


def _init_worker(task: _Task) -> None:
    global _worker_task
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _worker_task = task


def _run_in_worker(item: tuple[int, Path, tuple | None]) -> tuple[int, str | None, bool]:
    return _worker_task(item)


def preprocess(
    records: Sequence[FaceRecord],
    aligner: FaceAligner,
    cache: CropCache,
    mode: Mode = "detect",
    workers: int = 0,
    chunksize: int = 8,
    progress: bool = True,
) -> PreprocessResult:
    """Fill ``cache`` with the aligned crop of every record, skipping those already there.

    Safe to interrupt (Ctrl-C, a kill): every entry written so far stays, and a rerun does only the rest. The
    interruption itself propagates (``KeyboardInterrupt``) after the worker pool is stopped.

    Args:
        records: the images to crop; ``record.box`` is used in ``"box"`` mode.
        aligner: detection and alignment settings (sent to each worker process).
        cache: where crops go.
        mode: ``"detect"``, ``"box"`` or ``"aligned"`` (see :data:`Mode`).
        workers: processes to run; 0 works in this process (no pool).
        chunksize: records per message to a worker; larger lowers overhead, smaller balances the load.
        progress: show a tqdm progress bar.

    Returns:
        Which records succeeded, which failed and why (unreadable images give :class:`ImageLoadError`'s reason,
        images without a face :data:`NO_FACE`), and how many were cached.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    items = [(i, r.path, r.box) for i, r in enumerate(records)]
    task = _Task(aligner, cache, mode)
    reasons: dict[int, str | None] = {}
    cached = 0
    with tqdm(total=len(items), disable=not progress, desc="aligning faces", unit="img") as bar:
        if workers == 0:
            results = map(task, items)
            pool = None
        else:
            pool = multiprocessing.Pool(workers, initializer=_init_worker, initargs=(task,))
            results = pool.imap_unordered(_run_in_worker, items, chunksize=chunksize)
        try:
            for index, reason, was_cached in results:
                reasons[index] = reason
                cached += was_cached
                bar.update()
        finally:
            if pool is not None:
                pool.terminate()  # on success the work is done; on an interruption, stop at once
                pool.join()
    result = PreprocessResult(cached=cached)
    for i, record in enumerate(records):
        if reasons[i] is None:
            result.succeeded.append(record)
        else:
            result.failed.append((record.path, reasons[i]))
    return result


class CachedCrops:
    """``record -> aligned crop``, from the cache, computing and storing the crop on a miss.

    Meant as the image loader of a training dataset after :func:`preprocess`; picklable, so it works in
    ``DataLoader`` workers.

    Args:
        cache: the crop cache.
        aligner: settings used for the key, and for computing misses.
        mode: as in :func:`preprocess`.
    """

    def __init__(self, cache: CropCache, aligner: FaceAligner, mode: Mode = "detect") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.cache, self.aligner, self.mode = cache, aligner, mode

    def __call__(self, record: FaceRecord) -> np.ndarray:
        """The ``(size, size, 3)`` uint8 crop of ``record``.

        Raises:
            ImageLoadError: the image is unreadable.
            NoFaceError: no face was found in it.
        """
        crop, reason, _ = _crop_of(record.path, record.box, self.aligner, self.cache, self.mode, want_crop=True)
        if crop is None:
            raise NoFaceError(f"{record.path}: {reason}")
        return crop
