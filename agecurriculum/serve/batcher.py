"""The batching worker: requests that arrive together share one :meth:`Predictor.predict` call.

One asyncio task takes the first waiting request, waits ``batch_wait_ms`` for others to join, takes them while the
batch holds fewer than ``batch_images`` images, then decodes and predicts the lot in one worker thread (the event
loop keeps accepting requests meanwhile; the predictor finds faces in its own thread pool). The predictor is only
ever used from that one thread, one batch at a time. Each request gets its own results back, in its order.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.inference import Predictor
from agecurriculum.inference.results import failed_result
from agecurriculum.serve.limits import ServeLimits
from agecurriculum.serve.uploads import Upload

__all__ = ["Batcher"]


@dataclass
class _Job:
    uploads: list[Upload]
    future: asyncio.Future = field(repr=False)


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

        Raises:
            RuntimeError: the worker is not running, or the batch failed as a whole (e.g. out of memory).
        """
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the prediction worker is not running")
        job = _Job(uploads, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)  # unbounded: the app admits at most max_queue requests at a time
        return await job.future

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            if self.limits.batch_wait_ms > 0:
                await asyncio.sleep(self.limits.batch_wait_ms / 1000)
            # Whole requests only: a request is never split over two batches.
            while not self._queue.empty() and sum(len(j.uploads) for j in jobs) < self.limits.batch_images:
                jobs.append(self._queue.get_nowait())
            jobs = [j for j in jobs if not j.future.done()]  # clients that went away while waiting
            if not jobs:
                continue
            try:
                results = await loop.run_in_executor(self._thread, self._run, [u for j in jobs for u in j.uploads])
            except Exception as err:  # the whole batch failed: every request in it hears why
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError(f"prediction failed: {err}"))
                continue
            self.counts["batches"] += 1
            start = 0
            for job in jobs:
                mine = results[start : start + len(job.uploads)]
                start += len(job.uploads)
                self.counts["requests"] += 1
                self.counts["images"] += len(mine)
                self.counts["faces"] += sum(len(r["faces"]) for r in mine)
                if not job.future.done():
                    job.future.set_result(mine)

    def _run(self, uploads: list[Upload]) -> list[dict[str, Any]]:
        """Decodes and predicts a batch (in the worker thread): one result per upload, in order."""
        decoded = list(self._decoders.map(self._decode, uploads))
        arrays = [image for image in decoded if isinstance(image, np.ndarray)]
        predicted = iter(self.predictor.predict(arrays))
        results = []
        for upload, image in zip(uploads, decoded):
            if not isinstance(image, np.ndarray):
                results.append(failed_result(upload.path, image))
                continue
            result = next(predicted)
            result["path"] = upload.path
            if result["error"] is not None:
                # The predictor names an array by its place in the batch ("input 3: ..."), which means nothing to
                # the client: name the upload instead.
                result["error"] = f"{upload.label}: {result['error'].split(': ', 1)[-1]}"
            results.append(result)
        return results

    def _decode(self, upload: Upload) -> np.ndarray | str:
        """The upload's pixels, or why it cannot be used (one line naming it)."""
        try:
            # No byte limit here: the request size limit already bounds every upload.
            image = load_image(upload.data, max_pixels=self.limits.max_pixels, max_bytes=None, name=upload.label)
        except ImageLoadError as err:
            return " ".join(str(err).split())  # decoder messages may hold line breaks
        return image  # the predictor checks the rest (e.g. too small), as for any array, and _run names the upload
