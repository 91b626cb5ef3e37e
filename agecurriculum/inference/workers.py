"""Finding the faces of many photos at once: in threads, or in worker processes, results in input order.

:class:`FaceJob` is one input's work before the network: decode the photo, find and align its faces (or take it as
an aligned crop), and, given a ``network``, run them through it too (:class:`Found` holds what it gives).
:class:`FacePool` runs it over many inputs, ``workers`` at a time:

* in **threads** (the default): nothing to start, right for a few photos and for a server's small batches. dlib
  holds Python's GIL for part of its work (landmarks, face chips, converting the image for its HOG search), so two
  threads find faces only about 1.5x as fast as one, and the network's thread waits on them too;
* in **worker processes** (``processes=True``): each finds faces with its own interpreter, so the search scales
  with the cores; on a 2-core CPU, 200 FairFace photos ran 1.2-1.5x as fast as with threads, with the network
  running beside them in the calling process (docs/benchmarks.md, "Face finding in worker processes"). Starting
  them takes about 0.2 s (more when the parent's main module imports much: each worker imports it), so they pay off
  from a few dozen photos on; they stay up for the pool's life and are shut down by :meth:`FacePool.close` (or when
  the pool is garbage-collected, or at exit).

Worker processes start with multiprocessing's ``forkserver`` method where the platform has it (Linux, macOS), else
``spawn``, never ``fork``: the parent runs ONNX Runtime's or torch's threads, and forking a process with threads
can deadlock the child. Like every such pool, each worker imports the parent's main module (as ``__mp_main__``),
so a script that uses ``processes=True`` needs the usual ``if __name__ == "__main__":`` guard. A worker that dies
(killed for memory, or a crash inside dlib) costs no input: the inputs in flight are run again one at a time in a
fresh pool, and only one on which a worker dies again gets an error; a pool that cannot start at all falls back to
threads with a warning.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple, Union

import numpy as np

from agecurriculum.data.faces import FaceAligner, check_image
from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.errors import describe_error
from agecurriculum.inference.finder import FaceFinder
from agecurriculum.inference.results import failed_result

__all__ = ["MIN_FACE_PIXELS", "FaceJob", "FacePool", "Found", "default_workers"]

# Shortest side an input may have, in pixels: below it a crop holds too little of a face to mean anything (dlib's
# landmarks need a few pixels per eye), and with aligned=True a 1x1 image would otherwise get a confident answer.
MIN_FACE_PIXELS = 16

PredictorInput = Union[str, os.PathLike, np.ndarray]
Probabilities = tuple[np.ndarray, np.ndarray]  # (age_probs (N, K), gender_probs (N, 2)) of N faces
Network = Callable[[list[np.ndarray]], Probabilities]  # face crops -> their probabilities


_How = tuple[bool, bool]  # a map call's (aligned, score), handed on to the job of each input


class Found(NamedTuple):
    """What :class:`FaceJob` gives for one input."""

    result: dict[str, Any]  # the input's result dict: path, faces (boxes and scores, no predictions yet), error
    crops: list[np.ndarray]  # the aligned crop of every face, in the order of result["faces"]
    probabilities: Probabilities | None = None  # the network's, when the job ran it (FaceJob's network)


def default_workers() -> int:
    """One face-finding worker per CPU core this process may use (its affinity mask where the OS has one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(cores or 1, 1)


class FaceJob:
    """One input's work before the network: decode it, then find and align its faces.

    Picklable (dlib's models are built again in each process), so a :class:`FacePool` can send it to worker
    processes once and then only the inputs.

    Args:
        finder: finds and aligns the faces of a photo.
        aligner: its :meth:`~agecurriculum.data.FaceAligner.align_crop_only` makes the crop of an ``aligned`` input.
        max_bytes: largest image file read (see :func:`~agecurriculum.data.images.load_image`); None: no limit.
        network: crops -> probabilities, run on the faces of each input when asked (``score``): in a worker
            process, so that the network's work spreads over the workers too; picklable, like the rest of the job.
    """

    def __init__(
        self, finder: FaceFinder, aligner: FaceAligner, max_bytes: int | None, network: Network | None = None
    ) -> None:
        self.finder = finder
        self.aligner = aligner
        self.max_bytes = max_bytes
        self.network = network

    def __call__(self, index: int, item: PredictorInput, aligned: bool, score: bool = False) -> Found:
        """The result dict of input number ``index`` (``path``, ``faces`` with boxes and scores, ``error``) and its
        crops, and with ``score`` (and a ``network``) the faces' probabilities; an input that cannot be used gets its
        ``error`` and no faces, never an exception."""
        is_array = isinstance(item, np.ndarray)
        result: dict[str, Any] = {"path": _path(item), "faces": [], "error": None}
        try:
            image = check_image(item) if is_array else load_image(item, max_bytes=self.max_bytes)
            h, w = image.shape[:2]
            if min(h, w) < MIN_FACE_PIXELS:
                raise ValueError(f"image too small ({w}x{h}; at least {MIN_FACE_PIXELS} px a side)")
            if aligned:
                crops = [self.aligner.align_crop_only(image)]
                result["faces"] = [{"box": [0, 0, int(w), int(h)], "score": None}]
            else:
                faces = self.finder.find(image)
                crops = [f.crop for f in faces]
                result["faces"] = [{"box": [int(v) for v in f.box], "score": _number(f.score)} for f in faces]
        except (ValueError, OSError, RuntimeError, MemoryError) as e:
            # A file's ImageLoadError names it already; other errors get its path, or an array its place in the input.
            result["error"] = str(e) if isinstance(e, ImageLoadError) else f"{_label(index, item)}: {describe_error(e)}"
            result["faces"], crops = [], []
        if score and self.network is not None and crops:
            return Found(result, crops, self.network(crops))
        return Found(result, crops)


class FacePool:
    """Runs a :class:`FaceJob` over many inputs, ``workers`` at a time, and yields the results in input order.

    At most ``4 * workers`` inputs are in flight (sent and not yet collected, :attr:`in_flight`), so a long (or
    endless) input iterable is read as it goes; 4 rather than 2 gives a worker the next input while the one at the
    head of the line is still running elsewhere (docs/benchmarks.md, "The network in the workers": no loss measured,
    gains in some runs). Inputs given as arrays travel to the workers whole, so a window of them is held twice.

    Args:
        job: the work of one input.
        workers: inputs handled at the same time; 1 does everything in the calling thread.
        processes: run them in worker processes instead of threads (see the module docstring).
    """

    def __init__(self, job: FaceJob, workers: int, processes: bool = False) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.job = job
        self.workers = workers
        self.processes = processes
        self.in_flight = 4 * workers  # inputs handed out and not yet collected, at most (see above)
        self._processes: ProcessPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None

    def map(self, inputs: Iterable[PredictorInput], aligned: bool = False, score: bool = False) -> Iterator[Found]:
        """``job(index, item, aligned, score)`` of every input, in input order."""
        items, how = enumerate(inputs), (aligned, score)
        if self.workers == 1:
            yield from (self.job(index, item, *how) for index, item in items)
            return
        if self.processes and self.start():
            yield from self._map_processes(items, how)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="agecurriculum-faces") as pool:
            yield from _in_order(pool, self.job, items, how, self.in_flight)

    def start(self) -> bool:
        """Starts the worker processes now (``processes=True``; otherwise nothing to start), so that the first
        :meth:`map` does not wait for them. Returns whether they run: False when they cannot be started here (the
        pool then works in threads, with a warning)."""
        if not self.processes or self.workers == 1:
            return False
        if self._processes is not None:
            return True
        pool = None
        try:
            pool = ProcessPoolExecutor(self.workers, mp_context=_context(), initializer=_set_job, initargs=(self.job,))
            for started in [pool.submit(_ready) for _ in range(self.workers)]:
                started.result()  # the workers up and their imports done before the first input is sent
        except (OSError, BrokenProcessPool, RuntimeError) as e:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            warnings.warn(f"face finding in worker processes unavailable ({describe_error(e)}): using threads")
            self.processes = False
            return False
        self._processes = pool
        # wait=True: waits for the inputs already running (a photo each), and joins the pool's manager thread. With
        # wait=False, Python 3.11's exit handler could still write to that thread's wake-up pipe after it was closed
        # (`OSError: Bad file descriptor` printed at exit, e.g. after predict's reader went away).
        self._finalizer = weakref.finalize(self, pool.shutdown, wait=True, cancel_futures=True)
        return True

    def close(self) -> None:
        """Shuts the worker processes down (a later :meth:`map` starts them again)."""
        if self._finalizer is not None:
            self._finalizer()
        self._processes, self._finalizer = None, None

    def _map_processes(self, items: Iterator[tuple[int, PredictorInput]], how: _How) -> Iterator[Found]:
        flight: deque[tuple[int, PredictorInput, Future]] = deque()
        for index, item in items:
            flight.append((index, item, self._submit(index, item, how)))
            while len(flight) >= self.in_flight:
                yield self._collect(flight, how)
        while flight:
            yield self._collect(flight, how)

    def _submit(self, index: int, item: PredictorInput, how: _How) -> Future:
        if self._processes is None and not self.start():  # no pool could be started again: this thread does it
            return _done(self.job(index, item, *how))
        assert self._processes is not None
        try:
            return self._processes.submit(_run_job, index, item, *how)
        except BrokenProcessPool:  # it broke between two results: a fresh pool takes the input
            self.close()
            return self._submit(index, item, how)

    def _collect(self, flight: deque[tuple[int, PredictorInput, Future]], how: _How) -> Found:
        try:
            found = flight[0][2].result()
        except BrokenProcessPool:
            pass
        else:
            flight.popleft()
            return found
        # A worker died: the inputs in flight lost their results. Run them again one at a time in a fresh pool, so
        # that only an input a worker dies on again fails; the inputs after them go on as before.
        self.close()
        lost = [(index, item) for index, item, _ in flight]
        flight.clear()
        flight.extend((index, item, _done(self._alone(index, item, how))) for index, item in lost)
        return flight.popleft()[2].result()

    def _alone(self, index: int, item: PredictorInput, how: _How) -> Found:
        try:
            return self._submit(index, item, how).result()
        except BrokenProcessPool:
            self.close()
            return _failed(index, item, "the face-finding process died on it (out of memory, or a crash in dlib)")


