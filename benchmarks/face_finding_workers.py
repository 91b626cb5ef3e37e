"""Why ``agecurriculum predict`` finds faces in worker processes: dlib in threads, and the predictor both ways.

Two measurements on the same seeded FairFace photos (the test part's sample of ``benchmarks/predict_speed.py``):

1. **dlib in threads.** Each of dlib's steps (the HOG search; landmarks and the aligned face chip) over all the
   photos in one thread, then the same work twice at once in two threads: the speed-up says how much of the step
   runs outside Python's GIL (2.0x: all of it; 1.0x or less: none).
2. **The predictor.** ``Predictor.predict`` on all the photos with faces found in threads and in worker processes
   (``processes=True``), median and best of ``--repeats`` rounds (each round starting with another predictor), with
   the share of the machine's CPU time that was busy during the call (from ``/proc/stat``, Linux only): the cores a
   version leaves idle. With processes, each worker also runs the network (ONNX Runtime, one thread) on its photo's
   faces; ``processes, network here`` keeps the network in the calling process (ONNX Runtime's own threads, batches
   of several photos' faces), ``2 in flight`` hands each worker at most 2 photos at a time instead of 4;
   ``processes, network here, 2 in flight`` is the default before 2026-12-06 (8).

Run on a quiet machine::

    .venv/bin/python benchmarks/face_finding_workers.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import dlib
import numpy as np
from predict_speed import photos

from agecurriculum.data.faces import landmark_model_path
from agecurriculum.data.images import load_image
from agecurriculum.inference import DEFAULT_RELEASE_DIR, OnnxBackend, Predictor, ReleaseInfo, read_release_config
from agecurriculum.inference.export import cached_onnx


class InThisProcess:
    """An ONNX backend behind a wrapper that the predictor does not copy into its workers: the network runs in the
    calling process."""

    def __init__(self, backend: OnnxBackend) -> None:
        self.backend, self.config = backend, backend.config

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.backend(images)


def hog(images: Sequence[np.ndarray]) -> None:
    detector = dlib.get_frontal_face_detector()
    for image in images:
        detector.run(image, 0, 0.0)


_LANDMARKS: list[dlib.shape_predictor] = []  # the landmark model, loaded once by the warm-up call, not timed


def landmarks_and_chips(images: Sequence[np.ndarray]) -> None:
    if not _LANDMARKS:
        _LANDMARKS.append(dlib.shape_predictor(str(landmark_model_path())))
    predictor = _LANDMARKS[0]  # read-only once loaded: the two threads share it
    for image in images:
        h, w = image.shape[:2]
        shape = predictor(image, dlib.rectangle(w // 5, h // 5, 4 * w // 5, 4 * h // 5))
        dlib.get_face_chip(image, shape, size=160, padding=0.25)


def thread_speedup(step: Callable[[Sequence[np.ndarray]], None], images: Sequence[np.ndarray]) -> tuple[float, float]:
    """Milliseconds per photo in one thread, and the speed-up of two threads doing the same work twice."""
    step(images[:2])  # models loaded, first-call allocations
    start = time.perf_counter()
    step(images)
    one = time.perf_counter() - start
    threads = [threading.Thread(target=step, args=(images,)) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    two = time.perf_counter() - start
    return 1000 * one / len(images), 2 * one / two


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return values[3] + values[4], sum(values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data root laid out like ../shared/data")
    parser.add_argument("--model", type=Path, default=DEFAULT_RELEASE_DIR, help="our release folder")
    parser.add_argument("--fairface", type=int, default=200, help="FairFace photos")
    parser.add_argument("--repeats", type=int, default=6, help="rounds per predictor (median and best shown)")
    args = parser.parse_args()
    paths, _ = photos(args.data, "fairface", args.fairface, ReleaseInfo.from_config(read_release_config(args.model)))
    images = [load_image(path) for path in paths]

    print(f"{len(images)} FairFace photos\n")
    print("| dlib step | ms a photo, one thread | two threads, speed-up |\n|---|---|---|")
    for name, step in (("HOG search (upsample 0)", hog), ("landmarks + face chip", landmarks_and_chips)):
        ms, speedup = thread_speedup(step, images)
        print(f"| {name} | {ms:.2f} | {speedup:.2f}x |")

    print("\n| predictor | photos/s, median | photos/s, best | CPU busy, median (2 cores = 100 %) |")
    print("|---|---|---|---|")
    here = [OnnxBackend(cached_onnx(args.model)) for _ in range(2)]
    predictors = {
        "threads": Predictor.from_release(args.model),
        "processes": Predictor.from_release(args.model, processes=True),
        "processes, 2 in flight": Predictor.from_release(args.model, processes=True),
        "processes, network here": Predictor(InThisProcess(here[0]), processes=True),
        "processes, network here, 2 in flight": Predictor(InThisProcess(here[1]), processes=True),
    }
    for name, predictor in predictors.items():
        if name.endswith("2 in flight"):
            pool = predictor._pool  # the predictor's FacePool: no public way to narrow it
            pool.in_flight = 2 * pool.workers
        predictor.predict(paths[:2])
        predictor.start_workers()
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in predictors}
    order = list(predictors.items())
    for round_ in range(args.repeats):
        # Each round starts with another predictor: this VM's speed drifts over minutes.
        for name, predictor in order[round_ % len(order) :] + order[: round_ % len(order)]:
            idle0, total0 = cpu_times()
            start = time.perf_counter()
            predictor.predict(paths)
            seconds = time.perf_counter() - start
            idle1, total1 = cpu_times()
            rounds[name].append((len(paths) / seconds, 1 - (idle1 - idle0) / max(total1 - total0, 1)))
    for name, measured in rounds.items():
        rates, busy = [r for r, _ in measured], [b for _, b in measured]
        print(f"| {name} | {statistics.median(rates):.1f} | {max(rates):.1f} | {100 * statistics.median(busy):.0f} % |")
    for predictor in predictors.values():
        predictor.close()


if __name__ == "__main__":
    main()
