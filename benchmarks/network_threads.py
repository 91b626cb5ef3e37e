"""CPU time a face of ONNX Runtime's network takes, by intra-op threads and batch size: why predict's worker processes
each run the network on one thread.

With worker processes the cores are shared already, so what matters is the CPU time per face, not the wall time:
a second ONNX Runtime thread that shortens a call but costs more CPU time in all leaves less for the others.
Random inputs of the release's size; each (threads, batch) runs for ``--seconds``.

Run on a quiet machine::

    .venv/bin/python benchmarks/network_threads.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from agecurriculum.inference import DEFAULT_RELEASE_DIR, OnnxBackend, ReleaseInfo
from agecurriculum.inference.export import cached_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_RELEASE_DIR, help="our release folder")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8, 32, 64], help="faces per call")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per (threads, batch)")
    args = parser.parse_args()
    print("| ONNX Runtime threads | faces a call | ms a face, wall | ms a face, CPU |\n|---|---|---|---|")
    for threads in (1, 2):
        backend = OnnxBackend(cached_onnx(args.model), threads=threads)
        size = ReleaseInfo.from_config(backend.config).image_size
        for batch in args.batches:
            images = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
            backend(images)  # first-call allocations
            faces, wall, cpu = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - wall < args.seconds:
                backend(images)
                faces += batch
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"| {threads} | {batch} | {1000 * wall / faces:.2f} | {1000 * cpu / faces:.2f} |", flush=True)


if __name__ == "__main__":
    main()