def _in_order(executor: Executor, job: FaceJob, items: Iterator, how: _How, window: int) -> Iterator[Found]:
    flight: deque[Future] = deque()
    for index, item in items:
        flight.append(executor.submit(job, index, item, *how))
        if len(flight) >= window:
            yield flight.popleft().result()
    while flight:
        yield flight.popleft().result()


def _done(found: Found) -> Future:
    future: Future = Future()
    future.set_result(found)
    return future


def _path(item: PredictorInput) -> str | None:
    """An input's ``path`` in its result: the file's, None for an array."""
    return None if isinstance(item, np.ndarray) else os.fspath(item)


def _label(index: int, item: PredictorInput) -> str:
    """How an error names input number ``index``: its path, or an array its place in the input."""
    path = _path(item)
    return f"input {index}" if path is None else path


def _failed(index: int, item: PredictorInput, message: str) -> Found:
    """The result of an input that could not be used, its ``error`` naming it."""
    return Found(failed_result(_path(item), f"{_label(index, item)}: {message}"), [])


def _context() -> multiprocessing.context.BaseContext:
    # Never fork (see the module docstring). The forkserver imports this module once, so each worker forked from it
    # starts with dlib and PIL loaded; setting the list also keeps the server from importing the parent's script.
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


# The job of this worker process, set once by the pool's initializer so that only the inputs travel afterwards.
_JOB: FaceJob | None = None


def _set_job(job: FaceJob) -> None:
    global _JOB
    _JOB = job


def _ready() -> None:
    """Runs in each worker at start: nothing but the imports and the job's arrival."""


def _run_job(index: int, item: PredictorInput, aligned: bool, score: bool) -> Found:
    assert _JOB is not None, "worker process without its job"
    return _JOB(index, item, aligned, score)


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
