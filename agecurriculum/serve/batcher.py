"""The batching worker: requests that arrive together share :meth:`Predictor.predict` calls.

One asyncio task takes the first waiting request, waits ``batch_wait_ms`` for others to join, takes them while the
batch holds fewer than ``batch_images`` images, then decodes and predicts the lot in one worker thread (the event
loop keeps accepting requests meanwhile; the predictor finds faces in its own thread pool). The predictor is only
ever used from that one thread, one batch at a time. Each request gets its own results back, in its order.

Memory: the batch's images are decoded and predicted in parts of at most ``max_pixels`` pixels, counted from the
image headers before anything is decoded (an image the header shows to be too large counts nothing: it is refused
unread). So one image of the largest size, or several smaller ones, are decoded at a time, whatever the batch
holds; each part is dropped before the next is decoded, and the memory freed is handed back to the system after
every part (glibc keeps it otherwise, and the decoding threads' separate pools of it would add up).

A request whose client has gone (the app cancels its future when the connection closes) is dropped: before the
batch runs, and before each part is decoded and predicted; nothing more is done for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.inference import Predictor
from agecurriculum.inference.results import failed_result
from agecurriculum.serve.limits import ServeLimits
from agecurriculum.serve.uploads import Upload

__all__ = ["Batcher", "release_memory"]


@dataclass
class _Job:
    uploads: list[Upload]
    future: asyncio.Future = field(repr=False)

    @property
    def gone(self) -> bool:
        """The request was withdrawn (its client disconnected): nothing more is done for it."""
        return self.future.cancelled()


class Batcher:
    """Collects the waiting requests' images into batches and predicts them (see the module docstring).

    Args:
        predictor: the loaded model; used from the batching thread only.
        limits: ``batch_images``, ``batch_wait_ms`` and ``max_pixels`` apply here.

    Attributes:
        counts: ``{"requests", "images", "faces", "batches"}`` predicted so far: all the server keeps of them.
    """

    def __init__(self, predictor: Predictor, limits: ServeLimits) -> None:
        self.predictor = predictor
        self.limits = limits
        self.counts = dict.fromkeys(("requests", "images", "faces", "batches"), 0)
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="agecurriculum-serve")
        self._decoders = ThreadPoolExecutor(predictor.workers, thread_name_prefix="agecurriculum-decode")

    async def start(self) -> None:
        """Starts the worker task on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._work(), name="agecurriculum-batcher")

    async def stop(self) -> None:
        """Stops the worker; requests still waiting get a :class:`RuntimeError`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._thread.shutdown(wait=True)
        self._decoders.shutdown(wait=True)

    async def predict(self, uploads: list[Upload]) -> list[dict[str, Any]]:
        """The results of one request's images, in order, once the batch they joined has run.

        Cancelling the call (the client went away) withdraws the request: it is skipped if its images have not been
        decoded and predicted yet.

        Raises:
            RuntimeError: the worker is not running, or the batch failed as a whole (e.g. out of memory).
        """
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the prediction worker is not running")
        job = _Job(uploads, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)  # unbounded: the app admits at most max_queue requests at a time
        return await job.future

    def release_memory_soon(self) -> None:
        """Runs :func:`release_memory` in the batching thread, after the batch running now (if any)."""
        with contextlib.suppress(RuntimeError):  # stopped: the process is about to end anyway
            self._thread.submit(release_memory)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            if self.limits.batch_wait_ms > 0:
                await asyncio.sleep(self.limits.batch_wait_ms / 1000)
            # Whole requests only: a request is never split over two batches.
            while not self._queue.empty() and sum(len(j.uploads) for j in jobs) < self.limits.batch_images:
                jobs.append(self._queue.get_nowait())
            await self._batch([j for j in jobs if not j.future.done()])  # done: clients that went away waiting
            del jobs  # the requests' bytes are not kept while the next batch is awaited

    async def _batch(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._thread, self._run, jobs)
        except Exception as err:  # the whole batch failed: every request in it hears why
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(RuntimeError(f"prediction failed: {err}"))
            return
        if any(mine is not None for mine in results):
            self.counts["batches"] += 1
        for job, mine in zip(jobs, results):
            if mine is None or job.future.done():  # withdrawn while it ran
                continue
            self.counts["requests"] += 1
            self.counts["images"] += len(mine)
            self.counts["faces"] += sum(len(r["faces"]) for r in mine)
            job.future.set_result(mine)

    def _run(self, jobs: list[_Job]) -> list[list[dict[str, Any]] | None]:
        """Decodes and predicts a batch (in the worker thread): each request's results, None for one withdrawn."""
        try:
            results: list[list[Any]] = [[None] * len(job.uploads) for job in jobs]
            for part in self._parts(jobs):
                self._run_part(jobs, [(j, i) for j, i in part if not jobs[j].gone], results)
                release_memory()  # before the next part's images: the threads that decode them keep arenas apart
            return [None if job.gone else mine for job, mine in zip(jobs, results)]
        finally:
            release_memory()  # also when the batch failed

    def _parts(self, jobs: list[_Job]) -> Iterator[list[tuple[int, int]]]:
        """``(request, image)`` places of the batch, in order, in parts of at most ``max_pixels`` pixels (from the
        headers; an image alone may be a part of its own)."""
        part: list[tuple[int, int]] = []
        pixels = 0
        for j, job in enumerate(jobs):
            for i, upload in enumerate(job.uploads):
                if job.gone:
                    break
                size = _header_pixels(upload.data, self.limits.max_pixels)
                if part and pixels + size > self.limits.max_pixels:
                    yield part
                    part, pixels = [], 0
                part.append((j, i))
                pixels += size
        if part:
            yield part

    def _run_part(self, jobs: list[_Job], part: list[tuple[int, int]], results: list[list[Any]]) -> None:
        """Decodes the images at ``part`` (several threads), predicts them in one call, fills in their results."""
        if not part:
            return
        uploads = [jobs[j].uploads[i] for j, i in part]
        decoded = list(self._decoders.map(self._decode, uploads))
        live = [k for k, (j, _) in enumerate(part) if not jobs[j].gone]  # the client may have gone meanwhile
        arrays = [decoded[k] for k in live if isinstance(decoded[k], np.ndarray)]
        predicted = iter(self.predictor.predict(arrays) if arrays else [])
        del arrays
        for k in live:
            (j, i), upload, image = part[k], uploads[k], decoded[k]
            decoded[k] = None  # each decoded image is dropped as soon as its result is in
            if not isinstance(image, np.ndarray):
                results[j][i] = failed_result(upload.path, image)
                continue
            result = next(predicted)
            result["path"] = upload.path
            if result["error"] is not None:
                # The predictor names an array by its place in the call ("input 3: ..."), which means nothing to
                # the client: name the upload instead.
                result["error"] = f"{upload.label}: {result['error'].split(': ', 1)[-1]}"
            results[j][i] = result

    def _decode(self, upload: Upload) -> np.ndarray | str:
        """The upload's pixels, or why it cannot be used (one line naming it)."""
        try:
            # No byte limit here: the request size limit already bounds every upload.
            image = load_image(upload.data, max_pixels=self.limits.max_pixels, max_bytes=None, name=upload.label)
        except ImageLoadError as err:
            return " ".join(str(err).split())  # decoder messages may hold line breaks
        return image  # the predictor checks the rest (e.g. too small), as for any array, and _run names the upload


def _header_pixels(data: bytes | bytearray, max_pixels: int) -> int:
    """Width x height from the image's header, without decoding it; 0 for what will not be decoded at all (not an
    image, or more than ``max_pixels``: :func:`~agecurriculum.data.load_image` refuses it from the same header)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:  # anything PIL raises on bad data: load_image names the error
        return 0
    pixels = width * height
    return pixels if pixels <= max_pixels else 0


def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hands the memory the process has freed back to the system where the C library keeps it (glibc's
    ``malloc_trim``; elsewhere nothing). Without it, a batch of large images leaves the server's RSS high after it."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
